//! `POST /v1/chat/completions` in OpenAI's shapes: the request body parsed into a [`Chat`],
//! the `chat.completion` answer, and the `chat.completion.chunk` stream. Fields the CLI cannot
//! honour are refused when ignoring them would change the answer a client relies on (`tools`,
//! `n` > 1, `response_format` other than text, audio); the sampling fields (`temperature`,
//! `top_p`, `stop`, `seed`, penalties, `logprobs`, …) are accepted and ignored.

use serde_json::{json, Value};

use super::turn::{Answer, Call, Stream};
use super::{bad, images, model_without_tools, present, unsupported, Chat, Message, Part, Role};
use crate::claude::Tokens;
use crate::config::SdkConfig;
use crate::error::{ApiError, Shape};
use crate::input::Body;

pub fn parse(body: &Body, cfg: &SdkConfig) -> Result<Chat, ApiError> {
    let model = model_without_tools(body, cfg, ["tools", "functions"])?;
    if present(body, "n").is_some_and(|n| n.as_u64() != Some(1)) {
        return Err(unsupported(
            "n",
            "`n` must be 1: Claude Code gives one answer per request",
        ));
    }
    if let Some(rf) = present(body, "response_format") {
        let kind = rf.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "text" {
            return Err(unsupported(
                "response_format",
                format!("`response_format` `{kind}` is not supported: Claude Code answers in free text; ask for JSON in the prompt instead"),
            ));
        }
    }
    if present(body, "audio").is_some() {
        return Err(unsupported("audio", "audio output is not supported"));
    }
    if let Some(m) = present(body, "modalities") {
        if m.as_array().is_none_or(|a| a.iter().any(|x| x != "text")) {
            return Err(unsupported(
                "modalities",
                "`modalities` must be [\"text\"]: Claude Code answers in text",
            ));
        }
    }
    let stream = body.opt_bool("stream")?.unwrap_or(false);
    let include_usage = match present(body, "stream_options") {
        None => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(bad(
                    "`stream_options.include_usage` must be true or false".into()
                ))
            }
        },
        Some(_) => return Err(bad("`stream_options` must be an object".into())),
    };
    body.opt_u64("max_tokens", 1, u32::MAX as u64)?;
    body.opt_u64("max_completion_tokens", 1, u32::MAX as u64)?;
    if present(body, "user").is_some_and(|u| !u.is_string()) {
        return Err(bad("`user` must be a string".into()));
    }
    let list = match present(body, "messages") {
        None => return Err(bad("`messages` is required".into())),
        Some(Value::Array(a)) if a.is_empty() => {
            return Err(bad("`messages` must not be empty".into()))
        }
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("`messages` must be a list of messages".into())),
    };
    let messages = list
        .iter()
        .enumerate()
        .map(|(i, m)| message(i, m, cfg))
        .collect::<Result<Vec<_>, _>>()?;
    let chat = Chat::new(model, stream, include_usage, messages)?;
    chat.check_images(cfg.max_images)?;
    Ok(chat)
}

fn message(i: usize, v: &Value, cfg: &SdkConfig) -> Result<Message, ApiError> {
    let at = format!("messages[{i}]");
    let obj = v.as_object().ok_or_else(|| {
        bad(format!(
            "`{at}` must be an object with `role` and `content`"
        ))
    })?;
    let role = match obj.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => Role::Tool,
        Some("function") => {
            return Err(unsupported(
                &format!("{at}.role"),
                "`function` messages are not supported (client-defined tools cannot be run through Claude Code)",
            ))
        }
        _ => {
            return Err(bad(format!(
                "`{at}.role` must be one of system, developer, user, assistant, tool"
            )))
        }
    };
    let content = obj.get("content").filter(|c| !c.is_null());
    if content.is_none() && role != Role::Assistant {
        return Err(bad(format!("`{at}.content` is required")));
    }
    let mut parts = parts(content, &format!("{at}.content"), role == Role::User, cfg)?;
    if role == Role::Assistant {
        let calls = obj.get("tool_calls").and_then(Value::as_array);
        for call in calls.into_iter().flatten() {
            let f = &call["function"];
            parts.push(Part::Text(format!(
                "[called tool `{}` with {}]",
                f["name"].as_str().unwrap_or("?"),
                f["arguments"].as_str().unwrap_or("{}")
            )));
        }
    }
    Ok(Message { role, parts })
}

