//! The text Claude writes in a run, as numbered blocks, from the CLI's partial-message events
//! (the raw Messages API events it forwards). A run that uses tools has one
//! `message_start`/`message_stop` per model turn, each numbering its blocks from 0; here the
//! text blocks of all turns are numbered 0, 1, 2, … in order, and tool-use and thinking blocks
//! are left out (they are Claude Code's own, not the client's). A message that came without
//! partial events (the CLI's non-streaming fallback) gives its text from the `assistant`
//! lines. Pure: no I/O.

use std::collections::HashMap;

use serde_json::Value;

use crate::claude::Line;

/// What a line adds to the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Text block `n` begins.
    Start(usize),
    /// More text of block `n`, as the CLI printed it.
    Delta(usize, String),
    /// Block `n` is complete.
    Stop(usize),
}

#[derive(Debug, Default)]
pub struct Blocks {
    /// The text of each block so far.
    pub texts: Vec<String>,
    /// Open text blocks of the current model turn: the CLI's index → ours.
    open: HashMap<u64, usize>,
    /// The current model turn came as partial events (its `assistant` lines repeat them).
    streamed: bool,
}

impl Blocks {
    pub fn on_line(&mut self, line: &Line) -> Vec<Piece> {
        match line {
            Line::Stream(ev) => self.on_event(ev),
            Line::Assistant(_) if !self.streamed => match line.assistant_text() {
                Some(t) => {
                    let n = self.texts.len();
                    self.texts.push(t.to_string());
                    vec![
                        Piece::Start(n),
                        Piece::Delta(n, t.to_string()),
                        Piece::Stop(n),
                    ]
                }
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn on_event(&mut self, ev: &Value) -> Vec<Piece> {
        let index = ev.get("index").and_then(Value::as_u64);
        match ev.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                self.open.clear();
                self.streamed = true;
                Vec::new()
            }
            Some("content_block_start") => {
                let block = ev.get("content_block");
                if block.and_then(|b| b.get("type")).and_then(Value::as_str) != Some("text") {
                    return Vec::new();
                }
                let Some(i) = index else { return Vec::new() };
                let first = block
                    .and_then(|b| b.get("text"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let n = self.texts.len();
                self.texts.push(first.to_string());
                self.open.insert(i, n);
                let mut out = vec![Piece::Start(n)];
                if !first.is_empty() {
                    out.push(Piece::Delta(n, first.to_string()));
                }
                out
            }
            Some("content_block_delta") => {
                let (Some(n), Some(text)) = (
                    index.and_then(|i| self.open.get(&i).copied()),
                    crate::claude::output::text_delta(ev).map(str::to_string),
                ) else {
                    return Vec::new();
                };
                self.texts[n].push_str(&text);
                vec![Piece::Delta(n, text)]
            }
            Some("content_block_stop") => match index.and_then(|i| self.open.remove(&i)) {
                Some(n) => vec![Piece::Stop(n)],
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// The answer's text blocks, empty ones left out; `result` (the CLI's result text) when
    /// the run printed no text at all.
    pub fn answer(&self, result: Option<&str>) -> Vec<String> {
        let texts: Vec<String> = self
            .texts
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect();
        match result {
            Some(r) if texts.is_empty() && !r.is_empty() => vec![r.to_string()],
            _ => texts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claude::output::parse_line;

    const TOOL: &str =
        include_str!("../../tests/fixtures/f1c_tool_skip_perms_partial.stdout.jsonl");
    const PARTIAL: &str = include_str!("../../tests/fixtures/c_stream_partial.stdout.jsonl");
    const FALLBACK: &str =
        include_str!("../../tests/fixtures/g7s_stream_error_stream.stdout.jsonl");

    fn run(file: &str) -> (Blocks, Vec<Piece>) {
        let mut b = Blocks::default();
        let pieces = file
            .lines()
            .flat_map(|l| b.on_line(&parse_line(l)))
            .collect();
        (b, pieces)
    }

    #[test]
    fn tool_turns_are_renumbered_and_tool_blocks_left_out() {
        let (b, pieces) = run(TOOL);
        assert_eq!(b.texts, ["I'll write the file.", "done"]);
        let starts: Vec<_> = pieces
            .iter()
            .filter(|p| matches!(p, Piece::Start(_) | Piece::Stop(_)))
            .cloned()
            .collect();
        assert_eq!(
            starts,
            [
                Piece::Start(0),
                Piece::Stop(0),
                Piece::Start(1),
                Piece::Stop(1)
            ]
        );
        assert_eq!(pieces[1], Piece::Delta(0, "I'll ".into()));
        assert!(!pieces
            .iter()
            .any(|p| matches!(p, Piece::Delta(_, t) if t.contains("file_path"))));
    }

    #[test]
    fn deltas_as_printed_and_no_repeats_from_assistant_lines() {
        let (b, pieces) = run(PARTIAL);
        let deltas: Vec<_> = pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Delta(0, t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deltas, ["echo: ", "hello ", "par", "tial"]);
        assert_eq!(b.answer(None), ["echo: hello partial"]);
        let (b, _) = run(FALLBACK);
        assert_eq!(b.answer(None), ["partial answer before a stream error"]);
    }

    #[test]
    fn without_partial_events_the_assistant_lines_count() {
        let mut b = Blocks::default();
        let line = parse_line(
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"whole"}]}}"#,
        );
        assert_eq!(
            b.on_line(&line),
            [
                Piece::Start(0),
                Piece::Delta(0, "whole".into()),
                Piece::Stop(0)
            ]
        );
        assert_eq!(
            Blocks::default().answer(Some("from result")),
            ["from result"]
        );
    }
}
