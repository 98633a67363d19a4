//! One turn of a stored session, shared by `POST /session/{id}`, its SSE and WebSocket forms,
//! approvals and the Telegram buttons: wait for the session's turn (arrival order, the wait
//! counts toward the timeout), build the job (a new CLI conversation on the first turn, a
//! `--resume` after; the session's model and system prompt re-applied every turn), and fold
//! the finished run into the session's counters and pending denials. Blocking: only ever
//! called on a run thread or a plugin thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::claude::{Conversation, Denial, RunSpec};
use crate::error::{ApiError, Kind};
use crate::runner::{Finished, Job};
use crate::sessions::{Session, Turn};

/// A turn to take in a session.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub key_id: String,
    pub session_id: String,
    pub prompt: String,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub timeout_secs: Option<u64>,
    /// `--allowedTools` for this turn only (approvals).
    pub allowed_tools: Vec<String>,
    /// The request's agent options (`max_turns`, `permission_mode`, ...), this turn only.
    pub options: crate::options::AgentOptions,
    pub request_id: String,
    pub route: String,
    pub arrived: Instant,
    pub done_message: &'static str,
}

impl TurnRequest {
    /// The turn a request body asks for (`prompt`, and `model`, `system_prompt`,
    /// `timeout_secs` that override the session's for this turn).
    pub fn from_body(
        app: &App,
        body: &crate::input::Body,
        key_id: &str,
        session_id: &str,
        request_id: &str,
        route: &str,
        arrived: Instant,
    ) -> Result<TurnRequest, ApiError> {
        let model = body.opt_string("model")?;
        if let Some(m) = &model {
            crate::claude::args::validate_model(m).map_err(ApiError::bad_request)?;
        }
        Ok(TurnRequest {
            key_id: key_id.to_string(),
            session_id: session_id.to_string(),
            prompt: body.string("prompt")?,
            model,
            system_prompt: crate::options::bounded_string(body, "system_prompt")?,
            timeout_secs: body.opt_u64("timeout_secs", 1, app.config.max_timeout_secs)?,
            allowed_tools: Vec::new(),
            options: crate::options::AgentOptions::parse(app, body, key_id)?,
            request_id: request_id.to_string(),
            route: route.to_string(),
            arrived,
            done_message: "task completed",
        })
    }
}

/// The 404 every unknown or foreign session gets (ids must not leak).
pub fn not_found() -> ApiError {
    ApiError::not_found("no such session for this key; start one with POST /session/start")
}

/// The session `id` if `key_id` may use it.
pub fn find(app: &App, key_id: &str, id: &str) -> Result<Session, ApiError> {
    app.sessions
        .get_for(id, key_id, app.config.keys.is_admin(key_id))
        .ok_or_else(not_found)
}

/// Waits for the session's turn and builds its job. The returned `Turn` must be held until
/// [`finish`] has run.
pub fn prepare(app: &App, req: &TurnRequest) -> Result<(Turn, Job), ApiError> {
    let session = find(app, &req.key_id, &req.session_id)?;
    let timeout = Duration::from_secs(req.timeout_secs.unwrap_or(session.timeout_secs));
    let lock = app.sessions.lock_for(&session.session_id);
    let turn = lock.acquire(req.arrived + timeout).ok_or_else(|| {
        ApiError::new(
            Kind::Timeout,
            format!(
                "timeout_secs ({}) ran out while this session's previous turn was still running",
                timeout.as_secs()
            ),
        )
    })?;
    // It may have been deleted (or changed) while we waited.
    let session = find(app, &req.key_id, &req.session_id)?;
    let conversation = if session.started {
        Conversation::Resume(session.session_id.clone())
    } else {
        Conversation::New(session.session_id.clone())
    };
    let model = req.model.clone().unwrap_or_else(|| session.model.clone());
    let mut spec = RunSpec::new(&model, conversation, app.config.permissions_bypass);
    spec.system_prompt = req
        .system_prompt
        .clone()
        .or_else(|| session.system_prompt.clone());
    spec.allowed_tools = req.allowed_tools.clone();
    req.options.apply(&mut spec);
    let job = Job {
        request_id: req.request_id.clone(),
        key_id: req.key_id.clone(),
        route: req.route.clone(),
        session_id: session.session_id.clone(),
        spec,
        prompt: req.prompt.clone(),
        cwd: session.workdir.clone(),
        timeout,
        arrived: req.arrived,
        done_message: req.done_message,
        env: Vec::new(),
    };
    Ok((turn, job))
}

/// True when the run failed because the CLI already has a conversation with this id (a
/// crash between the CLI creating it and us recording that): the turn should resume it.
pub fn needs_resume(f: &Finished) -> bool {
    f.response.result.is_none()
        && f.outcome.as_ref().is_some_and(|o| {
            o.last_stderr_line()
                .is_some_and(|l| l.contains("is already in use"))
        })
}

