//! What sender authentication costs in CPU, without DNS: the floor under
//! `--verify-senders annotate` with a warm cache.
//!
//! - `signature/{rsa2048,ed25519}`: ring verifying one DKIM-sized signature (RSA-2048
//!   PKCS#1 v1.5 with SHA-256; Ed25519) over 300 bytes, the size of a canonicalized signed
//!   header block: the cryptography alone.
//! - `dkim_1KiB/{rsa2048,ed25519}`: what the resolver thread pays for DKIM on a 1 KiB
//!   signed message with the key already cached: mail-auth parses the message
//!   (`AuthenticatedMessage::parse`, which also hashes the body), finds the parsed key in a
//!   cache pre-populated through its `ResolverCache` insert API, canonicalizes the signed
//!   headers and verifies.
//! - `dkim_1KiB/parse_only`: the parse and body hash alone.
//! - `executor/{header,strip_forged}`: what an executor pays per message for `auth`: writing
//!   the Authentication-Results header, and scanning a 1 KiB message with no forged header.
//!
//! Keys are made at start (RSA-2048 by `openssl`, which ring cannot do; Ed25519 by ring).
//! Each benchmark checks its answer, so a broken setup fails instead of measuring nothing.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mail_auth::common::cache::NoCache;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::DkimSigner;
use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{
    AuthenticatedMessage, DkimResult, MX, MessageAuthenticator, Parameters, RecordSet,
    ResolverCache, Txt,
};
use mayfly::auth::{
    ArcCheck, AuthResults, DkimCheck, DmarcCheck, DmarcPolicy, IprevCheck, SpfCheck, SpfIdentity,
    Verdict,
};
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair, RsaKeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};

/// The server's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mayfly::alloc::WipingMiMalloc = mayfly::alloc::WipingMiMalloc;

/// The size of the benchmark message.
const MESSAGE_BYTES: usize = 1_024;
/// What a DKIM signature covers besides the body hash: the canonicalized signed headers
/// and the DKIM-Signature header itself, typically 200 to 400 bytes.
const SIGNED_HEADER_BYTES: usize = 300;

fn benches(criterion: &mut Criterion) {
    let rsa_pkcs1 = rsa_2048_pkcs1();
    bench_signatures(criterion, &rsa_pkcs1);
    bench_dkim(criterion, &rsa_pkcs1);
    bench_executor(criterion);
}

/// ring alone: one verification of a signature over `SIGNED_HEADER_BYTES`.
fn bench_signatures(criterion: &mut Criterion, rsa_pkcs1: &[u8]) {
    let data = vec![b'h'; SIGNED_HEADER_BYTES];
    let rng = SystemRandom::new();
    let rsa = RsaKeyPair::from_der(rsa_pkcs1).expect("rsa key");
    let mut rsa_signature = vec![0; rsa.public().modulus_len()];
    rsa.sign(
        &signature::RSA_PKCS1_SHA256,
        &rng,
        &data,
        &mut rsa_signature,
    )
    .expect("signed");
    let rsa_public =
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, rsa.public());
    let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519 key");
    let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).expect("ed25519 key");
    let ed_signature = ed.sign(&data);
    let ed_public = signature::UnparsedPublicKey::new(&signature::ED25519, ed.public_key());

    let mut group = criterion.benchmark_group("signature");
    group.bench_function("rsa2048", |bencher| {
        bencher.iter(|| {
            rsa_public
                .verify(black_box(&data), black_box(&rsa_signature))
                .expect("verifies")
        })
    });
    group.bench_function("ed25519", |bencher| {
        bencher.iter(|| {
            ed_public
                .verify(black_box(&data), black_box(ed_signature.as_ref()))
                .expect("verifies")
        })
    });
    group.finish();
}

/// mail-auth's DKIM check of a 1 KiB message, the key already in the cache.
fn bench_dkim(criterion: &mut Criterion, rsa_pkcs1: &[u8]) {
    let authenticator = offline_authenticator();
    let cache = TxtCache::default();
    let valid_until = Instant::now() + Duration::from_secs(24 * 3_600);

    let rsa_key =
        RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(rsa_pkcs1)))
            .expect("rsa key");
    let rsa_record = format!("v=DKIM1; k=rsa; p={}", base64(&rsa_key.public_key()));
    let rsa_message = signed(rsa_key, "rsa");
    insert_key(
        &cache,
        "rsa._domainkey.example.test.",
        &rsa_record,
        valid_until,
    );

    let ed_pkcs8 = Ed25519Key::generate_pkcs8().expect("ed25519 key");
    let ed_key = Ed25519Key::from_pkcs8_der(&ed_pkcs8).expect("ed25519 key");
    let ed_record = format!("v=DKIM1; k=ed25519; p={}", base64(&ed_key.public_key()));
    let ed_message = signed(ed_key, "ed");
    insert_key(
        &cache,
        "ed._domainkey.example.test.",
        &ed_record,
        valid_until,
    );

    let verify = |message: &[u8]| -> usize {
        let parsed = AuthenticatedMessage::parse(black_box(message)).expect("parses");
        let params: Parameters<'_, _, TxtCache, NoMx, NoIpv4, NoIpv6, NoPtr> =
            Parameters::new(&parsed).with_txt_cache(&cache);
        let outputs = futures_lite::future::block_on(authenticator.verify_dkim(params));
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].result(), &DkimResult::Pass);
        outputs.len()
    };
    // Checked once outside the timing too, so a setup error is reported plainly.
    verify(&rsa_message);
    verify(&ed_message);

    let mut group = criterion.benchmark_group("dkim_1KiB");
    group.bench_function("rsa2048", |bencher| bencher.iter(|| verify(&rsa_message)));
    group.bench_function("ed25519", |bencher| bencher.iter(|| verify(&ed_message)));
    group.bench_function("parse_only", |bencher| {
        bencher.iter(|| {
            let parsed = AuthenticatedMessage::parse(black_box(&rsa_message)).expect("parses");
            assert_eq!(parsed.body_hashes.len(), 1);
            parsed.raw_message().len()
        })
    });
    group.finish();
}

