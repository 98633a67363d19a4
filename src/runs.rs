//! Admission and bookkeeping of CLI runs. [`Gate`] caps how many run at once: beyond the cap,
//! runs wait in a bounded queue that is fair across keys (round robin, so one busy key cannot
//! starve the others) and leave it when their deadline passes. A key with its own cap
//! (`max_concurrent`) may have as many runs waiting as it may run; more are refused. [`Registry`]
//! knows every run in flight (pid, key, session, age, bytes) and can cancel it; it records each
//! pid with its start time under the state dir, so that the next start kills what a crash left
//! behind, and only that (a pid reused by another process is left alone).
//! Waiting here happens only on run threads, never on a pool worker.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex};

/// Why a run was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full.
    QueueFull,
    /// The deadline passed while waiting.
    Timeout,
    /// The server is shutting down.
    Closed,
    /// The key has its own cap's worth of runs running and as many waiting.
    KeyBusy,
    /// Its run was cancelled while it waited.
    Cancelled,
}

#[derive(Default)]
struct GateState {
    running: usize,
    per_key: HashMap<String, usize>,
    caps: HashMap<String, usize>,
    queues: HashMap<String, VecDeque<u64>>,
    /// Keys with waiters, in the order they are served next.
    order: VecDeque<String>,
    waiting: usize,
    granted: HashSet<u64>,
    next_ticket: u64,
    closed: bool,
}

/// How often a waiter looks whether its run was cancelled.
pub const CANCEL_POLL: Duration = Duration::from_millis(100);

pub struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
    max_running: usize,
    max_queue: usize,
}

/// A run's place; dropping it frees the place for the next waiter.
pub struct Slot {
    gate: Arc<Gate>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.gate.state.lock();
        s.running -= 1;
        if let Some(n) = s.per_key.get_mut(&self.key) {
            *n -= 1;
        }
        self.gate.grant(&mut s);
        drop(s);
        self.gate.cv.notify_all();
    }
}

impl Gate {
    pub fn new(max_running: usize, max_queue: usize) -> Arc<Gate> {
        Arc::new(Gate {
            state: Mutex::new(GateState::default()),
            cv: Condvar::new(),
            max_running,
            max_queue,
        })
    }

