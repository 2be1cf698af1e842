//! TLS for the load connections: the rustls client configuration (ring provider) and the
//! non-blocking glue between a rustls `ClientConnection` and a mio socket.
//!
//! The engine never blocks, so it drives rustls by hand: ciphertext goes from the socket
//! into `read_tls`, `process_new_packets` decrypts it (and advances the handshake), and
//! plaintext comes out of `reader()`; outgoing plaintext goes into `writer()` and the
//! records it makes leave through `write_tls`. Plaintext written before the handshake is
//! over (the EHLO after STARTTLS) is held by rustls and sent as soon as the keys exist.
//!
//! Edge-triggered epoll reports new data only once, so a read must say whether the socket
//! may still hold data ([`PlainRead::Data::more`]); the socket counts as drained when its
//! last read came back short, like the plaintext path.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, ensure};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, ProtocolVersion,
    RootCertStore, SignatureScheme,
};
use serde::Serialize;

/// Largest `--tls-ca` file read; a PEM bundle of every public root is about 250 KiB.
pub const CA_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Server name sent (SNI) and verified when the target is an IP address: self-signed test
/// certificates (`mayfly --tls-self-signed`) are usually issued for a host name, rarely for
/// `127.0.0.1`.
pub const SERVER_NAME_FOR_IP_TARGETS: &str = "localhost";

/// When TLS starts on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext greeting and EHLO, then `STARTTLS` (RFC 3207), then EHLO again.
    StartTls,
    /// TLS from the first byte (RFC 8314, "smtps", port 465).
    Implicit,
}

/// Which server certificates to accept.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// Any certificate (signatures are still checked): for self-signed test servers.
    Insecure,
    /// Certificates that chain to a root in this PEM file, issued for the server name.
    CaFile(&'a Path),
}

/// Everything a load thread needs to open TLS sessions (cheap to clone).
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// When TLS starts.
    pub mode: TlsMode,
    /// The configuration every connection starts from; with `resumption`, each connection
    /// slot gets a copy with a session cache of its own ([`sender_config`]).
    pub config: Arc<ClientConfig>,
    /// Connections resume the session of their slot's previous connection.
    pub resumption: bool,
    /// Sent as SNI and checked against the certificate (unless [`Trust::Insecure`]).
    pub server_name: ServerName<'static>,
}

/// What the report says about TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsInfo {
    /// Protocol version of the first completed handshake, e.g. "TLSv1.3".
    pub version: String,
    /// Its cipher suite, e.g. "TLS13_AES_256_GCM_SHA384".
    pub cipher: String,
    /// Completed handshakes over all connections.
    pub handshakes: u64,
    /// How many of them resumed an earlier session (no certificate, cheaper for the server).
    pub resumed: u64,
}

/// Builds the client configuration: ring provider, TLS 1.2 and 1.3.
///
/// # Errors
/// When the CA file cannot be read or holds no usable certificate.
pub fn client_config(trust: Trust<'_>, resumption: bool) -> anyhow::Result<Arc<ClientConfig>> {
    client_config_with(trust, resumption, rustls::crypto::ring::default_provider())
}

/// As [`client_config`], with a crypto provider of the caller's (e.g. one key-exchange group).
///
/// # Errors
/// As [`client_config`].
pub fn client_config_with(
    trust: Trust<'_>,
    resumption: bool,
    provider: rustls::crypto::CryptoProvider,
) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(provider);
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?;
    let mut config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(&provider)))
            .with_no_client_auth(),
        Trust::CaFile(path) => builder
            .with_root_certificates(read_roots(path)?)
            .with_no_client_auth(),
    };
    if !resumption {
        config.resumption = Resumption::disabled();
    }
    Ok(Arc::new(config))
}

/// The server name for `target` ("HOST:PORT"): the host, or
/// [`SERVER_NAME_FOR_IP_TARGETS`] when the host is an IP address.
///
/// # Errors
/// When `explicit` (or the host) is not a valid DNS name or IP address.
pub fn server_name(explicit: Option<&str>, target: &str) -> anyhow::Result<ServerName<'static>> {
    let name = match explicit {
        Some(name) => name.to_owned(),
        None => {
            let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.parse::<IpAddr>().is_ok() || host.is_empty() {
                SERVER_NAME_FOR_IP_TARGETS.to_owned()
            } else {
                host.to_owned()
            }
        }
    };
    ServerName::try_from(name.clone())
        .with_context(|| format!("--tls-server-name {name:?} is not a DNS name or IP address"))
}

