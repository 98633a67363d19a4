//! The sandbox around every CLI run: which paths a run may read and write, which TCP ports it
//! may connect to, and whether it gets its own PID namespace and `/proc`. This file owns the
//! policy (config → rules, portable and unit-tested), the status the server reports, and how a
//! run is launched confined: through this binary itself, re-executed as `claudeway
//! sandbox-exec <cwd> <program> <args…>` (the *helper*) with the plan at the head of its
//! stdin, which enters the confinement and then executes the CLI. The kernel side (Landlock, namespaces, the helper's `main`) is
//! `linux.rs`, the only place with system calls, with a twin (`other.rs`) elsewhere. It must
//! never widen a rule past a protected path (state dir, logs, config, homes, other runs'
//! workdirs): a root that contains one is split into its other entries.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as kernel;
#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
use other as kernel;

pub use kernel::{helper_main, scrub_own_secrets};

/// What the start-up probe of the helper found wrong.
#[derive(Debug)]
pub enum ProbeError {
    /// The helper could not be run at all: nothing can be confined.
    Helper(String),
    /// The helper runs, but cannot give a run its own namespaces.
    Namespaces(String),
}

/// The first argument that makes this binary the sandbox helper.
pub const HELPER_ARG: &str = "sandbox-exec";

/// The helper's exit status when it could not confine or execute (as `env` and `timeout` do:
/// 125 for its own failures, 126 for a program it cannot execute, 127 for one not found).
pub const HELPER_FAILED: i32 = 125;
pub const HELPER_CANNOT_EXEC: i32 = 126;
pub const HELPER_NOT_FOUND: i32 = 127;

/// How the helper's last stderr line starts when it failed.
pub const HELPER_PREFIX: &str = "claudeway sandbox-exec: ";

/// `[sandbox] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Confine runs as far as the kernel allows; warn about what it cannot do.
    Enforce,
    /// No confinement (per-key homes still apply).
    Off,
    /// Like `Enforce`, but refuse to start unless everything is enforced.
    Require,
}

impl Mode {
    pub fn parse(v: &str) -> Result<Mode, String> {
        match v {
            "enforce" => Ok(Mode::Enforce),
            "off" => Ok(Mode::Off),
            "require" => Ok(Mode::Require),
            _ => Err(format!(
                "mode `{v}` is not one of \"enforce\", \"off\", \"require\""
            )),
        }
    }
}

/// Paths and ports added to the built-in policy (globally or for one key).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra {
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub connect_ports: Vec<u16>,
}

/// `[keys.<id>.sandbox]`: a key's own additions, and its mode (`enforce` or `off`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeySettings {
    pub mode: Option<Mode>,
    pub extra: Extra,
}

/// `[sandbox]` as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub mode: Mode,
    pub extra: Extra,
    /// Give each run its own user, PID and mount namespace with a fresh `/proc`.
    pub pid_namespace: bool,
    /// Use at most this Landlock ABI; 0 acts as if the kernel had no Landlock. For checking
    /// the warnings and `require` on a kernel that has it.
    pub max_abi: Option<u32>,
    pub keys: BTreeMap<String, KeySettings>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            mode: Mode::Enforce,
            extra: Extra::default(),
            pid_namespace: true,
            max_abi: None,
            keys: BTreeMap::new(),
        }
    }
}

/// What a rule lets a run do beneath its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read, list and execute.
    Read,
    /// Everything a workdir needs: create, write, remove, rename, execute.
    Write,
    /// Read and write existing files (device nodes) and their ioctls; nothing is created.
    Device,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathBuf,
    pub access: Access,
}

/// Everything one run's confinement needs, decided before the CLI is spawned. It travels to
/// the helper at the head of its stdin ([`Plan::encode`]): no size limit as an argument has,
/// and paths as bytes, whatever their encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub rules: Vec<Rule>,
    pub ports: Vec<u16>,
    /// The Landlock ABI to use (0: no Landlock).
    pub abi: u32,
    pub pid_namespace: bool,
    /// The helper: this binary (not sent).
    pub helper: PathBuf,
}

/// How an encoded plan starts.
const PLAN_MAGIC: &[u8; 8] = b"CWPLAN1\n";
/// Bounds that only a corrupt plan exceeds.
const MAX_RULES: u32 = 1 << 20;
const MAX_PATH: u32 = 1 << 16;

