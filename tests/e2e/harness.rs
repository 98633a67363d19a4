//! The e2e harness: [`E2e`] is Claudeway started in-process (tests/it/support.rs) with the
//! real `claude` CLI as `claude_bin`, the CLI's environment pointed at a fresh
//! [`Mock`](crate::mock::Mock) of the Anthropic API, and a scratch HOME. It also runs the CLI
//! directly (for comparing with what Claudeway reports) and finds the CLI processes a test
//! started (through a marker variable in their environment, read from /proc).
//!
//! The tests run only when `CLAUDEWAY_E2E_CLI` names the CLI binary (`make e2e` installs it
//! and sets it); otherwise [`E2e::start`] prints that the test was skipped and returns `None`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::thread::JoinHandle;
use std::time::Duration;

use claudeway::config::Config;
use serde_json::Value;
use wait_timeout::ChildExt;

use crate::mock::Mock;
use crate::support::*;

/// Names the real CLI binary; unset, every e2e test is skipped.
pub const CLI_VAR: &str = "CLAUDEWAY_E2E_CLI";
/// Put into every CLI run's environment, so that a test finds its own processes in /proc.
pub const MARKER_VAR: &str = "CLAUDEWAY_E2E_MARKER";

static ENV: Once = Once::new();
static N: AtomicUsize = AtomicUsize::new(0);

/// The CLI to test, or `None` after printing that this test is skipped.
pub fn cli() -> Option<PathBuf> {
    let Some(path) = std::env::var_os(CLI_VAR).filter(|v| !v.is_empty()) else {
        let thread = std::thread::current();
        let name = thread.name().filter(|n| *n != "main").unwrap_or("e2e test");
        // Straight to stderr, past the test harness's capture, so that a skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "e2e: {name} skipped: set {CLI_VAR} to the claude binary (`make e2e` does)"
        );
        return None;
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{CLI_VAR}={} is not a file; run tests/e2e/install-cli.sh",
        path.display()
    );
    Some(path)
}

/// Keeps the outer environment from steering the CLI: an `ANTHROPIC_*` or `CLAUDE_*`
/// variable of whoever runs the tests (a proxy token, another config dir, a default model)
/// would pass through Claudeway to the CLI. Runs once, before any server starts.
fn hermetic_env() {
    ENV.call_once(|| {
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            let outer = (k.starts_with("ANTHROPIC_") || k.starts_with("CLAUDE_"))
                && !k.starts_with("CLAUDEWAY_");
            if outer || k.ends_with("_PROXY") || k.ends_with("_proxy") {
                std::env::remove_var(&k);
            }
        }
    });
}

