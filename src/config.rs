//! [`Config`]: every setting, built once at start from defaults → claudeway.toml →
//! environment → flags (later wins), and validated. Every default lives in
//! `impl Default for Config`. This module reads the config file and the environment it is
//! handed; it never reads anything else and never logs a secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::flags::RawArgs;
use crate::keys::{self, Key, KeyLimits, Keys};

/// The plugins this build knows; anything else named in config or flags stops the start.
pub const PLUGINS: [&str; 5] = [
    "dashboard",
    "swagger",
    "telegram",
    "slack",
    "cloudflare_tunnel",
];

#[derive(Debug, Clone)]
pub struct Config {
    /// Bind address. Default `0.0.0.0`.
    pub host: String,
    /// Port; 0 asks the OS for a free one. Default 3000.
    pub port: u16,
    /// Request worker threads. Default 2 × cores, at least 4.
    pub workers: usize,
    /// API keys; the first is the admin key. Default: one generated key, id `default`.
    pub keys: Keys,
    /// The claude CLI. Default `claude`, looked up on PATH.
    pub claude_bin: String,
    /// Base directory of task and session workdirs. Default `/tmp/claude-tasks`.
    pub workdir: PathBuf,
    /// More roots a request's `workdir` may point into. Default none.
    pub workdir_allow: Vec<PathBuf>,
    /// Session store and run registry. Default `<workdir>/.state`.
    pub state_dir: PathBuf,
    /// Audit logs, `LOG_DIR/<key_id>/YYYY-MM.log`. Default `./logs`.
    pub log_dir: PathBuf,
    /// Operational log level (stderr). Default info.
    pub log_level: log::LevelFilter,
    /// Run the CLI with `--dangerously-skip-permissions`. Default true.
    pub permissions_bypass: bool,
    /// Largest request body in bytes. Default 10 MiB.
    pub max_body: usize,
    /// CLI runs at once. Default 4 × cores, at least 8.
    pub max_concurrent: usize,
    /// Runs waiting for a slot before new ones get 503. Default 256.
    pub max_queue: usize,
    /// Open streams (SSE + WebSocket) at once; beyond it 503. Default 256.
    pub max_streams: usize,
    /// `timeout_secs` when a request gives none. Default 120.
    pub default_timeout_secs: u64,
    /// Largest `timeout_secs` accepted. Default 3600.
    pub max_timeout_secs: u64,
    /// After SIGTERM to a run's process group, how long before SIGKILL. Default 2 s.
    pub kill_grace: Duration,
    /// After the CLI printed its result line, how long it may take to exit. Default 5 s.
    pub result_grace: Duration,
    /// On SIGTERM/SIGINT, how long runs in flight may take to finish. Default 30 s.
    pub shutdown_grace: Duration,
    /// Silence on a stream before a heartbeat. Default 1 s.
    pub heartbeat: Duration,
    /// A client socket that sends nothing for this long while the server waits for bytes
    /// (a request head, a body, the next request) is closed; a write that cannot make progress
    /// for this long fails. Default 30 s.
    pub idle_timeout: Duration,
    /// The whole request body must arrive within this, or 408 `TIMEOUT`. Default 60 s.
    pub body_timeout: Duration,
    /// `GET /metrics` without the admin key. Default false.
    pub metrics_public: bool,
    /// Kill a run that printed nothing for this long (`STALLED`). Default none.
    pub stall: Option<Duration>,
    /// How long a /task with permission denials stays approvable. Default 1 h.
    pub approval_ttl: Duration,
    /// Sessions idle longer than this are removed; zero = never. Default 24 h.
    pub session_ttl: Duration,
    /// How often the janitor looks for expired sessions. Default 60 s.
    pub janitor_every: Duration,
    /// How long the `/models` list is fresh before a background refresh (`[models] ttl_secs`).
    /// Default 6 h.
    pub models_ttl: Duration,
    /// Timeout of one Models API call, and the longest a request on a cold `/models` cache
    /// waits for the first fetch (`[models] fetch_timeout_secs`). Default 3 s.
    pub models_fetch_timeout: Duration,
    /// Extra environment for every CLI run (`[claude.env]`).
    pub claude_env: Vec<(String, String)>,
    /// The SDK routes (`/v1/*`, `[sdk]`).
    pub sdk: SdkConfig,
    /// Enabled plugins with their `[plugins.NAME]` tables.
    pub plugins: BTreeMap<String, toml::Table>,
    /// Never ask interactive questions at start.
    pub force: bool,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Environment variable names whose values are secrets: scrubbed from the CLI's
    /// environment and from anything we print.
    pub secret_env: Vec<String>,
    /// `[sandbox]` and the keys' `[keys.<id>.sandbox]`: how CLI runs are confined.
    pub sandbox: crate::sandbox::Settings,
    /// This binary, re-executed as the sandbox helper (`claudeway sandbox-exec`) to launch
    /// confined runs. Never set from a flag, env or file; the test suite points it at the
    /// built binary (its own executable is the test harness).
    pub self_exe: PathBuf,
    /// Only for the test suite (never set from a flag, env or file): enables
    /// `GET /__test/panic`, a route that panics, to prove a panic costs one request.
    pub test_routes: bool,
}

