//! The session endpoints: `POST /session/start`, `POST|GET|DELETE /session/{id}`,
//! `POST /session/{id}/stream`, `POST /session/{id}/approve` and `GET /sessions`. A session
//! belongs to the key that started it; any other non-admin key gets 404. Turns and approvals
//! wait for the session's turn and run the CLI on a run thread (see `conversation.rs`).

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::approval::{self, Approval};
use crate::audit::Entry;
use crate::claude::args;
use crate::conversation::{self, TurnRequest};
use crate::error::ApiError;
use crate::events::Event;
use crate::exchange::Exchange;
use crate::handlers::task::read_body;
use crate::options::bounded_string;
use crate::reply::Reply;
use crate::sessions::{Kind, Session};
use crate::stream::{self, Mode};

/// `POST /session/start`, on a run thread (it reads a body).
pub fn start(app: &Arc<App>, ex: Exchange, key_id: String) {
    let app = app.clone();
    crate::server::spawn_run("session-start", move || {
        let mut ex = ex;
        match create(&app, &mut ex, &key_id) {
            Ok(r) => ex.respond(r),
            Err(e) => ex.error(e),
        }
    });
}

fn create(app: &Arc<App>, ex: &mut Exchange, key_id: &str) -> Result<Reply, ApiError> {
    let body = read_body(app, ex)?;
    let model = body.opt_string("model")?.unwrap_or_else(|| "sonnet".into());
    args::validate_model(&model).map_err(ApiError::bad_request)?;
    let timeout = body
        .opt_u64("timeout_secs", 1, app.config.max_timeout_secs)?
        .unwrap_or(app.config.default_timeout_secs);
    let system_prompt = bounded_string(&body, "system_prompt")?;
    let id = uuid::Uuid::new_v4().to_string();
    let (workdir, owns) = match body.opt_string("workdir")? {
        Some(w) => (app.confine_workdir(key_id, &w)?, false),
        None => {
            let dir = app.config.workdir.join("sessions").join(&id);
            std::fs::create_dir_all(&dir).map_err(|e| {
                ApiError::internal(format!(
                    "cannot create the session's workdir: {e}; check --workdir"
                ))
            })?;
            (dir, true)
        }
    };
    let now = crate::clock::now();
    let created_at = crate::clock::rfc3339(now);
    app.sessions.insert(Session {
        session_id: id.clone(),
        key_id: key_id.to_string(),
        kind: Kind::Session,
        model: model.clone(),
        system_prompt,
        timeout_secs: timeout,
        workdir: workdir.clone(),
        owns_workdir: owns,
        created_at: created_at.clone(),
        last_active_at: created_at.clone(),
        last_active_unix: now.unix_timestamp(),
        expires_unix: None,
        task_count: 0,
        tokens: Default::default(),
        cost_usd: 0.0,
        started: false,
        pending: Vec::new(),
    });
    let mut e = Entry::new(&ex.request_id, &ex.path, Some(key_id), "session started");
    e.session_id = Some(id.clone());
    e.model = Some(model.clone());
    app.audit.record(e);
    app.publish(Event::SessionStarted {
        key_id: key_id.to_string(),
        session_id: id.clone(),
        model: model.clone(),
    });
    Ok(Reply::ok(&serde_json::json!({
        "session_id": id,
        "workdir": workdir.to_string_lossy(),
        "created_at": created_at,
        "model": model,
    })))
}

/// Reads the body of a turn (on a run thread), checks the session is the caller's and
/// builds the turn it asks for.
fn read_turn(
    app: &App,
    ex: &mut Exchange,
    key_id: &str,
    id: &str,
) -> Result<(crate::input::Body, TurnRequest), ApiError> {
    let body = read_body(app, ex)?;
    conversation::find(app, key_id, id)?;
    let req = TurnRequest::from_body(app, &body, key_id, id, &ex.request_id, &ex.path, ex.started)?;
    Ok((body, req))
}

pub fn post(app: &Arc<App>, ex: Exchange, key_id: String, id: String) {
    let app = app.clone();
    crate::server::spawn_run("session-turn", move || {
        let mut ex = ex;
        let req = read_turn(&app, &mut ex, &key_id, &id).map(|(_, req)| req);
        let req = match req {
            Ok(r) => r,
            Err(e) => return ex.error(e),
        };
        match conversation::prepare(&app, &req) {
            Err(e) => ex.error(e),
            Ok((turn, job)) => {
                let f = conversation::run(&app, job, turn, Vec::new());
                match f.error {
                    Some(e) => ex.error(e),
                    None => ex.respond(Reply::ok(&f.response)),
                }
            }
        }
    });
}