impl Plan {
    /// The command that runs `program args` in `cwd` inside this confinement: the helper,
    /// which reads the plan from its stdin, changes to `cwd`, confines itself and executes
    /// the program (whose stdin is what follows the plan). Spawned without a `pre_exec` hook,
    /// std uses `posix_spawn`: nothing of the server is copied.
    pub fn command(&self, program: &str, args: &[OsString], cwd: &Path) -> Command {
        let mut cmd = Command::new(&self.helper);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // What `ps` shows, rather than the name of the /proc/self/exe link.
            cmd.arg0("claudeway");
        }
        cmd.arg(HELPER_ARG).arg(cwd).arg(program).args(args);
        cmd
    }

    /// The plan as the helper reads it: magic, ABI, namespace flag, ports, then each rule as
    /// its access and its path's bytes (lengths little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = PLAN_MAGIC.to_vec();
        out.extend(self.abi.to_le_bytes());
        out.push(u8::from(self.pid_namespace));
        out.extend((self.ports.len() as u32).to_le_bytes());
        for p in &self.ports {
            out.extend(p.to_le_bytes());
        }
        out.extend((self.rules.len() as u32).to_le_bytes());
        for r in &self.rules {
            out.push(match r.access {
                Access::Read => 0,
                Access::Write => 1,
                Access::Device => 2,
            });
            let path = path_bytes(&r.path);
            out.extend((path.len() as u32).to_le_bytes());
            out.extend(path);
        }
        out
    }

    /// Reads exactly one encoded plan from `r` (not a byte more: what follows is the CLI's).
    pub fn decode(r: &mut impl Read) -> io::Result<Plan> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != PLAN_MAGIC {
            return Err(bad("no plan on stdin (this mode is for the server itself)"));
        }
        let abi = read_u32(r)?;
        let mut flag = [0u8; 1];
        r.read_exact(&mut flag)?;
        let nports = read_u32(r)?;
        if nports > 65536 {
            return Err(bad("too many ports"));
        }
        let mut ports = Vec::with_capacity(nports as usize);
        for _ in 0..nports {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            ports.push(u16::from_le_bytes(b));
        }
        let nrules = read_u32(r)?;
        if nrules > MAX_RULES {
            return Err(bad("too many rules"));
        }
        let mut rules = Vec::new();
        for _ in 0..nrules {
            let mut access = [0u8; 1];
            r.read_exact(&mut access)?;
            let access = match access[0] {
                0 => Access::Read,
                1 => Access::Write,
                2 => Access::Device,
                _ => return Err(bad("unknown access")),
            };
            let len = read_u32(r)?;
            if len > MAX_PATH {
                return Err(bad("path too long"));
            }
            let mut path = vec![0u8; len as usize];
            r.read_exact(&mut path)?;
            rules.push(Rule {
                path: path_from_bytes(path),
                access,
            });
        }
        Ok(Plan {
            rules,
            ports,
            abi,
            pid_namespace: flag[0] != 0,
            helper: PathBuf::new(),
        })
    }
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

#[cfg(unix)]
fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_bytes(p: &Path) -> Vec<u8> {
    p.to_string_lossy().into_owned().into_bytes()
}

#[cfg(unix)]
fn path_from_bytes(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(OsString::from_vec(b))
}

#[cfg(not(unix))]
fn path_from_bytes(b: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&b).into_owned())
}

/// The helper's failure, from how a run ended: its exit status and its last stderr line
/// (`claudeway sandbox-exec: <what>: <error> (os error N)`). None when the run got as far as
/// executing the program.
pub fn helper_error(exit_code: Option<i32>, stderr_tail: &[String]) -> Option<io::Error> {
    if !matches!(
        exit_code,
        Some(HELPER_FAILED | HELPER_CANNOT_EXEC | HELPER_NOT_FOUND)
    ) {
        return None;
    }
    let line = stderr_tail
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix(HELPER_PREFIX))?;
    // "Not found" means the CLI only when executing it failed so (127); a missing file in an
    // earlier step is the sandbox's problem, not a missing CLI.
    let kind = match exit_code {
        Some(HELPER_NOT_FOUND) => io::ErrorKind::NotFound,
        _ => line
            .rsplit_once("(os error ")
            .and_then(|(_, n)| n.trim_end_matches(')').parse::<i32>().ok())
            .map(|n| io::Error::from_raw_os_error(n).kind())
            .filter(|k| *k != io::ErrorKind::NotFound)
            .unwrap_or(io::ErrorKind::Other),
    };
    Some(io::Error::new(kind, line.to_string()))
}

