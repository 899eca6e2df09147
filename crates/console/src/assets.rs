//! The page's files, compiled into the binary: nothing is fetched at run time, and there is no
//! build step (plain HTML, CSS and JavaScript).

/// One embedded file.
pub(crate) struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

/// Every file the page uses.
pub(crate) const ASSETS: [Asset; 4] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/index.html"),
    },
    Asset {
        path: "/assets/inspector.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/inspector.js"),
    },
    Asset {
        path: "/assets/inspector.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/inspector.css"),
    },
    Asset {
        path: "/assets/favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../assets/favicon.svg"),
    },
];

/// The file served at `path`.
pub(crate) fn asset(path: &str) -> Option<&'static Asset> {
    let path = match path {
        "/index.html" => "/",
        // Browsers ask for it whatever the page says.
        "/favicon.ico" => "/assets/favicon.svg",
        path => path,
    };
    ASSETS.iter().find(|asset| asset.path == path)
}
