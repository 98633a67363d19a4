//! A mock of the Anthropic Messages API, for running the real `claude` CLI offline: point
//! the CLI at it with `ANTHROPIC_BASE_URL=http://127.0.0.1:PORT` and it gets streamed (SSE)
//! answers scripted by the text of the last *user* message (the CLI ends `messages` with a
//! `role:"system"` entry, so the last message is not the prompt). It accepts exactly what
//! CLI 2.1.330 sends, answers probes harmlessly, and records every request so a test can
//! check what the CLI sent. Test code only: never part of the claudeway binary, never
//! reached from outside 127.0.0.1.
//!
//! Scripts (the prompt's first word decides):
//! - anything else: `echo: <prompt>`, streamed in deltas of a few characters;
//! - `SLOW <secs> ...`: the echo, with `<secs>` (decimal) between deltas;
//! - `USE_TOOL_WRITE <path> [content...]`: a text block, then a Write tool call (a relative
//!   path is taken inside the CLI's working directory, read from its environment message);
//! - `USE_TOOL_BASH <command...>`: a Bash tool call;
//! - after a tool call, the next turn answers `tool ok: <result>` or `tool error: <result>`;
//! - `API_ERROR <status>`: HTTP `<status>` with the API's error body (default 500);
//! - `STREAM_ERROR ...`: the stream starts, then an SSE `error` event; the CLI then retries
//!   once without streaming, and that request gets the echo as one JSON message;
//! - `RECALL`: `earlier prompts: <p1> | <p2> ...`, the user prompts before this one in
//!   `messages` (how a test sees that a later turn carries the earlier ones);
//! - `HOLD ...`: the echo; while the mock is held ([`Mock::hold`]), the first delta is sent
//!   and the rest waits for [`Mock::release`] (how a test sees a delta before the run ends);
//! - Claudeway's approval prompt (`The user approved these tool calls ...`, naming the
//!   approved `tool_use_id`s): the same tool call again, as a model would make it.
//!
//! While the mock is held, every other `POST /v1/messages` is recorded and then waits for
//! [`Mock::release`] before it is answered (how a test catches a CLI process in flight).
//!
//! `GET /_mock/requests` answers the record so far as a JSON array (method, url, headers,
//! body, prompt, status, usage, session_id), for a test in another process; it is not
//! recorded itself.
//!
//! Usage numbers are realistic and depend only on the conversation's text (never on paths,
//! ids or time), so the same prompt gives the same tokens and the same cost in a direct CLI
//! run and through Claudeway: see [`usage_for`].

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::{json, Value};

/// One request as the mock received it, and what it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query string, as sent (`/v1/messages?beta=true`).
    pub url: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when there was none or it was not JSON).
    pub body: Value,
    /// The prompt the script was chosen by (the last user message's text).
    pub prompt: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// The usage reported in the answer (message_start/message_delta or the JSON message).
    pub usage: Option<Value>,
    /// When it arrived, from the mock's start.
    pub at: Duration,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The CLI's session id (`X-Claude-Code-Session-Id`), which is Claudeway's session_id.
    pub fn session_id(&self) -> Option<&str> {
        self.header("x-claude-code-session-id")
    }

    pub fn is_messages(&self) -> bool {
        self.method == "POST" && path_of(&self.url) == "/v1/messages"
    }

    /// Every user prompt in `messages`, oldest first (tool results and reminders left out).
    pub fn user_prompts(&self) -> Vec<String> {
        user_prompts(&self.body)
    }

    /// The record as `GET /_mock/requests` lists it.
    pub fn to_json(&self) -> Value {
        let headers: serde_json::Map<String, Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({
            "method": self.method, "url": self.url, "headers": headers, "body": self.body,
            "prompt": self.prompt, "status": self.status, "usage": self.usage,
            "session_id": self.session_id(), "user_prompts": self.user_prompts(),
            "at_ms": self.at.as_millis() as u64,
        })
    }

    /// The tool result this request carries back (its text, and whether it is an error),
    /// in full: the answer's `tool ok: ...` shows only its first 300 characters.
    pub fn tool_result(&self) -> Option<(String, bool)> {
        match last_turn(&self.body) {
            Turn::ToolResult { text, is_error } => Some((text, is_error)),
            Turn::Prompt(_) => None,
        }
    }
}

