//! Spend per key per UTC day and UTC month, for the keys' budgets (`daily_budget_usd`,
//! `monthly_budget_usd`). The totals are folded once at start from the audit log (the
//! `cost_usd` of each line) and then kept up to date from the entries the audit log is handed
//! (`Audit::subscribe`): no request ever reads a log file. A query first folds every entry
//! recorded before it, so a run's cost counts from the moment its audit line is recorded.
//! This module only adds up and answers; refusing a request is the caller's decision.

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Select};
use parking_lot::Mutex;
use time::{Date, Month, OffsetDateTime, Time};

use crate::audit::{Audit, Entry};
use crate::keys::KeyLimits;

/// The smallest amount a run can be given (`--max-budget-usd` must be above 0, and Claudeway
/// writes it with 4 decimals): a budget with less than this left is spent.
pub const MIN_RUN_USD: f64 = 0.0001;

/// One key's spend in the current UTC day and month (`YYYY-MM-DD`, `YYYY-MM`).
#[derive(Debug, Clone, Default)]
struct Spend {
    day: String,
    day_usd: f64,
    month: String,
    month_usd: f64,
}

pub struct Budgets {
    spend: Mutex<HashMap<String, Spend>>,
    entries: Receiver<Entry>,
}

/// What a key may still spend, by its tightest budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Left {
    pub usd: f64,
    /// Which budget: `daily` or `monthly`.
    pub window: &'static str,
    pub limit_usd: f64,
    pub spent_usd: f64,
    /// Seconds until that budget starts again (UTC midnight, the first of the next month).
    pub resets_in_secs: u64,
}

impl Left {
    pub fn is_spent(&self) -> bool {
        self.usd < MIN_RUN_USD
    }
}

impl Budgets {
    /// Folds `past` (the audit log as read at start) and follows `audit` from now on. A
    /// background thread folds new entries when no query does, so they never pile up.
    pub fn start(audit: &Audit, past: impl IntoIterator<Item = Entry>) -> Arc<Budgets> {
        let (tx, rx) = unbounded();
        audit.subscribe(tx);
        let budgets = Arc::new(Budgets {
            spend: Mutex::new(HashMap::new()),
            entries: rx,
        });
        {
            let mut spend = budgets.spend.lock();
            for e in past {
                fold(&mut spend, &e);
            }
        }
        let b = budgets.clone();
        let _ = std::thread::Builder::new()
            .name("budget-fold".into())
            .spawn(move || loop {
                // Wait without taking an entry, then fold under the lock: a query never
                // misses an entry that this thread holds.
                let mut sel = Select::new();
                sel.recv(&b.entries);
                sel.ready();
                if !b.catch_up(&mut b.spend.lock()) {
                    return;
                }
            });
        budgets
    }

