//! The web page at `/`: a few hand-written files embedded in the binary, served with a
//! strict Content-Security-Policy. No build step, no CDN: the page works offline.
//!
//! `/` is `index.html`; everything else lives under `/static/{name}` so that the routing
//! table (and the OpenAPI file) name one endpoint for all of it.

use crate::http::response::Response;

/// One embedded file.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    /// The name under `/static/`; `index.html` is also served at `/`.
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// The page's own policy: only its own script, style and API; no inline code, no frames
/// but its own sandboxed message view.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; manifest-src 'self'; frame-src 'self' about:; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

static ASSETS: [Asset; 1] = [Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("page/index.html"),
}];

/// The page served at `/`.
pub fn index() -> &'static Asset {
    &ASSETS[0]
}

/// The asset served at `/static/{name}`, if there is one.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// 200 with the asset and the headers every page response carries.
pub fn response(asset: &'static Asset) -> Response {
    Response::new(200, asset.content_type, asset.body.to_vec())
        .with_header("Content-Security-Policy", PAGE_CSP)
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("Referrer-Policy", "no-referrer")
        .with_header("Cache-Control", "no-cache")
}
