//! One CLI turn for a request, from admission to audit line: wait for a place at the
//! [`Gate`](crate::runs::Gate), check the key's budget, register the run, run the CLI under its
//! limits (`--max-budget-usd` set to what the budget has left) while a sink watches the lines,
//! then turn the [`Outcome`] into the [`TaskResponse`] (or the error) the client gets, write the
//! audit line and count the run in the metrics. /task, the streams, sessions and approvals all
//! come through here, so they answer and account alike. Runs on a run thread, never on a worker.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::app::App;
use crate::audit::Entry;
use crate::claude::{
    self, args, Denial, End, Flow, Invocation, Limits, Outcome, RunEvent, RunSpec, Tokens,
};
use crate::error::{ApiError, Kind};
use crate::events::Event;
use crate::runs::{Refused, Registration, Slot};

/// A CLI turn to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub request_id: String,
    pub key_id: String,
    /// The route as the audit log names it (`/task`, `/session/{id}`, ...).
    pub route: String,
    /// The conversation (= session) id the client sees.
    pub session_id: String,
    pub spec: RunSpec,
    pub prompt: String,
    pub cwd: PathBuf,
    pub timeout: Duration,
    /// When the request arrived: the timeout counts from here, queue wait included.
    pub arrived: Instant,
    /// The audit message on success ("task completed", "approval granted", ...).
    pub done_message: &'static str,
    /// Extra variables for this run (a per-key HOME, ...).
    pub env: Vec<(String, String)>,
}

/// The answer of /task, session turns and approvals, and the `done` event of streams.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct TaskResponse {
    pub session_id: String,
    pub result: Option<String>,
    pub success: bool,
    pub duration_ms: u64,
    pub tokens: Option<Tokens>,
    pub cost_usd: Option<f64>,
    pub error: Option<String>,
    /// Omitted when empty: the original's clients test for its presence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permission_denials: Vec<Denial>,
}

/// A finished turn: what the client gets, and the error when the turn failed before the CLI
/// could give a result (timeout, spawn failure, ...).
#[derive(Debug)]
pub struct Finished {
    pub response: TaskResponse,
    pub error: Option<ApiError>,
    pub outcome: Option<Outcome>,
}

/// Prefix of `error` when the CLI itself reports a failure.
pub const CLI_ERROR: &str = "Claude CLI returned an error";

/// Runs `job`; `sink` sees every line and heartbeat (streams forward them). Writes the audit
/// line before returning.
pub fn execute(app: &App, job: &Job, sink: &mut dyn FnMut(RunEvent) -> Flow) -> Finished {
    match admit(app, job) {
        Ok(admitted) => run(app, job, admitted, sink),
        Err(e) => fail(job, e),
    }
}

/// A job that has its run place, and its entry in the run registry.
pub struct Admitted {
    slot: Slot,
    reg: Registration,
}

/// The error of a run cancelled before its CLI started (in the queue, or just after); the
/// audit line says "task cancelled" for it.
const CANCELLED_BEFORE_START: &str = "the run was cancelled before its CLI started";

/// Registers `job` (listed as `queued`, cancellable), waits for a run place (the queue; its
/// wait counts toward the job's timeout), then checks the key's budget (runs that went before
/// may have spent it). A refusal is audited here and returned as the error to answer.
pub fn admit(app: &App, job: &Job) -> Result<Admitted, ApiError> {
    let reg = app.registry.register(
        &job.request_id,
        &job.key_id,
        Some(&job.session_id),
        &job.route,
    );
    let key = app.config.keys.get(&job.key_id);
    let cap = key.and_then(|k| k.limits.max_concurrent);
    let refuse = |e: ApiError| {
        let f = fail(job, e);
        audit(app, job, &f);
        f.error.expect("a refusal is an error")
    };
    let slot = app
        .gate
        .acquire(&job.key_id, cap, job.arrived + job.timeout, &|| {
            reg.cancel_requested()
        })
        .map_err(|refused| refuse(refused_error(app, job, refused, cap)))?;
    if let Some(key) = key {
        if let Some(left) = app
            .budgets
            .left(&key.id, &key.limits, crate::clock::now())
            .filter(|l| l.is_spent())
        {
            drop(slot);
            return Err(refuse(crate::limits::budget_error(&key.id, &left)));
        }
    }
    reg.set_running();
    Ok(Admitted { slot, reg })
}

