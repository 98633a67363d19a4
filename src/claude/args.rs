//! The CLI's argument list for one run, built from a [`RunSpec`]. The prompt never appears
//! here: it goes to the CLI's stdin (no argv size limit, invisible to `ps`, and a prompt that
//! starts with `-` cannot become an option). Every other piece of request text is the value
//! of an option, which the CLI takes verbatim whatever it looks like, and is validated first.

use std::ffi::OsString;
use std::path::PathBuf;

/// Which conversation a run belongs to.
#[derive(Debug, Clone, PartialEq)]
pub enum Conversation {
    /// A new conversation with this id (`--session-id`).
    New(String),
    /// Continue this one (`--resume`).
    Resume(String),
}

impl Conversation {
    pub fn id(&self) -> &str {
        match self {
            Conversation::New(id) | Conversation::Resume(id) => id,
        }
    }
}

/// Everything that decides the argv of one run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub model: String,
    pub system_prompt: Option<String>,
    pub append_system_prompt: Option<String>,
    pub conversation: Conversation,
    /// `--dangerously-skip-permissions`.
    pub bypass: bool,
    pub permission_mode: Option<String>,
    pub allowed_tools: Vec<String>,
    pub disallowed_tools: Vec<String>,
    pub max_turns: Option<u32>,
    pub max_budget_usd: Option<f64>,
    pub add_dirs: Vec<PathBuf>,
    /// The prompt on stdin is a stream-json user message (`--input-format stream-json`),
    /// which is how the CLI takes images (tests/fixtures/h4_stdin_images.*).
    pub stream_json_input: bool,
}

impl RunSpec {
    pub fn new(model: &str, conversation: Conversation, bypass: bool) -> RunSpec {
        RunSpec {
            model: model.to_string(),
            system_prompt: None,
            append_system_prompt: None,
            conversation,
            bypass,
            permission_mode: None,
            allowed_tools: Vec::new(),
            disallowed_tools: Vec::new(),
            max_turns: None,
            max_budget_usd: None,
            add_dirs: Vec::new(),
            stream_json_input: false,
        }
    }
}

/// The argv (without the program) for `spec`.
pub fn build(spec: &RunSpec) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(OsString::from(s));
    for fixed in [
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
    ] {
        push(fixed);
    }
    if spec.stream_json_input {
        push("--input-format");
        push("stream-json");
    }
    push("--model");
    push(&spec.model);
    if let Some(s) = &spec.system_prompt {
        push("--system-prompt");
        push(s);
    }
    if let Some(s) = &spec.append_system_prompt {
        push("--append-system-prompt");
        push(s);
    }
    match &spec.conversation {
        Conversation::New(id) => {
            push("--session-id");
            push(id);
        }
        Conversation::Resume(id) => {
            push("--resume");
            push(id);
        }
    }
    if spec.bypass {
        push("--dangerously-skip-permissions");
    }
    if let Some(mode) = &spec.permission_mode {
        push("--permission-mode");
        push(mode);
    }
    if let Some(n) = spec.max_turns {
        push("--max-turns");
        push(&n.to_string());
    }
    if let Some(usd) = spec.max_budget_usd {
        push("--max-budget-usd");
        push(&format!("{usd:.4}"));
    }
    // One flag per value: the list flags are variadic, so a value never runs into the next.
    for t in &spec.allowed_tools {
        push("--allowedTools");
        push(t);
    }
    for t in &spec.disallowed_tools {
        push("--disallowedTools");
        push(t);
    }
    for d in &spec.add_dirs {
        a.push("--add-dir".into());
        a.push(d.as_os_str().to_owned());
    }
    a
}

/// A model name: an alias (`sonnet`, `opus`, `haiku`) or a full id. Passed through
/// unchanged; checked only so that it cannot look like an option or hold odd bytes.
pub fn validate_model(model: &str) -> Result<(), String> {
    let ok = !model.is_empty()
        && model.len() <= 128
        && !model.starts_with('-')
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:[]@/".contains(c));
    if ok {
        Ok(())
    } else {
        Err("`model` must be an alias (sonnet, opus, haiku) or a model id such as claude-sonnet-4-5 (letters, digits, - . _ : [ ] @ /)".into())
    }
}

/// A tool rule for `--allowedTools`/`--disallowedTools`: `Name` or `Name(pattern)`.
pub fn validate_tool(rule: &str) -> Result<(), String> {
    let name_end = rule.find('(').unwrap_or(rule.len());
    let name = &rule[..name_end];
    let ok_name = !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let ok_rest = name_end == rule.len() || rule.ends_with(')');
    if ok_name && ok_rest && rule.len() <= 4096 && !rule.contains('\0') {
        Ok(())
    } else {
        Err(format!(
            "tool rule `{}` must look like `Write` or `Bash(git status)`",
            rule.chars().take(80).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn new_run_argv() {
        let mut spec = RunSpec::new("sonnet", Conversation::New("u1".into()), true);
        spec.system_prompt = Some("--dangerously-skip-permissions".into());
        let a = strs(build(&spec));
        assert_eq!(
            a,
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--include-partial-messages",
                "--model",
                "sonnet",
                "--system-prompt",
                "--dangerously-skip-permissions",
                "--session-id",
                "u1",
                "--dangerously-skip-permissions"
            ]
        );
    }

    #[test]
    fn resume_with_tools_and_no_bypass() {
        let mut spec = RunSpec::new("opus", Conversation::Resume("u2".into()), false);
        spec.allowed_tools = vec!["Write".into(), "Bash(echo hi > f)".into()];
        spec.max_budget_usd = Some(0.5);
        let a = strs(build(&spec));
        assert!(!a.contains(&"--dangerously-skip-permissions".to_string()));
        let at = a.iter().position(|x| x == "--resume").unwrap();
        assert_eq!(a[at + 1], "u2");
        assert_eq!(a.iter().filter(|x| *x == "--allowedTools").count(), 2);
        assert!(a.contains(&"Bash(echo hi > f)".to_string()));
        assert!(a.contains(&"0.5000".to_string()));
    }

    #[test]
    fn validation() {
        assert!(validate_model("claude-sonnet-4-5-20250929").is_ok());
        assert!(validate_model("sonnet[1m]").is_ok());
        assert!(validate_model("--help").is_err());
        assert!(validate_model("a b").is_err());
        assert!(validate_model("").is_err());
        assert!(validate_tool("Write").is_ok());
        assert!(validate_tool("Bash(git status)").is_ok());
        assert!(validate_tool("-x").is_err());
        assert!(validate_tool("Bash(oops").is_err());
    }
}
