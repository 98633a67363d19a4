//! Static files embedded in the binary (rust-embed) and answered over HTTP, generic over the
//! embedded folder so Swagger UI and the dashboard share it. A file stored as `<name>.gz` is
//! served for `<name>` with `Content-Encoding: gzip`; other files as they are. Each answer
//! carries its `Content-Type` (from the extension), an `ETag` (from the stored bytes'
//! SHA-256; `If-None-Match` gets 304) and `Cache-Control: no-cache` (the names carry no
//! version, so a client revalidates each time and usually gets a 304).
//!
//! There is no decompressor in the binary: a file stored only gzip-compressed is sent
//! gzip-encoded to every client, whatever its `Accept-Encoding` says. RFC 9110 allows this
//! when the header is absent (curl without `--compressed` gets the compressed bytes); every
//! browser accepts gzip. This module never reads the filesystem itself and never serves a
//! name with `..`, a backslash or a leading `/` or `.`.

use std::fmt::Write;

use rust_embed::RustEmbed;

use crate::reply::Reply;

/// The answer for `name` inside the folder of `E`, or `None` when there is no such file.
pub fn reply<E: RustEmbed>(name: &str, if_none_match: Option<&str>) -> Option<Reply> {
    // `<name>.gz` is how a file is stored, never a name it is served under.
    if !safe_name(name) || name.ends_with(".gz") {
        return None;
    }
    let (file, gzip) = match E::get(&format!("{name}.gz")) {
        Some(f) => (f, true),
        None => (E::get(name)?, false),
    };
    let mut etag = String::from("\"");
    for b in &file.metadata.sha256_hash()[..16] {
        let _ = write!(etag, "{b:02x}");
    }
    etag.push('"');
    let reply = if if_none_match.is_some_and(|v| etag_matches(v, &etag)) {
        Reply::empty(304)
    } else {
        let reply = Reply::bytes(200, content_type(name), file.data.into_owned());
        if gzip {
            reply.with_header("Content-Encoding", "gzip")
        } else {
            reply
        }
    };
    Some(
        reply
            .with_header("ETag", etag)
            .with_header("Cache-Control", "no-cache")
            .with_header("X-Content-Type-Options", "nosniff"),
    )
}

fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains(['\\', '\0'])
        && name
            .split('/')
            .all(|part| !part.is_empty() && !part.starts_with('.'))
}

/// True if an `If-None-Match` value names `etag` (weak or strong) or is `*`.
fn etag_matches(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The media type of a file name, by extension.
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_types_and_etags() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            ".env",
            "a\\b",
            "a//b",
            "x\0",
        ] {
            assert!(!safe_name(bad), "{bad:?}");
        }
        assert!(safe_name("swagger-ui.css") && safe_name("assets/index-1a2b.js"));
        assert_eq!(content_type("a.JS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert!(etag_matches("\"a\", W/\"b\"", "\"b\""));
        assert!(etag_matches("*", "\"b\""));
        assert!(!etag_matches("\"a\"", "\"b\""));
    }
}
