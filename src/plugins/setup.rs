//! The first-run setup: on an interactive terminal, with no config file, no
//! `--enable-plugin` and no `-f`, ask which plugins to enable and each one's required
//! settings, and write `claudeway.toml` (or the `--config` path) with them, readable by its
//! owner only (it may hold tokens). Questions go to stderr, answers come from stdin, one
//! line each, so it works on any terminal. End of input skips it and writes nothing. It
//! never runs without a terminal and never overwrites a file.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use crate::flags::RawArgs;

/// The config file the setup would write.
pub fn config_path(raw: &RawArgs) -> PathBuf {
    PathBuf::from(raw.config.as_deref().unwrap_or("claudeway.toml"))
}

/// True when the setup should be offered.
pub fn wanted(raw: &RawArgs) -> bool {
    !raw.force
        && raw.enable_plugins.is_empty()
        && !config_path(raw).exists()
        && crate::os::stdin_is_tty()
}

/// Runs the dialogue on the terminal and writes the file.
pub fn run(raw: &RawArgs) -> Result<(), String> {
    let path = config_path(raw);
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "No {} here: first-run setup (Ctrl-D skips it; -f never asks).",
        path.display()
    );
    let stdin = std::io::stdin();
    let Some(text) = ask(&mut stdin.lock(), &mut err, &|b| {
        crate::which::find(b).is_some()
    }) else {
        let _ = writeln!(err, "\nSetup skipped; nothing written.");
        return Ok(());
    };
    write_private(&path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let _ = writeln!(
        err,
        "Wrote {} (readable by you only: it may hold tokens). Every setting is described in claudeway.example.toml.",
        path.display()
    );
    Ok(())
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(text.as_bytes())
}

const CHOICES: [(&str, &str); 5] = [
    ("slack", "a message per event to a Slack incoming webhook"),
    (
        "telegram",
        "messages to a Telegram chat, with Approve/Deny buttons for denied tools",
    ),
    (
        "cloudflare_tunnel",
        "a public https URL through cloudflared",
    ),
    ("dashboard", "the web dashboard"),
    ("swagger", "API docs at /docs"),
];

/// A plugin's settings as (key, value) pairs.
type Settings = Vec<(&'static str, String)>;

/// One answer, trimmed; None at the end of input.
fn line(input: &mut dyn BufRead, out: &mut dyn Write, question: &str) -> Option<String> {
    let _ = write!(out, "{question}");
    let _ = out.flush();
    let mut s = String::new();
    match input.read_line(&mut s) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(s.trim().to_string()),
    }
}

/// The dialogue. `installed` says whether a program is on PATH. Returns the file's text,
/// or None when the input ended (nothing is written then).
pub fn ask(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    installed: &dyn Fn(&str) -> bool,
) -> Option<String> {
    let _ = writeln!(out, "Plugins:");
    for (i, (name, what)) in CHOICES.iter().enumerate() {
        let _ = writeln!(out, "  {}  {name:<18} {what}", i + 1);
    }
    let picked = loop {
        let answer = line(
            input,
            out,
            "Enable which? (numbers or names, comma-separated; Enter for none): ",
        )?;
        match pick(&answer) {
            Ok(p) => break p,
            Err(e) => {
                let _ = writeln!(out, "{e}");
            }
        }
    };
    let mut tables: Vec<(&str, bool, Settings)> = Vec::new();
    for (name, _) in CHOICES {
        if !picked.contains(&name) {
            tables.push((name, false, Vec::new()));
            continue;
        }
        let (on, settings) = match name {
            "slack" => {
                let url = ask_until(
                    input,
                    out,
                    "Slack webhook URL (https://hooks.slack.com/services/...): ",
                    |v| {
                        (v.starts_with("https://") || v.starts_with("http://"))
                            .then_some(())
                            .ok_or("it must start with https://")
                    },
                )?;
                match url {
                    Some(url) => (true, vec![("webhook_url", url)]),
                    None => (false, Vec::new()),
                }
            }
            "telegram" => {
                let token = ask_until(input, out, "Telegram bot token (from @BotFather): ", |v| {
                    super::telegram::valid_token(v)
                        .then_some(())
                        .ok_or("that does not look like a bot token (digits:letters)")
                })?;
                let chat = match &token {
                    None => None,
                    Some(_) => ask_until(
                        input,
                        out,
                        "Telegram chat id (a number: send your bot a message, then read message.chat.id at https://api.telegram.org/bot<token>/getUpdates): ",
                        |v| v.parse::<i64>().map(|_| ()).map_err(|_| "it must be a number, such as -1001234567890"),
                    )?,
                };
                match (token, chat) {
                    (Some(t), Some(c)) => (true, vec![("bot_token", t), ("chat_id", c)]),
                    _ => (false, Vec::new()),
                }
            }
            "cloudflare_tunnel" => {
                let token = line(
                    input,
                    out,
                    "Cloudflare tunnel token (Enter for a quick tunnel on a trycloudflare.com URL): ",
                )?;
                let settings = if token.is_empty() {
                    Vec::new()
                } else {
                    vec![("tunnel_token", token)]
                };
                if installed("cloudflared") {
                    (true, settings)
                } else {
                    let _ = writeln!(
                        out,
                        "cloudflared is not installed, so the tunnel stays disabled for now: {}; then set enabled = true.",
                        super::tunnel::INSTALL_HINT
                    );
                    (false, settings)
                }
            }
            _ => (true, Vec::new()),
        };
        if !on {
            let _ = writeln!(out, "{name}: left disabled.");
        }
        tables.push((name, on, settings));
    }
    let mut text = String::from(
        "# claudeway.toml, written by the first-run setup. Every setting: claudeway.example.toml.\n\
         # It may hold tokens: keep it private.\n",
    );
    for (name, on, settings) in tables {
        text.push_str(&format!("\n[plugins.{name}]\nenabled = {on}\n"));
        for (key, value) in settings {
            let value = if key == "chat_id" {
                value
            } else {
                toml_string(&value)
            };
            text.push_str(&format!("{key} = {value}\n"));
        }
    }
    Some(text)
}

