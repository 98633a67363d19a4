//! `GET /task/ws`: one task over a WebSocket. The worker checks the handshake and the key
//! (Authorization header, or the `claudeway.bearer.<secret>` subprotocol for browsers, which
//! cannot set headers), upgrades, and hands the socket to a run thread. There the first text
//! message is the TaskRequest; then `{"event":"text"}` frames, `permission_denied`, `error`,
//! exactly one `done`, and a normal close. The client's close, or a failed ping, stops the run.
//! tiny_http gives the upgraded socket as an opaque stream, so the socket's descriptor is
//! looked up (`os::find_socket`) to poll it and give reads a timeout.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::app::App;
use crate::auth;
use crate::claude::{Flow, RunEvent};
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::handlers::task::TaskRequest;
use crate::input::Body;
use crate::runner::{self, Finished, Job};
use crate::stream::{final_events, Final, Mode, Progress, StreamGuard};

/// How long the client has to send its TaskRequest after the upgrade.
const FIRST_MESSAGE: Duration = Duration::from_secs(30);
/// The subprotocol the server selects when a client offers it.
pub const PROTOCOL: &str = "claudeway";

type Stream = Box<dyn tiny_http::ReadWrite + Send>;

/// What the run thread needs about the upgraded request.
pub struct Upgraded {
    pub request_id: String,
    pub key_id: String,
    pub path: String,
    pub started: Instant,
    pub local_port: u16,
    pub peer: Option<std::net::SocketAddr>,
    /// Keeps the connection counted as unanswered until the conversation ends.
    pub inflight: Option<crate::exchange::Inflight>,
}

/// The handshake checks, on the worker. Returns the `Sec-WebSocket-Accept` value and the
/// subprotocol to select.
pub fn check_handshake(ex: &Exchange) -> Result<(String, Option<&'static str>), ApiError> {
    let upgrade = ex.header("Upgrade").unwrap_or("");
    let key = ex.header("Sec-WebSocket-Key").unwrap_or("");
    if !upgrade.eq_ignore_ascii_case("websocket") || key.is_empty() {
        return Err(ApiError::bad_request(
            "this route speaks WebSocket: connect with a WebSocket client (Upgrade: websocket)",
        ));
    }
    if ex.header("Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return Err(ApiError::bad_request(
            "only WebSocket version 13 is supported",
        ));
    }
    let offered: Vec<&str> = ex
        .header("Sec-WebSocket-Protocol")
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let key_in_protocol = offered
        .iter()
        .any(|p| p.starts_with(auth::WS_PROTOCOL_PREFIX));
    let select = offered.contains(&PROTOCOL).then_some(PROTOCOL);
    if key_in_protocol && select.is_none() {
        return Err(ApiError::bad_request(format!(
            "when the key comes as a subprotocol, also offer \"{PROTOCOL}\": new WebSocket(url, [\"{PROTOCOL}\", \"{}<key>\"])",
            auth::WS_PROTOCOL_PREFIX
        )));
    }
    Ok((
        tungstenite::handshake::derive_accept_key(key.as_bytes()),
        select,
    ))
}

/// The conversation after the upgrade, on a run thread.
pub fn serve(app: &Arc<App>, stream: Stream, up: Upgraded, _place: StreamGuard) {
    let fd = up
        .peer
        .and_then(|peer| crate::os::find_socket(up.local_port, peer));
    if let Some(fd) = fd {
        crate::os::set_read_timeout(fd, FIRST_MESSAGE);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(app.config.max_body))
        .max_frame_size(Some(app.config.max_body));
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, Some(config));
    let log = |how: &str| {
        log::info!(
            "GET {} 101 {}ms key={} req={} ({how})",
            up.path,
            up.started.elapsed().as_millis(),
            up.key_id,
            up.request_id
        )
    };

    let text = loop {
        match ws.read() {
            Ok(Message::Text(t)) => break t.to_string(),
            Ok(Message::Binary(_)) => {
                return refuse(
                    &mut ws,
                    fd,
                    &ApiError::bad_request("send the TaskRequest as a text message"),
                    &log,
                )
            }
            Ok(Message::Close(_)) => return log("closed before a request"),
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                let e = ApiError::bad_request(format!(
                    "no TaskRequest arrived within {} s of connecting",
                    FIRST_MESSAGE.as_secs()
                ));
                return refuse(&mut ws, fd, &e, &log);
            }
            Err(_) => return log("connection lost before a request"),
        }
    };
    let arrived = Instant::now();
    let body = match Body::parse(text.as_bytes()) {
        Ok(b) => b,
        Err(e) => return refuse(&mut ws, fd, &e, &log),
    };
    let mode = match body
        .opt_string("stream_mode")
        .and_then(|m| Mode::parse(m.as_deref()))
    {
        Ok(m) => m,
        Err(e) => return refuse(&mut ws, fd, &e, &log),
    };
    match body.opt_string("session_id") {
        Ok(Some(id)) => session_turn(app, &mut ws, fd, &up, &body, &id, arrived, mode),
        Ok(None) => one_shot(app, &mut ws, fd, &up, &body, arrived, mode),
        Err(e) => return refuse(&mut ws, fd, &e, &log),
    }
    close(&mut ws, fd);
    log("ws done");
}

