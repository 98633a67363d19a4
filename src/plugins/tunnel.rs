//! The Cloudflare tunnel plugin: runs `cloudflared` next to the server, supervised. Without
//! a token it opens a quick tunnel (`cloudflared tunnel --url http://127.0.0.1:PORT`) and
//! prints the public `https://….trycloudflare.com` URL when cloudflared reports it; with a
//! token it runs the named tunnel (`cloudflared tunnel run`), the token passed in the
//! `TUNNEL_TOKEN` environment variable, never in argv. cloudflared runs in its own process
//! group; if it dies it is restarted with a doubling backoff (1 s to 60 s); at shutdown its
//! group is terminated and reaped. This is the only place besides `claude/process.rs` that
//! spawns a process. Its output is logged at debug, scrubbed.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, never, select, tick, Receiver, RecvTimeoutError, Sender};
use wait_timeout::ChildExt;

use super::{Context, Plugin};
use crate::config::Env;
use crate::events::Event;
use crate::os::{self, Signal};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[allow(dead_code)] // read by config.rs; allowed here so the table checks as a whole
    enabled: Option<bool>,
    bin: Option<String>,
    tunnel_token: Option<String>,
    tunnel_token_env: Option<String>,
}

pub const INSTALL_HINT: &str = "install it from https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/downloads/ (for example `brew install cloudflared`, or the .deb/.rpm from github.com/cloudflare/cloudflared/releases), or set `bin` in [plugins.cloudflare_tunnel] to its path";

const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// After SIGTERM, how long cloudflared may take before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);

pub struct Tunnel {
    bin: PathBuf,
    token: Option<String>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Tunnel {
    pub fn from_table(table: &toml::Table, env: Env) -> Result<Tunnel, String> {
        let s: Settings = super::settings("cloudflare_tunnel", table)?;
        let token = super::secret(
            "cloudflare_tunnel",
            "tunnel_token",
            s.tunnel_token,
            s.tunnel_token_env,
            "TUNNEL_TOKEN",
            env,
        )?;
        let name = s.bin.unwrap_or_else(|| "cloudflared".into());
        let bin = crate::which::find(&name).ok_or_else(|| {
            format!(
                "cloudflare_tunnel: `{name}` was not found (or is not executable); {INSTALL_HINT}"
            )
        })?;
        Ok(Tunnel {
            bin,
            token,
            stop: None,
            thread: None,
        })
    }
}

impl Plugin for Tunnel {
    fn name(&self) -> &'static str {
        "cloudflare_tunnel"
    }

    fn start(&mut self, ctx: &Context) {
        let (stop, stopped) = bounded(0);
        let sup = Supervisor {
            ctx: ctx.clone(),
            bin: self.bin.clone(),
            token: self.token.clone(),
            target: local_url(ctx.addr),
            stopped,
        };
        match std::thread::Builder::new()
            .name("cloudflared".into())
            .spawn(move || sup.run())
        {
            Ok(t) => {
                self.stop = Some(stop);
                self.thread = Some(t);
            }
            Err(e) => log::error!("cloudflare_tunnel: cannot start its thread: {e}"),
        }
    }

    fn handle(&mut self, _ctx: &Context, _event: &Event) {}

