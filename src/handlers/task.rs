//! `POST /task`: one prompt, one CLI run, one JSON answer. The worker only hands the request to
//! a run thread (the router has checked the key, its rate limit and budget); there the body is
//! read and validated, the CLI runs, and the answer and the audit line are written. Without a
//! `workdir` the task gets a fresh directory under the base workdir, removed afterwards.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::claude::{args, Conversation, Flow, RunSpec};
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::input::Body;
use crate::options::{bounded_string, AgentOptions};
use crate::reply::Reply;
use crate::runner::{self, Job};
use crate::stream::{self, Mode};

/// The options every one-shot task takes (`/task`, `/task/stream`, `/task/ws`).
#[derive(Debug, Clone)]
pub struct TaskRequest {
    pub prompt: String,
    pub model: String,
    pub system_prompt: Option<String>,
    pub workdir: Option<String>,
    pub timeout: Duration,
    pub options: AgentOptions,
}

impl TaskRequest {
    /// The task `body` asks for, on behalf of `key_id` (whose budget bounds `max_budget_usd`).
    pub fn parse(app: &App, body: &Body, key_id: &str) -> Result<TaskRequest, ApiError> {
        let prompt = body.string("prompt")?;
        let model = body.opt_string("model")?.unwrap_or_else(|| "sonnet".into());
        args::validate_model(&model).map_err(ApiError::bad_request)?;
        let max = app.config.max_timeout_secs;
        let timeout = body
            .opt_u64("timeout_secs", 1, max)?
            .unwrap_or(app.config.default_timeout_secs);
        Ok(TaskRequest {
            prompt,
            model,
            system_prompt: bounded_string(body, "system_prompt")?,
            workdir: body.opt_string("workdir")?,
            timeout: Duration::from_secs(timeout),
            options: AgentOptions::parse(app, body, key_id)?,
        })
    }

    /// The run's working directory: the requested one (confined, see
    /// `App::confine_workdir`), or a fresh one under `<workdir>/tasks/` that the caller
    /// removes when done (`true`).
    pub fn resolve_workdir(
        &self,
        app: &App,
        key_id: &str,
        id: &str,
    ) -> Result<(PathBuf, bool), ApiError> {
        match &self.workdir {
            Some(w) => Ok((app.confine_workdir(key_id, w)?, false)),
            None => {
                let dir = app.config.workdir.join("tasks").join(id);
                std::fs::create_dir_all(&dir).map_err(|e| {
                    ApiError::internal(format!(
                        "cannot create the task's workdir: {e}; check --workdir"
                    ))
                })?;
                Ok((dir, true))
            }
        }
    }

    /// The job for a new conversation `session_id` in `cwd`.
    pub fn job(
        &self,
        app: &App,
        ex: &Exchange,
        key_id: &str,
        session_id: &str,
        cwd: PathBuf,
    ) -> Job {
        let mut job = self.job_for(app, &ex.request_id, key_id, &ex.path, session_id, cwd);
        job.arrived = ex.started;
        job
    }

    /// The job for a new conversation, for a request known by its id and route.
    pub fn job_for(
        &self,
        app: &App,
        request_id: &str,
        key_id: &str,
        route: &str,
        session_id: &str,
        cwd: PathBuf,
    ) -> Job {
        let mut spec = RunSpec::new(
            &self.model,
            Conversation::New(session_id.to_string()),
            app.config.permissions_bypass,
        );
        spec.system_prompt = self.system_prompt.clone();
        self.options.apply(&mut spec);
        Job {
            request_id: request_id.to_string(),
            key_id: key_id.to_string(),
            route: route.to_string(),
            session_id: session_id.to_string(),
            spec,
            prompt: self.prompt.clone(),
            cwd,
            timeout: self.timeout,
            arrived: std::time::Instant::now(),
            done_message: "task completed",
            env: Vec::new(),
        }
    }
}

