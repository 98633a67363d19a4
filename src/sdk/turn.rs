//! One SDK request on its run thread: find its conversation, take the session's turn, run
//! the CLI, answer in the dialect's shape (one JSON answer, or a stream), and move the
//! conversation's head on, or put things back when the turn failed.
//!
//! The conversation is, in order: the session the client pins with `X-Claudeway-Session`
//! (its own key's, or 404), the stored conversation whose head matches the history (resumed:
//! only the new user message is sent), or a new session of kind `sdk` whose CLI conversation
//! gets the earlier turns, if any, as context in the system prompt. A new session whose first
//! turn fails is removed again, so that the client's retry starts clean. Blocking: only ever
//! called on a run thread.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::blocks::{Blocks, Piece};
use super::threads::Thread;
use super::{anthropic, fingerprint, openai, Chat, Dialect};
use crate::app::App;
use crate::claude::{Denial, End, Flow, RunEvent, Tokens};
use crate::conversation::{self, TurnRequest};
use crate::error::{ApiError, Kind};
use crate::exchange::Exchange;
use crate::reply::Reply;
use crate::runner::{self, Finished, Job};
use crate::sessions::{Kind as SessionKind, Session};
use crate::stream::sse::Sse;
use crate::stream::StreamGuard;

/// The response header that names the Claudeway session of an answer; the same name, as a
/// request header, pins a session.
pub const SESSION_HEADER: &str = "X-Claudeway-Session";

/// A validated SDK request.
#[derive(Debug)]
pub struct Call {
    pub dialect: Dialect,
    pub chat: Chat,
    /// `chatcmpl-…` or `msg_…`.
    pub id: String,
    /// Unix seconds of arrival (OpenAI `created`).
    pub created: i64,
    pub key_id: String,
    /// The session named by `X-Claudeway-Session`.
    pub pinned: Option<String>,
    pub request_id: String,
    pub route: String,
    pub arrived: Instant,
}

/// A successful turn, as both dialects report it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The text blocks Claude wrote, in order.
    pub texts: Vec<String>,
    /// The CLI's stop reason (`end_turn`, `max_tokens`, …).
    pub stop_reason: Option<String>,
    pub tokens: Tokens,
    pub cost_usd: Option<f64>,
    pub session_id: String,
    /// How the conversation was found: `new`, `resumed`, `history`, `pinned`.
    pub conversation: &'static str,
    pub duration_ms: u64,
    /// The model the CLI used.
    pub model: Option<String>,
    pub denials: Vec<Denial>,
}

impl Answer {
    /// The `claudeway` object every answer carries beside the dialect's own fields.
    pub fn extension(&self) -> Value {
        let mut v = json!({
            "session_id": self.session_id,
            "conversation": self.conversation,
            "cost_usd": self.cost_usd,
            "duration_ms": self.duration_ms,
            "model": self.model,
        });
        if !self.denials.is_empty() {
            v["permission_denials"] = json!(self.denials);
        }
        v
    }
}

/// A dialect's stream: each method gives the SSE text to send (empty: nothing).
pub trait Stream {
    /// Right after the head: OpenAI's role chunk, Anthropic's `message_start`.
    fn open(&mut self) -> String;
    fn piece(&mut self, p: &Piece) -> String;
    fn heartbeat(&self) -> String;
    /// The end of a successful turn (finish reason, usage, `[DONE]` / `message_stop`).
    fn done(&mut self, a: &Answer) -> String;
    /// A failure after the stream began.
    fn failed(&mut self, e: &ApiError) -> String;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    New,
    Resumed,
    History,
    Pinned,
}

impl How {
    fn name(self) -> &'static str {
        match self {
            How::New => "new",
            How::Resumed => "resumed",
            How::History => "history",
            How::Pinned => "pinned",
        }
    }
}

/// The conversation a call runs in.
struct Opened {
    session_id: String,
    how: How,
    context_len: usize,
    /// The head taken from the store (put back if the turn fails).
    claimed: Option<Thread>,
}

