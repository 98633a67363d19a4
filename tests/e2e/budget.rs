use claudeway::config::Config;
use claudeway::keys::{KeyLimits, Keys};
use serde_json::json;

use crate::harness::{close, E2e};
use crate::mock::Mock;
use crate::support::*;

/// Gives the key `id` these limits.
fn limit(cfg: &mut Config, id: &str, limits: KeyLimits) {
    let mut keys = cfg.keys.all().to_vec();
    keys.iter_mut()
        .find(|k| k.id == id)
        .expect("a test key")
        .limits = limits;
    cfg.keys = Keys::new(keys, false).unwrap();
}

#[test]
fn a_daily_budget_reaches_the_cli_as_max_budget_usd_then_refuses() {
    let Some(e) = E2e::with(|c| {
        let l = KeyLimits {
            daily_budget_usd: Some(0.001),
            ..Default::default()
        };
        limit(c, "user", l)
    }) else {
        return;
    };
    // One API call costs more than $0.001: the CLI, run with --max-budget-usd 0.0010, stops
    // after it and says so; the answer is 200 with success false, and the cost counts.
    let prompt = "spend the budget";
    let v = e
        .srv
        .post("/task", Some(USER), &json!({"prompt": prompt}))
        .json();
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(
        v["error"], "Claude CLI returned an error: Reached maximum budget ($0.001)",
        "{v}"
    );
    let sent = e.mock.messages_for(v["session_id"].as_str().unwrap());
    assert_eq!(sent.len(), 1);
    assert_eq!(v["tokens"], Mock::tokens(&sent), "{v}");
    let cost = v["cost_usd"].as_f64().unwrap();
    let direct = e.run_cli(
        &["-p", "--output-format", "json", "--model", "sonnet"],
        prompt,
    );
    assert!(
        close(cost, direct["total_cost_usd"].as_f64().unwrap()),
        "{cost} vs {direct}"
    );
    assert!(cost > 0.001, "{cost}");

    // Spent: refused before any CLI starts, on every route that runs Claude.
    let before = e.mock.requests().len();
    let r = e.srv.post("/task", Some(USER), &json!({"prompt": "more"}));
    let msg = r.error(429, "BUDGET_EXCEEDED");
    assert!(msg.contains("daily budget"), "{msg}");
    assert!(r.header("Retry-After").is_some());
    e.srv
        .post("/task/stream", Some(USER), &json!({"prompt": "more"}))
        .error(429, "BUDGET_EXCEEDED");
    assert_eq!(e.mock.requests().len(), before, "the CLI ran anyway");
}
