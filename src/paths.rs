//! Confining paths that come from requests: a requested directory must resolve, after
//! symlinks, inside one of the allowed roots. Nothing else in the crate builds a path from
//! request input.

use std::path::{Component, Path, PathBuf};

use crate::error::ApiError;

/// Resolves `requested` (relative paths are taken under `roots[0]`) to a directory inside
/// one of `roots`, creating it (and missing parents) only after its existing part has been
/// checked. `..` that climbs out, a symlink that points out, or a non-directory: 400.
pub fn confine_dir(roots: &[PathBuf], requested: &str, field: &str) -> Result<PathBuf, ApiError> {
    let outside = || {
        ApiError::bad_request(format!(
            "`{field}` must be a directory inside the server's workdir (or its allow-list)"
        ))
    };
    if requested.contains('\0') {
        return Err(outside());
    }
    let base = roots.first().ok_or_else(outside)?;
    let joined = if Path::new(requested).is_absolute() {
        PathBuf::from(requested)
    } else {
        base.join(requested)
    };
    // Lexical normalisation: `..` may not climb above the filesystem root.
    let mut norm = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                if !norm.pop() {
                    return Err(outside());
                }
            }
            Component::CurDir => {}
            other => norm.push(other.as_os_str()),
        }
    }
    let canon_roots: Vec<PathBuf> = roots.iter().filter_map(|r| r.canonicalize().ok()).collect();
    // The longest part that exists, resolved through its symlinks.
    let mut existing = norm.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        let Some(name) = existing.file_name().map(|n| n.to_os_string()) else {
            return Err(outside());
        };
        rest.push(name);
        if !existing.pop() {
            return Err(outside());
        }
    }
    let resolved = existing.canonicalize().map_err(|_| outside())?;
    if !canon_roots.iter().any(|r| resolved.starts_with(r)) {
        return Err(outside());
    }
    let mut full = resolved;
    for name in rest.into_iter().rev() {
        full.push(name);
    }
    std::fs::create_dir_all(&full)
        .map_err(|e| ApiError::bad_request(format!("`{field}` could not be created: {e}")))?;
    let full = full.canonicalize().map_err(|_| outside())?;
    if !full.is_dir() || !canon_roots.iter().any(|r| full.starts_with(r)) {
        return Err(outside());
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confines() {
        let root = std::env::temp_dir().join(format!("cw-paths-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(root.join("a")).unwrap();
        let roots = vec![root.clone()];
        let canon = root.canonicalize().unwrap();
        assert_eq!(
            confine_dir(&roots, "a", "workdir").unwrap(),
            canon.join("a")
        );
        assert_eq!(
            confine_dir(&roots, "new/deep", "workdir").unwrap(),
            canon.join("new/deep")
        );
        let abs = canon.join("a").to_string_lossy().into_owned();
        assert!(confine_dir(&roots, &abs, "workdir").is_ok());
        assert!(confine_dir(&roots, "../escape", "workdir").is_err());
        assert!(confine_dir(&roots, "/etc", "workdir").is_err());
        assert!(confine_dir(&roots, "a/../../x", "workdir").is_err());
        #[cfg(unix)]
        {
            let outside = std::env::temp_dir().join(format!("cw-out-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&outside).unwrap();
            std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
            assert!(confine_dir(&roots, "link", "workdir").is_err());
            assert!(confine_dir(&roots, "link/sub", "workdir").is_err());
            assert!(
                !outside.join("sub").exists(),
                "nothing is created outside the root"
            );
            let _ = std::fs::remove_dir_all(&outside);
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
