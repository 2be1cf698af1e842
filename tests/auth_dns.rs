//! Sender authentication (`mayfly::auth`) against a real authoritative DNS server, through
//! the library API and, at the end, through the real binary (`--verify-senders annotate`).
//!
//! Each test starts its own `nsd` (Debian package `nsd`; `tests/run.sh` installs it) on
//! 127.0.0.1 and a free port, in the foreground, as the current user, with a config and
//! zone files written into a temporary directory, and drives `auth::Verifier` through the
//! library API with `--dns-resolver` pointed at it. DKIM keys (RSA-2048 from `openssl`,
//! Ed25519 from ring) are made once per run and published in the zones; messages are
//! signed and ARC-sealed with mail-auth's own signer and sealer.
//!
//! Client addresses are TEST-NET-1 (192.0.2.0/24), not 127.0.0.x: hickory answers every
//! PTR query under 127.in-addr.arpa itself with `localhost.` (RFC 6761), so a loopback
//! client would never reach the test's reverse zone.

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

mod common;

use futures_channel::oneshot;
use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults};
use mayfly::auth::{
    self, AuthResults, DmarcPolicy, DnsResolver, DnsblVerdict, SpfIdentity, Verdict, Verifier,
    VerifierConfig, VerifyRequest,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};

/// Our authserv-id in every request.
const AUTHSERV_ID: &str = "mx.mayfly.test";
/// PTR mail.sender.test, whose A record points back: iprev passes; SPF's permitted host.
const GOOD_IP: &str = "192.0.2.10";
/// PTR liar.sender.test, whose A record points elsewhere: iprev fails.
const LIAR_IP: &str = "192.0.2.20";
/// No PTR record: iprev permerror.
const UNNAMED_IP: &str = "192.0.2.30";
/// Listed in dnsbl.test.
const LISTED_IP: &str = "192.0.2.66";
/// The deadline of the tests that expect answers: generous, since a debug build checks
/// RSA signatures slowly and two cores are shared with other builds.
const DEADLINE: Duration = Duration::from_secs(5);
/// How long a test waits for any answer before calling it a hang.
const ANSWER_WAIT_MAX: Duration = Duration::from_secs(20);
/// How long nsd may take to answer its first query.
const NSD_START_WAIT_MAX: Duration = Duration::from_secs(10);

// ---- the cases ----

#[test]
fn spf_gives_every_result() {
    let dns = Nsd::start();
    let verifier = dns.verifier(DEADLINE);
    let message = plain_message("alice@sender.test");
    let cases: &[(&str, &str, &str, Verdict, &str)] = &[
        // (client, helo, mail from, result, domain)
        (
            GOOD_IP,
            "mail.sender.test",
            "a@pass.sender.test",
            Verdict::Pass,
            "pass.sender.test",
        ),
        (
            LIAR_IP,
            "mail.sender.test",
            "a@pass.sender.test",
            Verdict::Fail,
            "pass.sender.test",
        ),
        (
            GOOD_IP,
            "mail.sender.test",
            "a@fail.sender.test",
            Verdict::Fail,
            "fail.sender.test",
        ),
        (
            GOOD_IP,
            "mail.sender.test",
            "a@softfail.sender.test",
            Verdict::SoftFail,
            "softfail.sender.test",
        ),
        (
            GOOD_IP,
            "mail.sender.test",
            "a@neutral.sender.test",
            Verdict::Neutral,
            "neutral.sender.test",
        ),
        (
            GOOD_IP,
            "mail.sender.test",
            "a@none.sender.test",
            Verdict::None,
            "none.sender.test",
        ),
        (
            GOOD_IP,
            "mail.sender.test",
            "a@nxdomain.sender.test",
            Verdict::None,
            "nxdomain.sender.test",
        ),
        (
            GOOD_IP,
            "mail.sender.test",
            "a@permerror.sender.test",
            Verdict::PermError,
            "permerror.sender.test",
        ),
        (
            GOOD_IP,
            "mail.sender.test",
            "a@syntax.sender.test",
            Verdict::PermError,
            "syntax.sender.test",
        ),
    ];
    for (client, helo, mail_from, result, domain) in cases {
        let results = verify(&verifier, request(client, helo, mail_from, &message));
        assert_eq!(
            results.spf.result, *result,
            "{mail_from} from {client}: {results:?}"
        );
        assert_eq!(results.spf.domain, *domain);
        assert_eq!(results.spf.identity, SpfIdentity::MailFrom);
    }
}

#[test]
fn spf_checks_the_helo_name_for_the_null_sender() {
    let dns = Nsd::start();
    let verifier = dns.verifier(DEADLINE);
    let message = plain_message("alice@sender.test");
    let results = verify(
        &verifier,
        request(GOOD_IP, "mail.sender.test", "", &message),
    );
    assert_eq!(results.spf.result, Verdict::Pass, "{results:?}");
    assert_eq!(results.spf.identity, SpfIdentity::Helo);
    assert_eq!(results.spf.domain, "mail.sender.test");
    let results = verify(
        &verifier,
        request(LIAR_IP, "mail.sender.test", "", &message),
    );
    assert_eq!(results.spf.result, Verdict::Fail, "{results:?}");
    // An address literal names no domain: nothing to check.
    let results = verify(&verifier, request(GOOD_IP, "[192.0.2.10]", "", &message));
    assert_eq!(results.spf.result, Verdict::None, "{results:?}");
    let header = auth::header::authentication_results(AUTHSERV_ID, &results, false);
    assert!(
        header.contains("\tspf=none smtp.helo=\"[192.0.2.10]\";\r\n"),
        "{header}"
    );
}

#[test]
fn dkim_passes_with_rsa_and_ed25519_and_fails_when_the_body_changes() {
    let dns = Nsd::start();
    let verifier = dns.verifier(DEADLINE);
    let plain = plain_message("alice@example.test");
    let signed = sign_ed25519(&sign_rsa(&plain, "example.test"), "example.test");
    let results = verify(
        &verifier,
        request(GOOD_IP, "mail.sender.test", "a@pass.sender.test", &signed),
    );
    let dkim: Vec<(Verdict, &str, &str)> = results
        .dkim
        .iter()
        .map(|check| (check.result, check.domain.as_str(), check.selector.as_str()))
        .collect();
    assert_eq!(
        dkim,
        [
            (Verdict::Pass, "example.test", "ed"),
            (Verdict::Pass, "example.test", "rsa")
        ],
        "{results:?}"
    );
    assert_eq!(results.dmarc.result, Verdict::Pass);

    let tampered = change_one_body_byte(&signed);
    let results = verify(
        &verifier,
        request(GOOD_IP, "mail.sender.test", "a@pass.sender.test", &tampered),
    );
    assert!(
        results.dkim.len() == 2
            && results
                .dkim
                .iter()
                .all(|check| check.result == Verdict::Fail),
        "{results:?}"
    );
    // Nothing aligned passed any more (SPF passed for another domain).
    assert_eq!(results.spf.result, Verdict::Pass);
    assert_eq!(results.dmarc.result, Verdict::Fail, "{results:?}");
    assert_eq!(results.dmarc.policy, Some(DmarcPolicy::Reject));

    // A message without signatures: `dkim=none` in the header.
    let results = verify(
        &verifier,
        request(GOOD_IP, "mail.sender.test", "a@pass.sender.test", &plain),
    );
    assert!(results.dkim.is_empty());
    let header = auth::header::authentication_results(AUTHSERV_ID, &results, false);
    assert!(header.contains("\tdkim=none;\r\n"), "{header}");
}

