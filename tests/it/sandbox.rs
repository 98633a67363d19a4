//! The sandbox, probed from inside a run: the fake CLI runs with the permission bypass, so
//! `BASH <cmd>` runs any command and `WRITE <path> <text>` writes anywhere it can. Each
//! confinement test has its positive control (the same probe where it is allowed, or with
//! `mode = "off"`), so it can fail.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use claudeway::sandbox::{Mode, State};
use serde_json::{json, Value};

use crate::support::*;

/// Starts a test server and checks that this machine enforces the whole sandbox.
fn enforced(f: impl FnOnce(&mut claudeway::config::Config)) -> TestServer {
    let srv = TestServer::with(f);
    let sb = &srv.app().sandbox;
    assert_eq!(
        sb.state(),
        State::Enforced,
        "this machine cannot enforce the sandbox ({:?}); these tests need Landlock ABI 6 or later and unprivileged user namespaces",
        sb.missing()
    );
    srv
}

/// The answer of a `/task` whose prompt is `prompt` (with `extra` fields).
fn task(srv: &TestServer, key: &str, prompt: &str, extra: Value) -> Value {
    let mut body = json!({ "prompt": prompt });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = srv.post("/task", Some(key), &body);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// What `sh -c <cmd>` printed inside a run of `key` (stdout, then stderr).
fn bash(srv: &TestServer, key: &str, cmd: &str) -> String {
    let v = task(srv, key, &format!("BASH {cmd} 2>&1"), json!({}));
    v["result"].as_str().unwrap().to_string()
}

/// A path outside every workdir that the test may write: /var/tmp where it exists.
fn outside(tag: &str) -> PathBuf {
    let base = Path::new("/var/tmp");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("cw-sbx-{tag}-{}", uuid::Uuid::new_v4()))
}

#[test]
fn a_write_lands_in_the_workdir_but_not_outside_it_and_with_mode_off_it_does() {
    let srv = enforced(|_| {});
    let target = outside("write");
    let v = task(
        &srv,
        USER,
        &format!("WRITE {} escaped", target.display()),
        json!({}),
    );
    assert!(!target.exists(), "the write outside the workdir landed");
    let text = v["result"].as_str().unwrap();
    assert!(text.contains("Permission denied"), "{text}");
    assert_eq!(v["success"], true, "a tool error; the run goes on");

    task(
        &srv,
        USER,
        "WRITE inside.txt stays",
        json!({"workdir": "proj"}),
    );
    let inside = srv.root().join("work/proj/inside.txt");
    assert_eq!(std::fs::read_to_string(inside).unwrap(), "stays");

    let off = TestServer::with(|c| c.sandbox.mode = Mode::Off);
    assert_eq!(off.app().sandbox.state(), State::Off);
    task(
        &off,
        USER,
        &format!("WRITE {} escaped", target.display()),
        json!({}),
    );
    let landed = std::fs::read_to_string(&target);
    let _ = std::fs::remove_file(&target);
    assert_eq!(
        landed.unwrap(),
        "escaped",
        "unconfined, the same write lands"
    );
}

