//! GET /models: the three sources (a mock Models API on loopback, settings.json, the built-in
//! list), falling back, and the cache: stale answers at once while exactly one refresh runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde_json::{json, Value};

use crate::support::*;

type Answer = Box<dyn Fn(&str) -> (u16, String) + Send>;

/// A Models API on 127.0.0.1: answers with `answer(url)`, records what it was sent, and can
/// hold requests until released (to keep a refresh in flight).
struct MockApi {
    url: String,
    shared: Arc<Shared>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    state: Mutex<MockState>,
    released: Condvar,
}

struct MockState {
    answer: Answer,
    hold: bool,
    /// (url, x-api-key, anthropic-version) of every request.
    seen: Vec<(String, String, String)>,
    in_flight: usize,
    max_in_flight: usize,
}

fn header(rq: &tiny_http::Request, name: &str) -> String {
    rq.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_string())
        .unwrap_or_default()
}

impl MockApi {
    fn start(answer: Answer) -> MockApi {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let shared = Arc::new(Shared {
            state: Mutex::new(MockState {
                answer,
                hold: false,
                seen: Vec::new(),
                in_flight: 0,
                max_in_flight: 0,
            }),
            released: Condvar::new(),
        });
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sh, st) = (shared.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok(Some(rq)) = server.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                let sh = sh.clone();
                std::thread::spawn(move || {
                    let (status, body) = {
                        let mut s = sh.state.lock();
                        s.seen.push((
                            rq.url().to_string(),
                            header(&rq, "x-api-key"),
                            header(&rq, "anthropic-version"),
                        ));
                        s.in_flight += 1;
                        s.max_in_flight = s.max_in_flight.max(s.in_flight);
                        let until = Instant::now() + Duration::from_secs(60);
                        while s.hold && Instant::now() < until {
                            sh.released.wait_until(&mut s, until);
                        }
                        (s.answer)(rq.url())
                    };
                    let resp = tiny_http::Response::from_string(body)
                        .with_status_code(status)
                        .with_header(
                            tiny_http::Header::from_bytes("Content-Type", "application/json")
                                .unwrap(),
                        );
                    let _ = rq.respond(resp);
                    sh.state.lock().in_flight -= 1;
                });
            }
        });
        MockApi {
            url,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    fn answer(&self, answer: Answer) {
        self.shared.state.lock().answer = answer;
    }

    fn hold(&self, on: bool) {
        self.shared.state.lock().hold = on;
        self.shared.released.notify_all();
    }

    fn seen(&self) -> Vec<(String, String, String)> {
        self.shared.state.lock().seen.clone()
    }

    fn in_flight(&self) -> usize {
        self.shared.state.lock().in_flight
    }

    fn max_in_flight(&self) -> usize {
        self.shared.state.lock().max_in_flight
    }
}