    fn stop(&mut self, _ctx: &Context) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The URL cloudflared forwards to: the server's own address, loopback when it listens on
/// every interface.
pub fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// The quick tunnel's public URL, if `line` announces it.
pub fn quick_url(line: &str) -> Option<&str> {
    line.split(|c: char| c.is_whitespace() || c == '|')
        .find(|w| {
            w.strip_prefix("https://").is_some_and(|host| {
                let host = host.trim_end_matches('/');
                host.ends_with(".trycloudflare.com")
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            })
        })
        .map(|w| w.trim_end_matches('/'))
}

struct Supervisor {
    ctx: Context,
    bin: PathBuf,
    token: Option<String>,
    target: String,
    /// Disconnected when the plugin stops.
    stopped: Receiver<()>,
}

impl Supervisor {
    fn run(self) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            match self.spawn() {
                Err(e) => log::error!(
                    "cloudflare_tunnel: cannot start {}: {e}",
                    self.bin.display()
                ),
                Ok(child) => match self.watch(child) {
                    None => return,
                    Some(status) => log::warn!(
                        "cloudflare_tunnel: cloudflared exited ({status}); restarting in {} s",
                        if started.elapsed() > MAX_BACKOFF {
                            1
                        } else {
                            backoff.as_secs()
                        }
                    ),
                },
            }
            if started.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_secs(1);
            }
            match self.stopped.recv_timeout(backoff) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let mut cmd = Command::new(&self.bin);
        match &self.token {
            None => cmd.args(["tunnel", "--url", &self.target]),
            Some(_) => cmd.args(["tunnel", "run"]),
        };
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        for name in &self.ctx.app.env_remove {
            cmd.env_remove(name);
        }
        if let Some(t) = &self.token {
            cmd.env("TUNNEL_TOKEN", t);
        }
        let child = cmd.spawn()?;
        log::info!(
            "cloudflare_tunnel: started cloudflared (pid {}, {})",
            child.id(),
            if self.token.is_some() {
                "named tunnel".to_string()
            } else {
                format!("quick tunnel to {}", self.target)
            }
        );
        Ok(child)
    }

    /// Reads cloudflared's output until it exits (its status) or the plugin stops (None;
    /// the process group is terminated first).
    fn watch(&self, mut child: Child) -> Option<ExitStatus> {
        let pgid = child.id();
        let (tx, lines) = bounded::<String>(256);
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            let _ = std::thread::Builder::new()
                .name("cloudflared-out".into())
                .spawn(move || {
                    for line in BufReader::new(out).lines() {
                        let Ok(line) = line else { break };
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                });
        }
        drop(tx);
        let closed = never();
        let mut open = true;
        let ticks = tick(Duration::from_millis(200));
        loop {
            select! {
                recv(if open { &lines } else { &closed }) -> line => match line {
                    Ok(line) => self.on_line(&line),
                    Err(_) => open = false,
                },
                recv(self.stopped) -> _ => {
                    terminate(&mut child, pgid);
                    return None;
                }
                recv(ticks) -> _ => {
                    if let Ok(Some(status)) = child.try_wait() {
                        // What it printed last may hold the reason (or the URL).
                        let until = Instant::now() + Duration::from_millis(200);
                        while let Ok(line) = lines.recv_deadline(until) {
                            self.on_line(&line);
                        }
                        os::kill_group(pgid, Signal::Kill);
                        return Some(status);
                    }
                }
            }
        }
    }

    fn on_line(&self, line: &str) {
        let line = self.ctx.app.scrub(line);
        log::debug!("cloudflared: {line}");
        if let Some(url) = quick_url(&line) {
            eprintln!("Tunnel: {url} -> {}", self.target);
            log::info!("cloudflare_tunnel: public URL {url}");
        } else if self.token.is_some() && line.contains("Registered tunnel connection") {
            log::info!("cloudflare_tunnel: named tunnel connected");
        }
    }
}

/// SIGTERM to the group, up to the grace for cloudflared to go, SIGKILL, reap.
fn terminate(child: &mut Child, pgid: u32) {
    if matches!(child.try_wait(), Ok(None)) {
        os::kill_group(pgid, Signal::Term);
        let _ = child.wait_timeout(KILL_GRACE);
    }
    os::kill_group(pgid, Signal::Kill);
    let _ = child.wait();
    log::info!("cloudflare_tunnel: cloudflared stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_quick_tunnel_url() {
        let line = "2025-01-01T00:00:00Z INF |  https://some-words-here.trycloudflare.com                |";
        assert_eq!(
            quick_url(line),
            Some("https://some-words-here.trycloudflare.com")
        );
        assert_eq!(
            quick_url("INF Requesting new quick Tunnel on trycloudflare.com..."),
            None
        );
        assert_eq!(
            quick_url("see https://example.com/x.trycloudflare.com"),
            None
        );
        assert_eq!(quick_url("https://api.trycloudflare.com/tunnel"), None);
    }

    #[test]
    fn forwards_to_loopback_when_listening_everywhere() {
        assert_eq!(
            local_url("0.0.0.0:3000".parse().unwrap()),
            "http://127.0.0.1:3000"
        );
        assert_eq!(local_url("[::]:80".parse().unwrap()), "http://[::1]:80");
        assert_eq!(
            local_url("10.1.2.3:8080".parse().unwrap()),
            "http://10.1.2.3:8080"
        );
    }

    #[test]
    fn a_missing_cloudflared_is_one_clear_error() {
        let t: toml::Table = "bin = \"/nonexistent/cloudflared\"".parse().unwrap();
        let err = Tunnel::from_table(&t, &|_| None).err().unwrap();
        assert!(
            err.contains("was not found") && err.contains("install it"),
            "{err}"
        );
    }
}