    /// Waits for a place for `key` (whose own cap is `key_cap`) until `deadline`, or until
    /// `cancelled()` says so (looked at every [`CANCEL_POLL`] while waiting).
    pub fn acquire(
        self: &Arc<Gate>,
        key: &str,
        key_cap: Option<usize>,
        deadline: Instant,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Slot, Refused> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(Refused::Closed);
        }
        if let Some(cap) = key_cap {
            s.caps.insert(key.to_string(), cap);
        }
        let under_cap = |s: &GateState| {
            s.per_key.get(key).copied().unwrap_or(0)
                < s.caps.get(key).copied().unwrap_or(usize::MAX)
        };
        if s.waiting == 0 && s.running < self.max_running && under_cap(&s) {
            s.running += 1;
            *s.per_key.entry(key.to_string()).or_default() += 1;
            return Ok(Slot {
                gate: self.clone(),
                key: key.to_string(),
            });
        }
        if let Some(cap) = s.caps.get(key).copied() {
            let waiting = s.queues.get(key).map_or(0, VecDeque::len);
            if !under_cap(&s) && waiting >= cap {
                return Err(Refused::KeyBusy);
            }
        }
        if s.waiting >= self.max_queue {
            return Err(Refused::QueueFull);
        }
        let ticket = s.next_ticket;
        s.next_ticket += 1;
        s.waiting += 1;
        let q = s.queues.entry(key.to_string()).or_default();
        q.push_back(ticket);
        if q.len() == 1 {
            s.order.push_back(key.to_string());
        }
        self.grant(&mut s);
        loop {
            if s.granted.remove(&ticket) {
                return Ok(Slot {
                    gate: self.clone(),
                    key: key.to_string(),
                });
            }
            let cancel = cancelled();
            if s.closed || cancel || Instant::now() >= deadline {
                // Leave the queue (the ticket may have been granted meanwhile: checked above).
                if let Some(q) = s.queues.get_mut(key) {
                    q.retain(|t| *t != ticket);
                    if q.is_empty() {
                        s.queues.remove(key);
                        s.order.retain(|k| k != key);
                    }
                }
                s.waiting -= 1;
                return Err(if s.closed {
                    Refused::Closed
                } else if cancel {
                    Refused::Cancelled
                } else {
                    Refused::Timeout
                });
            }
            self.cv
                .wait_until(&mut s, deadline.min(Instant::now() + CANCEL_POLL));
        }
    }

    /// Hands free places to waiters, one key at a time in round-robin order.
    fn grant(&self, s: &mut GateState) {
        let mut granted_any = false;
        let mut skipped = 0;
        while s.running < self.max_running && skipped < s.order.len() {
            let Some(key) = s.order.pop_front() else {
                break;
            };
            let cap = s.caps.get(&key).copied().unwrap_or(usize::MAX);
            if s.per_key.get(&key).copied().unwrap_or(0) >= cap {
                s.order.push_back(key);
                skipped += 1;
                continue;
            }
            skipped = 0;
            let Some(q) = s.queues.get_mut(&key) else {
                continue;
            };
            let Some(ticket) = q.pop_front() else {
                continue;
            };
            if q.is_empty() {
                s.queues.remove(&key);
            } else {
                s.order.push_back(key.clone());
            }
            s.waiting -= 1;
            s.running += 1;
            *s.per_key.entry(key).or_default() += 1;
            s.granted.insert(ticket);
            granted_any = true;
        }
        if granted_any {
            self.cv.notify_all();
        }
    }

    /// (running, waiting).
    pub fn load(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.running, s.waiting)
    }

    /// Refuses new runs and wakes every waiter.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.cv.notify_all();
    }
}

/// One run in flight, as the registry shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunInfo {
    pub request_id: String,
    /// `queued` (waiting for a run place) or `running`.
    pub state: &'static str,
    pub key_id: String,
    pub session_id: Option<String>,
    pub route: String,
    pub pid: Option<u32>,
    pub age_secs: u64,
    pub bytes_out: u64,
}

struct Entry {
    /// Not unique: a client may send the same `X-Request-Id` twice.
    request_id: String,
    running: bool,
    key_id: String,
    session_id: Option<String>,
    route: String,
    pid: Option<u32>,
    started: Instant,
    bytes: Arc<AtomicU64>,
    cancel: Sender<()>,
}

#[derive(Default)]
pub struct Registry {
    /// By a number of our own: request ids may repeat.
    runs: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
    /// Where pids are recorded so that a restart after a crash can kill leftovers.
    pid_dir: Option<std::path::PathBuf>,
}

/// A registered run; dropping it unregisters. Holds the receiving end of its cancel line.
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
    pub request_id: String,
    pub cancel: Receiver<()>,
    pub bytes: Arc<AtomicU64>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let removed = self.registry.runs.lock().remove(&self.id);
        if let (Some(dir), Some(Entry { pid: Some(pid), .. })) = (&self.registry.pid_dir, removed) {
            let _ = std::fs::remove_file(dir.join(pid.to_string()));
        }
    }
}

impl Registry {
    pub fn new(pid_dir: Option<std::path::PathBuf>) -> Arc<Registry> {
        if let Some(d) = &pid_dir {
            let _ = std::fs::create_dir_all(d);
        }
        Arc::new(Registry {
            runs: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            pid_dir,
        })
    }

