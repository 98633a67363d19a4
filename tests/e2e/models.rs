use serde_json::{json, Value};

use crate::harness::E2e;
use crate::mock;
use crate::support::*;

#[test]
fn models_come_from_the_models_api_named_in_claude_env() {
    // The harness sets ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL only in [claude.env] (the
    // test process's own ANTHROPIC_* variables are removed).
    let Some(e) = E2e::start() else { return };
    let r = e.srv.get("/models", Some(USER));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let want: Vec<Value> = mock::models()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!({"id": m["id"], "name": m["display_name"]}))
        .collect();
    // The built-in list has no claude-haiku-4-5-20251001: this list is the mock's.
    assert_eq!(v["models"], json!(want), "{v}");
    assert_eq!(
        v["aliases"],
        json!({"sonnet": "claude-sonnet-5-5", "opus": "claude-opus-5-5", "haiku": "claude-haiku-5-5"})
    );
    let asked: Vec<_> = e
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.url.starts_with("/v1/models"))
        .collect();
    assert!(!asked.is_empty(), "the mock was never asked");
    assert_eq!(asked[0].header("x-api-key"), Some("sk-test"));
    assert_eq!(asked[0].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(e.srv.get("/models", None).status, 401);

    // A listed model id that is not an alias goes to the API as it is.
    let id = "claude-haiku-4-5-20251001";
    let v = e
        .srv
        .post("/task", Some(USER), &json!({"prompt": "hi", "model": id}))
        .json();
    assert_eq!(v["success"], true, "{v}");
    let sent = e.mock.messages_for(v["session_id"].as_str().unwrap());
    assert_eq!(sent[0].body["model"], id);
}