#[test]
fn a_run_reads_no_secret_file_of_the_server_or_of_another_key() {
    // A config file inside a folder runs may read: the folder is split around it.
    let etc = TempDir::new("etc");
    let config = etc.path().join("claudeway.toml");
    std::fs::write(&config, format!("[keys.leak]\nsecret = \"{LEAKY}\"\n")).unwrap();
    std::fs::write(etc.path().join("hosts"), "readable-neighbour").unwrap();
    let etc_path = etc.path().to_path_buf();
    let srv = enforced(move |c| {
        c.config_file = Some(config);
        c.sandbox.extra.read.push(etc_path);
    });

    let out = bash(&srv, USER, &format!("cat {}/hosts", etc.path().display()));
    assert!(out.contains("readable-neighbour"), "control: {out}");
    let out = bash(
        &srv,
        USER,
        &format!("cat {}/claudeway.toml", etc.path().display()),
    );
    assert!(!out.contains(LEAKY), "the config file leaked: {out}");
    assert!(out.contains("Permission denied"), "{out}");

    // An audit log (there is one: the runs above wrote it).
    srv.app().audit.flush();
    let log_dir = srv.root().join("logs/user");
    let log = std::fs::read_dir(&log_dir)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("request_id"));
    let out = bash(&srv, USER, &format!("cat {}", log.display()));
    assert!(!out.contains("request_id"), "the audit log leaked: {out}");
    let out = bash(&srv, USER, &format!("ls {}", srv.root().display()));
    assert!(out.contains("Permission denied"), "{out}");

    // Another key's workdir and its CLI home.
    let r = srv.post("/session/start", Some(OTHER), &json!({}));
    let id = r.json()["session_id"].as_str().unwrap().to_string();
    let workdir = r.json()["workdir"].as_str().unwrap().to_string();
    let mine = srv.post(
        &format!("/session/{id}"),
        Some(OTHER),
        &json!({"prompt": "WRITE secret.txt other-keys-data"}),
    );
    assert_eq!(mine.status, 200);
    let out = srv.post(
        &format!("/session/{id}"),
        Some(OTHER),
        &json!({"prompt": "BASH cat secret.txt"}),
    );
    let text = out.json()["result"].as_str().unwrap().to_string();
    assert!(text.contains("other-keys-data"), "control: {text}");
    let out = bash(&srv, USER, &format!("cat {workdir}/secret.txt"));
    assert!(!out.contains("other-keys-data"), "{out}");
    let home = srv.root().join("state/homes/other");
    assert!(home.join(".claude/projects").is_dir());
    let out = bash(
        &srv,
        USER,
        &format!("cat {}/.claude/projects/*/*.jsonl", home.display()),
    );
    assert!(!out.contains("other-keys-data"), "{out}");
    assert!(
        out.contains("Permission denied") || out.contains("No such file"),
        "{out}"
    );

    // The server's process is not even visible: the run has its own PID namespace.
    let gateway = std::process::id();
    let out = bash(
        &srv,
        USER,
        &format!("cat /proc/{gateway}/environ; echo; ls /proc"),
    );
    assert!(
        !out.contains(LEAKY) && !out.contains("WRAPPER_KEYS"),
        "{out}"
    );
    let pids: Vec<&str> = out
        .split_whitespace()
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(pids.contains(&"1"), "the run is PID 1: {out}");
    assert!(!pids.contains(&gateway.to_string().as_str()), "{out}");
}

#[test]
fn connections_go_only_to_allowed_ports() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe =
        format!("bash -c 'echo hi > /dev/tcp/127.0.0.1/{port}' && echo CONNECTED || echo REFUSED");

    let srv = enforced(|_| {});
    let out = bash(&srv, USER, &probe);
    assert!(out.contains("REFUSED"), "{out}");
    assert!(listener.accept().is_err(), "nothing got through");

    // The same probe, with the port allowed for this key only.
    let srv = enforced(|c| {
        let mut own = claudeway::sandbox::KeySettings::default();
        own.extra.connect_ports.push(port);
        c.sandbox.keys.insert("user".into(), own);
    });
    let out = bash(&srv, OTHER, &probe);
    assert!(out.contains("REFUSED"), "another key: {out}");
    let out = bash(&srv, USER, &probe);
    assert!(out.contains("CONNECTED"), "control: {out}");
    assert!(eventually(Duration::from_secs(10), || listener
        .accept()
        .is_ok()));
}

#[test]
fn runs_get_their_keys_home_and_a_private_tmpdir() {
    let srv = enforced(|_| {});
    task(&srv, USER, "env check", json!({}));
    let env = &srv.fake_run("env check")["env"];
    let home = srv.root().join("state/homes/user");
    assert_eq!(env["HOME"], home.to_str().unwrap());
    let tmpdir = PathBuf::from(env["TMPDIR"].as_str().unwrap());
    assert!(tmpdir.starts_with(home.join("tmp")), "{tmpdir:?}");
    assert!(!tmpdir.exists(), "removed after the run");
    assert!(srv.app().cli_home("user").join(".claude/projects").is_dir());
}