#[test]
fn dmarc_passes_only_with_alignment() {
    let dns = Nsd::start();
    let verifier = dns.verifier(DEADLINE);
    struct Case {
        from: &'static str,
        /// The DKIM signing domain, if signed.
        signer: Option<&'static str>,
        mail_from: &'static str,
        result: Verdict,
        domain: &'static str,
        policy: Option<DmarcPolicy>,
    }
    let cases = [
        // DKIM aligned (same domain).
        Case {
            from: "alice@example.test",
            signer: Some("example.test"),
            mail_from: "a@pass.sender.test",
            result: Verdict::Pass,
            domain: "example.test",
            policy: Some(DmarcPolicy::Reject),
        },
        // SPF aligned, no signature.
        Case {
            from: "alice@example.test",
            signer: None,
            mail_from: "bounce@example.test",
            result: Verdict::Pass,
            domain: "example.test",
            policy: Some(DmarcPolicy::Reject),
        },
        // Both pass, neither aligned.
        Case {
            from: "alice@example.test",
            signer: Some("sender.test"),
            mail_from: "a@pass.sender.test",
            result: Verdict::Fail,
            domain: "example.test",
            policy: Some(DmarcPolicy::Reject),
        },
        // Relaxed alignment (the default): a subdomain's From, the parent's signature.
        Case {
            from: "alice@news.example.test",
            signer: Some("example.test"),
            mail_from: "a@pass.sender.test",
            result: Verdict::Pass,
            domain: "news.example.test",
            policy: Some(DmarcPolicy::Reject),
        },
        // Strict alignment (adkim=s, aspf=s): the same signature and envelope fail.
        Case {
            from: "alice@strict.example.test",
            signer: Some("example.test"),
            mail_from: "bounce@example.test",
            result: Verdict::Fail,
            domain: "strict.example.test",
            policy: Some(DmarcPolicy::Quarantine),
        },
        // No DMARC record.
        Case {
            from: "alice@sender.test",
            signer: Some("sender.test"),
            mail_from: "a@pass.sender.test",
            result: Verdict::None,
            domain: "sender.test",
            policy: None,
        },
    ];
    for case in cases {
        let plain = plain_message(case.from);
        let message = match case.signer {
            Some(signer) => sign_rsa(&plain, signer),
            None => plain,
        };
        let results = verify(
            &verifier,
            request(GOOD_IP, "mail.sender.test", case.mail_from, &message),
        );
        assert_eq!(
            results.dmarc.result, case.result,
            "From {}, d={:?}, MAIL FROM {}: {results:?}",
            case.from, case.signer, case.mail_from
        );
        assert_eq!(results.dmarc.domain, case.domain);
        assert_eq!(results.dmarc.policy, case.policy);
    }
}

#[test]
fn arc_chains_are_validated() {
    let dns = Nsd::start();
    let verifier = dns.verifier(DEADLINE);
    let sealed = arc_seal(&plain_message("alice@example.test"));
    let results = verify(
        &verifier,
        request(GOOD_IP, "mail.sender.test", "a@pass.sender.test", &sealed),
    );
    assert_eq!(results.arc.result, Verdict::Pass, "{results:?}");
    let results = verify(
        &verifier,
        request(
            GOOD_IP,
            "mail.sender.test",
            "a@pass.sender.test",
            &change_one_body_byte(&sealed),
        ),
    );
    assert_eq!(results.arc.result, Verdict::Fail, "{results:?}");
    let results = verify(
        &verifier,
        request(
            GOOD_IP,
            "mail.sender.test",
            "a@pass.sender.test",
            &plain_message("alice@example.test"),
        ),
    );
    assert_eq!(results.arc.result, Verdict::None, "{results:?}");
}

#[test]
fn iprev_needs_names_that_lead_back() {
    let dns = Nsd::start();
    let verifier = dns.verifier(DEADLINE);
    let message = plain_message("alice@sender.test");
    for (client, expected) in [
        (GOOD_IP, Verdict::Pass),
        (LIAR_IP, Verdict::Fail),
        (UNNAMED_IP, Verdict::PermError),
    ] {
        let results = verify(
            &verifier,
            request(client, "mail.sender.test", "a@pass.sender.test", &message),
        );
        assert_eq!(results.iprev.result, expected, "{client}: {results:?}");
        assert_eq!(results.client_ip, None, "no client IP unless asked");
    }
    let mut asked = request(GOOD_IP, "mail.sender.test", "a@pass.sender.test", &message);
    asked.include_client_ip = true;
    let results = verify(&verifier, asked);
    assert_eq!(results.client_ip, Some(GOOD_IP.parse().unwrap()));
    let header = auth::header::authentication_results(AUTHSERV_ID, &results, true);
    assert!(
        header.ends_with("\tiprev=pass policy.iprev=192.0.2.10\r\n"),
        "{header}"
    );
    let json = serde_json::to_value(&results).unwrap();
    assert_eq!(json["client_ip"], "192.0.2.10");
}

