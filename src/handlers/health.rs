//! `GET /health`: liveness, version, uptime and whether CLI runs are sandboxed. Public;
//! answers from memory only.

use crate::app::App;
use crate::reply::Reply;

pub fn get(app: &App) -> Reply {
    let (running, queued) = app.gate.load();
    let mut body = serde_json::json!({
        "status": if app.is_shutting_down() { "stopping" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": app.started.elapsed().as_secs(),
        "runs": { "running": running, "queued": queued },
        "sandbox": app.sandbox.state().as_str(),
        "landlock_abi": app.sandbox.abi,
    });
    let missing = app.sandbox.missing();
    if !missing.is_empty() {
        body["sandbox_missing"] = missing.into();
    }
    Reply::ok(&body)
}
