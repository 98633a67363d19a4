//! [`Totals`]: the admin statistics, folded from the audit log. Every log file is read once at
//! start (`audit::read_all`); after that each new entry arrives over an `Audit::subscribe`
//! channel and is folded in on the `totals` thread. It keeps running sums (per key, per UTC
//! day with its models and keys, per model) and the newest [`RECENT`] lines with a sequence
//! number for the log view's cursor. No request ever reads a log file, and the lock guards
//! in-memory maps only (no I/O under it). Never put a secret in here: entries carry none.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Select, TryRecvError};
use parking_lot::Mutex;
use serde::Serialize;

use crate::app::App;
use crate::audit::{self, Audit, Entry};
use crate::claude::Tokens;

/// How many of the newest audit lines the log view can page through.
pub const RECENT: usize = 10_000;

/// Requests and dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    pub requests: u64,
    pub cost_usd: f64,
}

impl Usage {
    fn add(&mut self, cost: f64) {
        self.requests += 1;
        self.cost_usd += cost;
    }

    fn merge(&mut self, other: &Usage) {
        self.requests += other.requests;
        self.cost_usd += other.cost_usd;
    }
}

/// One key's totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KeyTotals {
    pub requests: u64,
    pub cost_usd: f64,
    pub tokens: Tokens,
    /// The timestamp of its newest audit line.
    pub last_used: Option<String>,
}

/// One UTC day (or a week or month made of days).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Period {
    pub total: Usage,
    pub models: BTreeMap<String, Usage>,
    pub keys: BTreeMap<String, Usage>,
}

impl Period {
    fn merge(&mut self, other: &Period) {
        self.total.merge(&other.total);
        for (m, u) in &other.models {
            self.models.entry(m.clone()).or_default().merge(u);
        }
        for (k, u) in &other.keys {
            self.keys.entry(k.clone()).or_default().merge(u);
        }
    }
}

/// An audit line with its place in the log view.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: Entry,
}

/// Everything folded so far.
#[derive(Debug, Default)]
pub struct State {
    /// Audit lines of authenticated calls (every key, not `_unauthorized`).
    pub requests: u64,
    pub cost_usd: f64,
    pub tokens: Tokens,
    /// Lines in `_unauthorized`.
    pub unauthorized: u64,
    pub keys: BTreeMap<String, KeyTotals>,
    /// By `YYYY-MM-DD` (UTC, from the line's timestamp).
    pub days: BTreeMap<String, Period>,
    /// By model (`model_resolved`, else `model`); only lines that name one.
    pub models: BTreeMap<String, Usage>,
    pub recent: VecDeque<Line>,
    /// The sequence number of the newest line (0: none yet).
    pub last_seq: u64,
}

impl State {
    /// Folds one line in.
    pub fn add(&mut self, entry: Entry) {
        self.last_seq += 1;
        match &entry.key_id {
            None => self.unauthorized += 1,
            Some(key) => {
                let cost = entry.cost_usd.unwrap_or(0.0);
                self.requests += 1;
                self.cost_usd += cost;
                let k = self.keys.entry(key.clone()).or_default();
                k.requests += 1;
                k.cost_usd += cost;
                if k.last_used.as_deref() < Some(entry.timestamp.as_str()) {
                    k.last_used = Some(entry.timestamp.clone());
                }
                if let Some(t) = entry.tokens {
                    add_tokens(&mut k.tokens, &t);
                    add_tokens(&mut self.tokens, &t);
                }
                let model = entry.model_resolved.as_ref().or(entry.model.as_ref());
                if let Some(m) = model {
                    self.models.entry(m.clone()).or_default().add(cost);
                }
                if let Some(day) = day_of(&entry.timestamp) {
                    let d = self.days.entry(day.to_string()).or_default();
                    d.total.add(cost);
                    d.keys.entry(key.clone()).or_default().add(cost);
                    if let Some(m) = model {
                        d.models.entry(m.clone()).or_default().add(cost);
                    }
                }
            }
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(Line {
            seq: self.last_seq,
            entry,
        });
    }

    /// Days grouped into `by` periods, oldest first.
    pub fn periods(&self, by: GroupBy) -> Vec<(String, Period)> {
        let mut out: Vec<(String, Period)> = Vec::new();
        for (day, p) in &self.days {
            let name = by.period_of(day);
            match out.last_mut() {
                Some((last, acc)) if *last == name => acc.merge(p),
                _ => out.push((name, p.clone())),
            }
        }
        out
    }
}

fn add_tokens(sum: &mut Tokens, t: &Tokens) {
    sum.input += t.input;
    sum.output += t.output;
    sum.cache_read += t.cache_read;
    sum.cache_write += t.cache_write;
}

/// `YYYY-MM-DD` of an RFC 3339 UTC timestamp as the audit log writes it.
fn day_of(timestamp: &str) -> Option<&str> {
    let day = timestamp.get(..10)?;
    time::Date::parse(
        day,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
    .map(|_| day)
}

/// How `/admin/costs` groups days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// `2026-03-12`
    Daily,
    /// ISO week, `2026-W11`
    Weekly,
    /// `2026-03`
    Monthly,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "daily" => Some(GroupBy::Daily),
            "weekly" => Some(GroupBy::Weekly),
            "monthly" => Some(GroupBy::Monthly),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GroupBy::Daily => "daily",
            GroupBy::Weekly => "weekly",
            GroupBy::Monthly => "monthly",
        }
    }

    /// The period a `YYYY-MM-DD` day belongs to (days come from `day_of`, so they parse).
    pub fn period_of(self, day: &str) -> String {
        match self {
            GroupBy::Daily => day.to_string(),
            GroupBy::Monthly => day[..7].to_string(),
            GroupBy::Weekly => {
                let f = time::macros::format_description!("[year]-[month]-[day]");
                match time::Date::parse(day, f) {
                    Ok(d) => {
                        let (year, week, _) = d.to_iso_week_date();
                        format!("{year}-W{week:02}")
                    }
                    Err(_) => day.to_string(),
                }
            }
        }
    }
}