    /// Folds every entry recorded so far; false once the audit log is gone.
    fn catch_up(&self, spend: &mut HashMap<String, Spend>) -> bool {
        loop {
            match self.entries.try_recv() {
                Ok(e) => fold(spend, &e),
                Err(crossbeam_channel::TryRecvError::Empty) => return true,
                Err(crossbeam_channel::TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// (spent today, spent this month) by `key_id`, UTC, as of `now`.
    pub fn spent(&self, key_id: &str, now: OffsetDateTime) -> (f64, f64) {
        let mut spend = self.spend.lock();
        self.catch_up(&mut spend);
        let stamp = crate::clock::rfc3339(now);
        match spend.get(key_id) {
            None => (0.0, 0.0),
            Some(s) => (
                if s.day == stamp[..10] { s.day_usd } else { 0.0 },
                if s.month == stamp[..7] {
                    s.month_usd
                } else {
                    0.0
                },
            ),
        }
    }

    /// What `key_id` may still spend under `limits` as of `now`; None when it has no budget.
    pub fn left(&self, key_id: &str, limits: &KeyLimits, now: OffsetDateTime) -> Option<Left> {
        if limits.daily_budget_usd.is_none() && limits.monthly_budget_usd.is_none() {
            return None;
        }
        let (day, month) = self.spent(key_id, now);
        let windows = [
            ("daily", limits.daily_budget_usd, day, next_day(now)),
            ("monthly", limits.monthly_budget_usd, month, next_month(now)),
        ];
        let mut tightest: Option<Left> = None;
        for (window, limit, spent, resets) in windows {
            let Some(limit) = limit else { continue };
            let left = Left {
                usd: (limit - spent).max(0.0),
                window,
                limit_usd: limit,
                spent_usd: spent,
                resets_in_secs: (resets - now).whole_seconds().max(1) as u64,
            };
            // The tighter budget wins; when both are spent, the one that resets later.
            let better = match &tightest {
                None => true,
                Some(t) if left.is_spent() && t.is_spent() => {
                    left.resets_in_secs > t.resets_in_secs
                }
                Some(t) => left.usd < t.usd,
            };
            if better {
                tightest = Some(left);
            }
        }
        tightest
    }
}

fn fold(spend: &mut HashMap<String, Spend>, e: &Entry) {
    let (Some(key), Some(cost)) = (&e.key_id, e.cost_usd) else {
        return;
    };
    if !(cost.is_finite() && cost > 0.0) || e.timestamp.len() < 10 {
        return;
    }
    let (day, month) = (&e.timestamp[..10], &e.timestamp[..7]);
    let s = spend.entry(key.clone()).or_default();
    if *day > *s.day {
        s.day = day.to_string();
        s.day_usd = 0.0;
    }
    if *day == *s.day {
        s.day_usd += cost;
    }
    if *month > *s.month {
        s.month = month.to_string();
        s.month_usd = 0.0;
    }
    if *month == *s.month {
        s.month_usd += cost;
    }
}

fn next_day(now: OffsetDateTime) -> OffsetDateTime {
    let d = now.date().next_day().unwrap_or(now.date());
    d.with_time(Time::MIDNIGHT).assume_utc()
}

fn next_month(now: OffsetDateTime) -> OffsetDateTime {
    let (y, m) = match now.month() {
        Month::December => (now.year() + 1, Month::January),
        m => (now.year(), m.next()),
    };
    Date::from_calendar_date(y, m, 1)
        .map(|d| d.with_time(Time::MIDNIGHT).assume_utc())
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, ts: &str, cost: f64) -> Entry {
        let mut e = Entry::new("r", "/task", Some(key), "task completed");
        e.timestamp = ts.into();
        e.cost_usd = Some(cost);
        e
    }

    fn at(ts: &str) -> OffsetDateTime {
        crate::clock::parse(ts).unwrap()
    }

    #[test]
    fn folds_by_utc_day_and_month() {
        let dir = std::env::temp_dir().join(format!("cw-budget-{}", uuid::Uuid::new_v4()));
        let audit = Audit::start(&dir, &["a"]).unwrap();
        let past = vec![
            entry("a", "2026-10-31T23:59:59.000Z", 1.0),
            entry("a", "2026-11-24T10:00:00.000Z", 2.0),
            entry("a", "2026-11-25T01:00:00.000Z", 0.25),
            entry("a", "2026-11-25T02:00:00.000Z", 0.5),
            entry("b", "2026-11-25T02:00:00.000Z", 9.0),
        ];
        let b = Budgets::start(&audit, past);
        let now = at("2026-11-25T12:00:00Z");
        assert_eq!(b.spent("a", now), (0.75, 2.75));
        assert_eq!(b.spent("nobody", now), (0.0, 0.0));
        // A new day and a new month start from zero.
        assert_eq!(b.spent("a", at("2026-11-26T00:00:00Z")), (0.0, 2.75));
        assert_eq!(b.spent("a", at("2026-12-01T00:00:00Z")), (0.0, 0.0));
        // Entries recorded from now on count at once.
        audit.record(entry("a", "2026-11-25T13:00:00.000Z", 0.125));
        assert_eq!(b.spent("a", now), (0.875, 2.875));

        let limits = KeyLimits {
            daily_budget_usd: Some(1.0),
            monthly_budget_usd: Some(10.0),
            ..Default::default()
        };
        let left = b.left("a", &limits, now).unwrap();
        assert_eq!(left.window, "daily");
        assert!((left.usd - 0.125).abs() < 1e-9);
        assert_eq!(left.resets_in_secs, 12 * 3600);
        let tight = KeyLimits {
            daily_budget_usd: Some(0.5),
            monthly_budget_usd: Some(2.0),
            ..Default::default()
        };
        let spent = b.left("a", &tight, now).unwrap();
        assert!(spent.is_spent());
        assert_eq!(spent.window, "monthly", "both spent: the later reset wins");
        assert_eq!(spent.resets_in_secs, 5 * 86400 + 12 * 3600);
        assert!(b.left("a", &KeyLimits::default(), now).is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
