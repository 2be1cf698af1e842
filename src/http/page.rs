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

#[cfg(test)]
mod tests {
    use super::*;

    /// Budget per file: the page stays a few small hand-written files (app.js passed
    /// 32 KiB with sender-check badges, codes and private-inbox tokens; search comes next).
    const ASSET_BYTES_MAX: usize = 48 * 1024;

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.body)
            .unwrap_or_else(|error| panic!("{} is not UTF-8: {error}", asset.name))
    }

    fn is_text(asset: &Asset) -> bool {
        asset.content_type != PNG
    }

    /// Every `/static/{name}` that a text asset mentions.
    fn static_references() -> Vec<(&'static str, String)> {
        let mut references = Vec::new();
        for asset in ASSETS.iter().filter(|asset| is_text(asset)) {
            let body = text(asset);
            for (start, _) in body.match_indices("/static/") {
                let rest = &body[start + "/static/".len()..];
                let name_len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
                    .unwrap_or(rest.len());
                // `/static/` alone, or followed by an interpolation, names no file.
                if name_len > 0 {
                    references.push((asset.name, rest[..name_len].to_string()));
                }
            }
        }
        references
    }

    #[test]
    fn index_is_the_html_page_and_find_knows_every_name() {
        assert_eq!(index().name, "index.html");
        assert_eq!(index().content_type, HTML);
        for asset in &ASSETS {
            assert_eq!(find(asset.name), Some(asset), "{}", asset.name);
            assert!(!asset.body.is_empty(), "{} is empty", asset.name);
        }
        for unknown in [
            "",
            "nope.js",
            "APP.JS",
            "app.js/",
            "../Cargo.toml",
            "page/app.js",
        ] {
            assert_eq!(find(unknown), None, "{unknown:?}");
        }
        let mut names: Vec<&str> = ASSETS.iter().map(|asset| asset.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len(), "asset names repeat");
    }

    #[test]
    fn content_types_follow_the_file_kind() {
        let by_extension = [
            (".html", HTML),
            (".js", JS),
            (".css", CSS),
            (".webmanifest", MANIFEST),
            (".svg", SVG),
            (".png", PNG),
        ];
        for asset in &ASSETS {
            let expected = by_extension
                .iter()
                .find(|(extension, _)| asset.name.ends_with(extension))
                .map(|(_, content_type)| *content_type)
                .unwrap_or_else(|| panic!("no content type known for {}", asset.name));
            assert_eq!(asset.content_type, expected, "{}", asset.name);
        }
        for asset in ASSETS.iter().filter(|asset| asset.content_type == PNG) {
            assert!(
                asset.body.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{}",
                asset.name
            );
        }
    }

    #[test]
    fn every_referenced_file_exists_and_every_file_is_referenced() {
        let references = static_references();
        for (from, name) in &references {
            assert!(
                find(name).is_some(),
                "{from} refers to /static/{name}, which is not served"
            );
        }
        for asset in ASSETS.iter().skip(1) {
            assert!(
                references.iter().any(|(_, name)| name == asset.name),
                "nothing refers to /static/{}",
                asset.name
            );
        }
        let index = text(index());
        for needed in [
            r#"<script src="/static/app.js" defer></script>"#,
            r#"<link rel="stylesheet" href="/static/app.css">"#,
            r#"<link rel="manifest" href="/static/manifest.webmanifest">"#,
            r#"<link rel="icon" href="/static/icon.svg" type="image/svg+xml">"#,
            r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#,
        ] {
            assert!(index.contains(needed), "index.html lacks {needed}");
        }
    }

    #[test]
    fn the_manifest_parses_and_matches_the_page() {
        let manifest: serde_json::Value =
            serde_json::from_slice(find("manifest.webmanifest").expect("manifest").body)
                .expect("the manifest is JSON");
        let theme = manifest["theme_color"].as_str().expect("theme_color");
        assert!(
            text(index()).contains(&format!(r#"<meta name="theme-color" content="{theme}">"#)),
            "index.html's theme-color differs from the manifest's {theme}"
        );
        assert_eq!(manifest["start_url"], "/");
        let icons = manifest["icons"].as_array().expect("icons");
        for size in ["192x192", "512x512"] {
            assert!(
                icons
                    .iter()
                    .any(|icon| icon["sizes"] == size && icon["type"] == PNG),
                "Chromium installs a page only with a {size} PNG icon"
            );
        }
        for icon in icons {
            let src = icon["src"].as_str().expect("icon src");
            let name = src
                .strip_prefix("/static/")
                .expect("icons live under /static/");
            let asset = find(name).unwrap_or_else(|| panic!("icon {src} is not served"));
            assert_eq!(icon["type"], asset.content_type, "{src}");
        }
    }

    #[test]
    fn the_policy_allows_no_inline_or_eval_code() {
        let directives: Vec<(&str, &str)> = PAGE_CSP
            .split(';')
            .map(|directive| {
                let directive = directive.trim();
                directive.split_once(' ').unwrap_or((directive, ""))
            })
            .collect();
        let value = |name: &str| {
            directives
                .iter()
                .find(|(directive, _)| *directive == name)
                .map(|(_, value)| *value)
                .unwrap_or_else(|| panic!("no {name} in PAGE_CSP"))
        };
        let expected = [
            ("default-src", "'none'"),
            ("script-src", "'self'"),
            ("style-src", "'self'"),
            ("style-src-attr", "'unsafe-inline'"),
            ("connect-src", "'self'"),
            ("base-uri", "'none'"),
            ("form-action", "'none'"),
            ("frame-ancestors", "'none'"),
        ];
        for (name, wanted) in expected {
            assert_eq!(value(name), wanted, "{name}");
        }
        assert!(!PAGE_CSP.contains("unsafe-eval"));
        assert!(!PAGE_CSP.contains("script-src-attr"));
        assert!(!PAGE_CSP.contains("script-src-elem"));
        assert!(!PAGE_CSP.contains("style-src-elem"));
        for (name, value) in &directives {
            assert!(
                !value.contains("'unsafe-inline'") || *name == "style-src-attr",
                "{name} allows inline code"
            );
            assert!(
                !value.contains('*') && !value.contains("http"),
                "{name} {value}"
            );
        }
    }

    #[test]
    fn the_files_hold_nothing_the_policy_would_block_or_that_parses_mail_as_markup() {
        let index = text(index());
        for (at, _) in index.match_indices("<script") {
            let tag_end = index[at..].find('>').expect("script tag closes") + at;
            assert!(
                index[at..tag_end].contains(" src=\"/static/"),
                "inline script in index.html"
            );
        }
        for forbidden in [
            "<style",
            " style=",
            " onclick=",
            " onload=",
            " onerror=",
            "javascript:",
        ] {
            assert!(
                !index.contains(forbidden),
                "index.html contains {forbidden}"
            );
        }
        let script = text(find("app.js").expect("app.js"));
        for forbidden in [
            ".innerHTML",
            ".outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!script.contains(forbidden), "app.js contains {forbidden}");
        }
        // The message frame's sandbox: popups for its links, and nothing else (no scripts,
        // no same origin, no forms, no top navigation).
        assert_eq!(
            script.matches("sandbox: '").count(),
            1,
            "app.js makes one sandboxed frame"
        );
        assert!(script.contains("sandbox: 'allow-popups allow-popups-to-escape-sandbox',"));
    }

    #[test]
    fn the_files_stay_small() {
        for asset in &ASSETS {
            assert!(
                asset.body.len() <= ASSET_BYTES_MAX,
                "{} is {} bytes, over {ASSET_BYTES_MAX}",
                asset.name,
                asset.body.len()
            );
        }
    }

    #[test]
    fn responses_carry_the_policy_and_the_content_type() {
        for asset in &ASSETS {
            let response = response(asset);
            assert_eq!(response.status, 200);
            assert_eq!(response.content_type, asset.content_type);
            assert_eq!(response.body, asset.body);
            let header = |name: &str| {
                response
                    .headers
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.as_str())
            };
            assert_eq!(header("Content-Security-Policy"), Some(PAGE_CSP));
            assert_eq!(header("Referrer-Policy"), Some("no-referrer"));
            assert_eq!(header("Cache-Control"), Some("no-cache"));
        }
    }
}