/// The state `/health` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Enforced,
    Partial,
    Off,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Enforced => "enforced",
            State::Partial => "partial",
            State::Off => "off",
        }
    }
}

/// The paths every run may read (those that exist): the system, its libraries and `/proc`.
pub const SYSTEM_READ: [&str; 10] = [
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc", "/sys",
];

/// Device nodes a run may read and write (never create).
pub const DEVICES: [&str; 9] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/fd",
];

/// Where `[sandbox]` meets the rest of the server: the configured policy, what the kernel
/// offers, and the paths no run may ever see.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub settings: Settings,
    /// The Landlock ABI in use (0 = none, or mode off).
    pub abi: u32,
    /// Why runs get no PID namespace, when they do not.
    pub no_pid_namespace: Option<String>,
    /// Why the helper cannot run, when it cannot (then nothing is confined).
    pub no_helper: Option<String>,
    /// The read roots of every run: system paths and the CLI's install folder.
    pub read: Vec<PathBuf>,
    /// Ports every run may connect to.
    pub ports: Vec<u16>,
    /// Never readable by a run, whatever rule would contain them.
    pub protected: Vec<PathBuf>,
    /// The server's own folders (state, logs, other runs' workdirs): no request workdir may
    /// lie inside them (they are also protected).
    pub private: Vec<PathBuf>,
    /// The helper that launches confined runs: this binary.
    pub helper: PathBuf,
}

/// What `Sandbox::new` needs to know about the server.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub claude_bin: PathBuf,
    /// This binary, re-executed as the sandbox helper.
    pub helper: PathBuf,
    /// The CLI's environment as it will be (ours minus secrets, plus `[claude.env]`):
    /// `ANTHROPIC_BASE_URL` and proxy variables add their ports.
    pub cli_env: Vec<(String, String)>,
    /// Never readable by a run (the config file, our HOME, ...).
    pub protected: Vec<PathBuf>,
    /// The server's own folders: protected, and never inside a request's workdir.
    pub private: Vec<PathBuf>,
}

impl Sandbox {
    /// Builds the policy and checks the kernel. `Err` only when `mode = "require"` cannot be
    /// met; what else is missing, [`Sandbox::report`] logs.
    pub fn new(settings: Settings, inputs: Inputs) -> Result<Sandbox, String> {
        // The helper is run once, the way a run would be, up to the exec.
        let (no_helper, no_namespaces) = match settings.mode {
            Mode::Off => (None, None),
            _ => match kernel::probe(&inputs.helper, settings.pid_namespace) {
                Ok(()) => (None, None),
                Err(ProbeError::Helper(why)) => (Some(why), None),
                Err(ProbeError::Namespaces(why)) => (None, Some(why)),
            },
        };
        let kernel_abi = kernel::landlock_abi();
        let abi = match settings.mode {
            Mode::Off => 0,
            _ if no_helper.is_some() => 0,
            _ => settings.max_abi.map_or(kernel_abi, |m| m.min(kernel_abi)),
        };
        let no_pid_namespace = if settings.mode == Mode::Off {
            None
        } else if !settings.pid_namespace {
            Some("turned off by [sandbox] pid_namespace = false".to_string())
        } else if let Some(why) = &no_helper {
            Some(why.clone())
        } else {
            no_namespaces
        };
        let mut read: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
        read.extend(link_targets(&read));
        read.extend(install_dirs(&inputs.claude_bin));
        read.dedup();
        let mut ports = vec![443];
        ports.extend(env_ports(&inputs.cli_env));
        let resolved = |list: &[PathBuf]| -> Vec<PathBuf> {
            list.iter()
                .map(|p| resolve(p))
                .filter(|p| p.parent().is_some())
                .collect()
        };
        let private = resolved(&inputs.private);
        let mut protected = resolved(&inputs.protected);
        protected.extend(private.iter().cloned());
        let sandbox = Sandbox {
            settings,
            abi,
            no_pid_namespace,
            no_helper,
            read,
            ports,
            protected,
            private,
            helper: inputs.helper,
        };
        let missing = sandbox.missing();
        if sandbox.settings.mode == Mode::Require && !missing.is_empty() {
            return Err(format!(
                "[sandbox] mode = \"require\", but this system cannot enforce: {}; use a kernel with Landlock ABI 6 or later and unprivileged user namespaces, or set mode = \"enforce\"",
                missing.join("; ")
            ));
        }
        Ok(sandbox)
    }