    pub fn register(
        self: &Arc<Registry>,
        request_id: &str,
        key_id: &str,
        session_id: Option<&str>,
        route: &str,
    ) -> Registration {
        let (tx, rx) = bounded(1);
        let bytes = Arc::new(AtomicU64::new(0));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.runs.lock().insert(
            id,
            Entry {
                request_id: request_id.to_string(),
                running: false,
                key_id: key_id.to_string(),
                session_id: session_id.map(str::to_string),
                route: route.to_string(),
                pid: None,
                started: Instant::now(),
                bytes: bytes.clone(),
                cancel: tx,
            },
        );
        Registration {
            registry: self.clone(),
            id,
            request_id: request_id.to_string(),
            cancel: rx,
            bytes,
        }
    }
}

impl Registration {
    /// The run got its place: from now on it is `running` (its age counts from here).
    pub fn set_running(&self) {
        if let Some(e) = self.registry.runs.lock().get_mut(&self.id) {
            e.running = true;
            e.started = Instant::now();
        }
    }

    /// True once someone asked to cancel this run (the request stays for the run to see).
    pub fn cancel_requested(&self) -> bool {
        !self.cancel.is_empty()
    }

    /// Records the pid (= process group id) of this run, with its start time, in
    /// `<pid_dir>/<pid>` (`<request_id> <start time>`).
    pub fn set_pid(&self, pid: u32) {
        if let Some(e) = self.registry.runs.lock().get_mut(&self.id) {
            e.pid = Some(pid);
        }
        let request_id = &self.request_id;
        if let Some(dir) = &self.registry.pid_dir {
            let started = crate::os::process_start_time(pid)
                .map(|t| t.to_string())
                .unwrap_or_default();
            let _ = std::fs::write(dir.join(pid.to_string()), format!("{request_id} {started}"));
        }
    }
}

impl Registry {
    /// Cancels the runs with this request id that `may(key_id)` allows; true if there was one.
    pub fn cancel(&self, request_id: &str, may: impl Fn(&str) -> bool) -> bool {
        let mut found = false;
        for e in self
            .runs
            .lock()
            .values()
            .filter(|e| e.request_id == request_id && may(&e.key_id))
        {
            let _ = e.cancel.try_send(());
            found = true;
        }
        found
    }

    /// Cancels every run of a session.
    pub fn cancel_session(&self, session_id: &str) -> usize {
        let runs = self.runs.lock();
        let mut n = 0;
        for e in runs
            .values()
            .filter(|e| e.session_id.as_deref() == Some(session_id))
        {
            let _ = e.cancel.try_send(());
            n += 1;
        }
        n
    }

    /// SIGKILLs every registered process group at once (a second shutdown signal).
    pub fn kill_all_now(&self) -> usize {
        let pids: Vec<u32> = self.runs.lock().values().filter_map(|e| e.pid).collect();
        pids.iter()
            .filter(|p| crate::os::kill_group(**p, crate::os::Signal::Kill))
            .count()
    }

    pub fn cancel_all(&self) {
        for e in self.runs.lock().values() {
            let _ = e.cancel.try_send(());
        }
    }

    pub fn list(&self) -> Vec<RunInfo> {
        let mut out: Vec<RunInfo> = self
            .runs
            .lock()
            .values()
            .map(|e| RunInfo {
                request_id: e.request_id.clone(),
                state: if e.running { "running" } else { "queued" },
                key_id: e.key_id.clone(),
                session_id: e.session_id.clone(),
                route: e.route.clone(),
                pid: e.pid,
                age_secs: e.started.elapsed().as_secs(),
                bytes_out: e.bytes.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.age_secs));
        out
    }