impl Default for Config {
    fn default() -> Config {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Config {
            host: "0.0.0.0".into(),
            port: 3000,
            workers: (cores * 2).max(4),
            keys: Keys::generate(),
            claude_bin: "claude".into(),
            workdir: PathBuf::from("/tmp/claude-tasks"),
            workdir_allow: Vec::new(),
            state_dir: PathBuf::from("/tmp/claude-tasks/.state"),
            log_dir: PathBuf::from("./logs"),
            log_level: log::LevelFilter::Info,
            permissions_bypass: true,
            max_body: 10 * 1024 * 1024,
            max_concurrent: (cores * 4).max(8),
            max_queue: 256,
            max_streams: 256,
            default_timeout_secs: 120,
            max_timeout_secs: 3600,
            kill_grace: Duration::from_secs(2),
            result_grace: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(30),
            heartbeat: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            metrics_public: false,
            stall: None,
            approval_ttl: Duration::from_secs(3600),
            session_ttl: Duration::from_secs(24 * 3600),
            janitor_every: Duration::from_secs(60),
            models_ttl: Duration::from_secs(6 * 3600),
            models_fetch_timeout: Duration::from_secs(3),
            claude_env: Vec::new(),
            sdk: SdkConfig::default(),
            plugins: BTreeMap::new(),
            force: false,
            config_file: None,
            secret_env: vec!["WRAPPER_KEYS".into()],
            sandbox: crate::sandbox::Settings::default(),
            self_exe: PathBuf::from("/proc/self/exe"),
            test_routes: false,
        }
    }
}

/// Settings of the OpenAI/Anthropic-compatible routes (`[sdk]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SdkConfig {
    /// Accept requests that define `tools` and ignore the tools (Claude Code cannot hand a
    /// tool call back to the client). Default false: such a request gets 400.
    pub ignore_tools: bool,
    /// Images in one message. Default 20.
    pub max_images: usize,
    /// Bytes of one image, decoded. Default 5 MiB (the Messages API's limit).
    pub max_image_bytes: usize,
}

