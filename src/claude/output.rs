//! The CLI's `stream-json` stdout, one line at a time, turned into [`Line`]s, and the
//! [`ResultLine`] that ends a run. Formats are the real CLI's (2.1.330), checked in the tests
//! below against lines captured from it (tests/fixtures). Parse as JSON, never by key order.
//! This module is pure: no I/O, no clock.

use serde_json::Value;

/// Token counts as the API reports them. `cache_write` is `cache_creation_input_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Tokens {
    pub fn from_usage(usage: &Value) -> Tokens {
        let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
        Tokens {
            input: n("input_tokens"),
            output: n("output_tokens"),
            cache_read: n("cache_read_input_tokens"),
            cache_write: n("cache_creation_input_tokens"),
        }
    }

    pub fn add(&mut self, other: &Tokens) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
    }

    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache_read + self.cache_write
    }

    /// The sum over the models of a result's `modelUsage` (camelCase per-model totals).
    pub fn from_model_usage(model_usage: &Value) -> Tokens {
        let mut t = Tokens::default();
        for m in model_usage.as_object().into_iter().flat_map(|o| o.values()) {
            let n = |k: &str| m.get(k).and_then(Value::as_u64).unwrap_or(0);
            t.add(&Tokens {
                input: n("inputTokens"),
                output: n("outputTokens"),
                cache_read: n("cacheReadInputTokens"),
                cache_write: n("cacheCreationInputTokens"),
            });
        }
        t
    }
}

/// A permission the CLI refused, as listed in the result line.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Denial {
    pub tool_name: String,
    pub tool_use_id: String,
    #[serde(default)]
    pub tool_input: Value,
}

/// The final `{"type":"result",...}` line.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultLine {
    /// `success`, `error_max_turns`, `error_during_execution`.
    pub subtype: String,
    pub is_error: bool,
    /// The answer text; absent on the error subtypes.
    pub result: Option<String>,
    /// Present on the error subtypes instead of `result`.
    pub errors: Vec<String>,
    pub session_id: Option<String>,
    pub cost_usd: Option<f64>,
    pub tokens: Tokens,
    pub denials: Vec<Denial>,
    /// The model the CLI actually used (first key of `modelUsage`).
    pub model: Option<String>,
    pub num_turns: u64,
    pub stop_reason: Option<String>,
    pub terminal_reason: Option<String>,
    pub api_error_status: Option<u64>,
}

impl ResultLine {
    /// True when the CLI reports success. API errors say `subtype:"success"` with
    /// `is_error:true`, so both are checked.
    pub fn ok(&self) -> bool {
        !self.is_error && self.subtype == "success"
    }

    /// The CLI's own words for a failure.
    pub fn error_text(&self) -> String {
        if !self.errors.is_empty() {
            return self.errors.join("; ");
        }
        match &self.result {
            Some(r) if !r.is_empty() => r.clone(),
            _ => format!("the run ended with `{}`", self.subtype),
        }
    }
}

/// One stdout line, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// `system/init`: the session id and the resolved model.
    Init {
        session_id: Option<String>,
        model: Option<String>,
    },
    /// `stream_event` (partial messages): the raw API event.
    Stream(Value),
    /// `assistant`: one content block of a model message.
    Assistant(Value),
    /// `system/permission_denied`.
    PermissionDenied {
        tool_name: String,
        tool_use_id: String,
        message: String,
    },
    Result(ResultLine),
    /// Any other JSON line (`user` tool results, `system/status`, retries, ...).
    Other(Value),
    /// Not JSON: the CLI never prints this in stream-json; kept for the log.
    Garbage(String),
}

impl Line {
    /// The text of a `content_block_delta` / `text_delta` stream event.
    pub fn text_delta(&self) -> Option<&str> {
        let Line::Stream(ev) = self else { return None };
        text_delta(ev)
    }

    /// The text of an `assistant` line whose block is text (used when there are no deltas).
    pub fn assistant_text(&self) -> Option<&str> {
        let Line::Assistant(msg) = self else {
            return None;
        };
        let block = msg.get("content")?.as_array()?.first()?;
        (block.get("type")?.as_str()? == "text").then(|| block.get("text")?.as_str())?
    }
}

