use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{close, E2e};
use crate::mock::Mock;
use crate::support::*;

#[test]
fn task_answers_the_clis_text_tokens_and_cost() {
    let Some(e) = E2e::start() else { return };
    let prompt = "hello from the e2e suite";
    let r = e.srv.post(
        "/task",
        Some(USER),
        &json!({"prompt": prompt, "model": "sonnet"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"], format!("echo: {prompt}"), "{v}");
    assert_eq!(v["success"], true, "{v}");
    assert!(v["error"].is_null(), "{v}");
    assert!(v.get("permission_denials").is_none(), "{v}");

    // What the CLI sent: one streamed request for this session, the prompt as the last user
    // message (the CLI's own system message comes after it), the key from our environment.
    let session = v["session_id"].as_str().unwrap();
    let sent = e.mock.messages_for(session);
    assert_eq!(sent.len(), 1, "one API call: {sent:?}");
    assert_eq!(sent[0].prompt.as_deref(), Some(prompt));
    assert_eq!(sent[0].body["stream"], true);
    assert_eq!(sent[0].header("x-api-key"), Some("sk-test"));
    let msgs = sent[0].body["messages"].as_array().unwrap();
    assert_eq!(msgs.last().unwrap()["role"], "system", "{msgs:?}");

    // Tokens: exactly the usage the mock reported, all four non-zero.
    let tokens = Mock::tokens(&sent);
    assert_eq!(v["tokens"], tokens, "{v}");
    for k in ["input", "output", "cache_read", "cache_write"] {
        assert!(tokens[k].as_u64().unwrap() > 0, "{k}: {tokens}");
    }
    // Cost: what the CLI itself reports for the same conversation, run directly.
    let cost = v["cost_usd"].as_f64().expect("cost_usd");
    assert!(cost > 0.0, "{v}");
    let direct = e.run_cli(
        &["-p", "--output-format", "json", "--model", "sonnet"],
        prompt,
    );
    assert_eq!(direct["result"], v["result"], "{direct}");
    let direct_cost = direct["total_cost_usd"].as_f64().unwrap();
    assert!(
        close(cost, direct_cost),
        "{cost} vs the CLI's {direct_cost}"
    );
    let u = &direct["usage"];
    assert_eq!(
        json!({"input": u["input_tokens"], "output": u["output_tokens"],
               "cache_read": u["cache_read_input_tokens"], "cache_write": u["cache_creation_input_tokens"]}),
        tokens,
        "the direct run's usage: {direct}"
    );

    // The audit line accounts the same numbers and names the model the CLI used.
    let lines = e.srv.audit("user");
    let line = lines
        .iter()
        .find(|l| l["session_id"] == session)
        .expect("audit line");
    assert_eq!(line["tokens"], tokens);
    assert!(close(line["cost_usd"].as_f64().unwrap(), cost));
    assert_eq!(line["model"], "sonnet");
    assert_eq!(line["model_resolved"], sent[0].body["model"]);
    assert_eq!(line["claude_exit_code"], 0);
}

#[test]
fn an_api_error_is_200_with_success_false_and_the_clis_words() {
    let Some(e) = E2e::start() else { return };
    let r = e
        .srv
        .post("/task", Some(USER), &json!({"prompt": "API_ERROR 500"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["success"], false, "{v}");
    let err = v["error"].as_str().expect("error text");
    assert!(
        err.starts_with("Claude CLI returned an error: API Error: 500"),
        "{err}"
    );
    assert!(err.contains("mock API error 500"), "{err}");
    let session = v["session_id"].as_str().unwrap();
    // CLAUDE_CODE_MAX_RETRIES=0 reached the CLI through Claudeway: one request, no retry.
    assert_eq!(e.mock.messages_for(session).len(), 1);
    let line = e
        .srv
        .audit("user")
        .into_iter()
        .find(|l| l["session_id"] == session)
        .expect("audit line");
    assert_eq!(line["success"], false);
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["claude_exit_code"], 1);
}

#[test]
fn a_timeout_is_408_leaves_no_process_and_health_saw_the_run() {
    let Some(e) = E2e::start() else { return };
    let body = json!({"prompt": "SLOW 30 a very slow answer", "timeout_secs": 5});
    let pending = e.post_in_background("/task", body);
    assert!(
        eventually(Duration::from_secs(20), || !e.cli_processes().is_empty()),
        "the CLI never started"
    );
    let health = e.srv.get("/health", None);
    assert_eq!(health.status, 200);
    let h = health.json();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(h["runs"]["running"], 1, "{h}");

    let r = pending.join().unwrap();
    let msg = r.error(408, "TIMEOUT");
    assert!(msg.contains("timeout_secs (5)"), "{msg}");
    assert!(
        eventually(Duration::from_secs(10), || e.cli_processes().is_empty()),
        "CLI processes left: {:?}",
        e.cli_processes()
    );
    assert!(eventually(Duration::from_secs(5), || {
        e.srv.get("/health", None).json()["runs"]["running"] == 0
    }));
}

#[test]
fn a_mid_stream_error_is_retried_by_the_cli_without_streaming() {
    let Some(e) = E2e::start() else { return };
    let prompt = "STREAM_ERROR then recover";
    let v = e
        .srv
        .post("/task", Some(USER), &json!({"prompt": prompt}))
        .json();
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["result"], format!("echo: {prompt}"));
    let sent = e.mock.messages_for(v["session_id"].as_str().unwrap());
    let streams: Vec<&Value> = sent.iter().map(|r| &r.body["stream"]).collect();
    assert_eq!(streams, [&json!(true), &json!(false)], "{sent:?}");
    assert!(v["tokens"]["output"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn a_write_runs_with_the_permissions_bypass() {
    let Some(e) = E2e::start() else { return };
    let body =
        json!({"prompt": "USE_TOOL_WRITE note.txt written through claudeway", "workdir": "proj"});
    let v = e.srv.post("/task", Some(USER), &body).json();
    assert_eq!(v["success"], true, "{v}");
    let file = e.srv.root().join("work/proj/note.txt");
    assert_eq!(
        std::fs::read_to_string(&file).expect("the CLI wrote the file"),
        "written through claudeway"
    );
    assert!(
        v["result"].as_str().unwrap().starts_with("tool ok: "),
        "{v}"
    );
    assert!(v.get("permission_denials").is_none(), "{v}");
    // Two API calls; the second carries the tool result back.
    let sent = e.mock.messages_for(v["session_id"].as_str().unwrap());
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(v["tokens"], Mock::tokens(&sent), "{v}");
}

#[test]
fn a_write_is_denied_without_the_bypass() {
    let Some(e) = E2e::with(|c| c.permissions_bypass = false) else {
        return;
    };
    let body = json!({"prompt": "USE_TOOL_WRITE denied.txt nope", "workdir": "proj"});
    let v = e.srv.post("/task", Some(USER), &body).json();
    assert_eq!(v["success"], true, "a denial is not a failure: {v}");
    let denials = v["permission_denials"].as_array().expect("denials");
    assert_eq!(denials.len(), 1, "{v}");
    assert_eq!(denials[0]["tool_name"], "Write");
    assert!(denials[0]["tool_use_id"]
        .as_str()
        .unwrap()
        .starts_with("toolu_mock_"));
    assert!(
        v["result"].as_str().unwrap().starts_with("tool error: "),
        "{v}"
    );
    assert!(!e.srv.root().join("work/proj/denied.txt").exists());
}

#[test]
fn a_restarted_server_runs_tasks_again() {
    let Some(mut e) = E2e::start() else { return };
    let before = e
        .srv
        .post("/task", Some(USER), &json!({"prompt": "before"}));
    assert_eq!(before.json()["result"], "echo: before");
    e.restart();
    let after = e.srv.post("/task", Some(USER), &json!({"prompt": "after"}));
    assert_eq!(after.json()["result"], "echo: after", "{}", after.text());
    // One audit log across the restart.
    let messages: Vec<Value> = e
        .srv
        .audit("user")
        .iter()
        .map(|l| l["message"].clone())
        .collect();
    assert_eq!(messages, [json!("task completed"), json!("task completed")]);
}
