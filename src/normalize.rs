//! Request path normalisation, done once before routing: the normalised path is both what
//! routes match against and what is forwarded, so the two can never disagree.

use std::borrow::Cow;

/// Why a request path was refused (the proxy answers 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path does not start with '/'")]
    NotOriginForm,
    /// `%2F` would mean one segment here and two at a backend that decodes it.
    #[error("path contains an encoded '/' (%2F)")]
    EncodedSlash,
    /// `%5C` is a separator on some backends (Windows, some frameworks).
    #[error("path contains an encoded '\\' (%5C)")]
    EncodedBackslash,
    #[error("path contains an encoded NUL (%00)")]
    EncodedNul,
    #[error("path contains a truncated or non-hex percent-escape")]
    BadEscape,
    #[error("path contains a raw '\\'")]
    Backslash,
    #[error("path contains a control character")]
    ControlChar,
    /// `..;x` is a dot segment to Tomcat/Jetty-style backends (path parameters are cut
    /// first) but a name here: `/public/..;/admin` would escape a `/public/` route.
    #[error("path contains a dot segment with parameters ('..;' or '.;')")]
    DotSegmentParameter,
}

/// A segment that is "." or ".." once a `;parameters` suffix is cut off.
fn is_dot_with_parameters(seg: &str) -> bool {
    matches!(seg.split_once(';'), Some(("." | "..", _)))
}

/// Normalises an origin-form path (no query): decodes escapes of unreserved characters,
/// upper-cases the hex of all other escapes, removes dot segments (RFC 3986 5.2.4, `..`
/// stops at the root) and merges runs of '/'. A trailing slash is kept.
///
/// Returns `Cow::Borrowed` without allocating when the path is already normal.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    if is_normal(path)? {
        return Ok(Cow::Borrowed(path));
    }
    rebuild(path).map(Cow::Owned)
}

/// One escape, classified. `byte` is the decoded value.
enum Escape {
    Unreserved(u8),
    Keep { byte: u8, upper: bool },
}

/// Checks the path without allocating. `Ok(false)` means it must be rebuilt; an error found
/// before that point is returned, later ones are left for `rebuild` to report.
fn is_normal(path: &str) -> Result<bool, PathError> {
    let mut segments = path[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if (seg.is_empty() && !last) || seg == "." || seg == ".." {
            return Ok(false);
        }
        if is_dot_with_parameters(seg) {
            return Err(PathError::DotSegmentParameter);
        }
        let bytes = seg.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => match escape_at(bytes, i)? {
                    Escape::Unreserved(_) | Escape::Keep { upper: false, .. } => return Ok(false),
                    Escape::Keep { upper: true, .. } => i += 3,
                },
                b => {
                    check_raw(b)?;
                    i += 1;
                }
            }
        }
    }
    Ok(true)
}

fn rebuild(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    // Start offsets in `out` of the pushed segments (each begins with its '/'), so `..` can pop.
    let mut starts: Vec<usize> = Vec::new();
    let mut seg_buf = String::new();
    // Whether the output must end in '/': the last input segment was empty, "." or "..".
    let mut trailing = false;
    for seg in path[1..].split('/') {
        seg_buf.clear();
        decode_segment(seg, &mut seg_buf)?;
        if is_dot_with_parameters(&seg_buf) {
            return Err(PathError::DotSegmentParameter);
        }
        match seg_buf.as_str() {
            "" | "." => trailing = true,
            ".." => {
                if let Some(start) = starts.pop() {
                    out.truncate(start);
                }
                trailing = true;
            }
            _ => {
                starts.push(out.len());
                out.push('/');
                out.push_str(&seg_buf);
                trailing = false;
            }
        }
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(out)
}

fn decode_segment(seg: &str, out: &mut String) -> Result<(), PathError> {
    let bytes = seg.as_bytes();
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            check_raw(bytes[i])?;
            i += 1;
            continue;
        }
        out.push_str(&seg[copied..i]);
        match escape_at(bytes, i)? {
            Escape::Unreserved(b) => out.push(char::from(b)),
            Escape::Keep { byte, .. } => {
                out.push('%');
                out.push(char::from(HEX_UPPER[usize::from(byte >> 4)]));
                out.push(char::from(HEX_UPPER[usize::from(byte & 0x0f)]));
            }
        }
        i += 3;
        copied = i;
    }
    out.push_str(&seg[copied..]);
    Ok(())
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Reads the escape starting at `bytes[i] == b'%'`.
fn escape_at(bytes: &[u8], i: usize) -> Result<Escape, PathError> {
    let (Some(&hi), Some(&lo)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
        return Err(PathError::BadEscape);
    };
    let (Some(h), Some(l)) = (hex_value(hi), hex_value(lo)) else {
        return Err(PathError::BadEscape);
    };
    let byte = (h << 4) | l;
    match byte {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::EncodedBackslash),
        0 => Err(PathError::EncodedNul),
        b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
            Ok(Escape::Unreserved(b))
        }
        _ => Ok(Escape::Keep {
            byte,
            upper: !hi.is_ascii_lowercase() && !lo.is_ascii_lowercase(),
        }),
    }
}

