//! Lexical checks on the paths a log names: whether a path stays inside the
//! work root, judged without touching the file system.
//!
//! Both `/` and `\` count as separators and both Unix and Windows absolute
//! forms are recognised, because a log recorded on one platform may be
//! audited on another. That is conservative: a Linux file name holding a
//! backslash may be refused, never wrongly accepted. Symlinks are the
//! policy's concern; this module only sees text.

/// Why a path is not acceptable where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// The path is the empty string.
    Empty,
    /// The path is absolute where only a root-relative path may stand.
    Absolute,
    /// The path climbs above the work root with `..`.
    Escapes,
}

/// Whether `path` is absolute on any platform a log may come from
/// (`/x`, `\x`, `C:\x`, `C:x`, `\\server\share`).
pub fn is_absolute(path: &str) -> bool {
    let bytes = path.as_bytes();
    matches!(bytes.first(), Some(b'/' | b'\\'))
        || (bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':')
}

/// Checks a path that must name something inside the work root: relative,
/// and never above the root at any point as its components are followed.
pub fn check_confined(path: &str) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if is_absolute(path) {
        return Err(PathProblem::Absolute);
    }
    if is_clean(path) {
        return Ok(());
    }
    let mut depth: u64 = 0;
    for component in path.split(['/', '\\']) {
        match component {
            "" | "." => {}
            ".." => depth = depth.checked_sub(1).ok_or(PathProblem::Escapes)?,
            _ => depth += 1,
        }
    }
    Ok(())
}

/// Checks an input path: absolute paths are allowed (the policy decides
/// which), relative ones must stay inside the work root.
pub fn check_input(path: &str) -> Result<(), PathProblem> {
    if !path.is_empty() && is_absolute(path) {
        return Ok(());
    }
    check_confined(path)
}

/// Joins root-relative `base` and a path relative to it, lexically, giving a
/// root-relative path with `.` and `..` resolved and `/` as the separator,
/// or `None` if the result leaves the root. `"."` is the root itself.
pub fn normalize_under(base: &str, path: &str) -> Option<String> {
    // Most paths of a log are already normal under a normal base (or the
    // root): the join is then a copy, without splitting on two separators.
    if is_clean(path) {
        if matches!(base, "" | ".") {
            return Some(path.to_owned());
        }
        if is_clean(base) {
            return Some(format!("{base}/{path}"));
        }
    }
    by_components(base, path)
}

/// [`normalize_under`] without its fast path: every component followed.
fn by_components(base: &str, path: &str) -> Option<String> {
    // Built in place (every command's paths come through here): a
    // component holds no separator, so the last `/` written ends the
    // component before the last one, which `..` drops.
    let mut out = String::with_capacity(base.len() + path.len() + 1);
    for component in base.split(['/', '\\']).chain(path.split(['/', '\\'])) {
        match component {
            "" | "." => {}
            ".." => {
                if out.is_empty() {
                    return None;
                }
                out.truncate(out.rfind('/').unwrap_or(0));
            }
            other => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(other);
            }
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    Some(out)
}

/// Whether `path` is relative, uses only `/`, and has no empty, `.` or
/// `..` component: then it is its own normal form and stays inside.
fn is_clean(path: &str) -> bool {
    !path.is_empty()
        && !is_absolute(path)
        && !path.contains('\\')
        && path
            .as_bytes()
            .split(|&b| b == b'/')
            .all(|c| !matches!(c, b"" | b"." | b".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The fast path gives what following every component gives.
        #[test]
        fn the_fast_path_is_the_normal_form(
            base in "(\\.|[ab]|\\.\\.|/|\\\\|C:){0,6}",
            path in "(\\.|[ab.]{1,2}|\\.\\.|/|\\\\|C:){0,6}",
        ) {
            proptest::prop_assert_eq!(normalize_under(&base, &path), by_components(&base, &path));
            let slow_ok = !path.is_empty() && !is_absolute(&path) && by_components("", &path).is_some();
            proptest::prop_assert_eq!(check_confined(&path).is_ok(), slow_ok, "{}", path);
        }
    }

    #[test]
    fn confined_paths_accept_what_stays_inside() {
        for ok in [
            "a", "./a", "a/b", "a/../b", "a/./b/..", ".", "a//b", "..a", "a..",
        ] {
            assert_eq!(check_confined(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn confined_paths_refuse_what_leaves_or_is_absolute() {
        for (bad, why) in [
            ("", PathProblem::Empty),
            ("/etc/passwd", PathProblem::Absolute),
            ("\\windows", PathProblem::Absolute),
            ("C:\\x", PathProblem::Absolute),
            ("c:x", PathProblem::Absolute),
            ("..", PathProblem::Escapes),
            ("../a", PathProblem::Escapes),
            ("a/../../b", PathProblem::Escapes),
            // Leaving and coming back is still leaving: the tool would
            // have looked outside the root on the way.
            ("../root/a", PathProblem::Escapes),
            ("a\\..\\..\\b", PathProblem::Escapes),
        ] {
            assert_eq!(check_confined(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn inputs_may_be_absolute_but_not_escape() {
        assert_eq!(check_input("/usr/lib/libc.so"), Ok(()));
        assert_eq!(check_input("../x"), Err(PathProblem::Escapes));
        assert_eq!(check_input(""), Err(PathProblem::Empty));
    }

    #[test]
    fn normalize_resolves_dots_and_refuses_escape() {
        assert_eq!(normalize_under(".", "a/./b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalize_under("sub", "../x").as_deref(), Some("x"));
        assert_eq!(normalize_under("sub", "../../x"), None);
        assert_eq!(normalize_under(".", ".").as_deref(), Some("."));
    }

    /// The list-of-components form `normalize_under` had, as a reference.
    fn normalize_by_parts(base: &str, path: &str) -> Option<String> {
        let mut parts: Vec<&str> = Vec::new();
        for component in base.split(['/', '\\']).chain(path.split(['/', '\\'])) {
            match component {
                "" | "." => {}
                ".." => {
                    parts.pop()?;
                }
                other => parts.push(other),
            }
        }
        if parts.is_empty() {
            Some(".".to_owned())
        } else {
            Some(parts.join("/"))
        }
    }

    proptest::proptest! {
        #[test]
        fn normalize_agrees_with_the_list_of_components(
            base in "[a./\\\\é]{0,12}",
            path in "[ab./\\\\é]{0,16}",
        ) {
            proptest::prop_assert_eq!(normalize_under(&base, &path), normalize_by_parts(&base, &path));
        }
    }
}
