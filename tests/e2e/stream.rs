use serde_json::{json, Value};
use tungstenite::Message;

use crate::harness::{close, E2e};
use crate::mock::Mock;
use crate::support::*;

/// The cost the CLI itself reports for `prompt`, run directly (the mock answers the same
/// prompt with the same usage, so the cost must be the same through Claudeway).
fn direct_cost(e: &E2e, prompt: &str) -> f64 {
    let v = e.run_cli(
        &["-p", "--output-format", "json", "--model", "sonnet"],
        prompt,
    );
    v["total_cost_usd"].as_f64().expect("total_cost_usd")
}

/// Checks a `done` payload against what the mock answered and what the CLI reports.
fn check_done(e: &E2e, done: &Value, prompt: &str) {
    assert_eq!(done["success"], true, "{done}");
    assert_eq!(done["result"], format!("echo: {prompt}"), "{done}");
    let sent = e.mock.messages_for(done["session_id"].as_str().unwrap());
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(done["tokens"], Mock::tokens(&sent), "{done}");
    let cost = done["cost_usd"].as_f64().expect("cost_usd");
    let direct = direct_cost(e, prompt);
    assert!(close(cost, direct), "{cost} vs the CLI's {direct}");
}

#[test]
fn task_stream_sends_each_delta_as_it_comes_then_done() {
    let Some(e) = E2e::start() else { return };
    let prompt = "HOLD the first piece comes alone";
    // The mock sends the first delta, then waits: that delta must reach the client while
    // the CLI is still running (nothing is buffered until the end).
    e.mock.hold();
    let body = json!({"prompt": prompt, "stream_mode": "delta"});
    let mut sse = SseClient::open(e.srv.addr, Some(USER), &body)
        .unwrap_or_else(|r| panic!("stream refused: {} {}", r.status, r.text()));
    assert!(sse
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(sse.header("x-request-id").is_some());
    let first = sse.next_event().expect("a first event");
    assert_eq!(
        (first.name.as_str(), first.data.as_str()),
        ("text", "echo: ")
    );
    assert_eq!(e.srv.get("/health", None).json()["runs"]["running"], 1);
    assert!(!e.cli_processes().is_empty(), "the CLI is still running");
    e.mock.release();

    let rest = sse.rest();
    assert!(sse.ended(), "the body ends after done");
    let (done, texts) = rest.split_last().expect("done");
    assert_eq!(done.name, "done", "{rest:?}");
    assert!(texts.iter().all(|t| t.name == "text"), "{rest:?}");
    // Each of the mock's deltas (6 characters) is an event of its own.
    assert!(texts.len() >= 2, "{texts:?}");
    assert!(
        texts.iter().all(|t| t.data.chars().count() <= 6),
        "{texts:?}"
    );
    let streamed: String = std::iter::once(first.data.as_str())
        .chain(texts.iter().map(|t| t.data.as_str()))
        .collect();
    assert_eq!(streamed, format!("echo: {prompt}"));
    check_done(&e, &serde_json::from_str(&done.data).unwrap(), prompt);
}

#[test]
fn task_ws_sends_the_deltas_then_done_and_closes() {
    let Some(e) = E2e::start() else { return };
    let prompt = "SLOW 0.2 over the socket";
    let (mut ws, resp) = ws_connect(e.srv.addr, Some(USER), &[]).expect("upgrade");
    assert_eq!(resp.status(), 101);
    let body = json!({"prompt": prompt, "stream_mode": "delta"});
    ws.send(Message::Text(body.to_string().into())).unwrap();
    let events = ws_events(&mut ws);
    let (done, texts) = events.split_last().expect("done");
    assert_eq!(done["event"], "done", "{events:?}");
    assert!(texts.iter().all(|t| t["event"] == "text"), "{events:?}");
    // The mock paused 0.2 s between its 6-character deltas: they came one by one.
    assert!(texts.len() >= 2, "{texts:?}");
    let streamed: String = texts.iter().map(|t| t["data"].as_str().unwrap()).collect();
    assert_eq!(streamed, format!("echo: {prompt}"));
    check_done(&e, &done["data"], prompt);
}
