//! `--webhook [DOMAIN=]URL`: where stored messages are announced, and for which recipient
//! domains; `--webhook-secret-file`: the key their bodies are signed with.
//!
//! The URL is parsed and its host resolved once, here, at start-up: the sender never
//! resolves a name and never follows a redirect, so only the addresses the operator
//! configured are ever called.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use crate::config::domains::{DomainPolicy, validate_domain};

/// Shortest signing key accepted: HMAC-SHA256 keys shorter than this are guessable.
const SECRET_BYTES_MIN: usize = 16;
/// Longest signing key accepted (HMAC hashes longer keys first anyway; this only keeps a
/// wrong file, such as a certificate bundle, from being taken for a key).
const SECRET_BYTES_MAX: usize = 1024;
/// Longest URL accepted; the request line must stay small.
const URL_BYTES_MAX: usize = 2048;

/// One configured webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Only mail for these recipient domains (`DOMAIN=` before the URL); `None`: all mail.
    pub domains: Option<DomainPolicy>,
    pub url: WebhookUrl,
}

/// A webhook's URL, parsed and resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// `https://`: the request goes over TLS, checked against the system's roots.
    pub tls: bool,
    /// The host as written, without brackets: the TLS server name (SNI and the name the
    /// certificate must carry).
    pub host: String,
    /// The `Host` header: the URL's authority as written (host and port, if given).
    pub authority: String,
    /// The request target: path and query (`/` when the URL has none).
    pub path: String,
    /// Resolved once, at start-up.
    pub addr: SocketAddr,
}

/// The key `--webhook-secret-file` holds: the file's bytes without a final line end.
/// Its `Debug` does not show it.
#[derive(Clone)]
pub struct WebhookSecret(Box<[u8]>);

impl Webhook {
    /// Parses `URL` or `DOMAIN=URL` (`*.example.test=URL`: that domain and its subdomains).
    ///
    /// # Errors
    /// A bad domain, a URL that is not `http://` or `https://` with a host, or a host that
    /// does not resolve.
    pub(super) fn parse(text: &str) -> Result<Webhook, String> {
        let text = text.trim();
        let is_url = |text: &str| {
            let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
            lower.starts_with("http://") || lower.starts_with("https://")
        };
        if is_url(text) {
            return Ok(Webhook {
                domains: None,
                url: WebhookUrl::parse(text)?,
            });
        }
        let Some((domain, url)) = text.split_once('=') else {
            return Err(format!(
                "{text:?}: expected [DOMAIN=]http://HOST[:PORT][/PATH] (or https://)"
            ));
        };
        validate_domain(domain).map_err(|why| format!("{domain:?}: {why}"))?;
        Ok(Webhook {
            domains: Some(DomainPolicy::new(&[domain])),
            url: WebhookUrl::parse(url)?,
        })
    }

    /// Whether mail for the inbox `address` (an inbox key: lowercase, ASCII domain) goes
    /// to this webhook.
    pub fn wants(&self, address: &str) -> bool {
        match &self.domains {
            None => true,
            Some(domains) => address
                .rsplit_once('@')
                .is_some_and(|(_, domain)| domains.accepts(domain)),
        }
    }
}

impl WebhookUrl {
    /// Parses and resolves `http://HOST[:PORT][/PATH][?QUERY]` or `https://...`.
    ///
    /// # Errors
    /// Another scheme, user information or a fragment, a bad port, a path with spaces or
    /// control characters, or a host that does not resolve.
    pub fn parse(url: &str) -> Result<WebhookUrl, String> {
        let expected = || format!("{url:?}: expected http://HOST[:PORT][/PATH] or https://...");
        if url.len() > URL_BYTES_MAX {
            return Err(format!("the URL is longer than {URL_BYTES_MAX} bytes"));
        }
        let (tls, rest) = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
            _ => return Err(expected()),
        };
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(authority_end);
        if target.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(format!(
                "{url:?}: the path may hold only visible ASCII (percent-encode the rest)"
            ));
        }
        if target.contains('#') {
            return Err(format!(
                "{url:?}: a fragment (#...) is never sent; leave it out"
            ));
        }
        if authority.contains('@') {
            return Err(format!(
                "{url:?}: user information (user:password@) is not supported; put a token in \
                 the path or query, and use --webhook-secret-file to sign"
            ));
        }
        let (host, port) = split_host_port(authority).ok_or_else(expected)?;
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(expected());
        }
        let port = match port {
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return Err(format!("{url:?}: bad port {text:?}")),
            },
            None if tls => 443,
            None => 80,
        };
        if tls && rustls::pki_types::ServerName::try_from(host).is_err() {
            return Err(format!(
                "{url:?}: {host:?} is not a name a certificate can carry"
            ));
        }
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|error| format!("{url:?}: cannot resolve {host:?}: {error}"))?
            .next()
            .ok_or_else(|| format!("{url:?}: {host:?} has no address"))?;
        let path = match target.strip_prefix('?') {
            Some(_) => format!("/{target}"),
            None if target.is_empty() => "/".to_string(),
            None => target.to_string(),
        };
        Ok(WebhookUrl {
            tls,
            host: host.to_string(),
            authority: authority.to_string(),
            path,
            addr,
        })
    }
}

