//! The counters behind `GET /metrics`, and their Prometheus text exposition (format 0.0.4,
//! written by hand). Each thing is counted in the one place it happens: requests when they are
//! answered (`exchange.rs`), runs when their audit line is written (`runner.rs`). Gauges
//! (running and queued CLIs, open streams, events dropped) are read from their owners when the
//! page is rendered. Label values are our route patterns, key ids and model names; nothing
//! from a request's path or body becomes a label (their number stays small).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use parking_lot::Mutex;

use crate::app::App;
use crate::claude::Tokens;

/// Upper bounds (seconds) of the task duration histogram.
const BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    tokens: Tokens,
    cost_usd: f64,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Counters {
    /// (route pattern, status) → answers.
    requests: BTreeMap<(String, u16), u64>,
    /// Runs by how they ended ("completed", "failed", "timed_out", "refused", ...).
    runs: BTreeMap<String, u64>,
    durations: Histogram,
    /// (key id, model) → tokens and cost.
    usage: BTreeMap<(String, String), Usage>,
    /// Process groups killed, by reason.
    kills: BTreeMap<&'static str, u64>,
}

/// One finished run, as the metrics see it.
#[derive(Debug)]
pub struct Run<'a> {
    pub key_id: &'a str,
    pub model: &'a str,
    /// The audit message ("task completed", "task timed out", ...).
    pub outcome: &'a str,
    /// How long it took, when the CLI was started.
    pub duration: Option<Duration>,
    pub tokens: Option<Tokens>,
    pub cost_usd: Option<f64>,
    /// Why its process group was killed, if it was.
    pub killed: Option<&'static str>,
}

#[derive(Default)]
pub struct Metrics {
    c: Mutex<Counters>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// An answered request: `route` is the route pattern (`/session/{id}`), or `unmatched`.
    pub fn request(&self, route: &str, status: u16) {
        *self
            .c
            .lock()
            .requests
            .entry((route.to_string(), status))
            .or_default() += 1;
    }

    pub fn run(&self, r: &Run) {
        let mut c = self.c.lock();
        let outcome = r
            .outcome
            .strip_prefix("task ")
            .unwrap_or(r.outcome)
            .replace(' ', "_");
        *c.runs.entry(outcome).or_default() += 1;
        if let Some(d) = r.duration {
            let secs = d.as_secs_f64();
            let h = &mut c.durations;
            for (i, le) in BUCKETS.iter().enumerate() {
                if secs <= *le {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += secs;
        }
        if r.tokens.is_some() || r.cost_usd.is_some() {
            let u = c
                .usage
                .entry((r.key_id.to_string(), r.model.to_string()))
                .or_default();
            if let Some(t) = &r.tokens {
                u.tokens.add(t);
            }
            u.cost_usd += r.cost_usd.unwrap_or(0.0);
        }
        if let Some(reason) = r.killed {
            *c.kills.entry(reason).or_default() += 1;
        }
    }

    /// The exposition text, with the gauges read from `app` now.
    pub fn render(&self, app: &App) -> String {
        let c = self.c.lock();
        let mut out = String::new();
        head(
            &mut out,
            "claudeway_build_info",
            "gauge",
            "The running version.",
        );
        let _ = writeln!(
            out,
            "claudeway_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );

        let (running, queued) = app.gate.load();
        let gauges = [
            (
                "claudeway_uptime_seconds",
                "Seconds since the server started.",
                app.started.elapsed().as_secs() as f64,
            ),
            (
                "claudeway_cli_running",
                "CLI runs in progress.",
                running as f64,
            ),
            (
                "claudeway_cli_queued",
                "Runs waiting for a free run place.",
                queued as f64,
            ),
            (
                "claudeway_streams_open",
                "Open SSE and WebSocket streams.",
                app.streams.open() as f64,
            ),
        ];
        for (name, help, v) in gauges {
            head(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }

        head(
            &mut out,
            "claudeway_http_requests_total",
            "counter",
            "Answered requests by route pattern and status.",
        );
        for ((route, status), n) in &c.requests {
            let _ = writeln!(
                out,
                "claudeway_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                esc(route)
            );
        }

        head(
            &mut out,
            "claudeway_runs_total",
            "counter",
            "CLI runs by how they ended (refused ones included).",
        );
        for (outcome, n) in &c.runs {
            let _ = writeln!(
                out,
                "claudeway_runs_total{{outcome=\"{}\"}} {n}",
                esc(outcome)
            );
        }

        head(
            &mut out,
            "claudeway_task_duration_seconds",
            "histogram",
            "Duration of CLI runs, queue wait included.",
        );
        let h = &c.durations;
        for (le, n) in BUCKETS.iter().zip(h.counts) {
            let _ = writeln!(
                out,
                "claudeway_task_duration_seconds_bucket{{le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "claudeway_task_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(out, "claudeway_task_duration_seconds_sum {}", h.sum);
        let _ = writeln!(out, "claudeway_task_duration_seconds_count {}", h.count);

        head(
            &mut out,
            "claudeway_tokens_total",
            "counter",
            "Tokens used, by key, model and kind.",
        );
        for ((key, model), u) in &c.usage {
            let t = u.tokens;
            for (kind, n) in [
                ("input", t.input),
                ("output", t.output),
                ("cache_read", t.cache_read),
                ("cache_write", t.cache_write),
            ] {
                let _ = writeln!(
                    out,
                    "claudeway_tokens_total{{key=\"{}\",model=\"{}\",type=\"{kind}\"}} {n}",
                    esc(key),
                    esc(model)
                );
            }
        }
        head(
            &mut out,
            "claudeway_cost_usd_total",
            "counter",
            "Dollars spent, by key and model, as the CLI reports them.",
        );
        for ((key, model), u) in &c.usage {
            let _ = writeln!(
                out,
                "claudeway_cost_usd_total{{key=\"{}\",model=\"{}\"}} {}",
                esc(key),
                esc(model),
                u.cost_usd
            );
        }

        head(
            &mut out,
            "claudeway_cli_kills_total",
            "counter",
            "CLI process groups killed, by reason (timeout, stalled, cancelled, client_gone, hung_after_result).",
        );
        for (reason, n) in &c.kills {
            let _ = writeln!(out, "claudeway_cli_kills_total{{reason=\"{reason}\"}} {n}");
        }
        head(
            &mut out,
            "claudeway_cli_stalls_total",
            "counter",
            "Runs stopped by the stall watchdog.",
        );
        let _ = writeln!(
            out,
            "claudeway_cli_stalls_total {}",
            c.kills.get("stalled").copied().unwrap_or(0)
        );
        head(
            &mut out,
            "claudeway_events_dropped_total",
            "counter",
            "Plugin events dropped because a plugin's queue was full.",
        );
        let _ = writeln!(out, "claudeway_events_dropped_total {}", app.bus.dropped());
        out
    }
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value, escaped as the text format requires.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
