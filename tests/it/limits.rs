use std::io::{BufReader, Read};
use std::time::Duration;

use claudeway::config::Config;
use claudeway::keys::{KeyLimits, Keys};
use serde_json::{json, Value};

use crate::support::*;

/// Gives the key `id` these limits.
fn limit(cfg: &mut Config, id: &str, limits: KeyLimits) {
    let mut keys = cfg.keys.all().to_vec();
    keys.iter_mut()
        .find(|k| k.id == id)
        .expect("a test key")
        .limits = limits;
    cfg.keys = Keys::new(keys, false).unwrap();
}

fn argv(run: &Value) -> Vec<String> {
    run["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn after<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == flag)
        .map(|i| argv[i + 1].as_str())
}

#[test]
fn the_rate_limit_counts_every_route_that_runs_claude_and_says_so() {
    let srv = TestServer::with(|c| {
        limit(
            c,
            "user",
            KeyLimits {
                requests_per_minute: Some(3),
                ..Default::default()
            },
        )
    });
    let r = srv.post("/task", Some(USER), &json!({"prompt": "one"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("X-RateLimit-Limit"), Some("3"));
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("2"));
    assert_eq!(r.header("X-RateLimit-Reset"), Some("20"));

    // The SSE head carries the headers too.
    let mut sse = SseClient::open(srv.addr, Some(USER), &json!({"prompt": "two"})).unwrap();
    assert_eq!(sse.header("X-RateLimit-Remaining"), Some("1"));
    assert!(sse.rest().iter().any(|e| e.name == "done"));

    // So does the WebSocket's 101.
    let (mut ws, resp) = ws_connect(srv.addr, Some(USER), &[]).unwrap();
    assert_eq!(resp.headers().get("X-RateLimit-Remaining").unwrap(), "0");
    ws.send(tungstenite::Message::Text(
        json!({"prompt": "three"}).to_string().into(),
    ))
    .unwrap();
    assert_eq!(ws_events(&mut ws).last().unwrap()["event"], "done");

    // The bucket is empty: a session turn is refused before anything runs.
    let id = srv.post("/session/start", Some(USER), &json!({})).json()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = srv.post(
        &format!("/session/{id}"),
        Some(USER),
        &json!({"prompt": "four"}),
    );
    let msg = r.error(429, "RATE_LIMITED");
    assert!(msg.contains("3 requests per minute"), "{msg}");
    let retry: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("0"));
    assert_eq!(r.header("X-RateLimit-Limit"), Some("3"));
    srv.post("/task/stream", Some(USER), &json!({"prompt": "five"}))
        .error(429, "RATE_LIMITED");
    match ws_connect(srv.addr, Some(USER), &[]) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 429),
        other => panic!("expected 429, got {other:?}"),
    }
    assert_eq!(
        srv.fake_runs().len(),
        3,
        "refused requests never start the CLI"
    );

    // Other keys have their own (here: no) limit; routes that do not run Claude are not counted.
    let r = srv.post("/task", Some(OTHER), &json!({"prompt": "other"}));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-RateLimit-Limit"), None);
    assert_eq!(srv.get(&format!("/session/{id}"), Some(USER)).status, 200);

    let limited: Vec<Value> = srv
        .audit("user")
        .into_iter()
        .filter(|l| l["message"] == "request rate limited")
        .collect();
    assert_eq!(limited.len(), 3);
    assert_eq!(limited[0]["status"], 429);
    assert_eq!(limited[0]["code"], "RATE_LIMITED");
    assert_eq!(limited[0]["level"], "WARN");
}

/// An audit line of `key` with this cost, `days_ago` days before now (UTC).
fn spent_line(key: &str, cost: f64, days_ago: i64) -> (String, String) {
    let t = time::OffsetDateTime::now_utc() - time::Duration::days(days_ago);
    let ts = claudeway::clock::rfc3339(t);
    let line = json!({"timestamp": ts, "level": "INFO", "key_id": key, "request_id": "old",
        "route": "/task", "status": 200, "session_id": null, "model": "sonnet",
        "model_resolved": null, "claude_exit_code": 0, "duration_ms": 1, "success": true,
        "tokens": null, "cost_usd": cost, "message": "task completed"});
    (ts[..7].to_string(), line.to_string())
}

