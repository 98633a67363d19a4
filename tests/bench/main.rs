//! `bench`: how much Claudeway adds on top of the CLI it runs. Starts the release
//! `claudeway` binary as a child (so its memory is its own) with `bench-claude` (a fake CLI
//! that answers at once) and prints a Markdown table: overhead per task (POST /task round
//! trip minus spawning the same fake directly from this process, interleaved), with the
//! sandbox (the default) and without; 200 concurrent 1 s tasks, both ways; /health latency
//! with 200 runs in flight and with 200 open SSE streams (while their CLIs start, and once
//! all run); /health requests per second with keep-alive; SSE first byte (the fake's write
//! of its first delta to the SSE client's read of it); and RSS: idle, with 200 runs in
//! flight, with 200 open SSE streams and with 1,000 stored sessions (the last two each on a
//! fresh server, so that what an earlier load left behind does not hide them). Numbers
//! only: it never fails a build and never runs in CI. `make bench` builds and runs it;
//! BENCHMARKS.md records a run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KEY: &str = "bench-secret-0123456789abcdef";
/// Tasks per side in the overhead measurement (plus a warm-up).
const ROUNDS: usize = 400;
const WARMUP: usize = 30;
/// Concurrent tasks in the concurrency and in-flight measurements, and open streams.
const CONCURRENT: usize = 200;
/// Streams in the SSE first-byte measurement (plus a warm-up).
const FIRST_BYTE_ROUNDS: usize = 300;
const FIRST_BYTE_WARMUP: usize = 20;
/// The config of the server that measures without the sandbox.
const SANDBOX_OFF: &str = "[sandbox]\nmode = \"off\"\n";
/// Sessions stored in the memory measurement.
const SESSIONS: usize = 1000;

