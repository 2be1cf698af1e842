//! The `http_request` target: `http::request::parse` at every split of the stream, with
//! pipelined requests, then `http::api::route` under two domain policies, and
//! `http::api::authorize` with and without private inboxes.

use async_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::address::InboxKey;
use crate::config::DomainPolicy;
use crate::fuzzing::DOMAINS;
use crate::http::api::{self, Route};
use crate::http::request::{self, Limits, Request};
use crate::http::response::Response;
use crate::token::{InboxTokens, SecretSource};

/// The HTTP server's request limits.
pub const HTTP_LIMITS: Limits = crate::net::http_conn::LIMITS;
/// Inputs up to this long are parsed at every split; longer ones at a sample of splits
/// (every split of a 4 KiB input would make the fuzzer 40 times slower).
const HTTP_EVERY_SPLIT_BYTES_MAX: usize = 512;
/// Splits tried on longer inputs, spread evenly, besides those around the request's end.
const HTTP_SAMPLED_SPLITS: usize = 48;

/// The HTTP request parser and the router, as `net::http_conn` uses them.
///
/// The input is the client's byte stream (no options). Checks: no split of the stream
/// changes the outcome (a prefix of a complete request needs more bytes; a prefix of a
/// refused stream needs more bytes or is refused with the same status), the consumed count
/// is within the input and re-parsing exactly the consumed bytes gives the same request,
/// pipelined requests are taken one after another; then every request is routed under a
/// configured domain list and a catch-all policy, and every response (routing errors and
/// parse errors) serialises into a head that parses back with the same status and a
/// `Content-Length` that matches the body. Routed inboxes are accepted domains in
/// canonical form, and a WebSocket route's accept value is the one RFC 6455 derives. With
/// private inboxes a route passes unchanged or, if it names an inbox, is refused with
/// exactly `no_such_inbox`; without them every route passes.
pub fn http_request(data: &[u8]) {
    let policies = [DomainPolicy::new(&DOMAINS), DomainPolicy::new::<&str>(&[])];
    let mut buf = data;
    // Each round consumes at least one byte (a request is never empty), so this ends.
    loop {
        let whole = request::parse(buf, &HTTP_LIMITS);
        check_http_splits(buf, &whole);
        match whole {
            Ok(Some((request, consumed))) => {
                assert!(consumed > 0 && consumed <= buf.len(), "consumed {consumed}");
                let again = request::parse(&buf[..consumed], &HTTP_LIMITS);
                assert_eq!(
                    again,
                    Ok(Some((request.clone(), consumed))),
                    "the consumed bytes alone parse differently"
                );
                for policy in &policies {
                    check_route(&request, policy);
                }
                buf = &buf[consumed..];
            }
            Ok(None) => {
                assert!(
                    buf.len() <= HTTP_LIMITS.head_bytes_max + HTTP_LIMITS.body_bytes_max,
                    "{} bytes buffered without a verdict",
                    buf.len()
                );
                return;
            }
            Err(response) => {
                assert!(
                    matches!(response.status, 400 | 413 | 414 | 431 | 501 | 505),
                    "parse answered {}",
                    response.status
                );
                check_response(&response);
                return;
            }
        }
    }
}

/// Every split of `buf` parses to "need more", or to the whole's verdict; see `http_request`.
fn check_http_splits(buf: &[u8], whole: &Result<Option<(Request, usize)>, Response>) {
    let check = |split_len: usize| {
        let prefix = &buf[..split_len];
        match (request::parse(prefix, &HTTP_LIMITS), whole) {
            (Ok(None), _) => {}
            (Ok(Some(early)), Ok(Some(late))) => {
                assert_eq!(&early, late, "a prefix of {split_len} parsed differently")
            }
            (Err(early), Err(late)) => assert_eq!(
                early.status, late.status,
                "a prefix of {split_len} was refused differently"
            ),
            (early, late) => panic!("a prefix of {split_len} gave {early:?}, the whole {late:?}"),
        }
    };
    if buf.len() <= HTTP_EVERY_SPLIT_BYTES_MAX {
        (0..buf.len()).for_each(check);
        return;
    }
    let step = buf.len() / HTTP_SAMPLED_SPLITS;
    (0..buf.len()).step_by(step.max(1)).for_each(check);
    // Around the end of the head and of the request, where the verdicts change.
    let head_end = buf
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map_or(buf.len(), |idx| idx + 4);
    let request_end = match whole {
        Ok(Some((_, consumed))) => *consumed,
        _ => buf.len(),
    };
    for end in [head_end, request_end, HTTP_LIMITS.head_bytes_max] {
        (end.saturating_sub(2)..(end + 2).min(buf.len())).for_each(check);
    }
}

