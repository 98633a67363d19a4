//! Plugins that react to [`Event`]s: Slack, Telegram (with approval buttons) and the
//! Cloudflare tunnel. [`configure`] reads and checks each enabled plugin's `[plugins.NAME]`
//! table before the server binds (a bad table stops the start with one clear line);
//! [`start`] gives each plugin its own thread, fed by its own bounded queue on the bus;
//! [`Plugins::stop`] lets them finish their queued events and release what they hold.
//! A plugin never runs on a pool worker and never makes a request wait: publishing only
//! offers an event to a queue. This module never logs a secret: every text that came from
//! outside goes through `App::scrub` first. (`dashboard` and `swagger` are route plugins,
//! served by their own modules; they have no thread here.)

pub mod setup;
pub mod slack;
pub mod telegram;
pub mod tunnel;

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{after, bounded, never, select, Receiver, Sender};
use serde_json::Value;

use crate::app::App;
use crate::config::{Config, Env};
use crate::events::Event;

/// A plugin. Every method runs on the plugin's own thread.
pub trait Plugin: Send {
    /// The name of its `[plugins.NAME]` table.
    fn name(&self) -> &'static str;
    /// Once, before the first event: start helper threads or processes here.
    fn start(&mut self, ctx: &Context);
    /// One event. May block for a bounded time (network); only this plugin's queue waits.
    fn handle(&mut self, ctx: &Context, event: &Event);
    /// When [`Plugin::tick`] should run next (an expiry), if ever.
    fn wake_at(&self) -> Option<Instant> {
        None
    }
    fn tick(&mut self, _ctx: &Context) {}
    /// Once, at shutdown, after the events already queued: stop threads and processes.
    fn stop(&mut self, _ctx: &Context) {}
}

/// What every plugin method gets: the shared state, the address the server listens on,
/// and whether the server is stopping (then deliveries are tried once, without retries).
#[derive(Clone)]
pub struct Context {
    pub app: Arc<App>,
    pub addr: SocketAddr,
    stopping: Arc<AtomicBool>,
}

impl Context {
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Sleeps for `d` unless the server starts stopping; false if it did.
    pub fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.is_stopping() {
                return false;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        !self.is_stopping()
    }
}

/// A plugin to start: the checked plugin and the size of its event queue.
pub struct Configured {
    plugin: Box<dyn Plugin>,
    queue: usize,
}

/// Default size of a plugin's event queue; a full queue drops (and counts) events.
pub const QUEUE: usize = 256;

/// Builds every enabled plugin that has a thread from its table, checking it: a missing or
/// malformed setting, an unset variable or a missing program is an error naming the
/// plugin and the setting.
pub fn configure(config: &Config, env: Env) -> Result<Vec<Configured>, String> {
    let mut out = Vec::new();
    for (name, table) in &config.plugins {
        let (plugin, queue): (Box<dyn Plugin>, usize) = match name.as_str() {
            "slack" => {
                let s = slack::Slack::from_table(table, env)?;
                let q = s.queue;
                (Box::new(s), q)
            }
            "telegram" => {
                let t = telegram::Telegram::from_table(table, env)?;
                let q = t.queue;
                (Box::new(t), q)
            }
            "cloudflare_tunnel" => (Box::new(tunnel::Tunnel::from_table(table, env)?), 16),
            _ => continue,
        };
        out.push(Configured { plugin, queue });
    }
    Ok(out)
}

/// The running plugins.
#[derive(Default)]
pub struct Plugins {
    running: Vec<Running>,
    stopping: Arc<AtomicBool>,
}

struct Running {
    name: &'static str,
    stop: Sender<()>,
    /// Disconnected when the thread has ended (its sender is dropped on any exit).
    done: Receiver<()>,
    thread: JoinHandle<()>,
}

