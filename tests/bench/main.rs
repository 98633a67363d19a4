//! `bench`: how much Claudeway adds on top of the CLI it runs. Starts the release
//! `claudeway` binary as a child (so its memory is its own) with `bench-claude` (a fake CLI
//! that answers at once) and prints a Markdown table: overhead per task (POST /task round
//! trip minus spawning the same fake directly from this process, interleaved), 200
//! concurrent 1 s tasks, /health latency with 200 runs in flight, /health requests per
//! second with keep-alive, and RSS. Numbers only: it never fails a build and never runs in
//! CI. `make bench` builds and runs it; BENCHMARKS.md records a run.
//!
//! Figures that need features not built yet (SSE first byte, stored sessions, open
//! streams) print as "n/a (not built yet)".

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const KEY: &str = "bench-secret-0123456789abcdef";
/// Tasks per side in the overhead measurement (plus a warm-up).
const ROUNDS: usize = 400;
const WARMUP: usize = 30;
/// Concurrent tasks in the concurrency and in-flight measurements.
const CONCURRENT: usize = 200;

fn main() {
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .expect("the bench binary's directory");
    let claudeway = bin_dir.join("claudeway");
    let fake = bin_dir.join("bench-claude");
    for b in [&claudeway, &fake] {
        if !b.is_file() {
            eprintln!(
                "bench: {} is missing; run `make bench` (it builds claudeway, bench and bench-claude in release mode)",
                b.display()
            );
            std::process::exit(2);
        }
    }
    let scratch = std::env::temp_dir().join(format!("claudeway-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch dir");

    let server = Server::start(&claudeway, &fake, &scratch);
    let addr = server.addr;
    eprintln!("bench: claudeway pid {} on {addr}", server.pid());
    let rss_idle = rss(server.pid());
    let mut rows: Vec<[String; 4]> = Vec::new();

    // 1. Overhead per task: POST /task vs the same fake spawned directly, interleaved.
    eprintln!("bench: overhead per task ({ROUNDS} rounds)");
    let (mut task, mut direct) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + ROUNDS {
        let (t, d) = if i % 2 == 0 {
            let d = spawn_direct(&fake, "hello");
            (post_task(addr, "hello").1, d)
        } else {
            let t = post_task(addr, "hello").1;
            (t, spawn_direct(&fake, "hello"))
        };
        if i >= WARMUP {
            task.push(t);
            direct.push(d);
        }
    }
    let (t50, t99) = (pct(&mut task, 50.0), pct(&mut task, 99.0));
    let (d50, d99) = (pct(&mut direct, 50.0), pct(&mut direct, 99.0));
    let (o50, o99) = (t50 - d50, t99 - d99);
    rows.push(row(
        "POST /task round trip, p50 / p99",
        ms2(t50, t99),
        "",
        "",
    ));
    rows.push(row(
        "spawning the fake CLI directly, p50 / p99",
        ms2(d50, d99),
        "",
        "",
    ));
    rows.push(row(
        "**overhead per task**, p50 / p99",
        ms2(o50, o99),
        "p50 < 1 ms",
        yes(o50 < 1.0),
    ));

    // 2. /health requests per second, keep-alive, one client thread.
    eprintln!("bench: /health keep-alive");
    let (rps, mut idle_health) = health_keepalive(addr, Duration::from_secs(2));
    rows.push(row(
        "/health requests/s, keep-alive, 1 client thread",
        format!("{rps:.0}"),
        "",
        "",
    ));
    let (h50, h99) = (pct(&mut idle_health, 50.0), pct(&mut idle_health, 99.0));
    rows.push(row(
        "/health p50 / p99, idle (keep-alive)",
        ms2(h50, h99),
        "",
        "",
    ));

    // 3. 200 concurrent tasks whose fake sleeps 1 s.
    eprintln!("bench: {CONCURRENT} concurrent 1 s tasks");
    let b = concurrent_tasks(addr, "SLEEP 1000", || {});
    rows.push(row(
        &format!("{CONCURRENT} concurrent tasks of 1 s: wall time (each: p50, max)"),
        format!(
            "{:.2} s ({:.2} s, {:.2} s){}",
            b.wall.as_secs_f64(),
            b.each_p50 / 1000.0,
            b.each_max / 1000.0,
            failures(b.failed)
        ),
        "≈ 1 s (≤ 1.5 s)",
        yes(b.failed == 0 && b.wall < Duration::from_millis(1500)),
    ));

    // 4. /health and RSS while 200 runs are in flight.
    eprintln!("bench: /health with {CONCURRENT} runs in flight");
    let pid = server.pid();
    let mut during: Vec<f64> = Vec::new();
    let mut rss_busy = 0;
    let mut running_seen = 0;
    let busy = concurrent_tasks(addr, "SLEEP 3000", || {
        let until = Instant::now() + Duration::from_secs(10);
        while running(addr) < CONCURRENT && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        rss_busy = rss(pid);
        let end = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < end {
            let t = Instant::now();
            let (status, _) = get(addr, "/health");
            assert_eq!(status, 200);
            during.push(ms(t.elapsed()));
        }
        running_seen = running(addr);
    });
    let (b50, b99) = (pct(&mut during, 50.0), pct(&mut during, 99.0));
    rows.push(row(
        &format!("/health p50 / p99 with {CONCURRENT} runs in flight (new connection each)"),
        format!(
            "{}{}{}",
            ms2(b50, b99),
            failures(busy.failed),
            if running_seen == CONCURRENT {
                String::new()
            } else {
                format!(" (only {running_seen} in flight at the end)")
            }
        ),
        "p99 < 5 ms",
        yes(b99 < 5.0),
    ));
    let rss_after = rss(pid);
    rows.push(row("RSS idle, after start", mib(rss_idle), "", ""));
    rows.push(row(
        &format!("RSS with {CONCURRENT} runs in flight"),
        mib(rss_busy),
        "",
        "",
    ));
    rows.push(row("RSS idle, after the load", mib(rss_after), "", ""));
    for (what, target) in [
        ("SSE first byte (fake prints → client reads), p50", "< 1 ms"),
        ("/health p99 with 200 SSE streams open", "< 5 ms"),
        ("RSS with 1,000 stored sessions", ""),
        ("RSS with 200 open streams", ""),
    ] {
        rows.push(row(what, "n/a (not built yet)".into(), target, ""));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&scratch);

    println!("{}", machine());
    println!();
    println!("| measure | result | target | met |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r[0], r[1], r[2], r[3]);
    }
}

fn row(what: &str, value: String, target: &str, met: &str) -> [String; 4] {
    [what.into(), value, target.into(), met.into()]
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "**no**"
    }
}

