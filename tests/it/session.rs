use std::time::Duration;

use serde_json::{json, Value};
use tungstenite::Message;

use crate::support::*;

fn start(srv: &TestServer, key: &str, body: Value) -> String {
    let r = srv.post("/session/start", Some(key), &body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["session_id"].as_str().unwrap().to_string()
}

#[test]
fn the_walkthrough_start_two_messages_cost_delete() {
    let srv = TestServer::start();
    let r = srv.post("/session/start", Some(USER), &json!({"model": "sonnet"}));
    let v = r.json();
    let id = v["session_id"].as_str().unwrap().to_string();
    let workdir = v["workdir"].as_str().unwrap().to_string();
    assert!(workdir.starts_with(srv.root().join("work/sessions").to_str().unwrap()));
    assert!(std::path::Path::new(&workdir).is_dir());
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));

    let first = srv
        .post(
            &format!("/session/{id}"),
            Some(USER),
            &json!({"prompt": "remember the word banana"}),
        )
        .json();
    assert_eq!(first["session_id"], id.as_str());
    assert_eq!(first["result"], "echo: remember the word banana");
    let a = argv(&srv.fake_run("remember the word banana"));
    assert_eq!(after(&a, "--session-id"), Some(id.as_str()));
    assert!(!a.contains(&"--resume".to_string()));
    assert_eq!(
        srv.fake_run("remember the word banana")["cwd"],
        workdir.as_str()
    );

    let second = srv
        .post(
            &format!("/session/{id}"),
            Some(USER),
            &json!({"prompt": "RECALL"}),
        )
        .json();
    assert_eq!(
        second["result"], "earlier prompts: remember the word banana",
        "the CLI resumed the conversation"
    );
    let a = argv(&srv.fake_run("RECALL"));
    assert_eq!(after(&a, "--resume"), Some(id.as_str()));
    assert!(!a.contains(&"--session-id".to_string()));

    let s = srv.get(&format!("/session/{id}"), Some(USER)).json();
    assert_eq!(s["task_count"], 2);
    assert_eq!(s["key_id"], "user");
    assert_eq!(s["busy"], false);
    assert_eq!(s["model"], "sonnet");
    for k in ["input", "output", "cache_read", "cache_write"] {
        assert_eq!(
            s["tokens"][k].as_u64().unwrap(),
            first["tokens"][k].as_u64().unwrap() + second["tokens"][k].as_u64().unwrap()
        );
    }
    let cost = first["cost_usd"].as_f64().unwrap() + second["cost_usd"].as_f64().unwrap();
    assert!((s["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-12);
    assert!(s["last_active_at"].as_str().unwrap() >= s["created_at"].as_str().unwrap());

    let transcript = srv.root().join("state/homes/user/.claude/projects");
    let has_transcript = || {
        walk(&transcript)
            .iter()
            .any(|p| p.ends_with(format!("{id}.jsonl")))
    };
    assert!(has_transcript());
    let d = srv.delete(&format!("/session/{id}"), Some(USER));
    assert_eq!(d.json(), json!({"deleted": true, "session_id": id}));
    srv.get(&format!("/session/{id}"), Some(USER))
        .error(404, "NOT_FOUND");
    assert!(eventually(Duration::from_secs(10), || {
        !std::path::Path::new(&workdir).exists()
    }));
    assert!(eventually(Duration::from_secs(10), || !has_transcript()));
    let msgs: Vec<String> = srv
        .audit("user")
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        msgs,
        [
            "session started",
            "task completed",
            "task completed",
            "session deleted"
        ]
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn sessions_are_private_to_their_key() {
    let srv = TestServer::start();
    let id = start(&srv, USER, json!({}));
    let path = format!("/session/{id}");
    srv.get(&path, Some(OTHER)).error(404, "NOT_FOUND");
    srv.post(&path, Some(OTHER), &json!({"prompt": "x"}))
        .error(404, "NOT_FOUND");
    srv.post(&format!("{path}/approve"), Some(OTHER), &json!({}))
        .error(404, "NOT_FOUND");
    srv.post(
        &format!("{path}/stream"),
        Some(OTHER),
        &json!({"prompt": "x"}),
    )
    .error(404, "NOT_FOUND");
    srv.delete(&path, Some(OTHER)).error(404, "NOT_FOUND");
    srv.get("/session/not-a-session", Some(USER))
        .error(404, "NOT_FOUND");
    assert_eq!(
        srv.get(&path, Some(ADMIN)).status,
        200,
        "the admin key sees every session"
    );
    let other = start(&srv, OTHER, json!({}));
    let mine = srv.get("/sessions", Some(USER)).json();
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["sessions"][0]["session_id"], id.as_str());
    let all = srv.get("/sessions", Some(ADMIN)).json();
    assert_eq!(all["total"], 2);
    assert_eq!(
        all["sessions"][0]["session_id"],
        other.as_str(),
        "newest first"
    );
    let page = srv.get("/sessions?page=2&per_page=1", Some(ADMIN)).json();
    assert_eq!(page["sessions"][0]["session_id"], id.as_str());
    srv.get("/sessions?per_page=0", Some(ADMIN))
        .error(400, "BAD_REQUEST");
    assert!(srv.fake_runs().is_empty());
}

#[test]
fn concurrent_turns_run_one_after_another() {
    let srv = TestServer::start();
    let id = start(&srv, USER, json!({}));
    let addr = srv.addr;
    let hs: Vec<_> = (0..5)
        .map(|i| {
            let path = format!("/session/{id}");
            std::thread::spawn(move || {
                let body = json!({"prompt": format!("SLOW 30 turn {i} of five")});
                request(
                    addr,
                    "POST",
                    &path,
                    Some(USER),
                    &[],
                    body.to_string().as_bytes(),
                )
            })
        })
        .collect();
    for h in hs {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["success"], true);
    }
    let mut spans = srv.fake_spans();
    assert_eq!(spans.len(), 5);
    spans.sort_by_key(|s| s.1);
    for w in spans.windows(2) {
        assert!(w[0].2 <= w[1].1, "runs overlapped: {w:?}");
    }
    assert_eq!(
        srv.get(&format!("/session/{id}"), Some(USER)).json()["task_count"],
        5
    );
}

#[test]
fn model_and_system_prompt_apply_to_every_turn() {
    let srv = TestServer::start();
    let id = start(
        &srv,
        USER,
        json!({"model": "haiku", "system_prompt": "be brief", "timeout_secs": 30}),
    );
    srv.post(
        &format!("/session/{id}"),
        Some(USER),
        &json!({"prompt": "one"}),
    );
    srv.post(
        &format!("/session/{id}"),
        Some(USER),
        &json!({"prompt": "two"}),
    );
    srv.post(
        &format!("/session/{id}"),
        Some(USER),
        &json!({"prompt": "three", "model": "opus"}),
    );
    for (p, model) in [("one", "haiku"), ("two", "haiku"), ("three", "opus")] {
        let a = argv(&srv.fake_run(p));
        assert_eq!(after(&a, "--model"), Some(model), "{p}");
        assert_eq!(after(&a, "--system-prompt"), Some("be brief"), "{p}");
    }
    srv.post("/session/start", Some(USER), &json!({"model": "-x"}))
        .error(400, "BAD_REQUEST");
    srv.post("/session/start", Some(USER), &json!({"workdir": "/etc"}))
        .error(400, "BAD_REQUEST");
    srv.post(&format!("/session/{id}"), Some(USER), &json!({}))
        .error(400, "BAD_REQUEST");
}

#[test]
fn a_given_workdir_is_used_and_kept() {
    let srv = TestServer::start();
    let r = srv
        .post(
            "/session/start",
            Some(USER),
            &json!({"workdir": "shared/proj"}),
        )
        .json();
    let dir = srv.root().join("work/shared/proj");
    assert_eq!(r["workdir"], dir.to_str().unwrap());
    let id = r["session_id"].as_str().unwrap();
    srv.delete(&format!("/session/{id}"), Some(USER));
    std::thread::sleep(Duration::from_millis(300));
    assert!(dir.is_dir(), "a workdir the client chose is not deleted");
}

/// Found by schemathesis: a session started in another session's workdir (a path its
/// answer shows) lost the directory when the other was deleted, and its next turn was a 500
/// that blamed a missing CLI.
#[test]
fn a_workdir_another_session_uses_is_kept_and_a_vanished_one_is_409() {
    let srv = TestServer::start();
    let owner = srv.post("/session/start", Some(USER), &json!({})).json();
    let (owner_id, dir) = (
        owner["session_id"].as_str().unwrap().to_string(),
        owner["workdir"].as_str().unwrap().to_string(),
    );
    let guest = start(&srv, USER, json!({"workdir": &dir}));
    srv.post(
        &format!("/session/{owner_id}"),
        Some(USER),
        &json!({"prompt": "owner turn"}),
    );
    srv.delete(&format!("/session/{owner_id}"), Some(USER));
    // The cleanup removes the workdir first, then the transcript.
    let transcripts = srv.root().join("home/.claude/projects");
    assert!(eventually(Duration::from_secs(10), || !walk(&transcripts)
        .iter()
        .any(|p| p.ends_with(format!("{owner_id}.jsonl")))));
    assert!(std::path::Path::new(&dir).is_dir(), "the guest's workdir");
    let r = srv.post(
        &format!("/session/{guest}"),
        Some(USER),
        &json!({"prompt": "guest turn"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // Removed from outside: a 409 that says so, not a 500 about the CLI.
    std::fs::remove_dir_all(&dir).unwrap();
    let msg = srv
        .post(
            &format!("/session/{guest}"),
            Some(USER),
            &json!({"prompt": "again"}),
        )
        .error(409, "CONFLICT");
    assert!(
        msg.contains("no longer exists") && msg.contains(&dir),
        "{msg}"
    );
    assert_eq!(srv.audit("user").pop().unwrap()["code"], "CONFLICT");
}

#[test]
fn sessions_survive_a_restart() {
    let srv = TestServer::start();
    let id = start(&srv, USER, json!({"model": "haiku"}));
    srv.post(
        &format!("/session/{id}"),
        Some(USER),
        &json!({"prompt": "before restart"}),
    );
    let dir = srv.stop();
    let srv = TestServer::in_dir(dir, |_| {});
    let s = srv.get(&format!("/session/{id}"), Some(USER)).json();
    assert_eq!(s["task_count"], 1);
    assert_eq!(s["model"], "haiku");
    let v = srv
        .post(
            &format!("/session/{id}"),
            Some(USER),
            &json!({"prompt": "RECALL"}),
        )
        .json();
    assert_eq!(v["result"], "earlier prompts: before restart");
    assert_eq!(
        after(&argv(&srv.fake_run("RECALL")), "--resume"),
        Some(id.as_str())
    );
}

#[test]
fn idle_sessions_expire() {
    let srv = TestServer::with(|c| {
        c.session_ttl = Duration::from_secs(1);
        c.janitor_every = Duration::from_millis(200);
    });
    let r = srv.post("/session/start", Some(USER), &json!({})).json();
    let id = r["session_id"].as_str().unwrap().to_string();
    let workdir = r["workdir"].as_str().unwrap().to_string();
    assert!(eventually(Duration::from_secs(20), || srv
        .get(&format!("/session/{id}"), Some(USER))
        .status
        == 404));
    assert!(eventually(Duration::from_secs(10), || {
        !std::path::Path::new(&workdir).exists()
    }));
}

#[test]
fn a_vanished_conversation_is_409() {
    let srv = TestServer::start();
    let id = start(&srv, USER, json!({}));
    srv.post(
        &format!("/session/{id}"),
        Some(USER),
        &json!({"prompt": "first"}),
    );
    for p in walk(&srv.root().join("state/homes/user/.claude/projects")) {
        std::fs::remove_file(p).unwrap();
    }
    let msg = srv
        .post(
            &format!("/session/{id}"),
            Some(USER),
            &json!({"prompt": "second"}),
        )
        .error(409, "CONFLICT");
    assert!(msg.contains("start a new session"), "{msg}");
}

#[test]
fn deleting_a_session_cancels_its_turn() {
    let srv = TestServer::start();
    let id = start(&srv, USER, json!({}));
    let addr = srv.addr;
    let path = format!("/session/{id}");
    let p2 = path.clone();
    let t = std::thread::spawn(move || {
        request(
            addr,
            "POST",
            &p2,
            Some(USER),
            &[],
            json!({"prompt": "HANG"}).to_string().as_bytes(),
        )
    });
    assert!(eventually(Duration::from_secs(20), || srv
        .fake_runs()
        .len()
        == 1));
    assert_eq!(srv.get(&path, Some(USER)).json()["busy"], true);
    let run = srv.fake_run("HANG");
    assert_eq!(srv.delete(&path, Some(USER)).status, 200);
    let r = t.join().unwrap();
    r.error(409, "CONFLICT");
    assert!(eventually(Duration::from_secs(10), || !run_alive(&run)));
}

#[test]
fn approvals_allow_exactly_the_denied_calls() {
    let srv = TestServer::with(|c| c.permissions_bypass = false);
    let id = start(&srv, USER, json!({}));
    let path = format!("/session/{id}");
    let workdir = srv.get(&path, Some(USER)).json()["workdir"]
        .as_str()
        .unwrap()
        .to_string();
    srv.post(&format!("{path}/approve"), Some(USER), &json!({}))
        .error(409, "CONFLICT");

    let v = srv
        .post(
            &path,
            Some(USER),
            &json!({"prompt": "WRITE out.txt approved content"}),
        )
        .json();
    let denials = v["permission_denials"].as_array().unwrap().clone();
    assert_eq!(denials.len(), 1);
    assert_eq!(denials[0]["tool_name"], "Write");
    let tool_id = denials[0]["tool_use_id"].as_str().unwrap().to_string();
    let file = std::path::Path::new(&workdir).join("out.txt");
    assert!(!file.exists(), "denied: nothing written yet");
    assert_eq!(
        srv.get(&path, Some(USER)).json()["pending_approvals"][0]["tool_use_id"],
        tool_id.as_str()
    );

    let msg = srv
        .post(
            &format!("{path}/approve"),
            Some(USER),
            &json!({"tool_use_ids": ["toolu_nope"]}),
        )
        .error(400, "BAD_REQUEST");
    assert!(msg.contains("toolu_nope"));
    srv.post(
        &format!("{path}/approve"),
        Some(USER),
        &json!({"tool_use_ids": []}),
    )
    .error(400, "BAD_REQUEST");

    let r = srv.post(
        &format!("{path}/approve"),
        Some(USER),
        &json!({"tool_use_ids": [tool_id]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["success"], true);
    assert!(v.get("permission_denials").is_none());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "approved content");
    let run = srv.approval_run();
    let a = argv(&run);
    assert_eq!(after(&a, "--resume"), Some(id.as_str()));
    assert_eq!(after(&a, "--allowedTools"), Some("Write"));
    assert!(
        !a.contains(&"--dangerously-skip-permissions".to_string()),
        "never a blanket bypass"
    );
    assert!(run["prompt"].as_str().unwrap().contains(&tool_id));
    assert!(srv
        .get(&path, Some(USER))
        .json()
        .get("pending_approvals")
        .is_none());
    let line = srv.audit("user").pop().unwrap();
    assert_eq!(line["message"], "approval granted");
    assert_eq!(line["route"], format!("{path}/approve"));
}

#[test]
fn a_bash_approval_names_the_exact_command() {
    let srv = TestServer::with(|c| c.permissions_bypass = false);
    let id = start(&srv, USER, json!({}));
    let path = format!("/session/{id}");
    let v = srv
        .post(
            &path,
            Some(USER),
            &json!({"prompt": "BASH echo hi > made.txt"}),
        )
        .json();
    assert_eq!(v["permission_denials"][0]["tool_name"], "Bash");
    let r = srv.post(&format!("{path}/approve"), Some(ADMIN), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let run = srv.approval_run();
    assert_eq!(
        after(&argv(&run), "--allowedTools"),
        Some("Bash(echo hi > made.txt)")
    );
    let workdir = srv.get(&path, Some(USER)).json()["workdir"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&workdir).join("made.txt")).unwrap(),
        "hi\n"
    );
    assert_eq!(
        srv.audit("admin").pop().unwrap()["message"],
        "approval granted",
        "logged with the approving key"
    );
}

#[test]
fn a_task_with_denials_can_be_approved_by_its_key() {
    let srv = TestServer::with(|c| c.permissions_bypass = false);
    let v = srv
        .post(
            "/task",
            Some(USER),
            &json!({"prompt": "WRITE task.txt from a task"}),
        )
        .json();
    let id = v["session_id"].as_str().unwrap().to_string();
    assert_eq!(v["permission_denials"][0]["tool_name"], "Write");
    let cwd = srv.fake_run("WRITE task.txt from a task")["cwd"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        std::path::Path::new(&cwd).is_dir(),
        "the task's workdir is kept for the approval"
    );
    srv.post(&format!("/session/{id}/approve"), Some(OTHER), &json!({}))
        .error(404, "NOT_FOUND");
    let r = srv.post(&format!("/session/{id}/approve"), Some(USER), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&cwd).join("task.txt")).unwrap(),
        "from a task"
    );
    assert_eq!(
        srv.get("/sessions", Some(USER)).json()["total"],
        0,
        "not listed as a session"
    );
}

#[test]
fn session_turns_stream_over_sse_and_websocket() {
    let srv = TestServer::start();
    let id = start(&srv, USER, json!({}));
    let mut s = SseClient::open_path(
        srv.addr,
        &format!("/session/{id}/stream"),
        Some(USER),
        &json!({"prompt": "streamed turn"}),
    )
    .unwrap();
    let events = s.rest();
    let done: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(done["result"], "echo: streamed turn");
    assert_eq!(done["session_id"], id.as_str());

    let (mut ws, _) = ws_connect(srv.addr, Some(USER), &[]).unwrap();
    ws.send(Message::Text(
        json!({"prompt": "RECALL", "session_id": id})
            .to_string()
            .into(),
    ))
    .unwrap();
    let events = ws_events(&mut ws);
    assert_eq!(
        events.last().unwrap()["data"]["result"],
        "earlier prompts: streamed turn"
    );
    assert_eq!(
        srv.get(&format!("/session/{id}"), Some(USER)).json()["task_count"],
        2
    );

    let (mut ws, _) = ws_connect(srv.addr, Some(OTHER), &[]).unwrap();
    ws.send(Message::Text(
        json!({"prompt": "x", "session_id": id}).to_string().into(),
    ))
    .unwrap();
    let events = ws_events(&mut ws);
    assert_eq!(events[0]["code"], "NOT_FOUND");
}

/// An approval cancelled while it waits for a run place never ran: the denial stays pending
/// (and can still be approved), and the session's turn count is unchanged.
#[test]
fn an_approval_cancelled_in_the_queue_keeps_the_denial_pending() {
    let srv = TestServer::with(|c| {
        c.permissions_bypass = false;
        c.max_concurrent = 1;
    });
    let id = start(&srv, USER, json!({}));
    let path = format!("/session/{id}");
    let v = srv
        .post(&path, Some(USER), &json!({"prompt": "WRITE out.txt later"}))
        .json();
    let tool_id = v["permission_denials"][0]["tool_use_id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = srv.get(&path, Some(USER)).json();
    assert_eq!(before["task_count"], 1);

    // Another run holds the only place; the approval queues behind it.
    let gate = srv.root().join("open-me");
    let blocker = post_async(
        srv.addr,
        OTHER,
        "/task",
        json!({"prompt": format!("WAIT_FILE {} hold", gate.display())}),
    );
    srv.wait_load(1, 0);
    let approve = post_async_as(
        srv.addr,
        USER,
        &format!("{path}/approve"),
        Some("approve-1"),
        json!({"tool_use_ids": [tool_id]}),
    );
    srv.wait_load(1, 1);
    let r = srv.post("/task/approve-1/cancel", Some(USER), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    approve.join().unwrap().error(409, "CONFLICT");

    let after = srv.get(&path, Some(USER)).json();
    assert_eq!(after["task_count"], 1, "{after}");
    assert_eq!(
        after["pending_approvals"][0]["tool_use_id"],
        tool_id.as_str()
    );
    std::fs::write(&gate, "").unwrap();
    assert_eq!(blocker.join().unwrap().status, 200);
    // Still approvable.
    let r = srv.post(
        &format!("{path}/approve"),
        Some(USER),
        &json!({"tool_use_ids": [tool_id]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["success"], true);
}
