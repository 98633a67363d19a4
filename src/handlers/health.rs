//! `GET /health`: liveness, version and uptime. Public; answers from memory only.

use crate::app::App;
use crate::reply::Reply;

pub fn get(app: &App) -> Reply {
    let (running, queued) = app.gate.load();
    Reply::ok(&serde_json::json!({
        "status": if app.is_shutting_down() { "stopping" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": app.started.elapsed().as_secs(),
        "runs": { "running": running, "queued": queued },
    }))
}