struct State {
    started: Instant,
    log: Mutex<Vec<Recorded>>,
    stop: AtomicBool,
    verbose: bool,
    /// True while the mock is held (see [`Mock::hold`]).
    held: Mutex<bool>,
    released: Condvar,
}

impl State {
    /// Waits while the mock is held; `Err` when the mock stops meanwhile.
    fn wait_released(&self) -> std::io::Result<()> {
        let mut held = self.held.lock();
        while *held {
            if self.stop.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("mock stopped"));
            }
            self.released.wait_for(&mut held, Duration::from_millis(50));
        }
        Ok(())
    }
}

/// A running mock; stops accepting on drop.
pub struct Mock {
    pub addr: SocketAddr,
    state: Arc<State>,
    server: Arc<tiny_http::Server>,
    accept: Option<JoinHandle<()>>,
}

impl Mock {
    /// Starts on 127.0.0.1 with a free port.
    pub fn start() -> Mock {
        Mock::start_on("127.0.0.1:0", false)
    }

    /// Starts on `bind`; `verbose` prints one line per request on stderr.
    pub fn start_on(bind: &str, verbose: bool) -> Mock {
        let server = Arc::new(tiny_http::Server::http(bind).expect("mock binds"));
        let addr = server.server_addr().to_ip().expect("an IP address");
        let state = Arc::new(State {
            started: Instant::now(),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            verbose,
            held: Mutex::new(false),
            released: Condvar::new(),
        });
        let (s, st) = (server.clone(), state.clone());
        let accept = std::thread::Builder::new()
            .name("mock-accept".into())
            .spawn(move || loop {
                let rq = s.recv();
                if st.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(rq) = rq {
                    let st = st.clone();
                    // One thread per request: a slow stream never holds up another.
                    let _ = std::thread::Builder::new()
                        .name("mock-request".into())
                        .spawn(move || handle(&st, rq));
                }
            })
            .expect("mock thread");
        Mock {
            addr,
            state,
            server,
            accept: Some(accept),
        }
    }

    /// The value for `ANTHROPIC_BASE_URL`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds every answer to `POST /v1/messages` from now on (a `HOLD` answer after its
    /// first delta) until [`Mock::release`]. The requests are recorded as they arrive.
    pub fn hold(&self) {
        *self.state.held.lock() = true;
    }

    /// Lets held answers go on; answers are no longer held.
    pub fn release(&self) {
        *self.state.held.lock() = false;
        self.state.released.notify_all();
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().clone()
    }

