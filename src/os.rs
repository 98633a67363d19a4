//! The few OS calls std lacks (process groups, signals, resource limits, TTY checks), in one
//! place so that a port to another OS is this file's work. Unix only; every `unsafe` block of
//! the crate lives here, each a single libc call on plain integers.
#![allow(unsafe_code)]

/// A signal we send to a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
}

/// Sends `sig` to every process in the group `pgid` (a child spawned with
/// `process_group(0)` leads a group whose id is its pid). Returns false if no process was
/// left in the group.
pub fn kill_group(pgid: u32, sig: Signal) -> bool {
    let sig = match sig {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    if pgid <= 1 {
        return false;
    }
    // SAFETY: killpg takes two integers and touches no memory of ours.
    unsafe { libc::killpg(pgid as libc::pid_t, sig) == 0 }
}

/// True if a process group with this id still has a member.
pub fn group_alive(pgid: u32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    unsafe { libc::killpg(pgid as libc::pid_t, 0) == 0 }
}

/// Raises the soft open-files limit to the hard limit (each run holds several pipes and
/// each connection a socket). Returns the new soft limit.
pub fn raise_nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write to / read from the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return None;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    Some(lim.rlim_cur as u64)
}

/// Raises the accept backlog of a listening socket to `backlog` (the kernel caps it at
/// `net.core.somaxconn`). std listens with 128: a burst of more new connections than that
/// overflows the queue, and the kernel drops the extra SYNs, which clients retry only after
/// a second. Calling listen(2) again on a listening socket only changes its backlog.
pub fn raise_listen_backlog(listener: &std::net::TcpListener, backlog: i32) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: listen takes a file descriptor we own (borrowed for the call) and an integer.
    unsafe { libc::listen(listener.as_raw_fd(), backlog) == 0 }
}

/// True if standard input is a terminal (interactive questions are asked only then).
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty takes a file descriptor number.
    unsafe { libc::isatty(0) == 1 }
}

/// The effective user id (the CLI refuses the permission bypass as root).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

static SIGNALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic add: async-signal-safe.
    SIGNALS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Counts SIGTERM and SIGINT instead of dying, so that `main` can shut down in order.
pub fn catch_shutdown_signals() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installs a handler that only touches an atomic; the struct is ours.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// How many SIGTERM/SIGINT have arrived since `catch_shutdown_signals`.
pub fn shutdown_signals() -> usize {
    SIGNALS.load(std::sync::atomic::Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    #[test]
    fn a_raised_backlog_holds_300_pending_connections() {
        // Never accepted: every connection waits in the queue. With std's 128 the kernel
        // would drop the SYNs beyond it and these connects would time out.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(raise_listen_backlog(&l, 1024));
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        let addr = l.local_addr().unwrap();
        let n = 300.min(somaxconn);
        let conns: Vec<TcpStream> = (0..n)
            .map(|i| {
                TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("connection {i} of {n}: {e}"))
            })
            .collect();
        assert_eq!(conns.len(), n);
    }
}