/// Subscribes every configured plugin to the bus and starts its thread.
pub fn start(
    app: &Arc<App>,
    addr: SocketAddr,
    configured: Vec<Configured>,
) -> Result<Plugins, String> {
    let mut plugins = Plugins::default();
    for Configured { plugin, queue } in configured {
        let name = plugin.name();
        let events = app.bus.subscribe(name, queue);
        let (stop, stop_rx) = bounded::<()>(0);
        let (done_tx, done) = bounded::<()>(0);
        let ctx = Context {
            app: app.clone(),
            addr,
            stopping: plugins.stopping.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("plugin-{name}"))
            .spawn(move || {
                let _done = done_tx;
                run(plugin, &ctx, &events, &stop_rx);
            })
            .map_err(|e| format!("cannot start the {name} plugin's thread: {e}"))?;
        log::info!("plugin {name} started");
        plugins.running.push(Running {
            name,
            stop,
            done,
            thread,
        });
    }
    Ok(plugins)
}

fn run(mut plugin: Box<dyn Plugin>, ctx: &Context, events: &Receiver<Event>, stop: &Receiver<()>) {
    let name = plugin.name();
    guarded(name, "start", || plugin.start(ctx));
    loop {
        let tick = match plugin.wake_at() {
            Some(at) => after(at.saturating_duration_since(Instant::now())),
            None => never(),
        };
        select! {
            recv(events) -> ev => match ev {
                Ok(ev) => guarded(name, "event", || plugin.handle(ctx, &ev)),
                Err(_) => break,
            },
            recv(stop) -> _ => break,
            recv(tick) -> _ => guarded(name, "tick", || plugin.tick(ctx)),
        }
    }
    while let Ok(ev) = events.try_recv() {
        guarded(name, "event", || plugin.handle(ctx, &ev));
    }
    guarded(name, "stop", || plugin.stop(ctx));
}

/// A panic in a plugin costs that call, never the plugin's thread (or the server).
fn guarded(name: &str, what: &str, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        log::error!("plugin {name} panicked handling {what}");
    }
}

impl Plugins {
    pub fn names(&self) -> Vec<&'static str> {
        self.running.iter().map(|r| r.name).collect()
    }

    /// Lets every plugin handle what is queued (deliveries are tried once now) and stop;
    /// waits at most `limit` in all, then leaves the stragglers behind.
    pub fn stop(self, limit: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        let until = Instant::now() + limit;
        let mut threads = Vec::new();
        for r in self.running {
            drop(r.stop);
            threads.push((r.name, r.done, r.thread));
        }
        for (name, done, thread) in threads {
            // Disconnected = the thread is over; a timeout means it is still busy.
            match done.recv_deadline(until) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    log::warn!("plugin {name} did not stop in time; leaving it behind");
                }
                _ => {
                    let _ = thread.join();
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Settings shared by the plugins.

/// Every event kind, as `events = [...]` filters name them.
pub const KINDS: [&str; 9] = [
    "server_started",
    "server_stopping",
    "task_started",
    "task_finished",
    "session_started",
    "session_deleted",
    "permission_denied",
    "approval_granted",
    "approval_denied",
];

pub fn kind(event: &Event) -> &'static str {
    match event {
        Event::ServerStarted { .. } => "server_started",
        Event::ServerStopping => "server_stopping",
        Event::TaskStarted { .. } => "task_started",
        Event::TaskFinished { .. } => "task_finished",
        Event::SessionStarted { .. } => "session_started",
        Event::SessionDeleted { .. } => "session_deleted",
        Event::PermissionDenied { .. } => "permission_denied",
        Event::ApprovalGranted { .. } => "approval_granted",
        Event::ApprovalDenied { .. } => "approval_denied",
    }
}

/// The `events` filter: absent = every kind but `task_started` (one message per run is
/// enough); otherwise exactly the kinds named.
pub fn event_filter(
    plugin: &str,
    events: Option<Vec<String>>,
) -> Result<Vec<&'static str>, String> {
    let Some(list) = events else {
        return Ok(KINDS.into_iter().filter(|k| *k != "task_started").collect());
    };
    list.iter()
        .map(|e| {
            KINDS.into_iter().find(|k| k == e).ok_or_else(|| {
                format!(
                    "[plugins.{plugin}] events: unknown event `{e}`; known: {}",
                    KINDS.join(", ")
                )
            })
        })
        .collect()
}

