//! The one path a request is judged and forwarded by: dot segments removed, encodings resolved or refused.
//!
//! Access rules match paths, and the upstream resolves paths; if the two read a request-target
//! differently (`/public/../admin`, `/public/%2e%2e/admin`, `//admin`, `/admin;x/`), a client
//! reaches a path no rule judged. So every request-target is turned into one canonical form
//! before anything looks at it, the rules judge that form, and exactly that form goes upstream.
//!
//! The canonical form (RFC 3986 section 6.2.2, with the choices RFC 3986 leaves open made strict):
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, so `%2e` is `.`;
//!   other escapes keep their encoding with upper-case hex (`%c3%a9` becomes `%C3%A9`);
//! - raw bytes outside printable ASCII (UTF-8, space) are percent-encoded;
//! - empty segments are merged (`//a///b` is `/a/b`), as nginx does by default;
//! - dot segments are removed (section 5.2.4): `/a/./b/../c` is `/a/c`, and `..` never climbs above `/`;
//! - the query is kept byte for byte.
//!
//! Refused (400), because servers disagree on what they mean and no legitimate client needs them:
//! a malformed escape (`%`, `%zz`), an encoded `/` (`%2F`) or `\` (`%5C`), a literal `\`
//! (a separator on Windows servers), a control character raw or encoded (`%00`), a `;` in the
//! path (Tomcat and Spring drop `;...` from each segment, nginx keeps it: `/admin;x/` is `/admin/`
//! to one and not to the other), and a double-encoded dot, slash, backslash or control (`%252e`),
//! which an upstream that decodes twice would read as the real thing.

use std::fmt;

/// A request-target in canonical form: what the rules judge and what the upstream receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalTarget {
    /// The path, then `?` and the query when there is one.
    text: String,
    /// Where the path ends in `text` (at the `?`, or at the end).
    path_end: usize,
    /// What canonicalisation changed, for `moat verify` and the logs.
    changes: Changes,
}

impl CanonicalTarget {
    /// The canonical path, without the query.
    pub fn path(&self) -> &str {
        &self.text[..self.path_end]
    }

    /// The query, without its `?`, when there is one.
    pub fn query(&self) -> Option<&str> {
        self.text.get(self.path_end + 1..)
    }

    /// The path and query as they go upstream.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What was changed to reach the canonical form (empty when the target already was canonical).
    pub fn changes(&self) -> &Changes {
        &self.changes
    }
}

/// What canonicalisation did to a request-target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Escaped unreserved characters were decoded (`%2e` to `.`, `%41` to `A`).
    pub decoded_unreserved: bool,
    /// Escapes were rewritten with upper-case hex digits.
    pub uppercased_escapes: bool,
    /// Bytes outside printable ASCII were percent-encoded.
    pub encoded_bytes: bool,
    /// Runs of `/` were merged into one.
    pub merged_slashes: bool,
    /// `.` and `..` segments were removed.
    pub removed_dot_segments: bool,
}

impl Changes {
    /// True when the target was already canonical.
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }

    /// One phrase per change, e.g. `["dot segments removed"]`.
    pub fn describe(&self) -> Vec<&'static str> {
        let mut phrases = Vec::new();
        for (done, phrase) in [
            (
                self.decoded_unreserved,
                "escaped unreserved characters decoded",
            ),
            (self.uppercased_escapes, "escapes written in upper case"),
            (self.encoded_bytes, "bytes outside ASCII percent-encoded"),
            (self.merged_slashes, "repeated slashes merged"),
            (self.removed_dot_segments, "dot segments removed"),
        ] {
            if done {
                phrases.push(phrase);
            }
        }
        phrases
    }
}

