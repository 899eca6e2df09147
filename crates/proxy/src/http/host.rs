//! The host a request addresses, checked (RFC 9112 section 3.2, RFC 9113 section 8.3.1) before rules look at it.
//!
//! Rules match hosts, the SNI picks the endpoint, and the upstream routes on `Host`; a request
//! that names its host twice, ambiguously, or differently from the endpoint its SNI chose could
//! be judged as one host and served as another. Such requests are refused here.

use http::header::{self, HeaderMap};
use http::{Request, Version};

/// Why a request's host is unusable (400), or belongs to another endpoint (421).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostRejection {
    /// An HTTP/1.1 request without `Host`, or an HTTP/2 request without `:authority` or `Host`.
    #[error("the request has no Host header")]
    Missing,
    /// More than one `Host` field.
    #[error("the request has more than one Host header")]
    Duplicate,
    /// `Host` and an HTTP/2 request's `:authority` name different hosts.
    #[error("the Host header and the request's authority name different hosts")]
    Conflicting,
    /// Not `host[:port]`: a list, userinfo (`user@host`), spaces, a path, a bad port.
    #[error("the Host header is not a valid host[:port]")]
    Invalid,
}

impl HostRejection {
    /// A stable snake_case name for logs and JSON pages.
    pub fn as_str(self) -> &'static str {
        match self {
            HostRejection::Missing => "missing_host",
            HostRejection::Duplicate => "duplicate_host",
            HostRejection::Conflicting => "conflicting_host",
            HostRejection::Invalid => "invalid_host",
        }
    }
}

/// The host the client addressed, as it goes upstream and to the rules: the request-target's
/// authority (HTTP/2 `:authority`, an HTTP/1.1 absolute-form target) or else `Host`. `None` only
/// for an HTTP/1.0 request without `Host`, whose rules then match the SNI.
pub(super) fn checked_host<B>(request: &Request<B>) -> Result<Option<String>, HostRejection> {
    let headers = request.headers();
    let host_header = single_host_header(headers)?;
    let authority = request.uri().authority().map(|a| a.as_str());
    let host = match (authority, host_header) {
        // RFC 9113 8.3.1: an HTTP/2 request whose Host differs from :authority is malformed.
        (Some(authority), Some(host))
            if request.version() == Version::HTTP_2 && !authority.eq_ignore_ascii_case(host) =>
        {
            return Err(HostRejection::Conflicting);
        }
        // RFC 9112 3.2.2: an absolute-form target's authority wins over a (valid) Host.
        (Some(_), Some(host)) if !is_valid_host(host) => return Err(HostRejection::Invalid),
        (Some(authority), _) => authority,
        (None, Some(host)) => host,
        (None, None) if request.version() == Version::HTTP_10 => return Ok(None),
        (None, None) => return Err(HostRejection::Missing),
    };
    if request.version() == Version::HTTP_11 && host_header.is_none() {
        return Err(HostRejection::Missing);
    }
    if is_valid_host(host) {
        Ok(Some(host.to_owned()))
    } else {
        Err(HostRejection::Invalid)
    }
}

/// The one `Host` field's text, `None` when there is none.
fn single_host_header(headers: &HeaderMap) -> Result<Option<&str>, HostRejection> {
    let mut values = headers.get_all(header::HOST).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(HostRejection::Duplicate);
    }
    first
        .map(|value| value.to_str().map_err(|_| HostRejection::Invalid))
        .transpose()
}

/// `uri-host [ ":" port ]` (RFC 9110 section 7.2) with the host a DNS-style name, an IPv4
/// address or a bracketed IPv6 address; no userinfo, no list, no percent-encoding.
fn is_valid_host(text: &str) -> bool {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inside, after)) => {
                if inside.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match after {
                    "" => (None, None),
                    _ => match after.strip_prefix(':') {
                        Some(port) => (None, Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match text.rsplit_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(text), None),
        },
    };
    let name_ok = host.is_none_or(|name| {
        !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    });
    let port_ok = port.is_none_or(|port| {
        !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
    });
    name_ok && port_ok
}

