//! The server: bind, a fixed pool of worker threads pulling requests off tiny_http, each
//! request run under `catch_unwind` so a panic costs one request (answered 500) and never a
//! worker; and an orderly shutdown. Workers only authenticate, route and answer short
//! requests; anything that reads a body or waits on the CLI is handed to a run thread
//! (`spawn_run`). We bind the listening socket ourselves and give it read and write timeouts
//! (`idle_timeout`), which every accepted connection inherits: tiny_http sets none, so without
//! them an idle or stalled client held a connection thread, and a client that stopped reading
//! held a writer, for ever.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::app::App;
use crate::audit::Audit;
use crate::config::Config;
use crate::error::{ApiError, Kind};
use crate::events::Event;
use crate::exchange::Exchange;
use crate::plugins::{self, Plugins};

/// Pending connections the kernel queues before accept (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 1024;

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    plugins: Plugins,
}

/// Prepares directories, starts the audit writer, binds and starts the workers.
pub fn start(config: Config) -> Result<Running, String> {
    for (what, dir) in [
        ("workdir", &config.workdir),
        ("state dir", &config.state_dir),
        ("log dir", &config.log_dir),
    ] {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create the {what} {}: {e}; fix the path or its permissions",
                dir.display()
            )
        })?;
    }
    crate::logins::Settings::from_config(&config)?;
    let sandbox = crate::sandbox::Sandbox::new(config.sandbox.clone(), sandbox_inputs(&config))?;
    if let Some(n) = crate::os::raise_nofile_limit() {
        log::debug!("open files limit: {n}");
    }
    // Plugin settings are checked before anything binds or starts.
    let configured = plugins::configure(&config, &crate::config::process_env)?;
    let ids: Vec<&str> = config.keys.all().iter().map(|k| k.id.as_str()).collect();
    let audit = Audit::start(&config.log_dir, &ids).map_err(|e| {
        format!(
            "cannot start the audit log in {}: {e}",
            config.log_dir.display()
        )
    })?;
    let bind = format!("{}:{}", config.host, config.port);
    let taken = |e: &dyn std::fmt::Display| {
        format!("cannot listen on {bind}: {e}; is the port taken? try --port")
    };
    let listener = std::net::TcpListener::bind(&bind).map_err(|e| taken(&e))?;
    // A burst of clients (200 at once) must not overflow std's backlog of 128.
    if !crate::os::raise_listen_backlog(&listener, LISTEN_BACKLOG) {
        log::warn!("could not raise the listen backlog to {LISTEN_BACKLOG}");
    }
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let idle = config.idle_timeout;
        if !crate::os::set_socket_timeouts(listener.as_raw_fd(), idle, idle) {
            log::warn!("could not set socket timeouts; idle clients will not be disconnected");
        }
    }
    let server = tiny_http::Server::from_listener(listener, None).map_err(|e| taken(&e))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("cannot listen on {bind}: not an IP socket"))?;
    let workers_n = config.workers;
    let mut config = config;
    config.port = addr.port();
    let sessions = crate::sessions::Store::open(&config.state_dir).map_err(|e| {
        format!(
            "cannot open the session store in {}: {e}",
            config.state_dir.display()
        )
    })?;
    let app = Arc::new(App::new(config, audit, sessions, sandbox));
    let swept = app.registry.sweep_orphans();
    if swept > 0 {
        log::warn!("killed {swept} CLI process group(s) left by a previous run");
    }
    crate::handlers::session::start_janitor(&app, app.config.janitor_every);
    let plugins = plugins::start(&app, addr, configured)?;
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::with_capacity(workers_n);
    for i in 0..workers_n {
        let (server, app, stop) = (server.clone(), app.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || worker(&server, &app, &stop))
            .map_err(|e| format!("cannot start worker threads: {e}"))?;
        workers.push(handle);
    }
    app.publish(Event::ServerStarted {
        addr: addr.to_string(),
    });
    Ok(Running {
        addr,
        app,
        server,
        stop,
        workers,
        plugins,
    })
}

