//! Test support: [`TestServer`] starts Claudeway in-process on 127.0.0.1, port 0, with the
//! fake CLI and a private directory tree, and shuts it down on drop; a small HTTP client
//! over a real socket, with read timeouts so that a bug fails a test instead of hanging it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use claudeway::config::Config;
use claudeway::server::{self, Running};
use serde_json::Value;

pub const ADMIN: &str = "admin-secret-0123456789";
pub const USER: &str = "user-secret-0123456789";
/// A second non-admin key.
pub const OTHER: &str = "other-secret-0123456789";
/// A secret in the server's own environment that no CLI run may see.
pub const LEAKY: &str = "leak-me-not-9876543210";

static INIT: Once = Once::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn init() {
    INIT.call_once(|| {
        // The gateway's environment holds secrets the CLI must not inherit.
        std::env::set_var("WRAPPER_KEYS", format!("leak:{LEAKY}"));
        std::env::set_var("CLAUDECODE", "1");
        if std::env::var("TEST_LOG").is_ok() {
            let _ = simplelog::SimpleLogger::init(
                log::LevelFilter::Debug,
                simplelog::Config::default(),
            );
        }
    });
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("cw-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p.canonicalize().unwrap())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn fake_claude() -> String {
    env!("CARGO_BIN_EXE_fake-claude").to_string()
}

/// The config every test server starts from.
pub fn test_config(root: &Path) -> Config {
    let raw = claudeway::flags::parse([
        "--keys",
        &format!("admin:{ADMIN},user:{USER},other:{OTHER}"),
    ])
    .unwrap();
    let mut cfg = Config::load(&raw, &|_| None).unwrap();
    cfg.host = "127.0.0.1".into();
    cfg.port = 0;
    cfg.workers = 4;
    cfg.claude_bin = fake_claude();
    // The sandbox helper is the server's own binary; ours is the test harness.
    cfg.self_exe = env!("CARGO_BIN_EXE_claudeway").into();
    cfg.workdir = root.join("work");
    cfg.state_dir = root.join("state");
    cfg.log_dir = root.join("logs");
    cfg.kill_grace = Duration::from_millis(500);
    cfg.result_grace = Duration::from_millis(1000);
    cfg.claude_env = vec![
        (
            "HOME".into(),
            root.join("home").to_string_lossy().into_owned(),
        ),
        ("IS_SANDBOX".into(), "1".into()),
        (
            "FAKE_CLAUDE_LOG".into(),
            root.join("fake").to_string_lossy().into_owned(),
        ),
    ];
    // Every test runs the fake CLI in the sandbox; it writes its records here.
    std::fs::create_dir_all(root.join("fake")).unwrap();
    cfg.sandbox.extra.write.push(root.join("fake"));
    cfg
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub running: Option<Running>,
    pub dir: TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    pub fn with(f: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::in_dir(TempDir::new("srv"), f)
    }

    /// A server over an existing directory tree (a restart keeps `dir`).
    pub fn in_dir(dir: TempDir, f: impl FnOnce(&mut Config)) -> TestServer {
        init();
        let mut cfg = test_config(dir.path());
        f(&mut cfg);
        let running = server::start(cfg).expect("server starts");
        TestServer {
            addr: running.addr,
            running: Some(running),
            dir,
        }
    }

    pub fn app(&self) -> &claudeway::app::App {
        &self.running.as_ref().unwrap().app
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> Resp {
        request(self.addr, "GET", path, key, &[], b"")
    }

    pub fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Resp {
        request(
            self.addr,
            "POST",
            path,
            key,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    pub fn delete(&self, path: &str, key: Option<&str>) -> Resp {
        request(self.addr, "DELETE", path, key, &[], b"")
    }

    /// The audit lines of `dir` (a key id or `_unauthorized`), all months.
    pub fn audit(&self, dir: &str) -> Vec<Value> {
        self.app().audit.flush();
        let mut out = Vec::new();
        let Ok(files) = std::fs::read_dir(self.root().join("logs").join(dir)) else {
            return out;
        };
        let mut files: Vec<_> = files.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            for line in std::fs::read_to_string(f).unwrap().lines() {
                out.push(
                    serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("bad audit line {line}: {e}")),
                );
            }
        }
        out
    }

    /// What each fake CLI run recorded (argv, cwd, prompt, env), in no particular order.
    pub fn fake_runs(&self) -> Vec<Value> {
        let Ok(files) = std::fs::read_dir(self.root().join("fake")) else {
            return Vec::new();
        };
        files
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| serde_json::from_str(&t).ok())
            .collect()
    }

    /// The one fake run whose prompt is `prompt`.
    pub fn fake_run(&self, prompt: &str) -> Value {
        let runs: Vec<Value> = self
            .fake_runs()
            .into_iter()
            .filter(|r| r["prompt"] == prompt)
            .collect();
        assert_eq!(runs.len(), 1, "expected one run with prompt {prompt:?}");
        runs.into_iter().next().unwrap()
    }
}

impl TestServer {
    /// Stops the server and hands back its directory tree, for a restart.
    pub fn stop(mut self) -> TempDir {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::ZERO, &|| true);
        }
        std::mem::replace(&mut self.dir, TempDir(PathBuf::new()))
    }

    /// When each normally ended fake run started and ended (ns), by prompt.
    pub fn fake_spans(&self) -> Vec<(String, u128, u128)> {
        self.fake_runs()
            .into_iter()
            .filter_map(|r| {
                let run = r["run"].as_str()?;
                let end =
                    std::fs::read_to_string(self.root().join(format!("fake/{run}.end"))).ok()?;
                Some((
                    r["prompt"].as_str()?.to_string(),
                    r["started_ns"].as_str()?.parse().ok()?,
                    end.trim().parse().ok()?,
                ))
            })
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::ZERO, &|| true);
        }
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the documented error shape and returns the message.
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        let v = self.json();
        assert_eq!(v["code"], code, "body: {v}");
        assert_eq!(v.as_object().unwrap().len(), 2, "only error and code: {v}");
        v["error"].as_str().expect("error is a string").to_string()
    }
}