/// Switches a job to `--resume` (after [`needs_resume`]).
pub fn resume_instead(app: &App, job: &mut Job) {
    job.spec.conversation = Conversation::Resume(job.session_id.clone());
    app.sessions.update(&job.session_id, |s| s.started = true);
}

/// Folds a finished turn into its session. `keep_pending` are earlier denials that stay
/// pending (approvals that approved only some).
pub fn finish(app: &App, job: &Job, f: &Finished, keep_pending: Vec<Denial>) {
    let started = f
        .outcome
        .as_ref()
        .is_some_and(|o| o.session_id.is_some() || o.result.is_some());
    let now = crate::clock::now();
    app.sessions.update(&job.session_id, |s| {
        s.task_count += 1;
        if let Some(t) = &f.response.tokens {
            s.tokens.add(t);
        }
        s.cost_usd += f.response.cost_usd.unwrap_or(0.0);
        s.last_active_at = crate::clock::rfc3339(now);
        s.last_active_unix = now.unix_timestamp();
        s.started |= started;
        let mut pending = keep_pending;
        pending.extend(f.response.permission_denials.iter().cloned());
        s.pending = pending;
    });
}

/// Runs a prepared turn to its end (resuming instead if the CLI says the id is taken) and
/// folds it into the session.
pub fn run(app: &Arc<App>, mut job: Job, turn: Turn, keep_pending: Vec<Denial>) -> Finished {
    let mut f = crate::runner::execute(app, &job, &mut |_| crate::claude::Flow::Continue);
    if needs_resume(&f) {
        resume_instead(app, &mut job);
        f = crate::runner::execute(app, &job, &mut |_| crate::claude::Flow::Continue);
    }
    // A turn that never started its CLI (refused, cancelled in the queue, not spawned) changes
    // nothing in the session: its pending approvals stay.
    if f.outcome.is_some() {
        finish(app, &job, &f, keep_pending);
    }
    drop(turn);
    f
}

/// A one-shot run (`/task`, its streams) that left permission denials is kept as a
/// short-lived session (its conversation and workdir) so that the same key can approve it
/// with `POST /session/{id}/approve`. Returns true if it was kept (then the caller must not
/// remove the workdir).
pub fn keep_for_approval(app: &App, job: &Job, f: &Finished, owns_workdir: bool) -> bool {
    if f.response.permission_denials.is_empty() {
        return false;
    }
    let now = crate::clock::now();
    let stamp = crate::clock::rfc3339(now);
    app.sessions.insert(Session {
        session_id: job.session_id.clone(),
        key_id: job.key_id.clone(),
        kind: crate::sessions::Kind::Task,
        model: job.spec.model.clone(),
        system_prompt: job.spec.system_prompt.clone(),
        timeout_secs: job.timeout.as_secs(),
        workdir: job.cwd.clone(),
        owns_workdir,
        created_at: stamp.clone(),
        last_active_at: stamp,
        last_active_unix: now.unix_timestamp(),
        expires_unix: Some(now.unix_timestamp() + app.config.approval_ttl.as_secs() as i64),
        task_count: 1,
        tokens: f.response.tokens.unwrap_or_default(),
        cost_usd: f.response.cost_usd.unwrap_or(0.0),
        started: true,
        pending: f.response.permission_denials.clone(),
    });
    true
}

/// Removes a workdir that a session or a task created, unless another session works in it
/// or below it (a client may start a session in any directory under the workdir, another
/// session's included): that session would lose its files and could not run again.
pub fn remove_workdir(app: &App, dir: &std::path::Path) {
    if app.sessions.uses_dir(dir) {
        log::info!("kept {}: another session works in it", dir.display());
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Removes a session: cancels its turn in flight, forgets it, and (on a background thread,
/// once its runs are gone) deletes the workdir it created and the CLI's transcript.
pub fn remove(app: &Arc<App>, session_id: &str) -> Option<Session> {
    let s = app.sessions.remove(session_id)?;
    app.threads.forget(session_id);
    app.registry.cancel_session(session_id);
    let app = app.clone();
    let s2 = s.clone();
    let _ = std::thread::Builder::new()
        .name("session-cleanup".into())
        .spawn(move || {
            let until = Instant::now() + Duration::from_secs(30);
            while app
                .registry
                .list()
                .iter()
                .any(|r| r.session_id.as_deref() == Some(&s2.session_id))
                && Instant::now() < until
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            if s2.owns_workdir {
                remove_workdir(&app, &s2.workdir);
            }
            for t in app.homes.transcripts(&s2.key_id, &s2.session_id) {
                let _ = if t.is_dir() {
                    std::fs::remove_dir_all(t)
                } else {
                    std::fs::remove_file(t)
                };
            }
        });
    Some(s)
}
