//! Linux only, and the only `unsafe` code of the sandbox: Landlock through its three system
//! calls, the user + PID + mount namespaces that give a run its own `/proc`, the hook that
//! runs in the child between `fork` and `exec`, and the overwrite of our own secrets in the
//! initial environment block and argv (what `/proc/<pid>/environ` and `cmdline` show).
//!
//! Everything the child needs is built before the fork ([`prepare`]): the ruleset is created
//! and filled in the parent (rules hold their inodes, not paths), so the child only makes a
//! few system calls on integers and static strings, nothing that allocates or takes a lock
//! (the fork of a multi-threaded process may hold any lock). The child forks with the raw
//! `clone` system call for the same reason: glibc's `fork` takes malloc's locks.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::{Access, Plan};

// From <linux/landlock.h>.
const CREATE_RULESET_VERSION: libc::c_uint = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;
const RULE_NET_PORT: libc::c_int = 2;

const FS_EXECUTE: u64 = 1 << 0;
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_READ_FILE: u64 = 1 << 2;
const FS_READ_DIR: u64 = 1 << 3;
const FS_MAKE_CHAR: u64 = 1 << 6;
const FS_MAKE_BLOCK: u64 = 1 << 11;
/// ABI 1: bits 0 to 12.
const FS_ABI1: u64 = (1 << 13) - 1;
const FS_REFER: u64 = 1 << 13;
const FS_TRUNCATE: u64 = 1 << 14;
const FS_IOCTL_DEV: u64 = 1 << 15;
/// What a rule on a file (not a folder) may allow.
const FS_FILE: u64 = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;

const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;

const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

#[repr(C)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

/// The Landlock ABI this kernel offers; 0 when it has none (or it is disabled at boot).
pub fn landlock_abi() -> u32 {
    // SAFETY: with a null attribute and size 0 this only asks for the version.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        0
    } else {
        r as u32
    }
}

fn handled_fs(abi: u32) -> u64 {
    let mut m = FS_ABI1;
    if abi >= 2 {
        m |= FS_REFER;
    }
    if abi >= 3 {
        m |= FS_TRUNCATE;
    }
    if abi >= 5 {
        m |= FS_IOCTL_DEV;
    }
    m
}

fn allowed(access: Access) -> u64 {
    match access {
        Access::Read => FS_EXECUTE | FS_READ_FILE | FS_READ_DIR,
        Access::Write => !(FS_MAKE_CHAR | FS_MAKE_BLOCK),
        Access::Device => FS_READ_FILE | FS_WRITE_FILE | FS_READ_DIR | FS_TRUNCATE | FS_IOCTL_DEV,
    }
}

/// A run's confinement, ready to be entered by the child. Keep it until `spawn` returns.
pub struct Prepared {
    ruleset: Option<OwnedFd>,
    namespaces: bool,
    /// What the rule on the fresh /proc allows (added by the child, after mounting it).
    proc_access: u64,
}

impl Prepared {
    /// Makes the child of `cmd` enter this confinement before it executes the CLI.
    pub fn install(&self, cmd: &mut Command) {
        let hook = Hook {
            ruleset: self.ruleset.as_ref().map(|f| f.as_raw_fd()),
            maps: self.namespaces.then(IdMaps::current),
            proc_access: self.proc_access,
            probe: false,
        };
        // SAFETY: the hook only makes async-signal-safe system calls on data prepared here.
        unsafe {
            cmd.pre_exec(move || hook.enter());
        }
    }
}

/// Opens every rule's path and builds the Landlock ruleset (in the parent).
pub fn prepare(plan: &Plan) -> io::Result<Prepared> {
    let ruleset = if plan.abi > 0 {
        Some(build_ruleset(plan)?)
    } else {
        None
    };
    Ok(Prepared {
        ruleset,
        namespaces: plan.pid_namespace,
        proc_access: allowed(Access::Read) & handled_fs(plan.abi),
    })
}

