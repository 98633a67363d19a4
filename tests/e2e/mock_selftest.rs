use serde_json::{json, Value};

use crate::mock::Mock;
use crate::support::*;

/// Requests exactly as the real CLI 2.1.330 sent them (tests/fixtures).
const FIRST_TURN: &str = include_str!("../fixtures/messages_first_turn.request.json");
const RESUME: &str = include_str!("../fixtures/messages_resume.requests.jsonl");
const TOOL_RESULT: &str = include_str!("../fixtures/messages_tool_result.requests.jsonl");

fn captured(text: &str, line: usize) -> (Vec<(String, String)>, Value) {
    let v: Value = serde_json::from_str(text.lines().nth(line).unwrap()).unwrap();
    let headers = v["headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !["Content-Length", "Host", "Connection"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    (headers, v["body"].clone())
}

/// POSTs `body` as the CLI would and returns (status, SSE events or the JSON body).
fn post(mock: &Mock, headers: &[(String, String)], body: &Value) -> (u16, Vec<Value>) {
    post_to(mock.addr, headers, body)
}

fn post_to(
    addr: std::net::SocketAddr,
    headers: &[(String, String)],
    body: &Value,
) -> (u16, Vec<Value>) {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = request(
        addr,
        "POST",
        "/v1/messages?beta=true",
        None,
        &h,
        body.to_string().as_bytes(),
    );
    let events = if r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        let text = r.text();
        let mut out = Vec::new();
        for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
            let kind = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap();
            let data: Value = serde_json::from_str(
                block
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(data["type"], kind, "{block}");
            out.push(data);
        }
        out
    } else {
        vec![r.json()]
    };
    (r.status, events)
}

fn text_of(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e.pointer("/delta/text").and_then(Value::as_str))
        .collect()
}

fn with_prompt(body: &Value, prompt: &str) -> Value {
    let mut b = body.clone();
    let content = b["messages"][0]["content"].as_array_mut().unwrap();
    let last = content.len() - 1;
    content[last]["text"] = json!(prompt);
    b
}

#[test]
fn the_first_turn_as_the_cli_sends_it_gets_a_streamed_echo() {
    let mock = Mock::start();
    let req: Value = serde_json::from_str(FIRST_TURN).unwrap();
    let headers: Vec<(String, String)> = req["headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !["Content-Length", "Host", "Connection"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let (status, events) = post(&mock, &headers, &req["body"]);
    assert_eq!(status, 200);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    assert_eq!(text_of(&events), "echo: hello");
    assert_eq!(events[0]["message"]["model"], req["body"]["model"]);
    let start = &events[0]["message"]["usage"];
    let delta = &events[events.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["input_tokens"], start["input_tokens"]);
    let rec = &mock.requests()[0];
    assert_eq!(rec.prompt.as_deref(), Some("hello"));
    assert_eq!(
        rec.session_id(),
        Some("ecfdecec-4200-4f36-89e6-c806946221a0")
    );
    assert_eq!(
        rec.usage.as_ref().unwrap()["output_tokens"],
        delta["usage"]["output_tokens"]
    );
}

#[test]
fn recall_tools_errors_and_non_streaming() {
    let mock = Mock::start();
    // A resumed conversation: user, system, assistant, user.
    let (h, body) = captured(RESUME, 0);
    let (_, ev) = post(&mock, &h, &with_prompt_last(&body, "RECALL"));
    assert_eq!(text_of(&ev), "earlier prompts: my name is Zed");

    // A Write call into the CLI's working directory, then the tool result's turn.
    let (h, body) = captured(TOOL_RESULT, 0);
    let (_, ev) = post(
        &mock,
        &h,
        &with_prompt(&body, "USE_TOOL_WRITE f.txt some content"),
    );
    let tool = ev
        .iter()
        .find(|e| e["content_block"]["type"] == "tool_use")
        .expect("tool_use block");
    assert_eq!(tool["content_block"]["name"], "Write");
    let input: String = ev
        .iter()
        .filter_map(|e| e.pointer("/delta/partial_json").and_then(Value::as_str))
        .collect();
    let input: Value = serde_json::from_str(&input).unwrap();
    assert_eq!(
        input,
        json!({"file_path": "<CWD>/f.txt", "content": "some content"})
    );
    let (_, ev) = post(&mock, &h, &captured(TOOL_RESULT, 1).1);
    assert!(
        text_of(&ev).starts_with("tool ok: File created successfully"),
        "{ev:?}"
    );

    // API errors in the API's shape; the non-streaming fallback gets one JSON message.
    let (status, ev) = post(&mock, &h, &with_prompt(&body, "API_ERROR 529"));
    assert_eq!(status, 529);
    assert_eq!(ev[0]["error"]["type"], "overloaded_error");
    let (_, ev) = post(&mock, &h, &with_prompt(&body, "STREAM_ERROR x"));
    assert_eq!(ev.last().unwrap()["type"], "error");
    let mut plain = with_prompt(&body, "STREAM_ERROR x");
    plain["stream"] = json!(false);
    let (status, ev) = post(&mock, &h, &plain);
    assert_eq!(status, 200);
    assert_eq!(ev[0]["content"][0]["text"], "echo: STREAM_ERROR x");
    assert!(ev[0]["usage"]["input_tokens"].as_u64().unwrap() > 2000);
}

fn with_prompt_last(body: &Value, prompt: &str) -> Value {
    let mut b = body.clone();
    let messages = b["messages"].as_array_mut().unwrap();
    let last = messages.len() - 1;
    messages[last]["content"][0]["text"] = json!(prompt);
    b
}

#[test]
fn probes_and_models_are_answered() {
    let mock = Mock::start();
    let r = request(mock.addr, "HEAD", "/api/hello", None, &[], b"");
    assert_eq!(r.status, 200);
    let r = request(mock.addr, "GET", "/v1/models?limit=100", None, &[], b"");
    assert_eq!(r.status, 200);
    let ids: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&"claude-sonnet-5-5".to_string()), "{ids:?}");
    let r = request(
        mock.addr,
        "POST",
        "/v1/messages/count_tokens",
        None,
        &[],
        b"{}",
    );
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(mock.requests().len(), 3);
    // The record, for a test in another process; listing it is not recorded.
    let r = request(mock.addr, "GET", "/_mock/requests", None, &[], b"");
    assert_eq!(r.status, 200);
    let listed = r.json();
    let urls: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            "/api/hello",
            "/v1/models?limit=100",
            "/v1/messages/count_tokens"
        ]
    );
    assert_eq!(listed[2]["method"], "POST");
    assert_eq!(mock.requests().len(), 3);
}