/// Runs `call` and answers `ex`. `place` is the stream place of a streaming call.
pub fn serve(app: &Arc<App>, ex: Exchange, call: Call, place: Option<StreamGuard>) {
    let opened = match open(app, &call) {
        Ok(o) => o,
        Err(e) => return ex.error(e),
    };
    let (prompt, json_input) = call.chat.prompt();
    let req = TurnRequest {
        key_id: call.key_id.clone(),
        session_id: opened.session_id.clone(),
        prompt,
        model: Some(call.chat.model.clone()),
        system_prompt: None,
        timeout_secs: None,
        allowed_tools: Vec::new(),
        options: Default::default(),
        request_id: call.request_id.clone(),
        route: call.route.clone(),
        arrived: call.arrived,
        done_message: "task completed",
    };
    let (turn, mut job) = match conversation::prepare(app, &req) {
        Ok(p) => p,
        Err(e) => {
            undo(app, &opened, false);
            return ex.error(e);
        }
    };
    job.spec.append_system_prompt = call.chat.append_system_prompt(opened.context_len);
    job.spec.stream_json_input = json_input;
    match place {
        Some(place) => stream(app, ex, &call, &opened, job, place),
        None => reply(app, ex, &call, &opened, job),
    }
    drop(turn);
}

fn open(app: &Arc<App>, call: &Call) -> Result<Opened, ApiError> {
    if let Some(id) = &call.pinned {
        conversation::find(app, &call.key_id, id)?;
        return Ok(Opened {
            session_id: id.clone(),
            how: How::Pinned,
            context_len: 0,
            claimed: None,
        });
    }
    let chat = &call.chat;
    if chat.has_turns() {
        if let Some(t) = app
            .threads
            .claim(&call.key_id, &fingerprint(chat.history()))
        {
            let alive = app
                .sessions
                .get(&t.session_id)
                .is_some_and(|s| s.key_id == call.key_id);
            if alive {
                return Ok(Opened {
                    session_id: t.session_id.clone(),
                    how: How::Resumed,
                    context_len: t.context_len,
                    claimed: Some(t),
                });
            }
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let workdir = app.config.workdir.join("sdk").join(&id);
    std::fs::create_dir_all(&workdir).map_err(|e| {
        ApiError::internal(format!(
            "cannot create the conversation's workdir: {e}; check --workdir"
        ))
    })?;
    let now = crate::clock::now();
    let stamp = crate::clock::rfc3339(now);
    app.sessions.insert(Session {
        session_id: id.clone(),
        key_id: call.key_id.clone(),
        kind: SessionKind::Sdk,
        model: chat.model.clone(),
        system_prompt: None,
        timeout_secs: app.config.default_timeout_secs,
        workdir,
        owns_workdir: true,
        created_at: stamp.clone(),
        last_active_at: stamp,
        last_active_unix: now.unix_timestamp(),
        expires_unix: None,
        task_count: 0,
        tokens: Tokens::default(),
        cost_usd: 0.0,
        started: false,
        pending: Vec::new(),
    });
    Ok(Opened {
        session_id: id,
        how: if chat.has_turns() {
            How::History
        } else {
            How::New
        },
        context_len: chat.last_user,
        claimed: None,
    })
}

/// After a failed turn: a new conversation is removed; a resumed one gets its head back,
/// unless the CLI no longer has it (`gone`), so that a retry does not hit the same wall.
fn undo(app: &Arc<App>, o: &Opened, gone: bool) {
    match o.how {
        How::New | How::History => {
            conversation::remove(app, &o.session_id);
        }
        How::Resumed if !gone => {
            if let Some(t) = &o.claimed {
                app.threads.put(t.clone());
            }
        }
        How::Resumed | How::Pinned => {}
    }
}

/// The answer of a finished turn, with the conversation's head moved on; or the error to
/// answer (a run the CLI reported as failed is an error here: 500, not to be retried).
fn settle(
    app: &Arc<App>,
    call: &Call,
    o: &Opened,
    ran: Result<&Finished, ApiError>,
    blocks: &Blocks,
) -> Result<Answer, ApiError> {
    let f = match ran {
        Ok(f) => f,
        Err(e) => {
            undo(app, o, false);
            return Err(e);
        }
    };
    let r = &f.response;
    let error = f.error.clone().or_else(|| {
        (!r.success)
            .then(|| ApiError::internal(r.error.clone().unwrap_or_else(|| "the run failed".into())))
    });
    if let Some(e) = error {
        let exited = f.outcome.as_ref().is_some_and(|o| o.end == End::Exited);
        undo(app, o, exited && e.kind == Kind::Conflict);
        return Err(e);
    }
    let outcome = f.outcome.as_ref();
    let result = outcome.and_then(|o| o.result.as_ref());
    let answer = Answer {
        texts: blocks.answer(r.result.as_deref()),
        stop_reason: result.and_then(|r| r.stop_reason.clone()),
        tokens: r.tokens.unwrap_or_default(),
        cost_usd: r.cost_usd,
        session_id: o.session_id.clone(),
        conversation: o.how.name(),
        duration_ms: r.duration_ms,
        model: result
            .and_then(|r| r.model.clone())
            .or_else(|| outcome.and_then(|o| o.model.clone())),
        denials: r.permission_denials.clone(),
    };
    app.threads.put(Thread {
        session_id: o.session_id.clone(),
        key_id: call.key_id.clone(),
        head: call.chat.next_head(&answer.texts),
        context_len: o.context_len,
    });
    Ok(answer)
}

/// Runs the job (again with `--resume` if the CLI already has the conversation: a crash
/// between its start and our record of it) and folds it into the session.
fn run(
    app: &Arc<App>,
    job: &mut Job,
    first: runner::Finished,
    again: &mut dyn FnMut(&Job) -> Result<Finished, ApiError>,
) -> Result<Finished, ApiError> {
    let f = if conversation::needs_resume(&first) {
        conversation::resume_instead(app, job);
        again(job)?
    } else {
        first
    };
    conversation::finish(app, job, &f, Vec::new());
    Ok(f)
}

fn reply(app: &Arc<App>, ex: Exchange, call: &Call, o: &Opened, mut job: Job) {
    let mut blocks = Blocks::default();
    let mut collect = |ev: RunEvent| {
        if let RunEvent::Line(l) = ev {
            blocks.on_line(l);
        }
        Flow::Continue
    };
    let first = runner::execute(app, &job, &mut collect);
    let ran = run(app, &mut job, first, &mut |job| {
        Ok(runner::execute(app, job, &mut collect))
    });
    match settle(app, call, o, ran.as_ref().map_err(Clone::clone), &blocks) {
        Ok(a) => {
            let body = match call.dialect {
                Dialect::OpenAi => openai::answer(call, &a),
                Dialect::Anthropic => anthropic::answer(call, &a),
            };
            ex.respond(Reply::ok(&body).with_header(SESSION_HEADER, &o.session_id));
        }
        Err(e) => ex.error(e),
    }
}

fn stream(
    app: &Arc<App>,
    ex: Exchange,
    call: &Call,
    o: &Opened,
    mut job: Job,
    _place: StreamGuard,
) {
    let admitted = match runner::admit(app, &job) {
        Ok(s) => s,
        Err(e) => {
            undo(app, o, false);
            return ex.error(e);
        }
    };
    let chunked = !ex.is_http10();
    let (req, log) = ex.into_request(200);
    let headers = [(SESSION_HEADER, o.session_id.as_str())];
    let sse = Sse::start_with(req.into_writer(), &log.request_id, chunked, &headers);
    let mut fmt: Box<dyn Stream> = match call.dialect {
        Dialect::OpenAi => Box::new(openai::Chunks::new(call)),
        Dialect::Anthropic => Box::new(anthropic::Events::new(call)),
    };
    let Ok(mut sse) = sse else {
        drop(admitted);
        undo(app, o, false);
        log.done(200, "client gone before the stream started");
        return;
    };
    let mut alive = sse.raw(&fmt.open());
    let mut blocks = Blocks::default();
    let ran = {
        let mut sink = |ev: RunEvent| {
            if alive {
                let text = match ev {
                    RunEvent::Line(l) => blocks.on_line(l).iter().map(|p| fmt.piece(p)).collect(),
                    RunEvent::Heartbeat => fmt.heartbeat(),
                };
                alive = sse.raw(&text);
            }
            if alive {
                Flow::Continue
            } else {
                Flow::Stop
            }
        };
        let first = runner::run(app, &job, admitted, &mut sink);
        run(app, &mut job, first, &mut |job| {
            let admitted = runner::admit(app, job)?;
            Ok(runner::run(app, job, admitted, &mut sink))
        })
    };
    let settled = settle(app, call, o, ran.as_ref().map_err(Clone::clone), &blocks);
    let tail = match &settled {
        Ok(a) => fmt.done(a),
        Err(e) => fmt.failed(e),
    };
    if alive {
        sse.raw(&tail);
    }
    sse.finish();
    log.done(
        200,
        if settled.is_ok() {
            "stream done"
        } else {
            "stream failed"
        },
    );
}
