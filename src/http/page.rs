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
///
/// The one relaxation is `style-src-attr 'unsafe-inline'`: the message view is an
/// `about:srcdoc` frame, which inherits this policy, and mail leans on `style` attributes
/// (the sanitizer keeps a safe subset of them). Style attributes run no script, and their
/// `url()`s would still be held to `img-src`; the page itself writes none, and it never
/// inserts markup taken from mail into its own document. `<style>` elements stay blocked.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    manifest-src 'self'; frame-src 'self' about:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Content types, by kind of file. Scripts and style sheets name their charset because
/// `nosniff` makes the browser trust the header alone.
const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const MANIFEST: &str = "application/manifest+json";
const SVG: &str = "image/svg+xml";
const PNG: &str = "image/png";

/// Every file of the page. `index.html` comes first (`index()` relies on it). The PNG
/// icons are rendered from `icon.svg` by `tests/browser/render-icons.mjs`; Chromium wants
/// raster icons of 192 and 512 pixels before it offers to install the page.
static ASSETS: [Asset; 8] = [
    asset("index.html", HTML, include_bytes!("page/index.html")),
    asset("app.js", JS, include_bytes!("page/app.js")),
    asset("app.css", CSS, include_bytes!("page/app.css")),
    asset("mail.css", CSS, include_bytes!("page/mail.css")),
    asset(
        "manifest.webmanifest",
        MANIFEST,
        include_bytes!("page/manifest.webmanifest"),
    ),
    asset("icon.svg", SVG, include_bytes!("page/icon.svg")),
    asset("icon-192.png", PNG, include_bytes!("page/icon-192.png")),
    asset("icon-512.png", PNG, include_bytes!("page/icon-512.png")),
];

const fn asset(name: &'static str, content_type: &'static str, body: &'static [u8]) -> Asset {
    Asset {
        name,
        content_type,
        body,
    }
}

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
        .with_header("Referrer-Policy", "no-referrer")
        .with_header("Cache-Control", "no-cache")
}
