//! `GET /metrics`: the Prometheus text exposition of `metrics.rs`. Admin key as Bearer, or
//! public with `[server] metrics_public = true`. Answers from memory only.

use crate::app::App;
use crate::reply::Reply;

pub fn get(app: &App) -> Reply {
    Reply::bytes(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        app.metrics.render(app).into_bytes(),
    )
}
