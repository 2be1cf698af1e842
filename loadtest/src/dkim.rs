//! `--dkim-key`: DKIM-signed messages (RFC 6376), so that a server which verifies
//! signatures can be loaded without the client paying for them.
//!
//! Every signature is made before the run, while the templates are built: an RSA-2048
//! signature costs ring about a millisecond, which per message would make the client the
//! bottleneck long before the server. The run then sends the signed variants in turn
//! (message `n` is variant `n mod --dkim-variants`), and the engine only prepends the
//! per-message headers as for any template.
//!
//! What a signature covers: From, To, Subject, Date, MIME-Version and Content-Type, which
//! are fixed per variant, and the body (relaxed/relaxed canonicalization, mail-auth's
//! default). Message-ID and the `X-Blaster-*` headers, written per message, stay outside it,
//! so one signature is valid on every message of its variant and `--verify` still works.
//! `{n}` in the selector becomes the variant number: with `--dkim-variants` at least
//! `--messages`, every message names a key no earlier message named, so a verifier's
//! cache never has it (publish the key under a wildcard, `*._domainkey` or
//! `*.<label>._domainkey`).
//!
//! The body is the same in every variant and is sized so that a whole message, signature
//! included, comes to `--size`: signed and unsigned runs of one size move the same bytes.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use mail_auth::common::crypto::{Algorithm, DkimKey, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::DkimSigner;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use crate::message::{self, MessageSpec, Template};

/// Most signed variants: each keeps its own header block (some 600 to 900 bytes) in
/// memory, and an RSA-2048 variant costs about a millisecond to sign before the run.
pub const VARIANTS_MAX: u64 = 100_000;
/// The longest selector or signing domain accepted (a DNS name is at most 253 octets).
pub const NAME_BYTES_MAX: usize = 200;
/// What `{n}` in `--dkim-selector` is replaced with.
pub const VARIANT_PLACEHOLDER: &str = "{n}";
/// The headers every signature covers, in this order.
pub const SIGNED_HEADERS: [&str; 6] = [
    "From",
    "To",
    "Subject",
    "Date",
    "MIME-Version",
    "Content-Type",
];

/// How to sign: the key, and the names the signatures carry.
pub struct DkimSettings {
    pub key: DkimKey,
    /// `d=`, the signing domain.
    pub domain: String,
    /// `s=`; [`VARIANT_PLACEHOLDER`] in it becomes the variant number.
    pub selector: String,
    /// Distinct signed messages, 1 to [`VARIANTS_MAX`].
    pub variants: u64,
}

impl DkimSettings {
    /// Checks the names and the variant count.
    ///
    /// # Errors
    /// A selector or domain that is empty, too long or not made of letters, digits, `-`
    /// and `.` (plus `{n}` in the selector), or a variant count out of range.
    pub fn new(key: DkimKey, domain: &str, selector: &str, variants: u64) -> anyhow::Result<Self> {
        ensure!(
            (1..=VARIANTS_MAX).contains(&variants),
            "--dkim-variants must be 1 to {VARIANTS_MAX}"
        );
        check_name("--dkim-domain", domain)?;
        check_name(
            "--dkim-selector",
            &selector.replace(VARIANT_PLACEHOLDER, "0"),
        )?;
        Ok(Self {
            key,
            domain: domain.to_owned(),
            selector: selector.to_owned(),
            variants,
        })
    }

    /// The selector of variant `variant_idx`.
    pub fn selector_of(&self, variant_idx: u64) -> String {
        self.selector
            .replace(VARIANT_PLACEHOLDER, &variant_idx.to_string())
    }
}

