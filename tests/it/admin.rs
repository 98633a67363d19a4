use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

fn dashboard(cfg: &mut claudeway::config::Config) {
    cfg.plugins.insert("dashboard".into(), toml::Table::new());
}

/// A logged-in admin: the `Cookie` header value and the CSRF token.
struct Admin {
    cookie: String,
    csrf: String,
}

fn login(srv: &TestServer) -> Admin {
    let r = srv.post("/admin/login", None, &json!({"key": ADMIN}));
    assert_eq!(r.status, 200, "{}", r.text());
    let set = r.header("Set-Cookie").expect("a cookie").to_string();
    Admin {
        cookie: set.split(';').next().unwrap().to_string(),
        csrf: r.json()["csrf_token"].as_str().unwrap().to_string(),
    }
}

fn get(srv: &TestServer, path: &str, admin: &Admin) -> Resp {
    request(
        srv.addr,
        "GET",
        path,
        None,
        &[("Cookie", &admin.cookie)],
        b"",
    )
}

fn post(srv: &TestServer, path: &str, cookie: &str, csrf: Option<&str>) -> Resp {
    let mut headers = vec![("Cookie", cookie)];
    if let Some(t) = csrf {
        headers.push(("X-CSRF-Token", t));
    }
    request(srv.addr, "POST", path, None, &headers, b"")
}

#[test]
fn the_admin_api_and_dashboard_exist_only_with_the_plugin() {
    let srv = TestServer::start();
    for (method, path) in [
        ("POST", "/admin/login"),
        ("GET", "/admin/overview"),
        ("GET", "/dashboard"),
        ("GET", "/dashboard/assets/x.js"),
    ] {
        let r = request(srv.addr, method, path, Some(ADMIN), &[], b"{}");
        r.error(404, "NOT_FOUND");
    }
}

#[test]
fn login_sets_a_strict_http_only_cookie_and_logout_ends_it() {
    let srv = TestServer::with(dashboard);
    let r = srv.post("/admin/login", None, &json!({"key": ADMIN}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["success"], true);
    let csrf = v["csrf_token"].as_str().unwrap().to_string();
    assert_eq!(csrf.len(), 64);
    let set = r.header("Set-Cookie").unwrap();
    let (pair, attrs) = set.split_once(';').unwrap();
    let (name, id) = pair.split_once('=').unwrap();
    assert_eq!(name, "claudeway_admin");
    assert_eq!(id.len(), 64);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(id, csrf);
    let attrs: Vec<&str> = attrs.split(';').map(str::trim).collect();
    assert_eq!(
        attrs,
        ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"],
        "{set}"
    );
    assert!(!set.contains(ADMIN));
    let admin = Admin {
        cookie: pair.to_string(),
        csrf: csrf.clone(),
    };

    // The cookie opens the API; the token can be asked for again (a reloaded page).
    assert_eq!(get(&srv, "/admin/overview", &admin).status, 200);
    let s = get(&srv, "/admin/session", &admin).json();
    assert_eq!(s["csrf_token"], csrf.as_str());
    assert_eq!(s["key_id"], "admin");

    // Logout needs the CSRF token.
    post(&srv, "/admin/logout", &admin.cookie, None).error(403, "FORBIDDEN");
    post(&srv, "/admin/logout", &admin.cookie, Some("nope")).error(403, "FORBIDDEN");
    let r = post(&srv, "/admin/logout", &admin.cookie, Some(&csrf));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("Set-Cookie").unwrap().contains("Max-Age=0"));
    // Server-side: the old cookie is dead even if a client keeps sending it.
    get(&srv, "/admin/overview", &admin).error(401, "UNAUTHORIZED");
    post(&srv, "/admin/logout", &admin.cookie, Some(&csrf)).error(401, "UNAUTHORIZED");
    let lines = srv.audit("admin");
    let messages: Vec<&str> = lines
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["admin login", "admin logout"]);
}

#[test]
fn the_cookie_is_secure_when_configured() {
    let srv = TestServer::with(|cfg| {
        let mut t = toml::Table::new();
        t.insert("secure_cookie".into(), true.into());
        cfg.plugins.insert("dashboard".into(), t);
    });
    let r = srv.post("/admin/login", None, &json!({"key": ADMIN}));
    assert!(r.header("Set-Cookie").unwrap().ends_with("; Secure"));
}

