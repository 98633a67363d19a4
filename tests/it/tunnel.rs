//! The Cloudflare tunnel plugin through the real binary, with a fake `cloudflared` (a shell
//! script that records its argv and environment, prints a quick-tunnel URL, dies the first
//! time and then stays up): URL detection, restart, the token in the environment (never in
//! argv, never in the log), the kill at shutdown, and the error when cloudflared is missing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

/// The real binary with its stderr collected line by line; killed on drop.
pub struct Bin {
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Bin {
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Bin {
        let mut child = binary_in(dir, env)
            .args(["--keys", "k:bin-secret-0123456789"])
            .args(args)
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (r, l) = (child.stderr.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Bin { child, lines }
    }

    pub fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits for a stderr line containing `part`.
    pub fn wait_line(&self, part: &str) -> String {
        let mut found = None;
        eventually(Duration::from_secs(30), || {
            found = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(part))
                .cloned();
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no line with {part:?} in:\n{}", self.stderr()))
    }

    pub fn port(&self) -> u16 {
        let l = self.wait_line(" listening on ");
        l.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// SIGTERM, then the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let mut code = None;
        let exited = eventually(Duration::from_secs(30), || match self.child.try_wait() {
            Ok(Some(s)) => {
                code = s.code();
                true
            }
            _ => false,
        });
        assert!(exited, "the server did not exit:\n{}", self.stderr());
        code
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the fake cloudflared into `dir` and returns its path.
fn fake_cloudflared(dir: &Path) -> String {
    let script = format!(
        r#"#!/bin/sh
d="{dir}"
n=$(( $(cat "$d/count" 2>/dev/null || echo 0) + 1 ))
echo $n > "$d/count"
printf '%s\n' "$*" > "$d/argv-$n"
printf '%s\n' "${{TUNNEL_TOKEN-unset}}" > "$d/token-$n"
printf '%s\n' "${{CW_IT_TUNNEL_TOKEN-unset}}" > "$d/var-$n"
echo "2025-01-01T00:00:00Z INF Requesting new quick Tunnel on trycloudflare.com..." >&2
echo "2025-01-01T00:00:00Z INF |  https://fake-$n.trycloudflare.com                  |" >&2
[ -n "$TUNNEL_TOKEN" ] && echo "2025-01-01T00:00:00Z DBG token $TUNNEL_TOKEN" >&2
if [ "$n" = 1 ]; then echo "2025-01-01T00:00:00Z ERR failing on purpose" >&2; exit 1; fi
echo $$ > "$d/pid-$n"
exec sleep 1000
"#,
        dir = dir.display()
    );
    let path = dir.join("cloudflared");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

fn read(dir: &Path, name: &str) -> String {
    let p = dir.join(name);
    assert!(
        eventually(Duration::from_secs(30), || p.exists()),
        "{name} never appeared"
    );
    let mut s = String::new();
    eventually(Duration::from_secs(5), || {
        s = std::fs::read_to_string(&p).unwrap_or_default();
        s.ends_with('\n')
    });
    s.trim_end().to_string()
}

#[test]
fn quick_tunnel_url_is_printed_and_cloudflared_restarted_and_stopped() {
    let dir = TempDir::new("tunnel");
    let bin = fake_cloudflared(dir.path());
    std::fs::write(
        dir.path().join("claudeway.toml"),
        format!("[plugins.cloudflare_tunnel]\nenabled = true\nbin = \"{bin}\"\n"),
    )
    .unwrap();
    let mut srv = Bin::start(dir.path(), &[], &[]);
    let port = srv.port();
    let target = format!("http://127.0.0.1:{port}");
    srv.wait_line(&format!(
        "Tunnel: https://fake-1.trycloudflare.com -> {target}"
    ));
    assert_eq!(read(dir.path(), "argv-1"), format!("tunnel --url {target}"));
    assert_eq!(read(dir.path(), "token-1"), "unset");
    // It died; it is started again (after a 1 s backoff) and its new URL is printed.
    srv.wait_line("cloudflared exited");
    srv.wait_line("Tunnel: https://fake-2.trycloudflare.com");
    srv.wait_line("public URL https://fake-2.trycloudflare.com");
    let pid: u32 = read(dir.path(), "pid-2").parse().unwrap();
    assert!(process_alive(pid));
    assert_eq!(srv.stop(), Some(0));
    assert!(
        eventually(Duration::from_secs(10), || !process_alive(pid)),
        "cloudflared outlived the server"
    );
    assert!(
        srv.stderr().contains("cloudflared stopped"),
        "{}",
        srv.stderr()
    );
}

#[test]
fn a_named_tunnel_gets_its_token_in_the_environment_only() {
    let dir = TempDir::new("tunnel");
    let bin = fake_cloudflared(dir.path());
    std::fs::write(
        dir.path().join("claudeway.toml"),
        format!("[plugins.cloudflare_tunnel]\nenabled = true\nbin = \"{bin}\"\ntunnel_token_env = \"CW_IT_TUNNEL_TOKEN\"\n"),
    )
    .unwrap();
    let token = "tunnel-token-secret-0123456789";
    let mut srv = Bin::start(
        dir.path(),
        &["--log-level", "debug"],
        &[("CW_IT_TUNNEL_TOKEN", token)],
    );
    srv.port();
    assert_eq!(read(dir.path(), "argv-1"), "tunnel run");
    assert_eq!(read(dir.path(), "token-1"), token);
    assert_eq!(
        read(dir.path(), "var-1"),
        "unset",
        "our own variable is not passed on"
    );
    srv.wait_line("cloudflared: 2025-01-01T00:00:00Z DBG token [redacted]");
    let pid: u32 = read(dir.path(), "pid-2").parse().unwrap();
    assert_eq!(srv.stop(), Some(0));
    assert!(!srv.stderr().contains(token), "the token was logged");
    assert!(eventually(Duration::from_secs(10), || !process_alive(pid)));
}

#[test]
fn a_missing_cloudflared_is_one_clear_start_error() {
    let dir = TempDir::new("tunnel");
    let empty = dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_claudeway"))
        .current_dir(dir.path())
        .env_remove("WRAPPER_KEYS")
        .env("PATH", &empty)
        .args([
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--claude-bin",
            &fake_claude(),
        ])
        .args([
            "--log-dir",
            "logs",
            "--workdir",
            "work",
            "--enable-plugin",
            "cloudflare_tunnel",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: cloudflare_tunnel: `cloudflared` was not found")
            && last.contains("install it from https://developers.cloudflare.com"),
        "{err}"
    );
    assert!(!err.contains("listening on"), "{err}");
}