fn read_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(CA_FILE_BYTES_MAX + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read --tls-ca {}", path.display()))?;
    ensure!(
        bytes.len() as u64 <= CA_FILE_BYTES_MAX,
        "--tls-ca {} is larger than {CA_FILE_BYTES_MAX} bytes",
        path.display()
    );
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--tls-ca {} is not a PEM file", path.display()))?;
    let mut roots = RootCertStore::empty();
    let (n_added, _) = roots.add_parsable_certificates(certs);
    ensure!(
        n_added > 0,
        "--tls-ca {}: no usable certificate (BEGIN CERTIFICATE) found",
        path.display()
    );
    Ok(roots)
}

/// `--tls-insecure`: accepts any certificate for any name, but still checks that the server
/// holds the key (the handshake signature), so the cryptographic work stays realistic.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AcceptAnyCertificate {
    fn new(provider: &CryptoProvider) -> Self {
        Self {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A new client session for one connection.
///
/// # Errors
/// When rustls refuses the configuration (not expected with [`client_config`]'s).
pub fn connect(
    settings: &TlsSettings,
    config: &Arc<ClientConfig>,
) -> Result<Box<ClientConnection>, String> {
    ClientConnection::new(Arc::clone(config), settings.server_name.clone())
        .map(Box::new)
        .map_err(|err| format!("tls: cannot start a session: {err}"))
}

/// Sessions (tickets) one sender keeps for its next connections.
pub const SENDER_SESSIONS_MAX: usize = 4;

/// The configuration of one connection slot: `settings.config` with a session cache of its
/// own when resumption is on. An MX's senders are independent MTAs, each remembering only
/// its own last session; one cache shared by hundreds of connections would instead hand
/// each ticket to whichever connection starts next (and rustls keeps only a few per name).
pub fn sender_config(settings: &TlsSettings) -> Arc<ClientConfig> {
    if !settings.resumption {
        return Arc::clone(&settings.config);
    }
    let mut config = (*settings.config).clone();
    config.resumption = Resumption::in_memory_sessions(SENDER_SESSIONS_MAX);
    Arc::new(config)
}

/// Version and cipher of a finished handshake, for the report (counts start at 1).
pub fn info(tls: &ClientConnection) -> TlsInfo {
    let version = match tls.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "none".to_owned(),
    };
    let cipher = tls
        .negotiated_cipher_suite()
        .map_or_else(|| "none".to_owned(), |suite| format!("{:?}", suite.suite()));
    TlsInfo {
        version,
        cipher,
        handshakes: 1,
        resumed: u64::from(resumed(tls)),
    }
}

/// Whether the finished handshake resumed an earlier session.
pub fn resumed(tls: &ClientConnection) -> bool {
    tls.handshake_kind() == Some(HandshakeKind::Resumed)
}

/// The result of [`read_plain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainRead {
    /// `n` plaintext bytes; `more` when the socket or rustls may still hold data, so the
    /// caller must read again before waiting for the next epoll edge.
    Data { n: usize, more: bool },
    /// The server closed the connection (with or without `close_notify`).
    Eof,
    /// Nothing to read until the socket is readable again.
    WouldBlock,
}