#[test]
fn the_whole_answer_as_header_and_json() {
    let dns = Nsd::start();
    let verifier = dns.verifier(DEADLINE);
    let signed = sign_rsa(&plain_message("alice@example.test"), "example.test");
    let results = verify(
        &verifier,
        request(GOOD_IP, "mail.sender.test", "bounce@example.test", &signed),
    );
    assert_eq!(
        auth::header::authentication_results(AUTHSERV_ID, &results, false),
        "Authentication-Results: mx.mayfly.test;\r\n\
         \tspf=pass smtp.mailfrom=example.test;\r\n\
         \tdkim=pass header.d=example.test header.s=rsa;\r\n\
         \tdmarc=pass (p=reject) header.from=example.test;\r\n\
         \tarc=none;\r\n\
         \tiprev=pass\r\n"
    );
    assert_eq!(
        serde_json::to_value(&results).unwrap(),
        serde_json::json!({
            "spf": {"result": "pass", "domain": "example.test", "identity": "mailfrom"},
            "dkim": [{"result": "pass", "domain": "example.test", "selector": "rsa"}],
            "dmarc": {"result": "pass", "domain": "example.test", "policy": "reject"},
            "arc": {"result": "none"},
            "iprev": {"result": "pass"}
        })
    );
    // A forged header claiming our authserv-id goes; the answer goes on top.
    let forged = format!(
        "Authentication-Results: MX.Mayfly.Test;\r\n\tspf=pass smtp.mailfrom=example.test\r\n{}",
        String::from_utf8(signed.clone()).unwrap()
    );
    let stripped = auth::header::strip_forged(forged.as_bytes(), AUTHSERV_ID).expect("removed");
    assert_eq!(stripped, signed);
}

#[test]
fn dnsbl_listed_and_not_listed_and_cached() {
    let mut dns = Nsd::start();
    let verifier = dns.verifier(DEADLINE);
    let zones: Arc<[Box<str>]> = Arc::from(vec!["dnsbl.test".into(), "clean.test.".into()]);
    let listed = wait(verifier.dnsbl(LISTED_IP.parse().unwrap(), Arc::clone(&zones)));
    assert!(listed.is_listed(), "{listed:?}");
    assert_eq!(listed.listed_zones().collect::<Vec<_>>(), ["dnsbl.test"]);
    assert_eq!(
        listed.zones[0].verdict,
        DnsblVerdict::Listed {
            answer: "127.0.0.2".parse().unwrap()
        }
    );
    assert_eq!(listed.zones[1].verdict, DnsblVerdict::NotListed);
    let clean = wait(verifier.dnsbl(GOOD_IP.parse().unwrap(), Arc::clone(&zones)));
    assert!(!clean.is_listed(), "{clean:?}");
    assert!(
        clean
            .zones
            .iter()
            .all(|zone| zone.verdict == DnsblVerdict::NotListed)
    );
    // RFC 5782 5: every list answers for 127.0.0.2.
    let test_point = wait(verifier.dnsbl("127.0.0.2".parse().unwrap(), Arc::clone(&zones)));
    assert!(test_point.is_listed(), "{test_point:?}");

    // With the server gone, the same questions are answered from the caches: the listing
    // from mail-auth's A cache, the NXDOMAINs from hickory's negative cache.
    dns.stop();
    let again = wait(verifier.dnsbl(LISTED_IP.parse().unwrap(), Arc::clone(&zones)));
    assert_eq!(again, listed);
    let again = wait(verifier.dnsbl(GOOD_IP.parse().unwrap(), Arc::clone(&zones)));
    assert_eq!(again, clean);
    // A question never asked cannot be answered now.
    let fresh = wait(verifier.dnsbl("192.0.2.99".parse().unwrap(), zones));
    assert!(
        fresh
            .zones
            .iter()
            .all(|zone| zone.verdict == DnsblVerdict::TempError),
        "{fresh:?}"
    );
}

#[test]
fn a_resolver_that_never_answers_gives_temperror_within_the_deadline() {
    let silent = SilentResolver::bind();
    let deadline = Duration::from_millis(700);
    let verifier = start_verifier(silent.addr, deadline);
    let signed = sign_rsa(&plain_message("alice@example.test"), "example.test");
    let started = Instant::now();
    let results = verify(
        &verifier,
        request(GOOD_IP, "mail.sender.test", "a@pass.sender.test", &signed),
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= deadline.mul_f32(0.9),
        "answered early: {elapsed:?} {results:?}"
    );
    assert!(
        elapsed < deadline + Duration::from_secs(2),
        "answered late: {elapsed:?}"
    );
    assert_eq!(results.spf.result, Verdict::TempError);
    assert_eq!(results.spf.domain, "pass.sender.test");
    // The signature was seen, not checked.
    assert_eq!(results.dkim.len(), 1);
    assert_eq!(results.dkim[0].result, Verdict::TempError);
    assert_eq!(results.dkim[0].domain, "example.test");
    assert_eq!(results.dkim[0].selector, "rsa");
    assert_eq!(results.dmarc.result, Verdict::TempError);
    assert_eq!(results.dmarc.domain, "example.test");
    // ARC needs no lookup without ARC sets: finished in time.
    assert_eq!(results.arc.result, Verdict::None);
    assert_eq!(results.iprev.result, Verdict::TempError);
    let stats = verifier.stats();
    assert_eq!(
        (stats.n_verified, stats.n_deadline_expired),
        (1, 1),
        "{stats:?}"
    );
    // The sender's domain stalled: its next message is answered temperror without taking
    // a place in flight for a whole deadline; another domain is still tried.
    let again = verify(
        &verifier,
        request(GOOD_IP, "mail.sender.test", "b@pass.sender.test", &signed),
    );
    assert_eq!(again.spf.result, Verdict::TempError);
    assert_eq!(verifier.stats().n_stalled_skipped, 1);
    let other = verify(
        &verifier,
        request(GOOD_IP, "mail.sender.test", "c@other.sender.test", &signed),
    );
    assert_eq!(other.spf.result, Verdict::TempError);
    let stats = verifier.stats();
    assert_eq!(
        (stats.n_stalled_skipped, stats.n_deadline_expired),
        (1, 2),
        "{stats:?}"
    );

    let started = Instant::now();
    let zones: Arc<[Box<str>]> = Arc::from(vec!["dnsbl.test".into()]);
    let dnsbl = wait(verifier.dnsbl(LISTED_IP.parse().unwrap(), zones));
    assert_eq!(dnsbl.zones[0].verdict, DnsblVerdict::TempError);
    assert!(started.elapsed() < deadline + Duration::from_secs(2));
}

