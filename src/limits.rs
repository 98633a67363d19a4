//! What a key may do right now, checked on the pool worker before a request that runs the CLI
//! goes on to a run thread: its request rate (`requests_per_minute`, 429 `RATE_LIMITED`) and its
//! budgets (`daily_budget_usd`, `monthly_budget_usd`, 429 `BUDGET_EXCEEDED`). Refusals are
//! audited; the rate-limit headers go on the answer either way. The per-key concurrency cap is
//! enforced later, by the gate (`runs.rs`), and the budget once more when the run starts.
//! Nothing here blocks or does I/O beyond handing the audit line over.

use std::time::Instant;

use crate::app::App;
use crate::audit::Entry;
use crate::budget::Left;
use crate::error::{ApiError, Kind};
use crate::exchange::Exchange;

/// Checks `key_id`'s rate limit and budget for a request that runs the CLI. The rate-limit
/// headers are put on the exchange (they go on its answer, whatever it is).
pub fn check_request(app: &App, ex: &mut Exchange, key_id: &str) -> Result<(), ApiError> {
    let Some(key) = app.config.keys.get(key_id) else {
        return Ok(());
    };
    if let Some(rpm) = key.limits.requests_per_minute {
        let d = app.rates.check(key_id, rpm, Instant::now());
        if !d.allowed {
            let mut e = ApiError::new(
                Kind::RateLimited,
                format!(
                    "key `{key_id}` may make {rpm} requests per minute that run Claude; retry in {} s",
                    d.retry_after_secs
                ),
            )
            .with_header("Retry-After", d.retry_after_secs.to_string());
            e.headers.extend(d.headers());
            refuse(app, ex, key_id, &e, "request rate limited");
            return Err(e);
        }
        ex.extra_headers.extend(d.headers());
    }
    if let Some(left) = app
        .budgets
        .left(key_id, &key.limits, crate::clock::now())
        .filter(Left::is_spent)
    {
        let e = budget_error(key_id, &left);
        refuse(app, ex, key_id, &e, "budget exceeded");
        return Err(e);
    }
    Ok(())
}

/// 429 `BUDGET_EXCEEDED` for a spent budget, with `Retry-After` until it starts again.
pub fn budget_error(key_id: &str, left: &Left) -> ApiError {
    let when = match left.window {
        "daily" => "at 00:00 UTC",
        _ => "on the first of the month, 00:00 UTC",
    };
    ApiError::new(
        Kind::BudgetExceeded,
        format!(
            "key `{key_id}` has spent its {} budget (${:.4} of ${:.4}); it starts again {when}, in {} s",
            left.window, left.spent_usd, left.limit_usd, left.resets_in_secs
        ),
    )
    .with_header("Retry-After", left.resets_in_secs.to_string())
}

fn refuse(app: &App, ex: &Exchange, key_id: &str, e: &ApiError, message: &str) {
    let mut entry =
        Entry::new(&ex.request_id, &ex.path, Some(key_id), message).failed(e.status(), e.code());
    entry.duration_ms = ex.started.elapsed().as_millis() as u64;
    app.audit.record(entry);
}
