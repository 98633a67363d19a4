//! One CLI run: spawn the child in its own process group, feed the prompt on stdin, read
//! stdout line by line on a reader thread, drain stderr on another, and supervise: deadline,
//! stall watchdog, grace after the result line, heartbeats, cancellation. Whatever path a run
//! takes, its process group is killed and the child reaped before [`run`] returns.
//! This is the only place in the crate that calls `Command::spawn` for the CLI.
//! It must never be called from a pool worker: it blocks for the length of the run.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver};
use parking_lot::Mutex;
use wait_timeout::ChildExt;

use super::output::{parse_line, Line, ResultLine, Tokens, UsageSoFar};
use crate::os::{self, Signal};

/// How to start the CLI.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// Variables removed from the inherited environment (our secrets, `CLAUDECODE`).
    pub env_remove: Vec<String>,
    /// Variables added (config `[claude.env]`, per-run HOME/TMPDIR).
    pub env_add: Vec<(String, String)>,
    /// The prompt, written to stdin, which is then closed.
    pub stdin: Vec<u8>,
    /// The confinement the child enters before it executes the CLI (none: unconfined).
    pub sandbox: Option<crate::sandbox::Plan>,
}

/// Supervision settings of one run.
#[derive(Debug, Clone)]
pub struct Limits {
    pub deadline: Instant,
    pub stall: Option<Duration>,
    pub heartbeat: Duration,
    pub result_grace: Duration,
    pub kill_grace: Duration,
}

/// What the consumer of a run's events answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The consumer is gone (client disconnected): kill the run.
    Stop,
}

/// What a consumer sees while the run goes on.
#[derive(Debug)]
pub enum RunEvent<'a> {
    Line(&'a Line),
    /// Nothing came for `Limits::heartbeat`.
    Heartbeat,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The CLI exited (or was stopped after its result line and the grace).
    Exited,
    TimedOut,
    Stalled,
    /// The consumer went away.
    ClientGone,
    /// Someone cancelled it (DELETE session, cancel endpoint, shutdown).
    Cancelled,
}

/// Everything known when a run is over.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub end: End,
    pub exit_code: Option<i32>,
    pub result: Option<ResultLine>,
    /// The text streamed so far (deltas, or assistant blocks when there were none).
    pub text: String,
    pub session_id: Option<String>,
    /// The model from `system/init`.
    pub model: Option<String>,
    /// Usage from the result line or, without one, from the stream.
    pub tokens: Tokens,
    /// The last lines of stderr.
    pub stderr_tail: Vec<String>,
    pub bytes_out: u64,
    pub duration: Duration,
    /// The CLI printed its result line but did not exit within `result_grace`: its group was
    /// killed (a known upstream bug; the run still counts as ended normally).
    pub hung_after_result: bool,
}

impl Outcome {
    pub fn last_stderr_line(&self) -> Option<&str> {
        self.stderr_tail
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
    }
}

/// The CLI could not be started.
#[derive(Debug)]
pub struct SpawnError {
    pub program: String,
    pub error: std::io::Error,
    /// The child was to enter a sandbox (the error may come from there).
    pub sandboxed: bool,
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.error.kind() == std::io::ErrorKind::NotFound {
            write!(
                f,
                "the claude CLI was not found at `{}`: install it (npm install -g @anthropic-ai/claude-code) or point --claude-bin at it",
                self.program
            )
        } else if self.sandboxed {
            write!(
                f,
                "could not start the claude CLI `{}` in its sandbox: {}; check the [sandbox] settings (mode = \"off\" shows whether the sandbox is the cause)",
                self.program, self.error
            )
        } else {
            write!(
                f,
                "could not start the claude CLI `{}`: {}",
                self.program, self.error
            )
        }
    }
}

const STDERR_LINES: usize = 20;
/// How often the loop wakes up when nothing happens, to check the child and the clock.
const TICK: Duration = Duration::from_millis(100);
/// The child exited but something (a grandchild) still holds stdout open: wait this long.
const ORPHAN_STDOUT_GRACE: Duration = Duration::from_secs(2);

/// A child in its own process group. Dropping it kills the group and reaps the child, so
/// no path (early return, panic) can leak a process.
struct Group {
    child: Child,
    pgid: u32,
    exit: Option<std::process::ExitStatus>,
}

impl Group {
    fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// SIGTERM to the group, up to `grace` for the leader to go, then SIGKILL to the group
    /// (grandchildren included) and reap.
    fn terminate(&mut self, grace: Duration) {
        if self.try_exit().is_none() {
            os::kill_group(self.pgid, Signal::Term);
            if let Ok(Some(status)) = self.child.wait_timeout(grace) {
                self.exit = Some(status);
            }
        }
        self.finish();
    }

