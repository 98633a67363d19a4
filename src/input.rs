//! Request bodies: JSON parsed into a [`Body`] whose getters name the field in every error
//! ("`timeout_secs` must be a whole number"), so a client always learns what to fix.
//! No handler parses JSON by itself.

use serde_json::{Map, Value};

use crate::error::ApiError;

#[derive(Debug)]
pub struct Body(pub Map<String, Value>);

impl Body {
    /// Parses a JSON object. An empty body is an empty object.
    pub fn parse(bytes: &[u8]) -> Result<Body, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Map::new()));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))?;
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(ApiError::bad_request(
                "the request body must be a JSON object",
            )),
            Err(e) => Err(ApiError::bad_request(format!(
                "the request body is not valid JSON: {e}"
            ))),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A required, non-blank string.
    pub fn string(&self, name: &str) -> Result<String, ApiError> {
        match self.get(name) {
            None => Err(ApiError::bad_request(format!("`{name}` is required"))),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(ApiError::bad_request(format!("`{name}` must not be empty")))
            }
            // No argv or path can carry a NUL byte; say so instead of failing later.
            Some(Value::String(s)) if s.contains('\0') => Err(ApiError::bad_request(format!(
                "`{name}` must not contain NUL characters"
            ))),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(ApiError::bad_request(format!("`{name}` must be a string"))),
        }
    }

    /// An optional string; present but blank is an error.
    pub fn opt_string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(_) => self.string(name).map(Some),
        }
    }

    /// An optional whole number in `min..=max`.
    pub fn opt_u64(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::bad_request(format!(
                    "`{name}` must be a whole number from {min} to {max}"
                ))),
            },
        }
    }

    /// An optional number in `min..=max`.
    pub fn opt_f64(&self, name: &str, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(n) if n >= min && n <= max => Ok(Some(n)),
                _ => Err(ApiError::bad_request(format!(
                    "`{name}` must be a number from {min} to {max}"
                ))),
            },
        }
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::bad_request(format!(
                "`{name}` must be true or false"
            ))),
        }
    }

    /// An optional list of non-blank strings.
    pub fn opt_strings(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                    _ => Err(ApiError::bad_request(format!(
                        "`{name}` must be a list of non-empty strings"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::bad_request(format!(
                "`{name}` must be a list of strings"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_field() {
        let b = Body::parse(br#"{"prompt":"  ","n":5,"s":7,"l":["a",""]}"#).unwrap();
        assert!(b
            .string("prompt")
            .unwrap_err()
            .message
            .contains("`prompt` must not be empty"));
        assert!(b
            .string("missing")
            .unwrap_err()
            .message
            .contains("`missing` is required"));
        assert!(b
            .opt_string("s")
            .unwrap_err()
            .message
            .contains("`s` must be a string"));
        assert!(b
            .opt_u64("n", 1, 3)
            .unwrap_err()
            .message
            .contains("from 1 to 3"));
        assert_eq!(b.opt_u64("n", 1, 10).unwrap(), Some(5));
        assert!(b.opt_strings("l").is_err());
        assert!(Body::parse(b"[1]").is_err());
        assert!(Body::parse(b"{")
            .unwrap_err()
            .message
            .contains("not valid JSON"));
        assert!(Body::parse(b"\xff").unwrap_err().message.contains("UTF-8"));
        assert!(Body::parse(b"").unwrap().0.is_empty());
        let nul = Body::parse(br#"{"s":"a\u0000b"}"#).unwrap();
        assert!(nul.string("s").unwrap_err().message.contains("NUL"));
    }
}
