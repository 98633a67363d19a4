//! The session store: conversations that belong to a key, keep a workdir, resume the CLI's
//! conversation turn after turn, and accumulate tokens and cost. Each session is one JSON
//! file under `<state_dir>/sessions/`, written atomically (temp file + rename) after every
//! change and loaded at start, so a restart (or a `kill -9`) loses at most the counters of
//! the turn in flight and never corrupts the store. A per-session [`TurnLock`] runs turns one
//! at a time in arrival order. The map's lock guards the map only: it is never held across
//! I/O other than the small state-file write, a child wait, or a channel send.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::claude::{Denial, Tokens};

/// What a session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Started with `POST /session/start`.
    Session,
    /// A `/task` (or stream) whose run left permission denials: kept until `expires_at` so
    /// that it can be approved.
    Task,
    /// A conversation of the OpenAI/Anthropic-compatible routes (`/v1/*`), found again by the
    /// history the client sends (see `sdk/threads.rs`).
    Sdk,
}

/// One session, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// A UUID; also the CLI's session id (`--session-id`, then `--resume`).
    pub session_id: String,
    pub key_id: String,
    pub kind: Kind,
    pub model: String,
    pub system_prompt: Option<String>,
    /// Default `timeout_secs` of this session's turns.
    pub timeout_secs: u64,
    pub workdir: PathBuf,
    /// The workdir was created for this session (and is removed with it).
    pub owns_workdir: bool,
    pub created_at: String,
    pub last_active_at: String,
    /// Unix seconds of the last activity (for expiry).
    pub last_active_unix: i64,
    /// Unix seconds after which a `Task` session is removed.
    pub expires_unix: Option<i64>,
    pub task_count: u64,
    pub tokens: Tokens,
    pub cost_usd: f64,
    /// The CLI has this conversation (a turn created it): resume it next time.
    pub started: bool,
    /// Denials of the last turn that can still be approved.
    pub pending: Vec<Denial>,
}

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub session_id: String,
    pub key_id: String,
    pub model: String,
    pub system_prompt: Option<String>,
    pub workdir: String,
    pub created_at: String,
    pub last_active_at: String,
    pub task_count: u64,
    pub tokens: Tokens,
    pub cost_usd: f64,
    pub busy: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_approvals: Vec<Denial>,
}

/// Runs a session's turns one at a time, in arrival order.
#[derive(Default)]
pub struct TurnLock {
    state: Mutex<TurnState>,
    cv: Condvar,
}

#[derive(Default)]
struct TurnState {
    busy: bool,
    queue: VecDeque<u64>,
    next: u64,
}

/// A held turn; dropping it lets the next waiter in.
pub struct Turn(Arc<TurnLock>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.state.lock().busy = false;
        self.0.cv.notify_all();
    }
}

impl TurnLock {
    /// Waits for the turn until `deadline`; None if it passed.
    pub fn acquire(self: &Arc<TurnLock>, deadline: Instant) -> Option<Turn> {
        let mut s = self.state.lock();
        let ticket = s.next;
        s.next += 1;
        s.queue.push_back(ticket);
        loop {
            if !s.busy && s.queue.front() == Some(&ticket) {
                s.queue.pop_front();
                s.busy = true;
                return Some(Turn(self.clone()));
            }
            if Instant::now() >= deadline {
                s.queue.retain(|t| *t != ticket);
                drop(s);
                self.cv.notify_all();
                return None;
            }
            self.cv.wait_until(&mut s, deadline);
        }
    }

    pub fn busy(&self) -> bool {
        self.state.lock().busy
    }
}

pub struct Store {
    dir: PathBuf,
    sessions: Mutex<HashMap<String, Session>>,
    locks: Mutex<HashMap<String, Arc<TurnLock>>>,
}