/// Why a request-target has no canonical form; the request is answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathRejection {
    /// Neither `/...` (origin form) nor `*` (asterisk form).
    #[error("the request path does not start with '/'")]
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    #[error(
        "the request path has a malformed percent-encoding (a % not followed by two hex digits)"
    )]
    MalformedEscape,
    /// `%2F`: a slash inside a segment, which many servers decode into a separator.
    #[error("the request path has an encoded slash (%2F)")]
    EncodedSlash,
    /// `%5C`: an encoded backslash.
    #[error("the request path has an encoded backslash (%5C)")]
    EncodedBackslash,
    /// `\`, which Windows servers read as `/`.
    #[error("the request path has a backslash")]
    Backslash,
    /// A control character (NUL and the like), raw or encoded.
    #[error("the request path has a control character")]
    ControlCharacter,
    /// A `;`, which some servers strip with what follows it from each segment.
    #[error("the request path has a ';' (path parameters are not accepted)")]
    PathParameter,
    /// `%25` followed by the escape of a dot, slash, backslash or control character.
    #[error("the request path has a double-encoded dot, slash, backslash or control character")]
    DoubleEncoded,
}

impl PathRejection {
    /// A stable snake_case name for logs and JSON pages.
    pub fn as_str(self) -> &'static str {
        match self {
            PathRejection::NotOriginForm => "not_origin_form",
            PathRejection::MalformedEscape => "malformed_escape",
            PathRejection::EncodedSlash => "encoded_slash",
            PathRejection::EncodedBackslash => "encoded_backslash",
            PathRejection::Backslash => "backslash",
            PathRejection::ControlCharacter => "control_character",
            PathRejection::PathParameter => "path_parameter",
            PathRejection::DoubleEncoded => "double_encoded",
        }
    }
}

impl fmt::Display for CanonicalTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Canonicalises a request-target's path and query as the client sent it (`/a/../b?x=1`; `*`
/// for `OPTIONS *`). See the module documentation for the rules.
pub fn canonical_target(target: &str) -> Result<CanonicalTarget, PathRejection> {
    if target == "*" {
        return Ok(CanonicalTarget {
            text: target.to_owned(),
            path_end: 1,
            changes: Changes::default(),
        });
    }
    let (raw_path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    if is_plainly_canonical(raw_path) {
        // Nearly every request: nothing to decode, merge or remove.
        return Ok(CanonicalTarget {
            text: target.to_owned(),
            path_end: raw_path.len(),
            changes: Changes::default(),
        });
    }
    let mut changes = Changes::default();
    let decoded = decode(raw_path, &mut changes)?;
    let decoded = if decoded.is_empty() {
        "/".to_owned()
    } else {
        decoded
    };
    let Some(rest) = decoded.strip_prefix('/') else {
        return Err(PathRejection::NotOriginForm);
    };
    let path = remove_dot_segments(rest, &mut changes);
    let mut text = path;
    let path_end = text.len();
    if let Some(query) = query {
        text.push('?');
        text.push_str(query);
    }
    Ok(CanonicalTarget {
        text,
        path_end,
        changes,
    })
}

/// True when `path` is canonical on sight: it starts with `/` and has no escape, no byte
/// outside printable ASCII, no `\\` or `;`, no empty segment and no dot segment.
fn is_plainly_canonical(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && bytes
            .iter()
            .all(|&b| (0x21..=0x7e).contains(&b) && !matches!(b, b'%' | b'\\' | b';'))
        && !path.contains("//")
        && !path.contains("/./")
        && !path.contains("/../")
        && !path.ends_with("/.")
        && !path.ends_with("/..")
}

/// The path with unreserved escapes decoded, other escapes in upper case, and bytes outside
/// printable ASCII encoded; the refusals of the module documentation.
fn decode(path: &str, changes: &mut Changes) -> Result<String, PathRejection> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        match byte {
            b'%' => {
                let value = escaped_byte(bytes, index).ok_or(PathRejection::MalformedEscape)?;
                match value {
                    _ if is_unreserved(value) => {
                        out.push(char::from(value));
                        changes.decoded_unreserved = true;
                    }
                    b'/' => return Err(PathRejection::EncodedSlash),
                    b'\\' => return Err(PathRejection::EncodedBackslash),
                    _ if is_control(value) => return Err(PathRejection::ControlCharacter),
                    _ => push_escape(&mut out, value),
                }
                if bytes[index + 1..index + 3]
                    .iter()
                    .any(u8::is_ascii_lowercase)
                    && !is_unreserved(value)
                {
                    changes.uppercased_escapes = true;
                }
                index += 3;
                continue;
            }
            b'\\' => return Err(PathRejection::Backslash),
            b';' => return Err(PathRejection::PathParameter),
            _ if is_control(byte) => return Err(PathRejection::ControlCharacter),
            0x21..=0x7e => out.push(char::from(byte)),
            _ => {
                push_escape(&mut out, byte);
                changes.encoded_bytes = true;
            }
        }
        index += 1;
    }
    if is_double_encoded(&out) {
        return Err(PathRejection::DoubleEncoded);
    }
    Ok(out)
}