fn main() {
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .expect("the bench binary's directory");
    // CLAUDEWAY_BIN measures another build of the server, e.g. the static musl release.
    let claudeway = std::env::var_os("CLAUDEWAY_BIN")
        .map(PathBuf::from)
        .map(|p| p.canonicalize().unwrap_or(p))
        .unwrap_or_else(|| bin_dir.join("claudeway"));
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
    let mut rows: Vec<[String; 4]> = Vec::new();

    // 1. Without the sandbox first (a sandboxed run leaves the kernel work of tearing down
    // its namespaces behind, which would slow what follows): overhead per task and 200
    // concurrent tasks.
    let off = Server::start_with(&claudeway, &fake, &scratch.join("off"), SANDBOX_OFF);
    eprintln!("bench: overhead per task, sandbox off ({ROUNDS} rounds)");
    let (u, ud) = overhead(off.addr, &fake);
    eprintln!("bench: {CONCURRENT} concurrent 1 s tasks, sandbox off");
    let b_off = concurrent_tasks(off.addr, "/task", "SLEEP 1000", || {});
    drop(off);

    // 2. The default server (sandbox enforced): overhead per task.
    let server = Server::start(&claudeway, &fake, &scratch.join("main"));
    let (addr, pid) = (server.addr, server.pid());
    eprintln!("bench: claudeway pid {pid} on {addr}");
    let rss_idle = rss(pid);
    eprintln!("bench: overhead per task, sandbox enforced ({ROUNDS} rounds)");
    let (t, td) = overhead(addr, &fake);
    rows.push(row(
        "POST /task round trip, p50 / p99",
        ms2(t.0, t.1),
        "",
        "",
    ));
    rows.push(row(
        "spawning the fake CLI directly, p50 / p99 (interleaved with the above)",
        ms2(td.0, td.1),
        "",
        "",
    ));
    rows.push(row(
        "**overhead per task** (sandbox enforced, the default), p50 / p99",
        ms2(t.0 - td.0, t.1 - td.1),
        "p50 < 1 ms",
        yes(t.0 - td.0 < 1.0),
    ));
    rows.push(row(
        "POST /task round trip, sandbox off, p50 / p99",
        ms2(u.0, u.1),
        "",
        "",
    ));
    rows.push(row(
        "spawning the fake CLI directly, p50 / p99 (interleaved with the above)",
        ms2(ud.0, ud.1),
        "",
        "",
    ));
    rows.push(row(
        "**overhead per task**, sandbox off, p50 / p99",
        ms2(u.0 - ud.0, u.1 - ud.1),
        "p50 < 1 ms",
        yes(u.0 - ud.0 < 1.0),
    ));

    // 3. /health requests per second, keep-alive, one client thread.
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

    // 4. 200 concurrent tasks whose fake sleeps 1 s.
    eprintln!("bench: {CONCURRENT} concurrent 1 s tasks");
    let b = concurrent_tasks(addr, "/task", "SLEEP 1000", || {});
    for (what, b) in [("", &b), (", sandbox off", &b_off)] {
        rows.push(row(
            &format!("{CONCURRENT} concurrent tasks of 1 s{what}: wall time (each: p50, max)"),
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
    }

    // 5. /health and RSS while 200 runs are in flight.
    eprintln!("bench: /health with {CONCURRENT} runs in flight");
    let mut load = Load::default();
    let busy = concurrent_tasks(addr, "/task", "SLEEP 10000", || {
        load = under_load(addr, pid)
    });
    load.rows(&mut rows, "runs in flight", busy.failed);
    let rss_after = rss(pid);

    // 6. SSE first byte: the fake writes its first delta with the time in it; the client
    // notes the time it reads that event.
    eprintln!("bench: SSE first byte ({FIRST_BYTE_ROUNDS} streams)");
    let mut first: Vec<f64> = (0..FIRST_BYTE_WARMUP + FIRST_BYTE_ROUNDS)
        .map(|_| sse_first_byte(addr))
        .skip(FIRST_BYTE_WARMUP)
        .collect();
    let (f50, f99) = (pct(&mut first, 50.0), pct(&mut first, 99.0));
    rows.push(row(
        "**SSE first byte** (fake writes its first delta → client reads it), p50 / p99",
        ms2(f50, f99),
        "p50 < 1 ms",
        yes(f50 < 1.0),
    ));
    drop(server);
    rows.push(row("RSS idle, after start", mib(rss_idle), "", ""));
    rows.push(row(
        &format!("RSS with {CONCURRENT} runs in flight"),
        mib(load.rss),
        "",
        "",
    ));
    rows.push(row("RSS idle, after the load", mib(rss_after), "", ""));

    // 7. 200 open SSE streams (each CLI sleeps 10 s before it prints), on a fresh server.
    eprintln!("bench: {CONCURRENT} open SSE streams (fresh server)");
    let server = Server::start(&claudeway, &fake, &scratch.join("streams"));
    let (addr, pid) = (server.addr, server.pid());
    let rss_fresh = rss(pid);
    let mut load = Load::default();
    let streams = concurrent_tasks(addr, "/task/stream", "SLEEP 10000", || {
        load = under_load(addr, pid)
    });
    load.rows(&mut rows, "SSE streams open", streams.failed);
    rows.push(row(
        &format!(
            "RSS with {CONCURRENT} open SSE streams (fresh server: {} idle)",
            mib(rss_fresh)
        ),
        mib(load.rss),
        "",
        "",
    ));
    drop(server);

    // 8. 1,000 stored sessions, one turn each, on a fresh server; then that server restarted
    // (it loads them from the state dir).
    eprintln!("bench: {SESSIONS} stored sessions (fresh server)");
    let dir = scratch.join("sessions");
    let server = Server::start(&claudeway, &fake, &dir);
    let fresh = rss(server.pid());
    let t = Instant::now();
    let failed = (0..SESSIONS)
        .filter(|_| !store_session(server.addr))
        .count();
    let took = t.elapsed();
    let rss_sessions = rss(server.pid());
    drop(server);
    let server = Server::start(&claudeway, &fake, &dir);
    let (_, list) = get_key(server.addr, "/sessions?per_page=1");
    let listed: serde_json::Value = serde_json::from_slice(&list).unwrap_or_default();
    let rss_loaded = rss(server.pid());
    drop(server);
    rows.push(row(
        &format!(
            "RSS with {SESSIONS} stored sessions, one turn each (fresh server: {} idle; created in {:.1} s)",
            mib(fresh),
            took.as_secs_f64()
        ),
        format!("{}{}", mib(rss_sessions), failures(failed)),
        "",
        "",
    ));
    rows.push(row(
        &format!(
            "RSS after a restart with {SESSIONS} stored sessions (it lists {})",
            listed["total"]
        ),
        mib(rss_loaded),
        "",
        "",
    ));
    let _ = std::fs::remove_dir_all(&scratch);

    println!("{}", machine(&claudeway));
    println!();
    println!("| measure | result | target | met |");
    println!("|---|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} | {} |", r[0], r[1], r[2], r[3]);
    }
}

/// POST /task round trips and direct spawns of the same fake, interleaved:
/// ((task p50, p99), (direct p50, p99)) in ms.
fn overhead(addr: SocketAddr, fake: &PathBuf) -> ((f64, f64), (f64, f64)) {
    let (mut task, mut direct) = (Vec::new(), Vec::new());
    for i in 0..WARMUP + ROUNDS {
        let (t, d) = if i % 2 == 0 {
            let d = spawn_direct(fake, "hello");
            (post_task(addr, "hello").1, d)
        } else {
            let t = post_task(addr, "hello").1;
            (t, spawn_direct(fake, "hello"))
        };
        if i >= WARMUP {
            task.push(t);
            direct.push(d);
        }
    }
    (
        (pct(&mut task, 50.0), pct(&mut task, 99.0)),
        (pct(&mut direct, 50.0), pct(&mut direct, 99.0)),
    )
}

/// What /health and memory looked like while `CONCURRENT` runs were in flight.
#[derive(Default)]
struct Load {
    /// /health latencies (ms) while the CLIs were still being started.
    starting: Vec<f64>,
    /// ... and once all of them ran (1.5 s).
    steady: Vec<f64>,
    /// From the first request until every CLI ran.
    started_in: Duration,
    /// CLIs seen running at the end (short of `CONCURRENT` if some never started).
    seen: usize,
    rss: u64,
}

impl Load {
    fn rows(&mut self, rows: &mut Vec<[String; 4]>, what: &str, failed: usize) {
        let short = if self.seen == CONCURRENT {
            String::new()
        } else {
            format!(" (only {} CLIs running)", self.seen)
        };
        let (s50, s99) = (pct(&mut self.steady, 50.0), pct(&mut self.steady, 99.0));
        rows.push(row(
            &format!("/health p50 / p99 with {CONCURRENT} {what}, all CLIs started (new connection each)"),
            format!("{}{}{short}", ms2(s50, s99), failures(failed)),
            "p99 < 5 ms",
            yes(s99 < 5.0 && failed == 0 && short.is_empty()),
        ));
        let during = if self.starting.is_empty() {
            "(no sample)".to_string()
        } else {
            let (a, b) = (pct(&mut self.starting, 50.0), pct(&mut self.starting, 99.0));
            ms2(a, b)
        };
        rows.push(row(
            &format!(
                "/health p50 / p99 while those {CONCURRENT} CLIs were being started ({:.2} s)",
                self.started_in.as_secs_f64()
            ),
            during,
            "",
            "",
        ));
    }
}

/// Runs while a burst of `CONCURRENT` long requests is being posted: /health, one request
/// after another (a new connection each), while the CLIs start and then for 1.5 s once all
/// of them run; the server's RSS then. The CLIs must sleep for longer than all this.
fn under_load(addr: SocketAddr, server: u32) -> Load {
    let began = Instant::now();
    let give_up = began + Duration::from_secs(20);
    let mut load = Load::default();
    let mut checked = Instant::now();
    let mut all = false;
    while !all && Instant::now() < give_up {
        let t = Instant::now();
        let (status, _) = get(addr, "/health");
        assert_eq!(status, 200);
        load.starting.push(ms(t.elapsed()));
        if checked.elapsed() > Duration::from_millis(50) {
            all = fakes_of(server) >= CONCURRENT;
            checked = Instant::now();
        }
    }
    load.started_in = began.elapsed();
    load.rss = rss(server);
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        let t = Instant::now();
        let (status, _) = get(addr, "/health");
        assert_eq!(status, 200);
        load.steady.push(ms(t.elapsed()));
    }
    load.seen = fakes_of(server);
    load
}

