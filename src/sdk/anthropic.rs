//! `POST /v1/messages` in Anthropic's shapes: the request body parsed into a [`Chat`], the
//! `message` answer, and the named-event stream. One `message_start`, the text blocks of every
//! model turn numbered 0, 1, 2, … (see `blocks.rs`), one `message_delta` with the run's usage,
//! one `message_stop`; `ping` as the heartbeat. `tools` are refused (see the module above);
//! `output_config.format` (structured output) is refused too. The sampling and routing fields
//! (`temperature`, `top_p`, `top_k`, `stop_sequences`, `thinking`, `tool_choice`,
//! `output_config.effort`, `service_tier`, `speed`, `cache_control`, …) are accepted and
//! ignored; `max_tokens` and `metadata` are checked.

use serde_json::{json, Value};

use super::blocks::Piece;
use super::turn::{Answer, Call, Stream};
use super::{bad, images, model_without_tools, present, unsupported, Chat, Message, Part, Role};
use crate::claude::Tokens;
use crate::config::SdkConfig;
use crate::error::{ApiError, Shape};
use crate::input::Body;
use crate::stream::sse::format_event;

pub fn parse(body: &Body, cfg: &SdkConfig) -> Result<Chat, ApiError> {
    let model = model_without_tools(body, cfg, ["tools", "mcp_servers"])?;
    let stream = body.opt_bool("stream")?.unwrap_or(false);
    body.opt_u64("max_tokens", 0, u32::MAX as u64)?;
    if present(body, "output_config").is_some_and(|c| c.get("format").is_some_and(|f| !f.is_null()))
    {
        return Err(unsupported(
            "output_config.format",
            "`output_config.format` is not supported: Claude Code answers in free text; ask for JSON in the prompt instead",
        ));
    }
    if let Some(m) = present(body, "metadata") {
        let ok = m.as_object().is_some_and(|o| {
            o.get("user_id")
                .is_none_or(|u| u.is_null() || u.is_string())
        });
        if !ok {
            return Err(bad(
                "`metadata` must be an object; `metadata.user_id` a string".into(),
            ));
        }
    }
    let mut messages = Vec::new();
    match present(body, "system") {
        None => {}
        Some(Value::String(s)) => messages.push(Message::text(Role::System, s)),
        Some(Value::Array(blocks)) => {
            let parts = blocks
                .iter()
                .enumerate()
                .map(
                    |(i, b)| match (b.get("type").and_then(Value::as_str), b.get("text")) {
                        (Some("text"), Some(Value::String(t))) => Ok(Part::Text(t.clone())),
                        _ => Err(bad(format!("`system[{i}]` must be a text block"))),
                    },
                )
                .collect::<Result<Vec<_>, _>>()?;
            messages.push(Message {
                role: Role::System,
                parts,
            });
        }
        Some(_) => {
            return Err(bad(
                "`system` must be a string or a list of text blocks".into()
            ))
        }
    }
    let list = match present(body, "messages") {
        None => return Err(bad("`messages` is required".into())),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(bad("`messages` must not be empty".into()))
        }
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("`messages` must be a list of messages".into())),
    };
    for (i, m) in list.iter().enumerate() {
        let last = i + 1 == list.len();
        messages.push(message(i, m, last, cfg)?);
    }
    let chat = Chat::new(model, stream, false, messages)?;
    chat.check_images(cfg.max_images)?;
    Ok(chat)
}

