//! What a name or path that comes from outside (a tree entry, `source.path` in the agent
//! config) may be: relative, inside the repo, never `.git`. The bottom layer both the agent
//! config and the source check against, so neither imports the other for it.

use std::path::{Component, Path};

/// A single tree-entry name. Err = why it is refused.
pub fn check_name(name: &[u8]) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if name == b"." || name == b".." {
        return Err(format!("entry named {:?}", String::from_utf8_lossy(name)));
    }
    if name.eq_ignore_ascii_case(b".git") {
        return Err("entry named .git".into());
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(format!(
            "entry name {:?} contains '/' or NUL",
            String::from_utf8_lossy(name)
        ));
    }
    Ok(())
}

/// A relative path given in configuration (`source.path`): no `..`, not absolute.
pub fn check_rel_path(p: &str) -> Result<(), String> {
    let path = Path::new(p);
    for c in path.components() {
        match c {
            Component::Normal(n) => check_name(n.as_encoded_bytes())?,
            Component::CurDir => {}
            _ => return Err(format!("{p:?} must be a relative path inside the repo")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name(b"compose.yaml").is_ok());
        assert!(check_name(b".gitignore").is_ok());
        for bad in [&b".."[..], b".", b".git", b".GIT", b"a/b", b""] {
            assert!(
                check_name(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn config_paths() {
        assert!(check_rel_path("infra/lab").is_ok());
        assert!(check_rel_path(".").is_ok());
        assert!(check_rel_path("../x").is_err());
        assert!(check_rel_path("/abs").is_err());
        assert!(check_rel_path("a/.git").is_err());
    }
}