/// How many `bench-claude` processes run for `server`: its children, or (sandboxed) its
/// grandchildren, PID 1 of their own namespace under a supervisor process.
fn fakes_of(server: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut parent = std::collections::HashMap::new();
    let mut fakes = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid: u32 = tail
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        parent.insert(pid, ppid);
        if head.ends_with("(bench-claude") {
            fakes.push(pid);
        }
    }
    fakes
        .iter()
        .filter(|p| {
            let up = parent.get(p).copied().unwrap_or(0);
            up == server || parent.get(&up).copied() == Some(server)
        })
        .count()
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

/// The build measured and the machine.
fn machine(claudeway: &Path) -> String {
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
    // A static binary has no program interpreter (no PT_INTERP, whose path names ld.so).
    let linking = match std::fs::read(claudeway) {
        Ok(b) if b.windows(7).any(|w| w == b"ld-linu") => "dynamically linked",
        Ok(_) => "static",
        Err(_) => "unknown linking",
    };
    format!(
        "claudeway {} ({}, {linking}), fake CLI bench-claude; machine: {cores} cores (nproc), {cpu}, Linux {kernel}; load average at the end: {load}",
        env!("CARGO_PKG_VERSION"),
        std::env::current_dir()
            .ok()
            .and_then(|d| claudeway.strip_prefix(d).ok())
            .unwrap_or(claudeway)
            .display(),
    )
}