/// A secret setting, from the first of: `key` in the table, the variable named by
/// `key_env`, the documented default variable. Only one of the first two may be set.
pub fn secret(
    plugin: &str,
    key: &str,
    value: Option<String>,
    var: Option<String>,
    default_var: &str,
    env: Env,
) -> Result<Option<String>, String> {
    match (value, var) {
        (Some(_), Some(_)) => Err(format!(
            "[plugins.{plugin}] set either {key} or {key}_env, not both"
        )),
        (Some(v), None) if v.trim().is_empty() => Err(format!("[plugins.{plugin}] {key} is empty")),
        (Some(v), None) => Ok(Some(v.trim().to_string())),
        (None, Some(var)) => match env(&var).filter(|v| !v.trim().is_empty()) {
            Some(v) => Ok(Some(v.trim().to_string())),
            None => Err(format!(
                "[plugins.{plugin}] {key}_env = \"{var}\" but {var} is not set or empty"
            )),
        },
        (None, None) => Ok(env(default_var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())),
    }
}

/// A number setting with its default and its range.
pub fn number(
    plugin: &str,
    key: &str,
    v: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, String> {
    match v {
        None => Ok(default),
        Some(n) if (min..=max).contains(&n) => Ok(n),
        Some(n) => Err(format!(
            "[plugins.{plugin}] {key} must be from {min} to {max}, not {n}"
        )),
    }
}

/// Reads a plugin table into its settings struct (unknown keys are errors).
pub fn settings<T: serde::de::DeserializeOwned>(
    plugin: &str,
    table: &toml::Table,
) -> Result<T, String> {
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| {
            let msg = e.to_string();
            format!(
                "[plugins.{plugin}] {}",
                msg.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        })
}

// ---------------------------------------------------------------------------------------
// What an event says, before a plugin renders it in its own markup.

/// An event as a short message: a title line, facts (label, value) and an optional body
/// (an answer's first lines, denied tools), plain text, not yet escaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub icon: &'static str,
    pub title: String,
    pub facts: Vec<(&'static str, String)>,
    pub body: Option<String>,
}

/// Lines and characters of a result shown in a message.
pub const EXCERPT_LINES: usize = 8;
pub const EXCERPT_CHARS: usize = 400;

pub fn describe(event: &Event) -> Note {
    let note = |icon, title: &str, facts: Vec<(&'static str, String)>| Note {
        icon,
        title: title.to_string(),
        facts,
        body: None,
    };
    match event {
        Event::ServerStarted { addr } => {
            note("🚀", "Claudeway started", vec![("address", addr.clone())])
        }
        Event::ServerStopping => note("🛑", "Claudeway is stopping", vec![]),
        Event::TaskStarted {
            key_id,
            session_id,
            route,
            model,
        } => note(
            "⏳",
            "Task started",
            vec![
                ("key", key_id.clone()),
                ("session", session_id.clone()),
                ("model", model.clone()),
                ("route", route.clone()),
            ],
        ),
        Event::TaskFinished {
            key_id,
            session_id,
            route,
            model,
            outcome,
            success,
            duration_ms,
            tokens,
            cost_usd,
            excerpt: text,
        } => {
            let icon = match (*success, outcome.as_str()) {
                (true, _) => "✅",
                (false, "task timed out" | "task stalled") => "⏱",
                (false, _) => "❌",
            };
            let mut facts = vec![
                ("key", key_id.clone()),
                ("session", session_id.clone()),
                ("model", model.clone()),
                ("route", route.clone()),
                ("success", if *success { "yes" } else { "no" }.to_string()),
                ("duration", format!("{:.1} s", *duration_ms as f64 / 1000.0)),
            ];
            if let Some(c) = cost_usd {
                facts.push(("cost", format!("${c:.4}")));
            }
            if let Some(t) = tokens {
                facts.push(("tokens", format!("{} in / {} out", t.input, t.output)));
            }
            Note {
                icon,
                title: capitalize(outcome),
                facts,
                body: Some(excerpt(text, EXCERPT_LINES, EXCERPT_CHARS)).filter(|b| !b.is_empty()),
            }
        }
        Event::SessionStarted {
            key_id,
            session_id,
            model,
        } => note(
            "🆕",
            "Session started",
            vec![
                ("key", key_id.clone()),
                ("session", session_id.clone()),
                ("model", model.clone()),
            ],
        ),
        Event::SessionDeleted { key_id, session_id } => note(
            "🗑",
            "Session deleted",
            vec![("key", key_id.clone()), ("session", session_id.clone())],
        ),
        Event::PermissionDenied {
            key_id,
            session_id,
            denials,
        } => {
            let lines: Vec<String> = denials
                .iter()
                .map(|d| format!("{}: {}", d.tool_name, tool_input_summary(&d.tool_input)))
                .collect();
            Note {
                body: Some(excerpt(&lines.join("\n"), EXCERPT_LINES, EXCERPT_CHARS)),
                ..note(
                    "🔒",
                    "Permission needed",
                    vec![("key", key_id.clone()), ("session", session_id.clone())],
                )
            }
        }
        Event::ApprovalGranted {
            key_id,
            session_id,
            tool_use_ids,
        } => note(
            "🔓",
            "Approval granted",
            vec![
                ("key", key_id.clone()),
                ("session", session_id.clone()),
                ("tools", tool_use_ids.join(", ")),
            ],
        ),
        Event::ApprovalDenied { key_id, session_id } => note(
            "⛔",
            "Approval denied",
            vec![("key", key_id.clone()), ("session", session_id.clone())],
        ),
    }
}

/// What a denied tool wanted to do, in one line: the file, the command, or the input.
fn tool_input_summary(input: &Value) -> String {
    let s = ["file_path", "command", "path", "url", "pattern"]
        .iter()
        .find_map(|k| input.get(k).and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| input.to_string());
    excerpt(&s.replace('\n', " "), 1, 200)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The first `max_lines` lines of `text`, at most `max_chars` characters (never cut inside
/// a character), with `…` when something was left out.
pub fn excerpt(text: &str, max_lines: usize, max_chars: usize) -> String {
    let text = text.trim_end();
    let mut out = String::new();
    let mut cut = false;
    for (i, line) in text.lines().enumerate() {
        if i == max_lines {
            cut = true;
            break;
        }
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line);
    }
    if out.chars().count() > max_chars {
        out = out.chars().take(max_chars).collect();
        cut = true;
    }
    if cut {
        out = out.trim_end().to_string();
        out.push('…');
    }
    out
}

// ---------------------------------------------------------------------------------------
// Delivering over HTTP(S) with bounded retries.

/// How hard to try one delivery.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// Timeout of one HTTP request, seconds.
    pub timeout_secs: u64,
    /// Retries after the first try, on 429, 5xx and network errors.
    pub max_retries: u32,
    /// First wait between tries; doubled each time, at most 30 s.
    pub backoff: Duration,
}

/// A delivery that did not succeed: the HTTP status if there was one, and what was said.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub status: Option<u16>,
    /// The response body or the network error (not scrubbed).
    pub detail: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "HTTP {s}: {}", excerpt(&self.detail, 1, 200)),
            None => write!(f, "{}", self.detail),
        }
    }
}