/// The text of a `content_block_delta` / `text_delta` API event.
pub fn text_delta(ev: &Value) -> Option<&str> {
    if ev.get("type")?.as_str()? != "content_block_delta" {
        return None;
    }
    let delta = ev.get("delta")?;
    if delta.get("type")?.as_str()? != "text_delta" {
        return None;
    }
    delta.get("text")?.as_str()
}

pub fn parse_line(line: &str) -> Line {
    let line = line.trim();
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return Line::Garbage(line.chars().take(200).collect());
    };
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    match (
        v.get("type").and_then(Value::as_str),
        v.get("subtype").and_then(Value::as_str),
    ) {
        (Some("system"), Some("init")) => Line::Init {
            session_id: s(&v, "session_id"),
            model: s(&v, "model"),
        },
        (Some("system"), Some("permission_denied")) => Line::PermissionDenied {
            tool_name: s(&v, "tool_name").unwrap_or_default(),
            tool_use_id: s(&v, "tool_use_id").unwrap_or_default(),
            message: s(&v, "message").unwrap_or_default(),
        },
        (Some("stream_event"), _) => match v.get("event") {
            Some(ev) if ev.is_object() => Line::Stream(ev.clone()),
            _ => Line::Other(v),
        },
        (Some("assistant"), _) => match v.get("message") {
            Some(m) if m.is_object() => Line::Assistant(m.clone()),
            _ => Line::Other(v),
        },
        (Some("result"), _) => Line::Result(parse_result(&v)),
        _ => Line::Other(v),
    }
}

fn parse_result(v: &Value) -> ResultLine {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let denials = v
        .get("permission_denials")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| serde_json::from_value(d.clone()).ok())
                .collect()
        })
        .unwrap_or_default();
    let errors = v
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let model = v
        .get("modelUsage")
        .and_then(Value::as_object)
        .and_then(|m| m.keys().next().cloned());
    ResultLine {
        subtype: s("subtype").unwrap_or_else(|| "success".into()),
        is_error: v.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        result: s("result"),
        errors,
        session_id: s("session_id"),
        cost_usd: v.get("total_cost_usd").and_then(Value::as_f64),
        tokens: result_tokens(v),
        denials,
        model,
        num_turns: v.get("num_turns").and_then(Value::as_u64).unwrap_or(0),
        stop_reason: s("stop_reason"),
        terminal_reason: s("terminal_reason"),
        api_error_status: v.get("api_error_status").and_then(Value::as_u64),
    }
}

/// A result's tokens: its `usage`; when that is all zero while `modelUsage` has counts (the
/// `error_max_budget_usd` result of 2.1.330 reports zero `usage`), the sum of `modelUsage`.
fn result_tokens(v: &Value) -> Tokens {
    let usage = v.get("usage").map(Tokens::from_usage).unwrap_or_default();
    if usage.total() > 0 {
        return usage;
    }
    v.get("modelUsage")
        .map(Tokens::from_model_usage)
        .unwrap_or_default()
}

/// Usage seen so far in the partial-message stream, for runs that end without a result
/// line (timeout, cancel): input and cache counts from each `message_start`, output from the
/// last `message_delta` of that message.
#[derive(Debug, Default, Clone)]
pub struct UsageSoFar {
    done: Tokens,
    current: Tokens,
}

