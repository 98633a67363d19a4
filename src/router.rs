//! Routing: the route table ([`ROUTES`], also what the OpenAPI test compares with
//! openapi.yaml) and one `match` on (method, path segments) to a handler. Public routes are
//! answered before authentication; every other route needs a key. A known path with the
//! wrong method is 405 with `Allow`; anything else is 404. Handlers of short requests return
//! a `Reply`; handlers that run the CLI take the exchange and hand it to a run thread.

use std::sync::Arc;

use tiny_http::Method;

use crate::app::App;
use crate::auth::{self, Also};
use crate::error::ApiError;
use crate::exchange::Exchange;
use crate::handlers;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Any API key (Bearer).
    Key,
    /// Any API key, as Bearer or as the WebSocket subprotocol `claudeway.bearer.<secret>`.
    KeyOrWsProtocol,
    /// Any API key, as Bearer or as `x-api-key` (the SDK routes, `/v1/*`).
    KeyOrApiKey,
}

/// One route: method, path pattern (`{name}` matches one segment), access.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const fn r(method: &'static str, path: &'static str, access: Access) -> Route {
    Route {
        method,
        path,
        access,
    }
}

/// Every route of the API (plugin routes are listed with their plugin).
pub const ROUTES: &[Route] = &[
    r("GET", "/health", Access::Public),
    r("POST", "/task", Access::Key),
    r("POST", "/task/stream", Access::Key),
    r("GET", "/task/ws", Access::KeyOrWsProtocol),
    r("POST", "/session/start", Access::Key),
    r("GET", "/sessions", Access::Key),
    r("POST", "/session/{id}", Access::Key),
    r("GET", "/session/{id}", Access::Key),
    r("DELETE", "/session/{id}", Access::Key),
    r("POST", "/session/{id}/stream", Access::Key),
    r("POST", "/session/{id}/approve", Access::Key),
    r("POST", "/v1/chat/completions", Access::KeyOrApiKey),
    r("POST", "/v1/messages", Access::KeyOrApiKey),
    r("GET", "/v1/models", Access::KeyOrApiKey),
    r("GET", "/v1/models/{id}", Access::KeyOrApiKey),
];

/// True if `path` matches `pattern` segment by segment.
pub fn matches(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let s: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    p.len() == s.len()
        && p.iter()
            .zip(&s)
            .all(|(p, s)| (p.starts_with('{') && !s.is_empty()) || p == s)
}

pub fn route(app: &Arc<App>, mut ex: Exchange) {
    let path = ex.path.clone();
    let method = method_name(&ex.method);

    if app.config.test_routes && path == "/__test/panic" {
        panic!("the test suite asked for a panic");
    }
    ex.shape = crate::sdk::shape_for(&ex);

    // A literal route wins over a pattern (`/session/start` is not a session id).
    let literal: Vec<&Route> = ROUTES.iter().filter(|r| r.path == path).collect();
    let known: Vec<&Route> = if literal.is_empty() {
        ROUTES.iter().filter(|r| matches(r.path, &path)).collect()
    } else {
        literal
    };
    if known.is_empty() {
        return ex.error(ApiError::not_found(format!(
            "no route {path}; see /openapi.yaml for the API"
        )));
    }
    let Some(route) = known
        .iter()
        .find(|r| r.method == method || (method == "HEAD" && r.method == "GET"))
    else {
        let allow: Vec<&str> = known.iter().map(|r| r.method).collect();
        return ex.error(ApiError::method_not_allowed(&allow.join(", ")));
    };

    let key_id = match route.access {
        Access::Public => None,
        Access::Key | Access::KeyOrWsProtocol | Access::KeyOrApiKey => {
            let also = match route.access {
                Access::KeyOrWsProtocol => Also::WebSocketProtocol,
                Access::KeyOrApiKey => Also::ApiKeyHeader,
                _ => Also::Nothing,
            };
            match auth::authenticate(app, &ex, also) {
                Ok(id) => Some(id),
                Err(e) => return ex.error(e),
            }
        }
    };
    ex.key_id = key_id.clone();
    let key_id = key_id.unwrap_or_default();

    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (route.method, segs.as_slice()) {
        ("GET", ["health"]) => ex.respond(handlers::health::get(app)),
        ("POST", ["task"]) => handlers::task::post(app, ex, key_id),
        ("POST", ["task", "stream"]) => handlers::task::post_stream(app, ex, key_id),
        ("GET", ["task", "ws"]) => handlers::task::ws(app, ex, key_id),
        ("POST", ["session", "start"]) => {
            reply(ex, |ex| handlers::session::start(app, ex, &key_id))
        }
        ("GET", ["sessions"]) => reply(ex, |ex| handlers::session::list(app, ex, &key_id)),
        ("POST", ["session", id]) => handlers::session::post(app, ex, key_id, id.to_string()),
        ("GET", ["session", id]) => reply(ex, |_| handlers::session::get(app, &key_id, id)),
        ("DELETE", ["session", id]) => {
            reply(ex, |ex| handlers::session::delete(app, ex, &key_id, id))
        }
        ("POST", ["session", id, "stream"]) => {
            handlers::session::stream(app, ex, key_id, id.to_string())
        }
        ("POST", ["session", id, "approve"]) => {
            handlers::session::approve(app, ex, key_id, id.to_string())
        }
        ("POST", ["v1", "chat", "completions"]) => handlers::sdk::chat_completions(app, ex, key_id),
        ("POST", ["v1", "messages"]) => handlers::sdk::messages(app, ex, key_id),
        ("GET", ["v1", "models"]) => ex.respond(handlers::sdk::models()),
        ("GET", ["v1", "models", id]) => reply(ex, |_| handlers::sdk::model(id)),
        _ => ex.error(ApiError::not_found(format!("no route {path}"))),
    }
}

/// Answers a short request with what `f` returns.
fn reply(mut ex: Exchange, f: impl FnOnce(&mut Exchange) -> Result<crate::reply::Reply, ApiError>) {
    match f(&mut ex) {
        Ok(r) => ex.respond(r),
        Err(e) => ex.error(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches("/session/{id}", "/session/abc"));
        assert!(!matches("/session/{id}", "/session/"));
        assert!(!matches("/session/{id}", "/session/abc/approve"));
        assert!(matches("/task", "/task"));
        assert!(!matches("/task", "/tasks"));
    }
}