const MAX_WAIT: Duration = Duration::from_secs(30);

/// POSTs `body` as JSON to `url` (redirects are not followed); a 2xx answer's body is
/// returned. 429, 5xx and network errors are retried up to `max_retries` times, waiting
/// `Retry-After` (a header, or Telegram's `parameters.retry_after`) or the doubling backoff,
/// at most 30 s; while the server stops, there is only one try. Other statuses fail at once.
pub fn post_json(ctx: &Context, url: &str, body: &Value, d: &Delivery) -> Result<String, Failed> {
    let mut wait = d.backoff;
    let mut attempt = 0;
    loop {
        let sent = minreq::post(url)
            .with_header("Content-Type", "application/json")
            .with_body(body.to_string())
            .with_timeout(d.timeout_secs)
            // A redirect would carry the body (and a URL with a token) elsewhere.
            .with_follow_redirects(false)
            .send();
        let (failed, retry_after) = match sent {
            Ok(r) if (200..300).contains(&r.status_code) => {
                return Ok(String::from_utf8_lossy(r.as_bytes()).into_owned())
            }
            Ok(r) => {
                let detail = String::from_utf8_lossy(r.as_bytes()).into_owned();
                let status = r.status_code as u16;
                let failed = Failed {
                    status: Some(status),
                    detail,
                };
                if status != 429 && status < 500 {
                    return Err(failed);
                }
                (failed, retry_after(&r))
            }
            Err(e) => (
                Failed {
                    status: None,
                    detail: e.to_string(),
                },
                None,
            ),
        };
        if attempt >= d.max_retries || ctx.is_stopping() {
            return Err(failed);
        }
        attempt += 1;
        let pause = retry_after.unwrap_or(wait).min(MAX_WAIT);
        log::debug!(
            "delivery failed ({}); try {} in {} ms",
            ctx.app.scrub(&failed.to_string()),
            attempt + 1,
            pause.as_millis()
        );
        if !ctx.pause(pause) {
            return Err(failed);
        }
        wait = (wait * 2).min(MAX_WAIT);
    }
}