/// Once the resolver thread has checked a sender, the executor that asked has what that
/// check used and checks the sender's next messages itself, with exactly the results the
/// thread gives; what it cannot check from its cache (a PTR that does not exist, a big
/// message, many signatures) still goes to the thread, and comes back right.
#[test]
fn an_executor_checks_cached_senders_itself_with_the_threads_results() {
    let dns = Nsd::start();
    let verifier = dns.verifier(DEADLINE);
    let local = auth::LocalVerifier::new(verifier.clone());
    let plain = plain_message("alice@example.test");
    let signed = sign_ed25519(&sign_rsa(&plain, "example.test"), "example.test");
    let mut big = plain.clone();
    let tail = big.split_off(big.len() - 3);
    big.extend(
        std::iter::repeat_n(
            b"0123456789abcdef012345678901234567890123456789abcdefghijklmnopqrs\r\n".as_slice(),
            1_100,
        )
        .flatten(),
    );
    big.extend(tail);
    assert!(big.len() > auth::INLINE_MESSAGE_BYTES_MAX);
    let cases: [(&str, &str, Vec<u8>, bool); 7] = [
        ("signed twice", GOOD_IP, signed.clone(), true),
        (
            "one body byte changed",
            GOOD_IP,
            change_one_body_byte(&signed),
            true,
        ),
        ("unsigned", GOOD_IP, plain.clone(), true),
        ("ARC-sealed", GOOD_IP, arc_seal(&plain), true),
        (
            "signed twice and ARC-sealed",
            GOOD_IP,
            arc_seal(&signed),
            false,
        ),
        (
            "client without a PTR record",
            UNNAMED_IP,
            plain.clone(),
            false,
        ),
        ("over 64 KiB", GOOD_IP, big, false),
    ];
    for (case, client, message, on_executor) in cases {
        let request = || request(client, "mail.sender.test", "a@pass.sender.test", &message);
        let expected = verify(&verifier, request());
        let json = |results: &AuthResults| serde_json::to_string(results).expect("json");
        // The first check of a case may find the executor's cache cold for some name; the
        // entries it used come back just after its answer.
        let mut routes = Vec::new();
        for _ in 0..20 {
            let (answer, route) = local.verify(request());
            let results = wait(answer);
            assert_eq!(json(&results), json(&expected), "{case}, {route:?}");
            routes.push(route);
            if route == auth::Route::Executor {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if on_executor {
            assert_eq!(
                routes.last(),
                Some(&auth::Route::Executor),
                "{case}: {routes:?}"
            );
            // And stays there.
            let (answer, route) = local.verify(request());
            assert_eq!(route, auth::Route::Executor, "{case}");
            assert_eq!(json(&wait(answer)), json(&expected), "{case}");
        } else {
            assert!(
                routes.iter().all(|route| *route == auth::Route::Thread),
                "{case}: {routes:?}"
            );
        }
    }
}

#[test]
fn an_executor_keeps_running_while_the_resolver_waits() {
    let silent = SilentResolver::bind();
    let deadline = Duration::from_millis(500);
    let verifier = start_verifier(silent.addr, deadline);
    let message = plain_message("alice@example.test");
    let request = request(GOOD_IP, "mail.sender.test", "a@pass.sender.test", &message);
    let (n_ticks, results) = glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
            let ticker = {
                let ticks = std::rc::Rc::clone(&ticks);
                glommio::spawn_local(async move {
                    loop {
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                        ticks.set(ticks.get() + 1);
                    }
                })
            };
            let results = verifier.verify(request).await.expect("answered");
            drop(ticker);
            (ticks.get(), results)
        })
        .expect("executor")
        .join()
        .expect("joined");
    assert_eq!(results.spf.result, Verdict::TempError);
    // Half a second of 10 ms ticks: the executor ran the whole time.
    assert!(n_ticks >= 20, "{n_ticks} ticks");
}

#[test]
fn queued_requests_are_answered_by_their_deadline_when_every_slot_is_taken() {
    let silent = SilentResolver::bind();
    let deadline = Duration::from_millis(600);
    let verifier = start_verifier(silent.addr, deadline);
    let message = plain_message("alice@example.test");
    // Every slot in flight waits for the silent server; the rest wait in the queue.
    let n_requests = auth::IN_FLIGHT_MAX + 64;
    let started = Instant::now();
    let receivers: Vec<oneshot::Receiver<AuthResults>> = (0..n_requests)
        .map(|_| {
            verifier.verify(request(
                GOOD_IP,
                "mail.sender.test",
                "a@pass.sender.test",
                &message,
            ))
        })
        .collect();
    for receiver in receivers {
        let results = wait(receiver);
        assert_eq!(results.spf.result, Verdict::TempError);
    }
    let elapsed = started.elapsed();
    assert!(elapsed < deadline + Duration::from_secs(2), "{elapsed:?}");
    let stats = verifier.stats();
    assert_eq!(stats.n_queue_full, 0);
    assert_eq!(stats.n_verified, n_requests as u64);
    assert_eq!(stats.n_deadline_expired, n_requests as u64);
}

#[test]
fn a_full_queue_is_answered_at_once_with_temperror() {
    let silent = SilentResolver::bind();
    // Long enough that nothing taken by the thread finishes while the queue fills.
    let verifier = start_verifier(silent.addr, Duration::from_secs(30));
    let message = plain_message("alice@example.test");
    let n_requests = auth::IN_FLIGHT_MAX + auth::QUEUE_MAX + 16;
    // Each from a client of its own, so no client's share of the places in flight is
    // what turns requests away: the shared queue is.
    let mut receivers: Vec<oneshot::Receiver<AuthResults>> = (0..n_requests)
        .map(|n| {
            verifier.verify(request(
                &client_number(n),
                "mail.sender.test",
                "a@pass.sender.test",
                &message,
            ))
        })
        .collect();
    let answered: Vec<AuthResults> = receivers
        .iter_mut()
        .filter_map(|receiver| receiver.try_recv().expect("not cancelled"))
        .collect();
    let n_queue_full = verifier.stats().n_queue_full;
    assert!(answered.len() >= 16, "{} answered at once", answered.len());
    assert_eq!(answered.len() as u64, n_queue_full);
    for results in &answered {
        assert_eq!(results.spf.result, Verdict::TempError);
        assert_eq!(results.spf.domain, "pass.sender.test");
        assert_eq!(results.dkim.len(), 1);
        assert_eq!(results.dkim[0].result, Verdict::TempError);
        assert_eq!(results.dmarc.result, Verdict::TempError);
        assert_eq!(results.arc.result, Verdict::TempError);
        assert_eq!(results.iprev.result, Verdict::TempError);
        assert_eq!(results.client_ip, None);
    }
    // The thread may still be taking requests into flight (up to IN_FLIGHT_MAX, none of
    // which can finish in 30 s), which makes room in the queue: push until many pushes in
    // a row are turned away, so the queue stays full for the DNSBL request below.
    let mut n_refused_in_a_row = 0;
    for n in 0..100_000 {
        let mut extra = verifier.verify(request(
            &client_number(n_requests + n),
            "mail.sender.test",
            "a@pass.sender.test",
            &message,
        ));
        if extra.try_recv().expect("not cancelled").is_some() {
            n_refused_in_a_row += 1;
            if n_refused_in_a_row == 64 {
                break;
            }
        } else {
            n_refused_in_a_row = 0;
            receivers.push(extra);
        }
    }
    assert_eq!(n_refused_in_a_row, 64, "the queue never stayed full");
    let n_queue_full = verifier.stats().n_queue_full;
    let zones: Arc<[Box<str>]> = Arc::from(vec!["dnsbl.test".into()]);
    let mut dnsbl = verifier.dnsbl(LISTED_IP.parse().unwrap(), zones);
    let answer = dnsbl
        .try_recv()
        .expect("not cancelled")
        .expect("answered at once");
    assert_eq!(answer.zones[0].verdict, DnsblVerdict::TempError);
    assert_eq!(verifier.stats().n_queue_full, n_queue_full + 1);
}

