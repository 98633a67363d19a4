//! The fake `claude` CLI that the tests drive. It prints what the real CLI 2.1.330 prints
//! in `-p --output-format stream-json --verbose [--include-partial-messages]` mode: its
//! lines are the captured ones in tests/fixtures with the fields of this run filled in. The
//! prompt (read from stdin, as Claudeway sends it) scripts what happens:
//!
//! - anything else: the answer is `echo: <prompt>`, streamed in small deltas;
//! - `SLOW <ms> ...`: sleep between deltas; `SLEEP <ms> ...`: sleep before answering;
//! - `WAIT_FILE <path> ...`: print the first delta, then wait until `<path>` exists;
//! - `HANG`: print the init line, then never anything again; `HANG_AFTER_RESULT`: print the
//!   whole answer and then not exit; `IGNORE_TERM ...`: ignore SIGTERM;
//! - `GRANDCHILD <pidfile>`: start a `sleep` grandchild, write its pid, then hang;
//! - `NO_RESULT`: some output, an error on stderr, exit 3; `GARBAGE`: non-JSON lines too;
//! - `API_ERROR`: the CLI's API-error result (`subtype:"success"`, `is_error:true`), exit 1;
//! - `MAX_TURNS`: the `error_max_turns` result; `MULTILINE`: an answer with newlines;
//! - `WRITE <name> <content...>`: ask for the Write tool; without bypass or
//!   `--allowedTools Write` it is denied (as the real CLI does), otherwise the file is written
//!   (`<name>` relative to the cwd, or absolute); a failed write is a tool error, as in the
//!   real CLI (a sandboxed run's Write outside its workdir gets `EACCES`);
//! - `BASH <command>`: ask for Bash, allowed only by `--allowedTools Bash(<command>)` or bypass;
//! - `RECALL`: answer with the earlier prompts of this conversation; `BIG <n>`: n bytes;
//! - `... COST <usd> ...` (anywhere in the prompt): the run reports this cost. With `--max-budget-usd` below the cost, the
//!   result is the real CLI's `error_max_budget_usd` one (tests/fixtures/g11*), exit 1.
//! - `TOOL_STREAM ...`: a first model turn that writes text and calls a tool, then the answer
//!   in a second turn (the partial events of tests/fixtures/f1c_*, as a run with tools prints);
//! - `MAX_TOKENS ...`: the result says `stop_reason: "max_tokens"`.
//!
//! With `--input-format stream-json` the prompt is the text of the user message lines on
//! stdin, and each image block adds ` [image <media_type> <base64 length>]` to the answer
//! (tests/fixtures/h4_stdin_images.* is the format, captured from the real CLI).
//!
//! Sessions behave as the real CLI's: `--session-id` of an existing conversation and
//! `--resume` of an unknown one fail with the real messages; transcripts live under
//! `$HOME/.claude/projects/<slug>/<id>.jsonl`. As root, `--dangerously-skip-permissions`
//! is refused unless `IS_SANDBOX=1`. With `FAKE_CLAUDE_LOG` set to a directory, each run
//! writes `<run>.json` there: its run id, pid and PID namespace (a sandboxed run is PID 1 of
//! its own), argv, cwd, prompt and environment, for the tests to check; `<run>.end` marks a
//! normal end.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

const PARTIAL: &str = include_str!("../fixtures/c_stream_partial.stdout.jsonl");
const DENIED: &str = include_str!("../fixtures/f2_tool_default_stream.stdout.jsonl");
const API_ERROR: &str = include_str!("../fixtures/g2_api_error_500_stream.stdout.jsonl");
const TOOL_TURN: &str = include_str!("../fixtures/f1c_tool_skip_perms_partial.stdout.jsonl");

#[derive(Default, Debug)]
struct Args {
    partial: bool,
    verbose: bool,
    stream_json: bool,
    model: Option<String>,
    system_prompt: Option<String>,
    session_id: Option<String>,
    resume: Option<String>,
    bypass: bool,
    allowed: Vec<String>,
    max_budget: Option<String>,
    stream_json_input: bool,
}