impl UsageSoFar {
    pub fn observe(&mut self, line: &Line) {
        let Line::Stream(ev) = line else { return };
        match ev.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.done.add(&self.current);
                let usage = ev.pointer("/message/usage").cloned().unwrap_or(Value::Null);
                self.current = Tokens::from_usage(&usage);
            }
            Some("message_delta") => {
                if let Some(out) = ev.pointer("/usage/output_tokens").and_then(Value::as_u64) {
                    self.current.output = out;
                }
            }
            _ => {}
        }
    }

    pub fn tokens(&self) -> Tokens {
        let mut t = self.done;
        t.add(&self.current);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARTIAL: &str = include_str!("../../tests/fixtures/c_stream_partial.stdout.jsonl");
    const DENIED: &str = include_str!("../../tests/fixtures/f2_tool_default_stream.stdout.jsonl");
    const API_ERROR: &str =
        include_str!("../../tests/fixtures/g2_api_error_500_stream.stdout.jsonl");
    const BUDGET: &str = include_str!("../../tests/fixtures/g11_max_budget_partial.stdout.jsonl");
    const BUDGET_PLAIN: &str =
        include_str!("../../tests/fixtures/g11b_max_budget_stream.stdout.jsonl");

    fn lines(s: &str) -> Vec<Line> {
        s.lines().map(parse_line).collect()
    }

    #[test]
    fn partial_stream_gives_deltas_and_result() {
        let ls = lines(PARTIAL);
        assert!(matches!(&ls[0], Line::Init { model: Some(m), .. } if m == "claude-opus-5-5"));
        let text: String = ls.iter().filter_map(Line::text_delta).collect();
        assert_eq!(text, "echo: hello partial");
        let Some(Line::Result(r)) = ls.last() else {
            panic!("no result")
        };
        assert!(r.ok());
        assert_eq!(r.result.as_deref(), Some("echo: hello partial"));
        assert_eq!(r.cost_usd, Some(0.058994));
        assert_eq!(
            r.tokens,
            Tokens {
                input: 2541,
                output: 7,
                cache_read: 0,
                cache_write: 9738
            }
        );
        assert_eq!(r.model.as_deref(), Some("claude-opus-5-5"));
        let mut usage = UsageSoFar::default();
        ls.iter().for_each(|l| usage.observe(l));
        assert_eq!(usage.tokens(), r.tokens);
        let assistant: Vec<_> = ls.iter().filter_map(Line::assistant_text).collect();
        assert_eq!(assistant, ["echo: hello partial"]);
    }

    #[test]
    fn denials_are_kept() {
        let ls = lines(DENIED);
        assert!(ls.iter().any(
            |l| matches!(l, Line::PermissionDenied { tool_name, .. } if tool_name == "Write")
        ));
        let Some(Line::Result(r)) = ls.last() else {
            panic!("no result")
        };
        assert!(r.ok());
        assert_eq!(r.denials.len(), 1);
        assert_eq!(r.denials[0].tool_name, "Write");
        assert!(r.denials[0].tool_use_id.starts_with("toolu_"));
        assert!(r.denials[0].tool_input.get("file_path").is_some());
    }

    #[test]
    fn api_error_is_a_failure_despite_subtype_success() {
        let Some(Line::Result(r)) = lines(API_ERROR).pop() else {
            panic!("no result")
        };
        assert_eq!(r.subtype, "success");
        assert!(r.is_error && !r.ok());
        assert_eq!(r.api_error_status, Some(500));
        assert!(
            r.error_text().starts_with("API Error: 500"),
            "{}",
            r.error_text()
        );
    }

    #[test]
    fn garbage_and_error_subtypes() {
        assert!(matches!(parse_line("not json"), Line::Garbage(_)));
        assert!(matches!(parse_line("{\"type\":\"user\"}"), Line::Other(_)));
        let Line::Result(r) = parse_line(
            r#"{"type":"result","subtype":"error_max_turns","is_error":true,"errors":["Reached maximum number of turns (1)"]}"#,
        ) else {
            panic!()
        };
        assert!(!r.ok());
        assert_eq!(r.error_text(), "Reached maximum number of turns (1)");
    }

    #[test]
    fn max_budget_result_has_its_tokens_in_model_usage() {
        // Captured from 2.1.330 with --max-budget-usd below the cost of the first API call.
        for capture in [BUDGET, BUDGET_PLAIN] {
            let Some(Line::Result(r)) = lines(capture).pop() else {
                panic!("no result")
            };
            assert_eq!(r.subtype, "error_max_budget_usd");
            assert!(r.is_error && !r.ok());
            assert_eq!(r.result, None);
            assert_eq!(r.terminal_reason.as_deref(), Some("budget_exhausted"));
            assert!(
                r.error_text().starts_with("Reached maximum budget ($"),
                "{}",
                r.error_text()
            );
            assert!(r.cost_usd.unwrap() > 0.8);
            assert_eq!(
                r.tokens.input, 200_000,
                "from modelUsage: usage is all zero"
            );
        }
        let mut usage = UsageSoFar::default();
        lines(BUDGET).iter().for_each(|l| usage.observe(l));
        assert_eq!(usage.tokens().input, 200_000);
    }
}
