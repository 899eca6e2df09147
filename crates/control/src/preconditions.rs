//! Lost-update protection: the version a change is made against, from `If-Match` or the body's
//! `version` field, and the retry when the client named none.

use crate::api_error::ApiError;

/// How many times a change without a version is tried against the version just read before the
/// API gives up: each try loses only to another change committed in between.
pub(crate) const UNVERSIONED_TRIES: usize = 3;

/// The version an `If-Match` header names: `"3"` (also `W/"3"` or `3`); `*` or no header
/// names none (the change applies to whatever is current).
pub(crate) fn if_match_version(header: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(header) = header.map(str::trim) else {
        return Ok(None);
    };
    if header == "*" {
        return Ok(None);
    }
    let tag = header.strip_prefix("W/").unwrap_or(header);
    let tag = tag
        .strip_prefix('"')
        .and_then(|tag| tag.strip_suffix('"'))
        .unwrap_or(tag);
    tag.parse::<i64>().map(Some).map_err(|_| {
        ApiError::invalid(
            "If-Match",
            format!(
                "If-Match {header:?} is not a version; send the ETag a GET returned, e.g. If-Match: \"3\""
            ),
        )
    })
}

/// The one version a change names: `If-Match` and the body's `version`, which must agree when
/// both are given.
pub(crate) fn expected_version(
    if_match: Option<i64>,
    body_version: Option<i64>,
) -> Result<Option<i64>, ApiError> {
    match (if_match, body_version) {
        (Some(header), Some(body)) if header != body => Err(ApiError::invalid(
            "version",
            format!(
                "the body's version {body} and If-Match \"{header}\" differ; send one of them, or both the same"
            ),
        )),
        (header, body) => Ok(header.or(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_reads_the_etag_forms() {
        for (header, version) in [
            (None, None),
            (Some("*"), None),
            (Some("\"3\""), Some(3)),
            (Some("W/\"4\""), Some(4)),
            (Some(" 5 "), Some(5)),
        ] {
            assert_eq!(if_match_version(header).unwrap(), version, "{header:?}");
        }
        let refused = if_match_version(Some("\"abc\"")).unwrap_err();
        assert_eq!(refused.details.field.as_deref(), Some("If-Match"));
    }

    #[test]
    fn header_and_body_versions_must_agree() {
        assert_eq!(expected_version(Some(2), Some(2)).unwrap(), Some(2));
        assert_eq!(expected_version(None, Some(2)).unwrap(), Some(2));
        assert_eq!(expected_version(Some(2), None).unwrap(), Some(2));
        assert_eq!(
            expected_version(Some(2), Some(3))
                .unwrap_err()
                .details
                .field
                .as_deref(),
            Some("version")
        );
    }
}