#[test]
fn budgets_are_rebuilt_from_the_log_cap_each_run_and_refuse_when_spent() {
    let dir = TempDir::new("budget");
    let logs = dir.path().join("logs/user");
    std::fs::create_dir_all(&logs).unwrap();
    // Earlier today 0.25 was spent; 5.0 forty days ago does not count for today.
    for (month, line) in [spent_line("user", 5.0, 40), spent_line("user", 0.25, 0)] {
        let mut text =
            std::fs::read_to_string(logs.join(format!("{month}.log"))).unwrap_or_default();
        text.push_str(&line);
        text.push('\n');
        std::fs::write(logs.join(format!("{month}.log")), text).unwrap();
    }
    let daily = |c: &mut Config| {
        limit(
            c,
            "user",
            KeyLimits {
                daily_budget_usd: Some(1.0),
                ..Default::default()
            },
        )
    };
    let srv = TestServer::in_dir(dir, daily);

    // Each run gets what is left as --max-budget-usd.
    assert_eq!(
        srv.post("/task", Some(USER), &json!({"prompt": "first"}))
            .status,
        200
    );
    let a = argv(&srv.fake_run("first"));
    assert_eq!(after(&a, "--max-budget-usd"), Some("0.7500"));
    // The fake's cost of "first": (105 * 3 + 11 * 15) / 1e6 = 0.00048.
    let r = srv.post("/task", Some(USER), &json!({"prompt": "COST 0.5 second"}));
    assert_eq!(r.status, 200, "{}", r.text());
    let a = argv(&srv.fake_run("COST 0.5 second"));
    assert_eq!(after(&a, "--max-budget-usd"), Some("0.7495"));
    // A request may ask for less, never for more than is left.
    srv.post(
        "/task",
        Some(USER),
        &json!({"prompt": "small", "max_budget_usd": 0.01}),
    );
    assert_eq!(
        after(&argv(&srv.fake_run("small")), "--max-budget-usd"),
        Some("0.0100")
    );
    let msg = srv
        .post(
            "/task",
            Some(USER),
            &json!({"prompt": "x", "max_budget_usd": 0.5}),
        )
        .error(400, "BAD_REQUEST");
    assert!(
        msg.contains("`max_budget_usd`") && msg.contains("daily"),
        "{msg}"
    );

    // A run that hits its --max-budget-usd ends as the CLI says (200, success false) and its
    // cost counts: the budget is spent now.
    let v = srv
        .post("/task", Some(USER), &json!({"prompt": "COST 0.3 too much"}))
        .json();
    assert_eq!(v["success"], false, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("Reached maximum budget ($0.2"),
        "{v}"
    );
    assert_eq!(v["cost_usd"], 0.3);
    assert!(
        v["tokens"]["input"].as_u64().unwrap() > 0,
        "tokens from modelUsage: {v}"
    );

    let r = srv.post("/task", Some(USER), &json!({"prompt": "refused"}));
    let msg = r.error(429, "BUDGET_EXCEEDED");
    assert!(
        msg.contains("daily budget") && msg.contains("00:00 UTC"),
        "{msg}"
    );
    let retry: u64 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    srv.post("/task/stream", Some(USER), &json!({"prompt": "refused"}))
        .error(429, "BUDGET_EXCEEDED");
    assert!(srv.fake_runs().iter().all(|r| r["prompt"] != "refused"));
    let line = srv.audit("user").pop().unwrap();
    assert_eq!(
        (line["message"].as_str(), line["status"].as_u64()),
        (Some("budget exceeded"), Some(429))
    );
    // Another key is not affected.
    assert_eq!(
        srv.post("/task", Some(OTHER), &json!({"prompt": "fine"}))
            .status,
        200
    );

    // Spend survives a restart: it is rebuilt from the audit log.
    let dir = srv.stop();
    let srv = TestServer::in_dir(dir, daily);
    srv.post("/task", Some(USER), &json!({"prompt": "after restart"}))
        .error(429, "BUDGET_EXCEEDED");
}