/// True when the endpoint serving `domain` serves `host` (port and trailing dot ignored, no
/// case): the same name, or one label under a `*.` domain, as the SNI chooses endpoints.
pub(super) fn endpoint_serves(domain: &str, host: &str) -> bool {
    let name = host_without_port(host).trim_end_matches('.');
    moat_config::domain_serves(domain, name)
}

/// `host` without its `:port`; a bracketed IPv6 address keeps its brackets.
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, uri: &str, hosts: &[&str]) -> Request<()> {
        let mut builder = Request::builder().version(version).uri(uri);
        for host in hosts {
            builder = builder.header(header::HOST, *host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn host_forms_are_accepted_or_refused() {
        use HostRejection::*;
        let h11 = Version::HTTP_11;
        let h2 = Version::HTTP_2;
        type Case<'a> = (
            Version,
            &'a str,
            &'a [&'a str],
            Result<Option<&'a str>, HostRejection>,
        );
        let table: &[Case<'_>] = &[
            (h11, "/", &["app.example.com"], Ok(Some("app.example.com"))),
            (
                h11,
                "/",
                &["App.Example.com:8443"],
                Ok(Some("App.Example.com:8443")),
            ),
            (h11, "/", &["127.0.0.1:8443"], Ok(Some("127.0.0.1:8443"))),
            (h11, "/", &["[::1]:8443"], Ok(Some("[::1]:8443"))),
            (h11, "/", &[], Err(Missing)),
            (
                h11,
                "/",
                &["a.example.com", "b.example.com"],
                Err(Duplicate),
            ),
            (h11, "/", &["a.example.com, b.example.com"], Err(Invalid)),
            (h11, "/", &["user@a.example.com"], Err(Invalid)),
            (h11, "/", &["a.example.com/x"], Err(Invalid)),
            (h11, "/", &["a.example.com:http"], Err(Invalid)),
            (h11, "/", &[""], Err(Invalid)),
            (h11, "/", &["a b"], Err(Invalid)),
            (h11, "/", &["[::1"], Err(Invalid)),
            (
                h11,
                "http://a.example.com/x",
                &["a.example.com"],
                Ok(Some("a.example.com")),
            ),
            (
                h11,
                "http://a.example.com/x",
                &["b.example.com"],
                Ok(Some("a.example.com")),
            ),
            (h11, "http://a.example.com/x", &["b, c"], Err(Invalid)),
            (h11, "http://a.example.com/x", &[], Err(Missing)),
            (
                h11,
                "http://u@a.example.com/x",
                &["u@a.example.com"],
                Err(Invalid),
            ),
            (
                h2,
                "https://a.example.com/x",
                &[],
                Ok(Some("a.example.com")),
            ),
            (
                h2,
                "https://a.example.com/x",
                &["A.example.com"],
                Ok(Some("a.example.com")),
            ),
            (
                h2,
                "https://a.example.com/x",
                &["b.example.com"],
                Err(Conflicting),
            ),
            (h2, "/x", &[], Err(Missing)),
            (Version::HTTP_10, "/", &[], Ok(None)),
        ];
        for (version, uri, hosts, expected) in table {
            let got = checked_host(&request(*version, uri, hosts));
            assert_eq!(
                got.as_ref().map(|h| h.as_deref()),
                expected.as_ref().map(|h| *h),
                "{version:?} {uri} {hosts:?}"
            );
        }
    }

    #[test]
    fn hosts_belong_to_the_endpoint_by_name_or_one_wildcard_label() {
        assert!(endpoint_serves("a.example.com", "A.example.com:8443"));
        assert!(endpoint_serves("a.example.com", "a.example.com."));
        assert!(!endpoint_serves("a.example.com", "b.example.com"));
        assert!(endpoint_serves("*.example.com", "b.example.com"));
        assert!(!endpoint_serves("*.example.com", "x.b.example.com"));
        assert!(!endpoint_serves("*.example.com", "example.com"));
    }
}
