//! Admin logins for the dashboard: the cookie ids handed out by `POST /admin/login`, each with
//! its CSRF token and a fixed expiry ([`Settings::ttl`], 1 h from login, not sliding), and
//! the failed-login throttle per remote address. Everything is in memory: a restart logs
//! the admin out. Ids and tokens are compared in constant time. This module never sleeps
//! (a throttled address is refused at once with a retry time) and never logs an id or token.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::Config;
use crate::keys::constant_time_eq;

/// The name of the admin cookie.
pub const COOKIE: &str = "claudeway_admin";
/// The header that carries the CSRF token on state-changing admin calls.
pub const CSRF_HEADER: &str = "X-CSRF-Token";
/// Live logins kept at most; a new login past this ends the oldest.
const MAX_LOGINS: usize = 32;
/// Addresses tracked by the throttle at most; past this the oldest windows are forgotten.
const MAX_TRACKED: usize = 10_000;

/// `[plugins.dashboard]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Add `Secure` to the cookie (serve over TLS or behind a TLS proxy). Default false.
    pub secure_cookie: bool,
    /// Failed logins per address within `login_window` before it is refused. Default 5.
    pub login_attempts: u32,
    /// Default 300 s.
    pub login_window: Duration,
    /// How long a login lasts. Default 3600 s.
    pub ttl: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            secure_cookie: false,
            login_attempts: 5,
            login_window: Duration::from_secs(300),
            ttl: Duration::from_secs(3600),
        }
    }
}

impl Settings {
    /// Reads `[plugins.dashboard]`; an unknown key or a wrong type is an error naming it.
    pub fn from_config(config: &Config) -> Result<Settings, String> {
        let mut s = Settings::default();
        let Some(table) = config.plugins.get("dashboard") else {
            return Ok(s);
        };
        let int = |name: &str, v: &toml::Value, min: i64, max: i64| match v.as_integer() {
            Some(n) if (min..=max).contains(&n) => Ok(n as u64),
            _ => Err(format!(
                "[plugins.dashboard] {name} must be a whole number from {min} to {max}"
            )),
        };
        for (name, v) in table {
            match name.as_str() {
                "enabled" => {}
                "secure_cookie" => {
                    s.secure_cookie = v.as_bool().ok_or_else(|| {
                        "[plugins.dashboard] secure_cookie must be true or false".to_string()
                    })?
                }
                "login_attempts" => s.login_attempts = int(name, v, 1, 1000)? as u32,
                "login_window_secs" => {
                    s.login_window = Duration::from_secs(int(name, v, 1, 86_400)?)
                }
                "session_ttl_secs" => s.ttl = Duration::from_secs(int(name, v, 60, 604_800)?),
                other => {
                    return Err(format!(
                        "[plugins.dashboard] unknown setting `{other}`; known: enabled, \
                         secure_cookie, login_attempts, login_window_secs, session_ttl_secs"
                    ))
                }
            }
        }
        Ok(s)
    }

    /// The `Set-Cookie` value for a login id (or, with `None`, the one that clears it).
    pub fn cookie(&self, id: Option<&str>) -> String {
        let (value, age) = match id {
            Some(id) => (id, self.ttl.as_secs()),
            None => ("", 0),
        };
        let secure = if self.secure_cookie { "; Secure" } else { "" };
        format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={age}{secure}")
    }
}

struct Login {
    id: String,
    csrf: String,
    expires: Instant,
}

struct Failures {
    count: u32,
    window_ends: Instant,
}

