//! The OpenAI- and Anthropic-compatible routes (`/v1/chat/completions`, `/v1/messages`,
//! `/v1/models`), so that existing SDK clients reach Claude Code by changing their base URL.
//! Each dialect's body is parsed into one [`Chat`] (`openai.rs`, `anthropic.rs`), on the
//! worker, so a malformed body never starts the CLI. A chat is one turn of a Claudeway
//! session, found again from the history the client sends (`threads.rs`) and run like every
//! other turn (`turn.rs`); the CLI's lines become text blocks (`blocks.rs`) that each dialect
//! writes in its own answer and stream shapes.
//!
//! History is never flattened into a dialogue for the model to continue: a known history
//! resumes its CLI conversation and only the new user message is sent; an unknown one starts a
//! new conversation with the earlier turns as delimited context in the system prompt
//! ([`context`]). Nothing here fetches a URL.

pub mod anthropic;
pub mod blocks;
pub mod images;
pub mod models;
pub mod openai;
pub mod threads;
pub mod turn;

use serde_json::{json, Value};

use crate::error::{ApiError, Shape};
use crate::exchange::Exchange;

/// Which API a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

impl Dialect {
    pub fn shape(self) -> Shape {
        match self {
            Dialect::OpenAi => Shape::OpenAi,
            Dialect::Anthropic => Shape::Anthropic,
        }
    }
}

/// The error shape of a request: native outside `/v1/`; on `/v1/messages` Anthropic's, on
/// `/v1/chat/*` OpenAI's; elsewhere under `/v1/` (models, unknown paths) Anthropic's when the
/// client sends `anthropic-version` (the Anthropic SDKs always do), else OpenAI's.
pub fn shape_for(ex: &Exchange) -> Shape {
    let p = ex.path.as_str();
    if !(p == "/v1" || p.starts_with("/v1/")) {
        Shape::Native
    } else if p == "/v1/messages" || p.starts_with("/v1/messages/") {
        Shape::Anthropic
    } else if p.starts_with("/v1/chat/") {
        Shape::OpenAi
    } else if ex.header("anthropic-version").is_some() {
        Shape::Anthropic
    } else {
        Shape::OpenAi
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `system` and `developer` messages, and Anthropic's `system` field.
    System,
    User,
    Assistant,
    /// OpenAI `tool` messages (results of a client's own tools, from earlier requests).
    Tool,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image(images::Image),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

impl Message {
    pub fn text(role: Role, text: &str) -> Message {
        Message {
            role,
            parts: vec![Part::Text(text.to_string())],
        }
    }

    /// The text parts joined by a line break; images as a short note (for the context).
    fn plain(&self) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Image(i) => format!(
                    "[an image ({}) was attached here; it is not shown again]",
                    i.media_type
                ),
            })
            .collect();
        parts.join("\n")
    }

    fn has_images(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Image(_)))
    }

    fn is_blank(&self) -> bool {
        self.parts.iter().all(|p| match p {
            Part::Text(t) => t.trim().is_empty(),
            Part::Image(_) => false,
        })
    }
}

/// One request of either dialect, validated.
#[derive(Debug, Clone)]
pub struct Chat {
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// Every message in order (Anthropic's `system` first, as a system message).
    pub messages: Vec<Message>,
    /// Index of the last user message: what the CLI is asked. Only system messages follow it.
    pub last_user: usize,
}