impl Drop for MockApi {
    fn drop(&mut self) {
        self.hold(false);
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Models API page of `(id, display_name)`.
fn page(models: &[(&str, &str)], has_more: bool) -> String {
    let data: Vec<Value> = models
        .iter()
        .map(|(id, name)| {
            let mut m = json!({"type": "model", "id": id, "created_at": "2026-01-01T00:00:00Z"});
            if !name.is_empty() {
                m["display_name"] = json!(name);
            }
            m
        })
        .collect();
    json!({
        "data": data,
        "has_more": has_more,
        "first_id": models.first().map(|m| m.0),
        "last_id": models.last().map(|m| m.0),
    })
    .to_string()
}

fn ok(body: String) -> Answer {
    Box::new(move |_| (200, body.clone()))
}

fn api_error() -> Answer {
    Box::new(|_| {
        (
            500,
            json!({"type": "error", "error": {"type": "api_error", "message": "boom"}}).to_string(),
        )
    })
}

const API_KEY: &str = "sk-ant-test-0123456789";

/// A server whose CLI environment points the Models API at `mock` (or hides any API key of
/// the process when `mock` is None).
fn server(mock: Option<&MockApi>, ttl: Duration, timeout: Duration) -> TestServer {
    let url = mock.map(|m| m.url.clone());
    TestServer::with(move |c| {
        c.models_ttl = ttl;
        c.models_fetch_timeout = timeout;
        match url {
            Some(url) => {
                c.claude_env
                    .push(("ANTHROPIC_API_KEY".into(), API_KEY.into()));
                c.claude_env.push(("ANTHROPIC_BASE_URL".into(), url));
            }
            // An empty value in [claude.env] hides a key the process may have.
            None => c
                .claude_env
                .push(("ANTHROPIC_API_KEY".into(), String::new())),
        }
    })
}

fn write_settings(srv: &TestServer, settings: &Value) {
    let dir = srv.root().join("home").join(".claude");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("settings.json"), settings.to_string()).unwrap();
}

fn ids(v: &Value) -> Vec<String> {
    v["models"]
        .as_array()
        .expect("models is a list")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

fn models(srv: &TestServer) -> Value {
    let r = srv.get("/models", Some(USER));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v.as_object().unwrap().len(), 2, "models and aliases: {v}");
    v
}

const LONG: Duration = Duration::from_secs(3600);
/// A fetch timeout no loaded machine reaches with a mock that answers at once: the first
/// request waits for the first fetch at most this long.
const PATIENT: Duration = Duration::from_secs(20);

#[test]
fn the_models_api_is_asked_with_the_key_and_pages_are_followed() {
    let mock = MockApi::start(Box::new(|url| {
        if url.contains("after_id=claude-opus-9") {
            (200, page(&[("claude-haiku-9", "")], false))
        } else {
            let first = [
                ("claude-sonnet-9-1", "Claude Sonnet 9.1"),
                ("claude-opus-9", "Claude Opus 9"),
            ];
            (200, page(&first, true))
        }
    }));
    let srv = server(Some(&mock), LONG, PATIENT);
    srv.get("/models", None).error(401, "UNAUTHORIZED");
    let v = models(&srv);
    assert_eq!(
        v,
        json!({
            "models": [
                {"id": "claude-sonnet-9-1", "name": "Claude Sonnet 9.1"},
                {"id": "claude-opus-9", "name": "Claude Opus 9"},
                {"id": "claude-haiku-9", "name": "Claude Haiku 9"},
            ],
            "aliases": {"sonnet": "claude-sonnet-9-1", "opus": "claude-opus-9", "haiku": "claude-haiku-9"},
        })
    );
    let seen = mock.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, "/v1/models?limit=1000");
    assert_eq!(seen[1].0, "/v1/models?limit=1000&after_id=claude-opus-9");
    for (_, key, version) in &seen {
        assert_eq!((key.as_str(), version.as_str()), (API_KEY, "2023-06-01"));
    }
    // Cached: the next answers do not ask again.
    assert_eq!(models(&srv), v);
    assert_eq!(mock.seen().len(), 2);
}

#[test]
fn without_an_api_key_settings_json_is_the_source() {
    let srv = server(None, LONG, PATIENT);
    write_settings(
        &srv,
        &json!({"model": "opus", "availableModels": [
            "sonnet", "claude-sonnet-4-5-20250929", "claude-3-5-haiku-20241022", "opus[1m]"
        ]}),
    );
    let v = models(&srv);
    assert_eq!(
        v,
        json!({
            "models": [
                {"id": "claude-sonnet-4-5-20250929", "name": "Claude Sonnet 4.5"},
                {"id": "claude-3-5-haiku-20241022", "name": "Claude 3.5 Haiku"},
            ],
            "aliases": {"sonnet": "claude-sonnet-4-5-20250929", "opus": null, "haiku": "claude-3-5-haiku-20241022"},
        })
    );
}

