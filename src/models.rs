//! The model list of `GET /models` ([`Models`]): where it comes from and how long it is kept.
//! Sources, the first that answers wins: the Anthropic Models API (only when an API key is
//! configured), `availableModels` in the CLI's `$HOME/.claude/settings.json`, and a built-in
//! list. The list is fresh for `models_ttl` (6 h); after that the stale list is served at once
//! while exactly one background thread refreshes it. A pool worker never fetches: on a cold
//! cache it waits for the first fetch at most the fetch timeout (`models_fetch_timeout`, 3 s),
//! then answers with the built-in list. A refresh that gets only a worse source than the list it has (the API failed) keeps
//! the old list, logs a warning and is tried again after [`RETRY`] (or the TTL if shorter).
//! This module never logs or returns the API key.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use serde_json::Value;

use crate::config::{Config, Env};

/// After a refresh that did not reach the API although a key is configured, the next try.
pub const RETRY: Duration = Duration::from_secs(300);
/// The `anthropic-version` header the Models API needs.
const API_VERSION: &str = "2023-06-01";
const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// At most this many pages of 1000 models are read from the API.
const MAX_PAGES: usize = 5;

/// The built-in list: the models the pinned CLI (2.1.330) sends for its aliases.
const BUILTIN: [(&str, &str); 3] = [
    ("claude-opus-5-5", "Claude Opus 5.5"),
    ("claude-sonnet-5-5", "Claude Sonnet 5.5"),
    ("claude-haiku-5-5", "Claude Haiku 5.5"),
];

/// Words the CLI takes as `--model` aliases (optionally with a `[1m]`-style suffix); they
/// never appear in the `models` list.
const ALIAS_WORDS: [&str; 7] = [
    "sonnet", "opus", "haiku", "fable", "best", "opusplan", "default",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Model {
    pub id: String,
    pub name: String,
}

/// What each alias most likely means: the first model of its family in the list (the API
/// lists the newest first). The CLI resolves aliases itself; this is for display. `None` when
/// the list has no model of that family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Aliases {
    pub sonnet: Option<String>,
    pub opus: Option<String>,
    pub haiku: Option<String>,
}

/// Where a list came from, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Api,
    Settings,
    Builtin,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Api => "Models API",
            Source::Settings => "settings.json",
            Source::Builtin => "built-in",
        })
    }
}

/// The body of `GET /models`.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub models: Vec<Model>,
    pub aliases: Aliases,
    #[serde(skip)]
    pub source: Source,
}

impl Catalog {
    pub fn new(models: Vec<Model>, source: Source) -> Catalog {
        let first = |family: &str| {
            models
                .iter()
                .find(|m| m.id.to_ascii_lowercase().contains(family))
                .map(|m| m.id.clone())
        };
        let aliases = Aliases {
            sonnet: first("sonnet"),
            opus: first("opus"),
            haiku: first("haiku"),
        };
        Catalog {
            models,
            aliases,
            source,
        }
    }

    pub fn builtin() -> Catalog {
        let models = BUILTIN
            .iter()
            .map(|(id, name)| Model {
                id: id.to_string(),
                name: name.to_string(),
            })
            .collect();
        Catalog::new(models, Source::Builtin)
    }
}

