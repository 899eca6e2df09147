//! Names as the API takes them: an endpoint's or a reservation's exact hostname, the hostname
//! globs of grants and join tokens (an exact name or one leading `*.` label), kept lower-case
//! without a trailing dot so that they compare as DNS names do; and agents' certificate names.
//!
//! Globs are read by `moat_config::HostnameGlob`, the parser the edge reads them back with.

use moat_config::{HostnameGlob, valid_domain};

use crate::api_error::ApiError;

/// What a DNS name is, for the refusals of one that is not.
const DNS_NAME: &str = "a DNS name (at most 253 characters, labels of 1-63 letters, digits or '-', not starting or ending with '-')";

/// `text` as an exact hostname (`app.example.com`), or the refusal naming `field`.
pub(crate) fn exact_hostname(field: &str, text: &str) -> Result<String, ApiError> {
    let normal = text.trim_end_matches('.').to_ascii_lowercase();
    if normal.contains('*') {
        return Err(ApiError::invalid(
            field,
            format!(
                "{field} {text:?} has a wildcard; name one host, e.g. app.example.com (grants take globs, endpoints and reservations do not)"
            ),
        ));
    }
    if !valid_domain(&normal) {
        return Err(ApiError::invalid(
            field,
            format!("{field} {text:?} is not {DNS_NAME}"),
        ));
    }
    Ok(normal)
}

/// `text` as a hostname glob (`app.example.com` or `*.a.example.com`, the edge's own rules), or
/// the refusal naming `field`.
pub(crate) fn hostname_glob(field: &str, text: &str) -> Result<String, ApiError> {
    HostnameGlob::parse(text)
        .map(String::from)
        .map_err(|error| ApiError::invalid(field, format!("{field}: {error}")))
}

/// The most characters a certificate's common name has (RFC 5280's ub-common-name).
const MAX_COMMON_NAME: usize = 64;

/// `text` as an agent's certificate name (its CN), exact or, with `glob`, with `*` standing for
/// any characters (`ci-*`); or the refusal naming `field`.
pub(crate) fn agent_name(field: &str, text: &str, glob: bool) -> Result<String, ApiError> {
    let problem = if text.is_empty() {
        Some("is empty")
    } else if text.chars().count() > MAX_COMMON_NAME {
        Some("is longer than a certificate's common name (64 characters)")
    } else if text.chars().any(char::is_control) {
        Some("has a control character")
    } else if !glob && text.contains('*') {
        Some("has a wildcard; name one agent")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ApiError::invalid(
            field,
            format!(
                "{field} {text:?} {problem}; give the common name of the agent's certificate{}",
                if glob {
                    ", or a glob such as \"ci-*\""
                } else {
                    ""
                }
            ),
        )),
        None => Ok(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_follow_the_edge_rules() {
        for (text, kept) in [
            ("App.Example.com.", Some("app.example.com")),
            ("*.a.example.com", Some("*.a.example.com")),
            ("*.example.com", Some("*.example.com")),
            ("*.com", None),
            ("*", None),
            ("a.*.example.com", None),
            ("**.example.com", None),
            ("-bad.example.com", None),
            ("", None),
        ] {
            assert_eq!(
                hostname_glob("hostnames", text).ok().as_deref(),
                kept,
                "{text:?}"
            );
        }
    }

    #[test]
    fn exact_hostnames_have_no_wildcard() {
        assert_eq!(
            exact_hostname("hostname", "API.example.com").unwrap(),
            "api.example.com"
        );
        for text in ["*.example.com", "exa mple.com", ""] {
            let refused = exact_hostname("hostname", text).unwrap_err();
            assert_eq!(refused.details.field.as_deref(), Some("hostname"));
        }
    }
}