    pub fn len(&self) -> usize {
        self.runs.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Kills process groups recorded by a previous process that did not shut down cleanly.
    pub fn sweep_orphans(&self) -> usize {
        let Some(dir) = &self.pid_dir else { return 0 };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut killed = 0;
        for e in entries.flatten() {
            let pid = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok());
            let recorded = std::fs::read_to_string(e.path()).unwrap_or_default();
            let started: Option<u64> = recorded
                .split_whitespace()
                .nth(1)
                .and_then(|t| t.parse().ok());
            if let Some(pid) = pid {
                // A live process with this pid must be the very one we started (same start
                // time); otherwise the pid was reused and the group is not ours. With the
                // leader gone, members left in its group are ours: Linux does not reuse a pid
                // while a process group still carries it.
                let same = match (started, crate::os::process_start_time(pid)) {
                    (Some(was), Some(is)) => was == is,
                    _ => true,
                };
                if same
                    && crate::os::group_alive(pid)
                    && crate::os::kill_group(pid, crate::os::Signal::Kill)
                {
                    log::warn!("killed process group {pid} left running by a previous start");
                    killed += 1;
                } else if !same {
                    log::info!(
                        "pid {pid} of a previous start now belongs to another process; left alone"
                    );
                }
            }
            let _ = std::fs::remove_file(e.path());
        }
        killed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEVER: &dyn Fn() -> bool = &|| false;

    #[test]
    fn caps_queues_and_is_fair() {
        let gate = Gate::new(1, 10);
        let far = Instant::now() + Duration::from_secs(10);
        let first = gate.acquire("a", None, far, NEVER).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        // Key a queues three runs, then key b one: b must not wait behind all of a's.
        for (i, key) in ["a", "a", "a", "b"].into_iter().enumerate() {
            let (g, order) = (gate.clone(), order.clone());
            handles.push(std::thread::spawn(move || {
                let _slot = g.acquire(key, None, far, NEVER).unwrap();
                order.lock().push(key);
                std::thread::sleep(Duration::from_millis(20));
            }));
            while gate.load().1 < i + 1 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        drop(first);
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(*order.lock(), ["a", "b", "a", "a"]);
        assert_eq!(gate.load(), (0, 0));
    }

    #[test]
    fn full_queue_and_deadline() {
        let gate = Gate::new(1, 1);
        let far = Instant::now() + Duration::from_secs(10);
        let _held = gate.acquire("a", None, far, NEVER).unwrap();
        let g = gate.clone();
        // Long enough that a loaded machine still sees the waiter queued before it gives up.
        let waiter = std::thread::spawn(move || {
            g.acquire("b", None, Instant::now() + Duration::from_secs(3), NEVER)
                .err()
        });
        let until = Instant::now() + Duration::from_secs(10);
        while gate.load().1 < 1 {
            assert!(Instant::now() < until, "the waiter never queued");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            gate.acquire("c", None, far, NEVER).err(),
            Some(Refused::QueueFull)
        );
        assert_eq!(waiter.join().unwrap(), Some(Refused::Timeout));
        assert_eq!(gate.load(), (1, 0));
    }

    #[test]
    fn per_key_cap() {
        let gate = Gate::new(5, 10);
        let soon = Instant::now() + Duration::from_millis(100);
        let _one = gate.acquire("a", Some(1), soon, NEVER).unwrap();
        assert_eq!(
            gate.acquire("a", Some(1), soon, NEVER).err(),
            Some(Refused::Timeout)
        );
        assert!(gate.acquire("b", Some(1), soon, NEVER).is_ok());
    }

    #[test]
    fn a_waiter_leaves_the_queue_when_cancelled() {
        let gate = Gate::new(1, 10);
        let far = Instant::now() + Duration::from_secs(30);
        let held = gate.acquire("a", None, far, NEVER).unwrap();
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, f) = (gate.clone(), flag.clone());
        let waiter = std::thread::spawn(move || {
            g.acquire("b", None, far, &|| f.load(Ordering::SeqCst))
                .err()
        });
        let until = Instant::now() + Duration::from_secs(10);
        while gate.load().1 < 1 {
            assert!(Instant::now() < until, "the waiter never queued");
            std::thread::sleep(Duration::from_millis(5));
        }
        flag.store(true, Ordering::SeqCst);
        assert_eq!(waiter.join().unwrap(), Some(Refused::Cancelled));
        assert_eq!(gate.load(), (1, 0), "it left the queue");
        drop(held);
        assert_eq!(gate.load(), (0, 0));
    }
}
