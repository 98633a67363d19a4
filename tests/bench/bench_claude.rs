//! `bench-claude`: the fake CLI of the benchmarks. It reads the prompt from stdin and at
//! once prints the 13 lines the real CLI 2.1.330 printed for a short answer in
//! `-p --output-format stream-json --verbose --include-partial-messages` mode (captured in
//! tests/fixtures), then exits 0. `SLEEP <ms>` as the prompt's first words waits that long
//! before answering. No JSON work, no allocation to speak of: its own cost is small and
//! stable, so what the benchmark measures is Claudeway.

use std::io::{Read, Write};

const LINES: &str = include_str!("../fixtures/c_stream_partial.stdout.jsonl");

fn main() {
    let mut prompt = String::new();
    let _ = std::io::stdin().read_to_string(&mut prompt);
    let mut words = prompt.split_whitespace();
    if words.next() == Some("SLEEP") {
        let ms = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(LINES.as_bytes());
    let _ = out.flush();
}