/// One client's checks all hang (its sender domain's name servers never answer): it holds
/// its share of the places in flight, and another client's message, right behind its
/// flood, is checked in full at once instead of waiting out the deadline in the queue.
#[test]
fn a_client_whose_lookups_hang_leaves_places_for_the_others() {
    let dns = Nsd::start();
    let relay = DroppingRelay::start(dns.addr, "blackhole.test");
    let deadline = Duration::from_secs(4);
    let verifier = start_verifier(relay.addr, deadline);
    let message = plain_message("alice@example.test");
    let n_hung = auth::IN_FLIGHT_MAX + 16;
    let mut hung: Vec<oneshot::Receiver<AuthResults>> = (0..n_hung)
        .map(|n| {
            verifier.verify(request(
                LIAR_IP,
                "mail.sender.test",
                &format!("a{n}@blackhole.test"),
                &message,
            ))
        })
        .collect();
    let results = verify(
        &verifier,
        request(GOOD_IP, "mail.sender.test", "a@pass.sender.test", &message),
    );
    assert_eq!(results.spf.result, Verdict::Pass, "{results:?}");
    assert_eq!(results.iprev.result, Verdict::Pass);
    // It did not wait for the flood's deadline: none of those is answered yet.
    assert!(
        hung.iter_mut()
            .all(|receiver| receiver.try_recv().expect("not cancelled").is_none()),
        "answered only after the hung requests"
    );
    for receiver in hung {
        assert_eq!(wait(receiver).spf.result, Verdict::TempError);
    }
    let stats = verifier.stats();
    assert!(
        stats.n_deadline_expired >= auth::IN_FLIGHT_PER_CLIENT_MAX as u64,
        "{stats:?}"
    );
    assert!(relay.n_dropped() > 0);
}

// ---- the DNS server ----

