//! Server-Sent Events over the raw connection tiny_http hands over. We write the head and
//! every chunk ourselves and flush after each event, because a tiny_http `Response` over a
//! reader buffers and would deliver events late. The body is chunked (HTTP/1.1) so the end
//! of the stream is explicit. A failed write means the client is gone.

use std::io::Write;
use std::sync::Arc;

use crate::app::App;
use crate::claude::{Flow, RunEvent};
use crate::exchange::Exchange;
use crate::runner::{self, Job};
use crate::stream::{final_events, Final, Mode, Progress, StreamGuard};

/// One SSE event as bytes: `event: NAME`, one `data:` line per line of `data` (CR, LF and
/// CRLF all end a line, as in the SSE spec), then a blank line.
pub fn format_event(name: &str, data: &str) -> String {
    let mut out = format!("event: {name}\n");
    for line in data.split("\r\n").flat_map(|l| l.split(['\n', '\r'])) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

pub struct Sse {
    w: Box<dyn Write + Send>,
    chunked: bool,
}

impl Sse {
    /// Writes the response head (with `extra` headers). `chunked` for HTTP/1.1 clients;
    /// HTTP/1.0 gets a body that ends when the connection closes.
    pub fn start(
        w: Box<dyn Write + Send>,
        request_id: &str,
        extra: &[(String, String)],
        chunked: bool,
    ) -> std::io::Result<Sse> {
        let refs: Vec<(&str, &str)> = extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Sse::start_with(w, request_id, chunked, &refs)
    }

    /// [`Sse::start`] with headers as string slices (names and values are ours, never a
    /// client's).
    pub fn start_with(
        mut w: Box<dyn Write + Send>,
        request_id: &str,
        chunked: bool,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Sse> {
        let mut head: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        if chunked {
            head.push_str("Transfer-Encoding: chunked\r\n");
        }
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n\
             X-Accel-Buffering: no\r\nConnection: close\r\nX-Request-Id: {request_id}\r\n{head}\r\n"
        )?;
        w.flush()?;
        Ok(Sse { w, chunked })
    }

    fn send(&mut self, bytes: &[u8]) -> bool {
        let res = if self.chunked {
            write!(self.w, "{:x}\r\n", bytes.len())
                .and_then(|_| self.w.write_all(bytes))
                .and_then(|_| self.w.write_all(b"\r\n"))
        } else {
            self.w.write_all(bytes)
        };
        res.and_then(|_| self.w.flush()).is_ok()
    }

    /// Sends one event; false if the client is gone.
    pub fn event(&mut self, name: &str, data: &str) -> bool {
        self.send(format_event(name, data).as_bytes())
    }

    /// Sends text already in SSE form (nothing when empty); false if the client is gone.
    pub fn raw(&mut self, text: &str) -> bool {
        text.is_empty() || self.send(text.as_bytes())
    }

    /// Sends a comment line (a heartbeat); false if the client is gone.
    pub fn comment(&mut self, text: &str) -> bool {
        self.send(format!(": {text}\n\n").as_bytes())
    }

    /// Ends the body.
    pub fn finish(mut self) {
        if self.chunked {
            let _ = self.w.write_all(b"0\r\n\r\n");
        }
        let _ = self.w.flush();
    }
}

/// Runs `job` and streams it to the client of `ex`. Called on a run thread. Errors before
/// the stream starts (a full queue, a timeout while queued) are plain HTTP errors.
pub fn serve(
    app: &Arc<App>,
    ex: Exchange,
    job: &Job,
    mode: Mode,
    _place: StreamGuard,
) -> Option<runner::Finished> {
    let admitted = match runner::admit(app, job) {
        Ok(a) => a,
        Err(e) => {
            ex.error(e);
            return None;
        }
    };
    let chunked = !ex.is_http10();
    let (req, log) = ex.into_request(200);
    log.count(200);
    let Ok(mut sse) = Sse::start(req.into_writer(), &log.request_id, &log.headers, chunked) else {
        log.done(200, "client gone before the stream started");
        return None;
    };
    let mut progress = Progress::new(mode);
    let mut sink = |ev: RunEvent| {
        let alive = match ev {
            RunEvent::Line(line) => match progress.on_line(line) {
                Some(text) => sse.event("text", &text),
                None => true,
            },
            RunEvent::Heartbeat => sse.comment("keep-alive"),
        };
        if alive {
            Flow::Continue
        } else {
            Flow::Stop
        }
    };
    let finished = runner::run(app, job, admitted, &mut sink);
    for ev in final_events(&finished) {
        let ok = match ev {
            Final::PermissionDenied(d) => sse.event("permission_denied", &d.to_string()),
            Final::Error { message, code } => sse.event(
                "error",
                &serde_json::json!({"error": message, "code": code}).to_string(),
            ),
            Final::Done(v) => sse.event("done", &v.to_string()),
        };
        if !ok {
            break;
        }
    }
    sse.finish();
    log.done(
        200,
        if finished.response.success {
            "stream done"
        } else {
            "stream failed"
        },
    );
    Some(finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_data() {
        assert_eq!(format_event("text", "a"), "event: text\ndata: a\n\n");
        assert_eq!(
            format_event("text", "a\nb\r\nc\rd\n"),
            "event: text\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
        );
        assert_eq!(format_event("text", ""), "event: text\ndata: \n\n");
    }
}