pub fn stream(app: &Arc<App>, ex: Exchange, key_id: String, id: String) {
    let app = app.clone();
    crate::server::spawn_run("session-sse", move || {
        let mut ex = ex;
        let prepared = read_turn(&app, &mut ex, &key_id, &id).and_then(|(body, req)| {
            let mode = Mode::parse(body.opt_string("stream_mode")?.as_deref())?;
            let place = stream::take_place(&app)?;
            Ok((req, mode, place))
        });
        let (req, mode, place) = match prepared {
            Ok(p) => p,
            Err(e) => return ex.error(e),
        };
        match conversation::prepare(&app, &req) {
            Err(e) => ex.error(e),
            Ok((turn, job)) => {
                if let Some(f) = stream::sse::serve(&app, ex, &job, mode, place) {
                    conversation::finish(&app, &job, &f, Vec::new());
                }
                drop(turn);
            }
        }
    });
}

pub fn get(app: &App, key_id: &str, id: &str) -> Result<Reply, ApiError> {
    let s = conversation::find(app, key_id, id)?;
    Ok(Reply::ok(&app.sessions.view(&s)))
}

pub fn list(app: &App, ex: &Exchange, key_id: &str) -> Result<Reply, ApiError> {
    let page = query_number(ex, "page", 1, u32::MAX as u64)?.unwrap_or(1);
    let per_page = query_number(ex, "per_page", 1, 100)?.unwrap_or(20);
    let owner = (!app.config.keys.is_admin(key_id)).then_some(key_id);
    let all = app.sessions.list(owner);
    let views: Vec<_> = all
        .iter()
        .skip(((page - 1) * per_page) as usize)
        .take(per_page as usize)
        .map(|s| app.sessions.view(s))
        .collect();
    Ok(Reply::ok(&serde_json::json!({
        "sessions": views, "total": all.len(), "page": page, "per_page": per_page,
    })))
}

/// A whole-number query parameter in `min..=max`.
pub fn query_number(
    ex: &Exchange,
    name: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    match ex.query_param(name) {
        None => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::bad_request(format!(
                "`{name}` must be a whole number from {min} to {max}"
            ))),
        },
    }
}

pub fn delete(app: &Arc<App>, ex: &Exchange, key_id: &str, id: &str) -> Result<Reply, ApiError> {
    conversation::find(app, key_id, id)?;
    let s = conversation::remove(app, id).ok_or_else(conversation::not_found)?;
    let mut e = Entry::new(&ex.request_id, &ex.path, Some(key_id), "session deleted");
    e.session_id = Some(s.session_id.clone());
    e.model = Some(s.model.clone());
    app.audit.record(e);
    app.publish(Event::SessionDeleted {
        key_id: s.key_id.clone(),
        session_id: s.session_id.clone(),
    });
    Ok(Reply::ok(
        &serde_json::json!({"deleted": true, "session_id": s.session_id}),
    ))
}

pub fn approve(app: &Arc<App>, ex: Exchange, key_id: String, id: String) {
    let app = app.clone();
    crate::server::spawn_run("approve", move || {
        let mut ex = ex;
        let ids = read_body(&app, &mut ex).and_then(|body| {
            let ids = body.opt_strings("tool_use_ids")?;
            if ids.as_ref().is_some_and(|v| v.is_empty()) {
                return Err(ApiError::bad_request(
                    "`tool_use_ids` must not be empty; leave it out to approve every pending denial",
                ));
            }
            conversation::find(&app, &key_id, &id)?;
            Ok(ids)
        });
        let ids = match ids {
            Ok(i) => i,
            Err(e) => return ex.error(e),
        };
        let a = Approval {
            key_id,
            session_id: id,
            tool_use_ids: ids,
            request_id: ex.request_id.clone(),
            route: ex.path.clone(),
            arrived: ex.started,
        };
        match approval::prepare(&app, &a) {
            Err(e) => ex.error(e),
            Ok((turn, job, keep)) => {
                let f = conversation::run(&app, job, turn, keep);
                match f.error {
                    Some(e) => ex.error(e),
                    None => ex.respond(Reply::ok(&f.response)),
                }
            }
        }
    });
}

/// Removes expired sessions every `every` (idle past `session_ttl`, approval sessions past
/// their hour). Runs on its own thread for the life of the server.
pub fn start_janitor(app: &Arc<App>, every: Duration) {
    let app = app.clone();
    let _ = std::thread::Builder::new()
        .name("session-janitor".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            if app.is_shutting_down() {
                return;
            }
            let ttl = app.config.session_ttl.as_secs();
            for id in app.sessions.expired(crate::clock::unix_secs(), ttl) {
                if let Some(s) = conversation::remove(&app, &id) {
                    log::info!(
                        "session {} of key {} expired and was removed",
                        s.session_id,
                        s.key_id
                    );
                    app.publish(Event::SessionDeleted {
                        key_id: s.key_id,
                        session_id: s.session_id,
                    });
                }
            }
        });
}
