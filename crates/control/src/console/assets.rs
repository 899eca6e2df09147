//! The page and its script and style, embedded in the binary, and the headers every console
//! response carries: nothing but the admin origin may be loaded, no inline script runs.

use http::HeaderValue;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, HeaderMap, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};

/// One embedded file and its media type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The page (`/console`).
pub(crate) const PAGE: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("assets/console.html"),
};

/// Its script (`/console/console.js`).
pub(crate) const SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("assets/console.js"),
};

/// Its style (`/console/console.css`).
pub(crate) const STYLE: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_str!("assets/console.css"),
};

/// Its icon (`/console/icon.svg`): without one, Chromium asks for `/favicon.ico`, a 404.
pub(crate) const ICON: Asset = Asset {
    content_type: "image/svg+xml",
    body: include_str!("assets/icon.svg"),
};

/// Only this origin's script, style and requests; no inline script or style attribute, no
/// plugin, no framing, no form posted anywhere. The script builds every element with DOM
/// calls, so a certificate field or a path can only ever be text.
const POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                      connect-src 'self'; object-src 'none'; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

/// Adds the console's security headers to `headers`.
pub(crate) fn secure(headers: &mut HeaderMap) {
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