/// The `--max-budget-usd` of a run: what the request asked, at most what the key's budget has
/// left now (rounded down to the CLI's cents of cents, at least the smallest amount).
fn budget_cap(app: &App, job: &Job) -> Option<f64> {
    let asked = job.spec.max_budget_usd;
    let left = app.config.keys.get(&job.key_id).and_then(|k| {
        app.budgets
            .left(&k.id, &k.limits, crate::clock::now())
            .map(|l| ((l.usd * 10_000.0).floor() / 10_000.0).max(crate::budget::MIN_RUN_USD))
    });
    match (asked, left) {
        (Some(a), Some(l)) => Some(a.min(l)),
        (a, l) => a.or(l),
    }
}

/// Runs an admitted `job` (see [`admit`]); the place is freed when the run is over. Writes
/// the audit line before returning.
pub fn run(
    app: &App,
    job: &Job,
    admitted: Admitted,
    sink: &mut dyn FnMut(RunEvent) -> Flow,
) -> Finished {
    let Admitted { slot, reg } = admitted;
    // Cancelled between getting its place and here: no CLI for it.
    if reg.cancel_requested() {
        drop(reg);
        drop(slot);
        let f = fail(job, ApiError::new(Kind::Conflict, CANCELLED_BEFORE_START));
        audit(app, job, &f);
        return f;
    }
    app.publish(Event::TaskStarted {
        key_id: job.key_id.clone(),
        session_id: job.session_id.clone(),
        route: job.route.clone(),
        model: job.spec.model.clone(),
    });
    // The run happens in its owner's CLI home, under its owner's sandbox policy.
    let owner = owner(app, job);
    let home = match app.homes.prepare(&owner) {
        Ok(h) => h,
        Err(e) => {
            let f = fail(
                job,
                ApiError::internal(format!(
                    "cannot prepare the CLI home of key {owner}: {e}; check --state-dir"
                )),
            );
            drop(reg);
            drop(slot);
            audit(app, job, &f);
            return f;
        }
    };
    if let claude::Conversation::Resume(id) = &job.spec.conversation {
        app.homes.adopt(&owner, id);
    }
    let mut env = app.config.claude_env.clone();
    env.extend(job.env.iter().cloned());
    env.extend(home.env.iter().cloned());
    let mut spec = job.spec.clone();
    spec.max_budget_usd = budget_cap(app, job);
    let inv = Invocation {
        program: app.config.claude_bin.clone(),
        args: args::build(&spec),
        cwd: job.cwd.clone(),
        env_remove: app.env_remove.clone(),
        env_add: env,
        stdin: job.prompt.as_bytes().to_vec(),
        sandbox: app.sandbox.plan(&owner, &job.cwd, &home.home),
    };
    let limits = Limits {
        deadline: job.arrived + job.timeout,
        stall: app.config.stall,
        heartbeat: app.config.heartbeat,
        result_grace: app.config.result_grace,
        kill_grace: app.config.kill_grace,
    };
    let mut on_spawn = |pid| reg.set_pid(pid);
    let finished =
        match claude::process::run(inv, &limits, &reg.cancel, &reg.bytes, &mut on_spawn, sink) {
            // A missing cwd fails the spawn with ENOENT too: do not blame the CLI for it.
            Err(_) if !job.cwd.is_dir() => fail(job, workdir_gone(job)),
            Err(e) => fail(job, ApiError::internal(app.scrub(&e.to_string()))),
            Ok(outcome) => conclude(app, job, outcome),
        };
    home.clean();
    drop(reg);
    // The audit line (and so the run's cost) is in before the place goes to the next run, so
    // that a run waiting behind this one sees what this one spent.
    audit(app, job, &finished);
    drop(slot);
    finished
}

/// The key whose home and sandbox policy a run uses: the session's owner (the admin may drive
/// another key's session), else the caller.
fn owner(app: &App, job: &Job) -> String {
    app.sessions
        .get(&job.session_id)
        .map(|s| s.key_id)
        .unwrap_or_else(|| job.key_id.clone())
}

/// The run's workdir no longer exists: something outside Claudeway removed it.
fn workdir_gone(job: &Job) -> ApiError {
    ApiError::new(
        Kind::Conflict,
        format!(
            "the workdir {} no longer exists; start a new session (or create the directory again)",
            job.cwd.display()
        ),
    )
}