#[test]
fn hold_sends_the_first_delta_and_approval_repeats_the_call() {
    let mock = Mock::start();
    let (h, body) = captured(TOOL_RESULT, 0);
    let addr = mock.addr;

    // Held: a HOLD answer has sent its first delta (the test reads it) and waits.
    mock.hold();
    let mut s = connect(addr);
    let hb: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    send_request(
        &mut s,
        "POST",
        "/v1/messages?beta=true",
        None,
        &hb,
        with_prompt(&body, "HOLD one two three")
            .to_string()
            .as_bytes(),
    );
    let mut r = std::io::BufReader::new(s);
    let (status, _) = read_head(&mut r);
    assert_eq!(status, 200);
    let mut seen = String::new();
    while !seen.contains("text_delta") {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut r, &mut line).unwrap();
        seen.push_str(&line);
    }
    assert!(seen.contains(r#""text":"echo: ""#), "{seen}");
    // Another request waits before its answer while the mock is held.
    let other = {
        let (h, b) = (h.clone(), with_prompt(&body, "plain"));
        std::thread::spawn(move || post_to(addr, &h, &b))
    };
    assert!(eventually(std::time::Duration::from_secs(10), || mock
        .requests()
        .len()
        == 2));
    assert!(!other.is_finished());
    assert!(!seen.contains("message_stop"));
    mock.release();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut r, &mut rest);
    assert!(rest.contains("message_stop"), "{rest}");
    assert_eq!(text_of(&other.join().unwrap().1), "echo: plain");

    // Claudeway's approval prompt: the named call again, same tool, same input.
    let (_, mut body) = captured(TOOL_RESULT, 1);
    let messages = body["messages"].as_array_mut().unwrap();
    let call = messages
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .find(|b| b["type"] == "tool_use")
        .unwrap()
        .clone();
    let prompt = format!(
        "The user approved these tool calls that were denied before:\n- Write ({}) file_path: x\nPlease make exactly these calls again now.",
        call["id"].as_str().unwrap()
    );
    messages.push(json!({"role": "user", "content": [{"type": "text", "text": prompt}]}));
    let (_, ev) = post(&mock, &h, &body);
    let tool = ev
        .iter()
        .find(|e| e["content_block"]["type"] == "tool_use")
        .expect("the call again");
    assert_eq!(tool["content_block"]["name"], call["name"]);
    assert_ne!(tool["content_block"]["id"], call["id"]);
    let input: String = ev
        .iter()
        .filter_map(|e| e.pointer("/delta/partial_json").and_then(Value::as_str))
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        call["input"]
    );
}