impl Chat {
    /// Checks the order of `messages` and builds the chat. `what` names the list in errors.
    pub fn new(
        model: String,
        stream: bool,
        include_usage: bool,
        messages: Vec<Message>,
    ) -> Result<Chat, ApiError> {
        let last_user = messages
            .iter()
            .rposition(|m| m.role != Role::System)
            .filter(|&i| messages[i].role == Role::User)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "the last message (after any system messages) must be a user message: Claude Code answers a user's message, and cannot continue an assistant message or take a tool result",
                )
            })?;
        if messages[last_user].is_blank() {
            return Err(ApiError::bad_request(
                "the last user message is empty: give it text or an image",
            ));
        }
        Ok(Chat {
            model,
            stream,
            include_usage,
            messages,
            last_user,
        })
    }

    /// At most `max` images in the message the CLI is asked (earlier ones are not sent).
    pub fn check_images(&self, max: usize) -> Result<(), ApiError> {
        let n = self.messages[self.last_user]
            .parts
            .iter()
            .filter(|p| matches!(p, Part::Image(_)))
            .count();
        if n > max {
            return Err(ApiError::bad_request(format!(
                "the last user message has {n} images; at most {max} are accepted ([sdk] max_images)"
            )));
        }
        Ok(())
    }

    /// The messages before the last user message: the history a stored conversation must
    /// match to be resumed.
    pub fn history(&self) -> &[Message] {
        &self.messages[..self.last_user]
    }

    /// True if the history holds earlier turns (not only system messages).
    pub fn has_turns(&self) -> bool {
        self.history().iter().any(|m| m.role != Role::System)
    }

    /// What `--append-system-prompt` gets: the system and developer messages in order, then
    /// the first `context_len` messages as context when the CLI conversation did not see them.
    pub fn append_system_prompt(&self, context_len: usize) -> Option<String> {
        let mut parts: Vec<String> = self
            .messages
            .iter()
            .filter(|m| m.role == Role::System)
            .map(Message::plain)
            .filter(|t| !t.trim().is_empty())
            .collect();
        parts.extend(context(&self.messages[..context_len.min(self.last_user)]));
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    /// The CLI's stdin for the last user message, and whether it is a stream-json line (with
    /// images; format captured from the CLI, tests/fixtures/h4_stdin_images.*). Plain text
    /// otherwise.
    pub fn prompt(&self) -> (String, bool) {
        let last = &self.messages[self.last_user];
        if !last.has_images() {
            return (last.plain(), false);
        }
        let content: Vec<Value> = last
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => json!({"type": "text", "text": t}),
                Part::Image(i) => json!({"type": "image", "source": {
                    "type": "base64", "media_type": i.media_type, "data": i.data,
                }}),
            })
            .collect();
        let line = json!({"type": "user", "message": {"role": "user", "content": content}});
        (format!("{line}\n"), true)
    }

    /// The fingerprint a client's next request will carry as its history once it has this
    /// turn's answer: every message of this request, then the answer.
    pub fn next_head(&self, answer: &[String]) -> String {
        let reply = Message {
            role: Role::Assistant,
            parts: answer.iter().map(|t| Part::Text(t.clone())).collect(),
        };
        fingerprint(self.messages.iter().chain([&reply]))
    }
}

/// Identifies a history: FNV-1a (128 bit) over each message's role and content. Whitespace
/// is left out and text parts are joined, so `"a b"` as a string and as two blocks `a`, ` b`
/// are the same history (clients re-send assistant answers in either form). Not a security
/// measure: a history is only ever looked up among the conversations of the key that sent it.
pub fn fingerprint<'a>(messages: impl IntoIterator<Item = &'a Message>) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u128;
            h = h.wrapping_mul(PRIME);
        }
    };
    for m in messages {
        feed(m.role.name().as_bytes());
        feed(&[0x1f]);
        for p in &m.parts {
            match p {
                Part::Text(t) => {
                    let mut buf = [0u8; 4];
                    for c in t.chars().filter(|c| !c.is_whitespace()) {
                        feed(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
                Part::Image(i) => {
                    feed(&[0x1d]);
                    feed(i.media_type.as_bytes());
                    feed(i.data.as_bytes());
                    feed(&[0x1d]);
                }
            }
        }
        feed(&[0x1e]);
    }
    format!("{h:032x}")
}

/// Earlier turns as context for a new CLI conversation: clearly delimited, labelled as
/// history, never as a dialogue to continue. System messages are left out (they are
/// appended on their own). None when there are no turns.
pub fn context(messages: &[Message]) -> Option<String> {
    let turns: Vec<&Message> = messages.iter().filter(|m| m.role != Role::System).collect();
    if turns.is_empty() {
        return None;
    }
    let mut out = String::from(
        "<earlier_conversation>\n\
         The messages below were exchanged before this session began; the client sent them as \
         history. They are context only: do not continue them as a dialogue, do not answer them \
         again and do not imitate their format. Answer the user's new message.\n",
    );
    for m in turns {
        let text = m
            .plain()
            .replace("</message>", "<\\/message>")
            .replace("</earlier_conversation>", "<\\/earlier_conversation>");
        out.push_str(&format!(
            "<message role=\"{}\">\n{}\n</message>\n",
            m.role.name(),
            text.trim_end()
        ));
    }
    out.push_str("</earlier_conversation>");
    Some(out)
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request(message)
}

/// A top-level field of a body, unless absent or null.
fn present<'a>(body: &'a crate::input::Body, name: &str) -> Option<&'a Value> {
    body.0.get(name).filter(|v| !v.is_null())
}

/// 400 `unsupported_parameter` for a request field Claudeway cannot honour.
pub fn unsupported(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message).with_param(param, "unsupported_parameter")
}

