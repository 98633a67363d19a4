//! Routing: the route table ([`ROUTES`], also what the OpenAPI test compares with
//! openapi.yaml) and one `match` on (method, path segments) to a handler. Public routes are
//! answered before authentication; every other route needs a key (admin routes the admin key).
//! A known path with the wrong method is 405 with `Allow`; anything else is 404. Routes that
//! run the CLI have the key's rate limit and budget checked here, on the worker. Handlers of
//! short requests return a `Reply`; handlers that read a body or run the CLI take the exchange
//! and hand it to a run thread.

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
    /// No authentication, but only when the `dashboard` plugin is on (its files, `/admin/login`).
    Dashboard,
    /// The admin cookie from `/admin/login`, plus the CSRF header on anything but GET/HEAD;
    /// only when the `dashboard` plugin is on.
    Admin,
    /// The admin key as Bearer, or the admin cookie (when the dashboard is on); another key
    /// gets 403.
    AdminKey,
    /// `/metrics`: public with `[server] metrics_public = true`, else as `AdminKey`.
    Metrics,
    /// Any API key, as Bearer or as `x-api-key` (the SDK routes, `/v1/*`).
    KeyOrApiKey,
}

impl Access {
    /// False for routes of a plugin that is off: they do not exist (404).
    pub fn exists(self, app: &App) -> bool {
        match self {
            Access::Public
            | Access::Key
            | Access::KeyOrWsProtocol
            | Access::KeyOrApiKey
            | Access::AdminKey
            | Access::Metrics => true,
            Access::Dashboard | Access::Admin => app.config.plugin_enabled("dashboard"),
        }
    }
}

/// One route: method, path pattern (`{name}` matches one segment, a last `{*name}` the rest,
/// empty included), access.
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
    // The dashboard plugin: its files and the admin API.
    r("GET", "/dashboard/{*path}", Access::Dashboard),
    r("POST", "/admin/login", Access::Dashboard),
    r("POST", "/admin/logout", Access::Admin),
    r("GET", "/admin/session", Access::Admin),
    r("GET", "/admin/overview", Access::Admin),
    r("GET", "/admin/logs", Access::Admin),
    r("GET", "/admin/keys", Access::Admin),
    r("GET", "/admin/costs", Access::Admin),
    r("GET", "/admin/sessions", Access::Admin),
    r("GET", "/admin/sessions/{id}", Access::Admin),
    r("DELETE", "/admin/sessions/{id}", Access::Admin),
    r("GET", "/models", Access::Key),
    r("GET", "/openapi.yaml", Access::Public),
    // The swagger plugin: 404 unless enabled.
    r("GET", "/docs", Access::Public),
    r("GET", "/docs/{file}", Access::Public),
    r("POST", "/task/{id}/cancel", Access::Key),
    r("GET", "/admin/processes", Access::AdminKey),
    r("GET", "/metrics", Access::Metrics),
    r("POST", "/v1/chat/completions", Access::KeyOrApiKey),
    r("POST", "/v1/messages", Access::KeyOrApiKey),
    r("GET", "/v1/models", Access::KeyOrApiKey),
    r("GET", "/v1/models/{id}", Access::KeyOrApiKey),
];

/// Routes that run the CLI: the key's rate limit and budget are checked before they go on.
fn runs_cli(route: &Route) -> bool {
    matches!(
        (route.method, route.path),
        ("POST", "/task")
            | ("POST", "/task/stream")
            | ("GET", "/task/ws")
            | ("POST", "/session/{id}")
            | ("POST", "/session/{id}/stream")
            | ("POST", "/session/{id}/approve")
            | ("POST", "/v1/chat/completions")
            | ("POST", "/v1/messages")
    )
}

