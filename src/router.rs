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
    r("GET", "/models", Access::Key),
    r("GET", "/openapi.yaml", Access::Public),
    // The swagger plugin: 404 unless enabled.
    r("GET", "/docs", Access::Public),
    r("GET", "/docs/{file}", Access::Public),
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

    let known: Vec<&Route> = ROUTES.iter().filter(|r| matches(r.path, &path)).collect();
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
        Access::Key => match auth::authenticate(app, &ex, Also::Nothing) {
            Ok(id) => Some(id),
            Err(e) => return ex.error(e),
        },
    };
    ex.key_id = key_id.clone();
    let key_id = key_id.unwrap_or_default();

    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (route.method, segs.as_slice()) {
        ("GET", ["health"]) => ex.respond(handlers::health::get(app)),
        ("POST", ["task"]) => handlers::task::post(app, ex, key_id),
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
        _ => ex.error(ApiError::not_found(format!("no route {path}"))),
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