fn message(i: usize, v: &Value, last: bool, cfg: &SdkConfig) -> Result<Message, ApiError> {
    let at = format!("messages[{i}]");
    let role = match v.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        _ => {
            return Err(bad(format!(
                "`{at}.role` must be user or assistant (system text goes in `system`)"
            )))
        }
    };
    let blocks = match v.get("content") {
        Some(Value::String(s)) => return Ok(Message::text(role, s)),
        Some(Value::Array(blocks)) => blocks,
        _ => {
            return Err(bad(format!(
                "`{at}.content` must be a string or a list of content blocks"
            )))
        }
    };
    let mut parts = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let at = format!("{at}.content[{j}]");
        match b.get("type").and_then(Value::as_str) {
            Some("text") => match b.get("text") {
                Some(Value::String(t)) => parts.push(Part::Text(t.clone())),
                _ => return Err(bad(format!("`{at}.text` must be a string"))),
            },
            Some("image") if role == Role::User => parts.push(Part::Image(image(b, &at, cfg)?)),
            Some("tool_use") => parts.push(Part::Text(format!(
                "[called tool `{}` with {}]",
                b["name"].as_str().unwrap_or("?"),
                b["input"]
            ))),
            Some("tool_result") if !last => parts.push(Part::Text(format!(
                "[tool result: {}]",
                tool_result_text(&b["content"])
            ))),
            Some("tool_result") => {
                return Err(bad(format!(
                    "`{at}`: a tool result cannot be handed to Claude Code (it runs its own tools); send a text message"
                )))
            }
            // Another model's reasoning from earlier turns: not part of the conversation text.
            Some("thinking" | "redacted_thinking") => {}
            Some(kind) => {
                return Err(unsupported(
                    &at,
                    format!("`{at}`: content blocks of type `{kind}` are not supported here; send text, or base64 images in user messages"),
                ))
            }
            None => return Err(bad(format!("`{at}.type` is required"))),
        }
    }
    Ok(Message { role, parts })
}

fn image(b: &Value, at: &str, cfg: &SdkConfig) -> Result<images::Image, ApiError> {
    let src = &b["source"];
    match src.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media_type = src["media_type"].as_str().unwrap_or("");
            let data = src["data"]
                .as_str()
                .ok_or_else(|| bad(format!("`{at}.source.data` must be a string")))?;
            images::from_base64(media_type, data, &format!("{at}.source"), cfg)
        }
        Some("url") => Err(images::remote(&format!("{at}.source.url"))),
        _ => Err(bad(format!(
            "`{at}.source` must be a base64 source ({{\"type\":\"base64\",\"media_type\",\"data\"}})"
        ))),
    }
}

fn tool_result_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn usage(t: &Tokens) -> Value {
    json!({
        "input_tokens": t.input,
        "output_tokens": t.output,
        "cache_read_input_tokens": t.cache_read,
        "cache_creation_input_tokens": t.cache_write,
    })
}

/// The CLI's stop reason, as the client may see it: `tool_use` (Claude Code's own tools) is
/// not the client's business and reads `end_turn`.
fn stop_reason(a: &Answer) -> &str {
    match a.stop_reason.as_deref() {
        Some(r @ ("end_turn" | "max_tokens" | "stop_sequence" | "refusal" | "pause_turn")) => r,
        _ => "end_turn",
    }
}

/// The `message` answer.
pub fn answer(call: &Call, a: &Answer) -> Value {
    let content: Vec<Value> = a
        .texts
        .iter()
        .map(|t| json!({"type": "text", "text": t}))
        .collect();
    json!({
        "id": call.id,
        "type": "message",
        "role": "assistant",
        "model": call.chat.model,
        "content": content,
        "stop_reason": stop_reason(a),
        "stop_sequence": null,
        "usage": usage(&a.tokens),
        "claudeway": a.extension(),
    })
}

/// The named-event stream.
pub struct Events {
    id: String,
    model: String,
}

impl Events {
    pub fn new(call: &Call) -> Events {
        Events {
            id: call.id.clone(),
            model: call.chat.model.clone(),
        }
    }
}

fn event(name: &str, data: Value) -> String {
    format_event(name, &data.to_string())
}

impl Stream for Events {
    fn open(&mut self) -> String {
        let start = event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": usage(&Tokens::default()),
            }}),
        );
        start + &self.heartbeat()
    }

    fn piece(&mut self, p: &Piece) -> String {
        match p {
            Piece::Start(n) => event(
                "content_block_start",
                json!({"type": "content_block_start", "index": n, "content_block": {"type": "text", "text": ""}}),
            ),
            Piece::Delta(n, text) => event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": n, "delta": {"type": "text_delta", "text": text}}),
            ),
            Piece::Stop(n) => event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": n}),
            ),
        }
    }

    fn heartbeat(&self) -> String {
        event("ping", json!({"type": "ping"}))
    }

    fn done(&mut self, a: &Answer) -> String {
        let delta = event(
            "message_delta",
            json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(a), "stop_sequence": null},
                "usage": usage(&a.tokens),
                "claudeway": a.extension(),
            }),
        );
        delta + &event("message_stop", json!({"type": "message_stop"}))
    }

    fn failed(&mut self, e: &ApiError) -> String {
        event("error", e.body_in(Shape::Anthropic))
    }
}