#[test]
fn with_nothing_configured_the_built_in_list_answers() {
    let srv = server(None, LONG, PATIENT);
    let v = models(&srv);
    let ids = ids(&v);
    assert!(ids.len() >= 3, "{v}");
    for alias in ["sonnet", "opus", "haiku"] {
        let target = v["aliases"][alias].as_str().expect("every alias is set");
        assert!(ids.iter().any(|i| i == target), "{alias} -> {target}");
        assert!(!ids.iter().any(|i| i == alias), "aliases are not models");
        assert!(target.contains(alias));
    }
    assert!(v["models"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["name"].as_str().is_some_and(|n| !n.is_empty())));
}

#[test]
fn a_failing_api_falls_back_and_a_failed_refresh_keeps_the_list() {
    let mock = MockApi::start(api_error());
    let srv = server(Some(&mock), Duration::from_millis(200), PATIENT);
    write_settings(
        &srv,
        &json!({"availableModels": ["claude-sonnet-settings-1"]}),
    );
    // The API fails: settings.json answers.
    assert_eq!(ids(&models(&srv)), ["claude-sonnet-settings-1"]);
    assert!(!mock.seen().is_empty());

    // The API comes back: a later refresh takes its list.
    mock.answer(ok(page(
        &[("claude-sonnet-api-1", "Claude Sonnet API")],
        false,
    )));
    assert!(
        eventually(Duration::from_secs(30), || ids(&models(&srv))
            == ["claude-sonnet-api-1"]),
        "the API list replaces the settings list"
    );

    // The API fails again: refreshes run (and fail), the API list stays.
    mock.answer(api_error());
    let before = mock.seen().len();
    assert!(eventually(Duration::from_secs(30), || {
        assert_eq!(ids(&models(&srv)), ["claude-sonnet-api-1"]);
        mock.seen().len() >= before + 2
    }));
    assert_eq!(ids(&models(&srv)), ["claude-sonnet-api-1"]);
}

#[test]
fn a_stale_list_is_answered_at_once_while_one_refresh_runs() {
    let mock = MockApi::start(ok(page(&[("claude-opus-old", "")], false)));
    // A long fetch timeout: the held refresh stays in flight for as long as the test wants.
    let srv = server(
        Some(&mock),
        Duration::from_millis(100),
        Duration::from_secs(120),
    );
    assert_eq!(ids(&models(&srv)), ["claude-opus-old"]);
    assert_eq!(mock.seen().len(), 1);

    mock.answer(ok(page(&[("claude-opus-new", "")], false)));
    mock.hold(true);
    // Once the TTL has passed, a request starts the refresh (which the mock now holds).
    assert!(eventually(Duration::from_secs(30), || {
        assert_eq!(ids(&models(&srv)), ["claude-opus-old"]);
        mock.in_flight() == 1
    }));
    // While it is held, every request is answered with the stale list, none waits, and no
    // second refresh starts.
    let addr = srv.addr;
    let clients: Vec<_> = (0..16)
        .map(|_| std::thread::spawn(move || request(addr, "GET", "/models", Some(USER), &[], b"")))
        .collect();
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(ids(&r.json()), ["claude-opus-old"]);
    }
    assert_eq!(mock.in_flight(), 1, "the refresh was still held");
    assert_eq!(mock.seen().len(), 2, "one initial fetch, one refresh");

    mock.hold(false);
    assert!(eventually(Duration::from_secs(30), || ids(&models(&srv))
        == ["claude-opus-new"]));
    assert_eq!(mock.max_in_flight(), 1, "never two refreshes at once");
}

#[test]
fn a_cold_cache_waits_for_the_first_fetch_only_so_long() {
    let mock = MockApi::start(ok(page(&[("claude-haiku-slow", "")], false)));
    mock.hold(true);
    let srv = server(
        Some(&mock),
        Duration::from_millis(200),
        Duration::from_secs(1),
    );
    // The API does not answer within the fetch timeout: the built-in list answers.
    let v = models(&srv);
    assert!(!ids(&v).is_empty());
    assert!(!ids(&v).contains(&"claude-haiku-slow".to_string()), "{v}");
    mock.hold(false);
    assert!(eventually(Duration::from_secs(30), || ids(&models(&srv))
        == ["claude-haiku-slow"]));
}
