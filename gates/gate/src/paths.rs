//! Safe relative paths and glob patterns, as they arrive in staging requests.

use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{GateError, Result};

/// Longest path accepted in a request.
pub const MAX_PATH_LEN: usize = 4096;

/// Check that `value` (from request field `field`) is a relative path that
/// stays inside the directory it is joined to: not empty, not absolute, no
/// `..`, no NUL. `.` components are dropped. Returns the normalised path.
pub fn safe_relative_path(field: &str, value: &str) -> Result<PathBuf> {
    let hint = "use a relative path with `/` separators and no `..`, e.g. \"data/input.csv\"";
    if value.is_empty() {
        return Err(GateError::invalid(
            field,
            format!("must not be empty; {hint}"),
        ));
    }
    if value.len() > MAX_PATH_LEN {
        return Err(GateError::invalid(
            field,
            format!("is longer than {MAX_PATH_LEN} bytes"),
        ));
    }
    if value.contains('\0') {
        return Err(GateError::invalid(field, "must not contain NUL"));
    }
    let mut out = PathBuf::new();
    for component in Path::new(value).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(GateError::invalid(
                    field,
                    format!("`{value}` contains `..`; {hint}"),
                ));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(GateError::invalid(
                    field,
                    format!("`{value}` is absolute; {hint}"),
                ));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(GateError::invalid(
            field,
            format!("`{value}` names no file; {hint}"),
        ));
    }
    Ok(out)
}

/// Build a matcher from glob patterns relative to a working directory
/// (`*` does not cross `/`; `**` does). At least one pattern is required;
/// absolute patterns and `..` are refused.
pub fn glob_set(field: &str, patterns: &[String]) -> Result<GlobSet> {
    if patterns.is_empty() {
        return Err(GateError::invalid(
            field,
            "give at least one pattern, e.g. \"out/**\" or \"*.csv\"",
        ));
    }
    let mut builder = GlobSetBuilder::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let field = format!("{field}[{i}]");
        if pattern.is_empty() || pattern.starts_with('/') {
            return Err(GateError::invalid(
                field,
                format!("`{pattern}` must be a non-empty relative pattern, e.g. \"out/*.csv\""),
            ));
        }
        if pattern.split('/').any(|part| part == "..") {
            return Err(GateError::invalid(
                field,
                format!("`{pattern}` contains `..`; patterns match inside the working directory"),
            ));
        }
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| GateError::invalid(&field, format!("`{pattern}` is not a glob: {e}")))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| GateError::invalid(field, format!("invalid patterns: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_good_paths() {
        assert_eq!(
            safe_relative_path("p", "./a/b.txt").unwrap(),
            PathBuf::from("a/b.txt")
        );
        assert_eq!(
            safe_relative_path("p", "a//b").unwrap(),
            PathBuf::from("a/b")
        );
    }

    #[test]
    fn refuses_escapes() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a/..", ".", "a\0b"] {
            let err = safe_relative_path("chunk.path", bad).unwrap_err();
            assert!(err.to_string().starts_with("chunk.path"), "{bad}: {err}");
        }
    }

    #[test]
    fn globs_match_like_a_shell() {
        let set = glob_set("globs", &["*.txt".into(), "out/**".into()]).unwrap();
        assert!(set.is_match("a.txt"));
        assert!(!set.is_match("d/a.txt"));
        assert!(set.is_match("out/x/y.bin"));
    }

    #[test]
    fn refuses_bad_globs_naming_the_index() {
        assert!(glob_set("globs", &[]).is_err());
        let err = glob_set("globs", &["ok".into(), "a[".into()]).unwrap_err();
        assert!(err.to_string().starts_with("globs[1]"), "{err}");
        assert!(glob_set("globs", &["/etc/*".into()]).is_err());
        assert!(glob_set("globs", &["../*".into()]).is_err());
    }
}
