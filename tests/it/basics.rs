use serde_json::json;

use crate::support::*;

#[test]
fn health_needs_no_key_and_every_answer_has_a_request_id() {
    let srv = TestServer::start();
    let r = srv.get("/health", None);
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["uptime_secs"].is_u64());
    let id = r.header("X-Request-Id").expect("X-Request-Id");
    assert_eq!(id.len(), 36);
    let r2 = srv.get("/nope", Some(ADMIN));
    assert_ne!(r2.header("X-Request-Id"), Some(id));
}

#[test]
fn missing_and_wrong_keys_are_401() {
    let srv = TestServer::start();
    let body = json!({"prompt": "hi"});
    srv.post("/task", None, &body).error(401, "UNAUTHORIZED");
    let msg = srv
        .post("/task", Some("wrong-secret"), &body)
        .error(401, "UNAUTHORIZED");
    assert!(!msg.contains("wrong-secret"));
    let r = request(
        srv.addr,
        "POST",
        "/task",
        None,
        &[("Authorization", "Basic abc")],
        b"{}",
    );
    r.error(401, "UNAUTHORIZED");
    assert!(srv.fake_runs().is_empty(), "no CLI run without a key");
}

#[test]
fn unknown_route_is_404_and_wrong_method_is_405_with_allow() {
    let srv = TestServer::start();
    srv.get("/nope", Some(ADMIN)).error(404, "NOT_FOUND");
    srv.get("/nope", None).error(404, "NOT_FOUND");
    let r = srv.get("/task", Some(ADMIN));
    r.error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(r.header("Allow"), Some("POST"));
    srv.post("/health", None, &json!({}))
        .error(405, "METHOD_NOT_ALLOWED");
}

#[test]
fn bad_bodies_are_400_naming_the_field() {
    let srv = TestServer::start();
    let raw = |body: &[u8]| request(srv.addr, "POST", "/task", Some(USER), &[], body);
    assert!(raw(b"{not json")
        .error(400, "BAD_REQUEST")
        .contains("not valid JSON"));
    assert!(raw(b"[1,2]")
        .error(400, "BAD_REQUEST")
        .contains("JSON object"));
    assert!(raw(b"{\"prompt\":\"\xff\"}")
        .error(400, "BAD_REQUEST")
        .contains("UTF-8"));
    let cases = [
        (json!({}), "`prompt` is required"),
        (json!({"prompt": "   "}), "`prompt` must not be empty"),
        (json!({"prompt": 5}), "`prompt` must be a string"),
        (
            json!({"prompt": "x", "timeout_secs": "ten"}),
            "`timeout_secs`",
        ),
        (json!({"prompt": "x", "timeout_secs": 0}), "`timeout_secs`"),
        (
            json!({"prompt": "x", "timeout_secs": 3601}),
            "`timeout_secs`",
        ),
        (json!({"prompt": "x", "model": "--help"}), "`model`"),
        (
            json!({"prompt": "x", "system_prompt": 1}),
            "`system_prompt`",
        ),
        (json!({"prompt": "x", "workdir": "/etc"}), "`workdir`"),
        (json!({"prompt": "x", "workdir": "../.."}), "`workdir`"),
    ];
    for (body, want) in cases {
        let msg = srv
            .post("/task", Some(USER), &body)
            .error(400, "BAD_REQUEST");
        assert!(msg.contains(want), "{body}: {msg}");
    }
    let deep = "[".repeat(10_000);
    raw(format!("{{\"prompt\":{deep}").as_bytes()).error(400, "BAD_REQUEST");
    assert!(
        srv.fake_runs().is_empty(),
        "a bad body never starts the CLI"
    );
}

#[test]
fn bodies_over_the_limit_are_413() {
    let srv = TestServer::with(|c| c.max_body = 4096);
    let big = json!({"prompt": "x".repeat(5000)});
    let msg = srv
        .post("/task", Some(USER), &big)
        .error(413, "PAYLOAD_TOO_LARGE");
    assert!(msg.contains("4096"));
    let ok = srv.post("/task", Some(USER), &json!({"prompt": "x".repeat(3000)}));
    assert_eq!(ok.status, 200, "{}", ok.text());
}

#[test]
fn a_panic_costs_one_request_not_a_worker() {
    let srv = TestServer::with(|c| {
        c.test_routes = true;
        c.workers = 1;
    });
    for _ in 0..3 {
        let msg = srv.get("/__test/panic", None).error(500, "INTERNAL_ERROR");
        assert!(msg.contains("request id"), "{msg}");
    }
    assert_eq!(
        srv.get("/health", None).status,
        200,
        "the only worker is still alive"
    );
}

/// Found by the contract run (Swagger UI hung after schemathesis): tiny_http's connection
/// pool queued a new connection behind idle keep-alive ones when several arrived at once, so
/// it got no answer until another client left. Each round opens more connections than the
/// pool has idle threads, all at once, and keeps them open.
#[test]
fn many_keep_alive_connections_opened_at_once_are_all_answered() {
    use std::io::{Read, Write};
    let srv = TestServer::start();
    // Let the pool's first threads reach their idle wait (the state that queued connections).
    std::thread::sleep(std::time::Duration::from_millis(300));
    for n in [8, 16, 32, 64] {
        let mut conns: Vec<std::net::TcpStream> = (0..n)
            .map(|_| std::net::TcpStream::connect(srv.addr).unwrap())
            .collect();
        for c in &mut conns {
            c.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut head = [0u8; 12];
            let got = c.read_exact(&mut head);
            assert!(
                got.is_ok() && head.starts_with(b"HTTP/1.1 200"),
                "{n} at once: connection {i} got no answer while the others stay open"
            );
        }
    }
}