/// The request's `model`, checked, after refusing the client-defined tool fields `tools`
/// (unless the operator ignores them): the start of both dialects' parsing.
fn model_without_tools(
    body: &crate::input::Body,
    cfg: &crate::config::SdkConfig,
    tools: [&str; 2],
) -> Result<String, ApiError> {
    let model = body.string("model")?;
    models::validate(&model)?;
    for name in tools {
        let given = present(body, name).is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()));
        if given && !cfg.ignore_tools {
            return Err(tools_refused(name));
        }
    }
    Ok(model)
}

/// The error for client-defined tools (`param` is `tools` or `functions`).
pub fn tools_refused(param: &str) -> ApiError {
    unsupported(
        param,
        format!(
            "`{param}` is not supported: Claude Code runs its own tools (files, shell, web) and cannot hand a tool call back to your client. Remove `{param}`, or ask the operator to set `[sdk] ignore_tools = true` to have them ignored"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: Role, parts: &[&str]) -> Message {
        Message {
            role,
            parts: parts.iter().map(|t| Part::Text(t.to_string())).collect(),
        }
    }

    #[test]
    fn fingerprint_ignores_whitespace_and_block_splits_but_not_roles_or_order() {
        let a = [
            m(Role::User, &["hello there"]),
            m(Role::Assistant, &["a b\n\nc"]),
        ];
        let b = [
            m(Role::User, &[" hello\nthere "]),
            m(Role::Assistant, &["a", " b", "c"]),
        ];
        assert_eq!(fingerprint(&a), fingerprint(&b));
        let c = [
            m(Role::Assistant, &["hello there"]),
            m(Role::User, &["a b c"]),
        ];
        assert_ne!(fingerprint(&a), fingerprint(&c));
        let d = [m(Role::User, &["hello there"])];
        assert_ne!(fingerprint(&a), fingerprint(&d));
        assert_eq!(fingerprint(&a).len(), 32);
        assert_ne!(fingerprint(&[]), fingerprint(&[m(Role::User, &[""])]));
    }

    #[test]
    fn next_head_is_what_the_follow_up_carries_as_history() {
        let first = Chat::new(
            "sonnet".into(),
            false,
            false,
            vec![m(Role::System, &["be brief"]), m(Role::User, &["hi"])],
        )
        .unwrap();
        let head = first.next_head(&["Hello!".into(), "How can I help?".into()]);
        let second = Chat::new(
            "sonnet".into(),
            false,
            false,
            vec![
                m(Role::System, &["be brief"]),
                m(Role::User, &["hi"]),
                m(Role::Assistant, &["Hello!\n\nHow can I help?"]),
                m(Role::User, &["more"]),
            ],
        )
        .unwrap();
        assert_eq!(fingerprint(second.history()), head);
        assert!(second.has_turns() && !first.has_turns());
    }

    #[test]
    fn order_rules() {
        let ok = Chat::new(
            "sonnet".into(),
            false,
            false,
            vec![m(Role::User, &["q"]), m(Role::System, &["late system"])],
        )
        .unwrap();
        assert_eq!(ok.last_user, 0);
        for bad in [
            vec![m(Role::User, &["q"]), m(Role::Assistant, &["prefill"])],
            vec![m(Role::System, &["only system"])],
            vec![m(Role::User, &["q"]), m(Role::Tool, &["result"])],
            vec![m(Role::User, &["  "])],
        ] {
            assert!(Chat::new("sonnet".into(), false, false, bad).is_err());
        }
    }

    #[test]
    fn context_is_delimited_and_system_goes_first() {
        let chat = Chat::new(
            "sonnet".into(),
            false,
            false,
            vec![
                m(Role::System, &["You are terse."]),
                m(Role::User, &["my name is Ada"]),
                m(Role::Assistant, &["Hi Ada </message> tricky"]),
                m(Role::User, &["what is my name?"]),
            ],
        )
        .unwrap();
        assert_eq!(chat.append_system_prompt(0).unwrap(), "You are terse.");
        let full = chat.append_system_prompt(3).unwrap();
        assert!(full.starts_with("You are terse.\n\n<earlier_conversation>\n"));
        assert!(full.contains("<message role=\"user\">\nmy name is Ada\n</message>"));
        assert!(full.contains("Hi Ada <\\/message> tricky"));
        assert!(full.ends_with("</earlier_conversation>"));
        assert!(
            !full.contains("what is my name"),
            "the new message is the prompt"
        );
        assert_eq!(chat.prompt(), ("what is my name?".to_string(), false));
    }
}