/// Where to look, read once from the config at start.
#[derive(Clone)]
pub struct Sources {
    pub api_key: Option<String>,
    pub base_url: String,
    /// The CLI's HOME (its `.claude/settings.json`).
    pub home: Option<PathBuf>,
    /// One Models API call, connect to last byte (whole seconds, at least 1). Only the
    /// refresh thread waits on it; a request on a cold cache waits for it at most this long.
    pub timeout: Duration,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("base_url", &self.base_url)
            .field("home", &self.home)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Sources {
    /// `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL` and `HOME` as the CLI sees them:
    /// `[claude.env]` first, then `env`. An empty value counts as unset.
    pub fn from_config(cfg: &Config, env: Env) -> Sources {
        let var = |name: &str| {
            cfg.claude_var(name, env)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Sources {
            api_key: var("ANTHROPIC_API_KEY"),
            base_url: var("ANTHROPIC_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.into()),
            home: var("HOME").map(PathBuf::from),
            timeout: cfg.models_fetch_timeout,
        }
    }

    /// The best list available now. Never fails: the built-in list is the last resort.
    pub fn fetch(&self) -> Catalog {
        if let Some(key) = &self.api_key {
            match fetch_api(&self.base_url, key, self.timeout) {
                Ok(models) => return Catalog::new(models, Source::Api),
                Err(e) => log::warn!(
                    "models: the Models API at {} failed: {}; falling back",
                    self.base_url,
                    e.replace(key.as_str(), "[redacted]")
                ),
            }
        }
        if let Some(home) = &self.home {
            let path = home.join(".claude").join("settings.json");
            match read_settings(&path) {
                Ok(Some(models)) => return Catalog::new(models, Source::Settings),
                Ok(None) => log::debug!("models: no availableModels in {}", path.display()),
                Err(e) => log::warn!("models: cannot use {}: {e}", path.display()),
            }
        }
        Catalog::builtin()
    }
}

fn fetch_api(base: &str, key: &str, timeout: Duration) -> Result<Vec<Model>, String> {
    let mut models: Vec<Model> = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut url = format!("{}/v1/models?limit=1000", base.trim_end_matches('/'));
        if let Some(a) = &after {
            url.push_str("&after_id=");
            url.push_str(a);
        }
        let resp = minreq::get(&url)
            .with_header("x-api-key", key)
            .with_header("anthropic-version", API_VERSION)
            .with_timeout(timeout.as_secs().max(1))
            // The key goes to the configured host only, never to where a redirect points.
            .with_follow_redirects(false)
            .send()
            .map_err(|e| e.to_string())?;
        let body: Option<Value> = serde_json::from_slice(resp.as_bytes()).ok();
        if resp.status_code != 200 {
            let message = body
                .as_ref()
                .and_then(|b| b.pointer("/error/message"))
                .and_then(Value::as_str)
                .map(|m| format!(": {}", m.chars().take(200).collect::<String>()))
                .unwrap_or_default();
            return Err(format!("HTTP {}{message}", resp.status_code));
        }
        let body = body.ok_or("the answer is not JSON")?;
        let data = body
            .get("data")
            .and_then(Value::as_array)
            .ok_or("the answer has no `data` list")?;
        for m in data {
            let Some(id) = m.get("id").and_then(Value::as_str) else {
                continue;
            };
            if !usable_id(id) || models.iter().any(|x| x.id == id) {
                continue;
            }
            let name = m
                .get("display_name")
                .and_then(Value::as_str)
                .filter(|n| !n.trim().is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| pretty_name(id));
            models.push(Model {
                id: id.to_string(),
                name,
            });
        }
        let last = body.get("last_id").and_then(Value::as_str);
        match (body.get("has_more").and_then(Value::as_bool), last) {
            (Some(true), Some(last)) if usable_id(last) => after = Some(last.to_string()),
            _ => break,
        }
    }
    if models.is_empty() {
        Err("the list is empty".into())
    } else {
        Ok(models)
    }
}

/// `availableModels` of a CLI settings file: `Ok(None)` when the file or the key is absent
/// or lists only aliases.
fn read_settings(path: &Path) -> Result<Option<Vec<Model>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}"))?;
    let Some(list) = v.get("availableModels") else {
        return Ok(None);
    };
    let list = list
        .as_array()
        .ok_or("`availableModels` is not a list of model ids")?;
    let mut models: Vec<Model> = Vec::new();
    for id in list.iter().filter_map(Value::as_str).map(str::trim) {
        if usable_id(id) && !models.iter().any(|m| m.id == id) {
            models.push(Model {
                id: id.to_string(),
                name: pretty_name(id),
            });
        }
    }
    Ok((!models.is_empty()).then_some(models))
}

