use serde_json::json;

use crate::support::*;

#[test]
fn every_task_is_one_line_with_the_documented_fields() {
    let srv = TestServer::start();
    let r = srv.post(
        "/task",
        Some(USER),
        &json!({"prompt": "audit me", "model": "haiku"}),
    );
    let v = r.json();
    let lines = srv.audit("user");
    assert_eq!(lines.len(), 1);
    let l = &lines[0];
    for field in [
        "timestamp",
        "level",
        "key_id",
        "request_id",
        "route",
        "status",
        "session_id",
        "model",
        "model_resolved",
        "claude_exit_code",
        "duration_ms",
        "success",
        "tokens",
        "cost_usd",
        "message",
    ] {
        assert!(l.get(field).is_some(), "{field} missing: {l}");
    }
    assert!(l.get("code").is_none(), "code only on failure: {l}");
    assert_eq!(l["level"], "INFO");
    assert_eq!(l["key_id"], "user");
    assert_eq!(l["request_id"], r.header("X-Request-Id").unwrap());
    assert_eq!(l["route"], "/task");
    assert_eq!(l["status"], 200);
    assert_eq!(l["session_id"], v["session_id"]);
    assert_eq!(l["model"], "haiku");
    assert_eq!(l["model_resolved"], "claude-haiku-5-5");
    assert_eq!(l["claude_exit_code"], 0);
    assert_eq!(l["tokens"], v["tokens"]);
    assert_eq!(l["cost_usd"], v["cost_usd"]);
    assert_eq!(l["message"], "task completed");
    let ts = l["timestamp"].as_str().unwrap();
    assert_eq!(ts.len(), 24, "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
    let month = &ts[..7];
    assert!(srv.root().join(format!("logs/user/{month}.log")).is_file());
}

#[test]
fn failures_are_warn_with_a_code() {
    let srv = TestServer::start();
    srv.post("/task", Some(ADMIN), &json!({"prompt": "API_ERROR x"}));
    srv.post("/task", Some(ADMIN), &json!({"prompt": "NO_RESULT"}));
    let lines = srv.audit("admin");
    assert_eq!(lines[0]["level"], "WARN");
    assert_eq!(lines[0]["success"], false);
    assert_eq!(lines[0]["message"], "task failed");
    assert_eq!(lines[0]["claude_exit_code"], 1);
    assert_eq!(lines[1]["level"], "ERROR");
    assert_eq!(lines[1]["code"], "INTERNAL_ERROR");
    assert_eq!(lines[1]["status"], 500);
}

#[test]
fn failed_auth_goes_to_unauthorized_without_the_secret() {
    let srv = TestServer::start();
    srv.post(
        "/task",
        Some("not-a-real-secret-123"),
        &json!({"prompt": "x"}),
    );
    srv.post("/task", None, &json!({"prompt": "x"}));
    let lines = srv.audit("_unauthorized");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status"], 401);
    assert_eq!(lines[0]["code"], "UNAUTHORIZED");
    assert_eq!(lines[0]["message"], "unauthorized");
    assert!(lines[0]["key_id"].is_null());
    let raw = std::fs::read_dir(srv.root().join("logs/_unauthorized"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert!(!std::fs::read_to_string(raw)
        .unwrap()
        .contains("not-a-real-secret-123"));
}

#[test]
fn concurrent_lines_are_all_there_and_whole() {
    let srv = TestServer::start();
    let addr = srv.addr;
    let handles: Vec<_> = (0..40)
        .map(|i| {
            std::thread::spawn(move || {
                let key = if i % 2 == 0 { ADMIN } else { USER };
                let body = json!({"prompt": format!("BIG {}", 2000 + i)});
                request(
                    addr,
                    "POST",
                    "/task",
                    Some(key),
                    &[],
                    body.to_string().as_bytes(),
                )
                .header("X-Request-Id")
                .unwrap()
                .to_string()
            })
        })
        .collect();
    let ids: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut logged: Vec<String> = srv
        .audit("admin")
        .into_iter()
        .chain(srv.audit("user"))
        .map(|l| l["request_id"].as_str().unwrap().to_string())
        .collect();
    logged.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(logged, want);
}