#[test]
fn a_bad_dashboard_setting_stops_the_start() {
    let dir = TempDir::new("admin-cfg");
    let mut cfg = test_config(dir.path());
    let mut t = toml::Table::new();
    t.insert("secure_cooky".into(), true.into());
    cfg.plugins.insert("dashboard".into(), t);
    let err = claudeway::server::start(cfg).err().expect("refused");
    assert!(err.contains("secure_cooky"), "{err}");
}

#[test]
fn without_a_valid_cookie_every_admin_route_is_401() {
    let srv = TestServer::with(dashboard);
    for path in [
        "/admin/overview",
        "/admin/logs",
        "/admin/keys",
        "/admin/costs",
        "/admin/session",
    ] {
        srv.get(path, None).error(401, "UNAUTHORIZED");
        // An API key is not an admin login.
        srv.get(path, Some(ADMIN)).error(401, "UNAUTHORIZED");
        let bogus = Admin {
            cookie: format!("claudeway_admin={}", "0".repeat(64)),
            csrf: String::new(),
        };
        get(&srv, path, &bogus).error(401, "UNAUTHORIZED");
    }
    // A forged cross-site POST carries the cookie but not the token.
    let admin = login(&srv);
    post(&srv, "/admin/logout", &admin.cookie, Some("")).error(403, "FORBIDDEN");
    assert_eq!(get(&srv, "/admin/overview", &admin).status, 200);
    // Another login's token does not do either.
    let other = login(&srv);
    post(&srv, "/admin/logout", &admin.cookie, Some(&other.csrf)).error(403, "FORBIDDEN");
    assert_eq!(
        post(&srv, "/admin/logout", &admin.cookie, Some(&admin.csrf)).status,
        200
    );
    assert_eq!(get(&srv, "/admin/overview", &other).status, 200);
}

#[test]
fn login_refuses_wrong_and_non_admin_keys_and_audits_them() {
    let srv = TestServer::with(dashboard);
    let r = srv.post("/admin/login", None, &json!({"key": "wrong"}));
    let msg = r.error(401, "UNAUTHORIZED");
    assert!(!msg.contains("wrong\""), "{msg}");
    assert!(r.header("Set-Cookie").is_none());
    srv.post("/admin/login", None, &json!({"key": USER}))
        .error(403, "FORBIDDEN");
    srv.post("/admin/login", None, &json!({}))
        .error(400, "BAD_REQUEST");
    let unauth = srv.audit("_unauthorized");
    assert_eq!(unauth.len(), 1, "{unauth:?}");
    assert_eq!(unauth[0]["route"], "/admin/login");
    assert_eq!(unauth[0]["status"], 401);
    assert_eq!(unauth[0]["code"], "UNAUTHORIZED");
    assert!(!unauth[0].to_string().contains("wrong"));
    let user = srv.audit("user");
    assert_eq!(user.len(), 1);
    assert_eq!(user[0]["code"], "FORBIDDEN");
    assert!(!user[0].to_string().contains(USER));
}

#[test]
fn repeated_failed_logins_are_refused_with_429_without_waiting() {
    let srv = TestServer::with(|cfg| {
        let mut t = toml::Table::new();
        t.insert("login_attempts".into(), 3.into());
        t.insert("login_window_secs".into(), 600.into());
        cfg.plugins.insert("dashboard".into(), t);
    });
    for _ in 0..3 {
        srv.post("/admin/login", None, &json!({"key": "guess"}))
            .error(401, "UNAUTHORIZED");
    }
    // Now even the right key is refused: the throttle gives no oracle.
    for key in ["guess", ADMIN] {
        let r = srv.post("/admin/login", None, &json!({ "key": key }));
        r.error(429, "RATE_LIMITED");
        let retry: u64 = r.header("Retry-After").unwrap().parse().unwrap();
        assert!((590..=601).contains(&retry), "{retry}");
        assert!(r.header("Set-Cookie").is_none());
    }
    let unauth = srv.audit("_unauthorized");
    assert_eq!(unauth.len(), 5);
    assert_eq!(unauth[4]["code"], "RATE_LIMITED");
    // The rest of the server is not affected.
    assert_eq!(srv.get("/health", None).status, 200);
}

#[test]
fn a_successful_login_resets_the_failure_count() {
    let srv = TestServer::with(|cfg| {
        let mut t = toml::Table::new();
        t.insert("login_attempts".into(), 2.into());
        cfg.plugins.insert("dashboard".into(), t);
    });
    srv.post("/admin/login", None, &json!({"key": "guess"}))
        .error(401, "UNAUTHORIZED");
    login(&srv);
    srv.post("/admin/login", None, &json!({"key": "guess"}))
        .error(401, "UNAUTHORIZED");
    login(&srv);
}

