//! The Telegram plugin: events as `sendMessage` (HTML, escaped) to one chat, and an
//! approval round trip for permission denials: the message carries Approve / Deny buttons,
//! a `getUpdates` long-polling thread receives the presses, and only a press in the
//! configured chat, on that very message, counts. Approve runs
//! [`approval::approve`](crate::approval::approve) for exactly the denied tools and posts
//! the outcome; Deny publishes `ApprovalDenied`; no answer within `approval_timeout_secs`
//! expires the request. Every press is answered (`answerCallbackQuery`). Text is cut by
//! characters and split on line boundaries, never at a byte offset. The bot token is a
//! secret (it is part of every API URL): no URL and no unscrubbed error is ever logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::{Context, Delivery, Note, Plugin};
use crate::claude::Denial;
use crate::config::Env;
use crate::events::Event;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[allow(dead_code)] // read by config.rs; allowed here so the table checks as a whole
    enabled: Option<bool>,
    bot_token: Option<String>,
    bot_token_env: Option<String>,
    chat_id: Option<toml::Value>,
    api_base: Option<String>,
    approve_label: Option<String>,
    deny_label: Option<String>,
    approval_timeout_secs: Option<u64>,
    poll_timeout_secs: Option<u64>,
    events: Option<Vec<String>>,
    timeout_secs: Option<u64>,
    max_retries: Option<u32>,
    queue: Option<usize>,
}

/// The public Bot API.
pub const API_BASE: &str = "https://api.telegram.org";
/// Characters of plain text per message (Telegram's limit is 4096 after entities).
pub const MESSAGE_CHARS: usize = 3500;
/// Messages at most for one long result.
const MAX_PARTS: usize = 4;

pub struct Telegram {
    api: Api,
    chat_id: i64,
    approve_label: String,
    deny_label: String,
    approval_timeout: Duration,
    poll_timeout_secs: u64,
    events: Vec<&'static str>,
    shared: Arc<Shared>,
    pub(super) queue: usize,
}

/// The Bot API of one bot: `<api_base>/bot<token>/<method>`.
#[derive(Clone)]
struct Api {
    base: String,
    delivery: Delivery,
}

/// State the event thread and the polling thread share. Locks are never held across a
/// call to the Bot API.
#[derive(Default)]
struct Shared {
    /// Open approval requests by the token in their buttons' callback data.
    pending: Mutex<HashMap<String, Pending>>,
    /// Approval events this plugin caused itself, so that it does not announce them twice.
    own: Mutex<Vec<(String, &'static str, Instant)>>,
}

#[derive(Debug, Clone)]
struct Pending {
    message_id: i64,
    key_id: String,
    session_id: String,
    tool_use_ids: Vec<String>,
    /// The message as sent (HTML), so that an edit can append the decision.
    text: String,
    deadline: Instant,
}

impl Telegram {
    pub fn from_table(table: &toml::Table, env: Env) -> Result<Telegram, String> {
        let s: Settings = super::settings("telegram", table)?;
        let token = super::secret(
            "telegram",
            "bot_token",
            s.bot_token,
            s.bot_token_env,
            "TELEGRAM_BOT_TOKEN",
            env,
        )?
        .ok_or("[plugins.telegram] bot_token is missing: set bot_token (from @BotFather), bot_token_env = \"VAR\", or TELEGRAM_BOT_TOKEN")?;
        if !valid_token(&token) {
            return Err("[plugins.telegram] bot_token does not look like a bot token (digits, a colon, then letters, digits, - or _), as @BotFather gives it".into());
        }
        let chat_id = match s.chat_id.or_else(|| env("TELEGRAM_CHAT_ID").map(toml::Value::String)) {
            None => return Err("[plugins.telegram] chat_id is missing: set it (or TELEGRAM_CHAT_ID) to the chat's numeric id (send your bot a message, then read message.chat.id from https://api.telegram.org/bot<token>/getUpdates)".into()),
            Some(toml::Value::Integer(n)) => n,
            Some(toml::Value::String(v)) => v.trim().parse::<i64>().map_err(|_| {
                format!("[plugins.telegram] chat_id must be a number such as -1001234567890, not `{v}`")
            })?,
            Some(_) => return Err("[plugins.telegram] chat_id must be a number such as -1001234567890".into()),
        };
        let api_base = s.api_base.unwrap_or_else(|| API_BASE.into());
        let api_base = api_base.trim().trim_end_matches('/');
        if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
            return Err(format!(
                "[plugins.telegram] api_base must be an http(s) URL, such as {API_BASE}"
            ));
        }
        let label = |key: &str, v: Option<String>, default: &str| match v {
            None => Ok(default.to_string()),
            Some(v) if !v.trim().is_empty() && v.chars().count() <= 64 => Ok(v.trim().to_string()),
            Some(_) => Err(format!(
                "[plugins.telegram] {key} must be 1 to 64 characters"
            )),
        };
        let n = |key, v, default, min, max| super::number("telegram", key, v, default, min, max);
        Ok(Telegram {
            api: Api {
                base: format!("{api_base}/bot{token}"),
                delivery: Delivery {
                    timeout_secs: n("timeout_secs", s.timeout_secs, 10, 1, 300)?,
                    max_retries: n("max_retries", s.max_retries.map(u64::from), 3, 0, 10)? as u32,
                    backoff: Duration::from_millis(500),
                },
            },
            chat_id,
            approve_label: label("approve_label", s.approve_label, "Approve")?,
            deny_label: label("deny_label", s.deny_label, "Deny")?,
            approval_timeout: Duration::from_secs(n(
                "approval_timeout_secs",
                s.approval_timeout_secs,
                60,
                1,
                86_400,
            )?),
            poll_timeout_secs: n("poll_timeout_secs", s.poll_timeout_secs, 30, 1, 50)?,
            events: super::event_filter("telegram", s.events)?,
            shared: Arc::new(Shared::default()),
            queue: n(
                "queue",
                s.queue.map(|q| q as u64),
                super::QUEUE as u64,
                1,
                100_000,
            )? as usize,
        })
    }