#[test]
fn a_session_resumes_after_restart_and_old_transcripts_are_adopted() {
    let srv = enforced(|_| {});
    let start = |srv: &TestServer| -> String {
        let r = srv.post("/session/start", Some(USER), &json!({}));
        r.json()["session_id"].as_str().unwrap().to_string()
    };
    let turn = |srv: &TestServer, id: &str, prompt: &str| -> Value {
        let r = srv.post(
            &format!("/session/{id}"),
            Some(USER),
            &json!({"prompt": prompt}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    };
    let kept = start(&srv);
    turn(&srv, &kept, "remember banana");
    let moved = start(&srv);
    turn(&srv, &moved, "remember cherry");
    let root = srv.stop();

    // `moved` ran before homes were per key: its transcript is in the old shared HOME
    // (the test config's [claude.env] HOME).
    let own = root.path().join("state/homes/user/.claude");
    let old = root.path().join("home/.claude");
    let find = |dir: &Path, id: &str| -> Option<PathBuf> {
        claudeway::homes::transcripts(dir, id).into_iter().next()
    };
    let t = find(&own, &moved).unwrap();
    let slug = t.parent().unwrap().file_name().unwrap().to_owned();
    std::fs::create_dir_all(old.join("projects").join(&slug)).unwrap();
    std::fs::rename(
        &t,
        old.join("projects")
            .join(&slug)
            .join(t.file_name().unwrap()),
    )
    .unwrap();
    assert!(find(&own, &moved).is_none());

    let srv = TestServer::in_dir(root, |_| {});
    let v = turn(&srv, &kept, "RECALL");
    assert_eq!(v["result"], "earlier prompts: remember banana");
    let v = turn(&srv, &moved, "RECALL");
    assert_eq!(v["result"], "earlier prompts: remember cherry", "adopted");
    assert!(find(&own, &moved).is_some(), "now in the key's home");
    assert!(find(&srv.root().join("state/homes/other/.claude"), &moved).is_none());

    // DELETE removes the transcript from both places.
    assert_eq!(
        srv.delete(&format!("/session/{moved}"), Some(USER)).status,
        200
    );
    assert!(eventually(Duration::from_secs(20), || find(&own, &moved)
        .is_none()
        && find(&old, &moved).is_none()));
}

#[test]
fn a_workdir_may_not_hold_the_servers_own_folders() {
    // The default layout: the state dir inside the workdir.
    let srv = TestServer::with(|c| c.state_dir = c.workdir.join(".state"));
    for w in [".", ".state", ".state/homes/other", "sessions", "tasks"] {
        let msg = srv
            .post("/task", Some(USER), &json!({"prompt": "x", "workdir": w}))
            .error(400, "BAD_REQUEST");
        assert!(msg.contains("server's own folders"), "{w}: {msg}");
    }
    // A session's own workdir is fine for its key (and the admin), not for another key.
    let r = srv.post("/session/start", Some(USER), &json!({}));
    let workdir = r.json()["workdir"].as_str().unwrap().to_string();
    let body = json!({"prompt": "in my session's folder", "workdir": workdir});
    assert_eq!(srv.post("/task", Some(USER), &body).status, 200);
    assert_eq!(srv.post("/task", Some(ADMIN), &body).status, 200);
    srv.post("/task", Some(OTHER), &body)
        .error(400, "BAD_REQUEST");
    let r = srv.post("/session/start", Some(OTHER), &json!({"workdir": workdir}));
    r.error(400, "BAD_REQUEST");
}

#[test]
fn health_says_what_is_enforced() {
    let srv = enforced(|_| {});
    let h = srv.get("/health", None).json();
    assert_eq!(h["sandbox"], "enforced");
    assert!(h["landlock_abi"].as_u64().unwrap() >= 6);
    assert!(h.get("sandbox_missing").is_none());

    // A kernel with an old Landlock, simulated.
    let srv = TestServer::with(|c| c.sandbox.max_abi = Some(3));
    let h = srv.get("/health", None).json();
    assert_eq!(h["sandbox"], "partial");
    assert_eq!(h["landlock_abi"], 3);
    let missing = h["sandbox_missing"].to_string();
    assert!(
        missing.contains("TCP connect") && missing.contains("scoping"),
        "{missing}"
    );
    // Runs still work under what there is.
    task(&srv, USER, "still runs", json!({}));

    let srv = TestServer::with(|c| {
        c.sandbox.max_abi = Some(0);
        c.sandbox.pid_namespace = false;
    });
    let h = srv.get("/health", None).json();
    assert_eq!(h["sandbox"], "off");
    assert!(h["sandbox_missing"].to_string().contains("no Landlock"));
    task(&srv, USER, "unconfined", json!({}));

    let err = claudeway::server::start({
        let dir = TempDir::new("require");
        let mut c = test_config(dir.path());
        c.sandbox.mode = Mode::Require;
        c.sandbox.max_abi = Some(5);
        c
    })
    .err()
    .expect("require refuses a partial sandbox");
    assert!(err.contains("require") && err.contains("scoping"), "{err}");

    // A helper that cannot run (a binary that is not there): nothing is confined, /health
    // says so and why, runs still work, and `require` refuses to start.
    let srv = TestServer::with(|c| c.self_exe = "/nonexistent/claudeway".into());
    let h = srv.get("/health", None).json();
    assert_eq!(h["sandbox"], "off");
    assert_eq!(h["landlock_abi"], 0);
    let missing = h["sandbox_missing"].to_string();
    assert!(
        missing.contains("helper") && missing.contains("/nonexistent/claudeway"),
        "{missing}"
    );
    task(&srv, USER, "unconfined", json!({}));
    let err = claudeway::server::start({
        let dir = TempDir::new("require-helper");
        let mut c = test_config(dir.path());
        c.sandbox.mode = Mode::Require;
        c.self_exe = "/nonexistent/claudeway".into();
        c
    })
    .err()
    .expect("require refuses without a helper");
    assert!(err.contains("helper"), "{err}");
}

/// The real binary with `extra` flags, `config` as ./claudeway.toml and `env`; returns the
/// process and its stderr lines up to `until` (or its exit).
fn binary(
    dir: &TempDir,
    config: &str,
    env: &[(&str, &str)],
    extra: &[&str],
    until: &str,
) -> (std::process::Child, Vec<String>) {
    std::fs::write(dir.path().join("claudeway.toml"), config).unwrap();
    let mut child = binary_in(dir.path(), env).args(extra).spawn().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(60)) {
        let done = l.contains(until);
        lines.push(l);
        if done {
            break;
        }
    }
    // Keep draining so the server never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (child, lines)
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn without_landlock_the_server_warns_or_with_require_refuses_to_start() {
    let dir = TempDir::new("sbx-warn");
    let (child, lines) = binary(
        &dir,
        "[sandbox]\nmax_abi = 0\n",
        &[],
        &["--keys", "k:warn-secret-0123"],
        "sandbox:",
    );
    let _kill = Kill(child);
    let warn = lines.last().unwrap();
    assert!(
        warn.contains("[WARN]") && warn.contains("no Landlock"),
        "{lines:?}"
    );

    let (mut child, lines) = binary(
        &dir,
        "[sandbox]\nmode = \"require\"\nmax_abi = 0\n",
        &[],
        &["--keys", "k:warn-secret-0123"],
        "error:",
    );
    assert_eq!(child.wait().unwrap().code(), Some(2));
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("error: [sandbox] mode = \"require\""),
        "{lines:?}"
    );
    assert!(last.contains("no Landlock"), "{last}");
}

#[test]
fn the_servers_proc_environ_and_cmdline_hold_no_secret() {
    let dir = TempDir::new("sbx-environ");
    let env_secret = "env-secret-aaaa1111";
    let flag_secret = "flag-secret-bbbb2222";
    let token = "plugin-token-cccc3333";
    let file_secret = "file-secret-dddd4444";
    let (child, lines) = binary(
        &dir,
        "[keys.filekey]\nsecret_env = \"FILE_KEY_SECRET\"\n",
        &[
            ("WRAPPER_KEYS", &format!("e:{env_secret}")),
            ("TELEGRAM_BOT_TOKEN", token),
            ("FILE_KEY_SECRET", file_secret),
        ],
        &["--keys", &format!("f:{flag_secret}")],
        "listening on",
    );
    let child = Kill(child);
    let pid = child.0.id();
    let port: u16 = lines
        .last()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline);
    for s in [env_secret, flag_secret, token, file_secret] {
        assert!(!environ.contains(s), "{s} in environ: {environ}");
        assert!(!cmdline.contains(s), "{s} in cmdline: {cmdline}");
    }
    assert!(environ.contains("WRAPPER_KEYS=*"), "overwritten in place");
    assert!(cmdline.contains("--keys"));

    // The keys still work, and a run cannot see the server's process at all.
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let body = json!({"prompt": format!("BASH cat /proc/{pid}/environ /proc/{pid}/cmdline 2>&1")});
    let r = request(
        addr,
        "POST",
        "/task",
        Some(flag_secret),
        &[],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.json()["result"].as_str().unwrap().to_string();
    for s in [env_secret, flag_secret, token, file_secret] {
        assert!(!text.contains(s), "{text}");
    }
    assert!(text.contains("No such file"), "{text}");
}

/// A confined run is launched by the sandbox helper (this binary, re-executed), which then
/// executes the CLI. When that exec fails, the client gets the same clear 500 an unconfined
/// spawn failure gives, not a CLI error: the helper's failure travels back as a spawn error.
#[test]
fn a_cli_the_helper_cannot_execute_is_a_clear_500() {
    let dir = TempDir::new("sbx-noexec");
    let missing = dir.path().join("no-such-claude");
    let plain = dir.path().join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\necho hi\n").unwrap();
    for (bin, says) in [
        (&missing, "the claude CLI was not found at"),
        (&plain, "could not start the claude CLI"),
    ] {
        let srv = enforced(|c| c.claude_bin = bin.to_string_lossy().into_owned());
        let r = srv.post("/task", Some(USER), &json!({ "prompt": "hello" }));
        assert_eq!(r.status, 500, "{}", r.text());
        let v = r.json();
        assert_eq!(v["code"], "INTERNAL_ERROR", "{v}");
        let error = v["error"].as_str().unwrap();
        assert!(error.contains(says), "{error}");
        assert!(error.contains(bin.to_str().unwrap()), "{error}");
    }
    // Positive control: the fake CLI, launched the same way, answers.
    let srv = enforced(|_| {});
    let v = task(&srv, USER, "hello", json!({}));
    assert_eq!(v["success"], true, "{v}");
}

/// A read root that holds the server's own folders is split into its other entries, one rule
/// each, whatever their names' bytes: the plan reaches the helper on its stdin as bytes.
#[test]
fn a_split_root_with_a_name_that_is_not_utf8_still_confines_and_runs() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new("sbx-bytes");
    let root = dir.path().to_path_buf();
    let odd = root.join(std::ffi::OsStr::from_bytes(b"odd-\xff-name"));
    std::fs::write(&odd, "odd content").unwrap();
    // The test server's state dir and logs live in `root`: reading `root` is split.
    let srv = TestServer::in_dir(dir, |c| c.sandbox.extra.read.push(root.clone()));
    assert_eq!(srv.app().sandbox.state(), State::Enforced);
    // The folder itself may not be listed (it holds the state dir), so no glob: printf makes
    // the byte.
    let out = bash(
        &srv,
        USER,
        &format!("cat \"$(printf '{}/odd-\\377-name')\"", root.display()),
    );
    assert!(out.trim().ends_with("tool said: odd content"), "{out}");
    let out = bash(&srv, USER, &format!("ls {}/state", root.display()));
    assert!(out.contains("Permission denied"), "{out}");
}