    /// Logs what is confined and, as a warning, what is not.
    pub fn report(&self) {
        let missing = self.missing().join("; ");
        match self.state() {
            _ if self.settings.mode == Mode::Off => log::warn!(
                "sandbox: off ([sandbox] mode = \"off\"): CLI runs can read, write and connect wherever this server can"
            ),
            State::Off => log::warn!(
                "sandbox: NOT enforced: {missing}; CLI runs can read, write and connect wherever this server can"
            ),
            State::Partial => log::warn!(
                "sandbox: partial (Landlock ABI {}); not enforced: {missing}",
                self.abi
            ),
            State::Enforced => log::info!(
                "sandbox: enforced (Landlock ABI {}, a PID namespace per run); TCP connect only to ports {:?} and those of [sandbox] connect_ports",
                self.abi, self.ports
            ),
        }
    }

    /// What is not enforced, in words for an operator (empty when everything is).
    pub fn missing(&self) -> Vec<String> {
        if self.settings.mode == Mode::Off {
            return vec!["everything ([sandbox] mode = \"off\")".into()];
        }
        let mut out = Vec::new();
        if let Some(why) = &self.no_helper {
            return vec![format!(
                "everything: the sandbox helper (this binary, re-executed) cannot run: {why}"
            )];
        }
        if self.abi == 0 {
            out.push("file, network and signal confinement (the kernel has no Landlock)".into());
        } else {
            for (abi, what) in [
                (3, "file truncation (Landlock ABI 3)"),
                (4, "TCP connect and bind (Landlock ABI 4)"),
                (5, "device ioctls (Landlock ABI 5)"),
                (
                    6,
                    "signal and abstract UNIX socket scoping (Landlock ABI 6)",
                ),
            ] {
                if self.abi < abi {
                    out.push(what.to_string());
                }
            }
        }
        if let Some(why) = &self.no_pid_namespace {
            out.push(format!("a private /proc per run (PID namespace: {why})"));
        }
        out
    }

    pub fn state(&self) -> State {
        if self.settings.mode == Mode::Off || self.abi == 0 && self.no_pid_namespace.is_some() {
            State::Off
        } else if self.missing().is_empty() {
            State::Enforced
        } else {
            State::Partial
        }
    }

