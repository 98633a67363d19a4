//! The dashboard's static files: the Svelte app built from `web/` into `web/dist/`, committed
//! there gzip-compressed (`<name>.gz`) and embedded in the binary with rust-embed. `GET
//! /dashboard/<path>` answers the file, or `index.html` for any other path that is not under
//! `assets/` (the app routes with `#/...`, so this only catches typed or stale links). Files
//! are sent as stored, `Content-Encoding: gzip`, with an ETag; hashed assets are cached for a
//! year. This module only looks names up in the embedded set: it never touches the disk.

use rust_embed::Embed;

use crate::reply::Reply;

#[derive(Embed)]
#[folder = "web/dist/"]
#[include = "*.gz"]
struct Files;

/// Headers every dashboard answer carries: no framing, no sniffing, no referrer, and only
/// this origin's scripts.
const SECURITY: [(&str, &str); 4] = [
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
];

/// The answer for `/dashboard/<path>`; `if_none_match` is the request's `If-None-Match`.
pub fn serve(path: &str, if_none_match: Option<&str>) -> Reply {
    let path = path.trim_start_matches('/');
    // Embedded names never contain `..` or hidden segments; refuse them before any lookup.
    let safe = !path.split('/').any(|s| s.starts_with('.'));
    let name = if path.is_empty() || !safe {
        "index.html"
    } else {
        path
    };
    let file = match Files::get(&format!("{name}.gz")) {
        Some(f) => Some((name, f)),
        None if !name.starts_with("assets/") => {
            Files::get("index.html.gz").map(|f| ("index.html", f))
        }
        None => None,
    };
    let Some((name, file)) = file else {
        let e = crate::error::ApiError::not_found(format!(
            "no dashboard file {path}; reload the dashboard"
        ));
        return with_security(Reply::from(e));
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!(
        "\"{}\"",
        hash[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let reply = if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        Reply::empty(304)
    } else {
        Reply::bytes(200, content_type(name), file.data.into_owned())
            .with_header("Content-Encoding", "gzip")
    };
    with_security(
        reply
            .with_header("ETag", etag)
            .with_header("Cache-Control", cache)
            .with_header("Vary", "Accept-Encoding"),
    )
}

fn with_security(mut reply: Reply) -> Reply {
    for (k, v) in SECURITY {
        reply = reply.with_header(k, v);
    }
    reply
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The embedded files (names without `.gz`) and their compressed sizes.
pub fn files() -> Vec<(String, usize)> {
    Files::iter()
        .filter_map(|n| {
            let size = Files::get(&n)?.data.len();
            Some((n.trim_end_matches(".gz").to_string(), size))
        })
        .collect()
}
