//! The `claudeway` binary: flags → config → logging → server, then wait for a signal and
//! shut down in order. Start-up errors are printed as one `error: ...` line (no backtrace)
//! and exit with status 2.

use std::time::Duration;

use claudeway::{config, flags, os, server};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    // The sandbox helper: the server re-executes itself to launch each confined CLI run.
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|a| a == claudeway::sandbox::HELPER_ARG)
    {
        claudeway::sandbox::helper_main(args.collect());
    }
    let raw = flags::parse(std::env::args_os().skip(1))?;
    if raw.help {
        print!("{}", flags::HELP);
        return Ok(());
    }
    if raw.version {
        println!("claudeway {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    if raw.healthcheck {
        let host = raw.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let port = raw
            .port
            .clone()
            .or_else(|| std::env::var("PORT").ok())
            .unwrap_or_else(|| "3000".into());
        let host = if host == "0.0.0.0" {
            "127.0.0.1".to_string()
        } else {
            host
        };
        return claudeway::healthcheck::probe(&host, &port);
    }
    if claudeway::plugins::setup::wanted(&raw) {
        claudeway::plugins::setup::run(&raw)?;
    }
    let cfg = config::Config::load(&raw, &config::process_env)?;
    // The secrets have been read: take them out of what /proc/<pid>/environ and cmdline show
    // (before any thread starts; the variables keep working for us).
    let mut names = cfg.secret_env.clone();
    names.extend(claudeway::app::PLUGIN_SECRET_ENV.map(String::from));
    let scrubbed = claudeway::sandbox::scrub_own_secrets(&names, &["--keys"]);
    init_logging(cfg.log_level);
    log::debug!("overwrote {scrubbed} secret value(s) in our initial environment and argv");
    if let Some(f) = &cfg.config_file {
        log::info!("config file: {}", f.display());
    }
    check_claude_bin(&cfg)?;
    os::catch_shutdown_signals();
    let generated = cfg.keys.generated.then(|| cfg.keys.admin().secret.clone());
    let key_ids: Vec<String> = cfg.keys.all().iter().map(|k| k.id.clone()).collect();
    let host = cfg.host.clone();
    let running = server::start(cfg)?;
    let port = running.addr.port();
    if let Some(secret) = generated {
        eprintln!("No API keys configured — generated one for you:");
        eprintln!("{secret}");
        eprintln!(
            "Use it as: curl -H \"Authorization: Bearer sk-...\" http://localhost:{port}/task"
        );
        eprintln!("To set your own keys, use --keys or WRAPPER_KEYS env var.");
    } else {
        log::info!(
            "{} API key(s): {} (admin: {})",
            key_ids.len(),
            key_ids.join(", "),
            key_ids[0]
        );
    }
    eprintln!(
        "Claudeway v{} listening on {host}:{port}",
        env!("CARGO_PKG_VERSION")
    );
    running.app.sandbox.report();
    while os::shutdown_signals() == 0 {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("Shutting down (a second signal stops at once)");
    let grace = running.app.config.shutdown_grace;
    let app = running.app.clone();
    std::thread::spawn(move || {
        while os::shutdown_signals() < 2 {
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("Second signal: stopping now");
        let killed = app.registry.kill_all_now();
        log::warn!("killed {killed} CLI process group(s)");
        app.audit.flush();
        std::process::exit(1);
    });
    running.shutdown(grace, &|| false);
    Ok(())
}

fn init_logging(level: log::LevelFilter) {
    let config = simplelog::ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_thread_level(log::LevelFilter::Off)
        .set_target_level(log::LevelFilter::Off)
        .build();
    // One write per log line (simplelog writes each piece separately; stderr is unbuffered).
    let _ =
        simplelog::WriteLogger::init(level, config, std::io::LineWriter::new(std::io::stderr()));
}

/// Warns (or, on a terminal, asks) when the claude CLI cannot be found.
fn check_claude_bin(cfg: &config::Config) -> Result<(), String> {
    if claudeway::which::find(&cfg.claude_bin).is_some() {
        return Ok(());
    }
    let msg = format!(
        "the claude CLI `{}` was not found; tasks will fail until it is installed (npm install -g @anthropic-ai/claude-code) or --claude-bin points at it",
        cfg.claude_bin
    );
    if cfg.force || !os::stdin_is_tty() {
        log::warn!("{msg}");
        return Ok(());
    }
    eprint!("{msg}.\nContinue anyway? [y/N] ");
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err("stopped: the claude CLI is missing".into())
    }
}