/// True when this process runs as root (effective uid 0), from /proc/self/status.
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The environment the real CLI needs to run offline against `mock`: the documented one
/// (API key, base URL, no nonessential traffic, no retries, no updater or telemetry), a
/// scratch HOME with TMPDIR inside it, and `IS_SANDBOX=1` only as root (the CLI refuses
/// `--dangerously-skip-permissions` as root without it).
pub fn cli_env(mock: &Mock, home: &Path, marker: &str) -> Vec<(String, String)> {
    let tmp = home.join("tmp");
    std::fs::create_dir_all(&tmp).expect("scratch TMPDIR");
    let mut env: Vec<(String, String)> = [
        ("ANTHROPIC_BASE_URL", mock.base_url()),
        ("ANTHROPIC_API_KEY", "sk-test".into()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".into()),
        ("DISABLE_AUTOUPDATER", "1".into()),
        ("DISABLE_TELEMETRY", "1".into()),
        ("DISABLE_ERROR_REPORTING", "1".into()),
        ("NO_PROXY", "127.0.0.1,localhost".into()),
        ("HOME", home.to_string_lossy().into_owned()),
        ("TMPDIR", tmp.to_string_lossy().into_owned()),
        (MARKER_VAR, marker.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if running_as_root() {
        env.push(("IS_SANDBOX".into(), "1".into()));
    }
    env
}

/// Claudeway with the real CLI, a mock API and a scratch HOME. Dropped in field order: the
/// server stops first, then the mock, then the scratch HOME is removed.
pub struct E2e {
    pub srv: TestServer,
    pub mock: Mock,
    pub cli: PathBuf,
    /// The CLI's environment (also used by [`E2e::run_cli`]).
    pub env: Vec<(String, String)>,
    pub marker: String,
    pub home: TempDir,
    /// The config the server started with, for [`E2e::restart`].
    config: Config,
}

impl E2e {
    /// `None` (test skipped) when no CLI is named.
    pub fn start() -> Option<E2e> {
        E2e::with(|_| {})
    }

    /// Like [`E2e::start`], with `f` changing the config after the e2e defaults.
    pub fn with(f: impl FnOnce(&mut Config)) -> Option<E2e> {
        let cli = cli()?;
        hermetic_env();
        let mock = Mock::start();
        let home = TempDir::new("e2e-home");
        let marker = format!(
            "{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let env = cli_env(&mock, home.path(), &marker);
        let mut config = None;
        let srv = TestServer::with(|cfg| {
            cfg.claude_bin = cli.to_string_lossy().into_owned();
            cfg.claude_env = env.clone();
            // The production defaults: the real CLI gets the grace it would get.
            cfg.kill_grace = Duration::from_secs(2);
            cfg.result_grace = Duration::from_secs(5);
            f(cfg);
            config = Some(cfg.clone());
        });
        Some(E2e {
            srv,
            mock,
            cli,
            env,
            marker,
            home,
            config: config.expect("the config closure ran"),
        })
    }

    /// Stops the server and starts it again on the same directories (state, workdir, logs)
    /// and the same CLI HOME, as a restarted process would. The port changes; `srv.addr`
    /// follows it.
    pub fn restart(&mut self) {
        if let Some(r) = self.srv.running.take() {
            r.shutdown(Duration::from_secs(5), &|| false);
        }
        let running = claudeway::server::start(self.config.clone()).expect("server restarts");
        self.srv.addr = running.addr;
        self.srv.running = Some(running);
    }

    /// POSTs `body` to `path` as the USER key on another thread (for watching a run in flight).
    pub fn post_in_background(&self, path: &str, body: Value) -> JoinHandle<Resp> {
        let (addr, path) = (self.srv.addr, path.to_string());
        std::thread::spawn(move || {
            request(
                addr,
                "POST",
                &path,
                Some(USER),
                &[("Content-Type", "application/json")],
                body.to_string().as_bytes(),
            )
        })
    }

    /// Runs the real CLI directly (not through Claudeway) with the same environment, `args`
    /// and `prompt` on stdin, in a fresh directory under the scratch HOME, and returns its
    /// stdout parsed as JSON (use `--output-format json`). Panics after 60 s.
    pub fn run_cli(&self, args: &[&str], prompt: &str) -> Value {
        let cwd = self
            .home
            .path()
            .join(format!("direct-{}", N.fetch_add(1, Ordering::SeqCst)));
        std::fs::create_dir_all(&cwd).unwrap();
        let mut child = Command::new(&self.cli)
            .args(args)
            .current_dir(&cwd)
            .env_remove("CLAUDECODE")
            .env_remove("WRAPPER_KEYS")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the CLI starts");
        let mut stdin = child.stdin.take().unwrap();
        let prompt = prompt.to_string();
        std::thread::spawn(move || {
            let _ = stdin.write_all(prompt.as_bytes());
        });
        let mut stdout = child.stdout.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let mut stderr = child.stderr.take().unwrap();
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let status = match child.wait_timeout(Duration::from_secs(60)).unwrap() {
            Some(s) => s,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the CLI did not finish in 60 s");
            }
        };
        let (out, err) = (out.join().unwrap(), err.join().unwrap());
        serde_json::from_str(out.trim()).unwrap_or_else(|e| {
            panic!("CLI output is not JSON ({e}); exit {status}; stdout: {out}; stderr: {err}")
        })
    }

    /// The command lines of this test's live CLI processes (and of what they started).
    pub fn cli_argvs(&self) -> Vec<Vec<String>> {
        self.cli_processes()
            .into_iter()
            .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|c| {
                c.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .collect()
    }

    /// Pids of live processes started by this test's CLI runs (they carry its marker).
    pub fn cli_processes(&self) -> Vec<u32> {
        let needle = format!("{MARKER_VAR}={}\0", self.marker);
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|env| contains(&env, needle.as_bytes()))
                    .unwrap_or(false)
            })
            .filter(|pid| process_alive(*pid))
            .collect()
    }
}

/// Two costs in dollars are the same (the CLI's own sums, compared across runs).
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// The claudeway binary as a child process with the real CLI, for what only a real process
/// shows (its own `/proc/<pid>/environ`): started in a scratch directory with `config` as
/// ./claudeway.toml, `env` in its environment (the CLI inherits it) and `WRAPPER_KEYS` set
/// to `keys`. Killed on drop.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    /// Removed after the child is killed.
    _dir: TempDir,
}

impl Gateway {
    pub fn start(cli: &Path, env: &[(String, String)], keys: &str, config: &str) -> Gateway {
        hermetic_env();
        let dir = TempDir::new("e2e-gateway");
        std::fs::write(dir.path().join("claudeway.toml"), config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_claudeway"))
            .current_dir(dir.path())
            .args(["--host", "127.0.0.1", "--port", "0"])
            .arg("--claude-bin")
            .arg(cli)
            .args(["--workdir", "work", "--log-dir", "logs"])
            .env_remove("CLAUDECODE")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("WRAPPER_KEYS", keys)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("claudeway starts");
        let (tx, rx) = crossbeam_channel::unbounded();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            // Keeps reading, so the server never blocks on a full pipe.
            for l in BufReader::new(stderr).lines() {
                let Ok(l) = l else { break };
                let _ = tx.send(l);
            }
        });
        let mut seen = Vec::new();
        let addr = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(l) => {
                    if let Some(a) = l.split(" listening on ").nth(1) {
                        break a.trim().parse().expect("an address");
                    }
                    seen.push(l);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("claudeway did not start: {seen:?}");
                }
            }
        };
        Gateway {
            child,
            addr,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