/// A full model id that `POST /task` would accept as `model` (aliases are not ids).
fn usable_id(id: &str) -> bool {
    !is_alias(id) && crate::claude::args::validate_model(id).is_ok()
}

/// `sonnet`, `opus[1m]`, `default`, ...: a word the CLI resolves itself.
pub fn is_alias(word: &str) -> bool {
    let base = word.split('[').next().unwrap_or(word);
    ALIAS_WORDS.contains(&base.to_ascii_lowercase().as_str())
}

/// A readable name for an id without one: `claude-sonnet-4-5-20250929` → "Claude Sonnet
/// 4.5", `claude-3-5-haiku-20241022` → "Claude 3.5 Haiku". Other ids stay as they are.
pub fn pretty_name(id: &str) -> String {
    let Some(rest) = id.strip_prefix("claude-") else {
        return id.to_string();
    };
    let mut parts: Vec<&str> = rest.split('-').filter(|p| !p.is_empty()).collect();
    if parts
        .last()
        .is_some_and(|p| p.len() == 8 && p.bytes().all(|b| b.is_ascii_digit()))
    {
        parts.pop();
    }
    let mut words: Vec<String> = vec!["Claude".into()];
    let mut number = false;
    for p in parts {
        let is_number = p.bytes().all(|b| b.is_ascii_digit());
        if is_number && number {
            if let Some(last) = words.last_mut() {
                last.push('.');
                last.push_str(p);
            }
        } else if is_number {
            words.push(p.to_string());
        } else {
            let mut c = p.chars();
            let first = c.next().map(|f| f.to_uppercase().collect::<String>());
            words.push(first.unwrap_or_default() + c.as_str());
        }
        number = is_number;
    }
    words.join(" ")
}

/// The cache: one list, shared by every request, refreshed by one thread at a time.
pub struct Models {
    sources: Sources,
    ttl: Duration,
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    catalog: Option<Arc<Catalog>>,
    /// When the list must be refreshed.
    stale_at: Option<Instant>,
    /// A refresh thread is running (never two).
    refreshing: bool,
}

impl Models {
    pub fn new(sources: Sources, ttl: Duration) -> Arc<Models> {
        Arc::new(Models {
            sources,
            ttl,
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
        })
    }