    /// The confinement of one run of `key_id` in `workdir`, with its CLI `home` (TMPDIR is
    /// inside it). None when this key's runs are not confined.
    pub fn plan(&self, key_id: &str, workdir: &Path, home: &Path) -> Option<Plan> {
        let key = self.settings.keys.get(key_id);
        let mode = key.and_then(|k| k.mode).unwrap_or(self.settings.mode);
        if mode == Mode::Off || self.settings.mode == Mode::Off {
            return None;
        }
        let pid_namespace = self.no_pid_namespace.is_none();
        if self.abi == 0 && !pid_namespace {
            return None;
        }
        let global = &self.settings.extra;
        let empty = Extra::default();
        let own = key.map(|k| &k.extra).unwrap_or(&empty);
        let mut roots: Vec<(PathBuf, Access)> = Vec::new();
        roots.extend(self.read.iter().map(|p| (p.clone(), Access::Read)));
        roots.extend(
            global
                .read
                .iter()
                .chain(&own.read)
                .map(|p| (p.clone(), Access::Read)),
        );
        roots.extend(DEVICES.iter().map(|p| (PathBuf::from(p), Access::Device)));
        roots.push((workdir.to_path_buf(), Access::Write));
        roots.push((home.to_path_buf(), Access::Write));
        roots.extend(
            global
                .write
                .iter()
                .chain(&own.write)
                .map(|p| (p.clone(), Access::Write)),
        );
        let mut rules = Vec::new();
        for (root, access) in roots {
            for path in split(&root, &self.protected) {
                let rule = Rule { path, access };
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
        let mut ports = self.ports.clone();
        ports.extend(global.connect_ports.iter().chain(&own.connect_ports));
        ports.sort_unstable();
        ports.dedup();
        Some(Plan {
            rules,
            ports,
            abi: self.abi,
            pid_namespace,
            helper: self.helper.clone(),
        })
    }

    /// True if `path` is or contains a protected path, or lies inside one of the server's
    /// own folders: a request may not use it as its workdir.
    pub fn is_reserved(&self, path: &Path) -> bool {
        let path = resolve(path);
        self.protected.iter().any(|p| p.starts_with(&path))
            || self.private.iter().any(|p| path.starts_with(p))
    }
}

/// The parts of `root` a rule may cover without covering a protected path: `root` itself when
/// no protected path lies beneath it, nothing when it is protected, else (recursively) its
/// entries. Symbolic links are followed, so a link cannot smuggle a protected path in.
/// Missing paths give nothing.
pub fn split(root: &Path, protected: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    split_into(root, protected, &mut out, 0);
    out
}

fn split_into(root: &Path, protected: &[PathBuf], out: &mut Vec<PathBuf>, depth: usize) {
    let Ok(real) = root.canonicalize() else {
        return;
    };
    if protected.contains(&real) {
        return;
    }
    if !protected.iter().any(|p| p.starts_with(&real)) {
        out.push(real);
        return;
    }
    if depth > 32 || !real.is_dir() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(&real) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for e in entries {
        split_into(&e, protected, out, depth + 1);
    }
}

/// `p` made absolute and resolved through its symbolic links as far as it exists (the rest
/// appended as written), so that it compares with canonical rule paths.
pub fn resolve(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut norm = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                norm.pop();
            }
            Component::CurDir => {}
            other => norm.push(other.as_os_str()),
        }
    }
    let mut existing = norm.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for name in rest.iter().rev() {
                out.push(name);
            }
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.pop(),
        ) {
            (Some(name), true) => rest.push(name),
            _ => return norm,
        }
    }
}

/// Where the top-level symbolic links of `roots` point, when that is outside them (and not
/// in /proc): `/etc/resolv.conf → /run/systemd/resolve/stub-resolv.conf` must stay readable.
/// A rule covers what is beneath its folder, not what a link there points to.
pub fn link_targets(roots: &[PathBuf]) -> Vec<PathBuf> {
    let real_roots: Vec<PathBuf> = roots.iter().filter_map(|r| r.canonicalize().ok()).collect();
    let mut out = Vec::new();
    for root in &real_roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_symlink()) {
                continue;
            }
            let Ok(target) = e.path().canonicalize() else {
                continue;
            };
            let covered = real_roots.iter().any(|r| target.starts_with(r));
            if !covered && !target.starts_with("/proc") && !out.contains(&target) {
                out.push(target);
            }
        }
    }
    out.sort();
    out
}

/// The folders the CLI itself needs to read and execute: its package (the folder below
/// `node_modules` that holds it, else the folder of its real path), and, for a script, the
/// folder its `#!` interpreter lives in (`#!/usr/bin/env node` → node's prefix).
pub fn install_dirs(bin: &Path) -> Vec<PathBuf> {
    let Some(found) = crate::which::find(&bin.to_string_lossy()) else {
        return Vec::new();
    };
    let Ok(real) = found.canonicalize() else {
        return Vec::new();
    };
    let mut out = vec![package_dir(&real)];
    if let Some(interp) = shebang(&real) {
        if let Some(found) = crate::which::find(&interp).and_then(|p| p.canonicalize().ok()) {
            // <prefix>/bin/node → <prefix>
            let dir = found.parent().map(Path::to_path_buf).unwrap_or_default();
            let prefix = match dir.file_name() {
                Some(n) if n == "bin" => dir.parent().map(Path::to_path_buf).unwrap_or(dir),
                _ => dir,
            };
            if prefix.parent().is_some() {
                out.push(prefix);
            }
        }
    }
    out
}

