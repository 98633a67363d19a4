//! Where each SDK conversation stands, so that the next request finds it again by the history
//! it carries: per session, the *head* (the [`fingerprint`](super::fingerprint) of the
//! history the client will send next: every message so far and the last answer) and how many
//! of its first messages were given to the CLI as context rather than as turns. Heads are
//! looked up by (key id, head): a key only ever finds its own conversations.
//!
//! A head is *claimed* (removed) when a turn starts from it and put back (moved on, or
//! restored after a failure) when the turn ends, so two requests with the same history
//! never resume the same CLI conversation: the second one, a fork or a regenerate, starts a
//! new conversation with the history as context. One small JSON file per session under
//! `<state_dir>/sdk/` (temp file + rename), loaded at start; entries whose session is gone are
//! dropped when loaded or when found. The lock guards the maps only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    pub session_id: String,
    pub key_id: String,
    pub head: String,
    /// The first `context_len` messages went to the CLI as context in the system prompt (the
    /// conversation began from an unknown history); they are given again on every turn.
    pub context_len: usize,
}

#[derive(Default)]
struct Maps {
    /// (key id, head) → thread.
    by_head: HashMap<(String, String), Thread>,
    /// session id → its head.
    by_session: HashMap<String, String>,
}

pub struct Threads {
    dir: PathBuf,
    maps: Mutex<Maps>,
}

impl Threads {
    /// Loads `<state_dir>/sdk/*.json`, dropping threads whose session `exists` denies and
    /// files that cannot be read. Never fails: a thread lost only makes its next turn start
    /// a new conversation with the history as context.
    pub fn open(state_dir: &Path, exists: impl Fn(&str) -> bool) -> Threads {
        let dir = state_dir.join("sdk");
        if let Err(e) = std::fs::create_dir_all(&dir) {
            log::error!("cannot create {}: {e}", dir.display());
        }
        let mut maps = Maps::default();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let thread = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Thread>(&b).ok())
                .filter(|t| path.extension().is_some_and(|e| e == "json") && exists(&t.session_id));
            match thread {
                Some(t) => {
                    maps.by_session.insert(t.session_id.clone(), t.head.clone());
                    maps.by_head.insert((t.key_id.clone(), t.head.clone()), t);
                }
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Threads {
            dir,
            maps: Mutex::new(maps),
        }
    }

    fn path(&self, session_id: &str) -> PathBuf {
        self.dir.join(format!("{session_id}.json"))
    }

    /// Takes the thread of `key_id` whose head is `head`, if any.
    pub fn claim(&self, key_id: &str, head: &str) -> Option<Thread> {
        let t = {
            let mut m = self.maps.lock();
            let t = m.by_head.remove(&(key_id.to_string(), head.to_string()))?;
            m.by_session.remove(&t.session_id);
            t
        };
        let _ = std::fs::remove_file(self.path(&t.session_id));
        Some(t)
    }

    /// Sets the head of `t.session_id` (replacing its earlier one) and saves it.
    pub fn put(&self, t: Thread) {
        let bytes = serde_json::to_vec(&t).unwrap_or_default();
        {
            let mut m = self.maps.lock();
            if let Some(old) = m.by_session.insert(t.session_id.clone(), t.head.clone()) {
                m.by_head.remove(&(t.key_id.clone(), old));
            }
            m.by_head
                .insert((t.key_id.clone(), t.head.clone()), t.clone());
        }
        let path = self.path(&t.session_id);
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, &path)) {
            log::error!("cannot save the SDK conversation {}: {e}", t.session_id);
        }
    }

    /// Forgets the head of a session (it is gone).
    pub fn forget(&self, session_id: &str) {
        let mut m = self.maps.lock();
        if let Some(head) = m.by_session.remove(session_id) {
            m.by_head
                .retain(|(_, h), t| !(h == &head && t.session_id == session_id));
        }
        drop(m);
        let _ = std::fs::remove_file(self.path(session_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(id: &str, key: &str, head: &str) -> Thread {
        Thread {
            session_id: id.into(),
            key_id: key.into(),
            head: head.into(),
            context_len: 2,
        }
    }

    #[test]
    fn claim_put_reload() {
        let dir = std::env::temp_dir().join(format!("cw-threads-{}", uuid::Uuid::new_v4()));
        let t = Threads::open(&dir, |_| true);
        t.put(thread("s1", "a", "h1"));
        t.put(thread("s2", "a", "h2"));
        assert!(t.claim("b", "h1").is_none(), "another key never finds it");
        let got = t.claim("a", "h1").unwrap();
        assert_eq!(got.context_len, 2);
        assert!(t.claim("a", "h1").is_none(), "claimed once");
        t.put(thread("s1", "a", "h3"));
        t.put(thread("s2", "a", "h4"));
        assert!(
            t.claim("a", "h2").is_none(),
            "a new head replaces the old one"
        );
        std::fs::write(dir.join("sdk/junk.json"), b"{").unwrap();
        let again = Threads::open(&dir, |id| id != "s2");
        assert_eq!(again.claim("a", "h3").unwrap().session_id, "s1");
        assert!(again.claim("a", "h4").is_none(), "its session is gone");
        assert!(!dir.join("sdk/junk.json").exists());
        assert!(!dir.join("sdk/s2.json").exists());
        again.put(thread("s5", "a", "h5"));
        again.forget("s5");
        assert!(again.claim("a", "h5").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
