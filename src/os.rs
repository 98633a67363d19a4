//! The few OS calls std lacks (process groups, signals, resource limits, TTY checks, socket
//! timeouts, process start times), in one place so that a port to another OS is this file's
//! work. Unix only; every `unsafe` block of the crate lives here, each a single libc call on
//! plain integers.
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

/// The file descriptor of our accepted TCP socket whose local port is `local_port` and whose
/// peer is `peer`, found through /proc/self/fd. tiny_http hands an upgraded WebSocket over as
/// an opaque stream; the descriptor lets us poll it and give it a read timeout. Linux only.
#[cfg(target_os = "linux")]
pub fn find_socket(local_port: u16, peer: std::net::SocketAddr) -> Option<i32> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().starts_with("socket:"))
            .unwrap_or(false);
        if is_socket
            && sock_addr(fd, true) == Some(peer)
            && sock_addr(fd, false).map(|a| a.port()) == Some(local_port)
        {
            return Some(fd);
        }
    }
    None
}

#[cfg(not(target_os = "linux"))]
pub fn find_socket(_local_port: u16, _peer: std::net::SocketAddr) -> Option<i32> {
    None
}

fn sock_addr(fd: i32, peer: bool) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    // SAFETY: the kernel writes at most `len` bytes into the zeroed storage we own.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let p = &mut storage as *mut libc::sockaddr_storage as *mut libc::sockaddr;
        let rc = if peer {
            libc::getpeername(fd, p, &mut len)
        } else {
            libc::getsockname(fd, p, &mut len)
        };
        if rc != 0 {
            return None;
        }
        match storage.ss_family as i32 {
            libc::AF_INET => {
                let a = &*(p as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(a.sin_port)))
            }
            libc::AF_INET6 => {
                let a = &*(p as *const libc::sockaddr_in6);
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be(a.sin6_port)))
            }
            _ => None,
        }
    }
}

/// Sets `SO_RCVTIMEO` on a socket: a blocking read returns `WouldBlock` after `timeout`.
pub fn set_read_timeout(fd: i32, timeout: std::time::Duration) -> bool {
    set_timeout(fd, libc::SO_RCVTIMEO, timeout)
}

/// True if `fd` has data to read (or was closed by the peer) within `timeout_ms`.
pub fn readable(fd: i32, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd struct that we own.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    n > 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// Sets `SO_RCVTIMEO` and `SO_SNDTIMEO` on a socket. On the listening socket only the write
/// timeout matters to accept(); accepted sockets inherit both (Linux copies them at accept).
pub fn set_socket_timeouts(fd: i32, read: std::time::Duration, write: std::time::Duration) -> bool {
    set_read_timeout(fd, read) && set_timeout(fd, libc::SO_SNDTIMEO, write)
}

fn set_timeout(fd: i32, which: libc::c_int, timeout: std::time::Duration) -> bool {
    // `as _`: libc deprecates naming time_t/suseconds_t on musl (their width changes there).
    let tv = libc::timeval {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as _,
        tv_usec: timeout.subsec_micros() as _,
    };
    // SAFETY: passes a pointer to a timeval we own and its exact size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            which,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        ) == 0
    }
}

/// When the process `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat):
/// with the pid, it tells a process apart from a later one that reuses its pid. Linux only.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
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
