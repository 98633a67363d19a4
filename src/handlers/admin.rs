//! The admin API under `/admin` (only with the `dashboard` plugin): cookie login and logout,
//! and the statistics the dashboard shows, answered from `App::totals` (memory only, never
//! a log file). `authorize` is the cookie and CSRF check the router runs for every
//! `Access::Admin` route. A failed login counts against the caller's address and is refused
//! with 429 once the address used up its attempts; no handler here ever sleeps.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::app::App;
use crate::audit::{Entry, UNAUTHORIZED};
use crate::error::{ApiError, Kind};
use crate::exchange::Exchange;
use crate::input::Body;
use crate::keys::constant_time_eq;
use crate::logins::{cookie_value, COOKIE, CSRF_HEADER};
use crate::reply::Reply;
use crate::totals::{self, GroupBy, Period, Usage};

/// Largest `/admin/login` body.
const LOGIN_BODY_MAX: usize = 4096;
/// Most log lines one `/admin/logs` answer carries.
const LOGS_MAX: usize = 1000;

/// The admin login id from the request's cookie, if any.
fn login_id(ex: &Exchange) -> Option<String> {
    ex.header("Cookie")
        .and_then(|h| cookie_value(h, COOKIE))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Checks the admin cookie (401 when missing or expired) and, for anything but GET and HEAD,
/// the CSRF header (403).
pub fn authorize(app: &App, ex: &Exchange) -> Result<(), ApiError> {
    let csrf = login_id(ex)
        .and_then(|id| app.logins.check(&id))
        .ok_or_else(|| {
            ApiError::new(
                Kind::Unauthorized,
                "not logged in, or the login expired: POST /admin/login with the admin key",
            )
        })?;
    let safe = matches!(ex.method, tiny_http::Method::Get | tiny_http::Method::Head);
    let sent = ex.header(CSRF_HEADER).unwrap_or("");
    if !safe && !constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
        return Err(ApiError::new(
            Kind::Forbidden,
            format!("missing or wrong {CSRF_HEADER} header: send the csrf_token from /admin/login or GET /admin/session"),
        ));
    }
    Ok(())
}

fn audit(app: &App, ex: &Exchange, key_id: Option<&str>, message: &str, err: Option<&ApiError>) {
    let mut e = Entry::new(&ex.request_id, &ex.path, key_id, message);
    if let Some(err) = err {
        e = e.failed(err.status(), err.code());
    }
    e.duration_ms = ex.started.elapsed().as_millis() as u64;
    app.audit.record(e);
}

/// `POST /admin/login {"key": "<admin secret>"}`.
pub fn login(app: &App, mut ex: Exchange) {
    let ip = ex.remote_addr().map(|a| a.ip());
    if let Some(wait) = ip.and_then(|ip| app.logins.throttled(ip)) {
        let secs = wait.as_secs() + 1;
        let e = ApiError::new(
            Kind::RateLimited,
            format!("too many failed logins from this address; try again in {secs} s"),
        )
        .with_header("Retry-After", secs.to_string());
        audit(app, &ex, None, "login throttled", Some(&e));
        return ex.error(e);
    }
    let secret = ex
        .read_body(LOGIN_BODY_MAX, ex.started + app.config.body_timeout)
        .and_then(|b| Body::parse(&b))
        .and_then(|b| b.string("key"));
    let secret = match secret {
        Ok(s) => s,
        Err(e) => return ex.error(e),
    };
    let keys = &app.config.keys;
    let key_id = keys.authenticate(&secret).map(|k| k.id.clone());
    let refused = match key_id.as_deref() {
        Some(id) if keys.is_admin(id) => None,
        Some(id) => Some((
            Some(id),
            ApiError::new(
                Kind::Forbidden,
                "this key may not log in: only the admin key (the first configured key) can",
            ),
        )),
        None => Some((
            None,
            ApiError::new(
                Kind::Unauthorized,
                "wrong key: log in with the admin key (the first configured key)",
            ),
        )),
    };
    if let Some((id, e)) = refused {
        if let Some(ip) = ip {
            app.logins.failed(ip);
        }
        audit(app, &ex, id, "login refused", Some(&e));
        return ex.error(e);
    }
    if let Some(ip) = ip {
        app.logins.succeeded(ip);
    }
    let (id, csrf) = app.logins.create();
    audit(app, &ex, key_id.as_deref(), "admin login", None);
    ex.key_id = key_id;
    ex.respond(
        Reply::ok(&json!({"success": true, "csrf_token": csrf}))
            .with_header("Set-Cookie", app.logins.settings.cookie(Some(&id)))
            .with_header("Cache-Control", "no-store"),
    );
}