/// A one-shot task (no `session_id`): a fresh conversation and workdir.
fn one_shot(
    app: &Arc<App>,
    ws: &mut WebSocket<Stream>,
    fd: Option<i32>,
    up: &Upgraded,
    body: &Body,
    arrived: Instant,
    mode: Mode,
) {
    let prepared = TaskRequest::parse(app, body, &up.key_id).and_then(|req| {
        let session_id = uuid::Uuid::new_v4().to_string();
        let (cwd, temporary) = req.resolve_workdir(app, &up.key_id, &session_id)?;
        let mut job = req.job_for(app, &up.request_id, &up.key_id, &up.path, &session_id, cwd);
        job.arrived = arrived;
        Ok((job, temporary))
    });
    let (job, temporary) = match prepared {
        Ok(p) => p,
        Err(e) => {
            send_error(ws, &e.message, e.code());
            return;
        }
    };
    let finished = run_job(app, ws, fd, &job, mode);
    let kept = finished
        .as_ref()
        .is_some_and(|f| crate::conversation::keep_for_approval(app, &job, f, temporary));
    if temporary && !kept {
        crate::conversation::remove_workdir(app, &job.cwd);
    }
    if let Some(f) = finished {
        finish(ws, &f);
    }
}

/// A turn of a stored session (`session_id` in the request).
#[allow(clippy::too_many_arguments)]
fn session_turn(
    app: &Arc<App>,
    ws: &mut WebSocket<Stream>,
    fd: Option<i32>,
    up: &Upgraded,
    body: &Body,
    id: &str,
    arrived: Instant,
    mode: Mode,
) {
    let prepared = (|| {
        let req = crate::conversation::TurnRequest::from_body(
            app,
            body,
            &up.key_id,
            id,
            &up.request_id,
            &up.path,
            arrived,
        )?;
        crate::conversation::prepare(app, &req)
    })();
    let (turn, job) = match prepared {
        Ok(p) => p,
        Err(e) => {
            send_error(ws, &e.message, e.code());
            return;
        }
    };
    if let Some(f) = run_job(app, ws, fd, &job, mode) {
        crate::conversation::finish(app, &job, &f, Vec::new());
        drop(turn);
        finish(ws, &f);
    }
}

/// Runs an already parsed job over `ws`; None when it was refused (the refusal was sent).
fn run_job(
    app: &Arc<App>,
    ws: &mut WebSocket<Stream>,
    fd: Option<i32>,
    job: &Job,
    mode: Mode,
) -> Option<Finished> {
    let admitted = match runner::admit(app, job) {
        Ok(s) => s,
        Err(e) => {
            send_error(ws, &e.message, e.code());
            return None;
        }
    };
    if let Some(fd) = fd {
        crate::os::set_read_timeout(fd, Duration::from_millis(20));
    }
    let mut progress = Progress::new(mode);
    let mut sink = |ev: RunEvent| {
        let sent = match ev {
            RunEvent::Line(line) => match progress.on_line(line) {
                Some(text) => send(ws, json!({"event": "text", "data": text})),
                None => true,
            },
            RunEvent::Heartbeat => ws.send(Message::Ping(Vec::new().into())).is_ok(),
        };
        if sent && client_still_there(ws, fd) {
            Flow::Continue
        } else {
            Flow::Stop
        }
    };
    Some(runner::run(app, job, admitted, &mut sink))
}

/// Reads what the client sent, if anything: a close (or a broken socket) means it is gone.
fn client_still_there(ws: &mut WebSocket<Stream>, fd: Option<i32>) -> bool {
    let Some(fd) = fd else { return true };
    while crate::os::readable(fd, 0) {
        match ws.read() {
            Ok(Message::Close(_)) => return false,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                return true
            }
            Err(_) => return false,
        }
    }
    true
}

fn send(ws: &mut WebSocket<Stream>, v: serde_json::Value) -> bool {
    ws.send(Message::Text(v.to_string().into())).is_ok()
}

fn send_error(ws: &mut WebSocket<Stream>, message: &str, code: &str) -> bool {
    send(ws, json!({"event": "error", "data": message, "code": code}))
}

/// The end of a run: permission_denied, error, done.
pub fn finish(ws: &mut WebSocket<Stream>, f: &Finished) {
    for ev in final_events(f) {
        let ok = match ev {
            Final::PermissionDenied(d) => {
                send(ws, json!({"event": "permission_denied", "data": d}))
            }
            Final::Error { message, code } => send_error(ws, &message, &code),
            Final::Done(v) => send(ws, json!({"event": "done", "data": v})),
        };
        if !ok {
            return;
        }
    }
}

fn refuse(ws: &mut WebSocket<Stream>, fd: Option<i32>, e: &ApiError, log: &dyn Fn(&str)) {
    send_error(ws, &e.message, e.code());
    close(ws, fd);
    log("refused");
}

/// A normal close: send ours, give the client a moment to answer, then drop the socket.
fn close(ws: &mut WebSocket<Stream>, fd: Option<i32>) {
    if let Some(fd) = fd {
        crate::os::set_read_timeout(fd, Duration::from_millis(100));
    }
    let _ = ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }));
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                continue
            }
            Err(_) => break,
        }
    }
}
