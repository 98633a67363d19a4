use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use claudeway::sandbox::Mode;
use serde_json::{json, Value};

use crate::harness::{cli, cli_env, E2e, Gateway};
use crate::mock::Mock;
use crate::support::*;

/// Claudeway with the sandbox as configured by default (enforce), checked to be enforced.
fn enforced() -> Option<E2e> {
    let e = E2e::start()?;
    let h = e.srv.get("/health", None).json();
    assert_eq!(
        h["sandbox"], "enforced",
        "this machine cannot enforce the sandbox: {h}; these tests need Landlock ABI 6 or later and unprivileged user namespaces"
    );
    Some(e)
}

fn unconfined() -> Option<E2e> {
    let e = E2e::with(|c| c.sandbox.mode = Mode::Off)?;
    assert_eq!(e.srv.get("/health", None).json()["sandbox"], "off");
    Some(e)
}

/// A file path outside every workdir that the test may write: under /var/tmp where it exists.
fn outside() -> PathBuf {
    let base = Path::new("/var/tmp");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    base.join(format!("cw-e2e-{}.txt", uuid::Uuid::new_v4()))
}

/// Runs `prompt` as a /task of `key` at `addr`; returns the answer and the full text of the
/// tool result the CLI sent back to `mock` (and whether it was an error).
fn tool_task(
    addr: std::net::SocketAddr,
    mock: &Mock,
    key: &str,
    prompt: &str,
) -> (Value, String, bool) {
    let body = json!({"prompt": prompt});
    let r = request(
        addr,
        "POST",
        "/task",
        Some(key),
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["success"], true, "a tool error is no failure: {v}");
    let sent = mock.messages_for(v["session_id"].as_str().unwrap());
    assert_eq!(sent.len(), 2, "the tool call and its result: {sent:?}");
    let (text, is_error) = sent[1].tool_result().expect("a tool result");
    (v, text, is_error)
}

/// The Bash command that connects to each port and prints `<port> CONNECTED` or
/// `<port> REFUSED`.
fn connect_probe(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        "USE_TOOL_BASH for p in {}; do if bash -c \"echo hi > /dev/tcp/127.0.0.1/$p\" 2>/dev/null; then echo \"$p CONNECTED\"; else echo \"$p REFUSED\"; fi; done",
        ports.join(" ")
    )
}

#[test]
fn a_write_lands_in_the_workdir_but_not_in_var_tmp() {
    let Some(e) = enforced() else { return };
    let target = outside();
    let prompt = format!("USE_TOOL_WRITE {} escaped", target.display());
    let (v, text, is_error) = tool_task(e.srv.addr, &e.mock, USER, &prompt);
    assert!(!target.exists(), "the write outside the workdir landed");
    assert!(is_error, "{text}");
    assert!(text.contains("EACCES"), "{text}");
    assert!(
        v["result"].as_str().unwrap().starts_with("tool error: "),
        "{v}"
    );

    let body = json!({"prompt": "USE_TOOL_WRITE inside.txt stays", "workdir": "proj"});
    let v = e.srv.post("/task", Some(USER), &body).json();
    assert_eq!(v["success"], true, "{v}");
    let inside = e.srv.root().join("work/proj/inside.txt");
    assert_eq!(std::fs::read_to_string(inside).unwrap(), "stays");
}

#[test]
fn bash_reaches_the_apis_port_and_no_other() {
    let Some(e) = enforced() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let (api, other) = (e.mock.addr.port(), listener.local_addr().unwrap().port());
    let (_, text, is_error) = tool_task(e.srv.addr, &e.mock, USER, &connect_probe(&[api, other]));
    assert!(!is_error, "{text}");
    assert!(text.contains(&format!("{api} CONNECTED")), "{text}");
    assert!(text.contains(&format!("{other} REFUSED")), "{text}");
    assert!(listener.accept().is_err(), "a connection got through");
}

#[test]
fn with_mode_off_the_same_write_and_connection_go_through() {
    let Some(e) = unconfined() else { return };
    let target = outside();
    let prompt = format!("USE_TOOL_WRITE {} escaped", target.display());
    let (_, text, is_error) = tool_task(e.srv.addr, &e.mock, USER, &prompt);
    let landed = std::fs::read_to_string(&target);
    let _ = std::fs::remove_file(&target);
    assert!(!is_error, "{text}");
    assert_eq!(landed.expect("the write landed"), "escaped");

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_, text, _) = tool_task(e.srv.addr, &e.mock, USER, &connect_probe(&[port]));
    assert!(text.contains(&format!("{port} CONNECTED")), "{text}");
    assert!(eventually(Duration::from_secs(10), || listener
        .accept()
        .is_ok()));
}

#[test]
fn bash_finds_no_secret_in_the_gateways_proc_environ() {
    let Some(cli) = cli() else { return };
    let mock = Mock::start();
    let home = TempDir::new("e2e-home");
    let env = cli_env(&mock, home.path(), "environ");
    let secret = "e2e-gateway-secret-5555aaaa";
    let keys = format!("user:{secret}");
    let probe = |gw: &Gateway| -> String {
        let cmd = format!(
            "USE_TOOL_BASH cat /proc/{pid}/environ /proc/{pid}/cmdline 2>&1 | tr '\\0' '\\n'",
            pid = gw.pid()
        );
        let (_, text, _) = tool_task(gw.addr, &mock, secret, &cmd);
        assert!(!text.contains(secret), "the key leaked: {text}");
        text
    };

    // Enforced: the run has a /proc of its own, where the gateway does not exist.
    let gw = Gateway::start(&cli, &env, &keys, "");
    let h = request(gw.addr, "GET", "/health", None, &[], b"").json();
    assert_eq!(h["sandbox"], "enforced", "{h}");
    let text = probe(&gw);
    assert!(text.contains("No such file"), "{text}");
    assert!(!text.contains("WRAPPER_KEYS"), "{text}");
    drop(gw);

    // Unconfined, the same command reads the gateway's environment: the variable is there,
    // its value was overwritten at start.
    let gw = Gateway::start(&cli, &env, &keys, "[sandbox]\nmode = \"off\"\n");
    let text = probe(&gw);
    assert!(text.contains("WRAPPER_KEYS=*"), "{text}");
    assert!(text.contains("ANTHROPIC_BASE_URL="), "{text}");
}
