//! Live streams of a run: what SSE (`sse.rs`) and WebSocket (`ws.rs`) have in common. A
//! [`Progress`] turns the CLI's lines into `text` payloads (the accumulated text, or only the
//! new piece in delta mode), and [`final_events`] gives the ordered tail of every stream:
//! `permission_denied` (when there were denials), `error` (when the run failed), then exactly
//! one `done` carrying the TaskResponse.

pub mod sse;
pub mod ws;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::claude::Line;
use crate::error::{ApiError, Kind};
use crate::runner::Finished;

/// What `text` events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The whole text so far (the documented default).
    Accumulated,
    /// Only the new piece (`"stream_mode": "delta"`).
    Delta,
}

impl Mode {
    pub fn parse(v: Option<&str>) -> Result<Mode, ApiError> {
        match v {
            None | Some("accumulated") => Ok(Mode::Accumulated),
            Some("delta") => Ok(Mode::Delta),
            Some(_) => Err(ApiError::bad_request(
                "`stream_mode` must be \"accumulated\" or \"delta\"",
            )),
        }
    }
}

/// Text seen so far in a run.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    text: String,
    /// A new model message began after some text: separate it with a blank line.
    separate: bool,
    /// Deltas were seen since the last `message_start` (then `assistant` lines repeat them).
    deltas_in_message: bool,
}

impl Progress {
    pub fn new(mode: Mode) -> Progress {
        Progress {
            mode,
            text: String::new(),
            separate: false,
            deltas_in_message: false,
        }
    }

    /// The `text` payload this line produces, if any.
    pub fn on_line(&mut self, line: &Line) -> Option<String> {
        if let Line::Stream(ev) = line {
            if ev.get("type").and_then(Value::as_str) == Some("message_start") {
                self.separate = !self.text.is_empty();
                self.deltas_in_message = false;
                return None;
            }
        }
        let piece = match (line.text_delta(), line.assistant_text()) {
            (Some(d), _) => {
                self.deltas_in_message = true;
                d
            }
            // A message that came without partial deltas (the CLI's non-streaming fallback).
            (None, Some(t)) if !self.deltas_in_message => {
                self.deltas_in_message = true;
                t
            }
            _ => return None,
        };
        if piece.is_empty() {
            return None;
        }
        let mut new = String::new();
        if std::mem::take(&mut self.separate) {
            new.push_str("\n\n");
        }
        new.push_str(piece);
        self.text.push_str(&new);
        Some(match self.mode {
            Mode::Accumulated => self.text.clone(),
            Mode::Delta => new,
        })
    }
}

/// One event of a stream's ending.
#[derive(Debug, Clone, PartialEq)]
pub enum Final {
    PermissionDenied(Value),
    Error { message: String, code: String },
    Done(Value),
}

/// Code of a stream `error` event for a run the CLI itself reported as failed (the HTTP
/// answer of /task would be 200 with `success:false`).
pub const CLI_ERROR_CODE: &str = "CLI_ERROR";

/// The ordered end of a stream for `f`.
pub fn final_events(f: &Finished) -> Vec<Final> {
    let mut out = Vec::new();
    let r = &f.response;
    if !r.permission_denials.is_empty() {
        out.push(Final::PermissionDenied(
            serde_json::to_value(&r.permission_denials).unwrap_or_default(),
        ));
    }
    if !r.success {
        let (message, code) = match &f.error {
            Some(e) => (e.message.clone(), e.code().to_string()),
            None => (
                r.error.clone().unwrap_or_else(|| "the run failed".into()),
                CLI_ERROR_CODE.into(),
            ),
        };
        out.push(Final::Error { message, code });
    }
    out.push(Final::Done(serde_json::to_value(r).unwrap_or_default()));
    out
}

/// Counts open streams against `max_streams`.
#[derive(Debug, Default)]
pub struct StreamCount(AtomicUsize);

/// An open stream's place; dropping it frees the place.
pub struct StreamGuard(Arc<crate::app::App>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StreamCount {
    pub fn open(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Takes a stream place, or 503 `OVERLOADED` with `Retry-After` beyond `max_streams`.
pub fn take_place(app: &Arc<crate::app::App>) -> Result<StreamGuard, ApiError> {
    let max = app.config.max_streams;
    let prev = app.streams.0.fetch_add(1, Ordering::SeqCst);
    if prev >= max {
        app.streams.0.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::new(
            Kind::Overloaded,
            format!(
                "{max} streams are open, the most this server allows (max_streams); retry later"
            ),
        )
        .with_header("Retry-After", "5"));
    }
    Ok(StreamGuard(app.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claude::output::parse_line;

    const PARTIAL: &str = include_str!("../../tests/fixtures/c_stream_partial.stdout.jsonl");
    const FALLBACK: &str =
        include_str!("../../tests/fixtures/g7s_stream_error_stream.stdout.jsonl");

    fn texts(file: &str, mode: Mode) -> Vec<String> {
        let mut p = Progress::new(mode);
        file.lines()
            .filter_map(|l| p.on_line(&parse_line(l)))
            .collect()
    }

    #[test]
    fn accumulated_and_delta() {
        assert_eq!(
            texts(PARTIAL, Mode::Accumulated),
            [
                "echo: ",
                "echo: hello ",
                "echo: hello par",
                "echo: hello partial"
            ]
        );
        assert_eq!(
            texts(PARTIAL, Mode::Delta),
            ["echo: ", "hello ", "par", "tial"]
        );
    }

    #[test]
    fn assistant_lines_do_not_repeat_streamed_text() {
        assert_eq!(
            texts(FALLBACK, Mode::Accumulated).last().unwrap(),
            "partial answer before a stream error"
        );
        assert_eq!(
            texts(FALLBACK, Mode::Delta).concat(),
            "partial answer before a stream error"
        );
    }
}