/// The value of one hex digit.
pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn check_raw(b: u8) -> Result<(), PathError> {
    match b {
        b'\\' => Err(PathError::Backslash),
        b if b.is_ascii_control() => Err(PathError::ControlChar),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize_path(p).map(Cow::into_owned)
    }

    #[test]
    fn examples_from_the_spec() {
        assert_eq!(norm("/a/./b/../c").unwrap(), "/a/c");
        assert_eq!(norm("//a///b").unwrap(), "/a/b");
        assert_eq!(norm("/%7Euser/%41").unwrap(), "/~user/A");
        assert_eq!(norm("/a/%2e%2E/b").unwrap(), "/b");
        assert_eq!(norm("/a%2fb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/caf%c3%a9").unwrap(), "/caf%C3%A9");
    }

    #[test]
    fn already_normal_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/caf%C3%A9",
            "/a.b/..c/.d",
            "/%20x",
            "/a;b=c/d,e",
        ] {
            let out = normalize_path(p).unwrap();
            assert!(matches!(out, Cow::Borrowed(_)), "{p} should be borrowed");
            assert_eq!(out, p);
        }
    }

    #[test]
    fn rewritten_paths_are_owned() {
        for p in ["//", "/a/.", "/%41", "/%c3%a9", "/a//b"] {
            assert!(matches!(normalize_path(p).unwrap(), Cow::Owned(_)), "{p}");
        }
    }

    #[test]
    fn dot_segments_clamp_at_root_and_keep_trailing_slash() {
        assert_eq!(norm("/..").unwrap(), "/");
        assert_eq!(norm("/../../a").unwrap(), "/a");
        assert_eq!(norm("/a/..").unwrap(), "/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/a/b/.").unwrap(), "/a/b/");
        assert_eq!(norm("/a/b/").unwrap(), "/a/b/");
        assert_eq!(norm("/a/b//").unwrap(), "/a/b/");
        assert_eq!(norm("/.").unwrap(), "/");
        assert_eq!(norm("/./a/./").unwrap(), "/a/");
        assert_eq!(norm("/a/.%2e/b").unwrap(), "/b");
        assert_eq!(norm("/a/%2E/b").unwrap(), "/a/b");
    }

    #[test]
    fn dots_inside_names_are_plain_characters() {
        assert_eq!(norm("/a/.../b").unwrap(), "/a/.../b");
        assert_eq!(norm("/a/..b/c.").unwrap(), "/a/..b/c.");
    }

    #[test]
    fn escapes_of_reserved_characters_are_kept_upper_cased() {
        assert_eq!(norm("/a%3fb%3Dc%25").unwrap(), "/a%3Fb%3Dc%25");
        assert_eq!(norm("/%20").unwrap(), "/%20");
        // %25 must stay encoded, so "%2541" is not decoded twice into "A".
        assert_eq!(norm("/%2541").unwrap(), "/%2541");
    }

    #[test]
    fn ambiguous_or_malformed_input_is_rejected() {
        assert_eq!(norm(""), Err(PathError::NotOriginForm));
        assert_eq!(norm("a/b"), Err(PathError::NotOriginForm));
        assert_eq!(norm("*"), Err(PathError::NotOriginForm));
        assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a%5cb"), Err(PathError::EncodedBackslash));
        assert_eq!(norm("/a%00"), Err(PathError::EncodedNul));
        assert_eq!(norm("/a%"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%4"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a\\b"), Err(PathError::Backslash));
        assert_eq!(norm("/a\tb"), Err(PathError::ControlChar));
        for dot in [
            "/public/..;/admin",
            "/a/.;x/b",
            "/a/%2e%2e;/b",
            "//a/..;jsessionid=1",
        ] {
            assert_eq!(norm(dot), Err(PathError::DotSegmentParameter), "{dot}");
        }
        assert_eq!(norm("/a/..x;/b").unwrap(), "/a/..x;/b");
        assert_eq!(norm("/a/b;v=1").unwrap(), "/a/b;v=1");
    }

    #[test]
    fn errors_are_found_after_a_rewrite_point_too() {
        // The fast check stops at "//"; the rebuild must still see the bad escape.
        assert_eq!(norm("//a/%2f"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/./a%G1"), Err(PathError::BadEscape));
        // ... and in segments that a later ".." removes.
        assert_eq!(norm("/a%5C/../b"), Err(PathError::EncodedBackslash));
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e".to_owned()),
            Just("%2E".to_owned()),
            Just("%41".to_owned()),
            Just("%7e".to_owned()),
            Just("%c3".to_owned()),
            Just("%A9".to_owned()),
            Just("%25".to_owned()),
            "[a-z~._-]{1,3}",
        ];
        prop::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
    }

    proptest! {
        #![proptest_config(crate::proptest_config())]
        #[test]
        fn output_is_normal_and_idempotent(path in path_strategy()) {
            let once = normalize_path(&path).unwrap().into_owned();
            prop_assert!(once.starts_with('/'));
            for bad in ["//", "/./", "/../"] {
                prop_assert!(!once.contains(bad), "{once:?} contains {bad:?}");
            }
            prop_assert!(!once.ends_with("/.") && !once.ends_with("/.."), "{once:?}");
            let twice = normalize_path(&once).unwrap();
            prop_assert!(matches!(twice, Cow::Borrowed(_)), "{once:?} not borrowed");
            prop_assert_eq!(twice.as_ref(), once.as_str());
        }

        #[test]
        fn arbitrary_input_never_panics_and_results_are_fixed_points(path in "/[ -~]{0,24}") {
            if let Ok(once) = normalize_path(&path) {
                let once = once.into_owned();
                let twice = normalize_path(&once).unwrap();
                prop_assert_eq!(twice.as_ref(), once.as_str());
            }
        }
    }
}
