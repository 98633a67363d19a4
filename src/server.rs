//! The server: bind, a fixed pool of worker threads pulling requests off tiny_http, each
//! request run under `catch_unwind` so a panic costs one request (answered 500) and never a
//! worker; and an orderly shutdown. Workers only read, authenticate, route and answer short
//! requests; anything that waits on the CLI is handed to a run thread (`spawn_run`).

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
use crate::exchange::Exchange;

/// Pending connections the kernel queues before accept (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: i32 = 1024;

/// A started server.
pub struct Running {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
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
    if let Some(n) = crate::os::raise_nofile_limit() {
        log::debug!("open files limit: {n}");
    }
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
    let server = tiny_http::Server::from_listener(listener, None).map_err(|e| taken(&e))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("cannot listen on {bind}: not an IP socket"))?;
    let workers_n = config.workers;
    let app = Arc::new(App::new(config, audit));
    let swept = app.registry.sweep_orphans();
    if swept > 0 {
        log::warn!("killed {swept} CLI process group(s) left by a previous run");
    }
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
    Ok(Running {
        addr,
        app,
        server,
        stop,
        workers,
    })
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
        let ex = Exchange::new(rq);
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
    /// get an error), flushes the audit log. `hurry()` returning true cuts the grace short.
    pub fn shutdown(self, grace: Duration, hurry: &dyn Fn() -> bool) {
        log::info!(
            "shutting down: {} run(s) in flight",
            self.app.registry.len()
        );
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
            let until = Instant::now() + Duration::from_secs(5);
            while !self.app.registry.is_empty() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.app.audit.flush();
        log::info!("stopped");
    }
}