fn failures(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} failed!)")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ms2(a: f64, b: f64) -> String {
    format!("{a:.3} / {b:.3} ms")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The `p`th percentile (nearest rank) of `v`, which it sorts.
fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// VmRSS of `pid` in KiB.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "claudeway {} (release build), fake CLI bench-claude; machine: {cores} cores (nproc), {cpu}, Linux {kernel}; load average at the end: {load}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The release server as a child process, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(claudeway: &Path, fake: &Path, dir: &Path) -> Server {
        let mut child = Command::new(claudeway)
            .current_dir(dir) // no ./claudeway.toml of the caller
            .args(["--host", "127.0.0.1", "--port", "0", "--force"])
            .args(["--keys", &format!("bench:{KEY}")])
            .arg("--claude-bin")
            .arg(fake)
            .arg("--workdir")
            .arg(dir.join("work"))
            .arg("--log-dir")
            .arg(dir.join("logs"))
            .args(["--max-concurrent", "256"])
            .env("HOME", dir)
            .env_remove("WRAPPER_KEYS")
            .env_remove("CLAUDE_BIN")
            .env_remove("LOG_LEVEL")
            .env_remove("WORKERS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("claudeway starts");
        let mut r = BufReader::new(child.stderr.take().unwrap());
        let port: u16 = loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                panic!("claudeway exited before listening");
            }
            if let Some(a) = l.trim_end().split(" listening on ").nth(1) {
                break a.rsplit(':').next().unwrap().parse().unwrap();
            }
        };
        // Keep reading the log (one line per request) so the server never blocks on it.
        std::thread::spawn(move || for _ in r.lines() {});
        Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// One request on a new connection (`Connection: close`); returns (status, body).