/// What the executor pays: our header, and the scan for forged ones in an ordinary
/// message (nothing to remove, so nothing copied).
fn bench_executor(criterion: &mut Criterion) {
    let results = passing_results();
    let message = message_text();
    let mut group = criterion.benchmark_group("executor");
    group.bench_function("header", |bencher| {
        bencher.iter(|| {
            let header = mayfly::auth::header::authentication_results(
                black_box("mx.mayfly.test"),
                black_box(&results),
                false,
            );
            assert!(header.ends_with("iprev=pass\r\n"));
            header.len()
        })
    });
    group.bench_function("strip_forged", |bencher| {
        bencher.iter(|| {
            let stripped =
                mayfly::auth::header::strip_forged(black_box(&message), "mx.mayfly.test");
            assert!(stripped.is_none());
        })
    });
    group.finish();
}

/// A 1 KiB message from example.test: headers, then body lines up to the size.
fn message_text() -> Vec<u8> {
    let mut message = "From: Alice <alice@example.test>\r\nTo: bob@mayfly.test\r\n\
         Subject: what a signature costs\r\nDate: Sat, 05 Dec 2026 07:00:00 +0000\r\n\
         Message-ID: <bench.auth@example.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n"
        .to_string();
    let line = "The quick brown fox jumps over the lazy dog, again and again.\r\n";
    while message.len() + line.len() <= MESSAGE_BYTES {
        message.push_str(line);
    }
    message.into_bytes()
}

/// The 1 KiB message with a DKIM-Signature of d=example.test in front (which makes it a
/// little over 1 KiB, as a real signed message of this body is).
fn signed<K: SigningKey<Hasher = Sha256>>(key: K, selector: &str) -> Vec<u8> {
    let message = message_text();
    let signature = DkimSigner::from_key(key)
        .domain("example.test")
        .selector(selector)
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(&message)
        .expect("signed");
    [signature.to_header().as_bytes(), &message].concat()
}

fn insert_key(cache: &TxtCache, name: &str, record: &str, valid_until: Instant) {
    let key = DomainKey::parse(record.as_bytes()).expect("key record parses");
    cache.insert(name.into(), Txt::from(key), valid_until);
}

/// A resolver that is never asked (every lookup hits the cache); it needs a name server
/// all the same.
fn offline_authenticator() -> MessageAuthenticator {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    let server = NameServerConfig::udp("127.0.0.1".parse().expect("ip"));
    MessageAuthenticator::new(
        ResolverConfig::from_parts(None, Vec::new(), vec![server]),
        ResolverOpts::default(),
    )
    .expect("resolver")
}

/// The results of a message that passed everything, for the header benchmark.
fn passing_results() -> AuthResults {
    AuthResults {
        spf: SpfCheck {
            result: Verdict::Pass,
            domain: "example.test".into(),
            identity: SpfIdentity::MailFrom,
        },
        dkim: vec![DkimCheck {
            result: Verdict::Pass,
            domain: "example.test".into(),
            selector: "rsa".into(),
        }],
        dmarc: DmarcCheck {
            result: Verdict::Pass,
            domain: "example.test".into(),
            policy: Some(DmarcPolicy::Reject),
        },
        arc: ArcCheck {
            result: Verdict::None,
        },
        iprev: IprevCheck {
            result: Verdict::Pass,
        },
        client_ip: None,
    }
}

/// An RSA-2048 private key in PKCS#1 DER, from openssl.
fn rsa_2048_pkcs1() -> Vec<u8> {
    let output = Command::new("openssl")
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
        .expect("openssl runs (apt-get install openssl)");
    assert!(output.status.success(), "openssl genpkey failed");
    output.stdout
}

/// A TXT cache as simple as can be: the bench's stand-in for the resolver thread's.
#[derive(Default)]
struct TxtCache(RefCell<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.borrow().get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.borrow_mut().remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, _valid_until: Instant) {
        self.0.borrow_mut().insert(key, value);
    }
}

type NoMx = NoCache<Box<str>, RecordSet<MX>>;
type NoIpv4 = NoCache<Box<str>, RecordSet<std::net::Ipv4Addr>>;
type NoIpv6 = NoCache<Box<str>, RecordSet<std::net::Ipv6Addr>>;
type NoPtr = NoCache<std::net::IpAddr, RecordSet<Box<str>>>;

/// Standard base64 with padding, as DKIM's `p=` tag takes it.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

criterion_group! {
    name = auth;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = benches
}
criterion_main!(auth);
