//! `claudeway healthcheck`: GET /health on a running server over a plain TCP socket (so a
//! container's HEALTHCHECK needs no curl). Exit 0 when it answers `"status":"ok"`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

pub fn probe(host: &str, port: &str) -> Result<(), String> {
    let addr = format!("{host}:{port}")
        .to_socket_addrs()
        .map_err(|e| format!("healthcheck: bad address {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("healthcheck: no address for {host}:{port}"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("healthcheck: cannot connect to {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("healthcheck: cannot send the request to {addr}: {e}"))?;
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    if text.starts_with("HTTP/1.1 200") && text.contains("\"status\":\"ok\"") {
        println!("ok");
        Ok(())
    } else {
        Err(format!(
            "healthcheck: unhealthy answer from {addr}: {}",
            text.lines().next().unwrap_or("nothing")
        ))
    }
}