fn send(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = connect(addr);
    let mut req = head.as_bytes().to_vec();
    req.extend_from_slice(body);
    s.write_all(&req).expect("write");
    let mut r = BufReader::new(s);
    let (status, len) = read_head(&mut r);
    let mut out = Vec::new();
    match len {
        Some(n) => {
            out.resize(n, 0);
            r.read_exact(&mut out).expect("body");
        }
        None => {
            r.read_to_end(&mut out).expect("body");
        }
    }
    (status, out)
}

/// Reads a status line and headers; returns the status and Content-Length.
fn read_head(r: &mut impl BufRead) -> (u16, Option<usize>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut len = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header");
        let h = h.trim_end();
        if h.is_empty() {
            return (status, len);
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok();
            }
        }
    }
}

fn post_task(addr: SocketAddr, prompt: &str) -> (u16, f64) {
    let body = format!("{{\"prompt\":\"{prompt}\"}}");
    let head = format!(
        "POST /task HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let t = Instant::now();
    let (status, _) = send(addr, &head, body.as_bytes());
    (status, ms(t.elapsed()))
}

fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    send(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"),
        b"",
    )
}

/// Runs in flight, from /health.
fn running(addr: SocketAddr) -> usize {
    let (_, body) = get(addr, "/health");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    v["runs"]["running"].as_u64().unwrap_or(0) as usize
}

/// Spawns the fake as Claudeway does (same argv, prompt on stdin, stdout read to the end)
/// and returns the time in ms.
fn spawn_direct(fake: &PathBuf, prompt: &str) -> f64 {
    let session = uuid::Uuid::new_v4().to_string();
    let t = Instant::now();
    let mut child = Command::new(fake)
        .args([
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
            "--model",
            "sonnet",
            "--session-id",
            &session,
            "--dangerously-skip-permissions",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the fake starts");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(prompt.as_bytes());
    drop(stdin);
    let mut out = Vec::new();
    let _ = child.stdout.take().unwrap().read_to_end(&mut out);
    let _ = child.wait();
    ms(t.elapsed())
}

/// /health on one keep-alive connection for `span`: (requests per second, latencies in ms).
fn health_keepalive(addr: SocketAddr, span: Duration) -> (f64, Vec<f64>) {
    let s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let req = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n";
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed() < span {
        let t = Instant::now();
        w.write_all(req).unwrap();
        let (status, len) = read_head(&mut r);
        assert_eq!(status, 200);
        let mut body = vec![0; len.expect("Content-Length on /health")];
        r.read_exact(&mut body).unwrap();
        lat.push(ms(t.elapsed()));
    }
    (lat.len() as f64 / start.elapsed().as_secs_f64(), lat)
}

/// What a burst of concurrent tasks took.
struct Burst {
    /// From the start signal until the last answer.
    wall: Duration,
    /// Round trip of each task, in ms.
    each_p50: f64,
    each_max: f64,
    /// Answers that were not 200.
    failed: usize,
}

/// Posts `CONCURRENT` tasks at once; `during` runs on this thread meanwhile. The wall time
/// runs from the first request sent to the last answer read.
fn concurrent_tasks(addr: SocketAddr, prompt: &'static str, during: impl FnOnce()) -> Burst {
    let go = Arc::new(Barrier::new(CONCURRENT + 1));
    let clients: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                let start = Instant::now();
                let (status, _) = post_task(addr, prompt);
                (status, start, Instant::now())
            })
        })
        .collect();
    go.wait();
    during();
    let results: Vec<(u16, Instant, Instant)> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    let first = results.iter().map(|r| r.1).min().unwrap();
    let last = results.iter().map(|r| r.2).max().unwrap();
    let mut each: Vec<f64> = results.iter().map(|r| ms(r.2 - r.1)).collect();
    Burst {
        wall: last - first,
        each_p50: pct(&mut each, 50.0),
        each_max: pct(&mut each, 100.0),
        failed: results.iter().filter(|r| r.0 != 200).count(),
    }
}