/// `--dkim-domain` and `--dkim-selector` become DNS names (`s._domainkey.d`): only what a
/// zone can hold, so a typo fails here rather than as a `dkim=permerror` on the server.
fn check_name(option: &str, name: &str) -> anyhow::Result<()> {
    ensure!(
        !name.is_empty() && name.len() <= NAME_BYTES_MAX,
        "{option} must be 1 to {NAME_BYTES_MAX} bytes"
    );
    ensure!(
        name.split('.').all(|label| !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')),
        "{option} {name:?} is not a DNS name (letters, digits, '-', dot-separated)"
    );
    Ok(())
}

/// Reads a DKIM private key from a PEM file: PKCS#1 (`RSA PRIVATE KEY`), or PKCS#8
/// (`PRIVATE KEY`) holding an RSA or an Ed25519 key, as `openssl genpkey` writes them.
///
/// # Errors
/// When the file cannot be read, is not PEM, or holds another kind of key.
pub fn load_key(path: &Path) -> anyhow::Result<DkimKey> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|err| anyhow::anyhow!("{}: not a PEM private key: {err}", path.display()))?;
    let key = match der {
        PrivateKeyDer::Pkcs8(pkcs8) => {
            // openssl writes Ed25519 keys as PKCS#8 v1 (no public key inside), which
            // ring accepts only through the "maybe unchecked" door.
            match Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der()) {
                Ok(key) => DkimKey::Ed25519(key),
                Err(_) => DkimKey::Rsa(
                    RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(pkcs8)).map_err(|err| {
                        anyhow::anyhow!("{}: neither Ed25519 nor RSA: {err}", path.display())
                    })?,
                ),
            }
        }
        PrivateKeyDer::Pkcs1(pkcs1) => DkimKey::Rsa(
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(pkcs1))
                .map_err(|err| anyhow::anyhow!("{}: bad RSA key: {err}", path.display()))?,
        ),
        _ => bail!(
            "{}: not an RSA or Ed25519 key (DKIM has no other kind)",
            path.display()
        ),
    };
    Ok(key)
}

/// The name of the key's algorithm as DKIM's `a=` tag says it.
pub fn algorithm_name(key: &DkimKey) -> &'static str {
    match key.algorithm() {
        Algorithm::RsaSha1 => "rsa-sha1",
        Algorithm::RsaSha256 => "rsa-sha256",
        Algorithm::Ed25519Sha256 => "ed25519-sha256",
    }
}

/// One signer per variant needs the key in each, and mail-auth's keys cannot be cloned:
/// this lends one key to all of them.
struct Lent<'a>(&'a DkimKey);

impl SigningKey for Lent<'_> {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// The signed variants of a `size_bytes` message, in variant order.
///
/// # Errors
/// When mail-auth cannot sign (it finds none of the signed headers, or the key fails).
pub fn signed_templates(
    spec: &MessageSpec,
    size_bytes: usize,
    settings: &DkimSettings,
) -> anyhow::Result<Vec<Template>> {
    // A signature's header has the same length whatever the body (bh= and b= are fixed
    // size for a key), so the last variant, with the longest selector and subject, sizes
    // the body for all.
    let last_idx = settings.variants - 1;
    let probe_body = Template::with_body(b"\r\n".to_vec());
    let probe = sign_variant(spec, settings, last_idx, &probe_body)?;
    let mut headers = Vec::new();
    spec.write_headers(&mut headers, &probe, last_idx);
    let body_bytes = size_bytes.saturating_sub(headers.len());
    let base = Template::with_body(message::generated_body(body_bytes, spec.run_id));
    (0..settings.variants)
        .map(|variant_idx| sign_variant(spec, settings, variant_idx, &base))
        .collect()
}

/// Variant `variant_idx`: its fixed header lines, signed together with `base`'s body.
fn sign_variant(
    spec: &MessageSpec,
    settings: &DkimSettings,
    variant_idx: u64,
    base: &Template,
) -> anyhow::Result<Template> {
    let mut lines = Vec::new();
    let _ = write!(
        lines,
        "From: <blaster@{domain}>\r\nTo: <{to}>\r\nSubject: smtp-blaster signed message {variant_idx}\r\n\
         Date: {date}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n",
        domain = spec.domain,
        to = spec.address(0),
        date = spec.date,
    );
    let mut message = lines.clone();
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(base.body());
    let signature = DkimSigner::from_key(Lent(&settings.key))
        .domain(settings.domain.as_str())
        .selector(settings.selector_of(variant_idx))
        .headers(SIGNED_HEADERS)
        .sign(&message)
        .with_context(|| format!("signing variant {variant_idx}"))?;
    let mut header_lines = signature.to_header().into_bytes();
    header_lines.extend_from_slice(&lines);
    Ok(base.with_headers(&header_lines))
}