/// `POST /admin/logout`: ends the login server-side and clears the cookie.
pub fn logout(app: &App, ex: Exchange) {
    if let Some(id) = login_id(&ex) {
        app.logins.remove(&id);
    }
    audit(app, &ex, ex.key_id.as_deref(), "admin logout", None);
    ex.respond(
        Reply::ok(&json!({"success": true}))
            .with_header("Set-Cookie", app.logins.settings.cookie(None)),
    );
}

/// `GET /admin/session`: the CSRF token of the current login (so a reloaded page can go on).
pub fn session(app: &App, ex: &Exchange) -> Reply {
    let csrf = login_id(ex).and_then(|id| app.logins.check(&id));
    Reply::ok(&json!({
        "csrf_token": csrf,
        "key_id": app.config.keys.admin().id,
    }))
    .with_header("Cache-Control", "no-store")
}

fn usage_rows(map: &BTreeMap<String, Usage>, name: &str) -> Vec<Value> {
    let mut rows: Vec<(&String, &Usage)> = map.iter().collect();
    rows.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then(a.0.cmp(b.0)));
    rows.into_iter()
        .map(|(k, u)| json!({ name: k, "requests": u.requests, "cost_usd": u.cost_usd }))
        .collect()
}

/// `GET /admin/overview`.
pub fn overview(app: &App) -> Reply {
    let today = crate::clock::now().date();
    let days: Vec<String> = (0..30)
        .rev()
        .filter_map(|n| today.checked_sub(time::Duration::days(n)))
        .map(|d| d.to_string())
        .collect();
    let body = app.totals.read(|s| {
        let daily: Vec<Value> = days
            .iter()
            .map(|d| {
                let u = s.days.get(d).map(|p| p.total).unwrap_or_default();
                json!({"date": d, "requests": u.requests, "cost_usd": u.cost_usd})
            })
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": app.started.elapsed().as_secs(),
            "total_requests": s.requests,
            "total_cost_usd": s.cost_usd,
            "tokens": s.tokens,
            "active_sessions": totals::active_sessions(app),
            "unauthorized": s.unauthorized,
            "events_dropped": app.bus.dropped(),
            "daily": daily,
            "models": usage_rows(&s.models, "model"),
        })
    });
    Reply::ok(&body)
}

/// `GET /admin/keys`: every configured key (in config order), then ids seen only in the log.
pub fn keys(app: &App) -> Reply {
    let configured: Vec<&str> = app
        .config
        .keys
        .all()
        .iter()
        .map(|k| k.id.as_str())
        .collect();
    let rows = app.totals.read(|s| {
        let others = s.keys.keys().filter(|k| !configured.contains(&k.as_str()));
        configured
            .iter()
            .map(|k| k.to_string())
            .chain(others.cloned())
            .map(|id| {
                let t = s.keys.get(&id).cloned().unwrap_or_default();
                json!({
                    "key_id": id,
                    "admin": app.config.keys.is_admin(&id),
                    "configured": configured.contains(&id.as_str()),
                    "requests": t.requests,
                    "cost_usd": t.cost_usd,
                    "tokens": t.tokens,
                    "last_used": t.last_used,
                })
            })
            .collect::<Vec<_>>()
    });
    Reply::ok(&json!({ "keys": rows }))
}