/// Reads decrypted bytes into `buf` (non-empty), pulling ciphertext from `sock` as needed
/// and sending whatever the handshake has to answer. `closing` means the peer has shut
/// down its side, so a short read does not mean the socket is drained.
///
/// # Errors
/// A message naming the failure (TLS alert, bad record, certificate, socket error).
pub fn read_plain<S: Read + Write>(
    tls: &mut ClientConnection,
    sock: &mut S,
    buf: &mut [u8],
    closing: bool,
) -> Result<PlainRead, String> {
    let mut socket_drained = false;
    loop {
        match tls.reader().read(buf) {
            Ok(0) => return Ok(PlainRead::Eof),
            // rustls fills `buf` from all it holds, so a short read leaves it empty.
            Ok(n) => {
                return Ok(PlainRead::Data {
                    n,
                    more: n == buf.len() || !socket_drained,
                });
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(PlainRead::Eof),
            Err(err) => return Err(format!("tls read: {}", err.kind())),
        }
        if socket_drained {
            return Ok(PlainRead::WouldBlock);
        }
        let mut tracked = ShortReadTracker {
            inner: &mut *sock,
            short: false,
        };
        match tls.read_tls(&mut tracked) {
            // End of stream: the reader now reports it (cleanly or not).
            Ok(0) => socket_drained = true,
            Ok(_) => socket_drained = tracked.short && !closing,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                return Ok(PlainRead::WouldBlock);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(format!("read: {}", err.kind())),
        }
        let handshaking = tls.is_handshaking();
        if let Err(err) = tls.process_new_packets() {
            // rustls queued an alert that tells the server why; sending it is a courtesy.
            let _ = tls.write_tls(sock);
            let stage = if handshaking { "tls handshake" } else { "tls" };
            return Err(format!("{stage}: {err}"));
        }
        // Handshake messages to answer (or the plaintext held until the keys existed); if
        // the socket is full, the next writable edge flushes them.
        write_pending(tls, sock)?;
    }
}

/// Encrypts as much of `data` as rustls will buffer and sends records until the socket is
/// full. Returns how many bytes of `data` rustls took; fewer than `data.len()` means the
/// caller must call again when the socket is writable (or the handshake has progressed).
///
/// # Errors
/// A message naming the socket failure.
pub fn write_plain<S: Write>(
    tls: &mut ClientConnection,
    sock: &mut S,
    data: &[u8],
) -> Result<usize, String> {
    let mut taken = 0;
    loop {
        let n = if taken < data.len() {
            tls.writer()
                .write(&data[taken..])
                .map_err(|err| format!("tls write: {}", err.kind()))?
        } else {
            0
        };
        taken += n;
        let (sent_any, drained) = write_pending(tls, sock)?;
        if !drained || taken == data.len() {
            return Ok(taken);
        }
        if n == 0 && !sent_any {
            // rustls holds plaintext back while the handshake runs; the records follow
            // from `read_plain` once it is over.
            return Ok(taken);
        }
    }
}

/// Sends queued TLS records. Returns (whether any bytes left, whether the queue is empty);
/// a queue left non-empty means the socket is full.
fn write_pending<S: Write>(
    tls: &mut ClientConnection,
    sock: &mut S,
) -> Result<(bool, bool), String> {
    let mut sent_any = false;
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => return Err("write: connection closed".to_owned()),
            Ok(_) => sent_any = true,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok((sent_any, false)),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(format!("write: {}", err.kind())),
        }
    }
    Ok((sent_any, true))
}

/// Remembers whether the last read filled its buffer: a short read drained the socket.
struct ShortReadTracker<'a, S> {
    inner: &'a mut S,
    short: bool,
}

impl<S: Read> Read for ShortReadTracker<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        let cases: &[(Option<&str>, &str, Option<&str>)] = &[
            (None, "127.0.0.1:2525", Some("localhost")),
            (None, "[::1]:2525", Some("localhost")),
            (None, "mail.example.test:25", Some("mail.example.test")),
            (None, "localhost:465", Some("localhost")),
            (
                Some("mx.example.test"),
                "127.0.0.1:25",
                Some("mx.example.test"),
            ),
            (Some("10.0.0.1"), "127.0.0.1:25", Some("10.0.0.1")),
            (Some("bad name!"), "127.0.0.1:25", None),
            (Some(""), "127.0.0.1:25", None),
        ];
        for &(explicit, target, expected) in cases {
            let got = server_name(explicit, target).ok().map(|name| match name {
                ServerName::DnsName(dns) => dns.as_ref().to_owned(),
                ServerName::IpAddress(ip) => IpAddr::from(ip).to_string(),
                _ => String::new(),
            });
            assert_eq!(got.as_deref(), expected, "{explicit:?} {target}");
        }
    }

    #[test]
    fn ca_file_errors() {
        let dir = std::env::temp_dir().join(format!("blaster-tls-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, b"no certificate here\n").unwrap();
        let cases = [dir.join("missing.pem"), empty];
        for path in &cases {
            assert!(
                client_config(Trust::CaFile(path), true).is_err(),
                "{}",
                path.display()
            );
        }
        assert!(client_config(Trust::Insecure, false).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