#[cfg(test)]
mod tests {
    use std::borrow::Borrow;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::hash::Hash;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use mail_auth::common::cache::NoCache;
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey;
    use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
    use mail_auth::{
        AuthenticatedMessage, DkimResult, MX, MessageAuthenticator, Parameters, RecordSet,
        ResolverCache, Txt,
    };

    use super::*;

    /// A key file written by openssl, as the benchmark script makes them.
    fn openssl_key(dir: &Path, name: &str, args: &[&str]) -> std::path::PathBuf {
        let path = dir.join(name);
        // `-out` right after the command: genrsa wants the key size last.
        let output = Command::new("openssl")
            .arg(args[0])
            .arg("-out")
            .arg(&path)
            .args(&args[1..])
            .output()
            .expect("openssl runs (apt-get install openssl)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        path
    }

    fn scratch_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("blaster-dkim-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn spec() -> MessageSpec {
        MessageSpec {
            run_id: 0x5eed,
            domain: "example.test".to_owned(),
            recipients: 2,
            inboxes: 10,
            date: message::rfc5322_date(1_796_000_000),
            spread_inboxes: false,
        }
    }

    /// Undoes DATA framing as a server does, and prepends a trace header as Mayfly does.
    fn as_stored(data: &[u8]) -> Vec<u8> {
        let data = data.strip_suffix(b".\r\n").expect("final dot");
        let mut out =
            b"Received: from blaster.invalid by mx.test; Sat, 5 Dec 2026 09:00:00 +0000\r\n"
                .to_vec();
        for line in data.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        out
    }

    /// The DKIM results mail-auth gives `message`, with `keys` as the only DNS there is.
    fn verify(message: &[u8], keys: &TxtCache) -> Vec<(DkimResult, String)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // Every lookup hits `keys`; the resolver needs a name server all the same.
        let authenticator = {
            let _entered = runtime.enter();
            let server = NameServerConfig::udp("127.0.0.1".parse().expect("ip"));
            MessageAuthenticator::new(
                ResolverConfig::from_parts(None, Vec::new(), vec![server]),
                ResolverOpts::default(),
            )
            .expect("resolver")
        };
        let parsed = AuthenticatedMessage::parse(message).expect("parses");
        let params: Parameters<'_, _, TxtCache, NoMx, NoIpv4, NoIpv6, NoPtr> =
            Parameters::new(&parsed).with_txt_cache(keys);
        runtime
            .block_on(authenticator.verify_dkim(params))
            .iter()
            .map(|output| {
                let selector = output
                    .signature()
                    .map(|signature| signature.s.clone())
                    .unwrap_or_default();
                (output.result().clone(), selector)
            })
            .collect()
    }

