//! Per-key CLI homes. Each key's runs get `HOME=<state_dir>/homes/<key_id>` and a private
//! `TMPDIR` inside it (one per run, removed afterwards), so transcripts, `--resume` and the
//! CLI's settings stay with one key and no key can read another's conversations. The CLI's
//! credentials come from the operator: `ANTHROPIC_API_KEY` (or `CLAUDE_CODE_OAUTH_TOKEN`)
//! passes through the environment; a `claude login` credentials file and `settings.json` are
//! copied from the operator's CLI config folder into each home (again whenever the operator's
//! copy is newer), never exposed in place. Transcripts of sessions that ran before homes were
//! per key are copied over on their next turn. This module never deletes anything but a run's
//! TMPDIR and the transcripts of a deleted session.

use std::path::{Path, PathBuf};

use crate::config::Env;

/// The operator's files a home is seeded with, from the operator's CLI config folder.
pub const SEEDED: [&str; 2] = [".credentials.json", "settings.json"];

#[derive(Debug, Clone)]
pub struct Homes {
    /// `<state_dir>/homes`
    root: PathBuf,
    /// The CLI config folder the operator set up: `CLAUDE_CONFIG_DIR`, else `<HOME>/.claude`
    /// (`[claude.env]` first, then our environment). Where credentials are copied from, and
    /// where transcripts were before homes were per key.
    operator: Option<PathBuf>,
    /// The operator set `CLAUDE_CONFIG_DIR`: runs get it too, pointing into their home.
    config_dir_var: bool,
}

/// The home of one run: its variables, and the TMPDIR to remove when it is over.
#[derive(Debug)]
pub struct RunHome {
    pub home: PathBuf,
    pub tmpdir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl RunHome {
    /// Removes the run's TMPDIR (what the CLI leaves there: probes, sockets, task files).
    pub fn clean(self) {
        let _ = std::fs::remove_dir_all(&self.tmpdir);
    }
}

impl Homes {
    pub fn new(state_dir: &Path, claude_env: &[(String, String)], env: Env) -> Homes {
        let var = |name: &str| {
            claude_env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| env(name))
                .filter(|v| !v.is_empty())
        };
        let config_dir_var = var("CLAUDE_CONFIG_DIR").is_some();
        let operator = var("CLAUDE_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".claude")));
        Homes {
            root: state_dir.join("homes"),
            operator,
            config_dir_var,
        }
    }

    /// The HOME of `key_id`'s runs.
    pub fn home(&self, key_id: &str) -> PathBuf {
        self.root.join(key_id)
    }

    /// The CLI config folder of `key_id`'s runs (transcripts are in its `projects/`).
    pub fn config_dir(&self, key_id: &str) -> PathBuf {
        self.home(key_id).join(".claude")
    }

    /// The operator's CLI config folder (see [`Homes`]).
    pub fn operator_config_dir(&self) -> Option<&Path> {
        self.operator.as_deref()
    }

    /// Creates `key_id`'s home (private to our user) and a TMPDIR for one run, seeds the
    /// operator's credentials and settings, and returns the run's variables.
    pub fn prepare(&self, key_id: &str) -> std::io::Result<RunHome> {
        let home = self.home(key_id);
        let config = self.config_dir(key_id);
        private_dir(&self.root)?;
        private_dir(&home)?;
        private_dir(&config)?;
        private_dir(&home.join("tmp"))?;
        let tmpdir = home.join("tmp").join(crate::random::hex(6));
        private_dir(&tmpdir)?;
        if let Some(src) = &self.operator {
            for name in SEEDED {
                if let Err(e) = seed(&src.join(name), &config.join(name)) {
                    log::warn!("cannot copy the CLI's {name} into the home of key {key_id}: {e}");
                }
            }
        }
        let mut env = vec![
            ("HOME".to_string(), home.to_string_lossy().into_owned()),
            ("TMPDIR".to_string(), tmpdir.to_string_lossy().into_owned()),
        ];
        if self.config_dir_var {
            env.push((
                "CLAUDE_CONFIG_DIR".into(),
                config.to_string_lossy().into_owned(),
            ));
        }
        Ok(RunHome { home, tmpdir, env })
    }

    /// Before resuming `session_id` for `key_id`: when its transcript is not in the key's home
    /// but in the operator's config folder (it ran before homes were per key), copies it (and
    /// its folder of side files) into the key's home. Returns true if it copied.
    pub fn adopt(&self, key_id: &str, session_id: &str) -> bool {
        let own = self.config_dir(key_id);
        if !transcripts(&own, session_id).is_empty() {
            return false;
        }
        let Some(old) = &self.operator else {
            return false;
        };
        let mut copied = false;
        for t in transcripts(old, session_id) {
            let Some(slug) = t.parent().and_then(|p| p.file_name()) else {
                continue;
            };
            let dir = own.join("projects").join(slug);
            let copy = || -> std::io::Result<()> {
                std::fs::create_dir_all(&dir)?;
                let side = t.with_extension("");
                if side.is_dir() {
                    copy_dir(&side, &dir.join(session_id))?;
                }
                // The transcript last: its presence is what says "adopted".
                let tmp = dir.join(format!(".{session_id}.jsonl.tmp"));
                std::fs::copy(&t, &tmp)?;
                std::fs::rename(&tmp, dir.join(format!("{session_id}.jsonl")))
            };
            match copy() {
                Ok(()) => {
                    log::info!("session {session_id}: transcript copied into the home of key {key_id}");
                    copied = true;
                }
                Err(e) => log::warn!(
                    "session {session_id}: cannot copy its transcript into the home of key {key_id}: {e}"
                ),
            }
        }
        copied
    }

