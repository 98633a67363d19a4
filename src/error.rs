//! The one error type every request path ends in, and the only code that renders an error
//! body: `{"error": "...", "code": "..."}` on the native routes, and the OpenAI and Anthropic
//! shapes on `/v1/*` ([`Shape`]). Subsystems keep their own small errors (`config::Error`,
//! `claude::RunError`) and convert to [`ApiError`] at the handler boundary. Messages say what
//! happened and what to do next; they never contain a secret.

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

/// The body an error is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// `{"error": "...", "code": "..."}`.
    #[default]
    Native,
    /// `{"error": {"message", "type", "param", "code"}}` (`/v1/chat/completions`).
    OpenAi,
    /// `{"type": "error", "error": {"type", "message"}}` (`/v1/messages`).
    Anthropic,
}

/// An error answer: a kind (status + code), a message for the client, and extra headers
/// (`Allow`, `Retry-After`, `X-RateLimit-*`).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: Kind,
    pub message: String,
    pub headers: Vec<(String, String)>,
    /// The request field at fault and a finer code, for the OpenAI shape (`param`, `code`):
    /// `("tools", "unsupported_parameter")`, `("model", "model_not_found")`.
    pub param: Option<(String, &'static str)>,
}

impl ApiError {
    pub fn new(kind: Kind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            headers: Vec::new(),
            param: None,
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

    /// Names the request field at fault, with a finer code (OpenAI's `param` and `code`).
    pub fn with_param(mut self, param: impl Into<String>, code: &'static str) -> ApiError {
        self.param = Some((param.into(), code));
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

    /// The JSON body in `shape`. OpenAI's `type` and Anthropic's `type` follow each API's own
    /// names for the status; OpenAI's `code` is the finer code when there is one, else ours in
    /// lower case.
    pub fn body_in(&self, shape: Shape) -> serde_json::Value {
        match shape {
            Shape::Native => self.body(),
            Shape::OpenAi => {
                let (kind, code) = match self.kind {
                    Kind::Unauthorized => ("authentication_error", Some("invalid_api_key")),
                    Kind::Forbidden => ("permission_error", None),
                    Kind::NotFound => ("not_found_error", None),
                    Kind::RateLimited => ("rate_limit_error", Some("rate_limit_exceeded")),
                    Kind::BudgetExceeded => ("insufficient_quota", Some("insufficient_quota")),
                    Kind::Timeout | Kind::Stalled => ("timeout_error", None),
                    Kind::Internal => ("server_error", None),
                    Kind::Overloaded => ("overloaded_error", None),
                    _ => ("invalid_request_error", None),
                };
                let (param, code) = match &self.param {
                    Some((p, c)) => (Some(p.clone()), c.to_string()),
                    None => (
                        None,
                        code.map(str::to_string)
                            .unwrap_or_else(|| self.code().to_ascii_lowercase()),
                    ),
                };
                serde_json::json!({"error": {
                    "message": self.message, "type": kind, "param": param, "code": code,
                }})
            }
            Shape::Anthropic => {
                let kind = match self.kind {
                    Kind::Unauthorized => "authentication_error",
                    Kind::Forbidden => "permission_error",
                    Kind::NotFound => "not_found_error",
                    Kind::PayloadTooLarge => "request_too_large",
                    Kind::RateLimited => "rate_limit_error",
                    Kind::BudgetExceeded => "billing_error",
                    Kind::Timeout | Kind::Stalled => "timeout_error",
                    Kind::Internal => "api_error",
                    Kind::Overloaded => "overloaded_error",
                    _ => "invalid_request_error",
                };
                serde_json::json!({"type": "error", "error": {"type": kind, "message": self.message}})
            }
        }
    }

    /// Whether an SDK client should send the same request again (`x-should-retry`). The SDKs
    /// retry 408, 409, 429 and 5xx by default; a second try of a run that failed would start
    /// a second billed run, so only a full queue and a rate limit say yes.
    pub fn retryable(&self) -> bool {
        matches!(self.kind, Kind::Overloaded | Kind::RateLimited)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.code(), self.message)
    }
}

impl std::error::Error for ApiError {}
