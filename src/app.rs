//! [`App`]: the state every request shares, built once at start and passed by `Arc`.
//! It holds only long-lived services (config, audit, admission, registry, the model list);
//! per-request state lives in the request's own thread. Locks inside these services guard
//! small maps and are never held across I/O, a child wait or a channel send.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::audit::Audit;
use crate::budget::Budgets;
use crate::config::Config;
use crate::error::ApiError;
use crate::events::{Bus, Event};
use crate::homes::Homes;
use crate::logins::{Logins, Settings};
use crate::models::{Models, Sources};
use crate::runs::{Gate, Registry};
use crate::sandbox::Sandbox;
use crate::sessions::Store;
use crate::totals::Totals;

/// Plugin tokens read from our environment: removed from the CLI's environment and
/// overwritten in our own initial environment block at start.
pub const PLUGIN_SECRET_ENV: [&str; 4] = [
    "TELEGRAM_BOT_TOKEN",
    "SLACK_WEBHOOK_URL",
    "TUNNEL_TOKEN",
    "CLOUDFLARE_TUNNEL_TOKEN",
];

pub struct App {
    pub config: Config,
    pub audit: Audit,
    pub gate: Arc<Gate>,
    pub registry: Arc<Registry>,
    /// The `/models` list cache.
    pub models: Arc<Models>,
    /// Spend per key per UTC day and month (budgets).
    pub budgets: Arc<Budgets>,
    /// Per-key request rate limits.
    pub rates: crate::ratelimit::RateLimiter,
    /// The counters of `GET /metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Plugin events.
    pub bus: Bus,
    /// Sessions (and /task runs kept for approval).
    pub sessions: Store,
    /// Requests not answered yet, streams included (shutdown waits for them).
    pub inflight: Arc<std::sync::atomic::AtomicUsize>,
    /// Open SSE and WebSocket streams.
    pub streams: crate::stream::StreamCount,
    /// Where each SDK (`/v1/*`) conversation stands.
    pub threads: crate::sdk::threads::Threads,
    pub started: Instant,
    /// Running totals of the audit log (admin API, budgets, metrics).
    pub totals: Arc<Totals>,
    /// Dashboard logins (admin cookie, CSRF, failed-login throttle).
    pub logins: Logins,
    /// Secret values to scrub from anything shown to a client or logged.
    pub secrets: Vec<String>,
    /// Variables removed from the CLI's environment.
    pub env_remove: Vec<String>,
    /// How CLI runs are confined (`[sandbox]`, what the kernel offers).
    pub sandbox: Sandbox,
    /// The per-key CLI homes.
    pub homes: Homes,
    shutting_down: AtomicBool,
}

impl App {
    pub fn new(config: Config, audit: Audit, sessions: Store, sandbox: Sandbox) -> App {
        let secrets = config.secret_values(&crate::config::process_env);
        let mut env_remove: Vec<String> = vec!["CLAUDECODE".into()];
        env_remove.extend(config.secret_env.iter().cloned());
        env_remove.extend(config.plugin_secret_env());
        let homes = Homes::new(
            &config.state_dir,
            &config.claude_env,
            &crate::config::process_env,
        );
        let gate = Gate::new(config.max_concurrent, config.max_queue);
        let registry = Registry::new(Some(config.state_dir.join("pids")));
        let totals = Totals::start(&config.log_dir, &audit);
        // `server::start` has already refused a bad [plugins.dashboard] table.
        let logins = Logins::new(Settings::from_config(&config).unwrap_or_default());
        let sources = Sources::from_config(&config, &crate::config::process_env);
        let models = Models::new(sources, config.models_ttl);
        // Spend so far, from the audit log, read once here; new lines are followed in memory.
        let budgets = Budgets::start(&audit, crate::audit::read_all(&config.log_dir));
        let threads =
            crate::sdk::threads::Threads::open(&config.state_dir, |id| sessions.get(id).is_some());
        App {
            config,
            audit,
            gate,
            registry,
            models,
            budgets,
            rates: Default::default(),
            metrics: Default::default(),
            bus: Bus::default(),
            sessions,
            streams: Default::default(),
            inflight: Default::default(),
            threads,
            started: Instant::now(),
            totals,
            logins,
            secrets,
            env_remove,
            sandbox,
            homes,
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

    /// The HOME `key_id`'s CLI runs get (`<state_dir>/homes/<key_id>`): where its
    /// transcripts are.
    pub fn cli_home(&self, key_id: &str) -> std::path::PathBuf {
        self.homes.home(key_id)
    }

    /// A request's `workdir`, confined to the workdir roots (`paths::confine_dir`) and kept
    /// out of the server's own folders: it may not be or contain the state dir, the logs, the
    /// CLI homes or the folders of other runs' workdirs. Inside `<workdir>/sessions/<id>` (or
    /// `tasks/<id>`) only for the key that owns session `<id>` (or the admin).
    pub fn confine_workdir(
        &self,
        key_id: &str,
        requested: &str,
    ) -> Result<std::path::PathBuf, ApiError> {
        let roots = self.workdir_roots();
        let reserved = |dir: &std::path::Path| {
            self.sandbox.is_reserved(dir) && !self.owns_run_dir(key_id, dir)
        };
        let refuse = || {
            ApiError::bad_request(
                "`workdir` may not be or contain the server's own folders (state dir, logs, CLI homes, other runs' workdirs); pick a folder of its own inside the workdir",
            )
        };
        // Checked before confine_dir creates anything, and after (symbolic links).
        if !requested.contains('\0') {
            let lexical = roots
                .first()
                .map(|base| base.join(requested))
                .unwrap_or_default();
            if reserved(&lexical) {
                return Err(refuse());
            }
        }
        let dir = crate::paths::confine_dir(&roots, requested, "workdir")?;
        if reserved(&dir) {
            return Err(refuse());
        }
        Ok(dir)
    }

    /// True if `dir` lies inside `<workdir>/sessions/<id>` or `<workdir>/tasks/<id>` of a
    /// session `key_id` may use.
    fn owns_run_dir(&self, key_id: &str, dir: &std::path::Path) -> bool {
        let dir = crate::sandbox::resolve(dir);
        ["sessions", "tasks"].iter().any(|base| {
            let base = crate::sandbox::resolve(&self.config.workdir.join(base));
            let Ok(rest) = dir.strip_prefix(&base) else {
                return false;
            };
            let Some(id) = rest.iter().next().and_then(|c| c.to_str()) else {
                return false;
            };
            let session = self
                .sessions
                .get_for(id, key_id, self.config.keys.is_admin(key_id));
            session.is_some_and(|s| crate::sandbox::resolve(&s.workdir) == base.join(id))
        })
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
