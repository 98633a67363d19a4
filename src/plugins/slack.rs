//! The Slack plugin: one readable message per event (filtered by `events`) to an incoming
//! webhook, `{"text": ...}` in Slack's mrkdwn, escaped. Deliveries are retried on 429, 5xx
//! and network errors with a doubling backoff, a bounded number of times, on this plugin's
//! own thread: a slow or dead Slack delays only Slack's queue, which drops (and counts)
//! events when full. The webhook URL is a secret: it is never logged.

use serde_json::json;

use super::{Context, Delivery, Note, Plugin};
use crate::config::Env;
use crate::events::Event;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[allow(dead_code)] // read by config.rs; allowed here so the table checks as a whole
    enabled: Option<bool>,
    webhook_url: Option<String>,
    webhook_url_env: Option<String>,
    events: Option<Vec<String>>,
    timeout_secs: Option<u64>,
    max_retries: Option<u32>,
    queue: Option<usize>,
}

pub struct Slack {
    webhook_url: String,
    events: Vec<&'static str>,
    delivery: Delivery,
    pub(super) queue: usize,
}

impl Slack {
    pub fn from_table(table: &toml::Table, env: Env) -> Result<Slack, String> {
        let s: Settings = super::settings("slack", table)?;
        let url = super::secret(
            "slack",
            "webhook_url",
            s.webhook_url,
            s.webhook_url_env,
            "SLACK_WEBHOOK_URL",
            env,
        )?
        .ok_or("[plugins.slack] webhook_url is missing: set webhook_url (your incoming webhook, https://hooks.slack.com/services/...), webhook_url_env = \"VAR\", or SLACK_WEBHOOK_URL")?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err("[plugins.slack] webhook_url must start with https:// (an incoming webhook URL from Slack)".into());
        }
        Ok(Slack {
            webhook_url: url,
            events: super::event_filter("slack", s.events)?,
            delivery: Delivery {
                timeout_secs: super::number("slack", "timeout_secs", s.timeout_secs, 10, 1, 300)?,
                max_retries: super::number(
                    "slack",
                    "max_retries",
                    s.max_retries.map(u64::from),
                    3,
                    0,
                    10,
                )? as u32,
                backoff: std::time::Duration::from_millis(500),
            },
            queue: super::number(
                "slack",
                "queue",
                s.queue.map(|q| q as u64),
                super::QUEUE as u64,
                1,
                100_000,
            )? as usize,
        })
    }
}

impl Plugin for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn start(&mut self, _ctx: &Context) {}

    fn handle(&mut self, ctx: &Context, event: &Event) {
        if !self.events.contains(&super::kind(event)) {
            return;
        }
        let body = json!({"text": render(&super::describe(event))});
        if let Err(e) = super::post_json(ctx, &self.webhook_url, &body, &self.delivery) {
            log::warn!(
                "slack: could not deliver a {} message: {}",
                super::kind(event),
                ctx.app.scrub(&e.to_string())
            );
        }
    }
}

/// Escapes text for Slack mrkdwn (the three characters Slack reserves).
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Facts shown as code (identifiers); the others are plain.
const CODE: [&str; 6] = ["key", "session", "model", "route", "address", "tools"];

/// A note as Slack mrkdwn: bold title, facts on one line, the body as a quote.
pub fn render(note: &Note) -> String {
    let mut out = format!("{} *{}*", note.icon, escape(&note.title));
    if !note.facts.is_empty() {
        let facts: Vec<String> = note
            .facts
            .iter()
            .map(|(label, value)| {
                let value = escape(value);
                if CODE.contains(label) {
                    format!("{label}: `{}`", value.replace('`', "'"))
                } else {
                    format!("{label}: {value}")
                }
            })
            .collect();
        out.push('\n');
        out.push_str(&facts.join(" · "));
    }
    if let Some(body) = &note.body {
        for line in body.lines() {
            out.push_str("\n> ");
            out.push_str(&escape(line));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_escaped_mrkdwn() {
        let note = Note {
            icon: "✅",
            title: "Task <completed>".into(),
            facts: vec![("key", "c`i".into()), ("cost", "$1 & more".into())],
            body: Some("a < b\nc > d".into()),
        };
        assert_eq!(
            render(&note),
            "✅ *Task &lt;completed&gt;*\nkey: `c'i` · cost: $1 &amp; more\n> a &lt; b\n> c &gt; d"
        );
    }

    #[test]
    fn settings_are_checked() {
        let t = |s: &str| s.parse::<toml::Table>().unwrap();
        let none = |_: &str| None;
        let err = Slack::from_table(&t("enabled = true"), &none)
            .err()
            .unwrap();
        assert!(err.contains("webhook_url is missing"), "{err}");
        let err = Slack::from_table(&t("webhook_url = \"ftp://x\""), &none)
            .err()
            .unwrap();
        assert!(err.contains("https://"), "{err}");
        let err = Slack::from_table(&t("webhook_ur = \"https://x\""), &none)
            .err()
            .unwrap();
        assert!(
            err.contains("[plugins.slack]") && err.contains("webhook_ur"),
            "{err}"
        );
        let err = Slack::from_table(&t("webhook_url = \"https://x\"\nmax_retries = 99"), &none)
            .err()
            .unwrap();
        assert!(err.contains("max_retries must be from 0 to 10"), "{err}");
        let env = |k: &str| (k == "SLACK_WEBHOOK_URL").then(|| "https://hooks/x".to_string());
        let s = Slack::from_table(&t("enabled = true"), &env).unwrap();
        assert_eq!(s.webhook_url, "https://hooks/x");
    }
}