fn package_dir(real: &Path) -> PathBuf {
    let comps: Vec<&std::ffi::OsStr> = real.iter().collect();
    if let Some(i) = comps.iter().rposition(|c| *c == "node_modules") {
        let take = match comps.get(i + 1) {
            Some(scope) if scope.to_string_lossy().starts_with('@') => i + 3,
            Some(_) => i + 2,
            None => i + 1,
        };
        if take < comps.len() {
            return comps[..take].iter().collect();
        }
    }
    real.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The program a script's `#!` line runs (`env X` → X).
fn shebang(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let text = std::str::from_utf8(head[..n].strip_prefix(b"#!")?).ok()?;
    let line = text.lines().next()?;
    let mut words = line.split_whitespace();
    let first = words.next()?;
    if first.ends_with("/env") {
        words.find(|w| !w.starts_with('-')).map(str::to_string)
    } else {
        Some(first.to_string())
    }
}

/// The variables whose URL's port a run may connect to.
pub const PORT_VARS: [&str; 7] = [
    "ANTHROPIC_BASE_URL",
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Ports the CLI's environment says it will connect to: `ANTHROPIC_BASE_URL` and proxies.
pub fn env_ports(env: &[(String, String)]) -> Vec<u16> {
    let mut out = Vec::new();
    for (k, v) in env {
        if PORT_VARS.contains(&k.as_str()) {
            if let Some(p) = url_port(v) {
                out.push(p);
            }
        }
    }
    out
}

/// The TCP port of `http(s)://host[:port]/...` (80 and 443 by default).
pub fn url_port(url: &str) -> Option<u16> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let port = if let Some(after) = host_port.strip_prefix('[') {
        after.split_once("]:").map(|(_, p)| p)
    } else {
        host_port.rsplit_once(':').map(|(_, p)| p)
    };
    match port {
        Some(p) => p.parse().ok().filter(|p| *p != 0),
        None => match scheme.to_ascii_lowercase().as_str() {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Tmp {
        fn new() -> Tmp {
            let p = std::env::temp_dir().join(format!("cw-sbx-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p.canonicalize().unwrap())
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sandbox(settings: Settings, private: Vec<PathBuf>) -> Sandbox {
        let private: Vec<PathBuf> = private.iter().map(|p| resolve(p)).collect();
        Sandbox {
            settings,
            abi: 6,
            no_pid_namespace: None,
            no_helper: None,
            read: vec![PathBuf::from("/usr")],
            ports: vec![443],
            protected: private.clone(),
            private,
            helper: PathBuf::from("/proc/self/exe"),
        }
    }

    #[test]
    fn the_plan_travels_on_stdin_as_bytes() {
        #[cfg(unix)]
        let odd = {
            use std::os::unix::ffi::OsStrExt;
            PathBuf::from(std::ffi::OsStr::from_bytes(b"/w ork/\xff\n\"x\""))
        };
        #[cfg(not(unix))]
        let odd = PathBuf::from("/w ork/x");
        let plan = Plan {
            rules: vec![
                Rule {
                    path: odd,
                    access: Access::Write,
                },
                Rule {
                    path: PathBuf::from("/usr"),
                    access: Access::Read,
                },
                Rule {
                    path: PathBuf::from("/dev/null"),
                    access: Access::Device,
                },
            ],
            ports: vec![443, 8080],
            abi: 6,
            pid_namespace: true,
            helper: PathBuf::from("/proc/self/exe"),
        };
        let cmd = plan.command("/opt/claude", &["-p".into()], Path::new("/w"));
        assert_eq!(cmd.get_program(), "/proc/self/exe");
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(args, [HELPER_ARG, "/w", "/opt/claude", "-p"]);
        // The plan, then the prompt: decoding takes the plan and leaves the prompt.
        let mut stdin = plan.encode();
        stdin.extend(b"the prompt");
        let mut r = &stdin[..];
        let back = Plan::decode(&mut r).unwrap();
        assert_eq!(r, b"the prompt");
        assert_eq!(
            back,
            Plan {
                helper: PathBuf::new(),
                ..plan.clone()
            }
        );
        // Anything else is refused, not half-read.
        assert!(Plan::decode(&mut &b"the prompt"[..]).is_err());
        let cut = plan.encode();
        assert!(Plan::decode(&mut &cut[..cut.len() - 1]).is_err());
    }

    #[test]
    fn a_failed_helper_is_read_back_from_its_exit_and_last_line() {
        let tail = |l: &str| vec!["noise".to_string(), l.to_string()];
        let e = helper_error(
            Some(HELPER_NOT_FOUND),
            &tail("claudeway sandbox-exec: executing /x: No such file or directory (os error 2)"),
        )
        .unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "executing /x: No such file or directory (os error 2)"
        );
        let e = helper_error(
            Some(HELPER_FAILED),
            &tail(
                "claudeway sandbox-exec: changing to the workdir: Permission denied (os error 13)",
            ),
        )
        .unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        // The CLI's own exit or stderr is not the helper's.
        assert!(helper_error(Some(1), &tail("claudeway sandbox-exec: x (os error 2)")).is_none());
        assert!(helper_error(Some(HELPER_FAILED), &tail("some CLI error")).is_none());
        assert!(helper_error(None, &[]).is_none());
    }

    #[test]
    fn ports_from_urls() {
        assert_eq!(url_port("http://127.0.0.1:8080"), Some(8080));
        assert_eq!(url_port("https://api.anthropic.com"), Some(443));
        assert_eq!(url_port("http://proxy.local/"), Some(80));
        assert_eq!(url_port("http://user:pw@[::1]:3128/x"), Some(3128));
        assert_eq!(url_port("socks5://h"), None);
        let env = vec![
            (
                "ANTHROPIC_BASE_URL".to_string(),
                "http://127.0.0.1:9999".to_string(),
            ),
            ("HTTPS_PROXY".to_string(), "http://proxy:3128".to_string()),
            ("OTHER_URL".to_string(), "http://x:1".to_string()),
        ];
        assert_eq!(env_ports(&env), [9999, 3128]);
    }

    #[test]
    fn a_root_holding_a_protected_path_is_split() {
        let t = Tmp::new();
        let etc = t.0.join("etc");
        for d in ["etc/ssl/certs", "etc/claudeway", "etc/profile.d"] {
            std::fs::create_dir_all(t.0.join(d)).unwrap();
        }
        std::fs::write(etc.join("hosts"), "x").unwrap();
        std::fs::write(etc.join("claudeway/claudeway.toml"), "secret").unwrap();
        std::fs::write(etc.join("claudeway/other.txt"), "x").unwrap();
        let config = etc.join("claudeway/claudeway.toml");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&config, etc.join("sneaky-link")).unwrap();
        let parts = split(&etc, std::slice::from_ref(&config));
        assert_eq!(
            parts,
            [
                etc.join("claudeway/other.txt"),
                etc.join("hosts"),
                etc.join("profile.d"),
                etc.join("ssl"),
            ],
            "everything but the config; the link to it is dropped"
        );
        assert_eq!(
            split(&etc, &[]),
            vec![etc.clone()],
            "nothing protected: whole"
        );
        assert!(
            split(&etc, std::slice::from_ref(&etc)).is_empty(),
            "protected itself"
        );
        assert!(split(&t.0.join("missing"), &[]).is_empty());
        assert_eq!(
            split(&etc.join("ssl"), std::slice::from_ref(&t.0)),
            [etc.join("ssl")],
            "a root inside a protected folder is fine"
        );
    }

    #[test]
    fn the_rule_set_of_a_run() {
        let t = Tmp::new();
        let work = t.0.join("work");
        let state = work.join(".state");
        let home = state.join("homes/ci");
        let logs = t.0.join("logs");
        let extra = t.0.join("data");
        let own = t.0.join("ci-cache");
        for d in [&work.join("tasks/1"), &home, &logs, &extra, &own] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(work.join("notes.txt"), "x").unwrap();
        let mut settings = Settings::default();
        settings.extra.read.push(extra.clone());
        settings.extra.connect_ports.push(22);
        let ci = KeySettings {
            mode: None,
            extra: Extra {
                read: vec![],
                write: vec![own.clone()],
                connect_ports: vec![8443, 22],
            },
        };
        settings.keys.insert("ci".into(), ci);
        settings.keys.insert(
            "trusted".into(),
            KeySettings {
                mode: Some(Mode::Off),
                extra: Extra::default(),
            },
        );
        let sb = sandbox(
            settings,
            vec![
                state.clone(),
                logs.clone(),
                work.join("tasks"),
                work.join("sessions"),
            ],
        );
        let plan = sb.plan("ci", &work.join("tasks/1"), &home).unwrap();
        let has = |p: &Path, a: Access| {
            plan.rules.contains(&Rule {
                path: p.into(),
                access: a,
            })
        };
        assert!(has(Path::new("/usr"), Access::Read));
        assert!(has(&extra, Access::Read));
        assert!(has(&work.join("tasks/1"), Access::Write));
        assert!(has(&home, Access::Write));
        assert!(has(&own, Access::Write), "the key's own write path");
        assert!(has(Path::new("/dev/null"), Access::Device));
        assert!(!plan.rules.iter().any(|r| r.path == logs || r.path == state));
        assert_eq!(plan.ports, [22, 443, 8443]);
        assert!(plan.pid_namespace);

        // Another key: no ci-cache, no 8443.
        let plan = sb.plan("other", &work.join("tasks/1"), &home).unwrap();
        assert!(!plan.rules.iter().any(|r| r.path == own));
        assert_eq!(plan.ports, [22, 443]);
        // A key whose runs are not confined.
        assert!(sb.plan("trusted", &work, &home).is_none());

        // A workdir that holds the state dir and other runs' workdirs is narrowed.
        let plan = sb.plan("ci", &work, &home).unwrap();
        let writes: Vec<&Path> = plan
            .rules
            .iter()
            .filter(|r| r.access == Access::Write)
            .map(|r| r.path.as_path())
            .collect();
        assert_eq!(
            writes,
            [
                work.join("notes.txt").as_path(),
                home.as_path(),
                own.as_path()
            ],
            "only what holds nothing protected"
        );
        assert!(sb.is_reserved(&work));
        assert!(sb.is_reserved(&work.join("tasks/1")));
        assert!(!sb.is_reserved(&t.0.join("data")));

        // Mode off: nothing.
        let off = sandbox(
            Settings {
                mode: Mode::Off,
                ..Settings::default()
            },
            vec![],
        );
        assert!(off.plan("ci", &work, &home).is_none());
        assert_eq!(off.state(), State::Off);
    }

    #[test]
    fn state_and_missing_follow_the_kernel() {
        let mut sb = sandbox(Settings::default(), vec![]);
        assert_eq!(sb.state(), State::Enforced);
        assert!(sb.missing().is_empty());
        sb.abi = 3;
        assert_eq!(sb.state(), State::Partial);
        let m = sb.missing().join("; ");
        assert!(m.contains("TCP connect") && m.contains("scoping"), "{m}");
        assert!(!m.contains("truncation"), "{m}");
        sb.abi = 0;
        assert!(sb.missing()[0].contains("no Landlock"));
        assert_eq!(sb.state(), State::Partial, "the PID namespace still works");
        sb.no_pid_namespace = Some("EPERM".into());
        assert_eq!(sb.state(), State::Off);
        assert!(sb.plan("x", Path::new("/tmp"), Path::new("/tmp")).is_none());
    }

    #[test]
    fn links_out_of_a_root_are_followed() {
        let t = Tmp::new();
        let etc = t.0.join("etc");
        let run = t.0.join("run/resolve");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("stub-resolv.conf"), "nameserver x").unwrap();
        std::fs::write(etc.join("hosts"), "x").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(run.join("stub-resolv.conf"), etc.join("resolv.conf"))
                .unwrap();
            std::os::unix::fs::symlink(etc.join("hosts"), etc.join("hosts.link")).unwrap();
            std::os::unix::fs::symlink("/proc/self/mounts", etc.join("mtab")).unwrap();
            assert_eq!(link_targets(&[etc]), [run.join("stub-resolv.conf")]);
        }
    }

    #[test]
    fn install_dir_is_the_package() {
        assert_eq!(
            package_dir(Path::new(
                "/h/.cache/x/node_modules/@anthropic-ai/claude-code/bin/claude.exe"
            )),
            Path::new("/h/.cache/x/node_modules/@anthropic-ai/claude-code")
        );
        assert_eq!(
            package_dir(Path::new("/usr/lib/node_modules/pkg/cli.js")),
            Path::new("/usr/lib/node_modules/pkg")
        );
        assert_eq!(
            package_dir(Path::new("/opt/claude/bin/claude")),
            Path::new("/opt/claude/bin")
        );
        let t = Tmp::new();
        let script = t.0.join("claude");
        std::fs::write(&script, "#!/usr/bin/env -S sh\necho\n").unwrap();
        assert_eq!(shebang(&script).as_deref(), Some("sh"));
        std::fs::write(&script, "#!/bin/sh -e\n").unwrap();
        assert_eq!(shebang(&script).as_deref(), Some("/bin/sh"));
    }
}
