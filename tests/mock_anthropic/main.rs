//! `mock-anthropic`: the e2e tests' mock of the Anthropic Messages API as a program, for
//! running the real CLI against it by hand:
//!
//! ```sh
//! cargo run --bin mock-anthropic -- 8765 &
//! ANTHROPIC_BASE_URL=http://127.0.0.1:8765 ANTHROPIC_API_KEY=sk-test \
//!   CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 claude -p "hello"
//! ```
//!
//! The scripts are described in mock.rs. One line per request goes to stderr; the first
//! line on stderr is `mock-anthropic listening on http://127.0.0.1:PORT` (port 0 picks a
//! free one), and `GET /_mock/requests` lists what it received as JSON.

mod mock;

fn main() {
    let port = std::env::args().nth(1).unwrap_or_else(|| "0".into());
    let m = mock::Mock::start_on(&format!("127.0.0.1:{port}"), true);
    eprintln!("mock-anthropic listening on {}", m.base_url());
    loop {
        std::thread::park();
    }
}
