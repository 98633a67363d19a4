//! The sandbox's twin for systems other than Linux: no Landlock, no namespaces. Runs are not
//! confined there, and the server says so at start and on `/health`.

use std::ffi::OsString;
use std::path::Path;

use super::{ProbeError, HELPER_FAILED, HELPER_PREFIX};

pub fn landlock_abi() -> u32 {
    0
}

pub fn probe(_helper: &Path, _namespaces: bool) -> Result<(), ProbeError> {
    Err(ProbeError::Namespaces(
        "not available on this operating system".into(),
    ))
}

/// The helper has nothing to enter here (no run gets a plan); it refuses.
pub fn helper_main(_args: Vec<OsString>) -> ! {
    eprintln!("{HELPER_PREFIX}the sandbox is only available on Linux");
    std::process::exit(HELPER_FAILED)
}

pub fn scrub_own_secrets(_names: &[String], _flags: &[&str]) -> usize {
    0
}