    /// The `POST /v1/messages` requests the CLI sent for one session id.
    pub fn messages_for(&self, session_id: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_messages() && r.session_id() == Some(session_id))
            .collect()
    }

    /// The summed usage of `requests`, in Claudeway's token names.
    pub fn tokens(requests: &[Recorded]) -> Value {
        let mut t = [0u64; 4];
        for u in requests.iter().filter_map(|r| r.usage.as_ref()) {
            let n = |k: &str| u[k].as_u64().unwrap_or(0);
            t[0] += n("input_tokens");
            t[1] += n("output_tokens");
            t[2] += n("cache_read_input_tokens");
            t[3] += n("cache_creation_input_tokens");
        }
        json!({"input": t[0], "output": t[1], "cache_read": t[2], "cache_write": t[3]})
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn path_of(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

fn handle(st: &State, mut rq: tiny_http::Request) {
    let method = rq.method().as_str().to_string();
    let url = rq.url().to_string();
    let headers: Vec<(String, String)> = rq
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let mut raw = Vec::new();
    let _ = rq.as_reader().take(64 << 20).read_to_end(&mut raw);
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let mut rec = Recorded {
        method: method.clone(),
        url: url.clone(),
        headers,
        body,
        prompt: None,
        status: 200,
        usage: None,
        at: st.started.elapsed(),
    };
    let path = path_of(&url).trim_end_matches('/');
    match (method.as_str(), path) {
        ("GET", "/_mock/requests") => {
            let log: Vec<Value> = st.log.lock().iter().map(Recorded::to_json).collect();
            respond_json(rq, 200, &Value::Array(log));
        }
        ("POST", "/v1/messages") => messages(st, rq, rec),
        ("POST", "/v1/messages/count_tokens") => {
            let n = 2000 + text_len(&rec.body) / 4;
            record(st, rec);
            respond_json(rq, 200, &json!({ "input_tokens": n }));
        }
        ("GET", "/v1/models") => {
            record(st, rec);
            respond_json(rq, 200, &models());
        }
        (m, _) => {
            // HEAD /api/hello and other probes: a harmless 200 (404 for unknown POSTs).
            rec.status = if m == "POST" { 404 } else { 200 };
            let body = if rec.status == 200 {
                json!({})
            } else {
                api_error_body("not_found_error", "the mock has no such endpoint")
            };
            let status = rec.status;
            record(st, rec);
            respond_json(rq, status, &body);
        }
    }
}

/// Records a request; always before answering it, so a client that has its answer finds it.
fn record(st: &State, rec: Recorded) {
    if st.verbose {
        eprintln!(
            "mock: {} {} -> {} prompt={:?} session={:?}",
            rec.method,
            rec.url,
            rec.status,
            rec.prompt.as_deref().unwrap_or(""),
            rec.session_id().unwrap_or("")
        );
    }
    st.log.lock().push(rec);
}

fn respond_json(rq: tiny_http::Request, status: u16, body: &Value) {
    let resp = tiny_http::Response::from_string(body.to_string())
        .with_status_code(status)
        .with_header(header("Content-Type", "application/json"))
        .with_header(header("request-id", &format!("req_mock_{}", short_id())));
    let _ = rq.respond(resp);
}

fn header(k: &str, v: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("valid header")
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..20].to_string()
}

/// The models `GET /v1/models` lists (the API's shape).
pub fn models() -> Value {
    let data: Vec<Value> = [
        ("claude-opus-5-5", "Claude Opus 5.5"),
        ("claude-sonnet-5-5", "Claude Sonnet 5.5"),
        ("claude-haiku-5-5", "Claude Haiku 5.5"),
        ("claude-haiku-4-5-20251001", "Claude Haiku 4.5"),
    ]
    .iter()
    .map(|(id, name)| {
        json!({"type": "model", "id": id, "display_name": name, "created_at": "2026-01-01T00:00:00Z"})
    })
    .collect();
    json!({
        "data": data,
        "has_more": false,
        "first_id": "claude-opus-5-5",
        "last_id": "claude-haiku-4-5-20251001",
    })
}

fn api_error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": format!("req_mock_{}", short_id())})
}

fn error_kind(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// The text of a content value (a string, or the text blocks of an array).
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The prompt of one user message: its last text block that is not a `<system-reminder>`.
fn prompt_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .rfind(|t| !t.trim_start().starts_with("<system-reminder>"))
            .map(str::to_string),
        _ => None,
    }
}

fn user_prompts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter(|m| m["role"] == "user")
                .filter_map(|m| prompt_of(&m["content"]))
                .collect()
        })
        .unwrap_or_default()
}

/// Characters of conversation text (user and assistant messages; not the system prompt,
/// the environment message, reminders or paths in tool input), for the usage numbers.
fn text_len(body: &Value) -> u64 {
    let Some(messages) = body["messages"].as_array() else {
        return 0;
    };
    messages
        .iter()
        .filter(|m| m["role"] == "user" || m["role"] == "assistant")
        .map(|m| match m["role"].as_str() {
            Some("user") => prompt_of(&m["content"]).map_or(0, |p| p.chars().count()),
            _ => content_text(&m["content"]).chars().count(),
        })
        .sum::<usize>() as u64
}

/// The usage the mock reports for an answer with `output_chars` characters of output:
/// realistic sizes (a 2.5k-token prompt, a 9.7k cached system prompt), a function of the
/// conversation's text only.
pub fn usage_for(input_chars: u64, output_chars: u64) -> Value {
    json!({
        "input_tokens": 2500 + input_chars / 4,
        "cache_creation_input_tokens": 320,
        "cache_read_input_tokens": 9738,
        "output_tokens": 1 + output_chars / 4,
    })
}

/// What the last user message asks for.
enum Turn {
    Prompt(String),
    ToolResult { text: String, is_error: bool },
}

fn last_turn(body: &Value) -> Turn {
    let last_user = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"));
    let Some(msg) = last_user else {
        return Turn::Prompt(String::new());
    };
    if let Some(tr) = msg["content"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["type"] == "tool_result"))
    {
        return Turn::ToolResult {
            text: content_text(&tr["content"]),
            is_error: tr["is_error"].as_bool().unwrap_or(false),
        };
    }
    Turn::Prompt(prompt_of(&msg["content"]).unwrap_or_default())
}

