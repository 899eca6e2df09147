//! Lists in pages, as ngrok answers them: `?limit=` and `?after=` in, the items with `uri` and
//! `next_page_uri` out; the store pages by id.

use moat_store::Page;
use serde_json::{Value, json};

use crate::api_error::ApiError;
use crate::reply::Reply;

/// Items in a page when the client names no limit.
pub(crate) const DEFAULT_LIMIT: u32 = 100;
/// The most items a page holds: one page of the largest records (CAs, ~2 KiB each) stays a
/// few MiB.
pub(crate) const MAX_LIMIT: u32 = 1000;

/// Which page a list request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paging {
    /// List the records with ids after this one (a previous page's last).
    pub after: Option<String>,
    /// At most this many.
    pub limit: u32,
}

impl Paging {
    /// Reads `limit` and `after` from a query string; any other parameter is refused.
    pub fn from_query(query: Option<&str>) -> Result<Paging, ApiError> {
        let mut paging = Paging {
            after: None,
            limit: DEFAULT_LIMIT,
        };
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match name.as_ref() {
                "limit" => {
                    paging.limit = value
                        .parse::<u32>()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| {
                            ApiError::invalid(
                                "limit",
                                format!(
                                    "limit {value:?} is not a number from 1 to {MAX_LIMIT}; leave it out for {DEFAULT_LIMIT}"
                                ),
                            )
                        })?;
                }
                "after" => {
                    paging.after = Some(value.into_owned()).filter(|after| !after.is_empty())
                }
                other => {
                    return Err(ApiError::invalid(
                        other,
                        format!(
                            "unknown query parameter {other:?}; lists take limit and after (the next_page_uri of the page before)"
                        ),
                    ));
                }
            }
        }
        Ok(paging)
    }
}

/// The reply listing one page of `collection` (its path without the slash): the items under
/// the collection's name, `uri` and `next_page_uri` (null on the last page).
pub(crate) fn list_reply<T>(
    collection: &str,
    page: Page<T>,
    limit: u32,
    view: impl Fn(&T) -> Value,
) -> Reply {
    let uri = format!("/{collection}");
    let next_page_uri = page.next_after.map(|after| {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("after", &after)
            .append_pair("limit", &limit.to_string())
            .finish();
        format!("{uri}?{query}")
    });
    let items: Vec<Value> = page.items.iter().map(view).collect();
    Reply::ok(json!({
        collection: items,
        "uri": uri,
        "next_page_uri": next_page_uri,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_reads_limit_and_after_and_refuses_the_rest() {
        assert_eq!(
            Paging::from_query(None).unwrap(),
            Paging {
                after: None,
                limit: DEFAULT_LIMIT
            }
        );
        assert_eq!(
            Paging::from_query(Some("after=ca_1&limit=2")).unwrap(),
            Paging {
                after: Some("ca_1".into()),
                limit: 2
            }
        );
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=x", "limit"),
            ("before_id=ca_1", "before_id"),
        ] {
            let refused = Paging::from_query(Some(query)).unwrap_err();
            assert_eq!(refused.details.field.as_deref(), Some(field), "{query}");
        }
    }
}