    /// SIGKILL whatever is left in the group, then reap the leader.
    fn finish(&mut self) {
        os::kill_group(self.pgid, Signal::Kill);
        if self.exit.is_none() {
            self.exit = self.child.wait().ok();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Folds one stdout line into what the run has seen so far.
#[allow(clippy::too_many_arguments)]
fn absorb(
    out: &mut Outcome,
    usage: &mut UsageSoFar,
    saw_delta: &mut bool,
    result_at: &mut Option<Instant>,
    bytes: &AtomicU64,
    line: &Line,
    n: usize,
) {
    out.bytes_out += n as u64;
    bytes.fetch_add(n as u64, Ordering::Relaxed);
    usage.observe(line);
    match line {
        Line::Init { session_id, model } => {
            out.session_id = session_id.clone();
            out.model = model.clone();
        }
        Line::Result(r) => {
            out.result = Some(r.clone());
            *result_at = Some(Instant::now());
        }
        Line::Garbage(g) => log::debug!("claude printed a non-JSON line: {g}"),
        _ => {}
    }
    if let Some(d) = line.text_delta() {
        *saw_delta = true;
        out.text.push_str(d);
    } else if !*saw_delta {
        if let Some(t) = line.assistant_text() {
            out.text.push_str(t);
        }
    }
}

/// Runs the CLI to its end. `on_spawn` learns the pid (for the run registry) once the child
/// exists; a message on `cancel` stops the run; `bytes` counts stdout bytes as they come;
/// `sink` sees every line and heartbeat and may stop the run.
pub fn run(
    inv: Invocation,
    limits: &Limits,
    cancel: &Receiver<()>,
    bytes: &AtomicU64,
    on_spawn: &mut dyn FnMut(u32),
    sink: &mut dyn FnMut(RunEvent) -> Flow,
) -> Result<Outcome, SpawnError> {
    let started = Instant::now();
    let sandboxed = inv.sandbox.is_some();
    let spawn_error = |error| SpawnError {
        program: inv.program.clone(),
        error,
        sandboxed,
    };
    // Confined: the sandbox helper (this binary) changes to the workdir, confines itself and
    // executes the CLI. Either way there is no pre_exec hook, so std uses posix_spawn.
    let mut cmd = match &inv.sandbox {
        Some(plan) => plan.command(&inv.program, &inv.args, &inv.cwd),
        None => {
            let mut cmd = Command::new(&inv.program);
            cmd.args(&inv.args).current_dir(&inv.cwd);
            cmd
        }
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    for name in &inv.env_remove {
        cmd.env_remove(name);
    }
    cmd.envs(inv.env_add.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().map_err(|e| match &inv.sandbox {
        // Not the CLI: the helper (this binary) could not be started.
        Some(plan) => spawn_error(std::io::Error::other(format!(
            "the sandbox helper {} could not be started: {e}",
            plan.helper.display()
        ))),
        None => spawn_error(e),
    })?;
    let pgid = child.id();
    on_spawn(pgid);

    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut group = Group {
        child,
        pgid,
        exit: None,
    };

    // The prompt may be larger than the pipe buffer: write it from its own thread. A confined
    // run's helper reads its plan first.
    if let Some(mut stdin) = stdin {
        let prompt = match &inv.sandbox {
            Some(plan) => [plan.encode(), inv.stdin].concat(),
            None => inv.stdin,
        };
        std::thread::Builder::new()
            .name("cli-stdin".into())
            .spawn(move || {
                let _ = stdin.write_all(&prompt);
            })
            .ok();
    }

    let (line_tx, lines) = bounded::<(Line, usize)>(64);
    if let Some(stdout) = stdout {
        std::thread::Builder::new()
            .name("cli-stdout".into())
            .spawn(move || {
                let mut reader = BufReader::with_capacity(64 * 1024, stdout);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let text = String::from_utf8_lossy(&buf);
                            if text.trim().is_empty() {
                                continue;
                            }
                            if line_tx.send((parse_line(&text), n)).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
            .ok();
    }

    let tail = Arc::new(Mutex::new(VecDeque::<String>::new()));
    let (stderr_done_tx, stderr_done) = bounded::<()>(1);
    if let Some(stderr) = stderr {
        let tail = tail.clone();
        std::thread::Builder::new()
            .name("cli-stderr".into())
            .spawn(move || {
                let mut reader = BufReader::new(stderr.take(64 * 1024 * 1024));
                let mut buf = Vec::new();
                while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                    let line: String = String::from_utf8_lossy(&buf)
                        .trim_end()
                        .chars()
                        .take(2000)
                        .collect();
                    log::debug!("claude stderr: {line}");
                    let mut t = tail.lock();
                    if t.len() == STDERR_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                    buf.clear();
                }
                drop(stderr_done_tx);
            })
            .ok();
    }

    let mut out = Outcome {
        end: End::Exited,
        exit_code: None,
        result: None,
        text: String::new(),
        session_id: None,
        model: None,
        tokens: Tokens::default(),
        stderr_tail: Vec::new(),
        bytes_out: 0,
        duration: Duration::ZERO,
        hung_after_result: false,
    };
    let mut usage = UsageSoFar::default();
    let mut saw_delta = false;
    let mut last_output = Instant::now();
    let mut last_beat = Instant::now();
    let mut result_at: Option<Instant> = None;
    let mut exited_at: Option<Instant> = None;

    let end = loop {
        let now = Instant::now();
        if now >= limits.deadline {
            break Some(End::TimedOut);
        }
        if let Some(stall) = limits.stall {
            if result_at.is_none() && now.duration_since(last_output) >= stall {
                break Some(End::Stalled);
            }
        }
        if let Some(at) = result_at {
            if now.duration_since(at) >= limits.result_grace {
                log::warn!("claude printed its result but did not exit; killing its process group");
                out.hung_after_result = true;
                break None;
            }
        }
        if group.try_exit().is_some() {
            // Exited, but stdout is still open: a process that left the group holds it. Lines
            // may still be coming (a loaded machine schedules the reader late), so wait for a
            // quiet spell, not just for the exit to be old.
            let at = *exited_at.get_or_insert(now);
            if now.duration_since(at.max(last_output)) >= ORPHAN_STDOUT_GRACE {
                break None;
            }
        }
        if now.duration_since(last_beat) >= limits.heartbeat {
            last_beat = now;
            if sink(RunEvent::Heartbeat) == Flow::Stop {
                break Some(End::ClientGone);
            }
        }
        let wait = TICK.min(limits.deadline.saturating_duration_since(now));
        select! {
            recv(lines) -> msg => match msg {
                Ok((line, n)) => {
                    last_output = Instant::now();
                    last_beat = last_output;
                    absorb(&mut out, &mut usage, &mut saw_delta, &mut result_at, bytes, &line, n);
                    if sink(RunEvent::Line(&line)) == Flow::Stop {
                        break Some(End::ClientGone);
                    }
                }
                // stdout closed: the CLI is done (or closed it and is about to be).
                Err(_) => break None,
            },
            recv(cancel) -> msg => if msg.is_ok() { break Some(End::Cancelled) },
            default(wait) => {}
        }
    };

    match end {
        Some(how) => {
            out.end = how;
            group.terminate(limits.kill_grace);
        }
        None => {
            // Normal end: give the CLI a moment to exit on its own, then clean the group.
            if group.try_exit().is_none() {
                let grace = if result_at.is_some() {
                    Duration::from_millis(200)
                } else {
                    limits.result_grace
                };
                if let Ok(Some(status)) = group.child.wait_timeout(grace) {
                    group.exit = Some(status);
                }
            }
            group.terminate(limits.kill_grace);
            // The group is dead: what it printed is still in the pipe or the channel. Take it
            // all, so that a result line is never lost to timing.
            while let Ok((line, n)) = lines.recv_timeout(Duration::from_millis(500)) {
                absorb(
                    &mut out,
                    &mut usage,
                    &mut saw_delta,
                    &mut result_at,
                    bytes,
                    &line,
                    n,
                );
                if sink(RunEvent::Line(&line)) == Flow::Stop {
                    break;
                }
            }
        }
    }
    out.exit_code = group.exit.and_then(|s| s.code());
    // Once the group is dead stderr reaches EOF; a process that left the group may hold it
    // open, so do not wait long for the last lines.
    let _ = stderr_done.recv_timeout(Duration::from_millis(500));
    out.stderr_tail = tail.lock().iter().cloned().collect();
    out.tokens = out
        .result
        .as_ref()
        .map(|r| r.tokens)
        .unwrap_or_else(|| usage.tokens());
    if let Some(r) = &out.result {
        if out.session_id.is_none() {
            out.session_id = r.session_id.clone();
        }
    }
    out.duration = started.elapsed();
    // The sandbox helper could not confine or execute the CLI: that is a failed spawn.
    if sandboxed && out.result.is_none() && out.end == End::Exited {
        if let Some(error) = crate::sandbox::helper_error(out.exit_code, &out.stderr_tail) {
            return Err(spawn_error(error));
        }
    }
    Ok(out)
}