    fn send(&self, ctx: &Context, text: &str, extra: Value) -> Result<i64, String> {
        let mut body = json!({
            "chat_id": self.chat_id,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
        });
        merge(&mut body, extra);
        let sent = self
            .api
            .call(ctx, "sendMessage", &body, &self.api.delivery)?;
        Ok(sent["message_id"].as_i64().unwrap_or(0))
    }

    /// A permission denial: the message with the buttons, and a pending request.
    fn ask(&self, ctx: &Context, key_id: &str, session_id: &str, denials: &[Denial]) {
        let event = Event::PermissionDenied {
            key_id: key_id.into(),
            session_id: session_id.into(),
            denials: denials.to_vec(),
        };
        let text = format!(
            "{}\n\nAnswer within {} s.",
            render(&super::describe(&event)),
            self.approval_timeout.as_secs()
        );
        let token = crate::random::hex(8);
        let keyboard = json!({"reply_markup": {"inline_keyboard": [[
            {"text": self.approve_label, "callback_data": format!("a:{token}")},
            {"text": self.deny_label, "callback_data": format!("d:{token}")},
        ]]}});
        match self.send(ctx, &text, keyboard) {
            Ok(message_id) => {
                let pending = Pending {
                    message_id,
                    key_id: key_id.into(),
                    session_id: session_id.into(),
                    tool_use_ids: denials.iter().map(|d| d.tool_use_id.clone()).collect(),
                    text,
                    deadline: Instant::now() + self.approval_timeout,
                };
                self.shared.pending.lock().insert(token, pending);
            }
            Err(e) => log::warn!(
                "telegram: could not send an approval request: {}",
                ctx.app.scrub(&e)
            ),
        }
    }

    /// Ends the pending requests `which` selects with `status` appended to their message.
    fn expire(&self, ctx: &Context, which: impl Fn(&Pending) -> bool, status: &str) {
        let gone: Vec<Pending> = {
            let mut map = self.shared.pending.lock();
            let tokens: Vec<String> = map
                .iter()
                .filter(|(_, p)| which(p))
                .map(|(t, _)| t.clone())
                .collect();
            tokens.iter().filter_map(|t| map.remove(t)).collect()
        };
        for p in gone {
            edit(ctx, &self.api, self.chat_id, &p, status);
        }
    }
}

