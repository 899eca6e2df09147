//! The list's filters, from the query string: path, status, client subject, duration, method,
//! endpoint; given together, an exchange must pass all of them.

use crate::entry::Entry;

/// Exchanges listed when no `limit` is given (ngrok's default is 50; the page asks for more).
pub(crate) const DEFAULT_LIMIT: usize = 50;

/// A filter over captured exchanges.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Filter {
    /// A substring of the path (and query).
    pub path: Option<String>,
    /// Statuses kept.
    pub status: Option<StatusFilter>,
    /// A case-insensitive substring of the client certificate's subject; `-` keeps requests
    /// made without a certificate.
    pub subject: Option<String>,
    /// Shortest duration kept, in milliseconds.
    pub min_ms: Option<f64>,
    /// Longest duration kept, in milliseconds.
    pub max_ms: Option<f64>,
    /// The method, case-insensitive.
    pub method: Option<String>,
    /// The endpoint (ngrok: `tunnel_name`).
    pub endpoint: Option<String>,
    /// The most exchanges listed.
    pub limit: usize,
}

/// Which statuses a filter keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusFilter {
    /// One status, e.g. `404`.
    Exact(u16),
    /// A class, e.g. `4xx` (first digit).
    Class(u16),
}

/// A query parameter that could not be read, naming it.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("query parameter {name}={value:?} is invalid: {expected}")]
pub(crate) struct FilterError {
    pub name: String,
    pub value: String,
    pub expected: &'static str,
}

impl Filter {
    /// Reads the filter from a query string; unknown parameters are refused, so a typo does not
    /// silently list everything.
    pub(crate) fn parse(query: &str) -> Result<Filter, FilterError> {
        let mut filter = Filter {
            limit: DEFAULT_LIMIT,
            ..Filter::default()
        };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let invalid = |expected| FilterError {
                name: name.to_string(),
                value: value.to_string(),
                expected,
            };
            let text = value.trim();
            if text.is_empty() {
                continue;
            }
            match name.as_ref() {
                "path" => filter.path = Some(text.to_owned()),
                "subject" => filter.subject = Some(text.to_lowercase()),
                "method" => filter.method = Some(text.to_uppercase()),
                "tunnel_name" | "endpoint" => filter.endpoint = Some(text.to_owned()),
                "status" => {
                    filter.status = Some(
                        StatusFilter::parse(text)
                            .ok_or_else(|| invalid("a status (404) or a class (4xx)"))?,
                    )
                }
                "min_ms" => {
                    filter.min_ms = Some(milliseconds(text).ok_or_else(|| invalid("milliseconds"))?)
                }
                "max_ms" => {
                    filter.max_ms = Some(milliseconds(text).ok_or_else(|| invalid("milliseconds"))?)
                }
                "limit" => {
                    filter.limit = text
                        .parse()
                        .ok()
                        .filter(|limit| *limit > 0)
                        .ok_or_else(|| invalid("a positive count"))?
                }
                _ => {
                    return Err(invalid(
                        "unknown parameter; use path, status, subject, min_ms, max_ms, method, \
                         tunnel_name or limit",
                    ));
                }
            }
        }
        Ok(filter)
    }

    /// True when `entry` passes every filter given.
    pub(crate) fn keeps(&self, entry: &Entry) -> bool {
        let subject_kept = match self.subject.as_deref() {
            None => true,
            Some("-") => entry.info.client.is_none(),
            Some(part) => entry.subject().to_lowercase().contains(part),
        };
        subject_kept
            && self
                .path
                .as_deref()
                .is_none_or(|part| entry.target.contains(part))
            && self.status.is_none_or(|status| status.keeps(entry.status))
            && self.min_ms.is_none_or(|min| entry.duration_ms() >= min)
            && self.max_ms.is_none_or(|max| entry.duration_ms() <= max)
            && self
                .method
                .as_deref()
                .is_none_or(|method| entry.method.as_str() == method)
            && self
                .endpoint
                .as_deref()
                .is_none_or(|endpoint| entry.info.endpoint == endpoint)
    }
}

impl StatusFilter {
    fn parse(text: &str) -> Option<StatusFilter> {
        let lower = text.to_ascii_lowercase();
        if let Some(class) = lower.strip_suffix("xx") {
            return match class.parse::<u16>() {
                Ok(digit @ 1..=5) => Some(StatusFilter::Class(digit)),
                _ => None,
            };
        }
        match lower.parse::<u16>() {
            Ok(status @ 100..=599) => Some(StatusFilter::Exact(status)),
            _ => None,
        }
    }

    fn keeps(self, status: u16) -> bool {
        match self {
            StatusFilter::Exact(exact) => status == exact,
            StatusFilter::Class(digit) => status / 100 == digit,
        }
    }
}

fn milliseconds(text: &str) -> Option<f64> {
    text.parse::<f64>()
        .ok()
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::tests::sample;
    use std::time::Duration;

    #[test]
    fn each_filter_and_their_combination() {
        let entry = sample("a"); // GET /items?page=2, 200, 12 ms, no certificate
        let keeps = |query: &str| Filter::parse(query).unwrap().keeps(&entry);
        for (query, kept) in [
            ("", true),
            ("path=/items", true),
            ("path=/other", false),
            ("status=200", true),
            ("status=2xx", true),
            ("status=4xx", false),
            ("subject=-", true),
            ("subject=alice", false),
            ("min_ms=10", true),
            ("min_ms=13", false),
            ("max_ms=12", true),
            ("max_ms=11.5", false),
            ("method=get", true),
            ("method=POST", false),
            ("tunnel_name=app", true),
            ("tunnel_name=api", false),
            ("path=items&status=2xx&max_ms=50", true),
            ("path=items&status=2xx&max_ms=5", false),
        ] {
            assert_eq!(keeps(query), kept, "{query}");
        }
    }

    #[test]
    fn the_subject_filter_ignores_case() {
        let mut entry = sample("a");
        entry.duration = Duration::from_millis(1);
        let filter = Filter::parse("subject=CN%3DAlice").unwrap();
        assert_eq!(filter.subject.as_deref(), Some("cn=alice"));
        assert!(!filter.keeps(&entry));
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, name) in [
            ("status=99", "status"),
            ("status=6xx", "status"),
            ("min_ms=-1", "min_ms"),
            ("limit=0", "limit"),
            ("colour=red", "colour"),
        ] {
            let error = Filter::parse(query).unwrap_err();
            assert_eq!(error.name, name, "{query}");
        }
    }
}
