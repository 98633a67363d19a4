//! Per-request agent options, validated: `max_turns`, `max_budget_usd`, `allowed_tools`,
//! `disallowed_tools`, `append_system_prompt`, `permission_mode`, `add_dirs`. They are taken by
//! `/task`, its SSE and WebSocket forms, and session turns, and become options of the CLI run
//! (`RunSpec`), never text the CLI could read as an option. Every value is checked here: tool
//! rules by their shape, directories by confinement, `max_budget_usd` against what the key's
//! budget has left, `bypassPermissions` against the server's own setting, and text by size.

use std::path::PathBuf;

use crate::app::App;
use crate::claude::{args, RunSpec};
use crate::error::ApiError;
use crate::input::Body;

/// The CLI's permission modes (2.1.330 lists all but `default`, which it also takes).
pub const PERMISSION_MODES: [&str; 7] = [
    "default",
    "acceptEdits",
    "plan",
    "auto",
    "dontAsk",
    "manual",
    "bypassPermissions",
];

/// The longest text passed as one CLI argument (`system_prompt`, `append_system_prompt`):
/// Linux refuses a single argument over 128 KiB.
pub const MAX_ARG_BYTES: usize = 100 * 1024;
const MAX_TOOLS: usize = 64;
const MAX_DIRS: usize = 16;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentOptions {
    pub max_turns: Option<u32>,
    pub max_budget_usd: Option<f64>,
    pub allowed_tools: Vec<String>,
    pub disallowed_tools: Vec<String>,
    pub append_system_prompt: Option<String>,
    pub permission_mode: Option<String>,
    pub add_dirs: Vec<PathBuf>,
}

impl AgentOptions {
    /// Reads and checks the options of `body` for a run on behalf of `key_id`.
    pub fn parse(app: &App, body: &Body, key_id: &str) -> Result<AgentOptions, ApiError> {
        let max_turns = body.opt_u64("max_turns", 1, 1000)?.map(|n| n as u32);
        let max_budget_usd =
            body.opt_f64("max_budget_usd", crate::budget::MIN_RUN_USD, 10_000.0)?;
        if let (Some(asked), Some(key)) = (max_budget_usd, app.config.keys.get(key_id)) {
            if let Some(left) = app.budgets.left(key_id, &key.limits, crate::clock::now()) {
                if asked > left.usd {
                    return Err(ApiError::bad_request(format!(
                        "`max_budget_usd` ({asked}) is more than key `{key_id}` has left of its {} budget (${:.4})",
                        left.window, left.usd
                    )));
                }
            }
        }
        let tools = |name: &str| -> Result<Vec<String>, ApiError> {
            let list = body.opt_strings(name)?.unwrap_or_default();
            if list.len() > MAX_TOOLS {
                return Err(ApiError::bad_request(format!(
                    "`{name}` may hold at most {MAX_TOOLS} rules"
                )));
            }
            for rule in &list {
                args::validate_tool(rule)
                    .map_err(|e| ApiError::bad_request(format!("`{name}`: {e}")))?;
            }
            Ok(list)
        };
        let allowed_tools = tools("allowed_tools")?;
        let disallowed_tools = tools("disallowed_tools")?;
        let append_system_prompt = bounded_string(body, "append_system_prompt")?;
        let permission_mode = body.opt_string("permission_mode")?;
        if let Some(mode) = &permission_mode {
            if !PERMISSION_MODES.contains(&mode.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "`permission_mode` must be one of {}",
                    PERMISSION_MODES.join(", ")
                )));
            }
            if mode == "bypassPermissions" && !app.config.permissions_bypass {
                return Err(ApiError::bad_request(
                    "`permission_mode` bypassPermissions is not allowed: this server runs with --no-permissions-bypass",
                ));
            }
        }
        let dirs = body.opt_strings("add_dirs")?.unwrap_or_default();
        if dirs.len() > MAX_DIRS {
            return Err(ApiError::bad_request(format!(
                "`add_dirs` may hold at most {MAX_DIRS} directories"
            )));
        }
        let roots = app.workdir_roots();
        let add_dirs = dirs
            .iter()
            .map(|d| crate::paths::confine_dir(&roots, d, "add_dirs"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AgentOptions {
            max_turns,
            max_budget_usd,
            allowed_tools,
            disallowed_tools,
            append_system_prompt,
            permission_mode,
            add_dirs,
        })
    }

    /// Puts the options into `spec`. An explicit `permission_mode` replaces the server's
    /// default (`--dangerously-skip-permissions` when bypass is on).
    pub fn apply(&self, spec: &mut RunSpec) {
        if let Some(n) = self.max_turns {
            spec.max_turns = Some(n);
        }
        if let Some(usd) = self.max_budget_usd {
            spec.max_budget_usd = Some(usd);
        }
        spec.allowed_tools
            .extend(self.allowed_tools.iter().cloned());
        spec.disallowed_tools
            .extend(self.disallowed_tools.iter().cloned());
        if self.append_system_prompt.is_some() {
            spec.append_system_prompt = self.append_system_prompt.clone();
        }
        if let Some(mode) = &self.permission_mode {
            spec.permission_mode = Some(mode.clone());
            spec.bypass = false;
        }
        spec.add_dirs.extend(self.add_dirs.iter().cloned());
    }
}

/// An optional string field that becomes one CLI argument: at most [`MAX_ARG_BYTES`].
pub fn bounded_string(body: &Body, name: &str) -> Result<Option<String>, ApiError> {
    let v = body.opt_string(name)?;
    if v.as_ref().is_some_and(|s| s.len() > MAX_ARG_BYTES) {
        return Err(ApiError::bad_request(format!(
            "`{name}` is longer than {MAX_ARG_BYTES} bytes; put long instructions in the prompt"
        )));
    }
    Ok(v)
}