fn build_ruleset(plan: &Plan) -> io::Result<OwnedFd> {
    let abi = plan.abi;
    let fs = handled_fs(abi);
    let attr = RulesetAttr {
        handled_access_fs: fs,
        handled_access_net: if abi >= 4 {
            NET_BIND_TCP | NET_CONNECT_TCP
        } else {
            0
        },
        scoped: if abi >= 6 {
            SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        } else {
            0
        },
    };
    // Older kernels reject a larger struct only if its unknown tail is non-zero; pass the
    // size they know anyway.
    let size: usize = match abi {
        0..=3 => 8,
        4 | 5 => 16,
        _ => 24,
    };
    // SAFETY: attr is a live struct of at least `size` bytes.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            size,
            0u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor (close-on-exec).
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    for rule in &plan.rules {
        // With a PID namespace, the child mounts a fresh /proc over ours and adds its rule.
        if plan.pid_namespace && rule.path == std::path::Path::new("/proc") {
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(&rule.path)
        else {
            continue;
        };
        let is_dir = file.metadata().map(|m| m.is_dir()).unwrap_or(false);
        let mut access = allowed(rule.access) & fs;
        if !is_dir {
            access &= FS_FILE;
        }
        if access == 0 {
            continue;
        }
        let attr = PathBeneathAttr {
            allowed_access: access,
            parent_fd: file.as_raw_fd(),
        };
        add_rule(
            &ruleset,
            RULE_PATH_BENEATH,
            &attr as *const _ as *const libc::c_void,
        )
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", rule.path.display())))?;
    }
    if abi >= 4 {
        for port in &plan.ports {
            let attr = NetPortAttr {
                allowed_access: NET_CONNECT_TCP,
                port: u64::from(*port),
            };
            add_rule(
                &ruleset,
                RULE_NET_PORT,
                &attr as *const _ as *const libc::c_void,
            )?;
        }
    }
    Ok(ruleset)
}

fn add_rule(ruleset: &OwnedFd, kind: libc::c_int, attr: *const libc::c_void) -> io::Result<()> {
    // SAFETY: attr points to a live attribute struct of the kind named.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            kind,
            attr,
            0u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The uid/gid maps of the run's user namespace: ourselves, mapped to ourselves.
struct IdMaps {
    uid: [u8; 32],
    uid_len: usize,
    gid: [u8; 32],
    gid_len: usize,
}

impl IdMaps {
    fn current() -> IdMaps {
        // SAFETY: geteuid/getegid cannot fail.
        let (u, g) = unsafe { (libc::geteuid(), libc::getegid()) };
        let mut m = IdMaps {
            uid: [0; 32],
            uid_len: 0,
            gid: [0; 32],
            gid_len: 0,
        };
        let us = format!("{u} {u} 1\n");
        let gs = format!("{g} {g} 1\n");
        m.uid[..us.len()].copy_from_slice(us.as_bytes());
        m.uid_len = us.len();
        m.gid[..gs.len()].copy_from_slice(gs.as_bytes());
        m.gid_len = gs.len();
        m
    }
}

/// Steps of the child's set-up; in a probe, a failed step is the exit code.
#[derive(Clone, Copy)]
enum Step {
    Unshare = 11,
    IdMap = 12,
    Fork = 13,
    Private = 14,
    Proc = 15,
    Pid1 = 16,
    ProcRule = 17,
    NoNewPrivs = 18,
    Landlock = 19,
}

/// What the child does between fork and exec.
struct Hook {
    ruleset: Option<RawFd>,
    maps: Option<IdMaps>,
    /// The access of the rule on the fresh /proc.
    proc_access: u64,
    /// Exit 0 after the set-up instead of executing (the start-up probe); a failed step
    /// exits with its number.
    probe: bool,
}

impl Hook {
    fn enter(&self) -> io::Result<()> {
        if let Some(maps) = &self.maps {
            self.namespaces(maps)?;
        }
        self.check(Step::NoNewPrivs, unsafe {
            // SAFETY: a prctl on integers.
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        })?;
        if let Some(fd) = self.ruleset {
            // SAFETY: the ruleset descriptor is open until exec (close-on-exec).
            let r = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) };
            self.check(Step::Landlock, r as libc::c_int)?;
        }
        if self.probe {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(0) }
        }
        Ok(())
    }

    /// A failed step: the error (a run), or exit with the step's number (a probe).
    fn check(&self, step: Step, r: libc::c_int) -> io::Result<()> {
        if r >= 0 {
            return Ok(());
        }
        if self.probe {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(step as i32) }
        }
        Err(io::Error::last_os_error())
    }

    /// Moves into new user, PID and mount namespaces. The calling process (which std knows
    /// as the child) stays outside as a supervisor that mirrors the exit of its child; the
    /// child, PID 1 of the new namespace, mounts a fresh /proc and returns to exec the CLI.
    fn namespaces(&self, maps: &IdMaps) -> io::Result<()> {
        // SAFETY: system calls on integers, static C strings and the prepared maps; the
        // supervisor branch never returns.
        unsafe {
            self.check(
                Step::Unshare,
                libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNS),
            )?;
            // Without "deny" an unprivileged process may not write gid_map (ENOENT before 3.19).
            let r = write_file(b"/proc/self/setgroups\0", b"deny");
            if r < 0 && *libc::__errno_location() != libc::ENOENT {
                self.check(Step::IdMap, r)?;
            }
            self.check(
                Step::IdMap,
                write_file(b"/proc/self/uid_map\0", &maps.uid[..maps.uid_len]),
            )?;
            self.check(
                Step::IdMap,
                write_file(b"/proc/self/gid_map\0", &maps.gid[..maps.gid_len]),
            )?;
            let pid = libc::syscall(
                libc::SYS_clone,
                libc::SIGCHLD as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            );
            self.check(Step::Fork, pid as libc::c_int)?;
            if pid > 0 {
                supervise(pid as libc::pid_t);
            }
            // PID 1 of the new namespace. If the supervisor dies, so do we.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            self.check(
                Step::Private,
                libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_SLAVE,
                    std::ptr::null(),
                ),
            )?;
            self.check(
                Step::Proc,
                libc::mount(
                    c"proc".as_ptr(),
                    c"/proc".as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                ),
            )?;
            if libc::getpid() != 1 {
                *libc::__errno_location() = libc::EINVAL;
                self.check(Step::Pid1, -1)?;
            }
            // Rules hold inodes: the /proc the parent saw is now hidden under the new one.
            if let Some(ruleset) = self.ruleset {
                let fd = libc::open(c"/proc".as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                self.check(Step::ProcRule, fd)?;
                let attr = PathBeneathAttr {
                    allowed_access: self.proc_access,
                    parent_fd: fd,
                };
                let r = libc::syscall(
                    libc::SYS_landlock_add_rule,
                    ruleset,
                    RULE_PATH_BENEATH,
                    &attr as *const PathBeneathAttr,
                    0u32,
                );
                libc::close(fd);
                self.check(Step::ProcRule, r as libc::c_int)?;
            }
        }
        Ok(())
    }
}

