//! Which host names an endpoint's `domain` covers, as the SNI routing and the Host check read it.

/// True when an endpoint for `domain` serves the host `name` (no port, no trailing dot): the
/// same name without case, or one label under a `*.` domain. The SNI picks endpoints by it and
/// a request's Host must pass it for the endpoint the SNI picked.
pub fn domain_serves(domain: &str, name: &str) -> bool {
    if domain.eq_ignore_ascii_case(name) {
        return true;
    }
    match (domain.strip_prefix("*."), name.split_once('.')) {
        (Some(parent), Some((label, rest))) => {
            !label.is_empty() && parent.eq_ignore_ascii_case(rest)
        }
        _ => false,
    }
}

/// True for a domain as SNI carries it and an endpoint (or an edge grant) names it: dot-separated
/// labels of 1-63 letters, digits and `-` (not first or last), 253 at most, optionally `*.` first.
pub fn valid_domain(domain: &str) -> bool {
    let domain = domain.strip_prefix("*.").unwrap_or(domain);
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}
