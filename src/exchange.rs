//! [`Exchange`]: one HTTP request on its way to an answer. It carries the request id,
//! the start time and the authenticated key, reads the body under the size limit, and
//! answers exactly once: `respond` writes a [`Reply`] (adding `X-Request-Id`) and logs the
//! request's one operational log line. If an exchange is dropped unanswered (a panic, a
//! forgotten path) it answers 500 `INTERNAL_ERROR` itself, so no client is left hanging.
//! An exchange may move from a pool worker to a run thread; it never blocks on its own.

use std::io::Read;
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
    /// The shape errors are answered in (the SDK routes speak their API's).
    pub shape: Shape,
    /// The status answered, for the log line.
    status: u16,
}

impl Exchange {
    pub fn new(req: Request) -> Exchange {
        let url = req.url().to_string();
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (url, String::new()),
        };
        Exchange {
            method: req.method().clone(),
            req: Some(req),
            request_id: uuid::Uuid::new_v4().to_string(),
            path,
            query,
            started: Instant::now(),
            key_id: None,
            shape: Shape::Native,
            status: 0,
        }
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
        let mut resp = Response::empty(101);
        for (k, v) in headers
            .iter()
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

    /// Reads the whole body, refusing more than `max` bytes with 413 `PAYLOAD_TOO_LARGE`.
    pub fn read_body(&mut self, max: usize) -> Result<Vec<u8>, ApiError> {
        let too_large = || {
            ApiError::new(
                Kind::PayloadTooLarge,
                format!("the request body is larger than the limit of {max} bytes (--max-body)"),
            )
        };
        let req = self
            .req
            .as_mut()
            .expect("an exchange holds its request until it answers");
        if req.body_length().is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        req.as_reader()
            .take(max as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if body.len() > max {
            return Err(too_large());
        }
        Ok(body)
    }

    /// Answers with `reply`. Consumes the exchange.
    pub fn respond(mut self, reply: Reply) {
        let Some(req) = self.req.take() else { return };
        self.status = reply.status;
        let mut resp = Response::from_data(reply.body).with_status_code(reply.status);
        for (k, v) in reply
            .headers
            .iter()
            .chain([&("X-Request-Id".to_string(), self.request_id.clone())])
        {
            if let Ok(h) = Header::from_bytes(k.as_bytes(), v.as_bytes()) {
                resp.add_header(h);
            }
        }
        if let Err(e) = req.respond(resp) {
            log::debug!(
                "{} {}: client went away before the answer: {e}",
                self.method,
                self.path
            );
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
            request_id: self.request_id.clone(),
            key_id: self.key_id.clone(),
            started: self.started,
        };
        (req, log)
    }

    fn log_line(&self) {
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
    pub request_id: String,
    pub key_id: Option<String>,
    pub started: Instant,
}

impl StreamLog {
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
                shape: self.shape,
                status: 0,
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
