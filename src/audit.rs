//! The audit log: one JSON line per event in `LOG_DIR/<key_id>/YYYY-MM.log` (UTC month of
//! the event), `_unauthorized/` for failed authentication. One writer thread owns the files;
//! requests hand it [`Entry`]s over an unbounded channel, so recording never blocks a request
//! and never drops a line, and lines are never interleaved. Each line is flushed as written.
//! Never put a secret in an entry.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crossbeam_channel::{unbounded, Sender};
use parking_lot::Mutex;
use serde::Serialize;

use crate::claude::Tokens;

/// The directory of failed authentications.
pub const UNAUTHORIZED: &str = "_unauthorized";

/// One audit line. Field order is the order written.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Entry {
    pub timestamp: String,
    /// INFO success; WARN failed, timed out, cancelled, denied, limited; ERROR internal.
    pub level: String,
    pub key_id: Option<String>,
    pub request_id: String,
    pub route: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub session_id: Option<String>,
    /// The model as asked.
    pub model: Option<String>,
    /// The model as the CLI reports it.
    pub model_resolved: Option<String>,
    pub claude_exit_code: Option<i32>,
    pub duration_ms: u64,
    pub success: bool,
    pub tokens: Option<Tokens>,
    pub cost_usd: Option<f64>,
    pub message: String,
}

impl Entry {
    /// An entry stamped now, for `route` and `request_id`; fill in the rest.
    pub fn new(request_id: &str, route: &str, key_id: Option<&str>, message: &str) -> Entry {
        Entry {
            timestamp: crate::clock::now_rfc3339(),
            level: "INFO".into(),
            key_id: key_id.map(str::to_string),
            request_id: request_id.to_string(),
            route: route.to_string(),
            status: 200,
            code: None,
            session_id: None,
            model: None,
            model_resolved: None,
            claude_exit_code: None,
            duration_ms: 0,
            success: true,
            tokens: None,
            cost_usd: None,
            message: message.to_string(),
        }
    }

    /// Marks the entry as a failure with this error's status and code; level WARN, or
    /// ERROR for internal errors.
    pub fn failed(mut self, status: u16, code: &str) -> Entry {
        self.status = status;
        self.code = Some(code.to_string());
        self.success = false;
        self.level = if status >= 500 && status != 503 {
            "ERROR"
        } else {
            "WARN"
        }
        .into();
        self
    }

    /// The directory this line goes to.
    pub fn dir(&self) -> &str {
        self.key_id.as_deref().unwrap_or(UNAUTHORIZED)
    }
}

enum Msg {
    Line(Box<Entry>),
    Flush(Sender<()>),
}

/// Hands entries to the writer thread. Cloning is cheap.
#[derive(Clone)]
pub struct Audit {
    tx: Sender<Msg>,
    listeners: std::sync::Arc<Mutex<Vec<Sender<Entry>>>>,
}

impl Audit {
    /// Starts the writer thread. `dirs` are created now (one per key, and `_unauthorized`).
    pub fn start(log_dir: &Path, key_ids: &[&str]) -> std::io::Result<Audit> {
        std::fs::create_dir_all(log_dir)?;
        for id in key_ids.iter().copied().chain([UNAUTHORIZED]) {
            std::fs::create_dir_all(log_dir.join(id))?;
        }
        let (tx, rx) = unbounded::<Msg>();
        let dir = log_dir.to_path_buf();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let mut files: HashMap<PathBuf, File> = HashMap::new();
                for msg in rx {
                    match msg {
                        Msg::Line(entry) => write_line(&dir, &mut files, &entry),
                        Msg::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        Ok(Audit {
            tx,
            listeners: Default::default(),
        })
    }

    /// Queues one line; returns at once.
    pub fn record(&self, entry: Entry) {
        for l in self.listeners.lock().iter() {
            let _ = l.send(entry.clone());
        }
        let _ = self.tx.send(Msg::Line(Box::new(entry)));
    }

    /// Waits until every line queued before this call is on disk.
    pub fn flush(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
        }
    }

    /// Every entry recorded from now on is also sent here (running totals, plugins).
    pub fn subscribe(&self, tx: Sender<Entry>) {
        self.listeners.lock().push(tx);
    }
}

/// The log file of an entry: `<dir>/<key>/<YYYY-MM>.log`, month from its timestamp.
pub fn file_for(log_dir: &Path, entry: &Entry) -> PathBuf {
    let month = entry.timestamp.get(..7).unwrap_or("0000-00");
    log_dir.join(entry.dir()).join(format!("{month}.log"))
}

fn write_line(dir: &Path, files: &mut HashMap<PathBuf, File>, entry: &Entry) {
    let path = file_for(dir, entry);
    let mut line = match serde_json::to_vec(entry) {
        Ok(l) => l,
        Err(e) => {
            log::error!("audit: cannot serialize a line: {e}");
            return;
        }
    };
    line.push(b'\n');
    if !files.contains_key(&path) {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        // Keep only this month's handles: older months are never written again.
        files.retain(|p, _| p.file_name() == path.file_name());
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => {
                files.insert(path.clone(), f);
            }
            Err(e) => {
                log::error!(
                    "audit: cannot open {}: {e}; the line is printed here instead",
                    path.display()
                );
                log::error!("audit line: {}", String::from_utf8_lossy(&line).trim_end());
                return;
            }
        }
    }
    let Some(file) = files.get_mut(&path) else {
        return;
    };
    // One write_all of a whole line on an O_APPEND file, then flush: never interleaved.
    if let Err(e) = file.write_all(&line).and_then(|_| file.flush()) {
        log::error!("audit: cannot write {}: {e}", path.display());
        log::error!("audit line: {}", String::from_utf8_lossy(&line).trim_end());
        files.remove(&path);
    }
}

/// Reads every audit line under `log_dir`, oldest file first (used once at start to rebuild
/// running totals). Unparseable lines are skipped with a warning.
pub fn read_all(log_dir: &Path) -> Vec<Entry> {
    let mut files = Vec::new();
    let Ok(dirs) = std::fs::read_dir(log_dir) else {
        return Vec::new();
    };
    for d in dirs.flatten() {
        if let Ok(inner) = std::fs::read_dir(d.path()) {
            for f in inner.flatten() {
                let p = f.path();
                if p.extension().is_some_and(|e| e == "log") {
                    files.push(p);
                }
            }
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()).then(a.cmp(b)));
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            match serde_json::from_str::<Entry>(line) {
                Ok(e) => out.push(e),
                Err(e) => log::warn!(
                    "{}:{}: skipping an unreadable audit line: {e}",
                    f.display(),
                    i + 1
                ),
            }
        }
    }
    out
}