/// Asks until `check` accepts the answer; Some(None) when the answer is empty (skip),
/// None at the end of input.
fn ask_until(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    question: &str,
    check: impl Fn(&str) -> Result<(), &'static str>,
) -> Option<Option<String>> {
    loop {
        let v = line(input, out, question)?;
        if v.is_empty() {
            return Some(None);
        }
        match check(&v) {
            Ok(()) => return Some(Some(v)),
            Err(e) => {
                let _ = writeln!(out, "{e}; try again, or Enter to skip.");
            }
        }
    }
}

/// Parses "1, 3" or "slack telegram" into plugin names.
fn pick(answer: &str) -> Result<Vec<&'static str>, String> {
    let mut out = Vec::new();
    for word in answer
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        let found = match word.parse::<usize>() {
            Ok(n) if (1..=CHOICES.len()).contains(&n) => Some(CHOICES[n - 1].0),
            _ => CHOICES.iter().map(|c| c.0).find(|c| *c == word),
        };
        match found {
            Some(name) if !out.contains(&name) => out.push(name),
            Some(_) => {}
            None => {
                return Err(format!(
                    "unknown plugin `{word}`: answer with numbers 1-{} or names",
                    CHOICES.len()
                ))
            }
        }
    }
    Ok(out)
}

/// A TOML basic string, escaped: quotes, backslashes and control characters.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_round_trip() {
        for s in [
            "plain",
            "quote \" and back\\slash",
            "new\nline\ttab\r",
            "\u{1}\u{7f}\u{9b}",
            "ünïcødé 😀",
            "\"\"\"",
        ] {
            let doc = format!("v = {}", toml_string(s));
            let t: toml::Table = doc.parse().unwrap_or_else(|e| panic!("{doc}: {e}"));
            assert_eq!(t["v"].as_str(), Some(s));
        }
    }

    fn dialogue(answers: &str, installed: bool) -> (Option<String>, String) {
        let mut out = Vec::new();
        let text = ask(&mut answers.as_bytes(), &mut out, &|_| installed);
        (text, String::from_utf8(out).unwrap())
    }

    #[test]
    fn picks_plugins_and_their_settings() {
        let (text, said) = dialogue(
            "bogus\n1, telegram 5\nhttps://hooks.example/a\"b\n123:abc\nnot a number\n-100\n",
            true,
        );
        assert!(said.contains("unknown plugin `bogus`"), "{said}");
        assert!(said.contains("it must be a number"), "{said}");
        let t: toml::Table = text.unwrap().parse().unwrap();
        let p = &t["plugins"];
        assert_eq!(p["slack"]["enabled"].as_bool(), Some(true));
        assert_eq!(
            p["slack"]["webhook_url"].as_str(),
            Some("https://hooks.example/a\"b")
        );
        assert_eq!(p["telegram"]["bot_token"].as_str(), Some("123:abc"));
        assert_eq!(p["telegram"]["chat_id"].as_integer(), Some(-100));
        assert_eq!(p["swagger"]["enabled"].as_bool(), Some(true));
        assert_eq!(p["dashboard"]["enabled"].as_bool(), Some(false));
        assert_eq!(p["cloudflare_tunnel"]["enabled"].as_bool(), Some(false));
    }

    #[test]
    fn skipping_and_missing_programs() {
        assert_eq!(dialogue("", true).0, None);
        assert_eq!(dialogue("slack\n", true).0, None, "input ended mid-way");
        let (text, said) = dialogue("3\n\n", false);
        assert!(said.contains("cloudflared is not installed"), "{said}");
        let t: toml::Table = text.unwrap().parse().unwrap();
        assert_eq!(
            t["plugins"]["cloudflare_tunnel"]["enabled"].as_bool(),
            Some(false)
        );
        let (text, _) = dialogue("slack\n\n", true);
        let t: toml::Table = text.unwrap().parse().unwrap();
        assert_eq!(t["plugins"]["slack"]["enabled"].as_bool(), Some(false));
        let (text, _) = dialogue("\n", true);
        assert!(text.unwrap().contains("[plugins.swagger]\nenabled = false"));
    }
}