/// The helper opens each rule's path refusing symbolic links: the server resolved them all,
/// so a link found there was put in since (another run swapping a folder for a link to a
/// protected one) and following it would widen the rule. Driven directly: the same plan with
/// a rule through a link, and with the real path.
#[test]
fn the_helper_skips_a_rule_that_leads_through_a_symbolic_link() {
    use claudeway::sandbox::{Access, Plan, Rule};
    use std::io::Write;
    let srv = enforced(|_| {});
    let sb = &srv.app().sandbox;
    let dir = TempDir::new("sbx-link");
    let real = dir.path().join("real");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::write(real.join("secret"), "behind the link").unwrap();
    std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
    let run = |rule_path: &Path| {
        let mut rules: Vec<Rule> = sb
            .read
            .iter()
            .map(|p| Rule {
                path: p.clone(),
                access: Access::Read,
            })
            .collect();
        rules.push(Rule {
            path: rule_path.to_path_buf(),
            access: Access::Read,
        });
        let plan = Plan {
            rules,
            ports: vec![],
            abi: sb.abi,
            pid_namespace: false,
            helper: env!("CARGO_BIN_EXE_claudeway").into(),
        };
        let mut child = plan
            .command(
                "/bin/sh",
                &["-c".into(), "cat \"$0\"/secret".into(), real.clone().into()],
                Path::new("/"),
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&plan.encode())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (out, err) = run(&real);
    assert_eq!(out, "behind the link", "{err}");
    let (out, err) = run(&dir.path().join("link"));
    assert_eq!(out, "");
    assert!(err.contains("Permission denied"), "{err}");
}