fn refused_error(app: &App, job: &Job, refused: Refused, cap: Option<usize>) -> ApiError {
    let timeout = job.timeout;
    match refused {
        Refused::KeyBusy => {
            let cap = cap.unwrap_or(0);
            ApiError::new(
                Kind::RateLimited,
                format!(
                    "key `{}` already has {cap} runs running and {cap} waiting (its max_concurrent); retry when one has finished",
                    job.key_id
                ),
            )
            .with_header("Retry-After", "5")
            .with_header("X-RateLimit-Limit", cap.to_string())
            .with_header("X-RateLimit-Remaining", "0")
            .with_header("X-RateLimit-Reset", "5")
        }
        Refused::QueueFull => ApiError::new(
            Kind::Overloaded,
            format!(
                "all {} run places are busy and the queue is full; retry later",
                app.config.max_concurrent
            ),
        )
        .with_header("Retry-After", "5"),
        Refused::Timeout => ApiError::new(
            Kind::Timeout,
            format!("timeout_secs ({}) ran out while waiting for a free run place; retry later or raise timeout_secs", timeout.as_secs()),
        ),
        Refused::Closed => shutting_down(),
        Refused::Cancelled => ApiError::new(Kind::Conflict, CANCELLED_BEFORE_START),
    }
}

fn shutting_down() -> ApiError {
    ApiError::new(
        Kind::Overloaded,
        "the server is shutting down; retry in a moment",
    )
    .with_header("Retry-After", "5")
}

fn fail(job: &Job, error: ApiError) -> Finished {
    Finished {
        response: TaskResponse {
            session_id: job.session_id.clone(),
            result: None,
            success: false,
            duration_ms: job.arrived.elapsed().as_millis() as u64,
            tokens: None,
            cost_usd: None,
            error: Some(error.message.clone()),
            permission_denials: Vec::new(),
        },
        error: Some(error),
        outcome: None,
    }
}

fn conclude(app: &App, job: &Job, out: Outcome) -> Finished {
    let duration_ms = job.arrived.elapsed().as_millis() as u64;
    let secs = job.timeout.as_secs();
    let error = match out.end {
        End::TimedOut => Some(ApiError::new(
            Kind::Timeout,
            format!("the run took longer than timeout_secs ({secs}) and was stopped; raise timeout_secs or split the task"),
        )),
        End::Stalled => Some(ApiError::new(
            Kind::Stalled,
            format!(
                "the CLI printed nothing for {} s and was stopped (stall watchdog)",
                app.config.stall.map(|d| d.as_secs()).unwrap_or(0)
            ),
        )),
        End::Cancelled if app.is_shutting_down() => Some(shutting_down()),
        End::Cancelled => Some(ApiError::new(Kind::Conflict, "the run was cancelled before it finished")),
        End::ClientGone => Some(ApiError::new(Kind::Conflict, "the client went away; the run was stopped")),
        End::Exited if out.result.is_none() => Some(no_result_error(app, &out)),
        End::Exited => None,
    };
    let result = out.result.as_ref();
    let success =
        error.is_none() && result.is_some_and(|r| r.ok()) && out.exit_code.is_none_or(|c| c == 0);
    let text = match result {
        Some(r) => r
            .result
            .clone()
            .or_else(|| (!out.text.is_empty()).then(|| out.text.clone())),
        None => (!out.text.is_empty()).then(|| out.text.clone()),
    };
    let error_text = match (&error, result) {
        (Some(e), _) => Some(e.message.clone()),
        (None, Some(r)) if !success => Some(format!("{CLI_ERROR}: {}", app.scrub(&r.error_text()))),
        _ => None,
    };
    Finished {
        response: TaskResponse {
            session_id: job.session_id.clone(),
            result: text,
            success,
            duration_ms,
            tokens: Some(out.tokens),
            cost_usd: result.and_then(|r| r.cost_usd),
            error: error_text,
            permission_denials: result.map(|r| r.denials.clone()).unwrap_or_default(),
        },
        error,
        outcome: Some(out),
    }
}

