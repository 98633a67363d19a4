//! Per-key request rate limits (`requests_per_minute` in `[keys.<id>]`): one token bucket per
//! key, holding at most a minute's worth of requests and refilled continuously. Checked on the
//! pool worker, before a request that runs the CLI is handed to a run thread; the answer carries
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds until the
//! bucket is full again), and a refusal also `Retry-After` (seconds until the next token).
//! Hand-written on purpose (no rate-limiting crate); the map only ever holds configured keys.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// Seconds until the next request would be allowed (0 when allowed).
    pub retry_after_secs: u64,
}

impl Decision {
    /// The `X-RateLimit-*` headers.
    pub fn headers(&self) -> Vec<(String, String)> {
        vec![
            ("X-RateLimit-Limit".into(), self.limit.to_string()),
            ("X-RateLimit-Remaining".into(), self.remaining.to_string()),
            ("X-RateLimit-Reset".into(), self.reset_secs.to_string()),
        ]
    }
}

impl RateLimiter {
    /// Takes a token for `key_id` (whose limit is `per_minute`) if there is one.
    pub fn check(&self, key_id: &str, per_minute: u32, now: Instant) -> Decision {
        let capacity = f64::from(per_minute.max(1));
        let mut buckets = self.buckets.lock();
        let b = buckets.entry(key_id.to_string()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * capacity / 60.0).min(capacity);
        b.last = now;
        let allowed = b.tokens >= 1.0;
        if allowed {
            b.tokens -= 1.0;
        }
        // Seconds to refill `tokens`, computed so that whole minutes stay exact.
        let secs = |tokens: f64| (tokens.max(0.0) * 60.0 / capacity).ceil() as u64;
        Decision {
            allowed,
            limit: per_minute,
            remaining: b.tokens.floor() as u32,
            reset_secs: secs(capacity - b.tokens),
            retry_after_secs: if allowed {
                0
            } else {
                secs(1.0 - b.tokens).max(1)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_of_a_minute_refilled_continuously() {
        let rl = RateLimiter::default();
        let t0 = Instant::now();
        let d = rl.check("k", 2, t0);
        assert_eq!((d.allowed, d.remaining, d.reset_secs), (true, 1, 30));
        let d = rl.check("k", 2, t0);
        assert_eq!((d.allowed, d.remaining, d.reset_secs), (true, 0, 60));
        let d = rl.check("k", 2, t0);
        assert_eq!((d.allowed, d.retry_after_secs), (false, 30));
        assert!(rl.check("other", 2, t0).allowed, "buckets are per key");
        let d = rl.check("k", 2, t0 + Duration::from_secs(30));
        assert_eq!((d.allowed, d.remaining), (true, 0));
        let d = rl.check("k", 2, t0 + Duration::from_secs(600));
        assert_eq!(
            (d.allowed, d.remaining),
            (true, 1),
            "never more than a minute's worth"
        );
    }
}