/// What the sandbox must know: the CLI, the ports its environment names, and the paths no
/// run may see (our HOME, the config file, the operator's CLI folder) or use as a workdir
/// (state dir, logs, the folders of task and session workdirs).
fn sandbox_inputs(config: &Config) -> crate::sandbox::Inputs {
    let var = |name: &str| {
        config
            .claude_env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
    };
    let cli_env = crate::sandbox::PORT_VARS
        .iter()
        .filter_map(|k| var(k).map(|v| (k.to_string(), v)))
        .collect();
    let mut protected: Vec<std::path::PathBuf> = Vec::new();
    protected.extend(config.config_file.clone());
    protected.extend(std::env::var_os("HOME").map(Into::into));
    protected.extend(var("HOME").map(Into::into));
    let operator = crate::homes::Homes::new(
        &config.state_dir,
        &config.claude_env,
        &crate::config::process_env,
    );
    let mut private = vec![
        config.state_dir.clone(),
        config.log_dir.clone(),
        config.workdir.join("tasks"),
        config.workdir.join("sessions"),
    ];
    private.extend(operator.operator_config_dir().map(|p| p.to_path_buf()));
    for dir in &private[2..4] {
        let _ = std::fs::create_dir_all(dir);
    }
    crate::sandbox::Inputs {
        claude_bin: config.claude_bin.clone().into(),
        helper: config.self_exe.clone(),
        cli_env,
        protected,
        private,
    }
}

fn worker(server: &tiny_http::Server, app: &Arc<App>, stop: &AtomicBool) {
    loop {
        let rq = server.recv();
        if stop.load(Ordering::SeqCst) {
            // Unblocked for shutdown; a request that raced in gets a clean refusal.
            if let Ok(rq) = rq {
                Exchange::new(rq).error(
                    ApiError::new(Kind::Overloaded, "the server is shutting down")
                        .with_header("Retry-After", "5"),
                );
            }
            return;
        }
        let Ok(rq) = rq else { continue };
        let mut ex = Exchange::new(rq);
        ex.track(&app.inflight);
        ex.metrics = Some(app.metrics.clone());
        // The exchange answers 500 by itself if the handler panics (see exchange.rs).
        let _ = catch_unwind(AssertUnwindSafe(|| crate::router::route(app, ex)));
    }
}

/// Moves `work` (which owns its exchange) to a run thread. If no thread can be started the
/// exchange is dropped inside the closure and answers 500 by itself.
pub fn spawn_run(name: &str, work: impl FnOnce() + Send + 'static) -> bool {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = catch_unwind(AssertUnwindSafe(work));
        })
        .map_err(|e| log::error!("cannot start a run thread: {e}"))
        .is_ok()
}

impl Running {
    /// Stops accepting, lets runs finish for up to `grace`, cancels the rest (their clients
    /// get an error), flushes the audit log, then stops the plugins (after the events of
    /// the last runs; at most 5 s). `hurry()` returning true cuts the grace short.
    pub fn shutdown(self, grace: Duration, hurry: &dyn Fn() -> bool) {
        log::info!(
            "shutting down: {} run(s) in flight",
            self.app.registry.len()
        );
        self.app.publish(Event::ServerStopping);
        self.app.begin_shutdown();
        self.stop.store(true, Ordering::SeqCst);
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
        self.app.gate.close();
        let until = Instant::now() + grace;
        while !self.app.registry.is_empty() && Instant::now() < until && !hurry() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !self.app.registry.is_empty() {
            log::warn!(
                "grace period over: stopping {} run(s)",
                self.app.registry.len()
            );
            self.app.registry.cancel_all();
        }
        // Every client gets its answer (or its stream's end) before we go.
        let until = Instant::now() + self.app.config.kill_grace + Duration::from_secs(5);
        while self.app.inflight.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.app.audit.flush();
        self.plugins.stop(Duration::from_secs(5));
        log::info!("stopped");
    }
}
