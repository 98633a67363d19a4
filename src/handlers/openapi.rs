//! `GET /openapi.yaml`: the API contract, served byte for byte as committed (openapi.yaml at
//! the repository root, embedded at build time). Public. The binary never parses it.

use crate::reply::Reply;

/// The spec, as written.
pub const SPEC: &str = include_str!("../../openapi.yaml");

pub fn get() -> Reply {
    Reply::bytes(200, "application/yaml", SPEC.as_bytes().to_vec())
        .with_header("Cache-Control", "no-cache")
}
