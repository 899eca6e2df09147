//! Parsing the upstream address of an endpoint: `8080`, `host:port`, `http://`, `https://`, `tcp://`.

use crate::model::{EndpointKind, Upstream, UpstreamScheme};

/// The host a bare port number refers to, as ngrok's `ngrok http 8080` does.
const DEFAULT_HOST: &str = "localhost";

/// Parses `text` as the upstream of an endpoint of `kind`.
///
/// `http` endpoints take `PORT`, `HOST:PORT`, `http://HOST[:PORT]` or `https://HOST[:PORT]`;
/// `tls` endpoints take `PORT`, `HOST:PORT` or `tcp://HOST:PORT`. The error is a message fit to
/// follow the field path.
pub fn parse_upstream(text: &str, kind: EndpointKind) -> Result<Upstream, String> {
    let trimmed = text.trim();
    let not_an_address = || match kind {
        EndpointKind::Http => format!("{text:?} is not a port, host:port or URL"),
        EndpointKind::Tls => format!("{text:?} is not a port, host:port or tcp://host:port"),
    };
    let (scheme, rest) = match trimmed.split_once("://") {
        Some((scheme, rest)) => {
            let scheme = match (scheme.to_ascii_lowercase().as_str(), kind) {
                ("http", EndpointKind::Http) => UpstreamScheme::Http,
                ("https", EndpointKind::Http) => UpstreamScheme::Https,
                ("tcp", EndpointKind::Tls) => UpstreamScheme::Tcp,
                ("http" | "https", EndpointKind::Tls) => {
                    return Err(format!(
                        "{text:?} is an HTTP URL but a tls endpoint forwards raw TCP; give host:port, \
                         or use an http endpoint"
                    ));
                }
                ("tcp", EndpointKind::Http) => {
                    return Err(format!(
                        "{text:?} is a raw TCP address but an http endpoint speaks HTTP to its \
                         upstream; give http://host:port, or use a tls endpoint"
                    ));
                }
                _ => {
                    return Err(format!(
                        "{text:?} has an unsupported scheme {scheme:?}; use {}",
                        match kind {
                            EndpointKind::Http => "http:// or https://",
                            EndpointKind::Tls => "tcp://",
                        }
                    ));
                }
            };
            (Some(scheme), rest)
        }
        None => (None, trimmed),
    };
    let default_scheme = match kind {
        EndpointKind::Http => UpstreamScheme::Http,
        EndpointKind::Tls => UpstreamScheme::Tcp,
    };

    // A URL may end in "/"; anything longer is a path moat would silently drop, so refuse it.
    let authority = match rest.split_once('/') {
        Some((authority, "")) if scheme.is_some() => authority,
        Some(_) => {
            return Err(format!(
                "{text:?} has a path; moat forwards request paths unchanged, so give only the \
                 scheme, host and port"
            ));
        }
        None => rest,
    };
    if authority.is_empty() {
        return Err(not_an_address());
    }
    if scheme.is_none() && authority.bytes().all(|b| b.is_ascii_digit()) {
        let port = parse_port(authority).ok_or_else(not_an_address)?;
        return Ok(Upstream {
            scheme: default_scheme,
            host: DEFAULT_HOST.to_string(),
            port,
        });
    }

    let (host, port) = split_host_port(authority).ok_or_else(not_an_address)?;
    let scheme = scheme.unwrap_or(default_scheme);
    let port = match port {
        Some(port) => parse_port(port).ok_or_else(not_an_address)?,
        None => match scheme {
            UpstreamScheme::Http => 80,
            UpstreamScheme::Https => 443,
            UpstreamScheme::Tcp => {
                return Err(format!(
                    "{text:?} has no port; give host:port, e.g. localhost:5432"
                ));
            }
        },
    };
    if !valid_host(host) {
        return Err(not_an_address());
    }
    Ok(Upstream {
        scheme,
        host: host.to_string(),
        port,
    })
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]`; the host is returned without brackets.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match authority.split_once(':') {
        Some((host, port)) if !port.contains(':') => Some((host, Some(port))),
        Some(_) => None,
        None => Some((authority, None)),
    }
}

/// A TCP port other than 0 (an upstream cannot be "any port").
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|port| *port != 0)
}

/// A DNS name or IP address literal: letters, digits, `-`, `.`, `_` (and `:` for IPv6).
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(text: &str) -> Result<(UpstreamScheme, String, u16), String> {
        parse_upstream(text, EndpointKind::Http).map(|u| (u.scheme, u.host, u.port))
    }

    fn tcp(text: &str) -> Result<(UpstreamScheme, String, u16), String> {
        parse_upstream(text, EndpointKind::Tls).map(|u| (u.scheme, u.host, u.port))
    }

    #[test]
    fn bare_port_means_localhost() {
        assert_eq!(
            http("8080"),
            Ok((UpstreamScheme::Http, "localhost".into(), 8080))
        );
        assert_eq!(
            tcp("5432"),
            Ok((UpstreamScheme::Tcp, "localhost".into(), 5432))
        );
    }

    #[test]
    fn host_port_and_urls() {
        assert_eq!(
            http("app.internal:8080"),
            Ok((UpstreamScheme::Http, "app.internal".into(), 8080))
        );
        assert_eq!(
            http("http://10.0.0.5:81/"),
            Ok((UpstreamScheme::Http, "10.0.0.5".into(), 81))
        );
        assert_eq!(
            http("https://api.internal"),
            Ok((UpstreamScheme::Https, "api.internal".into(), 443))
        );
        assert_eq!(
            http("http://[::1]:9000"),
            Ok((UpstreamScheme::Http, "::1".into(), 9000))
        );
        assert_eq!(
            tcp("tcp://db:5432"),
            Ok((UpstreamScheme::Tcp, "db".into(), 5432))
        );
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        assert_eq!(
            http("localhost:x"),
            Err("\"localhost:x\" is not a port, host:port or URL".into())
        );
        assert!(http("70000").is_err());
        assert!(http("0").is_err());
        assert!(
            http("http://host:8080/api")
                .unwrap_err()
                .contains("has a path")
        );
        assert!(
            http("ftp://host:21")
                .unwrap_err()
                .contains("unsupported scheme")
        );
        assert!(tcp("http://host:80").unwrap_err().contains("raw TCP"));
        assert!(tcp("db").unwrap_err().contains("no port"));
        assert!(http("bad host:80").is_err());
        assert!(http("").is_err());
    }
}