impl Default for SdkConfig {
    fn default() -> SdkConfig {
        SdkConfig {
            ignore_tools: false,
            max_images: 20,
            max_image_bytes: 5 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSdk {
    ignore_tools: Option<bool>,
    max_images: Option<usize>,
    max_image_bytes: Option<usize>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    host: Option<String>,
    port: Option<u16>,
    workers: Option<usize>,
    log_dir: Option<String>,
    log_level: Option<String>,
    state_dir: Option<String>,
    max_body: Option<usize>,
    max_concurrent: Option<usize>,
    max_queue: Option<usize>,
    max_streams: Option<usize>,
    shutdown_grace_secs: Option<u64>,
    heartbeat_ms: Option<u64>,
    idle_timeout_secs: Option<u64>,
    body_timeout_secs: Option<u64>,
    metrics_public: Option<bool>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClaude {
    bin: Option<String>,
    workdir: Option<String>,
    workdir_allow: Option<Vec<String>>,
    permissions_bypass: Option<bool>,
    default_timeout_secs: Option<u64>,
    max_timeout_secs: Option<u64>,
    kill_grace_ms: Option<u64>,
    result_grace_ms: Option<u64>,
    stall_secs: Option<u64>,
    approval_ttl_secs: Option<u64>,
    session_ttl_secs: Option<u64>,
    env: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModels {
    ttl_secs: Option<u64>,
    fetch_timeout_secs: Option<u64>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    secret: Option<String>,
    secret_env: Option<String>,
    requests_per_minute: Option<u32>,
    max_concurrent: Option<usize>,
    daily_budget_usd: Option<f64>,
    monthly_budget_usd: Option<f64>,
    sandbox: Option<FileKeySandbox>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSandbox {
    mode: Option<String>,
    read: Option<Vec<String>>,
    write: Option<Vec<String>>,
    connect_ports: Option<Vec<u16>>,
    pid_namespace: Option<bool>,
    max_abi: Option<u32>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeySandbox {
    mode: Option<String>,
    read: Option<Vec<String>>,
    write: Option<Vec<String>>,
    connect_ports: Option<Vec<u16>>,
}

/// The environment, as a lookup function, so tests can hand in their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Builds the config from parsed flags and an environment. Errors are one line each,
    /// saying what to fix.
    pub fn load(args: &RawArgs, env: Env) -> Result<Config, String> {
        let mut cfg = Config::default();
        let mut keys: Option<Vec<Key>> = None;
        let mut workdir_set = false;
        let mut state_dir: Option<PathBuf> = None;
        let mut enabled: BTreeMap<String, bool> = BTreeMap::new();
        let mut plugin_tables: BTreeMap<String, toml::Table> = BTreeMap::new();

        // 1. The file.
        let (path, must_exist) = match &args.config {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from("claudeway.toml"), false),
        };
        if path.is_file() || must_exist {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "cannot read config file {}: {e}; check --config",
                    path.display()
                )
            })?;
            let file: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| format!("{}: {}", path.display(), one_line(&e)))?;
            let at = |section: &str| format!("{} [{section}]", path.display());
            for (name, value) in file {
                match name.as_str() {
                    "server" => {
                        let s: FileServer = value.try_into().map_err(|e| tom(&at("server"), e))?;
                        apply_server(&mut cfg, s, &mut state_dir)?;
                    }
                    "claude" => {
                        let c: FileClaude = value.try_into().map_err(|e| tom(&at("claude"), e))?;
                        workdir_set |= c.workdir.is_some();
                        apply_claude(&mut cfg, c)?;
                    }
                    "models" => {
                        let m: FileModels = value.try_into().map_err(|e| tom(&at("models"), e))?;
                        if let Some(v) = m.ttl_secs {
                            let secs = num(&v.to_string(), "ttl_secs", 1, 30 * 86_400)
                                .map_err(|e| format!("[models] {e}"))?;
                            cfg.models_ttl = Duration::from_secs(secs);
                        }
                        if let Some(v) = m.fetch_timeout_secs {
                            let secs = num(&v.to_string(), "fetch_timeout_secs", 1, 30)
                                .map_err(|e| format!("[models] {e}"))?;
                            cfg.models_fetch_timeout = Duration::from_secs(secs);
                        }
                    }
                    "keys" => {
                        keys = Some(file_keys(
                            value,
                            env,
                            &path,
                            &mut cfg.secret_env,
                            &mut cfg.sandbox.keys,
                        )?)
                    }
                    "sandbox" => {
                        let s: FileSandbox =
                            value.try_into().map_err(|e| tom(&at("sandbox"), e))?;
                        apply_sandbox(&mut cfg.sandbox, s)?;
                    }
                    "sdk" => {
                        let f: FileSdk = value.try_into().map_err(|e| tom(&at("sdk"), e))?;
                        let d = &mut cfg.sdk;
                        d.ignore_tools = f.ignore_tools.unwrap_or(d.ignore_tools);
                        d.max_images = f.max_images.unwrap_or(d.max_images);
                        d.max_image_bytes = f.max_image_bytes.unwrap_or(d.max_image_bytes);
                    }
                    "plugins" => {
                        let toml::Value::Table(t) = value else {
                            return Err(format!("{}: `plugins` must be a table", path.display()));
                        };
                        for (plugin, table) in t {
                            check_plugin(&plugin)?;
                            let toml::Value::Table(table) = table else {
                                return Err(format!(
                                    "{}: [plugins.{plugin}] must be a table",
                                    path.display()
                                ));
                            };
                            if let Some(on) = table.get("enabled") {
                                let on = on.as_bool().ok_or_else(|| {
                                    format!(
                                        "{}: [plugins.{plugin}] enabled must be true or false",
                                        path.display()
                                    )
                                })?;
                                enabled.insert(plugin.clone(), on);
                            }
                            plugin_tables.insert(plugin, table);
                        }
                    }
                    other => {
                        return Err(format!(
                            "{}: unknown section [{other}]; known: server, claude, keys, plugins, models, sandbox, sdk",
                            path.display()
                        ))
                    }
                }
            }
            cfg.config_file = Some(path);
        }

        // 2. The environment, then 3. the flags.
        type Setter = fn(&mut Config, &str) -> Result<(), String>;
        let layered: [(&str, Option<&String>, Setter); 10] = [
            ("HOST", args.host.as_ref(), |c, v| set_host(c, v)),
            ("PORT", args.port.as_ref(), |c, v| {
                c.port = num(v, "port", 0, 65535)? as u16;
                Ok(())
            }),
            ("CLAUDE_BIN", args.claude_bin.as_ref(), |c, v| {
                c.claude_bin = nonempty(v, "claude-bin")?;
                Ok(())
            }),
            ("CLAUDE_WORKDIR", args.workdir.as_ref(), |c, v| {
                c.workdir = PathBuf::from(nonempty(v, "workdir")?);
                Ok(())
            }),
            ("LOG_DIR", args.log_dir.as_ref(), |c, v| {
                c.log_dir = PathBuf::from(nonempty(v, "log-dir")?);
                Ok(())
            }),
            ("LOG_LEVEL", args.log_level.as_ref(), |c, v| {
                c.log_level = level(v)?;
                Ok(())
            }),
            ("WORKERS", args.workers.as_ref(), |c, v| {
                c.workers = num(v, "workers", 1, 1024)? as usize;
                Ok(())
            }),
            ("MAX_CONCURRENT", args.max_concurrent.as_ref(), |c, v| {
                c.max_concurrent = num(v, "max-concurrent", 1, 100_000)? as usize;
                Ok(())
            }),
            ("MAX_BODY", args.max_body.as_ref(), |c, v| {
                c.max_body = num(v, "max-body", 1024, 1 << 32)? as usize;
                Ok(())
            }),
            ("STATE_DIR", args.state_dir.as_ref(), |_, _| Ok(())),
        ];
        for (var, flag, set) in layered {
            if let Some(v) = env(var) {
                set(&mut cfg, &v).map_err(|e| format!("{var}: {e}"))?;
                workdir_set |= var == "CLAUDE_WORKDIR";
            }
            if let Some(v) = flag {
                set(&mut cfg, v).map_err(|e| format!("--{}: {e}", flag_name(var)))?;
                workdir_set |= var == "CLAUDE_WORKDIR";
            }
        }
        if let Some(v) = args.state_dir.clone().or_else(|| env("STATE_DIR")) {
            state_dir = Some(PathBuf::from(nonempty(&v, "state-dir")?));
        }
        if let Some(v) = env("NO_PERMISSIONS_BYPASS") {
            let off = parse_bool(&v).map_err(|e| format!("NO_PERMISSIONS_BYPASS: {e}"))?;
            cfg.permissions_bypass = !off;
        }
        if args.no_permissions_bypass {
            cfg.permissions_bypass = false;
        }
        if let Some(list) = env("WRAPPER_KEYS").filter(|v| !v.trim().is_empty()) {
            keys = Some(keys::parse_list(&list).map_err(|e| format!("WRAPPER_KEYS: {e}"))?);
        }
        if let Some(list) = &args.keys {
            keys = Some(keys::parse_list(list).map_err(|e| format!("--keys: {e}"))?);
        }
        cfg.keys = match keys {
            Some(k) => Keys::new(k, false)?,
            None => Keys::generate(),
        };
        cfg.force = args.force;

        // Plugins: file, then --enable-plugin, then --disable-plugin (which always wins).
        for p in &args.enable_plugins {
            check_plugin(p)?;
            enabled.insert(p.clone(), true);
        }
        for p in &args.disable_plugins {
            check_plugin(p)?;
            enabled.insert(p.clone(), false);
        }
        for (name, on) in enabled {
            if on {
                let table = plugin_tables.remove(&name).unwrap_or_default();
                cfg.plugins.insert(name, table);
            }
        }

        if workdir_set || state_dir.is_none() {
            cfg.state_dir = cfg.workdir.join(".state");
        }
        if let Some(s) = state_dir {
            cfg.state_dir = s;
        }
        if cfg.default_timeout_secs == 0 || cfg.default_timeout_secs > cfg.max_timeout_secs {
            return Err(format!(
                "default_timeout_secs must be between 1 and max_timeout_secs ({})",
                cfg.max_timeout_secs
            ));
        }
        Ok(cfg)
    }

    /// A variable as the CLI will see it: `[claude.env]` first (an empty value there counts,
    /// so `ANTHROPIC_API_KEY = ""` hides the process's key), then `env`.
    pub fn claude_var(&self, name: &str, env: Env) -> Option<String> {
        match self.claude_env.iter().find(|(k, _)| k == name) {
            Some((_, v)) => Some(v.clone()),
            None => env(name),
        }
    }

    pub fn plugin_enabled(&self, name: &str) -> bool {
        self.plugins.contains_key(name)
    }

    /// Variables that hold plugin secrets: the documented defaults (`TELEGRAM_BOT_TOKEN`,
    /// `SLACK_WEBHOOK_URL`, `TUNNEL_TOKEN`, `CLOUDFLARE_TUNNEL_TOKEN`) and every `*_env` name
    /// in an enabled plugin's table. They are removed from child environments and their
    /// values are scrubbed.
    pub fn plugin_secret_env(&self) -> Vec<String> {
        let mut out: Vec<String> = [
            "TELEGRAM_BOT_TOKEN",
            "SLACK_WEBHOOK_URL",
            "TUNNEL_TOKEN",
            "CLOUDFLARE_TUNNEL_TOKEN",
        ]
        .map(String::from)
        .to_vec();
        for table in self.plugins.values() {
            for (key, value) in table {
                if let (true, Some(name)) = (key.ends_with("_env"), value.as_str()) {
                    if !out.iter().any(|n| n == name) {
                        out.push(name.to_string());
                    }
                }
            }
        }
        out
    }

    /// Every secret value the process knows: API key secrets and the values of
    /// `secret_env` variables and plugin secret variables. Used to scrub text before it
    /// is shown or logged.
    pub fn secret_values(&self, env: Env) -> Vec<String> {
        let mut out: Vec<String> = self.keys.all().iter().map(|k| k.secret.clone()).collect();
        for name in self.secret_env.iter().chain(&self.plugin_secret_env()) {
            if let Some(v) = env(name).filter(|v| v.len() >= 4) {
                out.push(v);
            }
        }
        for table in self.plugins.values() {
            for key in ["bot_token", "webhook_url", "tunnel_token", "token"] {
                if let Some(v) = table
                    .get(key)
                    .and_then(|v| v.as_str())
                    .filter(|v| v.len() >= 4)
                {
                    out.push(v.to_string());
                }
            }
        }
        out
    }
}

fn apply_server(
    cfg: &mut Config,
    s: FileServer,
    state: &mut Option<PathBuf>,
) -> Result<(), String> {
    let at = |e: String| format!("[server] {e}");
    if let Some(v) = s.host {
        set_host(cfg, &v).map_err(at)?;
    }
    if let Some(v) = s.port {
        cfg.port = v;
    }
    if let Some(v) = s.workers {
        cfg.workers = num(&v.to_string(), "workers", 1, 1024).map_err(at)? as usize;
    }
    if let Some(v) = s.log_dir {
        cfg.log_dir = PathBuf::from(nonempty(&v, "log_dir").map_err(at)?);
    }
    if let Some(v) = s.log_level {
        cfg.log_level = level(&v).map_err(at)?;
    }
    if let Some(v) = s.state_dir {
        *state = Some(PathBuf::from(nonempty(&v, "state_dir").map_err(at)?));
    }
    if let Some(v) = s.max_body {
        cfg.max_body = num(&v.to_string(), "max_body", 1024, 1 << 32).map_err(at)? as usize;
    }
    if let Some(v) = s.max_concurrent {
        cfg.max_concurrent =
            num(&v.to_string(), "max_concurrent", 1, 100_000).map_err(at)? as usize;
    }
    if let Some(v) = s.max_queue {
        cfg.max_queue = v;
    }
    if let Some(v) = s.max_streams {
        cfg.max_streams = v;
    }
    if let Some(v) = s.shutdown_grace_secs {
        cfg.shutdown_grace = Duration::from_secs(v);
    }
    if let Some(v) = s.heartbeat_ms {
        cfg.heartbeat =
            Duration::from_millis(num(&v.to_string(), "heartbeat_ms", 50, 600_000).map_err(at)?);
    }
    if let Some(v) = s.idle_timeout_secs {
        cfg.idle_timeout =
            Duration::from_secs(num(&v.to_string(), "idle_timeout_secs", 1, 3600).map_err(at)?);
    }
    if let Some(v) = s.body_timeout_secs {
        cfg.body_timeout =
            Duration::from_secs(num(&v.to_string(), "body_timeout_secs", 1, 3600).map_err(at)?);
    }
    if let Some(v) = s.metrics_public {
        cfg.metrics_public = v;
    }
    Ok(())
}

fn apply_claude(cfg: &mut Config, c: FileClaude) -> Result<(), String> {
    let at = |e: String| format!("[claude] {e}");
    if let Some(v) = c.bin {
        cfg.claude_bin = nonempty(&v, "bin").map_err(at)?;
    }
    if let Some(v) = c.workdir {
        cfg.workdir = PathBuf::from(nonempty(&v, "workdir").map_err(at)?);
    }
    if let Some(v) = c.workdir_allow {
        cfg.workdir_allow = v.into_iter().map(PathBuf::from).collect();
    }
    if let Some(v) = c.permissions_bypass {
        cfg.permissions_bypass = v;
    }
    if let Some(v) = c.max_timeout_secs {
        cfg.max_timeout_secs = num(&v.to_string(), "max_timeout_secs", 1, 86_400).map_err(at)?;
    }
    if let Some(v) = c.default_timeout_secs {
        cfg.default_timeout_secs = v;
    }
    if let Some(v) = c.kill_grace_ms {
        cfg.kill_grace = Duration::from_millis(v);
    }
    if let Some(v) = c.result_grace_ms {
        cfg.result_grace = Duration::from_millis(v);
    }
    if let Some(v) = c.stall_secs {
        cfg.stall = (v > 0).then(|| Duration::from_secs(v));
    }
    if let Some(v) = c.approval_ttl_secs {
        cfg.approval_ttl = Duration::from_secs(v);
    }
    if let Some(v) = c.session_ttl_secs {
        cfg.session_ttl = Duration::from_secs(v);
    }
    if let Some(env) = c.env {
        cfg.claude_env = env.into_iter().collect();
    }
    Ok(())
}

fn apply_sandbox(cfg: &mut crate::sandbox::Settings, s: FileSandbox) -> Result<(), String> {
    let at = |e: String| format!("[sandbox] {e}");
    if let Some(m) = s.mode {
        cfg.mode = crate::sandbox::Mode::parse(&m).map_err(at)?;
    }
    cfg.extra = sandbox_extra(s.read, s.write, s.connect_ports).map_err(at)?;
    if let Some(v) = s.pid_namespace {
        cfg.pid_namespace = v;
    }
    cfg.max_abi = s.max_abi;
    Ok(())
}

fn key_sandbox(id: &str, s: FileKeySandbox) -> Result<crate::sandbox::KeySettings, String> {
    let at = |e: String| format!("[keys.{id}.sandbox] {e}");
    let mode = match s.mode.as_deref() {
        None => None,
        Some("require") => {
            return Err(at(
                "mode must be \"enforce\" or \"off\" (\"require\" is for [sandbox])".into(),
            ))
        }
        Some(m) => Some(crate::sandbox::Mode::parse(m).map_err(at)?),
    };
    Ok(crate::sandbox::KeySettings {
        mode,
        extra: sandbox_extra(s.read, s.write, s.connect_ports).map_err(at)?,
    })
}

fn sandbox_extra(
    read: Option<Vec<String>>,
    write: Option<Vec<String>>,
    ports: Option<Vec<u16>>,
) -> Result<crate::sandbox::Extra, String> {
    let paths = |list: Option<Vec<String>>, what: &str| -> Result<Vec<PathBuf>, String> {
        list.unwrap_or_default()
            .into_iter()
            .map(|p| {
                if Path::new(&p).is_absolute() {
                    Ok(PathBuf::from(p))
                } else {
                    Err(format!("{what}: `{p}` must be an absolute path"))
                }
            })
            .collect()
    };
    let connect_ports = ports.unwrap_or_default();
    if connect_ports.contains(&0) {
        return Err("connect_ports: 0 is not a port".into());
    }
    Ok(crate::sandbox::Extra {
        read: paths(read, "read")?,
        write: paths(write, "write")?,
        connect_ports,
    })
}

fn file_keys(
    value: toml::Value,
    env: Env,
    path: &Path,
    secret_env: &mut Vec<String>,
    sandboxes: &mut BTreeMap<String, crate::sandbox::KeySettings>,
) -> Result<Vec<Key>, String> {
    let toml::Value::Table(table) = value else {
        return Err(format!(
            "{}: `keys` must be a table of [keys.<id>] tables",
            path.display()
        ));
    };
    let mut out = Vec::new();
    for (id, v) in table {
        let k: FileKey = v
            .try_into()
            .map_err(|e| tom(&format!("{} [keys.{id}]", path.display()), e))?;
        let secret = match (k.secret, k.secret_env) {
            (Some(s), None) => s,
            (None, Some(var)) => {
                let s = env(&var).filter(|s| !s.is_empty()).ok_or_else(|| {
                    format!("[keys.{id}] secret_env = \"{var}\" but {var} is not set or empty")
                })?;
                secret_env.push(var);
                s
            }
            _ => {
                return Err(format!(
                    "[keys.{id}] needs exactly one of `secret` or `secret_env`"
                ))
            }
        };
        if let Some(sb) = k.sandbox {
            sandboxes.insert(id.clone(), key_sandbox(&id, sb)?);
        }
        let limits = KeyLimits {
            requests_per_minute: k.requests_per_minute,
            max_concurrent: k.max_concurrent,
            daily_budget_usd: k.daily_budget_usd,
            monthly_budget_usd: k.monthly_budget_usd,
        };
        if limits.requests_per_minute == Some(0) || limits.max_concurrent == Some(0) {
            return Err(format!(
                "[keys.{id}] requests_per_minute and max_concurrent must be at least 1 (leave them out for no limit)"
            ));
        }
        for (name, usd) in [
            ("daily_budget_usd", limits.daily_budget_usd),
            ("monthly_budget_usd", limits.monthly_budget_usd),
        ] {
            if usd.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                return Err(format!(
                    "[keys.{id}] {name} must be a positive number of dollars (leave it out for no budget)"
                ));
            }
        }
        out.push(Key { id, secret, limits });
    }
    if out.is_empty() {
        return Err(format!(
            "{}: [keys] is empty; add a [keys.<id>] table",
            path.display()
        ));
    }
    Ok(out)
}