impl std::fmt::Display for WebhookUrl {
    /// Scheme, authority and path, without the query: logs show which webhook failed
    /// without repeating a token the query may carry.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let path = self.path.split('?').next().unwrap_or_default();
        write!(f, "{scheme}://{}{path}", self.authority)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `None` when brackets do not close.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    Some(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

impl WebhookSecret {
    /// Reads the key from `path`: its bytes, without a final `\n` or `\r\n`.
    ///
    /// # Errors
    /// The file cannot be read, or the key is shorter than 16 bytes or longer than 1 KiB.
    pub(super) fn read(path: &str) -> Result<WebhookSecret, String> {
        let mut bytes = std::fs::read(Path::new(path))
            .map_err(|error| format!("cannot read the key file: {error}"))?;
        WebhookSecret::from_file_bytes(&mut bytes)
    }

    fn from_file_bytes(bytes: &mut [u8]) -> Result<WebhookSecret, String> {
        let key_len = bytes
            .strip_suffix(b"\r\n")
            .or_else(|| bytes.strip_suffix(b"\n"))
            .unwrap_or(bytes)
            .len();
        let length_ok = (SECRET_BYTES_MIN..=SECRET_BYTES_MAX).contains(&key_len);
        let key = bytes[..key_len].to_vec().into_boxed_slice();
        bytes.fill(0);
        if !length_ok {
            return Err(format!(
                "the key must be {SECRET_BYTES_MIN} to {SECRET_BYTES_MAX} bytes (without the \
                 final line end), not {key_len}; `openssl rand -hex 32` makes a good one"
            ));
        }
        Ok(WebhookSecret(key))
    }

    /// The key's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecret({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_their_parts() {
        // (URL, tls, host, authority, path, port)
        let table: &[(&str, bool, &str, &str, &str, u16)] = &[
            ("http://127.0.0.1", false, "127.0.0.1", "127.0.0.1", "/", 80),
            (
                "http://127.0.0.1:9000/hooks/mail?token=abc",
                false,
                "127.0.0.1",
                "127.0.0.1:9000",
                "/hooks/mail?token=abc",
                9000,
            ),
            (
                "HTTPS://127.0.0.1/x",
                true,
                "127.0.0.1",
                "127.0.0.1",
                "/x",
                443,
            ),
            (
                "http://[::1]:8080?a=b",
                false,
                "::1",
                "[::1]:8080",
                "/?a=b",
                8080,
            ),
            (
                "https://localhost:8443/",
                true,
                "localhost",
                "localhost:8443",
                "/",
                8443,
            ),
        ];
        for &(url, tls, host, authority, path, port) in table {
            let parsed = WebhookUrl::parse(url).unwrap_or_else(|why| panic!("{url}: {why}"));
            assert_eq!(
                (parsed.tls, &*parsed.host, &*parsed.authority, &*parsed.path),
                (tls, host, authority, path),
                "{url}"
            );
            assert_eq!(parsed.addr.port(), port, "{url}");
        }
        let shown = WebhookUrl::parse("http://127.0.0.1:9000/hook?token=secret").unwrap();
        assert_eq!(shown.to_string(), "http://127.0.0.1:9000/hook");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        let table: &[(&str, &str)] = &[
            ("ftp://127.0.0.1/", "expected http://"),
            ("127.0.0.1:80", "expected http://"),
            ("http://", "expected http://"),
            ("http://127.0.0.1:0/", "bad port"),
            ("http://127.0.0.1:99999/", "bad port"),
            ("http://127.0.0.1/a b", "visible ASCII"),
            ("http://127.0.0.1/a#frag", "fragment"),
            ("http://user:pw@127.0.0.1/", "user information"),
            ("http://[::1/", "expected http://"),
            ("http://no-such-host.invalid/", "cannot resolve"),
        ];
        for (url, reason) in table {
            let why = WebhookUrl::parse(url).expect_err(url);
            assert!(why.contains(reason), "{url}: {why}");
        }
    }

    #[test]
    fn a_domain_before_the_url_filters_recipients() {
        let all = Webhook::parse("http://127.0.0.1:9000/").unwrap();
        assert!(all.domains.is_none() && all.wants("a@anything.test"));
        // An `=` in the query does not make the text a filter.
        let query = Webhook::parse("http://127.0.0.1/?a=b").unwrap();
        assert!(query.domains.is_none());
        assert_eq!(query.url.path, "/?a=b");

        let one = Webhook::parse("example.test=http://127.0.0.1/").unwrap();
        assert!(one.wants("bob@example.test"));
        assert!(!one.wants("bob@sub.example.test"));
        assert!(!one.wants("bob@other.test"));
        let tree = Webhook::parse("*.example.test=http://127.0.0.1/").unwrap();
        assert!(tree.wants("bob@example.test") && tree.wants("bob@a.b.example.test"));
        assert!(!tree.wants("bob@badexample.test") && !tree.wants("no-at-sign"));

        for bad in [
            "a b=http://127.0.0.1/",
            "bob@x.test=http://127.0.0.1/",
            "x.test",
        ] {
            assert!(Webhook::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_lose_one_final_line_end_and_are_bounded() {
        let key = |text: &str| {
            WebhookSecret::from_file_bytes(&mut text.as_bytes().to_vec()).map(|s| s.0.to_vec())
        };
        assert_eq!(key("0123456789abcdef\n").unwrap(), b"0123456789abcdef");
        assert_eq!(key("0123456789abcdef\r\n").unwrap(), b"0123456789abcdef");
        assert_eq!(key("0123456789abcdef \n").unwrap(), b"0123456789abcdef ");
        assert!(key("short\n").unwrap_err().contains("16 to 1024 bytes"));
        assert!(key(&"k".repeat(1025)).is_err());
        let secret = WebhookSecret(b"0123456789abcdef".to_vec().into_boxed_slice());
        assert_eq!(format!("{secret:?}"), "WebhookSecret(16 bytes)");
    }
}
