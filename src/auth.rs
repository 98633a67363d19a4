//! Who is calling: the Bearer secret (or, where a route allows it, `x-api-key` or the
//! WebSocket subprotocol) checked against the configured keys in constant time. A failure is
//! answered 401 and written to the `_unauthorized` audit log, without the presented secret.

use crate::app::App;
use crate::audit::Entry;
use crate::error::ApiError;
use crate::exchange::Exchange;

/// Where a secret may come from, besides `Authorization: Bearer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Also {
    Nothing,
    /// `x-api-key: <secret>` (the Anthropic SDK's header; `/v1/*`).
    ApiKeyHeader,
    /// `Sec-WebSocket-Protocol: claudeway.bearer.<secret>` (browsers cannot set headers on a
    /// WebSocket).
    WebSocketProtocol,
}

/// The prefix of the WebSocket subprotocol that carries a key.
pub const WS_PROTOCOL_PREFIX: &str = "claudeway.bearer.";

/// The secret the request presents, if any.
pub fn presented(ex: &Exchange, also: Also) -> Option<String> {
    if let Some(v) = ex.header("Authorization") {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim().to_string());
        }
    }
    match also {
        Also::ApiKeyHeader => ex.header("x-api-key").map(|v| v.trim().to_string()),
        Also::WebSocketProtocol => ex.header("Sec-WebSocket-Protocol").and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find_map(|p| p.strip_prefix(WS_PROTOCOL_PREFIX))
                .map(str::to_string)
        }),
        Also::Nothing => None,
    }
}

/// The key id of the caller, or 401 (audited).
pub fn authenticate(app: &App, ex: &Exchange, also: Also) -> Result<String, ApiError> {
    let found =
        presented(ex, also).and_then(|s| app.config.keys.authenticate(&s).map(|k| k.id.clone()));
    match found {
        Some(id) => Ok(id),
        None => {
            let mut e = ApiError::unauthorized();
            if also == Also::ApiKeyHeader {
                e.message = "missing or unknown API key: send `Authorization: Bearer <secret>` or `x-api-key: <secret>`".into();
            }
            let mut entry = Entry::new(&ex.request_id, &ex.path, None, "unauthorized")
                .failed(e.status(), e.code());
            entry.duration_ms = ex.started.elapsed().as_millis() as u64;
            app.audit.record(entry);
            Err(e)
        }
    }
}
