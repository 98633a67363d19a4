//! Linux only, and the only `unsafe` code of the sandbox: Landlock through its three system
//! calls, the user + PID + mount namespaces that give a run its own `/proc`, the helper's
//! `main` that enters them and executes the CLI, and the overwrite of our own secrets in the
//! initial environment block and argv (what `/proc/<pid>/environ` and `cmdline` show).
//!
//! The helper is this binary, started by the server with `posix_spawn` (no `pre_exec` hook,
//! so std never copies the server with `fork`). It is a fresh single-threaded process, so it
//! may allocate, open the rules' paths and fork freely.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use super::{
    Access, Plan, ProbeError, HELPER_ARG, HELPER_CANNOT_EXEC, HELPER_FAILED, HELPER_NOT_FOUND,
    HELPER_PREFIX,
};

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

/// Opens every rule's path and builds the Landlock ruleset.
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
    let fd = os(unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            size,
            0u32,
        )
    })?;
    // SAFETY: the kernel just gave us this descriptor (close-on-exec).
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    for rule in &plan.rules {
        // With a PID namespace, PID 1 mounts a fresh /proc over ours and adds its rule.
        if plan.pid_namespace && rule.path == std::path::Path::new("/proc") {
            continue;
        }
        let Ok(file) = open_resolved(&rule.path) else {
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
        add_path_rule(&ruleset, &file, access)
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

/// Opens a rule's path (`O_PATH`), refusing a symbolic link anywhere in it. The server
/// resolved every rule path; a link there now was put in since (say, by another run of the
/// same key swapping a folder in its workdir for a link to a protected one), and following
/// it would widen the rule. Such a rule is skipped by the caller, which only narrows access.
fn open_resolved(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: open_how is plain data; zeroed is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: a NUL-terminated path and a live open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: the kernel just gave us this descriptor.
        return Ok(unsafe { std::fs::File::from_raw_fd(fd as RawFd) });
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(e);
    }
    // Before Linux 5.6 (no Landlock either, so this serves the namespaces alone).
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
}

fn add_rule(ruleset: &OwnedFd, kind: libc::c_int, attr: *const libc::c_void) -> io::Result<()> {
    // SAFETY: attr points to a live attribute struct of the kind named.
    os(unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            kind,
            attr,
            0u32,
        )
    })
    .map(drop)
}

/// Allows `access` beneath the open path `file`.
fn add_path_rule(ruleset: &OwnedFd, file: &std::fs::File, access: u64) -> io::Result<()> {
    let attr = PathBeneathAttr {
        allowed_access: access,
        parent_fd: file.as_raw_fd(),
    };
    add_rule(
        ruleset,
        RULE_PATH_BENEATH,
        &attr as *const _ as *const libc::c_void,
    )
}

/// The helper's `main` (`claudeway sandbox-exec <cwd> [<program> <args…>]`, the plan at the
/// head of stdin): enter the plan's confinement in `cwd`, then execute the program, whose
/// stdin is the rest; with no program (the start-up probe) exit 0 once confined. A failure is
/// one `claudeway sandbox-exec: <what>: <error>` line on stderr and exit status 125 (126 or
/// 127 when the program cannot be executed or is not found), which the runner turns back into
/// a spawn error.
pub fn helper_main(args: Vec<OsString>) -> ! {
    // SAFETY: a prctl on a static C string (what `ps -o comm` shows instead of "exe").
    unsafe { libc::prctl(libc::PR_SET_NAME, c"claudeway".as_ptr(), 0, 0, 0) };
    let code = match confine_and_exec(args) {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("{HELPER_PREFIX}{}: {}", f.what, f.error);
            f.code
        }
    };
    std::process::exit(code)
}

/// A step of the helper that failed.
struct Failure {
    what: String,
    error: io::Error,
    code: i32,
}

/// Maps a step's error to a [`Failure`] named by `what`.
fn step(what: &str) -> impl FnOnce(io::Error) -> Failure + '_ {
    move |error| Failure {
        what: what.to_string(),
        error,
        code: HELPER_FAILED,
    }
}

/// The result of a system call that returns -1 and sets errno on failure.
fn os(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn confine_and_exec(args: Vec<OsString>) -> Result<(), Failure> {
    let usage = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: claudeway sandbox-exec <cwd> [<program> <args>...], the plan on stdin (used by the server itself)",
        )
    };
    // Unbuffered, through a duplicate of fd 0: the plan is read to its last byte and not one
    // more, so the program gets the rest of stdin (the prompt) untouched.
    let plan = io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|mut stdin| Plan::decode(&mut stdin))
        .map_err(step("reading the plan from stdin"))?;
    let mut args = args.into_iter();
    let cwd = args
        .next()
        .ok_or_else(usage)
        .map_err(step("reading the arguments"))?;
    std::env::set_current_dir(&cwd).map_err(step("changing to the workdir"))?;
    let ruleset = if plan.abi > 0 {
        Some(build_ruleset(&plan).map_err(step("building the Landlock ruleset"))?)
    } else {
        None
    };
    if plan.pid_namespace {
        let proc_access = allowed(Access::Read) & handled_fs(plan.abi);
        namespaces(ruleset.as_ref(), proc_access)?;
    }
    // SAFETY: a prctl on integers.
    os(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())
        .map_err(step("setting no_new_privs"))?;
    if let Some(fd) = &ruleset {
        // SAFETY: a system call on an open descriptor.
        os(unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd.as_raw_fd(), 0u32) })
            .map_err(step("entering the Landlock ruleset"))?;
    }
    drop(ruleset);
    let Some(program) = args.next() else {
        return Ok(());
    };
    // Returns only on failure. std's exec also resets SIGPIPE and the signal mask.
    let error = Command::new(&program).args(args).exec();
    Err(Failure {
        what: format!("executing {}", program.to_string_lossy()),
        code: if error.kind() == io::ErrorKind::NotFound {
            HELPER_NOT_FOUND
        } else {
            HELPER_CANNOT_EXEC
        },
        error,
    })
}

