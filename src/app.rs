//! [`App`]: the state every request shares, built once at start and passed by `Arc`.
//! It holds only long-lived services (config, audit, admission, registry, the model list);
//! per-request state lives in the request's own thread. Locks inside these services guard
//! small maps and are never held across I/O, a child wait or a channel send.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::audit::Audit;
use crate::config::Config;
use crate::events::{Bus, Event};
use crate::models::{Models, Sources};
use crate::runs::{Gate, Registry};

pub struct App {
    pub config: Config,
    pub audit: Audit,
    pub gate: Arc<Gate>,
    pub registry: Arc<Registry>,
    /// The `/models` list cache.
    pub models: Arc<Models>,
    /// Plugin events.
    pub bus: Bus,
    pub started: Instant,
    /// Secret values to scrub from anything shown to a client or logged.
    pub secrets: Vec<String>,
    /// Variables removed from the CLI's environment.
    pub env_remove: Vec<String>,
    shutting_down: AtomicBool,
}

impl App {
    pub fn new(config: Config, audit: Audit) -> App {
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
        let sources = Sources::from_config(&config, &crate::config::process_env);
        let models = Models::new(sources, config.models_ttl);
        App {
            config,
            audit,
            gate,
            registry,
            models,
            bus: Bus::default(),
            started: Instant::now(),
            secrets,
            env_remove,
            shutting_down: AtomicBool::new(false),
        }
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
