//! openapi.yaml: every route of `router::ROUTES` is in it and nothing else, it lists every
//! error code and the crate's version, and GET /openapi.yaml serves it as written.
//! The router's last `{*name}` segment ("the rest of the path") is `{name}` in the spec,
//! which has no such syntax.

use std::collections::BTreeSet;

use serde_json::json;

use claudeway::error::Kind;
use claudeway::router::ROUTES;

use crate::support::*;

const SPEC: &str = include_str!("../../openapi.yaml");

/// The (METHOD, path) pairs under `paths:`, read by indentation: a path at two spaces, its
/// methods at four.
fn spec_operations() -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    for line in SPEC.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        let key = line.trim().trim_end_matches(':');
        match indent {
            2 => path = Some(key.trim_matches('"').to_string()),
            4 if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&key) => {
                let p = path.clone().expect("a method under a path");
                ops.insert((key.to_uppercase(), p));
            }
            _ => {}
        }
    }
    ops
}

#[test]
fn every_route_is_in_the_spec_and_nothing_else() {
    let spec = spec_operations();
    assert!(spec.len() >= 6, "parsed {spec:?}");
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.replace("{*", "{")))
        .collect();
    let missing: Vec<_> = routes.difference(&spec).collect();
    let extra: Vec<_> = spec.difference(&routes).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.yaml: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "openapi.yaml has routes the router lacks: {extra:?}"
    );
}

#[test]
fn the_spec_lists_every_error_code_and_the_version() {
    let enum_start = SPEC
        .find("    Error:")
        .and_then(|i| SPEC[i..].find("enum:").map(|j| i + j))
        .expect("components/schemas/Error with an enum");
    let listed: BTreeSet<&str> = SPEC[enum_start..]
        .lines()
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .collect();
    let codes: BTreeSet<&str> = Kind::ALL.iter().map(|k| k.code()).collect();
    assert_eq!(listed, codes);
    for k in Kind::ALL {
        assert!(
            SPEC.contains(&format!("| {} | {} |", k.status(), k.code())),
            "the status table lacks {} {}",
            k.status(),
            k.code()
        );
    }
    assert!(SPEC.contains(&format!("\n  version: {}\n", env!("CARGO_PKG_VERSION"))));
    assert!(SPEC.starts_with("# ") && SPEC.contains("\nopenapi: 3.1.0\n"));
}

#[test]
fn the_spec_is_served_as_written() {
    let srv = TestServer::start();
    let r = srv.get("/openapi.yaml", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("application/yaml"));
    assert_eq!(r.text(), SPEC);
    srv.post("/openapi.yaml", None, &json!({}))
        .error(405, "METHOD_NOT_ALLOWED");
}

/// A NUL cannot reach argv or a path: it was a 500 (the spawn failed); now it is named.
#[test]
fn strings_with_nul_are_400() {
    let srv = TestServer::start();
    for field in ["prompt", "system_prompt", "model", "workdir"] {
        let mut body = json!({"prompt": "hi"});
        body[field] = json!("a\u{0}b");
        let msg = srv
            .post("/task", Some(USER), &body)
            .error(400, "BAD_REQUEST");
        assert!(msg.contains(field), "{msg}");
    }
    assert!(srv.fake_runs().is_empty());
}