/// The running totals; `App` holds one.
pub struct Totals {
    state: Mutex<State>,
    rx: Receiver<Entry>,
}

impl Totals {
    /// Reads every audit line under `log_dir` (oldest first), subscribes to new ones and
    /// starts the thread that folds them in.
    pub fn start(log_dir: &Path, audit: &Audit) -> Arc<Totals> {
        let (tx, rx) = unbounded();
        audit.subscribe(tx);
        let mut lines = audit::read_all(log_dir);
        lines.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
        let mut state = State::default();
        let n = lines.len();
        for e in lines {
            state.add(e);
        }
        log::debug!("admin totals: {n} audit line(s) read");
        let totals = Arc::new(Totals {
            state: Mutex::new(state),
            rx,
        });
        // Entries leave the channel only under the state lock (here or in `read`), so a
        // reader sees every entry recorded before it asked.
        let weak = Arc::downgrade(&totals);
        let rx = totals.rx.clone();
        let spawned = std::thread::Builder::new()
            .name("totals".into())
            .spawn(move || loop {
                let mut ready = Select::new();
                ready.recv(&rx);
                ready.ready();
                let Some(t) = weak.upgrade() else { return };
                let mut state = t.state.lock();
                loop {
                    match rx.try_recv() {
                        Ok(e) => state.add(e),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return,
                    }
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot start the totals thread ({e}); totals update on read");
        }
        totals
    }

    /// Runs `f` on the current state, after folding in anything still queued.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        let mut state = self.state.lock();
        while let Ok(e) = self.rx.try_recv() {
            state.add(e);
        }
        f(&state)
    }
}

/// The number of live sessions, for `/admin/overview`.
///
/// HOOK for the session store: return its count of live sessions here (for example
/// `app.sessions.len()`). Until the session store exists this is 0.
pub fn active_sessions(app: &App) -> usize {
    app.sessions.count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: &str, key: Option<&str>, model: Option<&str>, cost: Option<f64>) -> Entry {
        let mut e = Entry::new("r", "/task", key, "task completed");
        e.timestamp = ts.into();
        e.model_resolved = model.map(str::to_string);
        e.cost_usd = cost;
        e
    }

    #[test]
    fn folds_keys_days_models_and_periods() {
        let mut s = State::default();
        s.add(line(
            "2026-03-08T10:00:00.000Z",
            Some("a"),
            Some("m1"),
            Some(0.5),
        ));
        s.add(line(
            "2026-03-09T10:00:00.000Z",
            Some("b"),
            Some("m2"),
            Some(0.25),
        ));
        s.add(line("2026-03-09T11:00:00.000Z", Some("a"), None, None));
        s.add(line("2026-04-01T00:00:00.000Z", None, None, None));
        assert_eq!((s.requests, s.unauthorized, s.last_seq), (3, 1, 4));
        assert_eq!(s.cost_usd, 0.75);
        assert_eq!(s.keys["a"].requests, 2);
        assert_eq!(
            s.keys["a"].last_used.as_deref(),
            Some("2026-03-09T11:00:00.000Z")
        );
        assert_eq!(s.models["m1"].requests, 1);
        assert_eq!(s.days["2026-03-09"].total.requests, 2);
        // 2026-03-08 is a Sunday (ISO week 10), 2026-03-09 a Monday (week 11).
        let weeks: Vec<String> = s
            .periods(GroupBy::Weekly)
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(weeks, ["2026-W10", "2026-W11"]);
        let months = s.periods(GroupBy::Monthly);
        assert_eq!(months.len(), 1);
        assert_eq!(months[0].1.total.requests, 3);
        assert_eq!(months[0].1.keys["a"].cost_usd, 0.5);
        assert_eq!(GroupBy::parse("hourly"), None);
    }

    #[test]
    fn keeps_only_the_newest_lines() {
        let mut s = State::default();
        for _ in 0..RECENT + 5 {
            s.add(line("2026-03-08T10:00:00.000Z", Some("a"), None, None));
        }
        assert_eq!(s.recent.len(), RECENT);
        assert_eq!(s.recent.front().unwrap().seq, 6);
        assert_eq!(s.recent.back().unwrap().seq, (RECENT + 5) as u64);
    }
}
