//! The CLI runs in flight and in the queue: `GET /admin/processes` lists them (admin key),
//! and `POST /task/{request_id}/cancel` stops them (its owner's key or the admin key; for any
//! other key the run does not exist: 404). The request id is the `X-Request-Id` of the run's
//! answer (for SSE and WebSocket it is in the response head, so a client can cancel its own
//! stream; a client may also choose it). A cancelled run's client gets 409 `CONFLICT` (an
//! `error` event on streams); a running run's process group is killed, a queued one leaves
//! the queue.

use crate::app::App;
use crate::audit::Entry;
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::reply::Reply;

/// `{"processes": [RunInfo…], "running": n, "queued": n}`, oldest run first.
pub fn list(app: &App) -> Reply {
    let (running, queued) = app.gate.load();
    Reply::ok(&serde_json::json!({
        "processes": app.registry.list(),
        "running": running,
        "queued": queued,
    }))
}

/// Cancels the runs `request_id` that `key_id` owns (the admin key: anyone's; `?key_id=`
/// narrows to one key's).
pub fn cancel(app: &App, ex: &Exchange, key_id: &str, request_id: &str) -> Result<Reply, ApiError> {
    let admin = app.config.keys.is_admin(key_id);
    // Client-chosen ids may repeat across keys: `?key_id=` narrows a cancel to one key's runs.
    let only = ex.query_param("key_id");
    let found = app.registry.cancel(request_id, |k| {
        (admin || k == key_id) && only.as_deref().is_none_or(|o| o == k)
    });
    if !found {
        return Err(ApiError::not_found(
            "no running or queued task with this request id for this key (it may have finished)",
        ));
    }
    // The cancelled run writes its own line ("task cancelled"); this one says who asked.
    app.audit.record(Entry::new(
        &ex.request_id,
        &ex.path,
        Some(key_id),
        "task cancel requested",
    ));
    Ok(Reply::ok(
        &serde_json::json!({"cancelled": true, "request_id": request_id}),
    ))
}