/// True if `path` matches `pattern` segment by segment.
pub fn matches(pattern: &str, path: &str) -> bool {
    let mut p: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    let s: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rest = p.last().is_some_and(|l| l.starts_with("{*"));
    if rest {
        p.pop();
    }
    (p.len() == s.len() || (rest && s.len() > p.len()))
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

    // A literal route wins over a pattern (`/session/start` is not a session id); routes of
    // a plugin that is off do not exist.
    let live = |r: &&Route| r.access.exists(app);
    let literal: Vec<&Route> = ROUTES
        .iter()
        .filter(|r| r.path == path)
        .filter(live)
        .collect();
    let known: Vec<&Route> = if literal.is_empty() {
        ROUTES
            .iter()
            .filter(|r| matches(r.path, &path))
            .filter(live)
            .collect()
    } else {
        literal
    };
    if known.is_empty() {
        return ex.error(ApiError::not_found(format!(
            "no route {path}; see /openapi.yaml for the API"
        )));
    }
    ex.route = known[0].path;
    let Some(route) = known
        .iter()
        .find(|r| r.method == method || (method == "HEAD" && r.method == "GET"))
    else {
        let allow: Vec<&str> = known.iter().map(|r| r.method).collect();
        return ex.error(ApiError::method_not_allowed(&allow.join(", ")));
    };

    ex.route = route.path;
    let access = match route.access {
        Access::Metrics if app.config.metrics_public => Access::Public,
        Access::Metrics => Access::AdminKey,
        a => a,
    };
    let key_id = match access {
        Access::Public | Access::Dashboard => None,
        Access::Admin => match handlers::admin::authorize(app, &ex) {
            Ok(()) => Some(app.config.keys.admin().id.clone()),
            Err(e) => return ex.error(e),
        },
        // The admin cookie also opens the admin-key routes, so the dashboard can use them.
        Access::AdminKey
            if app.config.plugin_enabled("dashboard")
                && ex.header("Authorization").is_none()
                && handlers::admin::authorize(app, &ex).is_ok() =>
        {
            Some(app.config.keys.admin().id.clone())
        }
        Access::Key
        | Access::KeyOrWsProtocol
        | Access::KeyOrApiKey
        | Access::AdminKey
        | Access::Metrics => {
            let also = match access {
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
    if access == Access::AdminKey && !app.config.keys.is_admin(&key_id) {
        return ex.error(ApiError::new(
            crate::error::Kind::Forbidden,
            "this route needs the admin key (the first configured key)",
        ));
    }
    if runs_cli(route) {
        if let Err(e) = crate::limits::check_request(app, &mut ex, &key_id) {
            return ex.error(e);
        }
    }

    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (route.method, segs.as_slice()) {
        ("GET", ["health"]) => ex.respond(handlers::health::get(app)),
        ("POST", ["task"]) => handlers::task::post(app, ex, key_id),
        ("POST", ["task", "stream"]) => handlers::task::post_stream(app, ex, key_id),
        ("GET", ["task", "ws"]) => handlers::task::ws(app, ex, key_id),
        ("POST", ["session", "start"]) => handlers::session::start(app, ex, key_id),
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
        ("GET", ["dashboard", rest @ ..]) => {
            let etag = ex.header("If-None-Match").map(str::to_string);
            ex.respond(crate::dashboard::serve(&rest.join("/"), etag.as_deref()))
        }
        // The body is read on a thread of its own: a slow client must not hold a worker.
        ("POST", ["admin", "login"]) => {
            let app = app.clone();
            crate::server::spawn_run("admin-login", move || handlers::admin::login(&app, ex));
        }
        ("POST", ["admin", "logout"]) => handlers::admin::logout(app, ex),
        ("GET", ["admin", "session"]) => {
            let reply = handlers::admin::session(app, &ex);
            ex.respond(reply)
        }
        ("GET", ["admin", "overview"]) => ex.respond(handlers::admin::overview(app)),
        ("GET", ["admin", "keys"]) => ex.respond(handlers::admin::keys(app)),
        ("GET", ["admin", "logs"]) => reply(ex, |ex| handlers::admin::logs(app, ex)),
        ("GET", ["admin", "costs"]) => reply(ex, |ex| handlers::admin::costs(app, ex)),
        // The admin's view of sessions is the admin key's view.
        ("GET", ["admin", "sessions"]) => reply(ex, |ex| handlers::session::list(app, ex, &key_id)),
        ("GET", ["admin", "sessions", id]) => {
            reply(ex, |_| handlers::session::get(app, &key_id, id))
        }
        ("DELETE", ["admin", "sessions", id]) => {
            reply(ex, |ex| handlers::session::delete(app, ex, &key_id, id))
        }
        ("GET", ["models"]) => ex.respond(handlers::models::get(app)),
        ("GET", ["openapi.yaml"]) => ex.respond(handlers::openapi::get()),
        ("GET", ["docs"]) => {
            let reply = handlers::docs::get(app, &ex, None);
            ex.respond(reply)
        }
        ("GET", ["docs", file]) => {
            let reply = handlers::docs::get(app, &ex, Some(file));
            ex.respond(reply)
        }
        ("POST", ["task", id, "cancel"]) => {
            reply(ex, |ex| handlers::processes::cancel(app, ex, &key_id, id))
        }
        ("GET", ["admin", "processes"]) => ex.respond(handlers::processes::list(app)),
        ("GET", ["metrics"]) => ex.respond(handlers::metrics::get(app)),
        ("POST", ["v1", "chat", "completions"]) => handlers::sdk::chat_completions(app, ex, key_id),
        ("POST", ["v1", "messages"]) => handlers::sdk::messages(app, ex, key_id),
        ("GET", ["v1", "models"]) => ex.respond(handlers::sdk::models()),
        ("GET", ["v1", "models", id]) => reply(ex, |_| handlers::sdk::model(id)),
        _ => ex.error(ApiError::not_found(format!("no route {path}"))),
    }
}

/// Answers a short request with what `f` returns, error or not.
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
        for p in ["/dashboard", "/dashboard/", "/dashboard/assets/a.js"] {
            assert!(matches("/dashboard/{*path}", p), "{p}");
        }
        assert!(!matches("/dashboard/{*path}", "/dashboards"));
    }
}
