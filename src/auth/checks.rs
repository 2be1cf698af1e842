//! The checks of one message: SPF, DKIM, ARC and iprev side by side, then DMARC, which
//! needs SPF's and DKIM's results. The same code runs in two places: on the resolver
//! thread under the request's deadline (`resolver.rs`), and on an executor when every
//! answer it needs is already in that executor's caches (`inline.rs`), where a miss makes
//! the executor drop the results and hand the message to the thread after all.

use std::net::IpAddr;
use std::time::Instant;

use futures_util::future::{join, join4};
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, MessageAuthenticator, SpfOutput, SpfResult};

use crate::auth::cache::{Caches, Track};
use crate::auth::results::{
    ArcCheck, AuthResults, DkimCheck, DmarcCheck, IprevCheck, SpfCheck, bounded, spf_identity,
};
use crate::auth::{DKIM_SIGNATURES_MAX, VerifyRequest};

/// Where a check runs, and so what it may do.
pub(super) struct Checker<'x> {
    pub authenticator: &'x MessageAuthenticator,
    pub caches: &'x Caches,
    /// Notes every cache miss (and, on the thread, what the check used).
    pub track: &'x Track,
    /// On the resolver thread: the names of DMARC's tree walk that the cache lacks are
    /// asked first, so their negative answers get cached (`learn_negative_txt`). An
    /// executor asks nothing: a name it lacks is a miss like any other.
    pub resolves: bool,
    /// Signatures the check verifies at most (DKIM ones, and ARC's two per hop); a
    /// message with more is given up at once (`Track::give_up`).
    pub signatures_max: usize,
}

/// Every check of one message, each writing its part of `results` as it finishes.
pub(super) async fn check_message(
    checker: &Checker<'_>,
    request: &VerifyRequest,
    results: &mut AuthResults,
) {
    let authenticator = checker.authenticator;
    let track = checker.track;
    let caches = checker.caches.tracked(track);
    let client_ip = request.client_ip.to_canonical();
    let message = AuthenticatedMessage::parse(&request.message).map(|mut message| {
        message.dkim_headers.truncate(DKIM_SIGNATURES_MAX);
        message
    });
    if let Some(message) = &message
        && message.dkim_headers.len() + message.ams_headers.len() + message.as_headers.len()
            > checker.signatures_max
    {
        track.give_up();
        return;
    }
    // What is known before any lookup: the signatures to check and the From domain.
    match &message {
        Some(message) => {
            results.dkim = message
                .dkim_headers
                .iter()
                .map(|header| DkimCheck::unfinished(&header.header))
                .collect();
            results.dmarc.domain = from_domain(message);
        }
        None => {
            // No header at all: nothing signed, no From, no ARC.
            results.dkim.clear();
            results.dmarc = DmarcCheck {
                result: crate::auth::Verdict::None,
                domain: String::new(),
                policy: None,
            };
            results.arc.result = crate::auth::Verdict::None;
        }
    }
    let AuthResults {
        spf: spf_slot,
        dkim: dkim_slot,
        dmarc: dmarc_slot,
        arc: arc_slot,
        iprev: iprev_slot,
        ..
    } = results;
    let (identity, spf_domain) = spf_identity(request);
    let host_domain = &*request.authserv_id;
    let spf = async {
        if !is_spf_domain(spf_domain) {
            // RFC 7208 4.3: a malformed or single-label domain (an address literal as
            // the HELO name, `user@[192.0.2.1]`) gets `none` without a lookup.
            *spf_slot = SpfCheck {
                result: crate::auth::Verdict::None,
                domain: spf_domain.to_string(),
                identity,
            };
            return SpfOutput::new(spf_domain.to_string()).with_result(SpfResult::None);
        }
        let params = if request.mail_from.is_empty() {
            SpfParameters::verify_ehlo(client_ip, &request.helo, host_domain)
        } else {
            SpfParameters::verify_mail_from(
                client_ip,
                &request.helo,
                host_domain,
                &request.mail_from,
            )
        };
        let output = authenticator.verify_spf(caches.parameters(params)).await;
        *spf_slot = SpfCheck::from_output(&output, identity);
        output
    };
    let dkim = async {
        let Some(message) = &message else {
            return Vec::new();
        };
        let outputs = authenticator.verify_dkim(caches.parameters(message)).await;
        *dkim_slot = outputs.iter().map(DkimCheck::from_output).collect();
        outputs
    };
    let arc = async {
        let Some(message) = &message else {
            return;
        };
        let output = authenticator.verify_arc(caches.parameters(message)).await;
        *arc_slot = ArcCheck::from_result(output.result());
    };
    let iprev = async {
        let output = authenticator
            .verify_iprev(caches.parameters(client_ip))
            .await;
        *iprev_slot = IprevCheck::from_result(output.result());
    };
    let dmarc_names = async {
        let Some(message) = &message else {
            return;
        };
        if !checker.resolves {
            return;
        }
        // The domains whose DMARC records the check may walk to: the From domain, and
        // for relaxed alignment the SPF domain and the signing domains.
        let mut domains: Vec<String> = Vec::with_capacity(2 + message.dkim_headers.len());
        for domain in std::iter::once(from_domain(message))
            .chain(std::iter::once(spf_domain.to_ascii_lowercase()))
            .chain(
                message
                    .dkim_headers
                    .iter()
                    .map(|header| header.header.d.to_ascii_lowercase()),
            )
        {
            if !domain.is_empty() && !domains.contains(&domain) {
                domains.push(domain);
            }
        }
        for domain in &domains {
            for name in dmarc_walk_names(domain) {
                learn_negative_txt(authenticator, checker.caches, track, &name).await;
            }
        }
    };
    let ((spf_output, dkim_outputs, (), ()), ()) =
        join(join4(spf, dkim, arc, iprev), dmarc_names).await;
    let Some(message) = &message else {
        return;
    };
    // The SPF-authenticated domain DMARC aligns is the one SPF checked: MAIL FROM's, or
    // the HELO name's for the null sender (RFC 7489 3.1.2).
    let params = DmarcParameters::new(message, &dkim_outputs, spf_output.domain(), &spf_output);
    let output = authenticator.verify_dmarc(caches.parameters(params)).await;
    *dmarc_slot = DmarcCheck::from_output(&output);
}

