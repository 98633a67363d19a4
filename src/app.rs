//! [`App`]: the state every request shares, built once at start and passed by `Arc`.
//! It holds only long-lived services (config, audit, admission, registry); per-request state
//! lives in the request's own thread. Locks inside these services guard small maps and are
//! never held across I/O, a child wait or a channel send.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::audit::Audit;
use crate::config::Config;
use crate::events::{Bus, Event};
use crate::runs::{Gate, Registry};
use crate::sessions::Store;

pub struct App {
    pub config: Config,
    pub audit: Audit,
    pub gate: Arc<Gate>,
    pub registry: Arc<Registry>,
    /// Plugin events.
    pub bus: Bus,
    /// Sessions (and /task runs kept for approval).
    pub sessions: Store,
    /// Open SSE and WebSocket streams.
    pub streams: crate::stream::StreamCount,
    /// Where each SDK (`/v1/*`) conversation stands.
    pub threads: crate::sdk::threads::Threads,
    pub started: Instant,
    /// Secret values to scrub from anything shown to a client or logged.
    pub secrets: Vec<String>,
    /// Variables removed from the CLI's environment.
    pub env_remove: Vec<String>,
    shutting_down: AtomicBool,
}

impl App {
    pub fn new(config: Config, audit: Audit, sessions: Store) -> App {
        let secrets = config.secret_values(&crate::config::process_env);
        let mut env_remove: Vec<String> = vec!["CLAUDECODE".into()];
        env_remove.extend(config.secret_env.iter().cloned());
        env_remove.extend(
            [
                "TELEGRAM_BOT_TOKEN",
                "SLACK_WEBHOOK_URL",
                "TUNNEL_TOKEN",
                "CLOUDFLARE_TUNNEL_TOKEN",
            ]
            .map(String::from),
        );
        let gate = Gate::new(config.max_concurrent, config.max_queue);
        let registry = Registry::new(Some(config.state_dir.join("pids")));
        let threads =
            crate::sdk::threads::Threads::open(&config.state_dir, |id| sessions.get(id).is_some());
        App {
            config,
            audit,
            gate,
            registry,
            bus: Bus::default(),
            sessions,
            streams: Default::default(),
            threads,
            started: Instant::now(),
            secrets,
            env_remove,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// The port the server listens on (the bound one, also when 0 was asked).
    pub fn port(&self) -> u16 {
        self.config.port
    }

    /// Where request workdirs may point: the base workdir, then the allow-list.
    pub fn workdir_roots(&self) -> Vec<std::path::PathBuf> {
        let mut roots = vec![self.config.workdir.clone()];
        roots.extend(self.config.workdir_allow.iter().cloned());
        roots
    }

    /// The HOME the CLI runs with (`[claude.env]` HOME, else ours): where its transcripts are.
    pub fn cli_home(&self) -> Option<std::path::PathBuf> {
        self.config
            .claude_env
            .iter()
            .find(|(k, _)| k == "HOME")
            .map(|(_, v)| v.into())
            .or_else(|| std::env::var_os("HOME").map(Into::into))
    }

    /// Replaces every known secret in `text` with `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if !s.is_empty() && out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[redacted]");
            }
        }
        out
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Publishes a plugin event (never blocks).
    pub fn publish(&self, event: Event) {
        self.bus.publish(event);
    }
}