/// The argv a fake CLI run recorded.
pub fn argv(run: &Value) -> Vec<String> {
    run["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The value that follows `flag` in `argv`.
pub fn after<'a>(argv: &'a [String], flag: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == flag)
        .map(|i| argv[i + 1].as_str())
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    // Generous: on a loaded 2-core machine hundreds of runs may be in flight. A bug still
    // fails the test instead of hanging it.
    s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(300))).unwrap();
    s
}

/// Writes a request head (and body) with `Connection: close`.
pub fn send_request(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
}

/// Reads a status line and headers.
pub fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (status, headers)
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = connect(addr);
    send_request(&mut s, method, path, key, headers, body);
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        let _ = r.read_to_end(&mut body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

/// Polls `f` until it is true or `limit` passes; returns the last answer. For waiting on
/// things that happen in the background (a process dying), never for timing assertions.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True if the process a fake run recorded is alive. Its `pid` is in its own PID namespace
/// (`pid_ns`; a sandboxed run is PID 1 of a namespace of its own), so it is looked up there.
pub fn run_alive(run: &Value) -> bool {
    let pid = run["pid"].as_u64().expect("pid") as u32;
    match run["pid_ns"].as_str() {
        Some(ns) if !ns.is_empty() => ns_process_alive(ns, pid),
        _ => process_alive(pid),
    }
}

/// True if a live process has pid `pid` in the PID namespace `ns` (`pid:[4026531836]`).
pub fn ns_process_alive(ns: &str, pid: u32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let path = p.path();
        let in_ns =
            std::fs::read_link(path.join("ns/pid")).is_ok_and(|l| l.to_string_lossy() == ns);
        in_ns
            && std::fs::read_to_string(path.join("status")).is_ok_and(|st| {
                let nspid = st.lines().find_map(|l| l.strip_prefix("NSpid:"));
                let state = st.lines().find_map(|l| l.strip_prefix("State:"));
                nspid.and_then(|l| l.split_whitespace().last()) == Some(&pid.to_string())
                    && !state.is_some_and(|s| s.trim_start().starts_with(['Z', 'X']))
            })
    })
}

/// True if a process with this pid exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// One SSE event as received.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub name: String,
    pub data: String,
    /// The event's bytes exactly as sent.
    pub raw: String,
}

/// A client of `POST /task/stream`, reading the chunked body as it arrives.
pub struct SseClient {
    r: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    buf: String,
    pub comments: usize,
    done: bool,
}

impl SseClient {
    /// Opens the stream; on a non-200 answer, returns the plain response instead.
    pub fn open(addr: SocketAddr, key: Option<&str>, body: &Value) -> Result<SseClient, Resp> {
        SseClient::open_path(addr, "/task/stream", key, body)
    }

    pub fn open_path(
        addr: SocketAddr,
        path: &str,
        key: Option<&str>,
        body: &Value,
    ) -> Result<SseClient, Resp> {
        let mut s = connect(addr);
        send_request(
            &mut s,
            "POST",
            path,
            key,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        let mut r = BufReader::new(s);
        let (status, headers) = read_head(&mut r);
        if status != 200 {
            let mut body = Vec::new();
            let _ = r.read_to_end(&mut body);
            return Err(Resp {
                status,
                headers,
                body,
            });
        }
        Ok(SseClient {
            r,
            status,
            headers,
            buf: String::new(),
            comments: 0,
            done: false,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn read_chunk(&mut self) -> bool {
        if self.done {
            return false;
        }
        let mut size = String::new();
        if self.r.read_line(&mut size).unwrap_or(0) == 0 {
            self.done = true;
            return false;
        }
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        let mut chunk = vec![0; n + 2];
        self.r.read_exact(&mut chunk).expect("chunk");
        if n == 0 {
            self.done = true;
            return false;
        }
        self.buf
            .push_str(std::str::from_utf8(&chunk[..n]).expect("utf-8 chunk"));
        true
    }

    /// The next event (comments are counted and skipped); None at the end of the stream.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                if raw.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                let mut name = String::new();
                let mut data: Vec<&str> = Vec::new();
                for line in raw.trim_end_matches('\n').split('\n') {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v);
                    }
                }
                let data = data.join("\n");
                return Some(SseEvent { name, data, raw });
            }
            if !self.read_chunk() {
                return None;
            }
        }
    }

    /// Every remaining event.
    pub fn rest(&mut self) -> Vec<SseEvent> {
        std::iter::from_fn(|| self.next_event()).collect()
    }

    /// True once the body ended with its last chunk.
    pub fn ended(&self) -> bool {
        self.done
    }
}