/// Reads and parses a JSON body under the size and time limits. Blocks as long as the client
/// takes to send it: call it on a run thread, never on a pool worker.
pub fn read_body(app: &App, ex: &mut Exchange) -> Result<Body, ApiError> {
    let deadline = ex.started + app.config.body_timeout;
    let bytes = ex.read_body(app.config.max_body, deadline)?;
    Body::parse(&bytes)
}

pub fn post(app: &Arc<App>, ex: Exchange, key_id: String) {
    let app = app.clone();
    crate::server::spawn_run("task", move || {
        let mut ex = ex;
        let prepared = read_body(&app, &mut ex).and_then(|body| {
            let req = TaskRequest::parse(&app, &body, &key_id)?;
            let session_id = uuid::Uuid::new_v4().to_string();
            let (cwd, temporary) = req.resolve_workdir(&app, &key_id, &session_id)?;
            Ok((
                req.job(&app, &ex, &key_id, &session_id, cwd.clone()),
                cwd,
                temporary,
            ))
        });
        let (job, cwd, temporary) = match prepared {
            Ok(p) => p,
            Err(e) => return ex.error(e),
        };
        let finished = runner::execute(&app, &job, &mut |_| Flow::Continue);
        let kept = crate::conversation::keep_for_approval(&app, &job, &finished, temporary);
        if temporary && !kept {
            crate::conversation::remove_workdir(&app, &cwd);
        }
        match finished.error {
            Some(e) => ex.error(e),
            None => ex.respond(Reply::ok(&finished.response)),
        }
    });
}

/// `POST /task/stream`: the same task as Server-Sent Events (see `stream/sse.rs`).
pub fn post_stream(app: &Arc<App>, ex: Exchange, key_id: String) {
    let app = app.clone();
    crate::server::spawn_run("task-sse", move || {
        let mut ex = ex;
        let prepared = read_body(&app, &mut ex).and_then(|body| {
            let mode = Mode::parse(body.opt_string("stream_mode")?.as_deref())?;
            let req = TaskRequest::parse(&app, &body, &key_id)?;
            let place = stream::take_place(&app)?;
            let session_id = uuid::Uuid::new_v4().to_string();
            let (cwd, temporary) = req.resolve_workdir(&app, &key_id, &session_id)?;
            Ok((
                req.job(&app, &ex, &key_id, &session_id, cwd.clone()),
                mode,
                place,
                cwd,
                temporary,
            ))
        });
        let (job, mode, place, cwd, temporary) = match prepared {
            Ok(p) => p,
            Err(e) => return ex.error(e),
        };
        let finished = stream::sse::serve(&app, ex, &job, mode, place);
        let kept = finished
            .is_some_and(|f| crate::conversation::keep_for_approval(&app, &job, &f, temporary));
        if temporary && !kept {
            crate::conversation::remove_workdir(&app, &cwd);
        }
    });
}

/// `GET /task/ws`: the same task over a WebSocket (see `stream/ws.rs`).
pub fn ws(app: &Arc<App>, mut ex: Exchange, key_id: String) {
    let (accept, protocol) = match stream::ws::check_handshake(&ex) {
        Ok(h) => h,
        Err(e) => return ex.error(e),
    };
    let place = match stream::take_place(app) {
        Ok(p) => p,
        Err(e) => return ex.error(e),
    };
    let up = stream::ws::Upgraded {
        request_id: ex.request_id.clone(),
        key_id,
        path: ex.path.clone(),
        started: ex.started,
        local_port: app.port(),
        peer: ex.remote_addr(),
        inflight: ex.take_inflight(),
    };
    let mut headers = vec![("Sec-WebSocket-Accept", accept.as_str())];
    if let Some(p) = protocol {
        headers.push(("Sec-WebSocket-Protocol", p));
    }
    let socket = ex.upgrade(&headers);
    let app = app.clone();
    crate::server::spawn_run("task-ws", move || {
        stream::ws::serve(&app, socket, up, place)
    });
}