fn check_plugin(name: &str) -> Result<(), String> {
    if PLUGINS.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown plugin `{name}`; valid plugins: {}",
            PLUGINS.join(", ")
        ))
    }
}

fn set_host(cfg: &mut Config, v: &str) -> Result<(), String> {
    let v = nonempty(v, "host")?;
    let probe = if v.contains(':') {
        format!("[{v}]:0")
    } else {
        format!("{v}:0")
    };
    if probe.parse::<std::net::SocketAddr>().is_err() && v != "localhost" {
        return Err(format!(
            "`{v}` is not an IP address (for example 0.0.0.0 or 127.0.0.1)"
        ));
    }
    cfg.host = v;
    Ok(())
}

fn nonempty(v: &str, what: &str) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() {
        Err(format!("{what} must not be empty"))
    } else {
        Ok(v.to_string())
    }
}

fn num(v: &str, what: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{what} must be a whole number from {min} to {max}, not `{v}`"
        )),
    }
}

fn level(v: &str) -> Result<log::LevelFilter, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("log level `{v}` is not one of off, error, warn, info, debug, trace"))
}

/// `1/true/yes/on` and `0/false/no/off/""`, any case.
pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!(
            "`{v}` is not a boolean; use 1/true/yes/on or 0/false/no/off"
        )),
    }
}

