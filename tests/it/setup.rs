//! The first-run setup, driven through a pseudo-terminal (python3's `pty` module runs the
//! real binary on one and answers its questions): it writes claudeway.toml and the server
//! starts with it; `-f`, an existing config and a non-terminal stdin skip it.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::fakes::Fake;
use crate::support::*;
use crate::tunnel::Bin;

/// Runs `argv` on a pseudo-terminal in `cwd`: for each step, `["expect", text]` waits for
/// the text (60 s at most), `["send", text]` types it. Then SIGTERM, and the transcript.
const PTY_DRIVER: &str = r#"
import json, os, pty, select, signal, sys, time
spec = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.chdir(spec["cwd"])
    os.execv(spec["argv"][0], spec["argv"])
buf = b""
pos = 0
def pump(timeout):
    global buf
    r, _, _ = select.select([fd], [], [], timeout)
    if not r:
        return True
    try:
        data = os.read(fd, 4096)
    except OSError:
        return False
    buf += data
    return bool(data)
ok = True
for kind, arg in spec["steps"]:
    if kind == "send":
        os.write(fd, arg.encode())
        continue
    deadline = time.time() + 60
    want = arg.encode()
    while buf.find(want, pos) < 0:
        if time.time() > deadline or not pump(0.2):
            ok = False
            break
    if not ok:
        break
    pos = buf.find(want, pos) + len(want)
os.kill(pid, signal.SIGTERM)
status = None
deadline = time.time() + 30
while status is None and time.time() < deadline:
    pump(0.1)
    p, st = os.waitpid(pid, os.WNOHANG)
    if p:
        status = os.waitstatus_to_exitcode(st)
if status is None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
print(json.dumps({"ok": ok, "exit": status, "transcript": buf.decode("utf-8", "replace")}))
"#;

fn on_pty(dir: &Path, extra: &[&str], steps: Value) -> (bool, Option<i64>, String) {
    let fake = fake_claude();
    let mut argv = vec![
        env!("CARGO_BIN_EXE_claudeway"),
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--claude-bin",
        &fake,
        "--workdir",
        "work",
        "--log-dir",
        "logs",
        "--keys",
        "k:pty-secret-0123456789",
    ];
    argv.extend_from_slice(extra);
    let spec = json!({"cwd": dir, "argv": argv, "steps": steps});
    let out = Command::new("python3")
        .args(["-c", PTY_DRIVER, &spec.to_string()])
        .env_remove("WRAPPER_KEYS")
        .env_remove("PORT")
        .env_remove("HOST")
        .env_remove("LOG_DIR")
        .env("IS_SANDBOX", "1")
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["ok"].as_bool().unwrap(),
        v["exit"].as_i64(),
        v["transcript"].as_str().unwrap().to_string(),
    )
}

#[test]
fn first_run_setup_writes_the_config_and_the_server_uses_it() {
    let dir = TempDir::new("setup");
    let slack = Fake::start();
    let hook = slack.url("/services/first-run");
    let (ok, exit, transcript) = on_pty(
        dir.path(),
        &[],
        json!([
            ["expect", "Enable which?"],
            ["send", "nonsense\n"],
            ["expect", "unknown plugin `nonsense`"],
            ["expect", "Enable which?"],
            ["send", "1, swagger\n"],
            ["expect", "Slack webhook URL"],
            ["send", "not-a-url\n"],
            ["expect", "it must start with https://"],
            ["send", format!("{hook}\n")],
            ["expect", "Wrote claudeway.toml"],
            ["expect", " listening on "],
        ]),
    );
    assert!(ok, "{transcript}");
    assert_eq!(exit, Some(0), "{transcript}");
    let path = dir.path().join("claudeway.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let t: toml::Table = text.parse().unwrap();
    let p = &t["plugins"];
    assert_eq!(p["slack"]["enabled"].as_bool(), Some(true), "{text}");
    assert_eq!(p["slack"]["webhook_url"].as_str(), Some(hook.as_str()));
    assert_eq!(p["swagger"]["enabled"].as_bool(), Some(true));
    for off in ["telegram", "cloudflare_tunnel", "dashboard"] {
        assert_eq!(p[off]["enabled"].as_bool(), Some(false), "{text}");
    }
    // The server started with the file it had just written: Slack heard from it.
    slack.wait_text(&["*Claudeway started*"]);
}

#[test]
fn setup_is_skipped_with_force_an_existing_config_or_no_terminal() {
    // -f on a terminal.
    let dir = TempDir::new("setup");
    let (ok, _, transcript) = on_pty(dir.path(), &["-f"], json!([["expect", " listening on "]]));
    assert!(ok, "{transcript}");
    assert!(!transcript.contains("Enable which?"), "{transcript}");
    assert!(!dir.path().join("claudeway.toml").exists());

    // An existing config on a terminal.
    let dir = TempDir::new("setup");
    std::fs::write(
        dir.path().join("claudeway.toml"),
        "[server]\nmax_queue = 9\n",
    )
    .unwrap();
    let (ok, _, transcript) = on_pty(dir.path(), &[], json!([["expect", " listening on "]]));
    assert!(ok, "{transcript}");
    assert!(!transcript.contains("Enable which?"), "{transcript}");

    // --enable-plugin on a terminal.
    let dir = TempDir::new("setup");
    let (ok, _, transcript) = on_pty(
        dir.path(),
        &["--enable-plugin", "swagger"],
        json!([["expect", " listening on "]]),
    );
    assert!(ok, "{transcript}");
    assert!(!transcript.contains("Enable which?"), "{transcript}");
    assert!(!dir.path().join("claudeway.toml").exists());

    // No terminal at all.
    let dir = TempDir::new("setup");
    let mut srv = Bin::start(dir.path(), &[], &[]);
    srv.port();
    assert_eq!(srv.stop(), Some(0));
    assert!(!srv.stderr().contains("Enable which?"));
    assert!(!dir.path().join("claudeway.toml").exists());
}