/// Writes `data` to the file at the NUL-terminated `path`; -1 (errno set) on failure.
unsafe fn write_file(path: &[u8], data: &[u8]) -> libc::c_int {
    let fd = libc::open(path.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return -1;
    }
    let n = libc::write(fd, data.as_ptr().cast(), data.len());
    let saved = *libc::__errno_location();
    libc::close(fd);
    if n != data.len() as isize {
        *libc::__errno_location() = saved;
        return -1;
    }
    0
}

/// The supervisor: outside the namespace, in the run's process group, it waits for PID 1 and
/// exits the way it did, so that Claudeway sees the CLI's own exit status. It ignores the
/// group's SIGTERM (the CLI gets it and may exit gracefully); SIGKILL ends it with the rest.
/// It holds no descriptor (so pipes see EOF and `spawn` returns once the CLI executes) and is
/// not dumpable (it is a copy of the server's memory).
unsafe fn supervise(child: libc::pid_t) -> ! {
    libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        libc::signal(sig, libc::SIG_IGN);
    }
    // The server's SIGCHLD handler (wait-timeout's) must not run here.
    libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
        for fd in 0..65536 {
            libc::close(fd);
        }
    }
    let mut status = 0;
    loop {
        let r = libc::waitpid(child, &mut status, 0);
        if r == child {
            break;
        }
        if r < 0 && *libc::__errno_location() != libc::EINTR {
            libc::_exit(127);
        }
    }
    if libc::WIFEXITED(status) {
        libc::_exit(libc::WEXITSTATUS(status));
    }
    let sig = libc::WTERMSIG(status);
    libc::signal(sig, libc::SIG_DFL);
    libc::kill(libc::getpid(), sig);
    libc::_exit(128 + sig)
}