fn retry_after(r: &minreq::Response) -> Option<Duration> {
    let secs = r
        .headers
        .get("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or_else(|| {
            serde_json::from_slice::<Value>(r.as_bytes())
                .ok()?
                .pointer("/parameters/retry_after")?
                .as_u64()
        })?;
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claude::{Denial, Tokens};

    #[test]
    fn excerpt_counts_characters_and_lines() {
        assert_eq!(excerpt("a\nb\nc", 2, 100), "a\nb…");
        assert_eq!(excerpt("a\nb\n", 2, 100), "a\nb");
        let multi = "é😀".repeat(300);
        let e = excerpt(&multi, 5, 101);
        assert_eq!(e.chars().count(), 102);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt("", 3, 3), "");
    }

    #[test]
    fn notes_carry_the_facts() {
        let n = describe(&Event::TaskFinished {
            key_id: "ci".into(),
            session_id: "s1".into(),
            route: "/task".into(),
            model: "sonnet".into(),
            outcome: "task completed".into(),
            success: true,
            duration_ms: 5120,
            tokens: Some(Tokens {
                input: 10,
                output: 2,
                ..Tokens::default()
            }),
            cost_usd: Some(0.0589),
            excerpt: "hello\nworld".into(),
        });
        assert_eq!(n.title, "Task completed");
        assert!(n.facts.contains(&("duration", "5.1 s".into())));
        assert!(n.facts.contains(&("cost", "$0.0589".into())));
        assert!(n.facts.contains(&("tokens", "10 in / 2 out".into())));
        assert_eq!(n.body.as_deref(), Some("hello\nworld"));

        let n = describe(&Event::PermissionDenied {
            key_id: "ci".into(),
            session_id: "s1".into(),
            denials: vec![Denial {
                tool_name: "Bash".into(),
                tool_use_id: "t1".into(),
                tool_input: serde_json::json!({"command": "rm -rf x", "description": "d"}),
            }],
        });
        assert_eq!(n.body.as_deref(), Some("Bash: rm -rf x"));
        for k in KINDS {
            assert!(KINDS.contains(&k));
        }
    }

    #[test]
    fn filters_and_secrets() {
        let all = event_filter("slack", None).unwrap();
        assert!(!all.contains(&"task_started") && all.contains(&"task_finished"));
        let err = event_filter("slack", Some(vec!["task_done".into()])).unwrap_err();
        assert!(err.contains("unknown event `task_done`"), "{err}");

        let env = |k: &str| (k == "HOOK").then(|| "https://h".to_string());
        let s = |v: Option<&str>, var: Option<&str>| {
            secret(
                "slack",
                "webhook_url",
                v.map(String::from),
                var.map(String::from),
                "SLACK_WEBHOOK_URL",
                &env,
            )
        };
        assert_eq!(s(Some("x"), None).unwrap().as_deref(), Some("x"));
        assert_eq!(s(None, Some("HOOK")).unwrap().as_deref(), Some("https://h"));
        assert!(s(None, Some("NOPE"))
            .unwrap_err()
            .contains("NOPE is not set"));
        assert!(s(Some("x"), Some("HOOK")).unwrap_err().contains("not both"));
        assert_eq!(s(None, None).unwrap(), None);
    }
}