    /// Every transcript (and its folder of side files) of `session_id`: in `key_id`'s home
    /// and in the operator's config folder.
    pub fn transcripts(&self, key_id: &str, session_id: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let dirs = [Some(self.config_dir(key_id)), self.operator.clone()];
        for dir in dirs.iter().flatten() {
            for t in transcripts(dir, session_id) {
                let side = t.with_extension("");
                if side.is_dir() {
                    out.push(side);
                }
                out.push(t);
            }
        }
        out
    }
}

/// Where the CLI keeps the transcript of `session_id` under its config folder:
/// `<config_dir>/projects/<slug>/<id>.jsonl`, any slug.
pub fn transcripts(config_dir: &Path, session_id: &str) -> Vec<PathBuf> {
    let Ok(dirs) = std::fs::read_dir(config_dir.join("projects")) else {
        return Vec::new();
    };
    dirs.flatten()
        .map(|d| d.path().join(format!("{session_id}.jsonl")))
        .filter(|p| p.is_file())
        .collect()
}

fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Copies `src` over `dest` (mode 0600, atomically) when `src` exists and `dest` is missing
/// or older. A copy the CLI changed since (a refreshed token) is newer and is kept.
fn seed(src: &Path, dest: &Path) -> std::io::Result<()> {
    let Ok(s) = std::fs::metadata(src) else {
        return Ok(());
    };
    if let Ok(d) = std::fs::metadata(dest) {
        if let (Ok(sm), Ok(dm)) = (s.modified(), d.modified()) {
            if sm <= dm {
                return Ok(());
            }
        }
    }
    let tmp = dest.with_file_name(format!(".seed-{}", crate::random::hex(6)));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let result = (|| {
        let mut out = o.open(&tmp)?;
        std::io::copy(&mut std::fs::File::open(src)?, &mut out)?;
        out.sync_all()?;
        std::fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn copy_dir(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for e in std::fs::read_dir(src)?.flatten() {
        let t = e.file_type()?;
        let to = dest.join(e.file_name());
        if t.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else if t.is_file() {
            std::fs::copy(e.path(), to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tmp() -> Tmp {
        let p = std::env::temp_dir().join(format!("cw-homes-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }

    #[test]
    fn homes_are_per_key_and_seeded_from_the_operator() {
        let t = tmp();
        let op = t.0.join("operator");
        std::fs::create_dir_all(op.join(".claude")).unwrap();
        std::fs::write(op.join(".claude/.credentials.json"), "v1").unwrap();
        let env = vec![("HOME".to_string(), op.to_string_lossy().into_owned())];
        let homes = Homes::new(&t.0.join("state"), &env, &|_| None);
        let run = homes.prepare("ci").unwrap();
        assert_eq!(run.home, t.0.join("state/homes/ci"));
        assert!(run.tmpdir.starts_with(&run.home) && run.tmpdir.is_dir());
        let creds = run.home.join(".claude/.credentials.json");
        assert_eq!(std::fs::read_to_string(&creds).unwrap(), "v1");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&creds).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(&run.home).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        assert!(run.env.iter().any(|(k, _)| k == "HOME"));
        assert!(!run.env.iter().any(|(k, _)| k == "CLAUDE_CONFIG_DIR"));
        // The CLI refreshed its copy: it is newer and stays.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&creds, "refreshed").unwrap();
        let tmpdir = run.tmpdir.clone();
        run.clean();
        assert!(!tmpdir.exists());
        homes.prepare("ci").unwrap().clean();
        assert_eq!(std::fs::read_to_string(&creds).unwrap(), "refreshed");
        // The operator logged in again: newer, copied.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(op.join(".claude/.credentials.json"), "v2").unwrap();
        homes.prepare("ci").unwrap().clean();
        assert_eq!(std::fs::read_to_string(&creds).unwrap(), "v2");
        assert!(!t.0.join("state/homes/other").exists());

        // CLAUDE_CONFIG_DIR: the source, and runs get their own.
        let ccd = t.0.join("ccd");
        std::fs::create_dir_all(&ccd).unwrap();
        std::fs::write(ccd.join("settings.json"), "{}").unwrap();
        let homes = Homes::new(&t.0.join("state"), &[], &|k| {
            (k == "CLAUDE_CONFIG_DIR").then(|| ccd.to_string_lossy().into_owned())
        });
        let run = homes.prepare("b").unwrap();
        let own = t.0.join("state/homes/b/.claude");
        assert!(own.join("settings.json").is_file());
        assert!(run.env.contains(&(
            "CLAUDE_CONFIG_DIR".into(),
            own.to_string_lossy().into_owned()
        )));
    }

    #[test]
    fn old_transcripts_are_adopted_once() {
        let t = tmp();
        let op = t.0.join("op");
        let slug = op.join(".claude/projects/-work-x");
        std::fs::create_dir_all(slug.join("s1/subagents")).unwrap();
        std::fs::write(slug.join("s1.jsonl"), "old").unwrap();
        std::fs::write(slug.join("s1/subagents/a.jsonl"), "side").unwrap();
        let env = vec![("HOME".to_string(), op.to_string_lossy().into_owned())];
        let homes = Homes::new(&t.0.join("state"), &env, &|_| None);
        assert!(homes.adopt("ci", "s1"));
        let own = t.0.join("state/homes/ci/.claude/projects/-work-x");
        assert_eq!(
            std::fs::read_to_string(own.join("s1.jsonl")).unwrap(),
            "old"
        );
        assert!(own.join("s1/subagents/a.jsonl").is_file());
        assert!(!homes.adopt("ci", "s1"), "already there");
        assert!(!homes.adopt("ci", "unknown"));
        assert_eq!(
            homes.transcripts("ci", "s1").len(),
            4,
            "both copies, with folders"
        );
    }
}