/// A private nsd serving the test zones; stopped (SIGTERM) and cleaned up when dropped.
#[test]
fn the_server_prepends_its_results_strips_forged_ones_and_serves_them_as_json() {
    let dns = Nsd::start();
    let resolver = dns.addr.to_string();
    let server = common::Server::start(&[
        "--verify-senders",
        "annotate",
        "--dns-resolver",
        &resolver,
        "--hostname",
        AUTHSERV_ID,
        "--auth-timeout",
        "5s",
    ]);
    let signed = sign_rsa(&plain_message("alice@example.test"), "example.test");
    // A sender's header claiming to be ours, with a better verdict than the truth.
    let mut forged =
        b"Authentication-Results: MX.mayfly.test; spf=pass smtp.mailfrom=evil.test\r\n".to_vec();
    forged.extend_from_slice(&signed);
    let mut smtp = server.smtp_ehlo();
    // Pipelined: two messages whose checks run while the session goes on.
    smtp.send_mail("bounce@example.test", &["bob@mayfly.test"], &forged);
    smtp.send_mail(
        "someone@sender.test",
        &["bob@mayfly.test"],
        &plain_message("x@sender.test"),
    );
    let listing = server.wait_inbox_total("bob@mayfly.test", 2);
    let first_id = listing["messages"][1]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let raw = server.raw("bob@mayfly.test", &first_id);
    let text = String::from_utf8(raw.clone()).expect("text");
    assert!(
        text.starts_with(
            "Authentication-Results: mx.mayfly.test;\r\n\
             \tspf=pass smtp.mailfrom=example.test;\r\n\
             \tdkim=pass header.d=example.test header.s=rsa;\r\n\
             \tdmarc=pass (p=reject) header.from=example.test;\r\n\
             \tarc=none;\r\n\
             \tiprev="
        ),
        "{text}"
    );
    // Ours, then our Received header, then exactly the signed message: the forged one went.
    assert!(raw.ends_with(&signed), "{text}");
    assert_eq!(text.matches("Authentication-Results:").count(), 1, "{text}");
    assert!(text.contains("\r\nReceived: "), "{text}");
    // No client address anywhere without --log-client-ip.
    assert!(!text.contains("127.0.0.1"), "{text}");
    let message = server
        .get(&format!(
            "{}/messages/{first_id}",
            common::inbox_path("bob@mayfly.test")
        ))
        .json();
    assert_eq!(message["auth"]["spf"]["result"], "pass");
    assert_eq!(message["auth"]["dkim"][0]["domain"], "example.test");
    assert_eq!(message["auth"]["dkim"][0]["result"], "pass");
    assert_eq!(message["auth"]["dmarc"]["policy"], "reject");
    assert!(message["auth"].get("client_ip").is_none());
    // The second message: unsigned, and its sender's domain publishes no SPF for this
    // client: none and none, stored all the same.
    let second_id = listing["messages"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let second = server
        .get(&format!(
            "{}/messages/{second_id}",
            common::inbox_path("bob@mayfly.test")
        ))
        .json();
    assert_eq!(second["auth"]["dkim"], serde_json::json!([]));
    assert_eq!(second["auth"]["spf"]["domain"], "sender.test");
    // /metrics counts one result per check per message; DKIM passed once.
    let metrics = server.metrics();
    let series = |check: &str, result: &str| {
        let prefix = format!("mayfly_auth_results_total{{check=\"{check}\",result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix)?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
    };
    assert_eq!(series("dkim", "pass"), 1);
    assert_eq!(series("dkim", "none"), 1);
    assert_eq!(series("spf", "pass"), 1);
    assert_eq!(series("dmarc", "pass"), 1);
    let spf_total: u64 = [
        "pass",
        "fail",
        "softfail",
        "neutral",
        "none",
        "temperror",
        "permerror",
    ]
    .iter()
    .map(|result| series("spf", result))
    .sum();
    assert_eq!(spf_total, 2, "{metrics}");

    // The same sender again: its executor has what the first check used by now (or
    // after a message or two) and checks it itself, with the same results.
    let on_executor = |metrics: &str| {
        metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix("mayfly_auth_checks_on_executor_total ")?
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no mayfly_auth_checks_on_executor_total in {metrics}"))
    };
    assert_eq!(
        on_executor(&metrics),
        0,
        "the first check of each sender is the thread's"
    );
    let header_of = |raw: &[u8]| {
        let text = String::from_utf8_lossy(raw).into_owned();
        text[..text.find("\r\nReceived: ").expect("Received")].to_string()
    };
    let first_header = header_of(&raw);
    let mut n_sent = 2;
    while n_sent < 12 && on_executor(&server.metrics()) == 0 {
        smtp.send_mail("bounce@example.test", &["bob@mayfly.test"], &signed);
        n_sent += 1;
        server.wait_inbox_total("bob@mayfly.test", n_sent);
    }
    assert_eq!(on_executor(&server.metrics()), 1, "after {n_sent} messages");
    let listing = server.wait_inbox_total("bob@mayfly.test", n_sent);
    let newest = listing["messages"][0]["id"].as_str().expect("id");
    assert_eq!(
        header_of(&server.raw("bob@mayfly.test", newest)),
        first_header
    );
}

/// `--dnsbl`: a listed client gets 554 5.7.1 instead of the greeting, 503 to whatever it
/// sends and 221 to QUIT; weights add up against the threshold, an allowlist's negative
/// weight cancels a listing, and a client no list names is served.
#[test]
fn blocklisted_clients_get_554_before_the_greeting() {
    let dns = Nsd::start();
    let resolver = dns.addr.to_string();
    let server = common::Server::start(&[
        "--dnsbl",
        "dnsbl.test*2",
        "--dnsbl",
        "clean.test",
        "--dnsbl",
        "allow.test*-5",
        "--dnsbl-threshold",
        "2",
        "--dns-resolver",
        &resolver,
        "--auth-timeout",
        "5s",
    ]);
    let addr = SocketAddr::from(([127, 0, 0, 1], server.smtp_port()));
    let mut listed = common::Smtp::connect_from(addr, "127.0.0.2".parse().unwrap());
    listed
        .read_reply()
        .assert_starts("554 5.7.1 Service unavailable; client blocked using dnsbl.test");
    listed.expect("EHLO client.test", "503 5.5.1");
    listed.expect("MAIL FROM:<a@sender.test>", "503 5.5.1");
    listed.expect("QUIT", "221 2.0.0");
    assert!(listed.read_reply_or_close().is_none(), "closed after QUIT");

    // Listed in dnsbl.test (+2) and in the allowlist (-5): served.
    let mut allowed = common::Smtp::connect_from(addr, "127.0.0.3".parse().unwrap());
    allowed.read_reply().assert_code(220);
    allowed.expect("EHLO client.test", "250");
    allowed.send_mail(
        "a@sender.test",
        &["bob@mayfly.test"],
        b"Subject: hi\r\n\r\nok\r\n",
    );
    allowed.expect("QUIT", "221");
    // Named by no list.
    let mut clean = common::Smtp::connect(addr);
    clean.read_reply().assert_code(220);
    clean.expect("QUIT", "221");

    // A listed client that never quits is closed after its few commands.
    let mut stubborn = common::Smtp::connect_from(addr, "127.0.0.2".parse().unwrap());
    stubborn.read_reply().assert_starts("554 5.7.1");
    let mut n_answered = 0;
    for _ in 0..20 {
        if !stubborn.try_send(b"NOOP\r\n") {
            break;
        }
        match stubborn.read_reply_or_close() {
            Some(reply) => {
                reply.assert_starts("503 5.5.1");
                n_answered += 1;
            }
            None => break,
        }
    }
    assert!(n_answered < 20, "the connection was never closed");
    assert_eq!(
        server.metric_total("mayfly_smtp_sessions_blocklisted_total"),
        2
    );
    assert_eq!(server.metric_total("mayfly_dnsbl_lookup_failures_total"), 0);
    assert_eq!(server.metric_total("mayfly_dnsbl_queries_total"), 4);
    server.wait_inbox_total("bob@mayfly.test", 1);
}

struct Nsd {
    child: Option<Child>,
    addr: SocketAddr,
    /// The config, zones and log, kept across start attempts; removed after nsd stops.
    dir: common::ScratchDir,
}

impl Nsd {
    fn start() -> Nsd {
        let program = which("nsd").unwrap_or_else(|| {
            panic!("nsd is not installed: `apt-get install -y nsd` (tests/run.sh does it)")
        });
        let mut nsd = Nsd {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: common::ScratchDir::new("auth-dns"),
        };
        let dir = nsd.dir.path().to_path_buf();
        let mut zone_lines = String::new();
        for (name, text) in zones(keys()) {
            let file = format!("{}.zone", name.trim_end_matches('.'));
            std::fs::write(dir.join(&file), text).expect("zone file");
            zone_lines.push_str(&format!(
                "zone:\n    name: \"{name}\"\n    zonefile: \"{file}\"\n"
            ));
        }
        // A free port for UDP and TCP alike; nsd binds it a moment later (a port taken
        // in between shows as nsd exiting, and the next attempt takes another).
        for _attempt in 0..5 {
            let port = free_port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let conf = format!(
                "server:\n    ip-address: 127.0.0.1@{port}\n    username: \"\"\n    database: \"\"\n\
                 \x20   zonesdir: \"{dir}\"\n    pidfile: \"{dir}/nsd.pid\"\n    xfrdfile: \"{dir}/xfrd.state\"\n\
                 \x20   xfrdir: \"{dir}\"\n    zonelistfile: \"{dir}/zone.list\"\n    server-count: 1\n\
                 \x20   do-ip6: no\n    verbosity: 1\nremote-control:\n    control-enable: no\n{zone_lines}",
                dir = dir.display()
            );
            std::fs::write(dir.join("nsd.conf"), conf).expect("nsd.conf");
            let log = std::fs::File::create(dir.join("nsd.log")).expect("log");
            let child = Command::new(&program)
                .arg("-d")
                .arg("-c")
                .arg(dir.join("nsd.conf"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("nsd starts");
            nsd.child = Some(child);
            nsd.addr = addr;
            if nsd.wait_ready() {
                return nsd;
            }
            nsd.stop();
        }
        panic!(
            "nsd never answered; its log:\n{}",
            std::fs::read_to_string(dir.join("nsd.log")).unwrap_or_default()
        );
    }

    fn verifier(&self, deadline: Duration) -> Verifier {
        start_verifier(self.addr, deadline)
    }

    /// Waits until nsd answers a query for the zone apex, or exits.
    fn wait_ready(&mut self) -> bool {
        let started = Instant::now();
        let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let query = soa_query("test.");
        while started.elapsed() < NSD_START_WAIT_MAX {
            let exited = self
                .child
                .as_mut()
                .is_none_or(|child| child.try_wait().ok().flatten().is_some());
            if exited {
                return false;
            }
            let _ = socket.send_to(&query, self.addr);
            let mut answer = [0u8; 512];
            if let Ok(n) = socket.recv(&mut answer) {
                // Same id, a response, RCODE NOERROR.
                if n >= 12
                    && answer[..2] == query[..2]
                    && answer[2] & 0x80 != 0
                    && answer[3] & 0x0f == 0
                {
                    return true;
                }
            }
        }
        false
    }

    /// Stops nsd with SIGTERM (SIGKILL would leave its server process holding the port).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = i32::try_from(child.id()).expect("pid");
        // SAFETY: kill(2) with a pid we started and have not reaped yet; no memory involved.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let _ = child.wait();
    }
}

impl Drop for Nsd {
    /// Stops nsd before `dir` goes.
    fn drop(&mut self) {
        self.stop();
    }
}

/// A name server that never answers: a UDP socket and a TCP listener on one port that
/// nobody reads (the kernel completes TCP handshakes into the backlog, and then nothing).
struct SilentResolver {
    _udp: UdpSocket,
    _tcp: TcpListener,
    addr: SocketAddr,
}

impl SilentResolver {
    fn bind() -> SilentResolver {
        for _attempt in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
            let addr = udp.local_addr().expect("addr");
            if let Ok(tcp) = TcpListener::bind(addr) {
                return SilentResolver {
                    _udp: udp,
                    _tcp: tcp,
                    addr,
                };
            }
        }
        panic!("no port free for both UDP and TCP");
    }
}

/// A name server that answers as `upstream` does, except for names at or under `dropped`,
/// which it never answers (as a dead or firewalled name server would): a UDP relay on a
/// thread of its own, stopped when dropped.
struct DroppingRelay {
    addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
    n_dropped: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DroppingRelay {
    fn start(upstream: SocketAddr, dropped: &str) -> DroppingRelay {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let n_dropped = Arc::new(AtomicU32::new(0));
        let suffix = format!(".{}", dropped.trim_end_matches('.').to_ascii_lowercase());
        let thread = {
            let (stop, n_dropped) = (Arc::clone(&stop), Arc::clone(&n_dropped));
            std::thread::spawn(move || {
                // Query id -> who asked (ids are random per query; a clash only loses
                // an answer, which the asker retries).
                let mut askers: std::collections::HashMap<[u8; 2], SocketAddr> =
                    std::collections::HashMap::new();
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let datagram = &buf[..n];
                    if n < 12 {
                        continue;
                    }
                    let id = [datagram[0], datagram[1]];
                    if from == upstream {
                        if let Some(asker) = askers.remove(&id) {
                            let _ = socket.send_to(datagram, asker);
                        }
                        continue;
                    }
                    let name = format!(".{}", question_name(datagram));
                    if name.ends_with(&suffix) {
                        n_dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    askers.insert(id, from);
                    let _ = socket.send_to(datagram, upstream);
                }
            })
        };
        DroppingRelay {
            addr,
            stop,
            n_dropped,
            thread: Some(thread),
        }
    }

    fn n_dropped(&self) -> u32 {
        self.n_dropped.load(Ordering::Relaxed)
    }
}

impl Drop for DroppingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The question's name of a DNS query, lowercase, dotted, without the root's dot;
/// whatever could be read of it when the query is malformed.
fn question_name(datagram: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut idx = 12;
    while let Some(&len) = datagram.get(idx) {
        let len = usize::from(len);
        if len == 0 || len > 63 {
            break;
        }
        let Some(label) = datagram.get(idx + 1..idx + 1 + len) else {
            break;
        };
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        idx += 1 + len;
    }
    labels.join(".")
}

/// A distinct client address for request `n` (198.18.0.0/15, for benchmarks: RFC 2544).
fn client_number(n: usize) -> String {
    let n = u32::try_from(n).expect("few requests") & 0x1_ffff;
    IpAddr::from(std::net::Ipv4Addr::from(0xc612_0000 | n)).to_string()
}

fn start_verifier(addr: SocketAddr, deadline: Duration) -> Verifier {
    Verifier::start(VerifierConfig {
        resolver: DnsResolver::At(addr),
        deadline,
    })
    .expect("verifier starts")
}

/// A port free for both UDP and TCP on 127.0.0.1 at this moment.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A DNS query for `name`'s SOA record (RFC 1035 4.1), id 0x4d59.
fn soa_query(name: &str) -> Vec<u8> {
    let mut query = vec![0x4d, 0x59, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        query.push(u8::try_from(label.len()).expect("short label"));
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 6, 0, 1]);
    query
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

// ---- keys, zones, messages ----

/// Key pairs made once per run.
struct Keys {
    rsa_pkcs1: Vec<u8>,
    rsa_public_b64: String,
    ed_pkcs8: Vec<u8>,
    ed_public_b64: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // ring cannot make RSA keys; openssl can, in a fraction of a second (its DER
        // output for RSA is PKCS#1).
        let rsa = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-outform",
                "DER",
            ])
            .output()
            .expect("openssl runs");
        assert!(
            rsa.status.success(),
            "openssl genpkey: {}",
            String::from_utf8_lossy(&rsa.stderr)
        );
        let rsa_pkcs1 = rsa.stdout;
        let mut public = Command::new("openssl")
            .args(["pkey", "-inform", "DER", "-pubout", "-outform", "PEM"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        std::io::Write::write_all(&mut public.stdin.take().expect("stdin"), &rsa_pkcs1)
            .expect("key to openssl");
        let public = public.wait_with_output().expect("openssl pkey");
        assert!(public.status.success());
        // The PEM body is the base64 of the SubjectPublicKeyInfo, which is DKIM's `p=`.
        let rsa_public_b64: String = String::from_utf8(public.stdout)
            .expect("pem")
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let ed_pkcs8 = Ed25519Key::generate_pkcs8().expect("ed25519 key");
        let ed_public = Ed25519Key::from_pkcs8_der(&ed_pkcs8)
            .expect("ed25519")
            .public_key();
        Keys {
            rsa_pkcs1,
            rsa_public_b64,
            ed_pkcs8,
            ed_public_b64: base64(&ed_public),
        }
    })
}

/// Every zone nsd serves. `test.` holds the others' parent, so a DMARC tree walk that
/// climbs to `_dmarc.test.` gets NXDOMAIN rather than REFUSED.
fn zones(keys: &Keys) -> Vec<(&'static str, String)> {
    let rsa_key = txt(&format!("v=DKIM1; k=rsa; p={}", keys.rsa_public_b64));
    let ed_key = txt(&format!("v=DKIM1; k=ed25519; p={}", keys.ed_public_b64));
    let soa = "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n@ IN NS ns.test.\n";
    vec![
        (
            "test.",
            format!("$ORIGIN test.\n$TTL 300\n{soa}ns IN A 127.0.0.1\n"),
        ),
        (
            "example.test.",
            format!(
                "$ORIGIN example.test.\n$TTL 300\n{soa}\
                 @ IN TXT \"v=spf1 ip4:{GOOD_IP} ip4:127.0.0.1 -all\"\n\
                 _dmarc IN TXT \"v=DMARC1; p=reject\"\n\
                 rsa._domainkey IN TXT {rsa_key}\n\
                 ed._domainkey IN TXT {ed_key}\n\
                 news IN A 192.0.2.1\n\
                 strict IN A 192.0.2.1\n\
                 _dmarc.strict IN TXT \"v=DMARC1; p=quarantine; adkim=s; aspf=s\"\n"
            ),
        ),
        (
            "sender.test.",
            format!(
                "$ORIGIN sender.test.\n$TTL 300\n{soa}\
                 pass IN TXT \"v=spf1 ip4:{GOOD_IP} -all\"\n\
                 fail IN TXT \"v=spf1 -all\"\n\
                 softfail IN TXT \"v=spf1 ~all\"\n\
                 neutral IN TXT \"v=spf1 ?all\"\n\
                 none IN A 192.0.2.1\n\
                 permerror IN TXT \"v=spf1 redirect=missing.sender.test\"\n\
                 syntax IN TXT \"v=spf1 ip4:192.0.2 -all\"\n\
                 mail IN A {GOOD_IP}\n\
                 mail IN TXT \"v=spf1 a -all\"\n\
                 liar IN A 192.0.2.99\n\
                 rsa._domainkey IN TXT {rsa_key}\n\
                 arc._domainkey IN TXT {rsa_key}\n"
            ),
        ),
        (
            "2.0.192.in-addr.arpa.",
            format!(
                "$ORIGIN 2.0.192.in-addr.arpa.\n$TTL 300\n{soa}\
                 10 IN PTR mail.sender.test.\n\
                 20 IN PTR liar.sender.test.\n"
            ),
        ),
        (
            "dnsbl.test.",
            format!(
                "$ORIGIN dnsbl.test.\n$TTL 300\n{soa}\
                 66.2.0.192 IN A 127.0.0.2\n\
                 66.2.0.192 IN TXT \"listed for the test\"\n\
                 2.0.0.127 IN A 127.0.0.2\n\
                 3.0.0.127 IN A 127.0.0.2\n"
            ),
        ),
        (
            "clean.test.",
            format!("$ORIGIN clean.test.\n$TTL 300\n{soa}"),
        ),
        (
            // An allowlist (negative weight) that names 127.0.0.3 only.
            "allow.test.",
            format!("$ORIGIN allow.test.\n$TTL 300\n{soa}3.0.0.127 IN A 127.0.0.2\n"),
        ),
    ]
}

/// A TXT record's data as quoted strings of at most 255 octets each (RFC 1035 3.3.14).
fn txt(text: &str) -> String {
    text.as_bytes()
        .chunks(255)
        .map(|chunk| format!("\"{}\"", std::str::from_utf8(chunk).expect("ascii")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn plain_message(from: &str) -> Vec<u8> {
    static N_MESSAGES: AtomicU32 = AtomicU32::new(0);
    let n = N_MESSAGES.fetch_add(1, Ordering::Relaxed);
    format!(
        "From: Alice <{from}>\r\nTo: bob@mayfly.test\r\nSubject: who sent this\r\n\
         Date: Sat, 05 Dec 2026 07:00:00 +0000\r\nMessage-ID: <{n}.auth@example.test>\r\n\r\n\
         Hello Bob,\r\n\r\nthis message was signed in a test.\r\n"
    )
    .into_bytes()
}

const SIGNED_HEADERS: [&str; 5] = ["From", "To", "Subject", "Date", "Message-ID"];

fn rsa_key() -> RsaKey<Sha256> {
    let der = PrivatePkcs1KeyDer::from(keys().rsa_pkcs1.as_slice());
    RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(der)).expect("rsa key")
}

fn sign_rsa(message: &[u8], domain: &str) -> Vec<u8> {
    let key = rsa_key();
    let signature = DkimSigner::from_key(key)
        .domain(domain)
        .selector("rsa")
        .headers(SIGNED_HEADERS)
        .sign(message)
        .expect("signed");
    [signature.to_header().as_bytes(), message].concat()
}

fn sign_ed25519(message: &[u8], domain: &str) -> Vec<u8> {
    let key = Ed25519Key::from_pkcs8_der(&keys().ed_pkcs8).expect("ed25519 key");
    let signature = DkimSigner::from_key(key)
        .domain(domain)
        .selector("ed")
        .headers(SIGNED_HEADERS)
        .sign(message)
        .expect("signed");
    [signature.to_header().as_bytes(), message].concat()
}

/// Seals `message` as the first ARC hop, sender.test with selector `arc`.
fn arc_seal(message: &[u8]) -> Vec<u8> {
    let key = rsa_key();
    let parsed = AuthenticatedMessage::parse(message).expect("parses");
    let results = AuthenticationResults::new("mx.sender.test");
    let set = ArcSealer::from_key(key)
        .domain("sender.test")
        .selector("arc")
        .headers(["From", "To", "Subject"])
        .seal(&parsed, &results, &ArcOutput::default())
        .expect("sealed");
    [set.to_header().as_bytes(), message].concat()
}

/// `message` with its last body letter changed (`.` before the final CRLF is kept).
fn change_one_body_byte(message: &[u8]) -> Vec<u8> {
    let mut changed = message.to_vec();
    let idx = changed.len() - 4;
    assert!(changed[idx].is_ascii_lowercase());
    changed[idx] = changed[idx].to_ascii_uppercase();
    changed
}

fn request(client: &str, helo: &str, mail_from: &str, message: &[u8]) -> VerifyRequest {
    VerifyRequest {
        client_ip: client.parse::<IpAddr>().expect("ip"),
        helo: helo.into(),
        mail_from: mail_from.into(),
        authserv_id: Arc::from(AUTHSERV_ID),
        message: Arc::from(message),
        include_client_ip: false,
    }
}

fn verify(verifier: &Verifier, request: VerifyRequest) -> AuthResults {
    wait(verifier.verify(request))
}

/// Awaits an answer on this thread, failing the test after `ANSWER_WAIT_MAX`.
fn wait<T: Send + 'static>(receiver: oneshot::Receiver<T>) -> T {
    let (done, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(futures_lite::future::block_on(receiver));
    });
    answer
        .recv_timeout(ANSWER_WAIT_MAX)
        .expect("answered in time")
        .expect("answered, not cancelled")
}

/// Standard base64 with padding, as DKIM's `p=` tag takes it.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