    /// The list to answer with now. Stale: returned at once, a refresh starts in the
    /// background. Cold: waits for the first fetch at most the fetch timeout.
    pub fn get(self: &Arc<Self>) -> Arc<Catalog> {
        let mut st = self.state.lock();
        if let Some(c) = st.catalog.clone() {
            if st.stale_at.is_some_and(|t| Instant::now() >= t) {
                self.start_refresh(&mut st);
            }
            return c;
        }
        self.start_refresh(&mut st);
        let deadline = Instant::now() + self.sources.timeout;
        while st.catalog.is_none() && st.refreshing {
            if self.ready.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        match st.catalog.clone() {
            Some(c) => c,
            None => {
                log::warn!(
                    "models: no list after {:?}; answering with the built-in list",
                    self.sources.timeout
                );
                Arc::new(Catalog::builtin())
            }
        }
    }

    fn start_refresh(self: &Arc<Self>, st: &mut State) {
        if st.refreshing {
            return;
        }
        st.refreshing = true;
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("models-refresh".into())
            .spawn(move || me.refresh());
        if let Err(e) = spawned {
            st.refreshing = false;
            log::error!("models: cannot start the refresh thread: {e}");
        }
    }

    /// Runs on the refresh thread only.
    fn refresh(&self) {
        let fetched = catch_unwind(AssertUnwindSafe(|| self.sources.fetch()));
        let now = Instant::now();
        let retry = now + self.ttl.min(RETRY);
        let mut st = self.state.lock();
        match fetched {
            Ok(new) => match &st.catalog {
                Some(old) if new.source > old.source => {
                    log::warn!(
                        "models: refresh got only the {} list; keeping the {} list",
                        new.source,
                        old.source
                    );
                    st.stale_at = Some(retry);
                }
                _ => {
                    let missed_api = self.sources.api_key.is_some() && new.source != Source::Api;
                    st.stale_at = Some(if missed_api { retry } else { now + self.ttl });
                    log::debug!(
                        "models: {} models from the {}",
                        new.models.len(),
                        new.source
                    );
                    st.catalog = Some(Arc::new(new));
                }
            },
            Err(_) => {
                log::error!("models: the refresh panicked; keeping the old list");
                st.stale_at = Some(retry);
            }
        }
        st.refreshing = false;
        drop(st);
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_ids() {
        assert_eq!(
            pretty_name("claude-sonnet-4-5-20250929"),
            "Claude Sonnet 4.5"
        );
        assert_eq!(pretty_name("claude-3-5-haiku-20241022"), "Claude 3.5 Haiku");
        assert_eq!(pretty_name("claude-opus-4-1"), "Claude Opus 4.1");
        assert_eq!(pretty_name("claude-opus-4"), "Claude Opus 4");
        assert_eq!(pretty_name("my-model"), "my-model");
    }

    #[test]
    fn aliases_are_not_ids() {
        for a in [
            "sonnet",
            "Opus",
            "haiku",
            "sonnet[1m]",
            "default",
            "opusplan",
        ] {
            assert!(is_alias(a), "{a}");
            assert!(!usable_id(a), "{a}");
        }
        assert!(usable_id("claude-sonnet-4-5"));
        assert!(!usable_id("--help"));
        assert!(!usable_id("bad id"));
    }

    #[test]
    fn aliases_point_at_the_first_of_their_family() {
        let c = Catalog::new(
            ["claude-sonnet-9", "claude-opus-9", "claude-sonnet-8"]
                .iter()
                .map(|id| Model {
                    id: id.to_string(),
                    name: pretty_name(id),
                })
                .collect(),
            Source::Api,
        );
        assert_eq!(c.aliases.sonnet.as_deref(), Some("claude-sonnet-9"));
        assert_eq!(c.aliases.opus.as_deref(), Some("claude-opus-9"));
        assert_eq!(c.aliases.haiku, None);
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 2, "models and aliases only");
        let b = Catalog::builtin();
        assert!(
            b.aliases.sonnet.is_some() && b.aliases.opus.is_some() && b.aliases.haiku.is_some()
        );
    }

    #[test]
    fn settings_files() {
        let dir = std::env::temp_dir().join(format!("cw-models-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("settings.json");
        assert_eq!(read_settings(&f).unwrap(), None, "missing file");
        std::fs::write(&f, r#"{"model":"opus"}"#).unwrap();
        assert_eq!(read_settings(&f).unwrap(), None, "no availableModels");
        std::fs::write(&f, r#"{"availableModels":["sonnet","haiku"]}"#).unwrap();
        assert_eq!(read_settings(&f).unwrap(), None, "aliases only");
        std::fs::write(&f, r#"{"availableModels":"x"}"#).unwrap();
        assert!(read_settings(&f).is_err());
        std::fs::write(&f, "{oops").unwrap();
        assert!(read_settings(&f).unwrap_err().contains("JSON"));
        std::fs::write(
            &f,
            r#"{"availableModels":["opus","claude-opus-4-1"," claude-haiku-4-5-20251001",1,"claude-opus-4-1"]}"#,
        )
        .unwrap();
        let got = read_settings(&f).unwrap().unwrap();
        let ids: Vec<&str> = got.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["claude-opus-4-1", "claude-haiku-4-5-20251001"]);
        assert_eq!(got[1].name, "Claude Haiku 4.5");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sources_never_show_the_key() {
        let s = Sources {
            api_key: Some("sk-very-secret".into()),
            base_url: DEFAULT_BASE_URL.into(),
            home: None,
            timeout: Duration::from_secs(3),
        };
        assert!(!format!("{s:?}").contains("sk-very-secret"));
    }
}