/// `GET /admin/costs?group_by=daily|weekly|monthly`: one series per total, model and key,
/// aligned with `periods` (oldest first; only periods with audit lines).
pub fn costs(app: &App, ex: &Exchange) -> Result<Reply, ApiError> {
    let by = match ex.query_param("group_by") {
        None => GroupBy::Daily,
        Some(g) => GroupBy::parse(&g)
            .ok_or_else(|| ApiError::bad_request("`group_by` must be daily, weekly or monthly"))?,
    };
    let periods = app.totals.read(|s| s.periods(by));
    let total: Vec<Usage> = periods.iter().map(|(_, p)| p.total).collect();
    Ok(Reply::ok(&json!({
        "group_by": by.name(),
        "periods": periods.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "total": series(&total),
        "models": series_by(&periods, "model", |p| &p.models),
        "keys": series_by(&periods, "key_id", |p| &p.keys),
    })))
}

/// `{"requests": [...], "cost_usd": [...]}`.
fn series(usage: &[Usage]) -> Value {
    json!({
        "requests": usage.iter().map(|u| u.requests).collect::<Vec<_>>(),
        "cost_usd": usage.iter().map(|u| u.cost_usd).collect::<Vec<_>>(),
    })
}

/// One series per name in the maps `pick` selects, aligned with `periods`, costliest first.
fn series_by(
    periods: &[(String, Period)],
    field: &str,
    pick: fn(&Period) -> &BTreeMap<String, Usage>,
) -> Vec<Value> {
    let names: BTreeSet<&String> = periods.iter().flat_map(|(_, p)| pick(p).keys()).collect();
    let mut rows: Vec<(f64, Value)> = names
        .into_iter()
        .map(|name| {
            let usage: Vec<Usage> = periods
                .iter()
                .map(|(_, p)| pick(p).get(name).copied().unwrap_or_default())
                .collect();
            let mut v = series(&usage);
            v[field] = json!(name);
            (usage.iter().map(|u| u.cost_usd).sum(), v)
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    rows.into_iter().map(|(_, v)| v).collect()
}

/// `GET /admin/logs?key_id=&since=&limit=`: the newest lines first, at most `limit`
/// (default 100, at most 1000), only those with `seq` above `since` when it is given.
/// `cursor` is the newest `seq` so far: pass it as `since` on the next poll.
pub fn logs(app: &App, ex: &Exchange) -> Result<Reply, ApiError> {
    let num = |name: &str, min: u64, max: u64| -> Result<Option<u64>, ApiError> {
        match ex.query_param(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::bad_request(format!(
                    "`{name}` must be a whole number from {min} to {max}"
                ))),
            },
        }
    };
    let since = num("since", 0, u64::MAX)?.unwrap_or(0);
    let limit = num("limit", 1, LOGS_MAX as u64)?.unwrap_or(100) as usize;
    let key = ex.query_param("key_id").filter(|v| !v.is_empty());
    app.totals.read(|s| {
        // Only known ids: configured keys, `_unauthorized`, and ids already in the log.
        let filter: Option<Option<&str>> = match key.as_deref() {
            None => None,
            Some(UNAUTHORIZED) => Some(None),
            Some(k) if app.config.keys.get(k).is_some() || s.keys.contains_key(k) => Some(Some(k)),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "`key_id` is not a known key id; see GET /admin/keys",
                ))
            }
        };
        let entries: Vec<&totals::Line> = s
            .recent
            .iter()
            .rev()
            .take_while(|l| l.seq > since)
            .filter(|l| filter.is_none_or(|k| l.entry.key_id.as_deref() == k))
            .take(limit)
            .collect();
        Ok(Reply::ok(&json!({
            "entries": entries,
            "cursor": s.last_seq,
            "oldest": s.recent.front().map(|l| l.seq),
        })))
    })
}