/// The CLI's working directory, from its environment message.
fn cwd_of(body: &Value) -> Option<String> {
    let all = body["messages"].as_array()?;
    all.iter()
        .filter(|m| m["role"] == "system" || m["role"] == "user")
        .map(|m| content_text(&m["content"]))
        .find_map(|t| {
            t.lines()
                .find_map(|l| l.trim().strip_prefix("- Primary working directory: "))
                .map(|s| s.trim().to_string())
        })
}

/// How Claudeway's approval turn begins (src/approval.rs).
const APPROVAL_PROMPT: &str = "The user approved these tool calls";

/// The tool call (name, input) that an approval prompt names by its `(toolu_...)` id, as the
/// assistant made it earlier in `messages`.
fn approved_call(body: &Value, prompt: &str) -> Option<(String, Value)> {
    let ids: Vec<&str> = prompt
        .split(['(', ')'])
        .filter(|w| w.starts_with("toolu_"))
        .collect();
    body["messages"]
        .as_array()?
        .iter()
        .filter(|m| m["role"] == "assistant")
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .find(|b| b["type"] == "tool_use" && ids.contains(&b["id"].as_str().unwrap_or("")))
        .map(|b| {
            (
                b["name"].as_str().unwrap_or("").to_string(),
                b["input"].clone(),
            )
        })
}

/// One planned answer.
struct Plan {
    text: String,
    tool: Option<(String, Value)>,
    delay: Duration,
    stream_error: bool,
    /// `HOLD`: a hold waits after the first delta, not before the answer.
    hold_mid_stream: bool,
}