fn parse_args(argv: &[String]) -> Args {
    let mut a = Args::default();
    let mut i = 0;
    while i < argv.len() {
        let next = argv.get(i + 1).cloned();
        match argv[i].as_str() {
            "--include-partial-messages" => a.partial = true,
            "--verbose" => a.verbose = true,
            "--output-format" => {
                a.stream_json = next.as_deref() == Some("stream-json");
                i += 1;
            }
            "--input-format" => {
                a.stream_json_input = next.as_deref() == Some("stream-json");
                i += 1;
            }
            "--model" => {
                a.model = next;
                i += 1;
            }
            "--system-prompt" => {
                a.system_prompt = next;
                i += 1;
            }
            "--session-id" => {
                a.session_id = next;
                i += 1;
            }
            "--resume" => {
                a.resume = next;
                i += 1;
            }
            "--allowedTools" => {
                a.allowed.extend(next);
                i += 1;
            }
            "--max-budget-usd" => {
                a.max_budget = next;
                i += 1;
            }
            "--dangerously-skip-permissions" => a.bypass = true,
            "--append-system-prompt"
            | "--permission-mode"
            | "--max-turns"
            | "--disallowedTools"
            | "--add-dir" => i += 1,
            _ => {}
        }
        i += 1;
    }
    a
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_args(&argv);
    let mut prompt = String::new();
    let _ = std::io::stdin().read_to_string(&mut prompt);
    let mut images = Vec::new();
    if args.stream_json_input {
        (prompt, images) = user_lines(&prompt);
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    record(&argv, &cwd, &prompt, &images);

    if args.stream_json && !args.verbose {
        die("Error: When using --print, --output-format=stream-json requires --verbose");
    }
    if args.bypass && is_root() && std::env::var("IS_SANDBOX").as_deref() != Ok("1") {
        die("--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons");
    }
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()));
    let projects = home.join(".claude/projects");
    let (session_id, transcript) = match (&args.session_id, &args.resume) {
        (_, Some(id)) => match find_transcript(&projects, id) {
            Some(p) => (id.clone(), p),
            None => die(&format!("No conversation found with session ID: {id}")),
        },
        (Some(id), None) => {
            if find_transcript(&projects, id).is_some() {
                die(&format!("Error: Session ID {id} is already in use."));
            }
            (
                id.clone(),
                projects.join(slug(&cwd)).join(format!("{id}.jsonl")),
            )
        }
        (None, None) => {
            let id = uuid::Uuid::new_v4().to_string();
            (
                id.clone(),
                projects.join(slug(&cwd)).join(format!("{id}.jsonl")),
            )
        }
    };
    let earlier: Vec<String> = std::fs::read_to_string(&transcript)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["prompt"].as_str().map(str::to_string))
        .collect();
    if let Some(dir) = transcript.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&transcript)
        .expect("transcript");
    let _ = writeln!(
        f,
        "{}",
        json!({"type": "user", "prompt": prompt.trim_end()})
    );

    let model = match args.model.as_deref() {
        None | Some("opus") => "claude-opus-5-5".to_string(),
        Some("sonnet") => "claude-sonnet-5-5".to_string(),
        Some("haiku") => "claude-haiku-5-5".to_string(),
        Some(m) => m.to_string(),
    };
    let out = Out {
        session_id: session_id.clone(),
        partial: args.partial,
        model: model.clone(),
    };
    // An approval turn: redo the tool call of the earlier prompt that asked for one.
    let prompt = if prompt.starts_with("The user approved") {
        earlier
            .iter()
            .rev()
            .find(|p| p.starts_with("WRITE ") || p.starts_with("BASH "))
            .cloned()
            .unwrap_or(prompt)
    } else {
        prompt
    };
    let words: Vec<&str> = prompt.split_whitespace().collect();
    let word = |i: usize| words.get(i).copied().unwrap_or("");
    let rest = |i: usize| words.get(i..).map(|w| w.join(" ")).unwrap_or_default();
    let mut delay = Duration::ZERO;
    let mut wait_file = None;

    let mut init = template(PARTIAL, 0);
    init["session_id"] = json!(session_id);
    init["cwd"] = json!(cwd.to_string_lossy());
    init["model"] = json!(model);
    init["permissionMode"] = json!(if args.bypass {
        "bypassPermissions"
    } else {
        "default"
    });
    out.line(&init);
    if args.partial {
        out.line(&template(PARTIAL, 1));
    }

    match word(0) {
        "IGNORE_TERM" => {
            unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
            }
            hang();
        }
        "HANG" => hang(),
        "GRANDCHILD" => {
            #[allow(clippy::zombie_processes)] // the grandchild outlives us on purpose
            let child = std::process::Command::new("sleep")
                .arg("1000")
                .spawn()
                .expect("sleep");
            std::fs::write(word(1), child.id().to_string()).expect("pidfile");
            hang();
        }
        "SLEEP" => std::thread::sleep(Duration::from_millis(word(1).parse().unwrap_or(0))),
        "SLOW" => delay = Duration::from_millis(word(1).parse().unwrap_or(0)),
        "WAIT_FILE" => wait_file = Some(PathBuf::from(word(1))),
        "API_ERROR" => {
            out.line(&template(API_ERROR, 1));
            let mut r = template(API_ERROR, 2);
            r["session_id"] = json!(session_id);
            out.line(&r);
            std::process::exit(1);
        }
        "NO_RESULT" => {
            out.text_block("partial answer", Duration::ZERO, None);
            eprintln!("some warning");
            eprintln!("boom: the fake CLI failed on purpose");
            std::process::exit(3);
        }
        _ => {}
    }

    let text = match word(0) {
        "MULTILINE" => "line one\nline two\n\nline four".to_string(),
        "RECALL" => format!("earlier prompts: {}", earlier.join(" | ")),
        "BIG" => "x".repeat(word(1).parse().unwrap_or(0)),
        _ => format!("echo: {}", prompt.trim_end()),
    };
    let mut text: String = std::iter::once(text)
        .chain(images.iter().map(|i| format!(" [image {i}]")))
        .collect();
    let mut denials = Vec::new();
    let mut turns = 1;
    if word(0) == "GARBAGE" {
        out.raw("this is not json");
        out.raw("{\"half\": ");
    }
    if matches!(word(0), "WRITE" | "BASH") {
        turns = 2;
        let (tool, input, rule) = if word(0) == "WRITE" {
            let path = cwd.join(word(1));
            let input = json!({"file_path": path.to_string_lossy(), "content": rest(2)});
            ("Write", input, "Write".to_string())
        } else {
            let cmd = rest(1);
            (
                "Bash",
                json!({"command": cmd, "description": "run it"}),
                format!("Bash({cmd})"),
            )
        };
        let allowed = args.bypass || args.allowed.iter().any(|a| *a == rule || a == tool);
        let id = format!(
            "toolu_fake_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..20]
        );
        let mut use_line = template(DENIED, 2);
        use_line["message"]["content"][0] =
            json!({"type": "tool_use", "id": id, "name": tool, "input": input});
        out.line(&use_line);
        let mut failed = !allowed;
        let result_text = if allowed {
            if tool == "Write" {
                let path = cwd.join(word(1));
                match std::fs::write(&path, rest(2)) {
                    Ok(()) => format!("File created successfully at: {}", path.display()),
                    Err(e) => {
                        failed = true;
                        format!("<tool_use_error>{e}: {}</tool_use_error>", path.display())
                    }
                }
            } else {
                let o = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(rest(1))
                    .output()
                    .expect("sh");
                String::from_utf8_lossy(&o.stdout).into_owned()
            }
        } else {
            let msg = format!(
                "Claude requested permissions to use {tool}, but you haven't granted it yet."
            );
            let mut d = template(DENIED, 3);
            d["tool_name"] = json!(tool);
            d["tool_use_id"] = json!(id);
            d["message"] = json!(msg);
            out.line(&d);
            denials.push(json!({"tool_name": tool, "tool_use_id": id, "tool_input": input}));
            msg
        };
        if allowed {
            // The answer shows what the tool did, so that tests can probe a run's reach.
            text = format!("{text}\ntool said: {result_text}");
        }
        let mut user = template(DENIED, 4);
        user["message"]["content"] = json!([{"type": "tool_result", "content": result_text, "is_error": failed, "tool_use_id": id}]);
        out.line(&user);
    }
    if word(0) == "TOOL_STREAM" {
        turns = 2;
        let cwd_text = cwd.to_string_lossy();
        for i in 2..=21 {
            let line = TOOL_TURN.lines().nth(i).expect("fixture line");
            let v: Value = serde_json::from_str(&line.replace("<CWD>", &cwd_text)).expect("JSON");
            if args.partial || v["type"] != "stream_event" {
                out.line(&v);
            }
        }
    }
    out.text_block(&text, delay, wait_file.as_deref());

    let input = 100 + prompt.len() as u64;
    let output = text.len() as u64;
    let cost = match words.iter().position(|w| *w == "COST") {
        Some(i) => word(i + 1).parse().unwrap_or(0.0),
        None => (input * 3 + output * 15) as f64 / 1_000_000.0,
    };
    // As 2.1.330 does: the budget is checked after the API call, so the run costs what it
    // cost, and the result says the budget was reached (usage all zero, modelUsage set).
    let over_budget = args
        .max_budget
        .as_deref()
        .and_then(|b| b.parse::<f64>().ok())
        .filter(|b| cost > *b);
    let mut r = template(PARTIAL, 12);
    r["session_id"] = json!(session_id);
    r["result"] = json!(text);
    r["num_turns"] = json!(turns);
    r["total_cost_usd"] = json!(cost);
    r["usage"]["input_tokens"] = json!(input);
    r["usage"]["output_tokens"] = json!(output);
    r["usage"]["cache_read_input_tokens"] = json!(50);
    r["usage"]["cache_creation_input_tokens"] = json!(10);
    r["modelUsage"] =
        json!({ model.clone(): {"inputTokens": input, "outputTokens": output, "costUSD": cost} });
    r["permission_denials"] = json!(denials);
    if let Some(budget) = over_budget {
        let o = r.as_object_mut().expect("object");
        o.remove("result");
        o.insert("subtype".into(), json!("error_max_budget_usd"));
        o.insert("is_error".into(), json!(true));
        o.insert("terminal_reason".into(), json!("budget_exhausted"));
        o.insert(
            "errors".into(),
            json!([format!("Reached maximum budget (${budget})")]),
        );
        for k in [
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ] {
            r["usage"][k] = json!(0);
        }
    }
    if word(0) == "MAX_TURNS" {
        let o = r.as_object_mut().expect("object");
        o.remove("result");
        o.insert("subtype".into(), json!("error_max_turns"));
        o.insert("is_error".into(), json!(true));
        o.insert(
            "errors".into(),
            json!(["Reached maximum number of turns (1)"]),
        );
    }
    if word(0) == "MAX_TOKENS" {
        r["stop_reason"] = json!("max_tokens");
    }
    if word(0) == "GARBAGE" {
        out.raw("more garbage <html>");
    }
    out.line(&r);
    let _ = writeln!(f, "{}", json!({"type": "assistant", "text": text}));
    if word(0) == "HANG_AFTER_RESULT" {
        hang();
    }
    record_end();
    std::process::exit(if word(0) == "MAX_TURNS" || over_budget.is_some() {
        1
    } else {
        0
    });
}