/// True for `<digits>:<letters, digits, - or _>`, the shape @BotFather gives.
pub(crate) fn valid_token(t: &str) -> bool {
    match t.split_once(':') {
        Some((id, secret)) => {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && !secret.is_empty()
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        }
        None => false,
    }
}

fn merge(body: &mut Value, extra: Value) {
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
}

impl Api {
    /// Calls `method`; the `result` of an `ok` answer, else what went wrong (unscrubbed:
    /// the caller scrubs before logging).
    fn call(
        &self,
        ctx: &Context,
        method: &str,
        body: &Value,
        delivery: &Delivery,
    ) -> Result<Value, String> {
        let url = format!("{}/{method}", self.base);
        let text = super::post_json(ctx, &url, body, delivery).map_err(|f| {
            let said = serde_json::from_str::<Value>(&f.detail)
                .ok()
                .and_then(|v| v["description"].as_str().map(str::to_string));
            match (f.status, said) {
                (Some(s), Some(d)) => format!("{method}: HTTP {s}: {d}"),
                _ => format!("{method}: {f}"),
            }
        })?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|_| format!("{method}: the Bot API answered something that is not JSON"))?;
        if v["ok"] == true {
            Ok(v["result"].clone())
        } else {
            Err(format!(
                "{method}: {}",
                v["description"].as_str().unwrap_or("not ok")
            ))
        }
    }
}

/// Appends `status` to a pending request's message and removes its buttons.
fn edit(ctx: &Context, api: &Api, chat_id: i64, p: &Pending, status: &str) {
    let body = json!({
        "chat_id": chat_id,
        "message_id": p.message_id,
        "text": format!("{}\n\n{status}", p.text),
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": true},
        "reply_markup": {"inline_keyboard": []},
    });
    if let Err(e) = api.call(ctx, "editMessageText", &body, &api.delivery) {
        log::warn!(
            "telegram: could not edit an approval request: {}",
            ctx.app.scrub(&e)
        );
    }
}

impl Plugin for Telegram {
    fn name(&self) -> &'static str {
        "telegram"
    }

    fn start(&mut self, ctx: &Context) {
        let poller = Poller {
            ctx: ctx.clone(),
            api: self.api.clone(),
            shared: self.shared.clone(),
            chat_id: self.chat_id,
            poll_timeout_secs: self.poll_timeout_secs,
        };
        // Detached: it notices the stop between two polls (at most poll_timeout_secs).
        if let Err(e) = std::thread::Builder::new()
            .name("telegram-poll".into())
            .spawn(move || poller.run())
        {
            log::error!("telegram: cannot start the polling thread ({e}); buttons will not work");
        }
    }

    fn handle(&mut self, ctx: &Context, event: &Event) {
        let kind = super::kind(event);
        if !self.events.contains(&kind) {
            return;
        }
        match event {
            Event::ApprovalGranted { session_id, .. }
            | Event::ApprovalDenied { session_id, .. }
                if self.shared.take_own(session_id, kind) => {}
            Event::PermissionDenied {
                key_id,
                session_id,
                denials,
            } => self.ask(ctx, key_id, session_id, denials),
            _ => {
                if let Err(e) = self.send(ctx, &render(&super::describe(event)), json!({})) {
                    log::warn!(
                        "telegram: could not deliver a {kind} message: {}",
                        ctx.app.scrub(&e)
                    );
                }
            }
        }
    }

    fn wake_at(&self) -> Option<Instant> {
        self.shared
            .pending
            .lock()
            .values()
            .map(|p| p.deadline)
            .min()
    }

    fn tick(&mut self, ctx: &Context) {
        let now = Instant::now();
        let secs = self.approval_timeout.as_secs();
        self.expire(
            ctx,
            |p| p.deadline <= now,
            &format!("⌛ <b>Expired</b>: no answer within {secs} s. Nothing was approved."),
        );
    }

    fn stop(&mut self, ctx: &Context) {
        self.expire(
            ctx,
            |_| true,
            "⌛ <b>Expired</b>: Claudeway stopped before an answer. Nothing was approved.",
        );
    }
}

