use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::Message;

use crate::harness::{close, E2e};
use crate::mock::Mock;
use crate::support::*;

fn start(e: &E2e, body: Value) -> String {
    let r = e.srv.post("/session/start", Some(USER), &body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["session_id"].as_str().unwrap().to_string()
}

fn turn(e: &E2e, id: &str, prompt: &str) -> Value {
    let r = e.srv.post(
        &format!("/session/{id}"),
        Some(USER),
        &json!({"prompt": prompt}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["session_id"], id, "{v}");
    v
}

#[test]
fn three_turns_over_http_sse_and_ws_carry_the_earlier_turns() {
    let Some(e) = E2e::start() else { return };
    let id = start(&e, json!({"model": "haiku"}));

    let one = turn(&e, &id, "my name is Zed");
    assert_eq!(one["result"], "echo: my name is Zed", "{one}");

    let mut sse = SseClient::open_path(
        e.srv.addr,
        &format!("/session/{id}/stream"),
        Some(USER),
        &json!({"prompt": "I like tea"}),
    )
    .unwrap_or_else(|r| panic!("{} {}", r.status, r.text()));
    let done = sse.rest().pop().expect("done");
    assert_eq!(done.name, "done");
    let two: Value = serde_json::from_str(&done.data).unwrap();
    assert_eq!(two["result"], "echo: I like tea", "{two}");

    let (mut ws, _) = ws_connect(e.srv.addr, Some(USER), &[]).expect("upgrade");
    let first = json!({"prompt": "RECALL what I said", "session_id": id});
    ws.send(Message::Text(first.to_string().into())).unwrap();
    let events = ws_events(&mut ws);
    let three = &events.last().expect("done")["data"];
    assert_eq!(three["session_id"], id.as_str());
    assert_eq!(
        three["result"], "earlier prompts: my name is Zed | I like tea",
        "{events:?}"
    );

    // What the CLI sent: each turn the whole conversation so far, with the session's model.
    let sent = e.mock.messages_for(&id);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(
        sent[2].user_prompts(),
        ["my name is Zed", "I like tea", "RECALL what I said"]
    );
    assert!(sent.iter().all(|r| r.body["model"] == "claude-haiku-5-5"));

    // The session adds up what the CLI reported for its turns.
    let s = e.srv.get(&format!("/session/{id}"), Some(USER)).json();
    assert_eq!(s["task_count"], 3, "{s}");
    assert_eq!(s["tokens"], Mock::tokens(&sent), "{s}");
    let cost: f64 = [&one, &two, three]
        .iter()
        .map(|v| v["cost_usd"].as_f64().unwrap())
        .sum();
    assert!(close(s["cost_usd"].as_f64().unwrap(), cost), "{s}");
}

#[test]
fn a_session_resumes_after_a_restart() {
    let Some(mut e) = E2e::start() else { return };
    let id = start(&e, json!({}));
    turn(&e, &id, "remember banana");
    e.restart();
    let v = turn(&e, &id, "RECALL please");
    assert_eq!(v["result"], "earlier prompts: remember banana", "{v}");
    let sent = e.mock.messages_for(&id);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].user_prompts(), ["remember banana", "RECALL please"]);
    let s = e.srv.get(&format!("/session/{id}"), Some(USER)).json();
    assert_eq!(s["task_count"], 2, "{s}");
    // The CLI's transcript is in the key's own CLI home, under the state dir.
    let home = e.srv.root().join("state/homes/user/.claude");
    assert_eq!(claudeway::homes::transcripts(&home, &id).len(), 1);
}

#[test]
fn an_approved_write_lands_only_after_approval_with_allowed_tools() {
    let Some(e) = E2e::with(|c| c.permissions_bypass = false) else {
        return;
    };
    let id = start(&e, json!({"workdir": "proj"}));
    let file = e.srv.root().join("work/proj/approved.txt");
    let v = turn(
        &e,
        &id,
        "USE_TOOL_WRITE approved.txt written after approval",
    );
    let denials = v["permission_denials"].as_array().expect("denials");
    assert_eq!(denials.len(), 1, "{v}");
    assert_eq!(denials[0]["tool_name"], "Write");
    let tool_use_id = denials[0]["tool_use_id"].as_str().unwrap().to_string();
    assert!(!file.exists(), "written before approval");

    // Catch the resumed CLI in flight: the mock holds its answer.
    e.mock.hold();
    let pending = e.post_in_background(
        &format!("/session/{id}/approve"),
        json!({"tool_use_ids": [tool_use_id]}),
    );
    let resumed = |a: &Vec<String>| a.iter().any(|x| x == "--resume");
    assert!(
        eventually(Duration::from_secs(60), || e
            .cli_argvs()
            .iter()
            .any(resumed)),
        "the approval never started the CLI"
    );
    let argv = e.cli_argvs().into_iter().find(resumed).unwrap();
    assert_eq!(after(&argv, "--resume"), Some(id.as_str()), "{argv:?}");
    assert_eq!(after(&argv, "--allowedTools"), Some("Write"), "{argv:?}");
    assert!(
        !argv.iter().any(|a| a == "--dangerously-skip-permissions"),
        "{argv:?}"
    );
    assert!(!file.exists(), "written before the approved turn");
    e.mock.release();

    let r = pending.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["success"], true, "{v}");
    assert!(v.get("permission_denials").is_none(), "{v}");
    assert_eq!(
        std::fs::read_to_string(&file).expect("written after approval"),
        "written after approval"
    );
    // The mock made the same call again, with the same input, and the CLI ran it.
    let sent = e.mock.messages_for(&id);
    let (result, is_error) = sent.last().unwrap().tool_result().expect("a tool result");
    assert!(!is_error, "{result}");
    assert!(result.starts_with("File created successfully"), "{result}");
    // Nothing stays pending: a second approval has nothing to approve.
    e.srv
        .post(&format!("/session/{id}/approve"), Some(USER), &json!({}))
        .error(409, "CONFLICT");
}

#[test]
fn a_denied_task_is_approved_with_its_session_id() {
    let Some(e) = E2e::with(|c| c.permissions_bypass = false) else {
        return;
    };
    // No workdir: the task's own fresh one, kept for the approval.
    let body = json!({"prompt": "USE_TOOL_WRITE later.txt approved later"});
    let v = e.srv.post("/task", Some(USER), &body).json();
    assert_eq!(v["permission_denials"][0]["tool_name"], "Write", "{v}");
    let file = v["permission_denials"][0]["tool_input"]["file_path"]
        .as_str()
        .expect("the path the CLI was asked to write")
        .to_string();
    assert!(
        file.starts_with(e.srv.root().join("work").to_str().unwrap()),
        "{file}"
    );
    assert!(!std::path::Path::new(&file).exists());
    // An empty body approves everything pending; the same key only.
    let id = v["session_id"].as_str().unwrap();
    let path = format!("/session/{id}/approve");
    e.srv
        .post(&path, Some(OTHER), &json!({}))
        .error(404, "NOT_FOUND");
    let r = e.srv.post(&path, Some(USER), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["success"], true);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "approved later");
    let sent = e.mock.messages_for(id);
    assert_eq!(
        sent.len(),
        4,
        "the denied turn and the approved one: {sent:?}"
    );
}
