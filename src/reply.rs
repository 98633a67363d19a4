//! [`Reply`]: what a handler answers for a short request (status, headers, body), with
//! named constructors and `with_*` builders. Converting a `Reply` into a tiny_http response
//! happens only in `exchange.rs`; streams (SSE, WebSocket) write their own bytes instead.

use crate::error::{ApiError, Shape};

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Reply {
        // Serializing our own types into memory cannot fail (no map with non-string keys).
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        }
    }

    pub fn ok<T: serde::Serialize + ?Sized>(value: &T) -> Reply {
        Reply::json(200, value)
    }

    pub fn bytes(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

impl Reply {
    /// An error in `shape`; the SDK shapes also say whether to retry (`x-should-retry`).
    pub fn error(e: ApiError, shape: Shape) -> Reply {
        let mut reply = Reply::json(e.status(), &e.body_in(shape));
        if shape != Shape::Native {
            reply = reply.with_header("x-should-retry", e.retryable().to_string());
        }
        reply.headers.extend(e.headers);
        reply
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::error(e, Shape::Native)
    }
}