/// Moves into new user, PID and mount namespaces. The helper stays outside as a supervisor
/// that mirrors the exit of its child; the child, PID 1 of the new namespace, mounts a fresh
/// /proc, adds its rule to the ruleset and returns to confine itself and execute the CLI.
fn namespaces(ruleset: Option<&OwnedFd>, proc_access: u64) -> Result<(), Failure> {
    // Before the unshare: inside, until the maps are written, we are the overflow id.
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // SAFETY: system calls on integers and static C strings.
    os(unsafe {
        libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWNS)
    }
    .into())
    .map_err(step(
        "creating a user, PID and mount namespace (refused when unprivileged user namespaces are disabled, or by a seccomp/AppArmor policy)",
    ))?;
    // Ourselves, mapped to ourselves. Without "deny" an unprivileged process may not write
    // gid_map (the file is missing before Linux 3.19).
    let map = |file: &str, data: String| -> io::Result<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(file)?
            .write_all(data.as_bytes())
    };
    match map("/proc/self/setgroups", "deny".into()) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(step("writing the namespace's setgroups")(e))
        }
        _ => {}
    }
    map("/proc/self/uid_map", format!("{uid} {uid} 1\n"))
        .and_then(|()| map("/proc/self/gid_map", format!("{gid} {gid} 1\n")))
        .map_err(step("writing the namespace's uid/gid map"))?;
    // SAFETY: we are single-threaded (a fresh process); the parent branch never returns.
    let pid = os(unsafe { libc::fork() }.into())
        .map_err(step("forking into the new PID namespace"))? as libc::pid_t;
    if pid > 0 {
        // SAFETY: only waits and exits.
        unsafe { supervise(pid) }
    }
    // PID 1 of the new namespace. If the supervisor dies, so do we.
    // SAFETY: system calls on integers, static C strings and a descriptor we own.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        let proc_hint =
            "mounting a fresh /proc in the namespace (a container that masks parts of /proc?)";
        os(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        )
        .into())
        .map_err(step(proc_hint))?;
        os(libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
        .into())
        .map_err(step(proc_hint))?;
        if libc::getpid() != 1 {
            return Err(step("becoming PID 1 of the namespace")(
                io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
    }
    // Rules hold inodes: the /proc the plan named is now hidden under the new one.
    if let Some(ruleset) = ruleset {
        let proc = open_resolved(Path::new("/proc")).map_err(step("opening the fresh /proc"))?;
        add_path_rule(ruleset, &proc, proc_access)
            .map_err(step("adding the rule of the fresh /proc"))?;
    }
    Ok(())
}

/// The supervisor: outside the namespace, in the run's process group, it waits for PID 1 and
/// exits the way it did, so that Claudeway sees the CLI's own exit status. It ignores the
/// group's SIGTERM (the CLI gets it and may exit gracefully); SIGKILL ends it with the rest.
/// It holds no descriptor, so pipes see EOF when the CLI's side closes them.
unsafe fn supervise(child: libc::pid_t) -> ! {
    // Re-raising the CLI's fatal signal below must not dump a core of ours.
    libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        libc::signal(sig, libc::SIG_IGN);
    }
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
            libc::_exit(HELPER_FAILED);
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

/// Checks once, at start, that the helper runs and, with `namespaces`, that it can give a run
/// its own user, PID and mount namespace with a fresh /proc (the code a run takes, up to the
/// exec).
pub fn probe(helper: &Path, namespaces: bool) -> Result<(), ProbeError> {
    match run_probe(helper, namespaces) {
        Ok(()) => Ok(()),
        Err(Probed::NotStarted(why)) => Err(ProbeError::Helper(why)),
        Err(Probed::Said(why)) if namespaces => Err(ProbeError::Namespaces(why)),
        Err(Probed::Said(why)) => Err(ProbeError::Helper(why)),
        // Ended without a word (a seccomp policy that kills on unshare or mount, say): the
        // namespaces are the suspect if the helper runs without them.
        Err(Probed::Silent) if namespaces && run_probe(helper, false).is_ok() => {
            Err(ProbeError::Namespaces(
                "the set-up of the namespaces was killed (a seccomp policy that kills on unshare or mount?)".into(),
            ))
        }
        Err(Probed::Silent) => Err(ProbeError::Helper(format!(
            "{} sandbox-exec did not run (is it this server's binary?)",
            helper.display()
        ))),
    }
}

/// How a probe run of the helper failed.
enum Probed {
    /// It could not be started at all.
    NotStarted(String),
    /// It failed and said why.
    Said(String),
    /// It failed without a word.
    Silent,
}

/// One run of the helper up to the exec.
fn run_probe(helper: &Path, namespaces: bool) -> Result<(), Probed> {
    let plan = Plan {
        rules: Vec::new(),
        ports: Vec::new(),
        abi: 0,
        pid_namespace: namespaces,
        helper: helper.to_path_buf(),
    };
    let not_started = |e: io::Error| Probed::NotStarted(format!("{}: {e}", helper.display()));
    // No environment: the probe needs none, and our secrets stay ours.
    let mut child = Command::new(helper)
        .args([HELPER_ARG, "/"])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(not_started)?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&plan.encode());
    }
    let out = child.wait_with_output().map_err(not_started)?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(HELPER_PREFIX))
        .map_or(Probed::Silent, |why| Probed::Said(why.to_string())))
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