impl Store {
    /// Opens the store in `<state_dir>/sessions`, loading every session file. Unreadable
    /// files are set aside as `*.bad` with a warning rather than stopping the start.
    pub fn open(state_dir: &Path) -> std::io::Result<Store> {
        let dir = state_dir.join("sessions");
        std::fs::create_dir_all(&dir)?;
        let mut sessions = HashMap::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {}
                Some("tmp") => {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                _ => continue,
            }
            let parsed = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Session>(&b).ok());
            match parsed {
                Some(s) => {
                    sessions.insert(s.session_id.clone(), s);
                }
                None => {
                    log::warn!("session file {} is unreadable; moved aside", path.display());
                    let _ = std::fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        Ok(Store {
            dir,
            sessions: Mutex::new(sessions),
            locks: Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes one session atomically: a temp file, fsync, rename.
    fn persist(&self, s: &Session) {
        let path = self.path(&s.session_id);
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(s).unwrap_or_default())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            log::error!("cannot save session {}: {e}", s.session_id);
        }
    }

    pub fn insert(&self, s: Session) {
        self.persist(&s);
        self.sessions.lock().insert(s.session_id.clone(), s);
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        self.sessions.lock().get(id).cloned()
    }

    /// The session if `key_id` may use it (its owner, or the admin).
    pub fn get_for(&self, id: &str, key_id: &str, is_admin: bool) -> Option<Session> {
        self.get(id).filter(|s| is_admin || s.key_id == key_id)
    }

    /// Changes a session and saves it; None if it is gone.
    pub fn update<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        let (out, copy) = {
            let mut map = self.sessions.lock();
            let s = map.get_mut(id)?;
            let out = f(s);
            (out, s.clone())
        };
        self.persist(&copy);
        Some(out)
    }

    pub fn remove(&self, id: &str) -> Option<Session> {
        let s = self.sessions.lock().remove(id)?;
        self.locks.lock().remove(id);
        let _ = std::fs::remove_file(self.path(id));
        Some(s)
    }

    /// True if some session works in `dir` or below it.
    pub fn uses_dir(&self, dir: &Path) -> bool {
        self.sessions
            .lock()
            .values()
            .any(|s| s.workdir.starts_with(dir))
    }

    pub fn lock_for(&self, id: &str) -> Arc<TurnLock> {
        self.locks.lock().entry(id.to_string()).or_default().clone()
    }

    pub fn busy(&self, id: &str) -> bool {
        self.locks.lock().get(id).is_some_and(|l| l.busy())
    }

    pub fn view(&self, s: &Session) -> View {
        View {
            session_id: s.session_id.clone(),
            key_id: s.key_id.clone(),
            model: s.model.clone(),
            system_prompt: s.system_prompt.clone(),
            workdir: s.workdir.to_string_lossy().into_owned(),
            created_at: s.created_at.clone(),
            last_active_at: s.last_active_at.clone(),
            task_count: s.task_count,
            tokens: s.tokens,
            cost_usd: s.cost_usd,
            busy: self.busy(&s.session_id),
            pending_approvals: s.pending.clone(),
        }
    }

    /// Sessions of `key_id` (every key's when None), newest first.
    pub fn list(&self, key_id: Option<&str>) -> Vec<Session> {
        let mut out: Vec<Session> = self
            .sessions
            .lock()
            .values()
            .filter(|s| s.kind == Kind::Session && key_id.is_none_or(|k| s.key_id == k))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(b.session_id.cmp(&a.session_id))
        });
        out
    }

    /// Number of `POST /session/start` sessions.
    pub fn count(&self) -> usize {
        self.sessions
            .lock()
            .values()
            .filter(|s| s.kind == Kind::Session)
            .count()
    }

    /// Sessions due for removal at `now` (unix seconds): idle longer than `ttl_secs`
    /// (0 = never), or approval sessions past their expiry. Busy ones are skipped.
    pub fn expired(&self, now: i64, ttl_secs: u64) -> Vec<String> {
        self.sessions
            .lock()
            .values()
            .filter(|s| {
                let idle = ttl_secs > 0 && now - s.last_active_unix > ttl_secs as i64;
                let over = s.expires_unix.is_some_and(|e| now > e);
                idle || over
            })
            .map(|s| s.session_id.clone())
            .filter(|id| !self.busy(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn session(id: &str, key: &str) -> Session {
        Session {
            session_id: id.into(),
            key_id: key.into(),
            kind: Kind::Session,
            model: "sonnet".into(),
            system_prompt: None,
            timeout_secs: 120,
            workdir: PathBuf::from("/tmp/x"),
            owns_workdir: true,
            created_at: format!("2026-01-01T00:00:0{id}.000Z"),
            last_active_at: String::new(),
            last_active_unix: 100,
            expires_unix: None,
            task_count: 0,
            tokens: Tokens::default(),
            cost_usd: 0.0,
            started: false,
            pending: Vec::new(),
        }
    }

    #[test]
    fn persists_and_reloads_and_survives_junk() {
        let dir = std::env::temp_dir().join(format!("cw-sessions-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir).unwrap();
        store.insert(session("1", "a"));
        store.insert(session("2", "b"));
        store.update("1", |s| s.task_count = 7).unwrap();
        std::fs::write(dir.join("sessions/junk.json"), b"{half").unwrap();
        std::fs::write(dir.join("sessions/3.tmp"), b"partial write").unwrap();
        let again = Store::open(&dir).unwrap();
        assert_eq!(again.get("1").unwrap().task_count, 7);
        assert_eq!(again.list(None).len(), 2);
        assert_eq!(again.list(Some("b"))[0].session_id, "2");
        assert_eq!(again.list(None)[0].session_id, "2", "newest first");
        assert!(dir.join("sessions/junk.bad").exists());
        assert!(!dir.join("sessions/3.tmp").exists());
        assert!(again.get_for("1", "b", false).is_none());
        assert!(again.get_for("1", "b", true).is_some());
        again.remove("1");
        assert!(Store::open(&dir).unwrap().get("1").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn turns_run_in_arrival_order() {
        let lock = Arc::new(TurnLock::default());
        let far = Instant::now() + Duration::from_secs(10);
        let first = lock.acquire(far).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut hs = Vec::new();
        for i in 0..4 {
            let (l, o) = (lock.clone(), order.clone());
            hs.push(std::thread::spawn(move || {
                let _t = l.acquire(far).unwrap();
                o.lock().push(i);
            }));
            while lock.state.lock().queue.len() < i + 1 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        assert!(
            lock.acquire(Instant::now() + Duration::from_millis(30))
                .is_none(),
            "deadline"
        );
        drop(first);
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(*order.lock(), [0, 1, 2, 3]);
    }

    #[test]
    fn expiry() {
        let dir = std::env::temp_dir().join(format!("cw-sessions-{}", uuid::Uuid::new_v4()));
        let store = Store::open(&dir).unwrap();
        store.insert(session("1", "a"));
        let mut t = session("2", "a");
        t.kind = Kind::Task;
        t.expires_unix = Some(150);
        t.last_active_unix = 140;
        store.insert(t);
        assert!(store.expired(120, 0).is_empty());
        assert_eq!(store.expired(151, 0), ["2"]);
        let mut both = store.expired(1000, 60);
        both.sort();
        assert_eq!(both, ["1", "2"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
