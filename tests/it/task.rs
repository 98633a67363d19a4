use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[test]
fn task_answers_the_documented_shape_with_real_usage() {
    let srv = TestServer::start();
    let prompt = "hello there";
    let r = srv.post(
        "/task",
        Some(USER),
        &json!({"prompt": prompt, "model": "sonnet"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"], "echo: hello there");
    assert_eq!(v["success"], true);
    assert!(v["error"].is_null());
    assert!(
        v.get("permission_denials").is_none(),
        "omitted when empty: {v}"
    );
    // The fake reports input = 100 + prompt bytes, output = answer bytes, cache 50/10.
    let out = "echo: hello there".len() as u64;
    assert_eq!(
        v["tokens"],
        json!({"input": 100 + prompt.len() as u64, "output": out, "cache_read": 50, "cache_write": 10})
    );
    let cost = ((100 + prompt.len() as u64) * 3 + out * 15) as f64 / 1e6;
    assert!(
        (v["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-12,
        "{v}"
    );
    assert!(v["duration_ms"].is_u64());
    let session = v["session_id"].as_str().unwrap();
    assert_eq!(session.len(), 36);

    let run = srv.fake_run(prompt);
    let a = argv(&run);
    assert_eq!(
        &a[..5],
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages"
        ]
    );
    assert_eq!(after(&a, "--model"), Some("sonnet"));
    assert_eq!(after(&a, "--session-id"), Some(session));
    assert!(a.contains(&"--dangerously-skip-permissions".to_string()));
    assert!(
        !a.iter().any(|x| x.contains(prompt)),
        "the prompt never goes into argv"
    );
    // A fresh workdir per task, under the base workdir, removed afterwards.
    let cwd = run["cwd"].as_str().unwrap();
    assert!(
        cwd.starts_with(srv.root().join("work/tasks").to_str().unwrap()),
        "{cwd}"
    );
    assert!(!std::path::Path::new(cwd).exists());
}

#[test]
fn the_cli_environment_is_scrubbed_and_extended() {
    let srv = TestServer::start();
    assert_eq!(
        srv.post("/task", Some(USER), &json!({"prompt": "env check"}))
            .status,
        200
    );
    let env = &srv.fake_run("env check")["env"];
    assert!(
        env.get("WRAPPER_KEYS").is_none(),
        "our secrets stay out of the CLI"
    );
    assert!(env.get("CLAUDECODE").is_none());
    assert!(!env.to_string().contains(LEAKY));
    assert_eq!(env["IS_SANDBOX"], "1", "[claude.env] is added");
    assert!(env.get("PATH").is_some(), "everything else is inherited");
}

#[test]
fn model_defaults_to_sonnet_and_options_pass_as_option_values() {
    let srv = TestServer::start();
    let sp = "--dangerously-skip-permissions";
    let body =
        json!({"prompt": "-p --help", "system_prompt": sp, "model": "claude-haiku-4-5-20251001"});
    let r = srv.post("/task", Some(USER), &body);
    assert_eq!(r.json()["result"], "echo: -p --help");
    let a = argv(&srv.fake_run("-p --help"));
    assert_eq!(after(&a, "--system-prompt"), Some(sp));
    assert_eq!(after(&a, "--model"), Some("claude-haiku-4-5-20251001"));
    srv.post("/task", Some(USER), &json!({"prompt": "no model"}));
    assert_eq!(
        after(&argv(&srv.fake_run("no model")), "--model"),
        Some("sonnet")
    );
}

#[test]
fn no_permissions_bypass_drops_the_flag() {
    let srv = TestServer::with(|c| c.permissions_bypass = false);
    srv.post("/task", Some(USER), &json!({"prompt": "careful"}));
    assert!(!argv(&srv.fake_run("careful")).contains(&"--dangerously-skip-permissions".to_string()));
}

#[test]
fn a_300_kb_prompt_goes_through_stdin() {
    let srv = TestServer::start();
    let prompt = "word ".repeat(60_000) + "end";
    let r = srv.post("/task", Some(USER), &json!({"prompt": prompt}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["result"].as_str().unwrap().len(),
        "echo: ".len() + prompt.len()
    );
    assert_eq!(
        srv.fake_run(&prompt)["prompt"].as_str().unwrap().len(),
        prompt.len()
    );
}

#[test]
fn a_requested_workdir_is_used_and_kept() {
    let srv = TestServer::start();
    let r = srv.post(
        "/task",
        Some(USER),
        &json!({"prompt": "WRITE out.txt data", "workdir": "proj/a"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let dir = srv.root().join("work/proj/a");
    assert_eq!(
        srv.fake_run("WRITE out.txt data")["cwd"],
        dir.to_str().unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out.txt")).unwrap(),
        "data"
    );
}

#[test]
fn cli_errors_are_200_with_success_false() {
    let srv = TestServer::start();
    let v = srv
        .post("/task", Some(USER), &json!({"prompt": "API_ERROR now"}))
        .json();
    assert_eq!(v["success"], false);
    let err = v["error"].as_str().unwrap();
    assert!(
        err.starts_with("Claude CLI returned an error: API Error: 500"),
        "{err}"
    );
    let v = srv
        .post("/task", Some(USER), &json!({"prompt": "MAX_TURNS"}))
        .json();
    assert_eq!(v["success"], false);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("maximum number of turns"));
}

#[test]
fn no_result_line_is_500_with_the_last_stderr_line() {
    let srv = TestServer::start();
    let msg = srv
        .post("/task", Some(USER), &json!({"prompt": "NO_RESULT"}))
        .error(500, "INTERNAL_ERROR");
    assert!(
        msg.contains("boom: the fake CLI failed on purpose"),
        "{msg}"
    );
    assert!(msg.contains("(3)"), "{msg}");
}

#[test]
fn garbage_lines_are_skipped() {
    let srv = TestServer::start();
    let v = srv
        .post("/task", Some(USER), &json!({"prompt": "GARBAGE in"}))
        .json();
    assert_eq!(v["success"], true);
    assert_eq!(v["result"], "echo: GARBAGE in");
}

#[test]
fn a_missing_cli_is_500_that_says_how_to_fix_it() {
    let srv = TestServer::with(|c| c.claude_bin = "/nonexistent/claude".into());
    let msg = srv
        .post("/task", Some(USER), &json!({"prompt": "x"}))
        .error(500, "INTERNAL_ERROR");
    assert!(
        msg.contains("not found") && msg.contains("--claude-bin"),
        "{msg}"
    );
}

#[test]
fn the_root_refusal_is_explained() {
    let srv = TestServer::with(|c| {
        c.claude_env.retain(|(k, _)| k != "IS_SANDBOX");
        c.claude_env
            .push(("FAKE_CLAUDE_AS_ROOT".into(), "1".into()));
    });
    let msg = srv
        .post("/task", Some(USER), &json!({"prompt": "x"}))
        .error(500, "INTERNAL_ERROR");
    assert!(
        msg.contains("root")
            && msg.contains("IS_SANDBOX=1")
            && msg.contains("--no-permissions-bypass"),
        "{msg}"
    );
}

#[test]
fn a_secret_in_stderr_is_scrubbed() {
    // A secret that ends up in an error message (here: in the CLI's path) is redacted.
    let srv = TestServer::with(|c| c.claude_bin = format!("/nonexistent/{USER}"));
    let msg = srv
        .post("/task", Some(USER), &json!({"prompt": "x"}))
        .error(500, "INTERNAL_ERROR");
    assert!(!msg.contains(USER), "{msg}");
    assert!(msg.contains("[redacted]"), "{msg}");
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let srv = TestServer::start();
    let msg = srv.grandchild_task_is_killed(1, 408, "TIMEOUT");
    assert!(msg.contains("timeout_secs (1)"), "{msg}");
    let line = srv.audit("user").pop().unwrap();
    assert_eq!(line["message"], "task timed out");
    assert_eq!(line["code"], "TIMEOUT");
    assert_eq!(line["level"], "WARN");
}

#[test]
fn a_cli_that_ignores_sigterm_is_killed() {
    let srv = TestServer::start();
    srv.post(
        "/task",
        Some(USER),
        &json!({"prompt": "IGNORE_TERM", "timeout_secs": 1}),
    )
    .error(408, "TIMEOUT");
    let run = srv.fake_run("IGNORE_TERM");
    assert!(eventually(Duration::from_secs(10), || !run_alive(&run)));
}

#[test]
fn a_cli_that_hangs_after_its_result_still_answers() {
    let srv = TestServer::start();
    let v = srv
        .post("/task", Some(USER), &json!({"prompt": "HANG_AFTER_RESULT"}))
        .json();
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["result"], "echo: HANG_AFTER_RESULT");
    let run = srv.fake_run("HANG_AFTER_RESULT");
    assert!(eventually(Duration::from_secs(10), || !run_alive(&run)));
}

#[test]
fn fifty_concurrent_tasks() {
    let srv = TestServer::start();
    let addr = srv.addr;
    let handles: Vec<_> = (0..50)
        .map(|i| {
            std::thread::spawn(move || {
                let body = json!({"prompt": format!("SLOW 20 task number {i}")});
                request(
                    addr,
                    "POST",
                    "/task",
                    Some(USER),
                    &[],
                    body.to_string().as_bytes(),
                )
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["result"], format!("echo: SLOW 20 task number {i}"));
    }
    assert_eq!(srv.fake_runs().len(), 50);
}

#[test]
fn two_hundred_slow_runs_do_not_block_health() {
    let srv = TestServer::with(|c| {
        c.max_concurrent = 250;
        c.workers = 4;
    });
    let addr = srv.addr;
    // Every run waits for this file, so all 200 stay in flight until the test lets them go.
    let gate = srv.root().join("release");
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let body = json!({"prompt": format!("WAIT_FILE {} run {i}", gate.display()), "timeout_secs": 900});
                request(
                    addr,
                    "POST",
                    "/task",
                    Some(USER),
                    &[],
                    body.to_string().as_bytes(),
                )
            })
        })
        .collect();
    // Every run holds a place (the registry also lists runs still queued).
    assert!(
        eventually(Duration::from_secs(120), || srv.app().gate.load()
            == (200, 0)),
        "all runs are in flight"
    );
    for _ in 0..20 {
        let r = srv.get("/health", None);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["runs"]["running"], 200);
    }
    std::fs::write(&gate, "").unwrap();
    for h in handles {
        let r = h.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[test]
fn beyond_the_queue_is_503_with_retry_after() {
    let srv = TestServer::with(|c| {
        c.max_concurrent = 1;
        c.max_queue = 1;
    });
    let addr = srv.addr;
    let slow = |p: String| {
        std::thread::spawn(move || {
            request(
                addr,
                "POST",
                "/task",
                Some(USER),
                &[],
                json!({"prompt": p}).to_string().as_bytes(),
            )
        })
    };
    let gate = srv.root().join("release");
    let first = format!("WAIT_FILE {} first", gate.display());
    let a = slow(first);
    srv.wait_load(1, 0);
    let b = slow("second".to_string());
    srv.wait_load(1, 1);
    let r = srv.post("/task", Some(USER), &json!({"prompt": "third"}));
    r.error(503, "OVERLOADED");
    assert!(r.header("Retry-After").is_some());
    std::fs::write(&gate, "").unwrap();
    assert_eq!(a.join().unwrap().status, 200);
    assert_eq!(
        b.join().unwrap().status,
        200,
        "the queued run ran after the first"
    );
}
