use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// Everything the server sends until it closes the connection (or 20 s pass).
fn read_all(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn health_ok(srv: &TestServer) {
    let r = srv.get("/health", None);
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_huge_content_length_is_answered_and_survived() {
    // tiny_http 0.12 drained unread bodies into `vec![0; Content-Length]`: this request
    // aborted the whole process (patched in vendor/tiny_http).
    let srv = TestServer::start();
    for key in [None, Some(USER)] {
        let mut s = connect(srv.addr);
        let mut head =
            "POST /task HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n".to_string();
        if let Some(k) = key {
            head.push_str(&format!("Authorization: Bearer {k}\r\n"));
        }
        head.push_str("\r\n{\"prompt\":");
        s.write_all(head.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let (status, _) = read_head(&mut r);
        assert_eq!(status, if key.is_none() { 401 } else { 413 });
    }
    for _ in 0..3 {
        health_ok(&srv);
    }
}

#[test]
fn an_unread_body_is_never_read_as_the_next_request() {
    let srv = TestServer::start();
    // A body longer than the 1 MiB that is drained after an answer, with a request hidden
    // past that point: the connection must be closed, never parse it.
    let hidden = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let len = (1 << 20) + 4096 + hidden.len();
    let mut s = connect(srv.addr);
    let head = format!("POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut reader = s.try_clone().unwrap();
    let got = std::thread::spawn(move || read_all(&mut reader));
    let body = vec![b'x'; (1 << 20) + 4096];
    let _ = s
        .write_all(&body)
        .and_then(|_| s.write_all(hidden.as_bytes()));
    let got = got.join().unwrap();
    assert!(
        !got.contains("200 OK"),
        "the hidden request was answered: {got}"
    );

    // The same with a chunked body, which tiny_http did not drain at all.
    let mut s = connect(srv.addr);
    let chunk = format!("{hidden}{}", "y".repeat(2000));
    let req = format!(
        "POST /nope HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
        chunk.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let got = read_all(&mut s);
    assert!(got.starts_with("HTTP/1.1 404"), "{got}");
    assert_eq!(
        got.matches("HTTP/1.1").count(),
        1,
        "one answer, then close: {got}"
    );
    health_ok(&srv);
}

#[test]
fn request_heads_are_bounded() {
    let srv = TestServer::start();
    let mut s = connect(srv.addr);
    let long = format!(
        "GET /health HTTP/1.1\r\nX-Long: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = s.write_all(long.as_bytes());
    assert_eq!(read_all(&mut s), "", "closed without an answer");
    let mut s = connect(srv.addr);
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let _ = s.write_all(format!("GET /health HTTP/1.1\r\n{many}\r\n").as_bytes());
    let got = read_all(&mut s);
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    health_ok(&srv);
}

/// Starts sending a 2000-byte body one byte every 100 ms (200 s in all), from a thread that
/// stops when the connection is shut down. Returns the thread and the connection.
fn trickle(addr: std::net::SocketAddr) -> (std::thread::JoinHandle<()>, TcpStream) {
    let mut s = connect(addr);
    let head = format!(
        "POST /task HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {USER}\r\nContent-Length: 2000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let control = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..2000 {
            if s.write_all(b" ").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    (writer, control)
}

/// A slow client that waits for its answer; returns the status, then hangs up.
fn slow_client(addr: std::net::SocketAddr) -> std::thread::JoinHandle<u16> {
    std::thread::spawn(move || {
        let (writer, s) = trickle(addr);
        let (status, _) = read_head(&mut BufReader::new(s.try_clone().unwrap()));
        let _ = s.shutdown(std::net::Shutdown::Both);
        writer.join().unwrap();
        status
    })
}

/// GET /health with its own read timeout.
fn health_within(addr: std::net::SocketAddr, limit: Duration) -> u16 {
    let mut s = connect(addr);
    s.set_read_timeout(Some(limit)).unwrap();
    send_request(&mut s, "GET", "/health", None, &[], b"");
    read_head(&mut BufReader::new(s)).0
}

#[test]
fn a_slow_body_never_holds_a_worker() {
    // One worker, three clients that would take 200 s to send their bodies: the worker stays
    // free (a worker reading one of those bodies would make /health wait 60 s).
    let srv = TestServer::with(|c| c.workers = 1);
    let slow: Vec<_> = (0..3).map(|_| trickle(srv.addr)).collect();
    for _ in 0..10 {
        assert_eq!(health_within(srv.addr, Duration::from_secs(10)), 200);
        std::thread::sleep(Duration::from_millis(50));
    }
    for (writer, s) in slow {
        let _ = s.shutdown(std::net::Shutdown::Both);
        writer.join().unwrap();
    }

    // The body must be complete within body_timeout: 408 TIMEOUT, nothing runs.
    let srv = TestServer::with(|c| c.body_timeout = Duration::from_secs(2));
    let slow: Vec<_> = (0..2).map(|_| slow_client(srv.addr)).collect();
    for h in slow {
        assert_eq!(h.join().unwrap(), 408);
    }
    assert!(srv.fake_runs().is_empty(), "nothing ran");
}

#[test]
fn the_accept_loop_outlives_its_read_timeout() {
    // The listening socket's read timeout (inherited by accepted sockets) also wakes accept()
    // up; tiny_http 0.12 ended its accept loop on that (patched in vendor/tiny_http).
    let srv = TestServer::with(|c| c.idle_timeout = Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(health_within(srv.addr, Duration::from_secs(20)), 200);
}

#[test]
fn a_silent_client_is_disconnected_after_the_idle_timeout() {
    let srv = TestServer::with(|c| c.idle_timeout = Duration::from_secs(1));
    // Connected, sends nothing.
    let mut idle = connect(srv.addr);
    // Sends a head and part of a body, then nothing: 408.
    let mut stalled = connect(srv.addr);
    let head = format!(
        "POST /task HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {USER}\r\nContent-Length: 3000\r\n\r\n{}",
        " ".repeat(1500)
    );
    stalled.write_all(head.as_bytes()).unwrap();
    // Kept alive after one answer, then silent.
    let mut kept = connect(srv.addr);
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    assert_eq!(read_all(&mut idle), "");
    let got = read_all(&mut stalled);
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("TIMEOUT"), "{got}");
    let got = read_all(&mut kept);
    assert_eq!(got.matches("HTTP/1.1 200").count(), 1, "{got}");
    // read_all gives up after 20 s: each socket was closed by the server well before.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_thousand_idle_sockets_do_not_stop_health() {
    let srv = TestServer::start();
    // Each socket costs two descriptors here (both ends are in this process).
    let limit = nofile_limit();
    let n = 1000.min(limit.saturating_sub(512) as usize / 2);
    assert!(
        n >= 100,
        "the open-files limit ({limit}) is too low for this test"
    );
    let idle: Vec<TcpStream> = (0..n).map(|_| connect(srv.addr)).collect();
    // Let the server's accept loop catch up with all of them.
    assert!(eventually(Duration::from_secs(30), || {
        let t = Instant::now();
        health_ok(&srv);
        t.elapsed() < Duration::from_millis(500)
    }));
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        health_ok(&srv);
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "{n} idle sockets: /health p50 {:?}, p90 {:?}, max {:?}",
        times[25], times[45], times[49]
    );
    drop(idle);
    health_ok(&srv);
}

fn nofile_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

#[test]
fn json_depth_and_utf8_are_checked() {
    let srv = TestServer::start();
    let nested = |depth: usize| {
        format!(
            "{{\"prompt\":\"deep\",\"extra\":{}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let raw = |body: String| request(srv.addr, "POST", "/task", Some(USER), &[], body.as_bytes());
    let msg = raw(nested(200)).error(400, "BAD_REQUEST");
    assert!(msg.contains("recursion limit"), "{msg}");
    assert_eq!(raw(nested(100)).status, 200);
    let mut bad = b"{\"prompt\":\"caf".to_vec();
    bad.extend_from_slice(&[0xc3, 0x28]);
    bad.extend_from_slice(b"\"}");
    let r = request(srv.addr, "POST", "/task", Some(USER), &[], &bad);
    assert!(r.error(400, "BAD_REQUEST").contains("UTF-8"));
    // Over a WebSocket too.
    let (mut ws, _) = ws_connect(srv.addr, Some(USER), &[]).unwrap();
    ws.send(tungstenite::Message::Text(nested(200).into()))
        .unwrap();
    let events = ws_events(&mut ws);
    assert_eq!(events[0]["code"], "BAD_REQUEST", "{events:?}");
    let _ = json!({});
}