/// The release server as a child process, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(claudeway: &Path, fake: &Path, dir: &Path) -> Server {
        Server::start_with(claudeway, fake, dir, "")
    }

    /// With `config` as the server's claudeway.toml.
    fn start_with(claudeway: &Path, fake: &Path, dir: &Path, config: &str) -> Server {
        std::fs::create_dir_all(dir).expect("the server's directory");
        std::fs::write(dir.join("claudeway.toml"), config).expect("claudeway.toml");
        let mut child = Command::new(claudeway)
            .current_dir(dir) // its own ./claudeway.toml, not the caller's
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
    post(addr, "/task", prompt)
}

/// POSTs `{"prompt": prompt}` to `route` and reads the whole answer (a stream to its end);
/// returns the status and the time in ms.
fn post(addr: SocketAddr, route: &str, prompt: &str) -> (u16, f64) {
    let t = Instant::now();
    let (status, _) = post_json(addr, route, &format!("{{\"prompt\":\"{prompt}\"}}"));
    (status, ms(t.elapsed()))
}

fn post_json(addr: SocketAddr, route: &str, body: &str) -> (u16, Vec<u8>) {
    let head = format!(
        "POST {route} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    send(addr, &head, body.as_bytes())
}

fn get_key(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    send(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n\r\n"),
        b"",
    )
}

/// Starts a session and takes one turn in it; true when both answered 200.
fn store_session(addr: SocketAddr) -> bool {
    let (status, body) = post_json(addr, "/session/start", "{}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(id) = v["session_id"].as_str().filter(|_| status == 200) else {
        return false;
    };
    post(addr, &format!("/session/{id}"), "hello").0 == 200
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// One `POST /task/stream` of `FIRST_BYTE`: the time in ms from the fake's write of its first
/// delta (the time is the delta's text) to this client's read of that event. Then reads the
/// stream to its end.
fn sse_first_byte(addr: SocketAddr) -> f64 {
    let body = r#"{"prompt":"FIRST_BYTE"}"#;
    let head = format!(
        "POST /task/stream HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut s = connect(addr);
    s.write_all(format!("{head}{body}").as_bytes())
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let needle = b"data: t=";
    loop {
        let n = s.read(&mut buf).expect("read the stream");
        let now = now_ns();
        assert!(n > 0, "the stream ended before its first delta");
        got.extend_from_slice(&buf[..n]);
        let Some(at) = got.windows(needle.len()).position(|w| w == needle) else {
            continue;
        };
        let digits = &got[at + needle.len()..];
        let Some(end) = digits.iter().position(|b| *b == b'\n') else {
            continue;
        };
        let sent: u128 = std::str::from_utf8(&digits[..end])
            .ok()
            .and_then(|d| d.parse().ok())
            .expect("a time in the first delta");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        return now.saturating_sub(sent) as f64 / 1e6;
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    send(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"),
        b"",
    )
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

/// Posts `CONCURRENT` tasks to `route` at once; `during` runs on this thread meanwhile. The
/// wall time runs from the first request sent to the last answer read.
fn concurrent_tasks(
    addr: SocketAddr,
    route: &'static str,
    prompt: &'static str,
    during: impl FnOnce(),
) -> Burst {
    let go = Arc::new(Barrier::new(CONCURRENT + 1));
    let clients: Vec<_> = (0..CONCURRENT)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                let start = Instant::now();
                let (status, _) = post(addr, route, prompt);
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
