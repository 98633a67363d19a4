use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::Message;

use crate::support::*;

fn names(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

#[test]
fn sse_events_in_order_with_exact_bytes() {
    let srv = TestServer::start();
    let mut s =
        SseClient::open(srv.addr, Some(USER), &json!({"prompt": "hello big world"})).unwrap();
    assert!(s
        .header("Content-Type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(s.header("Cache-Control"), Some("no-cache"));
    assert_eq!(s.header("X-Accel-Buffering"), Some("no"));
    assert!(s.header("X-Request-Id").is_some());
    let events = s.rest();
    assert!(s.ended(), "the body ends with its last chunk");
    // The fake streams "echo: ", "hello ", "big world" as three deltas.
    assert_eq!(names(&events), ["text", "text", "text", "done"]);
    assert_eq!(events[0].raw, "event: text\ndata: echo: \n\n");
    assert_eq!(events[1].data, "echo: hello ");
    assert_eq!(
        events[2].data, "echo: hello big world",
        "text is the accumulated text"
    );
    let done: Value = serde_json::from_str(&events[3].data).unwrap();
    assert_eq!(done["result"], "echo: hello big world");
    assert_eq!(done["success"], true);
    assert!(done["cost_usd"].as_f64().unwrap() > 0.0);
    assert!(done.get("permission_denials").is_none());
    let line = srv.audit("user").pop().unwrap();
    assert_eq!(line["route"], "/task/stream");
    assert_eq!(line["message"], "task completed");
    assert_eq!(line["session_id"], done["session_id"]);
}

#[test]
fn sse_multi_line_text_comes_back_exactly() {
    let srv = TestServer::start();
    let mut s = SseClient::open(srv.addr, Some(USER), &json!({"prompt": "MULTILINE"})).unwrap();
    let events = s.rest();
    let last_text = events.iter().rfind(|e| e.name == "text").unwrap();
    assert_eq!(last_text.data, "line one\nline two\n\nline four");
    assert!(
        last_text
            .raw
            .contains("data: line one\ndata: line two\ndata: \ndata: line four\n\n"),
        "{:?}",
        last_text.raw
    );
}

#[test]
fn sse_delta_mode_sends_only_new_pieces() {
    let srv = TestServer::start();
    let body = json!({"prompt": "one two three four", "stream_mode": "delta"});
    let events = SseClient::open(srv.addr, Some(USER), &body).unwrap().rest();
    let pieces: Vec<&str> = events
        .iter()
        .filter(|e| e.name == "text")
        .map(|e| e.data.as_str())
        .collect();
    assert!(pieces.len() > 2);
    assert_eq!(pieces[1], "one two ");
    assert_eq!(pieces.concat(), "echo: one two three four");
    let bad = SseClient::open(
        srv.addr,
        Some(USER),
        &json!({"prompt": "x", "stream_mode": "both"}),
    )
    .err()
    .unwrap();
    assert!(bad.error(400, "BAD_REQUEST").contains("stream_mode"));
}

#[test]
fn sse_delivers_each_event_while_the_cli_is_still_running() {
    let srv = TestServer::start();
    let gate = srv.root().join("go-on");
    let prompt = format!("WAIT_FILE {} and then the rest", gate.display());
    let mut s = SseClient::open(srv.addr, Some(USER), &json!({"prompt": prompt})).unwrap();
    // The fake printed its first delta and now waits for the file we have not created yet.
    let first = s.next_event().unwrap();
    assert_eq!(first.name, "text");
    assert_eq!(first.data, "echo: ");
    assert!(!gate.exists());
    std::fs::write(&gate, "").unwrap();
    let rest = s.rest();
    assert_eq!(rest.last().unwrap().name, "done");
}

#[test]
fn sse_client_gone_kills_the_cli() {
    let srv = TestServer::start();
    let s = SseClient::open(srv.addr, Some(USER), &json!({"prompt": "HANG"})).unwrap();
    assert!(eventually(Duration::from_secs(20), || srv
        .fake_runs()
        .len()
        == 1));
    let run = srv.fake_run("HANG");
    assert!(run_alive(&run));
    drop(s);
    assert!(
        eventually(Duration::from_secs(10), || !run_alive(&run)),
        "the CLI dies when the client goes"
    );
    assert!(eventually(Duration::from_secs(10), || srv
        .audit("user")
        .len()
        == 1));
    let line = srv.audit("user").pop().unwrap();
    assert_eq!(line["message"], "task cancelled");
    assert_eq!(line["status"], 499);
    assert_eq!(srv.app().registry.len(), 0);
}

#[test]
fn sse_timeout_is_an_error_event_then_done() {
    let srv = TestServer::start();
    let mut s = SseClient::open(
        srv.addr,
        Some(USER),
        &json!({"prompt": "HANG", "timeout_secs": 1}),
    )
    .unwrap();
    let events = s.rest();
    assert_eq!(names(&events), ["error", "done"]);
    let err: Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(err["code"], "TIMEOUT");
    let done: Value = serde_json::from_str(&events[1].data).unwrap();
    assert_eq!(done["success"], false);
    assert_eq!(done["error"], err["error"]);
    let run = srv.fake_run("HANG");
    assert!(eventually(Duration::from_secs(10), || !run_alive(&run)));
}

#[test]
fn sse_heartbeats_while_quiet() {
    let srv = TestServer::with(|c| c.heartbeat = Duration::from_millis(200));
    let mut s = SseClient::open(
        srv.addr,
        Some(USER),
        &json!({"prompt": "SLEEP 1500 then talk"}),
    )
    .unwrap();
    let events = s.rest();
    assert_eq!(events.last().unwrap().name, "done");
    assert!(
        s.comments >= 2,
        "keep-alive comments while the CLI was silent: {}",
        s.comments
    );
}

#[test]
fn sse_denials_and_cli_errors() {
    let srv = TestServer::with(|c| c.permissions_bypass = false);
    let events = SseClient::open(srv.addr, Some(USER), &json!({"prompt": "WRITE f.txt hi"}))
        .unwrap()
        .rest();
    let n = names(&events);
    assert_eq!(&n[n.len() - 2..], ["permission_denied", "done"]);
    let denials: Value = serde_json::from_str(&events[n.len() - 2].data).unwrap();
    assert_eq!(denials[0]["tool_name"], "Write");
    let done: Value = serde_json::from_str(&events[n.len() - 1].data).unwrap();
    assert_eq!(done["permission_denials"], denials);

    // The real CLI prints the API error as an assistant text line too (see the g2 capture).
    let events = SseClient::open(srv.addr, Some(USER), &json!({"prompt": "API_ERROR"}))
        .unwrap()
        .rest();
    assert_eq!(names(&events), ["text", "error", "done"]);
    let err: Value = serde_json::from_str(&events[1].data).unwrap();
    assert_eq!(err["code"], "CLI_ERROR");
    assert!(err["error"].as_str().unwrap().contains("API Error: 500"));
}

#[test]
fn sse_errors_before_the_stream_are_plain_http() {
    let srv = TestServer::with(|c| c.max_streams = 1);
    SseClient::open(srv.addr, None, &json!({"prompt": "x"}))
        .err()
        .unwrap()
        .error(401, "UNAUTHORIZED");
    SseClient::open(srv.addr, Some(USER), &json!({}))
        .err()
        .unwrap()
        .error(400, "BAD_REQUEST");
    let _open = SseClient::open(srv.addr, Some(USER), &json!({"prompt": "HANG"})).unwrap();
    let r = SseClient::open(srv.addr, Some(USER), &json!({"prompt": "second"}))
        .err()
        .unwrap();
    r.error(503, "OVERLOADED");
    assert!(r.header("Retry-After").is_some());
}

#[test]
fn ws_happy_path() {
    let srv = TestServer::start();
    let (mut ws, resp) = ws_connect(srv.addr, Some(USER), &[]).unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::Text(
        json!({"prompt": "hello over ws"}).to_string().into(),
    ))
    .unwrap();
    let events = ws_events(&mut ws);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.last(), Some(&"done"));
    assert!(kinds[..kinds.len() - 1].iter().all(|k| *k == "text"));
    assert_eq!(events[kinds.len() - 2]["data"], "echo: hello over ws");
    assert_eq!(
        events.last().unwrap()["data"]["result"],
        "echo: hello over ws"
    );
    assert_eq!(srv.audit("user").pop().unwrap()["route"], "/task/ws");
}

#[test]
fn ws_auth_by_header_or_subprotocol() {
    let srv = TestServer::start();
    match ws_connect(srv.addr, None, &[]) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let key_proto = format!("claudeway.bearer.{USER}");
    let (mut ws, resp) = ws_connect(srv.addr, None, &["claudeway", &key_proto]).unwrap();
    assert_eq!(
        resp.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "claudeway"
    );
    ws.send(Message::Text(
        json!({"prompt": "via protocol"}).to_string().into(),
    ))
    .unwrap();
    assert_eq!(ws_events(&mut ws).last().unwrap()["data"]["success"], true);
    match ws_connect(srv.addr, None, &["claudeway", "claudeway.bearer.wrong"]) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    match ws_connect(srv.addr, None, &[&key_proto]) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("expected 400, got {other:?}"),
    }
    let r = srv.get("/task/ws", Some(USER));
    assert!(r.error(400, "BAD_REQUEST").contains("WebSocket"));
}