/// The names a DMARC tree walk asks for `domain` (RFC 9989 4.10.1, as mail-auth 0.13's
/// `dmarc_tree_walk` does it): `_dmarc.` before the domain itself, then, for a name of
/// eight or more labels, before its last seven, then one label fewer at a time down to
/// the top-level domain. Empty for a single label. Lowercase and fully qualified, as
/// mail-auth keys its TXT cache.
fn dmarc_walk_names(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain
        .split('.')
        .filter(|label| !label.is_empty())
        .collect();
    let n_labels = labels.len();
    let mut names = Vec::new();
    if n_labels < 2 {
        return names;
    }
    let mut n_kept = n_labels;
    loop {
        let mut name = String::from("_dmarc.");
        for label in &labels[n_labels - n_kept..] {
            name.push_str(&label.to_ascii_lowercase());
            name.push('.');
        }
        names.push(name);
        if n_kept == 1 {
            break;
        }
        n_kept = if n_kept >= 8 { 7 } else { n_kept - 1 };
    }
    names
}

/// Makes sure the TXT cache knows whether `name` has a record. mail-auth's lookups cache
/// positive answers only; a name with no record (most `_dmarc.` names of a tree walk,
/// such as `_dmarc.com.` for every sender in .com) would go to hickory for every
/// message. So a name missing from our cache is asked here first, and a negative answer
/// that carries its SOA (so its TTL is known) is cached as negative; anything else is
/// left to mail-auth's own lookup, which then finds the answer in hickory's cache.
async fn learn_negative_txt(
    authenticator: &MessageAuthenticator,
    caches: &Caches,
    track: &Track,
    name: &str,
) {
    use mail_auth::hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
    if caches.has_txt(name, track) {
        return;
    }
    let Ok(query) = mail_auth::hickory_resolver::proto::rr::Name::from_str_relaxed(name) else {
        return;
    };
    let answer = authenticator.resolver().txt_lookup(query).await;
    if let Err(NetError::Dns(HickoryDnsError::NoRecordsFound(no_records))) = answer
        && let Some(negative_ttl_secs) = no_records.negative_ttl
    {
        caches.insert_negative_txt(
            name,
            no_records.response_code,
            std::time::Duration::from_secs(u64::from(negative_ttl_secs)),
            Instant::now(),
            track,
        );
    }
}

/// Whether SPF can check `domain` (RFC 7208 4.3): at least two labels of 1 to 63 octets,
/// at most 253 octets, and not an IP address or address literal.
pub(super) fn is_spf_domain(domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    domain.len() <= 253
        && domain.contains('.')
        && domain.parse::<IpAddr>().is_err()
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.contains(|ch: char| ch.is_whitespace() || "[]:@".contains(ch))
        })
}

/// The RFC 5322 From domain in its ASCII form, as mail-auth's DMARC check reports it;
/// empty when there is none or several differ (DMARC does not apply then, RFC 7489
/// 6.6.1).
fn from_domain(message: &AuthenticatedMessage<'_>) -> String {
    let mut domain: Option<&str> = None;
    for from in &message.from {
        let Some((_, this)) = from.rsplit_once('@') else {
            continue;
        };
        match domain {
            None => domain = Some(this),
            Some(seen) if seen.eq_ignore_ascii_case(this) => {}
            Some(_) => return String::new(),
        }
    }
    let domain = domain.unwrap_or_default();
    let ascii = idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_ascii_lowercase());
    bounded(&ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dmarc_walk_asks_the_names_mail_auth_asks() {
        assert_eq!(
            dmarc_walk_names("Mail.Example.Test"),
            [
                "_dmarc.mail.example.test.",
                "_dmarc.example.test.",
                "_dmarc.test."
            ]
        );
        assert_eq!(
            dmarc_walk_names("example.test."),
            ["_dmarc.example.test.", "_dmarc.test."]
        );
        assert!(dmarc_walk_names("localhost").is_empty());
        assert!(dmarc_walk_names("").is_empty());
        // Eight labels or more: the name itself, then its last seven, then down by one.
        let names = dmarc_walk_names("a.b.c.d.e.f.g.h.i.example.com");
        assert_eq!(names.len(), 8, "{names:?}");
        assert_eq!(names[0], "_dmarc.a.b.c.d.e.f.g.h.i.example.com.");
        assert_eq!(names[1], "_dmarc.e.f.g.h.i.example.com.");
        assert_eq!(names[7], "_dmarc.com.");
    }
}