struct Out {
    session_id: String,
    partial: bool,
    model: String,
}

impl Out {
    fn raw(&self, s: &str) {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{s}");
        let _ = o.flush();
    }

    fn line(&self, v: &Value) {
        let mut v = v.clone();
        if v.get("session_id").is_some() {
            v["session_id"] = json!(self.session_id);
        }
        self.raw(&v.to_string());
    }

    fn event(&self, ev: Value) {
        if self.partial {
            self.line(
                &json!({"type": "stream_event", "event": ev, "session_id": self.session_id,
                "parent_tool_use_id": null, "uuid": uuid::Uuid::new_v4().to_string(),
                "api_message_id": "msg_fake"}),
            );
        }
    }

    /// One model message holding one text block, as deltas (partial mode) plus the
    /// assistant line, in the order the real CLI prints them.
    fn text_block(&self, text: &str, delay: Duration, wait_file: Option<&Path>) {
        let mut start = template(PARTIAL, 2)["event"].clone();
        start["message"]["model"] = json!(self.model);
        self.event(start);
        self.event(template(PARTIAL, 3)["event"].clone());
        for (i, chunk) in chunks(text).iter().enumerate() {
            if i > 0 {
                std::thread::sleep(delay);
            }
            self.event(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": chunk}}));
            if i == 0 {
                if let Some(p) = wait_file {
                    while !p.exists() {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
        let mut assistant = template(PARTIAL, 8);
        assistant["message"]["content"] = json!([{"type": "text", "text": text}]);
        assistant["message"]["model"] = json!(self.model);
        self.line(&assistant);
        for i in 9..=11 {
            self.event(template(PARTIAL, i)["event"].clone());
        }
    }
}

/// Splits text into deltas of a few words, keeping every character.
fn chunks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in text.chars() {
        cur.push(c);
        if (c == ' ' && cur.len() >= 6) || cur.len() >= 4096 {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

fn template(file: &str, n: usize) -> Value {
    serde_json::from_str(file.lines().nth(n).expect("fixture line")).expect("fixture JSON")
}

fn slug(cwd: &Path) -> String {
    cwd.to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn find_transcript(projects: &Path, id: &str) -> Option<PathBuf> {
    std::fs::read_dir(projects)
        .ok()?
        .flatten()
        .map(|d| d.path().join(format!("{id}.jsonl")))
        .find(|p| p.exists())
}

/// This run's id: its pid is not unique (a sandboxed run is PID 1 of its own namespace).
fn run_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
    })
}

/// The text and the images (`<media_type> <base64 length>`) of stream-json user lines.
fn user_lines(stdin: &str) -> (String, Vec<String>) {
    let (mut texts, mut images) = (Vec::new(), Vec::new());
    for line in stdin.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
            die(&format!("Error parsing stream-json input line: {e}"));
        });
        match &v["message"]["content"] {
            Value::String(s) => texts.push(s.clone()),
            Value::Array(blocks) => {
                for b in blocks {
                    match b["type"].as_str() {
                        Some("text") => texts.push(b["text"].as_str().unwrap_or("").to_string()),
                        Some("image") => images.push(format!(
                            "{} {}",
                            b["source"]["media_type"].as_str().unwrap_or("?"),
                            b["source"]["data"].as_str().map_or(0, str::len)
                        )),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (texts.join("\n"), images)
}

fn record(argv: &[String], cwd: &Path, prompt: &str, images: &[String]) {
    let Ok(dir) = std::env::var("FAKE_CLAUDE_LOG") else {
        return;
    };
    let env: serde_json::Map<String, Value> =
        std::env::vars().map(|(k, v)| (k, json!(v))).collect();
    let pid_ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rec = json!({"run": run_id(), "pid": std::process::id(), "pid_ns": pid_ns, "started_ns": now_ns().to_string(), "argv": argv, "cwd": cwd.to_string_lossy(), "prompt": prompt, "images": images, "env": env});
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        Path::new(&dir).join(format!("{}.json", run_id())),
        rec.to_string(),
    );
}

fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Marks a normal end, for tests that check that runs never overlapped.
fn record_end() {
    if let Ok(dir) = std::env::var("FAKE_CLAUDE_LOG") {
        let _ = std::fs::write(
            Path::new(&dir).join(format!("{}.end", run_id())),
            now_ns().to_string(),
        );
    }
}

fn is_root() -> bool {
    std::env::var("FAKE_CLAUDE_AS_ROOT").is_ok() || unsafe { libc::geteuid() == 0 }
}

fn hang() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(1000));
    }
}

fn die(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(1);
}
