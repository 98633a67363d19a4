//! The models the SDK routes accept and list: the CLI's aliases (`sonnet`, `opus`, `haiku`)
//! and any full Claude model id (`claude-…`), which the CLI takes verbatim. `GET /v1/models`
//! answers a static list (the aliases and the ids below) in one shape that both the OpenAI and
//! the Anthropic SDKs read. No network call: the live model list belongs to `GET /models`.

use serde_json::{json, Value};

use crate::claude::args;
use crate::error::ApiError;

/// The aliases the CLI resolves itself (to whatever its build calls the newest model).
pub const ALIASES: [&str; 3] = ["sonnet", "opus", "haiku"];

/// Listed ids: what this CLI build's aliases resolve to (claude-*-5-5, captured) and the
/// dated ids of the generation before. Any other `claude-…` id is accepted too.
const KNOWN: [(&str, &str); 6] = [
    ("claude-opus-5-5", "Claude Opus 5.5"),
    ("claude-sonnet-5-5", "Claude Sonnet 5.5"),
    ("claude-haiku-5-5", "Claude Haiku 5.5"),
    ("claude-opus-4-5-20251101", "Claude Opus 4.5"),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5"),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5"),
];

/// Checks a request's `model`: an alias or a full Claude id; anything else is 400 naming the
/// valid ones (OpenAI `code: model_not_found`, `param: model`).
pub fn validate(model: &str) -> Result<(), ApiError> {
    let ok = ALIASES.contains(&model)
        || (model.len() > "claude-".len()
            && model.starts_with("claude-")
            && args::validate_model(model).is_ok());
    if ok {
        return Ok(());
    }
    let shown: String = model.chars().take(80).collect();
    Err(ApiError::bad_request(format!(
        "model `{shown}` is not a Claude model: use an alias ({}) or a full Claude model id such as {}; GET /v1/models lists them",
        ALIASES.join(", "),
        KNOWN.map(|k| k.0).join(", ")
    ))
    .with_param("model", "model_not_found"))
}

/// One model in both SDKs' shapes (OpenAI: id, object, created, owned_by; Anthropic: id,
/// type, display_name, created_at). The date is the id's `YYYYMMDD` suffix, else unknown:
/// the epoch, as the Models API gives it.
fn entry(id: &str, name: &str) -> Value {
    let date = id
        .rsplit('-')
        .next()
        .filter(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()));
    let created_at = match date {
        Some(d) => format!("{}-{}-{}T00:00:00Z", &d[..4], &d[4..6], &d[6..]),
        None => "1970-01-01T00:00:00Z".to_string(),
    };
    let created =
        time::OffsetDateTime::parse(&created_at, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp())
            .unwrap_or(0);
    json!({
        "id": id, "object": "model", "created": created, "owned_by": "anthropic",
        "type": "model", "display_name": name, "created_at": created_at,
    })
}

fn all() -> Vec<Value> {
    let aliases = ALIASES.iter().map(|a| {
        let name = format!(
            "Claude {}{} (latest, alias)",
            a[..1].to_uppercase(),
            &a[1..]
        );
        entry(a, &name)
    });
    aliases
        .chain(KNOWN.iter().map(|(id, name)| entry(id, name)))
        .collect()
}

/// `GET /v1/models`.
pub fn list() -> Value {
    let data = all();
    json!({
        "object": "list",
        "first_id": data.first().map(|m| m["id"].clone()),
        "last_id": data.last().map(|m| m["id"].clone()),
        "has_more": false,
        "data": data,
    })
}

/// `GET /v1/models/{id}`: a listed model, or any valid id (the CLI takes it verbatim).
pub fn get(id: &str) -> Result<Value, ApiError> {
    if let Some(m) = all().into_iter().find(|m| m["id"] == id) {
        return Ok(m);
    }
    validate(id).map_err(|_| {
        ApiError::not_found(format!(
            "no model `{}`; GET /v1/models lists them",
            id.chars().take(80).collect::<String>()
        ))
    })?;
    Ok(entry(id, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_and_claude_ids_only() {
        for ok in [
            "sonnet",
            "opus",
            "haiku",
            "claude-sonnet-4-5",
            "claude-x-1[1m]",
        ] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["gpt-4o", "", "Sonnet", "claude-", "claude-a b", "--help"] {
            let e = validate(bad).unwrap_err();
            assert_eq!(e.param, Some(("model".into(), "model_not_found")));
        }
        assert!(validate("gpt-4o")
            .unwrap_err()
            .message
            .contains("sonnet, opus, haiku"));
    }

    #[test]
    fn list_shape() {
        let l = list();
        assert_eq!(l["data"][0]["id"], "sonnet");
        assert_eq!(l["first_id"], "sonnet");
        assert_eq!(l["last_id"], KNOWN[5].0);
        let m = &l["data"][7];
        assert_eq!(m["id"], "claude-sonnet-4-5-20250929");
        assert_eq!(m["created"], 1759104000);
        assert_eq!(m["created_at"], "2025-09-29T00:00:00Z");
        assert_eq!(l["data"][3]["created_at"], "1970-01-01T00:00:00Z");
        assert_eq!(get("claude-new-9").unwrap()["id"], "claude-new-9");
        assert!(get("gpt-4").is_err());
    }
}