fn parts(
    content: Option<&Value>,
    at: &str,
    images_ok: bool,
    cfg: &SdkConfig,
) -> Result<Vec<Part>, ApiError> {
    let items = match content {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => return Ok(vec![Part::Text(s.clone())]),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(bad(format!(
                "`{at}` must be a string or a list of content parts"
            )))
        }
    };
    let mut out = Vec::new();
    for (j, p) in items.iter().enumerate() {
        let at = format!("{at}[{j}]");
        let text = |key: &str| {
            p.get(key)
                .and_then(Value::as_str)
                .map(|t| Part::Text(t.to_string()))
                .ok_or_else(|| bad(format!("`{at}.{key}` must be a string")))
        };
        match p.get("type").and_then(Value::as_str) {
            Some("text") => out.push(text("text")?),
            Some("refusal") => out.push(text("refusal")?),
            Some("image_url") if images_ok => {
                let url = p["image_url"]
                    .get("url")
                    .or(Some(&p["image_url"]))
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("`{at}.image_url.url` must be a string")))?;
                let field = format!("{at}.image_url.url");
                out.push(Part::Image(images::from_url(url, &field, cfg)?));
            }
            Some("image_url") => {
                return Err(bad(format!(
                    "`{at}`: images are accepted in user messages only"
                )))
            }
            Some(kind @ ("input_audio" | "file")) => {
                return Err(unsupported(
                    &at,
                    format!(
                        "`{kind}` content is not supported; send text, or images as data: URLs"
                    ),
                ))
            }
            _ => {
                return Err(bad(format!(
                    "`{at}.type` must be text or image_url (or refusal in an assistant message)"
                )))
            }
        }
    }
    Ok(out)
}

fn usage(t: &Tokens) -> Value {
    let prompt = t.input + t.cache_read + t.cache_write;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": t.output,
        "total_tokens": prompt + t.output,
        "prompt_tokens_details": {"cached_tokens": t.cache_read, "cache_write_tokens": t.cache_write},
    })
}

fn finish_reason(a: &Answer) -> &'static str {
    match a.stop_reason.as_deref() {
        Some("max_tokens") => "length",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// The `chat.completion` answer.
pub fn answer(call: &Call, a: &Answer) -> Value {
    json!({
        "id": call.id,
        "object": "chat.completion",
        "created": call.created,
        "model": call.chat.model,
        "system_fingerprint": null,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": a.texts.join("\n\n"), "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": finish_reason(a),
        }],
        "usage": usage(&a.tokens),
        "claudeway": a.extension(),
    })
}

/// The `chat.completion.chunk` stream: a role chunk, the text as the CLI prints it (blocks
/// of different model turns separated by a blank line, as in the answer), a chunk with
/// `finish_reason`, the usage chunk when asked, `[DONE]`.
pub struct Chunks {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    wrote: bool,
    last_block: Option<usize>,
}

impl Chunks {
    pub fn new(call: &Call) -> Chunks {
        Chunks {
            id: call.id.clone(),
            created: call.created,
            model: call.chat.model.clone(),
            include_usage: call.chat.include_usage,
            wrote: false,
            last_block: None,
        }
    }

    fn chunk(&self, choices: Value, extra: &[(&str, Value)]) -> String {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": null, "choices": choices,
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        for (k, v) in extra {
            c[*k] = v.clone();
        }
        format!("data: {c}\n\n")
    }

    fn delta(&self, delta: Value, finish: Option<&str>, extra: &[(&str, Value)]) -> String {
        self.chunk(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]),
            extra,
        )
    }
}

impl Stream for Chunks {
    fn open(&mut self) -> String {
        self.delta(json!({"role": "assistant", "content": ""}), None, &[])
    }

    fn piece(&mut self, p: &super::blocks::Piece) -> String {
        let super::blocks::Piece::Delta(n, text) = p else {
            return String::new();
        };
        if text.is_empty() {
            return String::new();
        }
        let mut content = String::new();
        if self.wrote && self.last_block != Some(*n) {
            content.push_str("\n\n");
        }
        content.push_str(text);
        self.wrote = true;
        self.last_block = Some(*n);
        self.delta(json!({"content": content}), None, &[])
    }

    fn heartbeat(&self) -> String {
        ": keep-alive\n\n".into()
    }

    fn done(&mut self, a: &Answer) -> String {
        let ext = ("claudeway", a.extension());
        let mut out = self.delta(
            json!({}),
            Some(finish_reason(a)),
            std::slice::from_ref(&ext),
        );
        if self.include_usage {
            out.push_str(&self.chunk(json!([]), &[("usage", usage(&a.tokens)), ext]));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }

    fn failed(&mut self, e: &ApiError) -> String {
        format!("data: {}\n\ndata: [DONE]\n\n", e.body_in(Shape::OpenAi))
    }
}