/// True when `%25` is followed by two hex digits that a second decoding would turn into a dot,
/// slash, backslash or control character (`%252e`, `%255C`, `%2500`).
fn is_double_encoded(decoded: &str) -> bool {
    decoded.match_indices("%25").any(|(at, _)| {
        let hex = |offset: usize| {
            decoded
                .as_bytes()
                .get(at + offset)
                .and_then(|&b| char::from(b).to_digit(16))
        };
        match (hex(3), hex(4)) {
            (Some(high), Some(low)) => {
                let byte = u8::try_from(high * 16 + low).unwrap_or(0);
                matches!(byte, b'.' | b'/' | b'\\') || is_control(byte)
            }
            _ => false,
        }
    })
}

/// The byte a `%HH` escape at `at` stands for, when `at` starts one.
fn escaped_byte(bytes: &[u8], at: usize) -> Option<u8> {
    if bytes.get(at) != Some(&b'%') {
        return None;
    }
    let high = char::from(*bytes.get(at + 1)?).to_digit(16)?;
    let low = char::from(*bytes.get(at + 2)?).to_digit(16)?;
    u8::try_from(high * 16 + low).ok()
}

/// RFC 3986 section 2.3.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn is_control(byte: u8) -> bool {
    byte < 0x20 || byte == 0x7f
}

fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