/// Checks once, at start, that a child can get its own user, PID and mount namespace and
/// mount a fresh /proc there (the same code path a run takes, up to the exec).
pub fn probe_namespaces() -> Result<(), String> {
    let hook = Hook {
        ruleset: None,
        maps: Some(IdMaps::current()),
        proc_access: 0,
        probe: true,
    };
    // The program is never executed: the hook exits first.
    let mut cmd = Command::new("/");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: as in `Prepared::install`.
    unsafe {
        cmd.pre_exec(move || hook.enter());
    }
    let status = cmd
        .spawn()
        .and_then(|mut c| c.wait())
        .map_err(|e| format!("the probe could not run: {e}"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(c) if c == Step::Unshare as i32 => Err(
            "creating a user namespace was refused (unprivileged user namespaces are disabled, or a seccomp/AppArmor policy forbids them)".into(),
        ),
        Some(c) if c == Step::IdMap as i32 => Err("writing the namespace's uid/gid map was refused".into()),
        Some(c) if c == Step::Fork as i32 => Err("forking into the new PID namespace failed".into()),
        Some(c) if c == Step::Private as i32 || c == Step::Proc as i32 => Err(
            "mounting a fresh /proc in the namespace was refused (a container that masks parts of /proc?)".into(),
        ),
        _ => Err(format!("the probe ended with {status}")),
    }
}

/// Overwrites, in place, the values of the environment variables `names` in our initial
/// environment block, and the value of each `flags` option (`--keys x`, `--keys=x`) in our
/// initial argv: the memory `/proc/<pid>/environ` and `/proc/<pid>/cmdline` show. The
/// variables keep working for this process (they are copied into the heap first). Call it
/// before any thread starts. Returns how many values were overwritten.
pub fn scrub_own_secrets(names: &[String], flags: &[&str]) -> usize {
    let Some([arg_start, arg_end, env_start, env_end]) = initial_regions() else {
        return 0;
    };
    let mut n = 0;
    if env_end > env_start {
        // SAFETY: [env_start, env_end) is our initial environment block: mapped, writable
        // stack memory that no Rust reference points into.
        let region =
            unsafe { std::slice::from_raw_parts_mut(env_start as *mut u8, env_end - env_start) };
        let mut restore = Vec::new();
        let spans: Vec<(usize, usize)> = strings(region).collect();
        for (start, end) in spans {
            let entry = &region[start..end];
            let Some(eq) = entry.iter().position(|&b| b == b'=') else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(&entry[..eq]) else {
                continue;
            };
            if names.iter().any(|w| w == name) && end > start + eq + 1 {
                restore.push((name.to_string(), std::env::var_os(name)));
                region[start + eq + 1..end].fill(b'*');
                n += 1;
            }
        }
        for (name, value) in restore {
            if let Some(v) = value {
                std::env::set_var(name, v);
            }
        }
    }
    if arg_end > arg_start {
        // SAFETY: as above, for the initial argv strings.
        let region =
            unsafe { std::slice::from_raw_parts_mut(arg_start as *mut u8, arg_end - arg_start) };
        let spans: Vec<(usize, usize)> = strings(region).collect();
        for (i, (start, end)) in spans.iter().copied().enumerate() {
            for flag in flags {
                let arg = &region[start..end];
                if arg == flag.as_bytes() {
                    if let Some(&(vs, ve)) = spans.get(i + 1) {
                        region[vs..ve].fill(b'*');
                        n += 1;
                    }
                } else if arg.starts_with(flag.as_bytes()) && arg.get(flag.len()) == Some(&b'=') {
                    region[start + flag.len() + 1..end].fill(b'*');
                    n += 1;
                }
            }
        }
    }
    n
}

/// The NUL-terminated strings of a region, as (start, end) spans without the NUL.
fn strings(region: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= region.len() {
            return None;
        }
        let start = i;
        let end = region[i..]
            .iter()
            .position(|&b| b == 0)
            .map_or(region.len(), |p| i + p);
        i = end + 1;
        Some((start, end))
    })
}

/// arg_start, arg_end, env_start, env_end from /proc/self/stat (fields 48 to 51).
fn initial_regions() -> Option<[usize; 4]> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // fields[0] is field 3 (the state).
    let get = |n: usize| fields.get(n - 3)?.parse::<usize>().ok();
    Some([get(48)?, get(49)?, get(50)?, get(51)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_split_at_nul() {
        let r = b"A=1\0BB=22\0C";
        let spans: Vec<_> = strings(r).collect();
        assert_eq!(spans, [(0, 3), (4, 9), (10, 11)]);
    }

    #[test]
    fn the_initial_regions_are_found() {
        let [a, b, c, d] = initial_regions().unwrap();
        assert!(a < b && c < d, "{a} {b} {c} {d}");
    }

    #[test]
    fn abi_masks() {
        assert_eq!(handled_fs(1), FS_ABI1);
        assert_eq!(handled_fs(6) & FS_IOCTL_DEV, FS_IOCTL_DEV);
        assert_eq!(allowed(Access::Write) & FS_MAKE_CHAR, 0);
        assert_eq!(std::mem::size_of::<PathBeneathAttr>(), 12);
    }
}
