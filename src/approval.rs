//! Approving a conversation's permission denials: resume it with `--allowedTools` built from
//! exactly the approved denials (the tool name; for Bash, `Bash(<the exact command>)`), never
//! with a blanket bypass, and tell Claude which calls were approved so that it retries them.
//! The others stay denied and pending. Shared by `POST /session/{id}/approve` and the
//! Telegram buttons. Blocking (it runs the CLI): call it from a run thread or a plugin
//! thread, never from a pool worker.

use std::sync::Arc;
use std::time::Instant;

use crate::app::App;
use crate::claude::{args, Denial};
use crate::conversation::{self, TurnRequest};
use crate::error::{ApiError, Kind};
use crate::runner::{Job, TaskResponse};
use crate::sessions::Turn;

/// Who approves what, for which request.
#[derive(Debug, Clone)]
pub struct Approval {
    pub key_id: String,
    pub session_id: String,
    /// None = every pending denial.
    pub tool_use_ids: Option<Vec<String>>,
    pub request_id: String,
    pub route: String,
    pub arrived: Instant,
}

/// The `--allowedTools` rule that allows exactly this denied call.
pub fn rule_for(d: &Denial) -> String {
    match (
        d.tool_name.as_str(),
        d.tool_input.get("command").and_then(|c| c.as_str()),
    ) {
        ("Bash", Some(cmd)) => format!("Bash({cmd})"),
        (name, _) => name.to_string(),
    }
}

fn describe(d: &Denial) -> String {
    let detail = ["command", "file_path", "path", "url", "pattern"]
        .iter()
        .find_map(|k| {
            d.tool_input
                .get(*k)
                .and_then(|v| v.as_str())
                .map(|v| format!("{k}: {v}"))
        })
        .unwrap_or_default();
    format!("- {} ({}) {}", d.tool_name, d.tool_use_id, detail)
        .trim_end()
        .to_string()
}

/// Checks the approval against the session's pending denials, waits for the session's turn
/// and builds the resumed job. Returns the turn, the job and the denials that stay pending.
pub fn prepare(app: &App, a: &Approval) -> Result<(Turn, Job, Vec<Denial>), ApiError> {
    let session = conversation::find(app, &a.key_id, &a.session_id)?;
    if session.pending.is_empty() {
        return Err(ApiError::new(
            Kind::Conflict,
            "nothing is pending approval in this session",
        ));
    }
    let approved: Vec<Denial> = match &a.tool_use_ids {
        None => session.pending.clone(),
        Some(ids) => {
            let unknown: Vec<&str> = ids
                .iter()
                .filter(|id| !session.pending.iter().any(|d| &d.tool_use_id == *id))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "unknown tool_use_ids: {}; pending are: {}",
                    unknown.join(", "),
                    session
                        .pending
                        .iter()
                        .map(|d| d.tool_use_id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            session
                .pending
                .iter()
                .filter(|d| ids.contains(&d.tool_use_id))
                .cloned()
                .collect()
        }
    };
    let keep: Vec<Denial> = session
        .pending
        .iter()
        .filter(|d| !approved.contains(d))
        .cloned()
        .collect();
    let mut tools: Vec<String> = approved.iter().map(rule_for).collect();
    tools.dedup();
    for t in &tools {
        args::validate_tool(t).map_err(ApiError::bad_request)?;
    }
    let prompt = format!(
        "The user approved these tool calls that were denied before:\n{}\nPlease make exactly these calls again now.",
        approved.iter().map(describe).collect::<Vec<_>>().join("\n")
    );
    let req = TurnRequest {
        key_id: a.key_id.clone(),
        session_id: a.session_id.clone(),
        prompt,
        model: None,
        system_prompt: None,
        timeout_secs: None,
        allowed_tools: tools,
        options: Default::default(),
        request_id: a.request_id.clone(),
        route: a.route.clone(),
        arrived: a.arrived,
        done_message: "approval granted",
    };
    let (turn, job) = conversation::prepare(app, &req)?;
    app.publish(crate::events::Event::ApprovalGranted {
        key_id: a.key_id.clone(),
        session_id: a.session_id.clone(),
        tool_use_ids: approved.iter().map(|d| d.tool_use_id.clone()).collect(),
    });
    Ok((turn, job, keep))
}

/// Approves `tool_use_ids` (None = every pending denial) of `session_id` on behalf of
/// `key_id`, runs the resumed turn and returns its answer.
pub fn approve(
    app: &Arc<App>,
    key_id: &str,
    session_id: &str,
    tool_use_ids: Option<Vec<String>>,
) -> Result<TaskResponse, ApiError> {
    let a = Approval {
        key_id: key_id.to_string(),
        session_id: session_id.to_string(),
        tool_use_ids,
        request_id: uuid::Uuid::new_v4().to_string(),
        route: format!("/session/{session_id}/approve"),
        arrived: Instant::now(),
    };
    let (turn, job, keep) = prepare(app, &a)?;
    let f = conversation::run(app, job, turn, keep);
    match f.error {
        Some(e) => Err(e),
        None => Ok(f.response),
    }
}
