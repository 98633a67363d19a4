//! `bench-claude`: the fake CLI of the benchmarks. It reads the prompt from stdin and at
//! once prints the 13 lines the real CLI 2.1.330 printed for a short answer in
//! `-p --output-format stream-json --verbose --include-partial-messages` mode (captured in
//! tests/fixtures), then exits 0. `SLEEP <ms>` as the prompt's first words waits that long
//! before answering. `FIRST_BYTE` prints the first four lines, waits 5 ms, prints the first
//! text delta with the wall-clock time of that write as its text (`t=<ns since the epoch>`),
//! waits 10 ms, then prints the rest: the bench reads the time back from the SSE event and
//! so measures the path from this write to the client. No JSON work, no allocation to
//! speak of: its own cost is small and stable, so what the benchmark measures is Claudeway.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LINES: &str = include_str!("../fixtures/c_stream_partial.stdout.jsonl");
/// The first text delta's text in LINES (its fifth line).
const FIRST_TEXT: &str = "\"text\":\"echo: \"";

fn main() {
    let mut prompt = String::new();
    let _ = std::io::stdin().read_to_string(&mut prompt);
    let mut words = prompt.split_whitespace();
    let mut out = std::io::stdout().lock();
    match words.next() {
        Some("SLEEP") => {
            let ms = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(ms));
        }
        Some("FIRST_BYTE") => {
            let lines: Vec<&str> = LINES.split_inclusive('\n').collect();
            let (prefix, suffix) = lines[4].split_once(FIRST_TEXT).expect("the first delta");
            let _ = out.write_all(lines[..4].concat().as_bytes());
            let _ = out.flush();
            std::thread::sleep(Duration::from_millis(5));
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            let delta = format!("{prefix}\"text\":\"t={t}\"{suffix}");
            let _ = out.write_all(delta.as_bytes());
            let _ = out.flush();
            std::thread::sleep(Duration::from_millis(10));
            let _ = out.write_all(lines[5..].concat().as_bytes());
            let _ = out.flush();
            return;
        }
        _ => {}
    }
    let _ = out.write_all(LINES.as_bytes());
    let _ = out.flush();
}