/// Audit lines written before the server starts: two keys, several days across a month
/// and an ISO-week boundary, two models, a line without cost, an unauthorized line.
fn seed_lines(today: &str) -> Vec<Value> {
    let line = |ts: &str, key: Option<&str>, model: Option<&str>, cost: Option<f64>| {
        json!({
            "timestamp": ts, "level": "INFO", "key_id": key, "request_id": "seed",
            "route": "/task", "status": 200, "session_id": null, "model": "sonnet",
            "model_resolved": model, "claude_exit_code": 0, "duration_ms": 5,
            "success": true,
            "tokens": cost.map(|_| json!({"input": 10, "output": 2, "cache_read": 1, "cache_write": 0})),
            "cost_usd": cost, "message": "task completed"
        })
    };
    vec![
        line(
            "2025-12-31T23:59:59.000Z",
            Some("admin"),
            Some("claude-opus-4"),
            Some(0.5),
        ),
        line(
            "2026-01-01T00:00:01.000Z",
            Some("user"),
            Some("claude-opus-4"),
            Some(0.25),
        ),
        line(
            "2026-01-05T08:00:00.000Z",
            Some("user"),
            Some("claude-haiku-5-5"),
            Some(0.125),
        ),
        line(
            &format!("{today}T00:00:00.000Z"),
            Some("admin"),
            Some("claude-haiku-5-5"),
            Some(0.0625),
        ),
        line(&format!("{today}T00:00:01.000Z"), Some("user"), None, None),
        json!({
            "timestamp": format!("{today}T00:00:02.000Z"), "level": "WARN", "key_id": null,
            "request_id": "seed", "route": "/task", "status": 401, "code": "UNAUTHORIZED",
            "session_id": null, "model": null, "model_resolved": null,
            "claude_exit_code": null, "duration_ms": 0, "success": false, "tokens": null,
            "cost_usd": null, "message": "unauthorized"
        }),
    ]
}

