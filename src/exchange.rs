//! [`Exchange`]: one HTTP request on its way to an answer. It carries the request id,
//! the start time and the authenticated key, reads the body under the size and time limits,
//! and answers exactly once: `respond` writes a [`Reply`] (adding `X-Request-Id` and the
//! exchange's extra headers), logs the request's one operational log line and counts it in the
//! metrics. If an exchange is dropped unanswered (a panic, a forgotten path) it answers 500
//! `INTERNAL_ERROR` itself, so no client is left hanging. An exchange may move from a pool
//! worker to a run thread. Bodies are read only on run threads (a slow client must not hold a
//! worker); an answer that leaves a body unread is written from a short-lived thread of its
//! own, because tiny_http reads the rest of the body (up to 1 MiB) when the request is dropped.

use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tiny_http::{Header, Method, Request, Response};

use crate::error::{ApiError, Kind, Shape};
use crate::reply::Reply;

pub struct Exchange {
    req: Option<Request>,
    pub request_id: String,
    pub method: Method,
    /// The path without the query string.
    pub path: String,
    pub query: String,
    pub started: Instant,
    pub key_id: Option<String>,
    /// The route pattern (`/session/{id}`), `unmatched` until the router knows it; a metrics
    /// label.
    pub route: &'static str,
    /// Headers added to the answer, whatever it is (`X-RateLimit-*`).
    pub extra_headers: Vec<(String, String)>,
    /// Where the answer is counted.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The shape errors are answered in (the SDK routes speak their API's).
    pub shape: Shape,
    /// The status answered, for the log line.
    status: u16,
    /// The body was read to its end.
    body_read: bool,
    /// Counts this request as unanswered until it is answered (shutdown waits for it).
    inflight: Option<Inflight>,
}

/// One request (or stream) not yet answered; dropping it counts it done.
#[derive(Debug)]
pub struct Inflight(Arc<AtomicUsize>);

impl Inflight {
    pub fn new(counter: &Arc<AtomicUsize>) -> Inflight {
        counter.fetch_add(1, Ordering::SeqCst);
        Inflight(counter.clone())
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request id the client chose (`X-Request-Id`), if it is one we can carry safely into logs
/// and URLs: 1 to 128 of `A-Z a-z 0-9 - _ . :`, starting with a letter or digit (so never
/// `..`, which clients would fold out of `/task/{id}/cancel`). Anything else is ignored and
/// we make one.
pub fn client_request_id(v: &str) -> Option<String> {
    let ok = (1..=128).contains(&v.len())
        && v.as_bytes()[0].is_ascii_alphanumeric()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| v.to_string())
}

impl Exchange {
    pub fn new(req: Request) -> Exchange {
        let request_id = req
            .headers()
            .iter()
            .find(|h| h.field.equiv("X-Request-Id"))
            .and_then(|h| client_request_id(h.value.as_str()))
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let url = req.url().to_string();
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (url, String::new()),
        };
        Exchange {
            method: req.method().clone(),
            req: Some(req),
            request_id,
            path,
            query,
            started: Instant::now(),
            key_id: None,
            route: "unmatched",
            extra_headers: Vec::new(),
            metrics: None,
            shape: Shape::Native,
            status: 0,
            body_read: false,
            inflight: None,
        }
    }

    /// Counts this exchange in `counter` until it is answered (or its stream ends).
    pub fn track(&mut self, counter: &Arc<AtomicUsize>) {
        self.inflight = Some(Inflight::new(counter));
    }

    /// Takes the in-flight guard, for a stream that outlives the exchange (WebSocket).
    pub fn take_inflight(&mut self) -> Option<Inflight> {
        self.inflight.take()
    }

    fn request(&self) -> &Request {
        self.req
            .as_ref()
            .expect("an exchange holds its request until it answers")
    }

