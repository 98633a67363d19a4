//! The sandbox's twin for systems other than Linux: no Landlock, no namespaces. Runs are not
//! confined there, and the server says so at start and on `/health`.

use std::process::Command;

use super::Plan;

pub fn landlock_abi() -> u32 {
    0
}

pub fn probe_namespaces() -> Result<(), String> {
    Err("not available on this operating system".into())
}

pub struct Prepared;

impl Prepared {
    pub fn install(&self, _cmd: &mut Command) {}
}

pub fn prepare(_plan: &Plan) -> std::io::Result<Prepared> {
    Ok(Prepared)
}

pub fn scrub_own_secrets(_names: &[String], _flags: &[&str]) -> usize {
    0
}