fn write_lines(log_dir: &std::path::Path, lines: &[Value]) {
    for l in lines {
        let dir = l["key_id"].as_str().unwrap_or("_unauthorized");
        let month = &l["timestamp"].as_str().unwrap()[..7];
        let path = log_dir.join(dir).join(format!("{month}.log"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&format!("{l}\n"));
        std::fs::write(path, text).unwrap();
    }
}

/// Everything the admin API should say, summed by hand from the log lines.
#[derive(Debug, Default)]
struct Expected {
    requests: u64,
    cost: f64,
    unauthorized: u64,
    keys: BTreeMap<String, (u64, f64, String)>,
    models: BTreeMap<String, (u64, f64)>,
    days: BTreeMap<String, (u64, f64)>,
    months: BTreeMap<String, (u64, f64)>,
}

fn expected(lines: &[Value]) -> Expected {
    let mut e = Expected::default();
    for l in lines {
        let Some(key) = l["key_id"].as_str() else {
            e.unauthorized += 1;
            continue;
        };
        let cost = l["cost_usd"].as_f64().unwrap_or(0.0);
        let ts = l["timestamp"].as_str().unwrap().to_string();
        e.requests += 1;
        e.cost += cost;
        let k = e.keys.entry(key.into()).or_default();
        k.0 += 1;
        k.1 += cost;
        k.2 = k.2.clone().max(ts.clone());
        if let Some(m) = l["model_resolved"].as_str().or(l["model"].as_str()) {
            let m = e.models.entry(m.into()).or_default();
            m.0 += 1;
            m.1 += cost;
        }
        for (map, len) in [(&mut e.days, 10), (&mut e.months, 7)] {
            let p = map.entry(ts[..len].to_string()).or_default();
            p.0 += 1;
            p.1 += cost;
        }
    }
    e
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

fn check_totals(srv: &TestServer, admin: &Admin, lines: &[Value]) {
    let e = expected(lines);
    let o = get(srv, "/admin/overview", admin).json();
    assert_eq!(o["total_requests"], e.requests, "{o}");
    assert!(close(&o["total_cost_usd"], e.cost), "{o} vs {}", e.cost);
    assert_eq!(o["unauthorized"], e.unauthorized);
    assert_eq!(o["daily"].as_array().unwrap().len(), 30);
    for d in o["daily"].as_array().unwrap() {
        let (n, c) = e
            .days
            .get(d["date"].as_str().unwrap())
            .copied()
            .unwrap_or_default();
        assert_eq!(d["requests"], n, "{d}");
        assert!(close(&d["cost_usd"], c), "{d}");
    }
    let models = o["models"].as_array().unwrap();
    assert_eq!(models.len(), e.models.len(), "{o}");
    for m in models {
        let (n, c) = e.models[m["model"].as_str().unwrap()];
        assert_eq!(m["requests"], n);
        assert!(close(&m["cost_usd"], c));
    }

    let keys = get(srv, "/admin/keys", admin).json();
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys[0]["key_id"], "admin");
    assert_eq!(keys[0]["admin"], true);
    for k in keys {
        let id = k["key_id"].as_str().unwrap();
        let (n, c, last) = e.keys.get(id).cloned().unwrap_or_default();
        assert_eq!(k["requests"], n, "{k}");
        assert!(close(&k["cost_usd"], c), "{k}");
        if n > 0 {
            assert_eq!(k["last_used"], last.as_str());
        }
        assert!(!k.to_string().contains(ADMIN) && !k.to_string().contains(USER));
    }

    for (by, want) in [("daily", &e.days), ("monthly", &e.months)] {
        let c = get(srv, &format!("/admin/costs?group_by={by}"), admin).json();
        let periods: Vec<&str> = c["periods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(periods, want.keys().map(String::as_str).collect::<Vec<_>>());
        for (i, p) in periods.iter().enumerate() {
            assert_eq!(c["total"]["requests"][i], want[*p].0);
            assert!(close(&c["total"]["cost_usd"][i], want[*p].1));
            let by_key: f64 = c["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["cost_usd"][i].as_f64().unwrap())
                .sum();
            assert!((by_key - want[*p].1).abs() < 1e-9, "{by} {p}: per key");
        }
    }
}

#[test]
fn admin_totals_match_a_hand_summed_log_and_survive_a_restart() {
    let today = claudeway::clock::now_rfc3339()[..10].to_string();
    let seeded = seed_lines(&today);
    let srv = TestServer::with(|cfg| {
        dashboard(cfg);
        write_lines(&cfg.log_dir, &seeded);
    });
    let admin = login(&srv);

    // Hand-checked figures for the seed alone (the login line adds one request, no cost).
    let o = get(&srv, "/admin/overview", &admin).json();
    assert_eq!(o["total_requests"], 6, "{o}");
    assert_eq!(o["total_cost_usd"], 0.9375);
    assert_eq!(o["unauthorized"], 1);
    assert_eq!(o["tokens"]["input"], 40);
    assert!(o["events_dropped"].is_u64() && o["active_sessions"].is_u64());
    let w = get(&srv, "/admin/costs?group_by=weekly", &admin).json();
    // 2025-12-31 and 2026-01-01 are both in ISO week 2026-W01; 2026-01-05 starts W02.
    assert_eq!(w["periods"][0], "2026-W01");
    assert_eq!(w["periods"][1], "2026-W02");
    assert_eq!(w["total"]["cost_usd"][0], 0.75);
    assert_eq!(w["models"][0]["model"], "claude-opus-4");
    assert_eq!(w["models"][0]["cost_usd"][0], 0.5 + 0.25);
    get(&srv, "/admin/costs?group_by=hourly", &admin).error(400, "BAD_REQUEST");

    // Real runs through the fake CLI are folded in as they are audited.
    for (key, model) in [(USER, "haiku"), (ADMIN, "sonnet"), (USER, "opus")] {
        let r = srv.post(
            "/task",
            Some(key),
            &json!({"prompt": "count me", "model": model}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    srv.get("/task", None); // 405: not audited
    srv.post("/task", Some("nope"), &json!({"prompt": "x"})); // 401: _unauthorized
    let all = |srv: &TestServer| {
        let mut lines = Vec::new();
        for dir in ["admin", "user", "_unauthorized"] {
            lines.extend(srv.audit(dir));
        }
        lines
    };
    let lines = all(&srv);
    assert_eq!(lines.len(), seeded.len() + 1 + 3 + 1);
    assert!(eventually(Duration::from_secs(10), || {
        get(&srv, "/admin/overview", &admin).json()["unauthorized"] == 2
    }));
    check_totals(&srv, &admin, &lines);

    // A restart reads the same log and says the same.
    let log_dir = srv.root().join("logs");
    let srv2 = TestServer::with(|cfg| {
        dashboard(cfg);
        let _ = std::fs::remove_dir_all(&cfg.log_dir);
        copy_dir(&log_dir, &cfg.log_dir);
    });
    let admin2 = login(&srv2);
    let lines2 = all(&srv2);
    assert_eq!(lines2.len(), lines.len() + 1);
    check_totals(&srv2, &admin2, &lines2);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn the_logs_cursor_returns_only_new_lines() {
    let srv = TestServer::with(dashboard);
    let admin = login(&srv);
    let first = get(&srv, "/admin/logs", &admin).json();
    let entries = first["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "the login line: {first}");
    assert_eq!(entries[0]["message"], "admin login");
    let cursor = first["cursor"].as_u64().unwrap();
    assert_eq!(entries[0]["seq"], cursor);

    let again = get(&srv, &format!("/admin/logs?since={cursor}"), &admin).json();
    assert_eq!(again["entries"].as_array().unwrap().len(), 0);
    assert_eq!(again["cursor"], cursor);

    let r = srv.post("/task", Some(USER), &json!({"prompt": "new line"}));
    assert_eq!(r.status, 200);
    let sid = r.json()["session_id"].clone();
    srv.post("/task", Some("bad"), &json!({"prompt": "x"}));
    let mut new = Value::Null;
    assert!(eventually(Duration::from_secs(10), || {
        new = get(&srv, &format!("/admin/logs?since={cursor}"), &admin).json();
        new["entries"].as_array().unwrap().len() == 2
    }));
    let entries = new["entries"].as_array().unwrap();
    // Newest first.
    assert_eq!(entries[0]["message"], "unauthorized");
    assert_eq!(entries[1]["session_id"], sid);
    assert_eq!(entries[1]["key_id"], "user");
    assert!(entries[0]["seq"].as_u64() > entries[1]["seq"].as_u64());
    assert_eq!(new["cursor"], entries[0]["seq"]);

    let only_user = get(&srv, "/admin/logs?key_id=user", &admin).json();
    assert_eq!(only_user["entries"].as_array().unwrap().len(), 1);
    let unauth = get(&srv, "/admin/logs?key_id=_unauthorized", &admin).json();
    assert_eq!(unauth["entries"].as_array().unwrap().len(), 1);
    let limited = get(&srv, "/admin/logs?limit=1", &admin).json();
    assert_eq!(limited["entries"].as_array().unwrap().len(), 1);
    assert_eq!(limited["entries"][0]["message"], "unauthorized");

    for bad in [
        "key_id=..%2Fadmin",
        "key_id=nobody",
        "since=-1",
        "since=x",
        "limit=0",
        "limit=1001",
    ] {
        get(&srv, &format!("/admin/logs?{bad}"), &admin).error(400, "BAD_REQUEST");
    }
}

#[test]
fn the_dashboard_files_are_served_gzipped_with_an_etag() {
    let srv = TestServer::with(dashboard);
    let r = srv.get("/dashboard", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("Content-Encoding"), Some("gzip"));
    assert_eq!(&r.body[..2], &[0x1f, 0x8b], "gzip magic");
    assert_eq!(r.header("Cache-Control"), Some("no-cache"));
    assert!(r
        .header("Content-Security-Policy")
        .unwrap()
        .contains("default-src 'self'"));
    let etag = r.header("ETag").unwrap().to_string();
    // Client routes fall back to the app; the same file answers.
    for path in [
        "/dashboard/",
        "/dashboard/index.html",
        "/dashboard/x/y",
        "/dashboard/../etc",
    ] {
        let again = srv.get(path, None);
        assert_eq!(again.status, 200, "{path}");
        assert_eq!(again.header("ETag"), Some(etag.as_str()), "{path}");
    }
    let cached = request(
        srv.addr,
        "GET",
        "/dashboard",
        None,
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());
    srv.get("/dashboard/assets/missing.js", None)
        .error(404, "NOT_FOUND");
    let assets: Vec<(String, usize)> = claudeway::dashboard::files();
    let js = assets
        .iter()
        .find(|(n, _)| n.starts_with("assets/") && n.ends_with(".js"))
        .expect("a built script");
    let r = srv.get(&format!("/dashboard/{}", js.0), None);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        r.header("Cache-Control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(r.body.len(), js.1);
    // The budget: every file of the dashboard, gzipped, at most 150 KB.
    let total: usize = assets.iter().map(|(_, n)| n).sum();
    assert!(total <= 150 * 1024, "dashboard is {total} bytes gzipped");
}