fn flag_name(var: &str) -> &'static str {
    match var {
        "HOST" => "host",
        "PORT" => "port",
        "CLAUDE_BIN" => "claude-bin",
        "CLAUDE_WORKDIR" => "workdir",
        "LOG_DIR" => "log-dir",
        "LOG_LEVEL" => "log-level",
        "WORKERS" => "workers",
        "MAX_CONCURRENT" => "max-concurrent",
        "MAX_BODY" => "max-body",
        _ => "state-dir",
    }
}

fn tom(at: &str, e: toml::de::Error) -> String {
    format!("{at}: {}", one_line(&e))
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let raw = crate::flags::parse(args.iter().copied()).unwrap();
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(&raw, &|k| env.get(k).cloned())
    }

    fn file(text: &str) -> (tempdir::Dir, String) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("claudeway.toml");
        std::fs::write(&path, text).unwrap();
        let p = path.to_string_lossy().into_owned();
        (dir, p)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!("cw-cfg-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn defaults() {
        let cfg = load(&["--config", "/nonexistent/never"], &[]).unwrap_err();
        assert!(cfg.contains("cannot read config file"), "{cfg}");
        let cfg = load(&[], &[]).unwrap();
        assert_eq!(cfg.port, 3000);
        assert_eq!(cfg.host, "0.0.0.0");
        assert!(cfg.keys.generated);
        assert_eq!(cfg.keys.admin().id, "default");
        assert!(cfg.permissions_bypass);
        assert_eq!(cfg.default_timeout_secs, 120);
        assert!(cfg.plugins.is_empty());
    }

    #[test]
    fn precedence_defaults_file_env_flags() {
        let (_d, path) = file(
            "[server]\nport = 4000\nhost = \"127.0.0.1\"\nlog_level = \"debug\"\n\
             [claude]\nbin = \"from-file\"\nworkdir = \"/tmp/ff\"\n\
             [keys.filekey]\nsecret = \"file-secret\"\n",
        );
        let cfg = load(&["--config", &path], &[]).unwrap();
        assert_eq!((cfg.port, cfg.claude_bin.as_str()), (4000, "from-file"));
        assert_eq!(cfg.keys.admin().id, "filekey");
        assert_eq!(cfg.log_level, log::LevelFilter::Debug);
        assert_eq!(cfg.state_dir, PathBuf::from("/tmp/ff/.state"));

        let env = [
            ("PORT", "5000"),
            ("CLAUDE_BIN", "from-env"),
            ("WRAPPER_KEYS", "envkey:s"),
        ];
        let cfg = load(&["--config", &path], &env).unwrap();
        assert_eq!((cfg.port, cfg.claude_bin.as_str()), (5000, "from-env"));
        assert_eq!(cfg.keys.admin().id, "envkey");
        assert_eq!(cfg.host, "127.0.0.1");

        let cfg = load(
            &["--config", &path, "-p", "6000", "--keys", "flagkey:x"],
            &env,
        )
        .unwrap();
        assert_eq!((cfg.port, cfg.claude_bin.as_str()), (6000, "from-env"));
        assert_eq!(cfg.keys.admin().id, "flagkey");
    }

    #[test]
    fn keys_keep_file_order_and_read_secret_env() {
        let (_d, path) = file(
            "[keys.zeta]\nsecret_env = \"ZETA_SECRET\"\nrequests_per_minute = 5\n\
             [keys.alpha]\nsecret = \"a\"\n",
        );
        let cfg = load(&["--config", &path], &[("ZETA_SECRET", "zs")]).unwrap();
        let ids: Vec<_> = cfg.keys.all().iter().map(|k| k.id.as_str()).collect();
        assert_eq!(ids, ["zeta", "alpha"]);
        assert_eq!(cfg.keys.admin().secret, "zs");
        assert_eq!(cfg.keys.admin().limits.requests_per_minute, Some(5));
        assert!(cfg.secret_env.contains(&"ZETA_SECRET".to_string()));
        let err = load(&["--config", &path], &[]).unwrap_err();
        assert!(err.contains("ZETA_SECRET is not set"), "{err}");
    }

    #[test]
    fn bad_input_is_one_clear_message() {
        let (_d, path) = file("[server]\nport = \"x\n");
        let err = load(&["--config", &path], &[]).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        let (_d, path) = file("[server]\nprot = 1\n");
        assert!(load(&["--config", &path], &[])
            .unwrap_err()
            .contains("prot"));
        let (_d, path) = file("[bogus]\n");
        assert!(load(&["--config", &path], &[])
            .unwrap_err()
            .contains("unknown section"));
        assert!(load(&["-p", "70000"], &[]).unwrap_err().contains("--port"));
        assert!(load(&[], &[("PORT", "abc")])
            .unwrap_err()
            .starts_with("PORT:"));
        assert!(load(&["--keys", "a:1,a:2"], &[])
            .unwrap_err()
            .contains("twice"));
        assert!(load(&[], &[("WRAPPER_KEYS", "nocolon")])
            .unwrap_err()
            .contains("WRAPPER_KEYS"));
        assert!(load(&["--log-level", "loud"], &[]).is_err());
        assert!(load(&["--host", "not an ip"], &[]).is_err());
    }

    #[test]
    fn sandbox_section_and_key_overrides() {
        use crate::sandbox::Mode;
        let cfg = load(&[], &[]).unwrap();
        assert_eq!(cfg.sandbox.mode, Mode::Enforce, "enforce by default");
        assert!(cfg.sandbox.pid_namespace);
        let (_d, path) = file(
            "[sandbox]\nmode = \"require\"\nread = [\"/opt/data\"]\nwrite = [\"/srv/cache\"]\n\
             connect_ports = [22, 8443]\npid_namespace = false\nmax_abi = 3\n\
             [keys.ci]\nsecret = \"s\"\n[keys.ci.sandbox]\nmode = \"off\"\nconnect_ports = [5432]\n\
             [keys.b]\nsecret = \"t\"\n",
        );
        let cfg = load(&["--config", &path], &[]).unwrap();
        let sb = &cfg.sandbox;
        assert_eq!(sb.mode, Mode::Require);
        assert_eq!(sb.extra.read, [PathBuf::from("/opt/data")]);
        assert_eq!(sb.extra.write, [PathBuf::from("/srv/cache")]);
        assert_eq!(sb.extra.connect_ports, [22, 8443]);
        assert!(!sb.pid_namespace);
        assert_eq!(sb.max_abi, Some(3));
        assert_eq!(sb.keys["ci"].mode, Some(Mode::Off));
        assert_eq!(sb.keys["ci"].extra.connect_ports, [5432]);
        assert!(!sb.keys.contains_key("b"));

        for (text, needle) in [
            ("[sandbox]\nmode = \"strict\"\n", "mode `strict`"),
            ("[sandbox]\nread = [\"relative/dir\"]\n", "absolute"),
            ("[sandbox]\nconnect_ports = [0]\n", "not a port"),
            ("[sandbox]\nconnect_ports = [70000]\n", "[sandbox]"),
            ("[sandbox]\nreed = []\n", "reed"),
            (
                "[keys.a]\nsecret = \"s\"\n[keys.a.sandbox]\nmode = \"require\"\n",
                "[keys.a.sandbox]",
            ),
        ] {
            let (_d, path) = file(text);
            let err = load(&["--config", &path], &[]).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn booleans_and_plugins() {
        for (v, bypass) in [
            ("1", false),
            ("TRUE", false),
            ("yes", false),
            ("off", true),
            ("", true),
        ] {
            let cfg = load(&[], &[("NO_PERMISSIONS_BYPASS", v)]).unwrap();
            assert_eq!(cfg.permissions_bypass, bypass, "{v}");
        }
        assert!(load(&[], &[("NO_PERMISSIONS_BYPASS", "maybe")])
            .unwrap_err()
            .contains("boolean"));
        assert!(
            !load(&["--no-permissions-bypass"], &[])
                .unwrap()
                .permissions_bypass
        );

        let (_d, path) = file(
            "[plugins.swagger]\nenabled = true\n[plugins.slack]\nenabled = true\nwebhook_url = \"http://x/hook\"\n",
        );
        let cfg = load(&["--config", &path, "--disable-plugin", "slack"], &[]).unwrap();
        assert!(cfg.plugin_enabled("swagger") && !cfg.plugin_enabled("slack"));
        let cfg = load(&["--config", &path, "--enable-plugin", "dashboard"], &[]).unwrap();
        assert!(cfg.plugin_enabled("dashboard") && cfg.plugin_enabled("slack"));
        assert!(cfg
            .secret_values(&|_| None)
            .contains(&"http://x/hook".to_string()));
        let err = load(&["--enable-plugin", "nope"], &[]).unwrap_err();
        assert!(err.contains("valid plugins: dashboard"), "{err}");
    }

    #[test]
    fn models_ttl_and_claude_vars() {
        assert_eq!(
            load(&[], &[]).unwrap().models_ttl,
            Duration::from_secs(6 * 3600)
        );
        let (_d, path) = file(
            "[models]\nttl_secs = 60\nfetch_timeout_secs = 2\n[claude.env]\nANTHROPIC_API_KEY = \"\"\nHOME = \"/h\"\n",
        );
        let cfg = load(&["--config", &path], &[]).unwrap();
        assert_eq!(cfg.models_ttl, Duration::from_secs(60));
        assert_eq!(cfg.models_fetch_timeout, Duration::from_secs(2));
        let env =
            |k: &str| (k == "ANTHROPIC_API_KEY" || k == "PATH").then(|| "from-env".to_string());
        assert_eq!(
            cfg.claude_var("ANTHROPIC_API_KEY", &env).as_deref(),
            Some("")
        );
        assert_eq!(cfg.claude_var("HOME", &env).as_deref(), Some("/h"));
        assert_eq!(cfg.claude_var("PATH", &env).as_deref(), Some("from-env"));
        for bad in [
            "[models]\nttl_secs = 0\n",
            "[models]\nttl = 5\n",
            "[models]\nfetch_timeout_secs = 99\n",
        ] {
            let (_d, path) = file(bad);
            let err = load(&["--config", &path], &[]).unwrap_err();
            assert!(err.contains("[models]") || err.contains("ttl"), "{err}");
        }
    }

    #[test]
    fn limits_and_connection_settings() {
        let (_d, path) = file(
            "[server]\nidle_timeout_secs = 5\nbody_timeout_secs = 7\nmetrics_public = true\n\
             [keys.a]\nsecret = \"s\"\nrequests_per_minute = 10\nmax_concurrent = 2\n\
             daily_budget_usd = 1.5\nmonthly_budget_usd = 20\n",
        );
        let cfg = load(&["--config", &path], &[]).unwrap();
        assert_eq!(cfg.idle_timeout, Duration::from_secs(5));
        assert_eq!(cfg.body_timeout, Duration::from_secs(7));
        assert!(cfg.metrics_public);
        let l = &cfg.keys.admin().limits;
        assert_eq!(
            (l.requests_per_minute, l.max_concurrent),
            (Some(10), Some(2))
        );
        assert_eq!(
            (l.daily_budget_usd, l.monthly_budget_usd),
            (Some(1.5), Some(20.0))
        );
        for bad in [
            "requests_per_minute = 0",
            "max_concurrent = 0",
            "daily_budget_usd = -1.0",
            "monthly_budget_usd = 0.0",
        ] {
            let (_d, path) = file(&format!("[keys.a]\nsecret = \"s\"\n{bad}\n"));
            let err = load(&["--config", &path], &[]).unwrap_err();
            assert!(err.contains("[keys.a]"), "{bad}: {err}");
        }
        let (_d, path) = file("[server]\nidle_timeout_secs = 0\n");
        assert!(load(&["--config", &path], &[])
            .unwrap_err()
            .contains("idle_timeout_secs"));
    }
}