#[test]
fn a_queued_run_is_refused_if_the_runs_before_it_spent_the_budget() {
    let srv = TestServer::with(|c| {
        c.max_concurrent = 1;
        limit(
            c,
            "user",
            KeyLimits {
                monthly_budget_usd: Some(0.5),
                ..Default::default()
            },
        )
    });
    let gate = srv.root().join("release");
    // The first run will cost 0.6: more than its --max-budget-usd 0.5 (the CLI checks after
    // each API call, so a run can overshoot).
    let first = post_async(
        srv.addr,
        USER,
        "/task",
        json!({"prompt": format!("WAIT_FILE {} COST 0.6", gate.display())}),
    );
    srv.wait_load(1, 0);
    let second = post_async(srv.addr, USER, "/task", json!({"prompt": "queued"}));
    srv.wait_load(1, 1);
    std::fs::write(&gate, "").unwrap();
    let v = first.join().unwrap().json();
    assert_eq!(
        (v["success"].as_bool(), v["cost_usd"].as_f64()),
        (Some(false), Some(0.6))
    );
    let msg = second.join().unwrap().error(429, "BUDGET_EXCEEDED");
    assert!(
        msg.contains("monthly budget") && msg.contains("first of the month"),
        "{msg}"
    );
    assert!(srv.fake_runs().iter().all(|r| r["prompt"] != "queued"));
    assert_eq!(srv.audit("user").pop().unwrap()["message"], "task refused");
}

#[test]
fn a_key_cap_queues_as_many_as_it_runs_then_429() {
    let srv = TestServer::with(|c| {
        limit(
            c,
            "user",
            KeyLimits {
                max_concurrent: Some(1),
                ..Default::default()
            },
        )
    });
    let gate = srv.root().join("release");
    let held = post_async(
        srv.addr,
        USER,
        "/task",
        json!({"prompt": format!("WAIT_FILE {} held", gate.display())}),
    );
    srv.wait_load(1, 0);
    let queued = post_async(srv.addr, USER, "/task", json!({"prompt": "queued"}));
    srv.wait_load(1, 1);
    let r = srv.post("/task", Some(USER), &json!({"prompt": "third"}));
    let msg = r.error(429, "RATE_LIMITED");
    assert!(msg.contains("max_concurrent"), "{msg}");
    assert!(r.header("Retry-After").is_some());
    assert_eq!(r.header("X-RateLimit-Limit"), Some("1"));
    // Other keys are not held up by user's cap.
    assert_eq!(
        srv.post("/task", Some(OTHER), &json!({"prompt": "other"}))
            .status,
        200
    );
    std::fs::write(&gate, "").unwrap();
    assert_eq!(held.join().unwrap().status, 200);
    assert_eq!(queued.join().unwrap().status, 200);
    let refused = srv
        .audit("user")
        .into_iter()
        .find(|l| l["code"] == "RATE_LIMITED")
        .unwrap();
    assert_eq!(refused["message"], "task refused");
}

