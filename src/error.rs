//! The one error type every request path ends in, and the only code that renders the
//! `{"error": "...", "code": "..."}` body. Subsystems keep their own small errors
//! (`config::Error`, `claude::RunError`) and convert to [`ApiError`] at the handler boundary.
//! Messages say what happened and what to do next; they never contain a secret.

use std::fmt;

/// The closed list of error codes; `status()` and `code()` are the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Timeout,
    Stalled,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    BudgetExceeded,
    Internal,
    Overloaded,
}

impl Kind {
    /// Every kind, in table order (openapi.yaml's `Error.code` lists each; a test checks).
    pub const ALL: [Kind; 13] = [
        Kind::BadRequest,
        Kind::Unauthorized,
        Kind::Forbidden,
        Kind::NotFound,
        Kind::MethodNotAllowed,
        Kind::Timeout,
        Kind::Stalled,
        Kind::Conflict,
        Kind::PayloadTooLarge,
        Kind::RateLimited,
        Kind::BudgetExceeded,
        Kind::Internal,
        Kind::Overloaded,
    ];

    pub fn status(self) -> u16 {
        match self {
            Kind::BadRequest => 400,
            Kind::Unauthorized => 401,
            Kind::Forbidden => 403,
            Kind::NotFound => 404,
            Kind::MethodNotAllowed => 405,
            Kind::Timeout | Kind::Stalled => 408,
            Kind::Conflict => 409,
            Kind::PayloadTooLarge => 413,
            Kind::RateLimited | Kind::BudgetExceeded => 429,
            Kind::Internal => 500,
            Kind::Overloaded => 503,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Kind::BadRequest => "BAD_REQUEST",
            Kind::Unauthorized => "UNAUTHORIZED",
            Kind::Forbidden => "FORBIDDEN",
            Kind::NotFound => "NOT_FOUND",
            Kind::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Kind::Timeout => "TIMEOUT",
            Kind::Stalled => "STALLED",
            Kind::Conflict => "CONFLICT",
            Kind::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Kind::RateLimited => "RATE_LIMITED",
            Kind::BudgetExceeded => "BUDGET_EXCEEDED",
            Kind::Internal => "INTERNAL_ERROR",
            Kind::Overloaded => "OVERLOADED",
        }
    }
}

/// An error answer: a kind (status + code), a message for the client, and extra headers
/// (`Allow`, `Retry-After`, `X-RateLimit-*`).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: Kind,
    pub message: String,
    pub headers: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(kind: Kind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(Kind::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(Kind::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(Kind::Internal, message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            Kind::Unauthorized,
            "missing or unknown API key: send `Authorization: Bearer <secret>`",
        )
    }

    pub fn method_not_allowed(allow: &str) -> ApiError {
        ApiError::new(
            Kind::MethodNotAllowed,
            format!("method not allowed here; use {allow}"),
        )
        .with_header("Allow", allow)
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> ApiError {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The JSON body, `{"error": message, "code": CODE}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": self.message, "code": self.code() })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.code(), self.message)
    }
}

impl std::error::Error for ApiError {}
