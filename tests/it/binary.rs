use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn claudeway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_claudeway"));
    c.env_remove("WRAPPER_KEYS")
        .env_remove("PORT")
        .env_remove("HOST")
        .env_remove("LOG_DIR");
    c
}

/// A running binary; killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and reads stderr up to the "listening on" line.
fn start(dir: &TempDir, extra: &[&str]) -> (Proc, Vec<String>, u16) {
    start_with_env(dir, extra, &[])
}

fn start_with_env(dir: &TempDir, extra: &[&str], env: &[(&str, &str)]) -> (Proc, Vec<String>, u16) {
    let mut child = binary_in(dir.path(), env).args(extra).spawn().unwrap();
    let mut lines = Vec::new();
    let mut r = BufReader::new(child.stderr.take().unwrap());
    let port = loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap() == 0 {
            panic!("exited early: {lines:?}");
        }
        let l = l.trim_end().to_string();
        lines.push(l.clone());
        if let Some(addr) = l.split(" listening on ").nth(1) {
            break addr.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in r.lines() {});
    (Proc(child), lines, port)
}

#[test]
fn help_and_version() {
    let out = claudeway().arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--no-permissions-bypass"));
    let out = claudeway().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("claudeway {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_start_is_one_error_line_and_exit_2() {
    let dir = TempDir::new("bin");
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--bogus"], &[], "--bogus"),
        (&["--port", "x"], &[], "--port"),
        (&["--config", "missing.toml"], &[], "missing.toml"),
        (&[], &[("WRAPPER_KEYS", "a:1,a:2")], "twice"),
        (
            &[],
            &[("NO_PERMISSIONS_BYPASS", "perhaps")],
            "NO_PERMISSIONS_BYPASS",
        ),
        (&["--enable-plugin", "nope"], &[], "valid plugins"),
    ];
    for (args, env, want) in cases {
        let out = claudeway()
            .current_dir(dir.path())
            .args(*args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(want), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    std::fs::write(dir.path().join("bad.toml"), "[server]\nport = [\n").unwrap();
    let out = claudeway()
        .current_dir(dir.path())
        .args(["--config", "bad.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("column"), "{err}");
}

#[test]
fn a_generated_key_is_printed_in_the_banner_and_works() {
    let dir = TempDir::new("bin");
    let (_p, lines, port) = start(&dir, &[]);
    let banner: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| !l.contains(" WARN ") && !l.contains(" INFO "))
        .collect();
    assert_eq!(banner[0], "No API keys configured — generated one for you:");
    let secret = banner[1];
    assert!(
        secret.starts_with("sk-")
            && secret.len() == 67
            && secret[3..].chars().all(|c| c.is_ascii_hexdigit())
    );
    assert_eq!(
        banner[2],
        format!("Use it as: curl -H \"Authorization: Bearer sk-...\" http://localhost:{port}/task")
    );
    assert_eq!(
        banner[3],
        "To set your own keys, use --keys or WRAPPER_KEYS env var."
    );
    assert_eq!(
        banner[4],
        format!(
            "Claudeway v{} listening on 127.0.0.1:{port}",
            env!("CARGO_PKG_VERSION")
        )
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let r = request(
        addr,
        "POST",
        "/task",
        Some(secret),
        &[],
        json!({"prompt": "hi"}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        dir.path().join("logs/default").is_dir(),
        "the generated key's id is `default`"
    );
}

#[test]
fn sigterm_lets_a_running_task_finish_and_log() {
    let dir = TempDir::new("bin");
    let (mut p, _lines, port) = start(&dir, &["--keys", "k:secret-for-sigterm"]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = std::thread::spawn(move || {
        request(
            addr,
            "POST",
            "/task",
            Some("secret-for-sigterm"),
            &[],
            json!({"prompt": "SLEEP 1500 finishing"})
                .to_string()
                .as_bytes(),
        )
    });
    let runs = dir.path().join("work/tasks");
    assert!(eventually(Duration::from_secs(20), || std::fs::read_dir(
        &runs
    )
    .map(|d| d.count() > 0)
    .unwrap_or(false)));
    unsafe_sigterm(p.0.id());
    let r = t.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let status = p.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let logs: String = std::fs::read_dir(dir.path().join("logs/k"))
        .unwrap()
        .flatten()
        .map(|f| std::fs::read_to_string(f.path()).unwrap())
        .collect();
    assert!(logs.contains("task completed"), "{logs}");
}

fn unsafe_sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Creates `<dir>/fake` for the fake CLI's records and a `claudeway.toml` of `config` plus the
/// sandbox rule that lets the fake write there; returns the folder (for `FAKE_CLAUDE_LOG`).
fn fake_log_dir(dir: &TempDir, config: &str) -> String {
    let fake_log = dir.path().join("fake").to_string_lossy().into_owned();
    std::fs::create_dir_all(&fake_log).unwrap();
    std::fs::write(
        dir.path().join("claudeway.toml"),
        format!("{config}[sandbox]\nwrite = [{fake_log:?}]\n"),
    )
    .unwrap();
    fake_log
}

#[test]
fn kill_9_mid_turn_loses_only_that_turn_and_the_orphan_is_swept() {
    let dir = TempDir::new("bin");
    let keys = ["--keys", "k:secret-for-kill9"];
    let fake_log = fake_log_dir(&dir, "");
    let (mut p, _, port) = start_with_env(&dir, &keys, &[("FAKE_CLAUDE_LOG", &fake_log)]);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let post = |addr, path: &str, body: serde_json::Value| {
        request(
            addr,
            "POST",
            path,
            Some("secret-for-kill9"),
            &[],
            body.to_string().as_bytes(),
        )
    };
    let id = post(addr, "/session/start", json!({})).json()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        post(
            addr,
            &format!("/session/{id}"),
            json!({"prompt": "first turn"})
        )
        .status,
        200
    );
    let path = format!("/session/{id}");
    std::thread::spawn(move || post(addr, &path, json!({"prompt": "HANG"})));
    let fake = dir.path().join("fake");
    let hung = || -> Option<serde_json::Value> {
        std::fs::read_dir(&fake).ok()?.flatten().find_map(|e| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok()?;
            (v["prompt"] == "HANG").then_some(v)
        })
    };
    assert!(eventually(Duration::from_secs(20), || hung().is_some()));
    let cli = hung().unwrap();
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    assert!(
        run_alive(&cli),
        "the CLI is in its own process group and outlives a kill -9"
    );

    let (_p, _, port) = start_with_env(&dir, &keys, &[("FAKE_CLAUDE_LOG", &fake_log)]);
    assert!(
        eventually(Duration::from_secs(10), || !run_alive(&cli)),
        "the restart swept the orphan"
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let s = request(
        addr,
        "GET",
        &format!("/session/{id}"),
        Some("secret-for-kill9"),
        &[],
        b"",
    )
    .json();
    assert_eq!(s["task_count"], 1, "only the turn in flight was lost");
    let v = post(addr, &format!("/session/{id}"), json!({"prompt": "RECALL"})).json();
    assert!(
        v["result"]
            .as_str()
            .unwrap()
            .starts_with("earlier prompts: first turn"),
        "{v}"
    );
}

#[test]
fn sigterm_stops_runs_that_outlast_the_grace_and_answers_their_clients() {
    let dir = TempDir::new("bin");
    let fake_log = fake_log_dir(&dir, "[server]\nshutdown_grace_secs = 1\n");
    let (mut p, _, port) = start_with_env(
        &dir,
        &["--keys", "k:secret-for-grace"],
        &[("FAKE_CLAUDE_LOG", &fake_log)],
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = std::thread::spawn(move || {
        request(
            addr,
            "POST",
            "/task",
            Some("secret-for-grace"),
            &[],
            json!({"prompt": "HANG"}).to_string().as_bytes(),
        )
    });
    let fake = dir.path().join("fake");
    let record = || -> Option<serde_json::Value> {
        let f = std::fs::read_dir(&fake).ok()?.flatten().next()?;
        serde_json::from_str(&std::fs::read_to_string(f.path()).ok()?).ok()
    };
    assert!(eventually(Duration::from_secs(20), || record().is_some()));
    let cli = record().unwrap();
    unsafe_sigterm(p.0.id());
    let r = t.join().unwrap();
    let msg = r.error(503, "OVERLOADED");
    assert!(msg.contains("shutting down"), "{msg}");
    assert_eq!(p.0.wait().unwrap().code(), Some(0));
    assert!(!run_alive(&cli), "no CLI process is left");
    let logs: String = std::fs::read_dir(dir.path().join("logs/k"))
        .unwrap()
        .flatten()
        .map(|f| std::fs::read_to_string(f.path()).unwrap())
        .collect();
    assert!(logs.contains("task cancelled"), "{logs}");
}