#[test]
fn the_queue_is_fifo_per_key_and_fair_across_keys() {
    let srv = TestServer::with(|c| c.max_concurrent = 1);
    let gate = srv.root().join("release");
    let mut handles = vec![post_async(
        srv.addr,
        USER,
        "/task",
        json!({"prompt": format!("WAIT_FILE {} hold", gate.display())}),
    )];
    srv.wait_load(1, 0);
    // user queues three, then other one: other must not wait behind all of user's.
    for (i, (key, prompt)) in [(USER, "a1"), (USER, "a2"), (USER, "a3"), (OTHER, "b1")]
        .into_iter()
        .enumerate()
    {
        handles.push(post_async(
            srv.addr,
            key,
            "/task",
            json!({"prompt": prompt}),
        ));
        srv.wait_load(1, i + 1);
    }
    std::fs::write(&gate, "").unwrap();
    for h in handles {
        assert_eq!(h.join().unwrap().status, 200);
    }
    let mut runs: Vec<(u128, String)> = srv
        .fake_runs()
        .iter()
        .map(|r| {
            (
                r["started_ns"].as_str().unwrap().parse().unwrap(),
                r["prompt"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    runs.sort();
    let order: Vec<&str> = runs.iter().skip(1).map(|(_, p)| p.as_str()).collect();
    assert_eq!(order, ["a1", "b1", "a2", "a3"]);
}

#[test]
fn agent_options_become_cli_options() {
    let srv = TestServer::start();
    let body = json!({
        "prompt": "with options",
        "max_turns": 3,
        "allowed_tools": ["Read", "Bash(git status)"],
        "disallowed_tools": ["Write"],
        "append_system_prompt": "--be-brief",
        "permission_mode": "plan",
        "add_dirs": ["extra/a"],
        "max_budget_usd": 0.25,
    });
    let r = srv.post("/task", Some(USER), &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let a = argv(&srv.fake_run("with options"));
    assert_eq!(after(&a, "--max-turns"), Some("3"));
    assert_eq!(after(&a, "--disallowedTools"), Some("Write"));
    assert_eq!(after(&a, "--append-system-prompt"), Some("--be-brief"));
    assert_eq!(after(&a, "--permission-mode"), Some("plan"));
    assert_eq!(after(&a, "--max-budget-usd"), Some("0.2500"));
    let extra = srv.root().join("work/extra/a");
    assert_eq!(after(&a, "--add-dir"), Some(extra.to_str().unwrap()));
    assert!(extra.is_dir());
    let allowed: Vec<&str> = a
        .iter()
        .enumerate()
        .filter(|(_, x)| *x == "--allowedTools")
        .map(|(i, _)| a[i + 1].as_str())
        .collect();
    assert_eq!(allowed, ["Read", "Bash(git status)"]);
    assert!(
        !a.contains(&"--dangerously-skip-permissions".to_string()),
        "an explicit permission_mode replaces the server's bypass"
    );

    // Session turns take them too.
    let id = srv.post("/session/start", Some(USER), &json!({})).json()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = srv.post(
        &format!("/session/{id}"),
        Some(USER),
        &json!({"prompt": "turn with options", "max_turns": 7, "permission_mode": "acceptEdits"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let a = argv(&srv.fake_run("turn with options"));
    assert_eq!(after(&a, "--max-turns"), Some("7"));
    assert_eq!(after(&a, "--permission-mode"), Some("acceptEdits"));

    let long = "x".repeat(100 * 1024 + 1);
    let cases = [
        (json!({"max_turns": 0}), "`max_turns`"),
        (json!({"max_turns": "3"}), "`max_turns`"),
        (json!({"max_budget_usd": 0}), "`max_budget_usd`"),
        (json!({"max_budget_usd": -1.5}), "`max_budget_usd`"),
        (json!({"allowed_tools": ["-x"]}), "`allowed_tools`"),
        (json!({"allowed_tools": "Read"}), "`allowed_tools`"),
        (
            json!({"disallowed_tools": ["Bash(oops"]}),
            "`disallowed_tools`",
        ),
        (json!({"permission_mode": "yolo"}), "`permission_mode`"),
        (json!({"add_dirs": ["/etc"]}), "`add_dirs`"),
        (json!({"add_dirs": ["../.."]}), "`add_dirs`"),
        (
            json!({"append_system_prompt": long}),
            "`append_system_prompt`",
        ),
        (json!({"system_prompt": long}), "`system_prompt`"),
    ];
    for (extra, want) in cases {
        let mut body = extra.clone();
        body["prompt"] = json!("bad option");
        let msg = srv
            .post("/task", Some(USER), &body)
            .error(400, "BAD_REQUEST");
        assert!(msg.contains(want), "{extra}: {msg}");
    }
    assert!(srv.fake_runs().iter().all(|r| r["prompt"] != "bad option"));

    let strict = TestServer::with(|c| c.permissions_bypass = false);
    let msg = strict
        .post(
            "/task",
            Some(USER),
            &json!({"prompt": "x", "permission_mode": "bypassPermissions"}),
        )
        .error(400, "BAD_REQUEST");
    assert!(msg.contains("no-permissions-bypass"), "{msg}");
}

#[test]
fn admin_processes_lists_runs_and_cancel_stops_them() {
    let srv = TestServer::start();
    let gate = srv.root().join("never");
    let prompt = format!("WAIT_FILE {} held task", gate.display());
    let task = post_async(srv.addr, USER, "/task", json!({"prompt": prompt}));
    let list = || srv.get("/admin/processes", Some(ADMIN)).json();
    assert!(eventually(Duration::from_secs(20), || list()["processes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["bytes_out"].as_u64() > Some(0))));
    let v = list();
    assert_eq!(
        (v["running"].as_u64(), v["queued"].as_u64()),
        (Some(1), Some(0))
    );
    let p = &v["processes"][0];
    assert_eq!(p["state"], "running");
    assert_eq!(p["key_id"], "user");
    assert_eq!(p["route"], "/task");
    assert!(p["age_secs"].is_u64());
    assert_eq!(p["session_id"].as_str().unwrap().len(), 36);
    let pid = p["pid"].as_u64().unwrap() as u32;
    assert!(process_alive(pid));
    let id = p["request_id"].as_str().unwrap().to_string();
    let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "request_id",
            "state",
            "key_id",
            "session_id",
            "route",
            "pid",
            "age_secs",
            "bytes_out"
        ]
    );

    srv.get("/admin/processes", Some(USER))
        .error(403, "FORBIDDEN");
    srv.get("/admin/processes", None).error(401, "UNAUTHORIZED");
    // Another key cannot see it, nor cancel it; an unknown id is 404 too.
    srv.post(&format!("/task/{id}/cancel"), Some(OTHER), &json!({}))
        .error(404, "NOT_FOUND");
    srv.post("/task/nope/cancel", Some(USER), &json!({}))
        .error(404, "NOT_FOUND");
    assert!(process_alive(pid));
    // The admin may cancel anyone's run.
    let r = srv.post(&format!("/task/{id}/cancel"), Some(ADMIN), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"cancelled": true, "request_id": id}));
    let msg = task.join().unwrap().error(409, "CONFLICT");
    assert!(msg.contains("cancelled"), "{msg}");
    assert!(eventually(Duration::from_secs(10), || !process_alive(pid)));
    assert_eq!(list()["processes"], json!([]));
    let lines = srv.audit("user");
    assert!(lines
        .iter()
        .any(|l| l["message"] == "task cancelled" && l["status"] == 409));
    assert!(srv
        .audit("admin")
        .iter()
        .any(|l| l["message"] == "task cancel requested"));
}

#[test]
fn a_stream_can_be_cancelled_by_its_owner_with_the_id_from_its_head() {
    let srv = TestServer::start();
    let gate = srv.root().join("never");
    let mut sse = SseClient::open(
        srv.addr,
        Some(USER),
        &json!({"prompt": format!("WAIT_FILE {} streaming", gate.display())}),
    )
    .unwrap();
    let id = sse.header("X-Request-Id").unwrap().to_string();
    assert_eq!(sse.next_event().unwrap().name, "text");
    srv.post(&format!("/task/{id}/cancel"), Some(OTHER), &json!({}))
        .error(404, "NOT_FOUND");
    let r = srv.post(&format!("/task/{id}/cancel"), Some(USER), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let rest = sse.rest();
    let error = rest
        .iter()
        .find(|e| e.name == "error")
        .expect("an error event");
    assert_eq!(
        serde_json::from_str::<Value>(&error.data).unwrap()["code"],
        "CONFLICT"
    );
    assert_eq!(rest.last().unwrap().name, "done");
    assert!(eventually(Duration::from_secs(10), || srv
        .app()
        .registry
        .is_empty()));
}

fn metrics(srv: &TestServer) -> String {
    let r = srv.get("/metrics", Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

/// The value of the sample `line` (name and labels as written), or 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn metrics_need_the_admin_key_and_count_what_happens() {
    let srv = TestServer::start();
    srv.get("/metrics", None).error(401, "UNAUTHORIZED");
    srv.get("/metrics", Some(USER)).error(403, "FORBIDDEN");
    let before = metrics(&srv);
    for name in [
        "claudeway_http_requests_total",
        "claudeway_task_duration_seconds",
        "claudeway_cli_running",
        "claudeway_cli_queued",
        "claudeway_tokens_total",
        "claudeway_cost_usd_total",
        "claudeway_events_dropped_total",
        "claudeway_cli_stalls_total",
        "claudeway_cli_kills_total",
    ] {
        assert!(
            before.contains(&format!("# TYPE {name} ")),
            "{name}:\n{before}"
        );
    }
    assert_eq!(sample(&before, "claudeway_cli_running"), 0.0);

    let r = srv
        .post("/task", Some(USER), &json!({"prompt": "count me"}))
        .json();
    srv.post("/task", Some(USER), &json!({}))
        .error(400, "BAD_REQUEST");
    srv.post("/task", Some(USER), &json!({"prompt": "HANG_AFTER_RESULT"}));
    let after = metrics(&srv);
    let s = |series: &str| sample(&after, series);
    assert_eq!(
        s("claudeway_http_requests_total{route=\"/task\",status=\"200\"}"),
        2.0
    );
    assert_eq!(
        s("claudeway_http_requests_total{route=\"/task\",status=\"400\"}"),
        1.0
    );
    assert_eq!(
        s("claudeway_http_requests_total{route=\"/metrics\",status=\"403\"}"),
        1.0
    );
    assert_eq!(s("claudeway_runs_total{outcome=\"completed\"}"), 2.0);
    assert_eq!(s("claudeway_task_duration_seconds_count"), 2.0);
    assert_eq!(
        s("claudeway_task_duration_seconds_bucket{le=\"+Inf\"}"),
        2.0
    );
    let input = r["tokens"]["input"].as_f64().unwrap();
    let model = "claude-sonnet-5-5";
    assert!(
        s(&format!(
            "claudeway_tokens_total{{key=\"user\",model=\"{model}\",type=\"input\"}}"
        )) > input,
        "{after}"
    );
    assert!(
        s(&format!(
            "claudeway_cost_usd_total{{key=\"user\",model=\"{model}\"}}"
        )) > 0.0
    );
    assert_eq!(
        s("claudeway_cli_kills_total{reason=\"hung_after_result\"}"),
        1.0
    );

    let public = TestServer::with(|c| c.metrics_public = true);
    assert_eq!(public.get("/metrics", None).status, 200);
}

#[test]
fn a_stalled_run_is_killed_with_its_group_and_counted() {
    let srv = TestServer::with(|c| c.stall = Some(Duration::from_secs(1)));
    let msg = srv.grandchild_task_is_killed(60, 408, "STALLED");
    assert!(msg.contains("printed nothing for 1 s"), "{msg}");
    let line = srv.audit("user").pop().unwrap();
    assert_eq!(
        (line["message"].as_str(), line["code"].as_str()),
        (Some("task stalled"), Some("STALLED"))
    );
    let m = metrics(&srv);
    assert_eq!(sample(&m, "claudeway_cli_stalls_total"), 1.0);
    assert_eq!(
        sample(&m, "claudeway_cli_kills_total{reason=\"stalled\"}"),
        1.0
    );
}

/// Starts `sleep 1000` as the leader of its own process group.
fn sleeper() -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .unwrap()
}

#[test]
fn the_orphan_sweep_kills_recorded_groups_and_spares_reused_pids() {
    let dir = TempDir::new("sweep");
    let pids = dir.path().join("state/pids");
    std::fs::create_dir_all(&pids).unwrap();
    // A CLI left by a crashed start, recorded with its start time.
    let mut orphan = sleeper();
    let started = claudeway::os::process_start_time(orphan.id()).unwrap();
    std::fs::write(
        pids.join(orphan.id().to_string()),
        format!("req-1 {started}"),
    )
    .unwrap();
    // A pid recorded long ago that now belongs to someone else (another start time).
    let mut stranger = sleeper();
    std::fs::write(
        pids.join(stranger.id().to_string()),
        format!("req-2 {}", started + 1_000_000),
    )
    .unwrap();

    let srv = TestServer::in_dir(dir, |_| {});
    let reaped = eventually(Duration::from_secs(10), || {
        matches!(orphan.try_wait(), Ok(Some(_)))
    });
    assert!(reaped, "the orphan's group was killed");
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "a reused pid is left alone"
    );
    assert_eq!(
        std::fs::read_dir(srv.root().join("state/pids"))
            .unwrap()
            .count(),
        0
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
}

#[test]
fn a_client_that_stops_reading_cannot_hold_a_run() {
    let srv = TestServer::with(|c| c.idle_timeout = Duration::from_secs(1));
    let mut s = connect(srv.addr);
    let body = json!({"prompt": "BIG 20000000"}).to_string();
    send_request(
        &mut s,
        "POST",
        "/task/stream",
        Some(USER),
        &[],
        body.as_bytes(),
    );
    // Read the head only, then nothing: the server's writes block, then time out.
    let mut r = BufReader::new(s);
    let (status, _) = read_head(&mut r);
    assert_eq!(status, 200);
    assert!(
        eventually(Duration::from_secs(60), || srv
            .audit("user")
            .iter()
            .any(|l| l["status"] == 499)),
        "the run was stopped as its client was gone"
    );
    assert!(srv.app().registry.is_empty());
    let mut rest = Vec::new();
    let _ = r.get_mut().set_read_timeout(Some(Duration::from_secs(5)));
    let _ = r.read_to_end(&mut rest);
}

/// A plain `/task` answers only when it is over, so its client cannot learn the generated id
/// in time to cancel. It may choose the id instead (`X-Request-Id`): it is used as is (in the
/// answer's header, the process list, the audit line), and the owner cancels by it. Two runs
/// may carry the same id; a cancel reaches both. An id we could not carry safely is replaced.
#[test]
fn a_plain_task_can_be_cancelled_by_the_id_its_client_chose() {
    let srv = TestServer::start();
    let gate = srv.root().join("never");
    let body = json!({"prompt": format!("WAIT_FILE {} waiting", gate.display())});
    let start = |key: &'static str| {
        post_async_as(
            srv.addr,
            key,
            "/task",
            Some("nightly-build:42"),
            body.clone(),
        )
    };
    let mine = [start(USER), start(USER)];
    let theirs = start(OTHER);
    let running = || {
        srv.app()
            .registry
            .list()
            .iter()
            .filter(|r| r.request_id == "nightly-build:42" && r.pid.is_some())
            .count()
    };
    assert!(eventually(Duration::from_secs(20), || running() == 3));
    // The admin narrows a cancel to one key's runs with that id.
    let r = srv.post(
        "/task/nightly-build:42/cancel?key_id=other",
        Some(ADMIN),
        &json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    theirs.join().unwrap().error(409, "CONFLICT");
    assert_eq!(running(), 2, "the user's runs go on");
    // The other key has none left with that id; the user's are not its to cancel.
    srv.post("/task/nightly-build:42/cancel", Some(OTHER), &json!({}))
        .error(404, "NOT_FOUND");
    let r = srv.post("/task/nightly-build:42/cancel", Some(USER), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    for t in mine {
        let r = t.join().unwrap();
        assert_eq!(r.header("X-Request-Id"), Some("nightly-build:42"));
        let msg = r.error(409, "CONFLICT");
        assert!(msg.contains("cancelled"), "{msg}");
    }
    assert!(eventually(Duration::from_secs(10), || srv
        .app()
        .registry
        .is_empty()));
    let cancelled = srv
        .audit("user")
        .into_iter()
        .filter(|l| l["request_id"] == "nightly-build:42" && l["message"] == "task cancelled")
        .count();
    assert_eq!(cancelled, 2);

    // Not carried: spaces, a quote, too long, empty, not starting with a letter or digit. The
    // answer names the id we made instead.
    let long = "x".repeat(129);
    for bad in [
        "two words",
        "a\"b",
        long.as_str(),
        "",
        "..",
        ".hidden",
        "-x",
    ] {
        let r = request(
            srv.addr,
            "GET",
            "/health",
            None,
            &[("X-Request-Id", bad)],
            b"",
        );
        assert_eq!(r.status, 200);
        let id = r.header("X-Request-Id").unwrap();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }
    let r = request(
        srv.addr,
        "GET",
        "/health",
        None,
        &[("X-Request-Id", "ok.id_1-2")],
        b"",
    );
    assert_eq!(r.header("X-Request-Id"), Some("ok.id_1-2"));
}

/// A run waiting in the queue is listed (`queued`, no pid) and can be cancelled: it leaves the
/// queue, its client gets 409, the audit says "task cancelled", and the run ahead goes on.
#[test]
fn a_queued_run_is_listed_and_can_be_cancelled() {
    let srv = TestServer::with(|c| c.max_concurrent = 1);
    let gate = srv.root().join("open-me");
    let body = |tag: &str| json!({"prompt": format!("WAIT_FILE {} {tag}", gate.display())});
    let post =
        |id: &'static str, body: Value| post_async_as(srv.addr, USER, "/task", Some(id), body);
    let ahead = post("ahead", body("first"));
    let state = |id: &str| {
        srv.app()
            .registry
            .list()
            .into_iter()
            .find(|r| r.request_id == id)
            .map(|r| (r.state, r.pid.is_some()))
    };
    assert!(eventually(Duration::from_secs(20), || state("ahead")
        == Some(("running", true))));
    let behind = post("behind", body("second"));
    assert!(eventually(Duration::from_secs(20), || state("behind")
        == Some(("queued", false))));
    let listed = srv.get("/admin/processes", Some(ADMIN)).json();
    assert_eq!(
        (listed["running"].as_u64(), listed["queued"].as_u64()),
        (Some(1), Some(1))
    );
    let queued = listed["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["request_id"] == "behind")
        .cloned()
        .expect("the queued run is listed");
    assert_eq!(queued["state"], "queued");
    assert!(queued["pid"].is_null());

    let r = srv.post("/task/behind/cancel", Some(USER), &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let msg = behind.join().unwrap().error(409, "CONFLICT");
    assert!(msg.contains("cancelled before its CLI started"), "{msg}");
    assert_eq!(state("behind"), None);
    assert_eq!(
        state("ahead"),
        Some(("running", true)),
        "the run ahead goes on"
    );
    assert_eq!(srv.app().gate.load(), (1, 0));
    std::fs::write(&gate, "").unwrap();
    assert_eq!(ahead.join().unwrap().status, 200);
    let lines = srv.audit("user");
    assert!(lines.iter().any(|l| l["request_id"] == "behind"
        && l["message"] == "task cancelled"
        && l["status"] == 409));
    // The cancelled run never started a CLI; the one ahead did.
    let ran = |tag: &str| {
        srv.fake_runs()
            .iter()
            .any(|r| r["prompt"].as_str().is_some_and(|p| p.ends_with(tag)))
    };
    assert!(ran("first"));
    assert!(!ran("second"));
}