/// Routes `request` under `policy` and checks the route or the refusal.
fn check_route(request: &Request, policy: &DomainPolicy) {
    let routed = api::route(request, policy);
    let route = match routed {
        Ok(route) => route,
        Err(response) => {
            assert!(
                matches!(response.status, 400 | 404 | 405 | 426),
                "routing answered {}",
                response.status
            );
            if response.status == 405 {
                assert!(response.headers.iter().any(|(name, _)| *name == "Allow"));
            }
            check_response(&response);
            return;
        }
    };
    check_authorize(request, &route);
    let check_key = |key: &InboxKey<'_>| {
        let again = InboxKey::new(key.as_str()).expect("a routed inbox is a valid key");
        assert_eq!(
            again.as_str(),
            key.as_str(),
            "a routed inbox is not canonical"
        );
        let (local_part, domain) = key
            .as_str()
            .rsplit_once('@')
            .expect("a routed inbox has a domain");
        assert!(!local_part.is_empty(), "routed an empty local part");
        assert!(policy.accepts(domain), "routed to unserved {domain:?}");
    };
    match route {
        Route::Inbox(inbox) => check_key(&inbox.key),
        Route::WebSocket { key, accept } => {
            check_key(&key);
            let upgrade = request.websocket.as_ref().expect("a WebSocket route");
            assert_eq!(upgrade.version, "13");
            assert!(
                is_base64_16(upgrade.key.as_bytes()),
                "accepted {:?}",
                upgrade.key
            );
            assert_eq!(accept, derive_accept_key(upgrade.key.as_bytes()));
        }
        Route::CreateAddress { domain, address } => {
            assert!(
                domain.is_none() || address.is_none(),
                "both a domain and an address"
            );
            if let Some(domain) = domain {
                assert_eq!(domain, domain.to_lowercase());
                assert!(policy.accepts(&domain), "address at unserved {domain:?}");
            }
            if let Some(address) = address {
                check_key(&address);
            }
        }
        Route::Asset(_) | Route::Healthz | Route::Metrics => {}
    }
}

/// `api::authorize` on a routed request; see `http_request`.
fn check_authorize(request: &Request, route: &Route) {
    let secret = [b'k'; crate::token::SECRET_BYTES_MIN];
    for required in [false, true] {
        let tokens = InboxTokens::new(&secret, required, SecretSource::Process);
        match api::authorize(route.clone(), request, &tokens) {
            Ok(passed) => assert_eq!(&passed, route, "authorize changed the route"),
            Err(refusal) => {
                assert!(required, "refused without private inboxes");
                assert!(
                    matches!(route, Route::Inbox(_) | Route::WebSocket { .. }),
                    "refused a route that names no inbox"
                );
                assert_eq!(refusal, api::no_such_inbox());
            }
        }
    }
}

/// A response serialises into a head that parses back: same status, one `Content-Length`
/// matching the body, no control bytes in any header value.
pub(super) fn check_response(response: &Response) {
    for head_only in [false, true] {
        let mut out = Vec::new();
        response.write_to(true, head_only, &mut out);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut headers);
        let head_bytes = match parsed.parse(&out) {
            Ok(httparse::Status::Complete(head_bytes)) => head_bytes,
            other => panic!("response head does not parse: {other:?}"),
        };
        assert_eq!(parsed.code, Some(response.status));
        let lengths: Vec<&[u8]> = parsed
            .headers
            .iter()
            .filter(|header| header.name.eq_ignore_ascii_case("content-length"))
            .map(|header| header.value)
            .collect();
        assert_eq!(lengths, [response.body.len().to_string().as_bytes()]);
        for header in parsed.headers.iter() {
            assert!(
                !header.value.iter().any(u8::is_ascii_control),
                "control byte in {}",
                header.name
            );
        }
        let expected_body: &[u8] = if head_only { &[] } else { &response.body };
        assert_eq!(&out[head_bytes..], expected_body);
    }
}

/// A Sec-WebSocket-Key: 16 bytes in base64 (22 characters of the alphabet and `==`).
pub(super) fn is_base64_16(key: &[u8]) -> bool {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    key.len() == 24 && key.ends_with(b"==") && key[..22].iter().all(|b| ALPHABET.contains(b))
}
