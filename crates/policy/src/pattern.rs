//! The glob patterns rules match hosts, paths and certificate names with.

use wildmatch::WildMatch;

/// A `*` / `?` glob over text, e.g. `ops-*`; `*` also matches `.` and `/`.
#[derive(Debug, Clone)]
pub struct TextPattern {
    text: String,
    matcher: WildMatch,
    case_insensitive: bool,
}

impl TextPattern {
    /// A pattern that compares exactly (apart from its wildcards).
    pub fn new(text: &str) -> TextPattern {
        TextPattern {
            text: text.to_owned(),
            matcher: WildMatch::new(text),
            case_insensitive: false,
        }
    }

    /// A pattern for names that compare without case (DNS names, email addresses).
    pub fn case_insensitive(text: &str) -> TextPattern {
        let lower = text.to_ascii_lowercase();
        TextPattern {
            matcher: WildMatch::new(&lower),
            text: text.to_owned(),
            case_insensitive: true,
        }
    }

    /// True when `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        if self.case_insensitive {
            self.matcher.matches(&value.to_ascii_lowercase())
        } else {
            self.matcher.matches(value)
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A rule's host: exact (`app.example.com`) or a glob (`*.example.com`), without case.
#[derive(Debug, Clone)]
pub struct HostPattern(TextPattern);

impl HostPattern {
    /// The pattern for `text`; a trailing dot (fully qualified form) is ignored.
    pub fn new(text: &str) -> HostPattern {
        HostPattern(TextPattern::case_insensitive(text.trim_end_matches('.')))
    }

    /// True when the request's host (its port and any trailing dot removed) matches.
    pub fn matches(&self, host: &str) -> bool {
        self.0
            .matches(host_without_port(host).trim_end_matches('.'))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Why no host can ever match, when that is so.
    pub fn never_matches(&self) -> Option<&'static str> {
        let text = self.0.as_str();
        if text.is_empty() {
            Some("it is empty")
        } else if text.contains(':') {
            Some("hosts are compared without their port; remove \":PORT\"")
        } else if text.contains('/') {
            Some("a host has no '/'; put paths in `paths`")
        } else {
            None
        }
    }
}

/// A rule's path: exact (`/healthz`) or a glob (`/admin/*`). A pattern ending in `/*` also
/// matches the bare prefix (`/admin`), so that protecting a folder protects its index too.
#[derive(Debug, Clone)]
pub struct PathPattern {
    pattern: TextPattern,
    bare_prefix: Option<String>,
}

impl PathPattern {
    /// The pattern for `text`.
    pub fn new(text: &str) -> PathPattern {
        PathPattern {
            pattern: TextPattern::new(text),
            bare_prefix: text
                .strip_suffix("/*")
                .filter(|prefix| !prefix.is_empty())
                .map(str::to_owned),
        }
    }

    /// True when the request path (without its query) matches.
    pub fn matches(&self, path: &str) -> bool {
        self.pattern.matches(path) || self.bare_prefix.as_deref() == Some(path)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.pattern.as_str()
    }

    /// Why no request path can ever match, when that is so.
    pub fn never_matches(&self) -> Option<&'static str> {
        let text = self.pattern.as_str();
        if !(text.starts_with('/') || text.starts_with('*')) {
            Some("request paths start with '/'; write e.g. \"/admin/*\"")
        } else if text.contains('#') {
            Some("a fragment (#...) never reaches the server")
        } else {
            None
        }
    }
}

/// `host` without a `:port` suffix; IPv6 literals keep their brackets.
pub(crate) fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_pattern_matches_the_folder_itself_and_below() {
        let admin = PathPattern::new("/admin/*");
        assert!(admin.matches("/admin"));
        assert!(admin.matches("/admin/"));
        assert!(admin.matches("/admin/users/1"));
        assert!(!admin.matches("/administrator"));
    }

    #[test]
    fn hosts_compare_without_case_port_or_trailing_dot() {
        let host = HostPattern::new("*.Example.com");
        assert!(host.matches("app.example.com:8443"));
        assert!(host.matches("APP.example.com."));
        assert!(!host.matches("example.com"));
        assert_eq!(host_without_port("[::1]:443"), "[::1]");
    }
}
