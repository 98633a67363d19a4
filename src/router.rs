//! Routing: one `match` on (method, path segments) to a handler. Public routes first, then
//! authentication, then the routes that need a key. A known path with the wrong method is
//! 405 with `Allow`; anything else is 404. Handlers of short requests return a `Reply`;
//! handlers that run the CLI take the exchange and hand it to a run thread.

use std::sync::Arc;

use tiny_http::Method;

use crate::app::App;
use crate::auth::{self, Also};
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::handlers;

pub fn route(app: &Arc<App>, mut ex: Exchange) {
    let path = ex.path.clone();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = ex.method.clone();

    // Public routes.
    if let ["health"] = segs.as_slice() {
        return match method {
            Method::Get | Method::Head => ex.respond(handlers::health::get(app)),
            _ => ex.error(ApiError::method_not_allowed("GET")),
        };
    }

    if app.config.test_routes && segs.as_slice() == ["__test", "panic"] {
        panic!("the test suite asked for a panic");
    }

    let Some(allow) = allowed(&segs) else {
        return ex.error(ApiError::not_found(format!(
            "no route {path}; see /openapi.yaml for the API"
        )));
    };
    if !allow.contains(&method_name(&method)) {
        return ex.error(ApiError::method_not_allowed(&allow.join(", ")));
    }

    let key_id = match auth::authenticate(app, &ex, Also::Nothing) {
        Ok(id) => id,
        Err(e) => return ex.error(e),
    };
    ex.key_id = Some(key_id.clone());

    match (method, segs.as_slice()) {
        (Method::Post, ["task"]) => handlers::task::post(app, ex, key_id),
        _ => ex.error(ApiError::not_found(format!("no route {path}"))),
    }
}

/// The methods a known path accepts, or None for an unknown path.
fn allowed(segs: &[&str]) -> Option<&'static [&'static str]> {
    match segs {
        ["task"] => Some(&["POST"]),
        _ => None,
    }
}

fn method_name(m: &Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        _ => "OTHER",
    }
}
