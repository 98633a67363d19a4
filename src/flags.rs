//! The command line, parsed with lexopt into [`RawArgs`]: strings as typed, nothing derived,
//! no environment read. `config.rs` layers these over the file and the environment.
//! This module never touches the file system.

use std::ffi::OsString;

pub const HELP: &str = "\
claudeway: an HTTP API in front of the claude CLI

USAGE:
    claudeway [OPTIONS]
    claudeway healthcheck [--port N] [--host H]

OPTIONS (each also settable in claudeway.toml; env vars in brackets):
    --config <path>              config file (default ./claudeway.toml, optional)
    --keys <id:secret,...>       API keys; the first is the admin key [WRAPPER_KEYS]
    --claude-bin <path>          the claude CLI (default: claude on PATH) [CLAUDE_BIN]
    --workdir <dir>              base directory for task and session workdirs
                                 (default /tmp/claude-tasks) [CLAUDE_WORKDIR]
    --state-dir <dir>            sessions and run registry (default <workdir>/.state) [STATE_DIR]
    --log-dir <dir>              per-key audit logs (default ./logs) [LOG_DIR]
    --host <addr>                bind address (default 0.0.0.0) [HOST]
    -p, --port <n>               port, 0 picks a free one (default 3000) [PORT]
    --log-level <level>          off|error|warn|info|debug|trace (default info) [LOG_LEVEL]
    --workers <n>                request worker threads (default 2 x cores, at least 4) [WORKERS]
    --max-concurrent <n>         CLI runs at once; more wait in a queue [MAX_CONCURRENT]
    --max-body <bytes>           largest request body (default 10485760) [MAX_BODY]
    --enable-plugin <a,b>        enable plugins (dashboard, swagger, telegram, slack,
                                 cloudflare_tunnel)
    --disable-plugin <a,b>       disable plugins (wins over everything else)
    --no-permissions-bypass      run the CLI without --dangerously-skip-permissions
                                 [NO_PERMISSIONS_BYPASS=1/true/yes/on]
    -f, --force                  never ask questions at start
    -h, --help                   print this help
    -V, --version                print the version
";

/// Every flag as typed. `None`/empty means "not given on the command line".
#[derive(Debug, Default, Clone)]
pub struct RawArgs {
    pub config: Option<String>,
    pub keys: Option<String>,
    pub claude_bin: Option<String>,
    pub workdir: Option<String>,
    pub state_dir: Option<String>,
    pub log_dir: Option<String>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub log_level: Option<String>,
    pub workers: Option<String>,
    pub max_concurrent: Option<String>,
    pub max_body: Option<String>,
    pub enable_plugins: Vec<String>,
    pub disable_plugins: Vec<String>,
    pub no_permissions_bypass: bool,
    pub force: bool,
    pub help: bool,
    pub version: bool,
    /// `claudeway healthcheck`: probe /health of a running server and exit 0 or 1.
    pub healthcheck: bool,
}

/// Parses an argument list (without the program name).
pub fn parse<I>(args: I) -> Result<RawArgs, String>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    use lexopt::prelude::*;
    let mut raw = RawArgs::default();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let slot = match arg {
            Long("config") => &mut raw.config,
            Long("keys") => &mut raw.keys,
            Long("claude-bin") => &mut raw.claude_bin,
            Long("workdir") => &mut raw.workdir,
            Long("state-dir") => &mut raw.state_dir,
            Long("log-dir") => &mut raw.log_dir,
            Long("host") => &mut raw.host,
            Short('p') | Long("port") => &mut raw.port,
            Long("log-level") => &mut raw.log_level,
            Long("workers") => &mut raw.workers,
            Long("max-concurrent") => &mut raw.max_concurrent,
            Long("max-body") => &mut raw.max_body,
            Long("enable-plugin") => {
                raw.enable_plugins
                    .extend(split_list(&value_of(&mut parser)?));
                continue;
            }
            Long("disable-plugin") => {
                raw.disable_plugins
                    .extend(split_list(&value_of(&mut parser)?));
                continue;
            }
            Long("no-permissions-bypass") => {
                raw.no_permissions_bypass = true;
                continue;
            }
            Short('f') | Long("force") => {
                raw.force = true;
                continue;
            }
            Short('h') | Long("help") => {
                raw.help = true;
                continue;
            }
            Short('V') | Long("version") => {
                raw.version = true;
                continue;
            }
            Value(v) if v == "healthcheck" && !raw.healthcheck => {
                raw.healthcheck = true;
                continue;
            }
            other => return Err(format!("{}; see --help", other.unexpected())),
        };
        *slot = Some(value_of(&mut parser)?);
    }
    Ok(raw)
}

fn value_of(parser: &mut lexopt::Parser) -> Result<String, String> {
    let value = parser.value().map_err(|e| e.to_string())?;
    value
        .into_string()
        .map_err(|v| format!("{v:?} is not valid UTF-8"))
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_switches() {
        let raw = parse([
            "--port",
            "8080",
            "-f",
            "--enable-plugin",
            "swagger,dashboard",
            "--enable-plugin=slack",
            "--keys=a:b",
        ])
        .unwrap();
        assert_eq!(raw.port.as_deref(), Some("8080"));
        assert!(raw.force);
        assert_eq!(raw.enable_plugins, ["swagger", "dashboard", "slack"]);
        assert_eq!(raw.keys.as_deref(), Some("a:b"));
    }

    #[test]
    fn unknown_flag_is_an_error() {
        let err = parse(["--nope"]).unwrap_err();
        assert!(err.contains("--nope"), "{err}");
        assert!(parse(["--port"]).is_err());
        assert!(parse(["stray"]).is_err());
    }

    #[test]
    fn healthcheck_subcommand() {
        let raw = parse(["healthcheck", "-p", "4000"]).unwrap();
        assert!(raw.healthcheck);
        assert_eq!(raw.port.as_deref(), Some("4000"));
    }
}
