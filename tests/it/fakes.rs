//! Loopback fakes of the services the plugins talk to: one small tiny_http server that
//! plays a Slack incoming webhook (any path: answers `ok`) and the Telegram Bot API
//! (`/bot<token>/<method>`: `sendMessage` hands out message ids, `getUpdates` long-polls the
//! updates a test pushes, every other method answers `ok`). It records every request, can
//! fail chosen requests with a status, and can hang (take requests and never answer).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::eventually;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    /// The Bot API method (last path segment).
    pub method: String,
    pub body: Value,
    /// The status it was answered with (0: held, never answered).
    pub status: u16,
    /// The JSON it was answered with (Bot API).
    pub answer: Value,
}

#[derive(Default)]
struct State {
    calls: Mutex<Vec<Call>>,
    /// (method or "" for any, status): the next matching request fails with status.
    failures: Mutex<Vec<(String, u16)>>,
    hang: AtomicBool,
    held: Mutex<Vec<tiny_http::Request>>,
    updates: Mutex<Vec<Value>>,
    next_update: AtomicI64,
    next_message: AtomicI64,
    stop: AtomicBool,
}

pub struct Fake {
    pub addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    pub fn start() -> Fake {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let addr = server.server_addr().to_ip().unwrap();
        let state = Arc::new(State {
            next_update: AtomicI64::new(1),
            next_message: AtomicI64::new(100),
            ..State::default()
        });
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            while !st.stop.load(Ordering::SeqCst) {
                if let Ok(Some(rq)) = server.recv_timeout(Duration::from_millis(50)) {
                    let st = st.clone();
                    std::thread::spawn(move || serve(&st, rq));
                }
            }
        });
        Fake {
            addr,
            state,
            thread: Some(thread),
        }
    }

    /// A fake that takes requests and never answers.
    pub fn hanging() -> Fake {
        let f = Fake::start();
        f.state.hang.store(true, Ordering::SeqCst);
        f
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request for `method` ("" = any) is answered with `status`.
    pub fn fail_next(&self, method: &str, statuses: &[u16]) {
        let mut f = self.state.failures.lock().unwrap();
        for s in statuses {
            f.push((method.to_string(), *s));
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Calls to `method` answered 200.
    pub fn ok_calls(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.status == 200)
            .collect()
    }

    /// Waits (up to 30 s) for an answered request that `pred` accepts.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Call) -> bool) -> Call {
        let mut found = None;
        eventually(Duration::from_secs(30), || {
            found = self.calls().into_iter().find(|c| c.status != 0 && pred(c));
            found.is_some()
        });
        found.unwrap_or_else(|| {
            let seen: Vec<String> = self
                .calls()
                .iter()
                .map(|c| format!("{} {} {}", c.status, c.method, c.body))
                .collect();
            panic!("the fake never got {what}; it got:\n{}", seen.join("\n"))
        })
    }

    /// A Slack message (`text`) containing every one of `parts`.
    pub fn wait_text(&self, parts: &[&str]) -> String {
        let c = self.wait_for(&format!("a message with {parts:?}"), |c| {
            c.status == 200
                && c.body["text"]
                    .as_str()
                    .is_some_and(|t| parts.iter().all(|p| t.contains(p)))
        });
        c.body["text"].as_str().unwrap().to_string()
    }

    /// Queues a Bot API update (an `update_id` is added) for `getUpdates`.
    pub fn push_update(&self, mut update: Value) {
        update["update_id"] = json!(self.state.next_update.fetch_add(1, Ordering::SeqCst));
        self.state.updates.lock().unwrap().push(update);
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.held.lock().unwrap().clear();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(st: &State, mut rq: tiny_http::Request) {
    let path = rq.url().to_string();
    let method = path.rsplit('/').next().unwrap_or("").to_string();
    let mut text = String::new();
    let _ = rq.as_reader().read_to_string(&mut text);
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let record = |status, answer: &Value| {
        st.calls.lock().unwrap().push(Call {
            path: path.clone(),
            method: method.clone(),
            body: body.clone(),
            status,
            answer: answer.clone(),
        })
    };
    if st.hang.load(Ordering::SeqCst) {
        record(0, &Value::Null);
        st.held.lock().unwrap().push(rq);
        return;
    }
    let failure = {
        let mut f = st.failures.lock().unwrap();
        let i = f.iter().position(|(m, _)| m.is_empty() || *m == method);
        i.map(|i| f.remove(i).1)
    };
    if let Some(status) = failure {
        let answer = json!({"ok": false, "error_code": status, "description": "fake failure", "parameters": {"retry_after": 1}});
        record(status, &answer);
        let mut resp =
            tiny_http::Response::from_string(answer.to_string()).with_status_code(status);
        if status == 429 {
            resp = resp.with_header(tiny_http::Header::from_bytes("Retry-After", "1").unwrap());
        }
        let _ = rq.respond(resp);
        return;
    }
    let answer = if !path.starts_with("/bot") {
        // Slack answers a webhook with a plain `ok`.
        record(200, &Value::Null);
        let _ = rq.respond(tiny_http::Response::from_string("ok"));
        return;
    } else if method == "getUpdates" {
        let offset = body["offset"].as_i64().unwrap_or(0);
        let wait = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0).min(2));
        let until = Instant::now() + wait;
        let updates = loop {
            let ready: Vec<Value> = st
                .updates
                .lock()
                .unwrap()
                .iter()
                .filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset)
                .cloned()
                .collect();
            if !ready.is_empty() || Instant::now() >= until || st.stop.load(Ordering::SeqCst) {
                break ready;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        json!({"ok": true, "result": updates})
    } else if method == "sendMessage" {
        let id = st.next_message.fetch_add(1, Ordering::SeqCst);
        json!({"ok": true, "result": {"message_id": id, "chat": {"id": body["chat_id"]}, "text": body["text"]}})
    } else {
        json!({"ok": true, "result": true})
    };
    record(200, &answer);
    let _ = rq.respond(tiny_http::Response::from_string(answer.to_string()));
}