#[test]
fn ws_bad_first_message_is_an_error_then_close() {
    let srv = TestServer::start();
    for bad in ["not json", "{}", "{\"prompt\": 3}"] {
        let (mut ws, _) = ws_connect(srv.addr, Some(USER), &[]).unwrap();
        ws.send(Message::Text(bad.to_string().into())).unwrap();
        let events = ws_events(&mut ws);
        assert_eq!(events.len(), 1, "{bad}: {events:?}");
        assert_eq!(events[0]["event"], "error");
        assert_eq!(events[0]["code"], "BAD_REQUEST");
    }
    assert!(srv.fake_runs().is_empty());
}

#[test]
fn ws_denials_before_done_and_timeout_error() {
    let srv = TestServer::with(|c| c.permissions_bypass = false);
    let (mut ws, _) = ws_connect(srv.addr, Some(USER), &[]).unwrap();
    ws.send(Message::Text(
        json!({"prompt": "WRITE f.txt hi"}).to_string().into(),
    ))
    .unwrap();
    let events = ws_events(&mut ws);
    let n = events.len();
    assert_eq!(events[n - 2]["event"], "permission_denied");
    assert_eq!(events[n - 2]["data"][0]["tool_name"], "Write");
    assert_eq!(events[n - 1]["event"], "done");

    let (mut ws, _) = ws_connect(srv.addr, Some(USER), &[]).unwrap();
    ws.send(Message::Text(
        json!({"prompt": "HANG", "timeout_secs": 1})
            .to_string()
            .into(),
    ))
    .unwrap();
    let events = ws_events(&mut ws);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["event"], "error");
    assert_eq!(events[0]["code"], "TIMEOUT");
    assert_eq!(events[1]["data"]["success"], false);
}

#[test]
fn ws_close_kills_the_cli() {
    let srv = TestServer::start();
    let (mut ws, _) = ws_connect(srv.addr, Some(USER), &[]).unwrap();
    ws.send(Message::Text(json!({"prompt": "HANG"}).to_string().into()))
        .unwrap();
    assert!(eventually(Duration::from_secs(20), || srv
        .fake_runs()
        .len()
        == 1));
    let run = srv.fake_run("HANG");
    ws.close(None).unwrap();
    let _ = ws_events(&mut ws);
    assert!(eventually(Duration::from_secs(10), || !run_alive(&run)));
    assert!(eventually(Duration::from_secs(10), || srv
        .audit("user")
        .len()
        == 1));
    assert_eq!(srv.audit("user")[0]["message"], "task cancelled");
}