    /// The first value of a header, case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request()
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// A query-string parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
    }

    /// True for an HTTP/1.0 request (no chunked responses).
    pub fn is_http10(&self) -> bool {
        self.request().http_version() == &tiny_http::HTTPVersion(1, 0)
    }

    /// Answers 101 and hands over the upgraded connection (WebSocket).
    pub fn upgrade(self, headers: &[(&str, &str)]) -> Box<dyn tiny_http::ReadWrite + Send> {
        let (req, log) = self.into_request(101);
        log.count(101);
        let mut resp = Response::empty(101);
        let extra: Vec<(&str, &str)> = log
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for (k, v) in headers
            .iter()
            .chain(&extra)
            .chain([&("X-Request-Id", log.request_id.as_str())])
        {
            if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                resp.add_header(h);
            }
        }
        req.upgrade("websocket", resp)
    }

    pub fn remote_addr(&self) -> Option<std::net::SocketAddr> {
        self.request().remote_addr().copied()
    }

    /// Reads the whole body, refusing more than `max` bytes with 413 `PAYLOAD_TOO_LARGE` and a
    /// body still incomplete at `deadline` (or silent for the socket's read timeout) with 408
    /// `TIMEOUT`. Blocks for as long as the client takes: never call it on a pool worker.
    pub fn read_body(&mut self, max: usize, deadline: Instant) -> Result<Vec<u8>, ApiError> {
        let too_large = || {
            ApiError::new(
                Kind::PayloadTooLarge,
                format!("the request body is larger than the limit of {max} bytes (--max-body)"),
            )
        };
        let too_slow = || {
            ApiError::new(
                Kind::Timeout,
                "the request body did not arrive in time ([server] body_timeout_secs); send it in one go",
            )
        };
        let req = self
            .req
            .as_mut()
            .expect("an exchange holds its request until it answers");
        if req.body_length().is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let reader = req.as_reader();
        let mut body = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            if Instant::now() >= deadline {
                return Err(too_slow());
            }
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    body.extend_from_slice(&buf[..n]);
                    if body.len() > max {
                        return Err(too_large());
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(too_slow())
                }
                Err(e) => {
                    return Err(ApiError::bad_request(format!(
                        "could not read the request body: {e}"
                    )))
                }
            }
        }
        self.body_read = true;
        Ok(body)
    }

    /// True if answering now would leave body bytes unread (tiny_http reads bodies of up to
    /// 1024 bytes before handing the request over; longer ones and chunked ones are read by us).
    fn body_pending(&self, req: &Request) -> bool {
        let chunked = || {
            req.headers()
                .iter()
                .any(|h| h.field.equiv("Transfer-Encoding"))
        };
        !self.body_read
            && (req.body_length().is_some_and(|n| n > 1024)
                || (req.body_length().is_none() && chunked()))
    }

    /// Answers with `reply`. Consumes the exchange.
    pub fn respond(mut self, reply: Reply) {
        let Some(req) = self.req.take() else { return };
        self.status = reply.status;
        // The length is known: Content-Length, never chunked (tiny_http chunks over 32 KiB).
        let mut resp = Response::from_data(reply.body)
            .with_status_code(reply.status)
            .with_chunked_threshold(usize::MAX);
        let extra = self
            .extra_headers
            .iter()
            .filter(|(k, _)| !reply.headers.iter().any(|(r, _)| r.eq_ignore_ascii_case(k)));
        for (k, v) in reply
            .headers
            .iter()
            .chain(extra)
            .chain([&("X-Request-Id".to_string(), self.request_id.clone())])
        {
            if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                resp.add_header(h);
            }
        }
        let pending = self.body_pending(&req);
        let what = format!("{} {}", self.method, self.path);
        let inflight = self.inflight.take();
        let send = move || {
            if let Err(e) = req.respond(resp) {
                log::debug!("{what}: client went away before the answer: {e}");
            }
            drop(inflight);
        };
        if pending {
            // Dropping the request drains its body, as slowly as the client sends it.
            if let Err(e) = std::thread::Builder::new()
                .name("answer".into())
                .spawn(send)
            {
                log::error!("cannot start a thread to answer {}: {e}", self.request_id);
            }
        } else {
            send();
        }
        self.log_line();
    }

    pub fn error(self, e: ApiError) {
        let shape = self.shape;
        self.respond(Reply::error(e, shape));
    }

    /// Hands the raw request to a stream (SSE, WebSocket) that writes its own bytes.
    /// The stream reports its status with `log_stream_end`.
    pub fn into_request(mut self, status: u16) -> (Request, StreamLog) {
        let req = self
            .req
            .take()
            .expect("an exchange holds its request until it answers");
        self.status = status;
        let log = StreamLog {
            method: self.method.to_string(),
            path: self.path.clone(),
            route: self.route,
            request_id: self.request_id.clone(),
            key_id: self.key_id.clone(),
            started: self.started,
            headers: std::mem::take(&mut self.extra_headers),
            metrics: self.metrics.clone(),
            _inflight: self.inflight.take().map(Arc::new),
        };
        (req, log)
    }

    fn log_line(&self) {
        if let Some(m) = &self.metrics {
            m.request(self.route, self.status);
        }
        log::info!(
            "{} {} {} {}ms key={} req={}",
            self.method,
            self.path,
            self.status,
            self.started.elapsed().as_millis(),
            self.key_id.as_deref().unwrap_or("-"),
            self.request_id
        );
    }
}

/// What a stream needs to write the request's log line when it ends.
#[derive(Debug, Clone)]
pub struct StreamLog {
    pub method: String,
    pub path: String,
    pub route: &'static str,
    pub request_id: String,
    pub key_id: Option<String>,
    pub started: Instant,
    /// Extra headers for the stream's head (`X-RateLimit-*`).
    pub headers: Vec<(String, String)>,
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    _inflight: Option<Arc<Inflight>>,
}

impl StreamLog {
    /// Counts the stream's answer in the metrics (once, when its status is known).
    pub fn count(&self, status: u16) {
        if let Some(m) = &self.metrics {
            m.request(self.route, status);
        }
    }

    pub fn done(&self, status: u16, how: &str) {
        log::info!(
            "{} {} {} {}ms key={} req={} ({how})",
            self.method,
            self.path,
            status,
            self.started.elapsed().as_millis(),
            self.key_id.as_deref().unwrap_or("-"),
            self.request_id
        );
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.req.is_some() {
            let id = self.request_id.clone();
            log::error!("request {id} ended without an answer (a bug, or a panic); answering 500");
            let e = ApiError::internal(format!(
                "the server failed while handling this request; quote request id {id} when reporting it"
            ));
            let placeholder = Exchange {
                req: self.req.take(),
                request_id: id,
                method: self.method.clone(),
                path: std::mem::take(&mut self.path),
                query: String::new(),
                started: self.started,
                key_id: self.key_id.take(),
                route: self.route,
                extra_headers: std::mem::take(&mut self.extra_headers),
                metrics: self.metrics.take(),
                shape: self.shape,
                status: 0,
                body_read: self.body_read,
                inflight: self.inflight.take(),
            };
            placeholder.error(e);
        }
    }
}

/// Decodes `%XX` and `+` in a query value.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