pub type Ws = tungstenite::WebSocket<TcpStream>;

/// Connects to `/task/ws` with the key as Bearer or (with `protocols`) as a subprotocol.
pub fn ws_connect(
    addr: SocketAddr,
    key: Option<&str>,
    protocols: &[&str],
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut req = tungstenite::http::Request::builder()
        .uri(format!("ws://{addr}/task/ws"))
        .header("Host", addr.to_string())
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        );
    if let Some(k) = key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    if !protocols.is_empty() {
        req = req.header("Sec-WebSocket-Protocol", protocols.join(", "));
    }
    let stream = connect(addr);
    tungstenite::client::client(req.body(()).unwrap(), stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => panic!("handshake interrupted"),
    })
}

/// Reads JSON text messages until the server closes; returns them in order.
pub fn ws_events(ws: &mut Ws) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                out.push(serde_json::from_str(t.as_str()).expect("JSON frame"))
            }
            Ok(tungstenite::Message::Close(_)) => {}
            Ok(_) => {}
            Err(_) => return out,
        }
    }
}

impl TestServer {
    /// The fake CLI run of an approval (its prompt starts with "The user approved").
    pub fn approval_run(&self) -> Value {
        self.fake_runs()
            .into_iter()
            .find(|r| {
                r["prompt"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("The user approved")
            })
            .expect("an approval run")
    }
}

/// The real `claudeway` binary, ready to start in `dir` on 127.0.0.1 (port 0) with the fake
/// CLI, `work/` and `logs/` under `dir`, HOME = `dir`, `env` added, stdin null and stderr piped
/// (callers add their flags and spawn). Our own variables are removed from its environment.
pub fn binary_in(dir: &Path, env: &[(&str, &str)]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_claudeway"));
    c.current_dir(dir)
        .env_remove("WRAPPER_KEYS")
        .env_remove("PORT")
        .env_remove("HOST")
        .env_remove("LOG_DIR")
        .env("HOME", dir)
        .env("IS_SANDBOX", "1")
        .envs(env.iter().copied())
        .args([
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--claude-bin",
            &fake_claude(),
        ])
        .args(["--workdir", "work", "--log-dir", "logs"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    c
}

impl TestServer {
    /// Posts a `/task` whose fake CLI leaves a grandchild in its process group, expects the
    /// error `status`/`code`, and waits until the grandchild and the CLI are both gone.
    /// Returns the error message.
    pub fn grandchild_task_is_killed(&self, timeout_secs: u64, status: u16, code: &str) -> String {
        // Inside a folder the sandboxed fake may write to.
        let pidfile = self.root().join("fake/grandchild.pid");
        let prompt = format!("GRANDCHILD {}", pidfile.display());
        let msg = self
            .post(
                "/task",
                Some(USER),
                &serde_json::json!({"prompt": prompt, "timeout_secs": timeout_secs}),
            )
            .error(status, code);
        let grandchild: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let cli = self.fake_run(&prompt);
        let ns = cli["pid_ns"].as_str().unwrap().to_string();
        assert!(
            eventually(Duration::from_secs(10), || {
                !ns_process_alive(&ns, grandchild) && !run_alive(&cli)
            }),
            "the CLI and its grandchild are gone"
        );
        msg
    }

    /// Waits (up to 20 s) until the gate shows `running` runs and `queued` waiting.
    pub fn wait_load(&self, running: usize, queued: usize) {
        assert!(
            eventually(Duration::from_secs(20), || self.app().gate.load()
                == (running, queued)),
            "the gate never showed {running} running and {queued} queued: {:?}",
            self.app().gate.load()
        );
    }
}

/// POSTs `body` on its own thread, for a request that will wait (queued or held).
pub fn post_async(
    addr: SocketAddr,
    key: &'static str,
    path: &str,
    body: Value,
) -> std::thread::JoinHandle<Resp> {
    post_async_as(addr, key, path, None, body)
}

/// [`post_async`], naming the request with `X-Request-Id: <request_id>` when given.
pub fn post_async_as(
    addr: SocketAddr,
    key: &'static str,
    path: &str,
    request_id: Option<&'static str>,
    body: Value,
) -> std::thread::JoinHandle<Resp> {
    let path = path.to_string();
    std::thread::spawn(move || {
        let headers: Vec<(&str, &str)> = request_id
            .map(|id| ("X-Request-Id", id))
            .into_iter()
            .collect();
        request(
            addr,
            "POST",
            &path,
            Some(key),
            &headers,
            body.to_string().as_bytes(),
        )
    })
}