impl Shared {
    fn note_own(&self, session_id: &str, kind: &'static str) {
        let mut own = self.own.lock();
        own.retain(|(_, _, at)| at.elapsed() < Duration::from_secs(600));
        own.push((session_id.to_string(), kind, Instant::now()));
    }

    fn take_own(&self, session_id: &str, kind: &'static str) -> bool {
        let mut own = self.own.lock();
        match own
            .iter()
            .position(|(s, k, _)| s == session_id && *k == kind)
        {
            Some(i) => {
                own.remove(i);
                true
            }
            None => false,
        }
    }
}

/// The `getUpdates` loop: button presses in, decisions out.
struct Poller {
    ctx: Context,
    api: Api,
    shared: Arc<Shared>,
    chat_id: i64,
    poll_timeout_secs: u64,
}

impl Poller {
    fn run(self) {
        let ctx = &self.ctx;
        let mut offset: i64 = 0;
        let mut backoff = Duration::from_secs(1);
        // One try per poll (the loop is the retry); the request outlives the long poll.
        let delivery = Delivery {
            timeout_secs: self.poll_timeout_secs + 10,
            max_retries: 0,
            backoff,
        };
        while !ctx.is_stopping() {
            let started = Instant::now();
            let body = json!({
                "offset": offset,
                "timeout": self.poll_timeout_secs,
                "allowed_updates": ["callback_query"],
            });
            let failure = match self.api.call(ctx, "getUpdates", &body, &delivery) {
                Ok(Value::Array(updates)) => {
                    backoff = Duration::from_secs(1);
                    for u in &updates {
                        if let Some(id) = u["update_id"].as_i64() {
                            offset = offset.max(id + 1);
                        }
                        if let Some(cq) = u.get("callback_query") {
                            self.on_press(cq);
                        }
                    }
                    // A server that answers at once with nothing is not long-polling:
                    // do not spin on it.
                    if updates.is_empty() && started.elapsed() < Duration::from_millis(200) {
                        ctx.pause(Duration::from_secs(1));
                    }
                    continue;
                }
                Ok(_) => "getUpdates: the result is not a list".to_string(),
                Err(e) => e,
            };
            if ctx.is_stopping() {
                break;
            }
            log::warn!(
                "telegram: {}; polling again in {} s",
                ctx.app.scrub(&failure),
                backoff.as_secs()
            );
            ctx.pause(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }

    fn answer(&self, callback_id: &str, text: &str) {
        let body = json!({"callback_query_id": callback_id, "text": text});
        if let Err(e) = self
            .api
            .call(&self.ctx, "answerCallbackQuery", &body, &self.api.delivery)
        {
            log::warn!(
                "telegram: could not answer a button press: {}",
                self.ctx.app.scrub(&e)
            );
        }
    }

    fn on_press(&self, cq: &Value) {
        let callback_id = cq["id"].as_str().unwrap_or_default();
        let data = cq["data"].as_str().unwrap_or_default();
        let chat = cq.pointer("/message/chat/id").and_then(Value::as_i64);
        let message = cq.pointer("/message/message_id").and_then(Value::as_i64);
        if chat != Some(self.chat_id) {
            log::warn!("telegram: ignored a button press from another chat");
            self.answer(callback_id, "Not allowed here.");
            return;
        }
        let (approve, token) = match data.split_once(':') {
            Some(("a", t)) => (true, t),
            Some(("d", t)) => (false, t),
            _ => {
                self.answer(callback_id, "Unknown button.");
                return;
            }
        };
        let pending = {
            let mut map = self.shared.pending.lock();
            match map.get(token) {
                Some(p) if Some(p.message_id) == message => map.remove(token),
                _ => None,
            }
        };
        let Some(p) = pending else {
            self.answer(callback_id, "This request is no longer open.");
            return;
        };
        let who = html(&who(&cq["from"]));
        let ctx = &self.ctx;
        if !approve {
            self.answer(callback_id, "Denied.");
            self.shared.note_own(&p.session_id, "approval_denied");
            ctx.app.publish(Event::ApprovalDenied {
                key_id: p.key_id.clone(),
                session_id: p.session_id.clone(),
            });
            edit(
                ctx,
                &self.api,
                self.chat_id,
                &p,
                &format!("⛔ <b>Denied</b> by {who}."),
            );
            return;
        }
        self.answer(callback_id, "Approved: running it now.");
        edit(
            ctx,
            &self.api,
            self.chat_id,
            &p,
            &format!("⏳ <b>Approved</b> by {who}: running the approved tools…"),
        );
        self.shared.note_own(&p.session_id, "approval_granted");
        let (ctx, api, chat_id) = (ctx.clone(), self.api.clone(), self.chat_id);
        // The approved turn runs the CLI: never on the polling thread.
        let spawned = std::thread::Builder::new()
            .name("telegram-approve".into())
            .spawn(move || {
                let outcome = crate::approval::approve(
                    &ctx.app,
                    &p.key_id,
                    &p.session_id,
                    Some(p.tool_use_ids.clone()),
                );
                let (status, parts) = outcome_messages(&p.session_id, &outcome, &who);
                edit(&ctx, &api, chat_id, &p, &status);
                let mut reply = json!({"reply_parameters": {"message_id": p.message_id, "allow_sending_without_reply": true}});
                for part in parts {
                    let mut body = json!({
                        "chat_id": chat_id,
                        "text": part,
                        "parse_mode": "HTML",
                        "link_preview_options": {"is_disabled": true},
                    });
                    merge(&mut body, std::mem::take(&mut reply));
                    if let Err(e) = api.call(&ctx, "sendMessage", &body, &api.delivery) {
                        log::warn!(
                            "telegram: could not post an approval's outcome: {}",
                            ctx.app.scrub(&e)
                        );
                        break;
                    }
                }
            });
        if let Err(e) = spawned {
            log::error!("telegram: cannot start the approval thread: {e}");
        }
    }
}

/// The approval's outcome: the status line for the original message, and the messages to
/// post (the answer split over a few messages when long).
fn outcome_messages(
    session_id: &str,
    outcome: &Result<crate::runner::TaskResponse, crate::error::ApiError>,
    who: &str,
) -> (String, Vec<String>) {
    let session = format!("session: <code>{}</code>", html(session_id));
    match outcome {
        Err(e) => (
            format!("⚠️ <b>Approved</b> by {who}, but the approval failed."),
            vec![format!(
                "⚠️ <b>Approval failed</b>\n{session}\n{} (<code>{}</code>)",
                html(&e.message),
                e.code()
            )],
        ),
        Ok(r) => {
            let icon = if r.success { "✅" } else { "❌" };
            let mut head = format!(
                "{icon} <b>Approved turn finished</b>\n{session}\nsuccess: {}\nduration: {:.1} s",
                if r.success { "yes" } else { "no" },
                r.duration_ms as f64 / 1000.0
            );
            if let Some(c) = r.cost_usd {
                head.push_str(&format!("\ncost: ${c:.4}"));
            }
            let text = r
                .result
                .as_deref()
                .or(r.error.as_deref())
                .unwrap_or("")
                .trim_end();
            let chunks = split_text(text, MESSAGE_CHARS);
            let total = chunks.len();
            let mut parts = Vec::new();
            for (i, chunk) in chunks.into_iter().take(MAX_PARTS).enumerate() {
                let mut m = String::new();
                if i == 0 {
                    m.push_str(&head);
                    m.push('\n');
                }
                m.push_str(&format!(
                    "<pre>{}</pre>",
                    html(chunk.trim_end_matches('\n'))
                ));
                if i + 1 == MAX_PARTS && total > MAX_PARTS {
                    m.push_str(&format!(
                        "\n… ({} more part(s) not shown)",
                        total - MAX_PARTS
                    ));
                }
                parts.push(m);
            }
            if parts.is_empty() {
                parts.push(head);
            }
            (format!("{icon} <b>Approved</b> by {who}."), parts)
        }
    }
}

fn who(from: &Value) -> String {
    if let Some(u) = from["username"].as_str() {
        format!("@{u}")
    } else if let Some(n) = from["first_name"].as_str() {
        n.to_string()
    } else {
        format!("user {}", from["id"])
    }
}

/// Escapes text for Telegram's HTML parse mode.
pub fn html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A note as Telegram HTML: bold title, one fact a line, the body preformatted.
pub fn render(note: &Note) -> String {
    let mut out = format!("{} <b>{}</b>", note.icon, html(&note.title));
    for (label, value) in &note.facts {
        out.push_str(&format!("\n{label}: <code>{}</code>", html(value)));
    }
    if let Some(body) = &note.body {
        out.push_str(&format!("\n<pre>{}</pre>", html(body)));
    }
    out
}

/// Splits `text` into pieces of at most `max` characters, on line boundaries where a line
/// fits, inside a line (between characters) where it does not. The pieces, concatenated,
/// are `text`.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_chars = 0;
    for line in text.split_inclusive('\n') {
        let n = line.chars().count();
        if cur_chars + n > max && cur_chars > 0 {
            out.push(std::mem::take(&mut cur));
            cur_chars = 0;
        }
        if n <= max {
            cur.push_str(line);
            cur_chars += n;
            continue;
        }
        for c in line.chars() {
            if cur_chars == max {
                out.push(std::mem::take(&mut cur));
                cur_chars = 0;
            }
            cur.push(c);
            cur_chars += 1;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        let note = Note {
            icon: "✅",
            title: "a <b> & c".into(),
            facts: vec![("key", "<i>".into())],
            body: Some("x < y && z > 0".into()),
        };
        assert_eq!(
            render(&note),
            "✅ <b>a &lt;b&gt; &amp; c</b>\nkey: <code>&lt;i&gt;</code>\n<pre>x &lt; y &amp;&amp; z &gt; 0</pre>"
        );
    }

    #[test]
    fn long_multibyte_text_splits_on_lines_by_characters() {
        let line = "é😀ü€ ".repeat(30); // 150 characters, 390 bytes
        let text: String = (0..100).map(|i| format!("{i} {line}\n")).collect();
        let parts = split_text(&text, 1000);
        assert!(parts.len() > 1);
        assert_eq!(parts.concat(), text);
        for p in &parts {
            assert!(p.chars().count() <= 1000);
            assert!(p.ends_with('\n'), "split on a line boundary");
        }
        // One line longer than the limit is cut between characters.
        let long = "😀".repeat(2500);
        let parts = split_text(&long, 1000);
        assert_eq!(
            parts.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        assert_eq!(parts.concat(), long);
        assert!(split_text("", 10).is_empty());
    }

    #[test]
    fn settings_are_checked() {
        let t = |s: &str| s.parse::<toml::Table>().unwrap();
        let none = |_: &str| None;
        let err = |s: &str| Telegram::from_table(&t(s), &none).err().unwrap();
        assert!(err("chat_id = 1").contains("bot_token is missing"));
        assert!(err("bot_token = \"123:abc\"").contains("chat_id is missing"));
        assert!(err("bot_token = \"123:abc/../x\"\nchat_id = 1").contains("does not look like"));
        assert!(err("bot_token = \"123:abc\"\nchat_id = \"@chan\"").contains("must be a number"));
        assert!(err("bot_token = \"123:abc\"\nchat_id = 1\napi_base = \"x\"").contains("api_base"));
        assert!(
            err("bot_token = \"123:abc\"\nchat_id = 1\ndeny_label = \"\"").contains("deny_label")
        );
        let ok = Telegram::from_table(
            &t("bot_token = \"123:abc\"\nchat_id = \"-100\"\napi_base = \"http://127.0.0.1:9/\""),
            &none,
        )
        .unwrap();
        assert_eq!(ok.chat_id, -100);
        assert_eq!(ok.api.base, "http://127.0.0.1:9/bot123:abc");
        assert_eq!(
            (ok.approve_label.as_str(), ok.deny_label.as_str()),
            ("Approve", "Deny")
        );
        assert_eq!(ok.approval_timeout, Duration::from_secs(60));
    }

    #[test]
    fn outcome_of_a_failed_approval() {
        let err = crate::error::ApiError::new(crate::error::Kind::Conflict, "nothing <pending>");
        let (status, parts) = outcome_messages("s1", &Err(err), "@bob");
        assert!(status.contains("@bob"));
        assert_eq!(parts.len(), 1);
        assert!(parts[0].contains("nothing &lt;pending&gt; (<code>CONFLICT</code>)"));
    }
}