/// The CLI exited without a result line: say why, in words that help.
fn no_result_error(app: &App, out: &Outcome) -> ApiError {
    let last = out
        .last_stderr_line()
        .map(|l| app.scrub(l))
        .unwrap_or_default();
    if last.contains("No conversation found with session ID") {
        return ApiError::new(
            Kind::Conflict,
            "the CLI no longer has this conversation (its transcript is gone); start a new session",
        );
    }
    if last.contains("cannot be used with root/sudo privileges") {
        return ApiError::internal(
            "the claude CLI refuses --dangerously-skip-permissions when run as root: run Claudeway as a non-root user, set IS_SANDBOX=1 in its environment if this machine is a sandbox, or start it with --no-permissions-bypass",
        );
    }
    let code = out
        .exit_code
        .map(|c| c.to_string())
        .unwrap_or_else(|| "a signal".into());
    if last.is_empty() {
        ApiError::internal(format!(
            "the claude CLI exited ({code}) without a result and printed nothing on stderr"
        ))
    } else {
        ApiError::internal(format!(
            "the claude CLI exited ({code}) without a result: {last}"
        ))
    }
}

fn audit(app: &App, job: &Job, f: &Finished) {
    let out = f.outcome.as_ref();
    let message = match (out.map(|o| o.end), &f.error, f.response.success) {
        (_, None, true) => job.done_message,
        (Some(End::TimedOut), _, _) => "task timed out",
        (Some(End::Stalled), _, _) => "task stalled",
        (Some(End::Cancelled | End::ClientGone), _, _) => "task cancelled",
        (None, Some(e), _) if e.message == CANCELLED_BEFORE_START => "task cancelled",
        (None, Some(e), _)
            if matches!(
                e.kind,
                Kind::Overloaded | Kind::RateLimited | Kind::BudgetExceeded
            ) =>
        {
            "task refused"
        }
        (None, Some(e), _) if e.kind == Kind::Timeout => "task timed out",
        _ => "task failed",
    };
    let mut e = Entry::new(&job.request_id, &job.route, Some(&job.key_id), message);
    if let Some(err) = &f.error {
        e = e.failed(err.status(), err.code());
        if out.is_some_and(|o| o.end == End::ClientGone) {
            e.status = 499;
            e.code = Some("CLIENT_CLOSED".into());
        }
    } else if !f.response.success {
        e.success = false;
        e.level = "WARN".into();
    }
    e.session_id = Some(job.session_id.clone());
    e.model = Some(job.spec.model.clone());
    e.model_resolved = out.and_then(|o| {
        o.result
            .as_ref()
            .and_then(|r| r.model.clone())
            .or_else(|| o.model.clone())
    });
    e.claude_exit_code = out.and_then(|o| o.exit_code);
    e.duration_ms = f.response.duration_ms;
    e.tokens = f.response.tokens;
    e.cost_usd = f.response.cost_usd;
    let r = &f.response;
    let excerpt: String = r
        .error
        .as_deref()
        .or(r.result.as_deref())
        .unwrap_or("")
        .chars()
        .take(500)
        .collect();
    let killed = out.and_then(|o| match o.end {
        End::TimedOut => Some("timeout"),
        End::Stalled => Some("stalled"),
        End::Cancelled => Some("cancelled"),
        End::ClientGone => Some("client_gone"),
        End::Exited if o.hung_after_result => Some("hung_after_result"),
        End::Exited => None,
    });
    app.metrics.run(&crate::metrics::Run {
        key_id: &job.key_id,
        model: e
            .model_resolved
            .as_deref()
            .unwrap_or(job.spec.model.as_str()),
        outcome: message,
        duration: out.map(|_| job.arrived.elapsed()),
        tokens: r.tokens,
        cost_usd: r.cost_usd,
        killed,
    });
    app.publish(Event::TaskFinished {
        key_id: job.key_id.clone(),
        session_id: job.session_id.clone(),
        route: job.route.clone(),
        model: job.spec.model.clone(),
        outcome: message.to_string(),
        success: r.success,
        duration_ms: r.duration_ms,
        tokens: r.tokens,
        cost_usd: r.cost_usd,
        excerpt,
    });
    if !r.permission_denials.is_empty() {
        app.publish(Event::PermissionDenied {
            key_id: job.key_id.clone(),
            session_id: job.session_id.clone(),
            denials: r.permission_denials.clone(),
        });
    }
    app.audit.record(e);
}