fn messages(st: &State, rq: tiny_http::Request, mut rec: Recorded) {
    let body = rec.body.clone();
    let model = body["model"].as_str().unwrap_or("claude-mock").to_string();
    let streaming = body["stream"].as_bool().unwrap_or(false);
    let turn = last_turn(&body);
    let mut plan = Plan {
        text: String::new(),
        tool: None,
        delay: Duration::ZERO,
        stream_error: false,
        hold_mid_stream: false,
    };
    match &turn {
        Turn::ToolResult { text, is_error } => {
            let word = if *is_error { "tool error" } else { "tool ok" };
            plan.text = format!("{word}: {}", text.chars().take(300).collect::<String>());
        }
        Turn::Prompt(p) => {
            rec.prompt = Some(p.clone());
            let words: Vec<&str> = p.split_whitespace().collect();
            let word = |i: usize| words.get(i).copied().unwrap_or("");
            let rest = |i: usize| words.get(i..).map(|w| w.join(" ")).unwrap_or_default();
            plan.text = format!("echo: {p}");
            match word(0) {
                "API_ERROR" => {
                    let status: u16 = word(1).parse().unwrap_or(500);
                    let msg = format!("mock API error {status}");
                    rec.status = status;
                    record(st, rec);
                    if st.wait_released().is_err() {
                        return;
                    }
                    return respond_json(rq, status, &api_error_body(error_kind(status), &msg));
                }
                "SLOW" => {
                    let secs: f64 = word(1).parse().unwrap_or(1.0);
                    plan.delay = Duration::from_secs_f64(secs.clamp(0.0, 3600.0));
                }
                "STREAM_ERROR" => plan.stream_error = streaming,
                "HOLD" => plan.hold_mid_stream = streaming,
                _ if p.starts_with(APPROVAL_PROMPT) => {
                    if let Some(call) = approved_call(&body, p) {
                        plan.text = "I'll make the approved call again.".into();
                        plan.tool = Some(call);
                    }
                }
                "RECALL" => {
                    let all = user_prompts(&body);
                    let earlier = &all[..all.len().saturating_sub(1)];
                    plan.text = format!("earlier prompts: {}", earlier.join(" | "));
                }
                "USE_TOOL_WRITE" => {
                    let mut path = word(1).to_string();
                    if !path.starts_with('/') {
                        if let Some(cwd) = cwd_of(&body) {
                            path = format!("{}/{path}", cwd.trim_end_matches('/'));
                        }
                    }
                    let content = if words.len() > 2 {
                        rest(2)
                    } else {
                        "written by the mock\n".into()
                    };
                    plan.text = "I'll write the file.".into();
                    plan.tool = Some((
                        "Write".into(),
                        json!({"file_path": path, "content": content}),
                    ));
                }
                "USE_TOOL_BASH" => {
                    plan.text = "I'll run it.".into();
                    plan.tool = Some((
                        "Bash".into(),
                        json!({"command": rest(1), "description": "Run the command"}),
                    ));
                }
                _ => {}
            }
        }
    }
    let tool_json = plan.tool.as_ref().map(|(_, i)| i.to_string());
    let out_chars = plan.text.chars().count() + tool_json.as_ref().map_or(0, |t| t.len());
    let usage = usage_for(text_len(&body), out_chars as u64);
    rec.usage = Some(usage.clone());
    let id = format!("msg_mock_{}", short_id());
    let tool_id = format!("toolu_mock_{}", short_id());
    let stop_reason = if plan.tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    if !streaming {
        let mut content = vec![json!({"type": "text", "text": plan.text})];
        if let Some((name, input)) = &plan.tool {
            content.push(json!({"type": "tool_use", "id": tool_id, "name": name, "input": input}));
        }
        let msg = json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null,
            "usage": usage,
        });
        record(st, rec);
        if st.wait_released().is_err() {
            return;
        }
        return respond_json(rq, 200, &msg);
    }
    // The answer is on its way; record now so a test sees the request while it streams.
    record(st, rec);
    if !plan.hold_mid_stream && st.wait_released().is_err() {
        return;
    }

    let mut w = rq.into_writer();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\nrequest-id: req_mock_{}\r\nTransfer-Encoding: chunked\r\n\r\n",
        short_id()
    );
    let mut sse = Sse {
        w: &mut *w,
        stop: &st.stop,
    };
    if sse.raw(head.as_bytes()).is_err() {
        return;
    }
    let mut start_usage = usage.clone();
    start_usage["output_tokens"] = json!(1);
    start_usage["service_tier"] = json!("standard");
    let _ = (|| -> std::io::Result<()> {
        sse.event(&json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": start_usage}}))?;
        sse.event(&json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))?;
        sse.event(&json!({"type": "ping"}))?;
        for (i, piece) in pieces(&plan.text, 6).iter().enumerate() {
            if i == 1 && plan.hold_mid_stream {
                st.wait_released()?;
            }
            if i > 0 {
                sse.sleep(plan.delay)?;
            }
            sse.event(&json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}))?;
            if plan.stream_error {
                sse.event(&json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded (mock, mid-stream)"}}))?;
                return sse.raw(b"0\r\n\r\n");
            }
        }
        sse.event(&json!({"type": "content_block_stop", "index": 0}))?;
        if let (Some((name, _)), Some(input)) = (&plan.tool, &tool_json) {
            sse.event(&json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}))?;
            sse.event(&json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}))?;
            for piece in pieces(input, 24) {
                sse.event(&json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": piece}}))?;
            }
            sse.event(&json!({"type": "content_block_stop", "index": 1}))?;
        }
        let mut delta_usage = usage.clone();
        delta_usage
            .as_object_mut()
            .map(|o| o.remove("service_tier"));
        sse.event(&json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null}, "usage": delta_usage}))?;
        sse.event(&json!({"type": "message_stop"}))?;
        sse.raw(b"0\r\n\r\n")
    })();
}

/// Writes SSE events as HTTP chunks, flushing each so the CLI sees it at once.
struct Sse<'a> {
    w: &'a mut dyn Write,
    stop: &'a AtomicBool,
}

impl Sse<'_> {
    fn raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes)?;
        self.w.flush()
    }

    fn event(&mut self, data: &Value) -> std::io::Result<()> {
        let kind = data["type"].as_str().unwrap_or("message");
        let payload = format!("event: {kind}\ndata: {data}\n\n");
        self.raw(format!("{:x}\r\n{payload}\r\n", payload.len()).as_bytes())
    }

    /// Sleeps in small steps, giving up when the mock stops.
    fn sleep(&self, d: Duration) -> std::io::Result<()> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stop.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("mock stopped"));
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        Ok(())
    }
}

/// Splits `text` into pieces of about `n` characters, keeping every character.
fn pieces(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}