    /// Every variant of a signed run verifies on the server's side (per-message headers
    /// and all), names its own selector, keeps the run's size, and fails once a body byte
    /// changes.
    #[test]
    fn signed_variants_verify_as_sent_and_fail_when_changed() {
        let dir = scratch_dir("verify");
        let rsa = openssl_key(
            &dir,
            "rsa.pem",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
        );
        let ed = openssl_key(&dir, "ed.pem", &["genpkey", "-algorithm", "ed25519"]);
        let spec = spec();
        for (path, record_kind, selector, algorithm) in [
            (&rsa, "rsa", "r{n}.cold", "rsa-sha256"),
            (&ed, "ed25519", "e{n}", "ed25519-sha256"),
        ] {
            let key = load_key(path).expect("key loads");
            assert_eq!(algorithm_name(&key), algorithm);
            let public = match &key {
                DkimKey::Rsa(key) => key.public_key(),
                DkimKey::Ed25519(key) => key.public_key(),
            };
            let record = format!("v=DKIM1; k={record_kind}; p={}", base64(&public));
            let settings = DkimSettings::new(key, "example.test", selector, 3).expect("settings");
            let templates = signed_templates(&spec, 1136, &settings).expect("signed");
            assert_eq!(templates.len(), 3);
            let keys = TxtCache::default();
            for variant_idx in 0..3 {
                keys.insert(
                    format!(
                        "{}._domainkey.example.test.",
                        settings.selector_of(variant_idx)
                    )
                    .into(),
                    Txt::from(DomainKey::parse(record.as_bytes()).expect("record parses")),
                    Instant::now() + Duration::from_secs(3_600),
                );
            }
            for (variant_idx, template) in templates.iter().enumerate() {
                // Two sends of one variant: different per-message headers, one signature.
                for seq in [variant_idx as u64, variant_idx as u64 + 3] {
                    let mut data = Vec::new();
                    let stored_bytes = spec.write_data_message(&mut data, template, seq);
                    assert!(stored_bytes.abs_diff(1136) < 16, "{stored_bytes} bytes");
                    let stored = as_stored(&data);
                    assert_eq!(
                        verify(&stored, &keys),
                        [(DkimResult::Pass, settings.selector_of(variant_idx as u64))],
                        "{}",
                        String::from_utf8_lossy(&stored)
                    );
                    assert!(message::check_message(&stored).checksum_ok);
                    let mut changed = stored.clone();
                    let idx = changed.len() - 3;
                    changed[idx] = if changed[idx] == b'a' { b'b' } else { b'a' };
                    let results = verify(&changed, &keys);
                    assert_eq!(results.len(), 1);
                    assert_ne!(results[0].0, DkimResult::Pass, "a changed body must fail");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn keys_load_from_every_openssl_format_and_nothing_else() {
        let dir = scratch_dir("formats");
        let pkcs1 = openssl_key(&dir, "pkcs1.pem", &["genrsa", "-traditional", "2048"]);
        assert!(
            std::fs::read_to_string(&pkcs1)
                .unwrap()
                .starts_with("-----BEGIN RSA PRIVATE KEY-----")
        );
        assert_eq!(
            algorithm_name(&load_key(&pkcs1).expect("PKCS#1")),
            "rsa-sha256"
        );
        let ec = openssl_key(
            &dir,
            "ec.pem",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
        );
        assert!(load_key(&ec).is_err(), "an EC key is no DKIM key");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a key").unwrap();
        assert!(load_key(&junk).is_err());
        assert!(load_key(&dir.join("missing.pem")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_are_checked() {
        let key = || {
            DkimKey::Ed25519(
                Ed25519Key::from_pkcs8_der(&Ed25519Key::generate_pkcs8().unwrap()).unwrap(),
            )
        };
        assert!(DkimSettings::new(key(), "example.test", "c{n}.ed", 10).is_ok());
        assert_eq!(
            DkimSettings::new(key(), "example.test", "c{n}.ed", 10)
                .unwrap()
                .selector_of(7),
            "c7.ed"
        );
        for (domain, selector, variants) in [
            ("example.test", "sel", 0),
            ("example.test", "sel", VARIANTS_MAX + 1),
            ("", "sel", 1),
            ("example..test", "sel", 1),
            ("example.test", "", 1),
            ("example.test", "a b", 1),
            ("example.test", "{m}", 1),
            ("example.test;x", "sel", 1),
        ] {
            assert!(
                DkimSettings::new(key(), domain, selector, variants).is_err(),
                "{domain} {selector} {variants}"
            );
        }
    }

    /// A TXT cache as simple as can be: the test's whole DNS.
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
}