/// `/` followed by the segments of `rest` with empty, `.` and `..` segments resolved
/// (RFC 3986 section 5.2.4, after merging repeated slashes). A path ending in a removed segment
/// or a slash keeps its trailing slash.
fn remove_dot_segments(rest: &str, changes: &mut Changes) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        trailing_slash = false;
        match segment {
            "" => {
                if last {
                    trailing_slash = true;
                } else {
                    changes.merged_slashes = true;
                }
            }
            "." => {
                changes.removed_dot_segments = true;
                trailing_slash = last;
            }
            ".." => {
                changes.removed_dot_segments = true;
                kept.pop();
                trailing_slash = last;
            }
            _ => kept.push(segment),
        }
    }
    let mut path = String::with_capacity(rest.len() + 1);
    for segment in &kept {
        path.push('/');
        path.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        path.push('/');
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_has_one_canonical_path_or_is_refused() {
        use PathRejection::*;
        let table: &[(&str, Result<&str, PathRejection>)] = &[
            ("/", Ok("/")),
            ("", Ok("/")),
            ("/public/x", Ok("/public/x")),
            ("/public/../admin/x", Ok("/admin/x")),
            ("/public/%2e%2e/admin/x", Ok("/admin/x")),
            ("/public/%2E%2E/admin/x", Ok("/admin/x")),
            ("/public/.%2e/admin/x", Ok("/admin/x")),
            ("/public/%2e./admin/x", Ok("/admin/x")),
            ("/public/x/../../admin/x", Ok("/admin/x")),
            ("/../../admin", Ok("/admin")),
            ("/public/./x", Ok("/public/x")),
            ("/public/..", Ok("/")),
            ("/admin/x/.", Ok("/admin/x/")),
            ("/admin/x/..", Ok("/admin/")),
            ("//admin/x", Ok("/admin/x")),
            ("/public//..//admin", Ok("/admin")),
            ("/admin/", Ok("/admin/")),
            ("/%61dmin/x", Ok("/admin/x")),
            ("/a%7eb_c-d.e", Ok("/a~b_c-d.e")),
            ("/caf%c3%a9", Ok("/caf%C3%A9")),
            ("/café", Ok("/caf%C3%A9")),
            ("/a%20b", Ok("/a%20b")),
            ("/100%25", Ok("/100%25")),
            ("/a?x=../../b&y=%2e", Ok("/a?x=../../b&y=%2e")),
            ("/public/..?q", Ok("/?q")),
            ("*", Ok("*")),
            ("/public/..;/admin", Err(PathParameter)),
            ("/admin;jsessionid=1/x", Err(PathParameter)),
            ("/public/%2e%2e%2fadmin", Err(EncodedSlash)),
            ("/public%2F..%2Fadmin", Err(EncodedSlash)),
            ("/public/..%5cadmin", Err(EncodedBackslash)),
            ("/public\\..\\admin", Err(Backslash)),
            ("/a%00b", Err(ControlCharacter)),
            ("/a%0d%0ab", Err(ControlCharacter)),
            ("/a\u{1}", Err(ControlCharacter)),
            ("/public/%252e%252e/admin", Err(DoubleEncoded)),
            ("/public/%252f", Err(DoubleEncoded)),
            ("/public/%25%32%65", Err(DoubleEncoded)),
            ("/100%25/%2541", Ok("/100%25/%2541")),
            ("/a%", Err(MalformedEscape)),
            ("/a%2", Err(MalformedEscape)),
            ("/a%zz", Err(MalformedEscape)),
            ("admin", Err(NotOriginForm)),
        ];
        for (target, expected) in table {
            let got = canonical_target(target).map(|c| c.as_str().to_owned());
            assert_eq!(
                got.as_deref().map_err(|e| *e),
                expected.as_ref().map(|s| *s).map_err(|e| *e),
                "{target:?}"
            );
        }
    }

    #[test]
    fn the_plain_path_shortcut_agrees_with_the_full_canonicalisation() {
        for path in [
            "/",
            "/a/b",
            "/a.b/.c/..d/c..",
            "/a/b/",
            "/~x-y_z",
            "/a{b}\"q\"",
        ] {
            assert!(is_plainly_canonical(path), "{path}");
            let mut changes = Changes::default();
            let full = remove_dot_segments(&decode(path, &mut changes).unwrap()[1..], &mut changes);
            assert_eq!(full, path);
            assert!(changes.is_empty(), "{path}");
        }
        for path in [
            "/a//b", "/a/./b", "/a/..", "/a%41", "/a;b", "/a\\b", "/é", "a",
        ] {
            assert!(!is_plainly_canonical(path), "{path}");
        }
    }

    #[test]
    fn canonical_form_is_a_fixed_point() {
        for target in [
            "/public/../admin/x",
            "/caf%c3%a9//x/./y/",
            "/100%25/%2541",
            "/a%20b?c=%2e",
            "/x/..",
        ] {
            let once = canonical_target(target).unwrap();
            let twice = canonical_target(once.as_str()).unwrap();
            assert_eq!(once.as_str(), twice.as_str(), "{target:?}");
            assert!(
                twice.changes().is_empty(),
                "{target:?}: {:?}",
                twice.changes()
            );
        }
    }

    #[test]
    fn path_and_query_are_told_apart_and_changes_described() {
        let target = canonical_target("/public/%2e%2e/admin?a=1").unwrap();
        assert_eq!(target.path(), "/admin");
        assert_eq!(target.query(), Some("a=1"));
        assert_eq!(
            target.changes().describe(),
            vec![
                "escaped unreserved characters decoded",
                "dot segments removed"
            ]
        );
        let plain = canonical_target("/x").unwrap();
        assert_eq!(plain.query(), None);
        assert!(plain.changes().is_empty());
    }
}