/// The live logins and the throttle.
pub struct Logins {
    pub settings: Settings,
    live: Mutex<Vec<Login>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl Logins {
    pub fn new(settings: Settings) -> Logins {
        Logins {
            settings,
            live: Mutex::new(Vec::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// A new login: `(cookie id, csrf token)`, each 32 random bytes in hex.
    pub fn create(&self) -> (String, String) {
        let login = Login {
            id: crate::random::hex(32),
            csrf: crate::random::hex(32),
            expires: Instant::now() + self.settings.ttl,
        };
        let out = (login.id.clone(), login.csrf.clone());
        let mut live = self.live.lock();
        let now = Instant::now();
        live.retain(|l| l.expires > now);
        if live.len() >= MAX_LOGINS {
            live.remove(0);
        }
        live.push(login);
        out
    }

    /// The CSRF token of a live login, or `None` (unknown or expired).
    pub fn check(&self, id: &str) -> Option<String> {
        let now = Instant::now();
        let mut live = self.live.lock();
        live.retain(|l| l.expires > now);
        let mut found = None;
        for l in live.iter() {
            if constant_time_eq(l.id.as_bytes(), id.as_bytes()) {
                found = Some(l.csrf.clone());
            }
        }
        found
    }

    /// Ends a login (logout).
    pub fn remove(&self, id: &str) {
        self.live
            .lock()
            .retain(|l| !constant_time_eq(l.id.as_bytes(), id.as_bytes()));
    }

    /// `Some(wait)` when `ip` has used up its failed attempts for this window.
    pub fn throttled(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let failures = self.failures.lock();
        let f = failures.get(&ip)?;
        (f.window_ends > now && f.count >= self.settings.login_attempts)
            .then(|| f.window_ends - now)
    }

    /// Counts a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| f.window_ends > now);
        }
        if failures.len() >= MAX_TRACKED {
            failures.clear();
        }
        let f = failures.entry(ip).or_insert(Failures {
            count: 0,
            window_ends: now + self.settings.login_window,
        });
        if f.window_ends <= now {
            *f = Failures {
                count: 0,
                window_ends: now + self.settings.login_window,
            };
        }
        f.count += 1;
    }

    /// Forgets `ip`'s failures (after a successful login).
    pub fn succeeded(&self, ip: IpAddr) {
        self.failures.lock().remove(&ip);
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_expire_and_end() {
        let logins = Logins::new(Settings {
            ttl: Duration::ZERO,
            ..Settings::default()
        });
        let (id, _) = logins.create();
        assert_eq!(logins.check(&id), None, "a zero ttl is expired at once");
        let logins = Logins::new(Settings::default());
        let (id, csrf) = logins.create();
        assert_eq!(id.len(), 64);
        assert_eq!(logins.check(&id), Some(csrf));
        assert_eq!(logins.check(&id[1..]), None);
        logins.remove(&id);
        assert_eq!(logins.check(&id), None);
        let ids: Vec<String> = (0..MAX_LOGINS + 1).map(|_| logins.create().0).collect();
        assert_eq!(logins.check(&ids[0]), None, "the oldest was ended");
        assert!(logins.check(&ids[MAX_LOGINS]).is_some());
    }

    #[test]
    fn throttles_per_address() {
        let logins = Logins::new(Settings {
            login_attempts: 2,
            ..Settings::default()
        });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "::1".parse().unwrap());
        logins.failed(a);
        assert!(logins.throttled(a).is_none());
        logins.failed(a);
        let wait = logins.throttled(a).unwrap();
        assert!(wait <= Duration::from_secs(300) && wait > Duration::from_secs(200));
        assert!(logins.throttled(b).is_none());
        logins.succeeded(a);
        assert!(logins.throttled(a).is_none());
    }

    #[test]
    fn cookies() {
        assert_eq!(
            cookie_value("a=1; claudeway_admin=xyz; b=2", COOKIE),
            Some("xyz")
        );
        assert_eq!(cookie_value("a=1", COOKIE), None);
        let s = Settings {
            secure_cookie: true,
            ..Settings::default()
        };
        assert_eq!(
            s.cookie(Some("id")),
            "claudeway_admin=id; HttpOnly; SameSite=Strict; Path=/; Max-Age=3600; Secure"
        );
        assert!(Settings::default().cookie(None).contains("Max-Age=0"));
    }
}
