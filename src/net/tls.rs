//! TLS for the listeners: the server certificate (PEM files or a self-signed one), its
//! reload on SIGHUP, and the handshake with a deadline.
//!
//! The socket loops are generic over [`Conn`], so one SMTP loop and one HTTP loop serve
//! plain TCP and TLS alike. rustls does the TLS (ring provider, TLS 1.2 and 1.3 only);
//! futures-rustls drives it over glommio's `TcpStream`, so a handshake or a record never
//! blocks the executor's other sessions.
//!
//! The current `ServerConfig` sits behind an `RwLock` that is read once per handshake
//! (never per command or per record), so a reload from the signal thread only affects
//! handshakes that start after it; established sessions keep the config they started with.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::Config;
use crate::metrics::Counters;
use crate::net::NetCtx;

/// A PEM file larger than this is not a certificate chain or key; refuse to read it whole.
const PEM_FILE_BYTES_MAX: u64 = 1 << 20;

/// Session tickets sent after each TLS 1.3 handshake (rustls sends 2 by default). A sender
/// that reconnects needs one (each is good for one resumption), and every ticket costs an
/// encryption and a record on every connection, most of which are never resumed.
const TLS13_TICKETS_PER_HANDSHAKE: usize = 1;

/// The ticket sealer of the whole process, shared by every config a reload builds, so
/// tickets issued before a SIGHUP still resume after it. rustls's `Ticketer` rotates its
/// AEAD key itself (every 6 hours, keeping the previous one for decryption).
static TICKETER: std::sync::OnceLock<Result<Arc<dyn rustls::server::ProducesTickets>, String>> =
    std::sync::OnceLock::new();

/// A connection the socket loops can serve: plain TCP or TLS over TCP. The TCP stream
/// inside is reachable for its socket options (read timeout, fd for shutdown).
pub trait Conn: AsyncRead + AsyncWrite + Unpin {
    /// The TCP stream this connection runs on.
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for GatherTcp {
    fn tcp(&self) -> &TcpStream {
        &self.0
    }
}

impl Conn for TlsStream<GatherTcp> {
    fn tcp(&self) -> &TcpStream {
        &self.get_ref().0.0
    }
}

/// Most bytes [`GatherTcp`] copies together into one write; a larger batch goes out in
/// several (each still one `send`).
const GATHER_BYTES_MAX: usize = 64 * 1024;

thread_local! {
    /// Where [`GatherTcp`] puts the pieces of one write together: one per executor thread,
    /// because a connection keeps nothing between writes.
    static GATHER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// glommio's `TcpStream` with a vectored write that sends every piece in one `send`.
///
/// rustls hands its queued TLS records to `write_vectored` in one call (a server's
/// handshake flight is ServerHello, ChangeCipherSpec, then the encrypted handshake
/// messages and tickets), but glommio's stream has no vectored write, so the default sent
/// only the first piece per call: one `sendto` per record, four or five per handshake, each
/// a trip through loopback TCP into the peer's receive path. Copying the pieces together
/// costs a memcpy of a few KiB instead.
pub struct GatherTcp(pub TcpStream, WaitState);

/// Whether glommio's read last answered `Pending` (`waiting_since`): its readiness poll and
/// its read-timeout timer are then armed, and only glommio's own read, once the wait is
/// over, disarms the timer. A read that went around it would leave that timer running into
/// a later wait, where it stands in for the later timeout (set anew for every command) or
/// fires as a spurious timeout of a busy session.
///
/// And whether the peer is slow: its last wait took `SLOW_PEER_WAIT` or more (an MTA on
/// the internet, a round trip of milliseconds), so its next read will wait too.
#[derive(Default)]
pub struct WaitState {
    /// When the wait under way began; `None` when glommio's read is not waiting.
    waiting_since: Option<std::time::Instant>,
    /// The wait under way reads the whole buffer through glommio (it began in slow mode).
    waiting_whole: bool,
    slow: bool,
}

/// A wait this long or longer marks the peer as slow: loopback clients that answer at once
/// take microseconds; senders that think or sit across a network take a millisecond or more.
const SLOW_PEER_WAIT: std::time::Duration = std::time::Duration::from_micros(500);

impl WaitState {
    fn waiting(&self) -> bool {
        self.waiting_since.is_some()
    }

    fn start_wait(&mut self, whole: bool) {
        if self.waiting_since.is_none() {
            self.waiting_since = Some(std::time::Instant::now());
            self.waiting_whole = whole;
        }
    }

    /// glommio's read answered: the wait (if any) is over; a long one marks the peer slow,
    /// an answer without a wait marks it fast.
    fn end_wait(&mut self) {
        self.slow = self
            .waiting_since
            .take()
            .is_some_and(|since| since.elapsed() >= SLOW_PEER_WAIT);
    }
}

impl GatherTcp {
    /// Wraps `stream`; nothing is waited for yet.
    pub fn new(stream: TcpStream) -> GatherTcp {
        GatherTcp(stream, WaitState::default())
    }
}

impl AsyncRead for GatherTcp {
    /// Reads what the socket holds with a plain non-blocking `recv`, and waits through
    /// glommio only when it holds nothing.
    ///
    /// glommio's own read arms a readiness poll on the ring after every read that did not
    /// fill the buffer, and the next read then waits for that poll even when the bytes are
    /// already there: one io_uring operation and one completion per read. Here glommio is
    /// asked for a single byte, which never leaves such a poll behind, so a socket that has
    /// input costs one `recv` and a socket that has none costs one armed poll. A wait that
    /// glommio started is always ended by glommio's read (see [`WaitState`]).
    ///
    /// A slow peer's next bytes are never there yet when the session reads: the speculative
    /// `recv`, glommio's own first `recv` and the second `recv` after the single byte would
    /// be three system calls per command for nothing. So after a long wait the whole buffer
    /// is read through glommio, whose poll re-armed after that short read is then exactly
    /// the wait the next read needs: one `recv` per command. A read that finds its bytes at
    /// once marks the peer fast again.
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        use std::task::Poll;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        let whole = if this.1.waiting() {
            this.1.waiting_whole
        } else {
            this.1.slow
        };
        if whole {
            let read = std::pin::Pin::new(&mut this.0).poll_read(cx, buf);
            match read {
                Poll::Pending => this.1.start_wait(true),
                Poll::Ready(_) => this.1.end_wait(),
            }
            return read;
        }
        if !this.1.waiting()
            && let Some(read) = recv_now(this.0.as_raw_fd(), buf)
        {
            return Poll::Ready(read);
        }
        let first = match std::pin::Pin::new(&mut this.0).poll_read(cx, &mut buf[..1]) {
            Poll::Pending => {
                this.1.start_wait(false);
                return Poll::Pending;
            }
            Poll::Ready(Ok(1)) => {
                this.1.end_wait();
                1
            }
            other => {
                this.1.end_wait();
                return other;
            }
        };
        match recv_now(self.0.as_raw_fd(), &mut buf[first..]) {
            Some(Ok(more)) => Poll::Ready(Ok(first + more)),
            // The byte already taken must reach the caller; a broken connection then ends
            // at the next read (as the error, or as the end of input once it was reported).
            Some(Err(_)) | None => Poll::Ready(Ok(first)),
        }
    }
}

/// One non-blocking `recv` into `buf`: `None` when the socket has nothing to read now.
fn recv_now(fd: std::os::fd::RawFd, buf: &mut [u8]) -> Option<io::Result<usize>> {
    if buf.is_empty() {
        return Some(Ok(0));
    }
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call, and `fd`
    // is the open socket of the `TcpStream` the caller borrows.
    let n_read = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n_read >= 0 {
        return Some(Ok(n_read as usize));
    }
    let error = io::Error::last_os_error();
    match error.kind() {
        io::ErrorKind::WouldBlock => None,
        io::ErrorKind::Interrupted => None,
        _ => Some(Err(error)),
    }
}

impl AsyncWrite for GatherTcp {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        let mut pieces = bufs.iter().filter(|buf| !buf.is_empty());
        let Some(first) = pieces.next() else {
            return std::task::Poll::Ready(Ok(0));
        };
        let Some(second) = pieces.next() else {
            return std::pin::Pin::new(&mut self.0).poll_write(cx, first);
        };
        GATHER.with_borrow_mut(|gather| {
            gather.clear();
            for piece in [first, second].into_iter().chain(pieces) {
                if !gather.is_empty() && gather.len() + piece.len() > GATHER_BYTES_MAX {
                    break;
                }
                gather.extend_from_slice(piece);
            }
            // Nothing is kept across calls: if only part is sent, the caller offers the
            // rest again (rustls keeps its records until they are written).
            std::pin::Pin::new(&mut self.0).poll_write(cx, gather)
        })
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_close(cx)
    }
}

/// Why TLS could not be set up. Every variant displays as one line naming the flag and file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read (missing, unreadable, too large).
    #[error("cannot read {flag} {}: {reason}", .path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// A file was read but holds no usable PEM certificate or key.
    #[error("{flag} {}: {reason}", .path.display())]
    Parse {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The certificate and key were read but rustls refuses them together (the key does
    /// not belong to the certificate, or an unsupported key type).
    #[error("--tls-cert {} with --tls-key {}: {reason}", .cert.display(), .key.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    /// The self-signed certificate could not be generated.
    #[error("--tls-self-signed: {0}")]
    SelfSigned(String),
}

/// Where the certificate comes from, so a reload knows what to re-read.
#[derive(Debug)]
enum Source {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned { hostname: String },
}

/// The server's TLS identity, shared by every executor and the signal thread.
#[derive(Debug)]
pub struct TlsCerts {
    source: Source,
    current: RwLock<Arc<ServerConfig>>,
}

/// What a finished handshake negotiated, in the words of the Received header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// "TLSv1.3" or "TLSv1.2".
    pub version: &'static str,
    /// rustls' name of the suite, e.g. "TLS13_AES_256_GCM_SHA384".
    pub cipher: &'static str,
}

/// Why a handshake did not finish.
#[derive(Debug)]
pub enum HandshakeError {
    /// The client did not finish within the deadline.
    TimedOut,
    /// The TLS or TCP layer failed (bad ClientHello, no shared cipher, reset, EOF).
    Failed(io::Error),
}

impl TlsCerts {
    /// The TLS identity the configuration asks for: `None` when TLS is off.
    ///
    /// # Errors
    /// A certificate or key file cannot be read or parsed, they do not match, or the
    /// self-signed certificate cannot be generated. The message names the flag and file.
    pub fn from_config(config: &Config) -> Result<Option<Arc<TlsCerts>>, TlsError> {
        let source = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Source::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ if config.tls_self_signed => Source::SelfSigned {
                hostname: config.hostname.clone(),
            },
            // Config validation guarantees both files or neither.
            _ => return Ok(None),
        };
        let server_config = source.load()?;
        Ok(Some(Arc::new(TlsCerts {
            source,
            current: RwLock::new(server_config),
        })))
    }

    /// Re-reads the certificate and key files; on success new handshakes use them, on
    /// error the old ones stay in use. A self-signed identity is kept as it is (a new
    /// random certificate would only break clients that pinned the old one).
    ///
    /// # Errors
    /// As for [`TlsCerts::from_config`]; the current config is unchanged.
    pub fn reload(&self) -> Result<(), TlsError> {
        if matches!(self.source, Source::SelfSigned { .. }) {
            return Ok(());
        }
        let server_config = self.source.load()?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = server_config;
        Ok(())
    }

    /// Whether the identity comes from files (and so a reload can change it).
    pub fn reloadable(&self) -> bool {
        matches!(self.source, Source::Files { .. })
    }

    /// The config new handshakes use.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs the server side of a handshake on `stream`, for at most `timeout` in all
    /// (a client trickling bytes cannot stretch it; glommio's per-read timeout on the
    /// stream still bounds each read inside it).
    ///
    /// # Errors
    /// [`HandshakeError::TimedOut`] past the deadline, [`HandshakeError::Failed`] when the
    /// TLS or TCP layer gives up; the stream is dropped (closed) in both cases.
    pub async fn handshake(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> Result<(TlsStream<GatherTcp>, Negotiated), HandshakeError> {
        let accept = TlsAcceptor::from(self.server_config()).accept(GatherTcp::new(stream));
        let outcome = futures_lite::future::or(async { Some(accept.await) }, async {
            glommio::timer::Timer::new(timeout).await;
            None
        })
        .await;
        match outcome {
            None => Err(HandshakeError::TimedOut),
            Some(Err(error)) => Err(HandshakeError::Failed(error)),
            Some(Ok(tls)) => {
                let negotiated = negotiated(tls.get_ref().1);
                Ok((tls, negotiated))
            }
        }
    }
}

/// The server side of a TLS handshake on a freshly accepted or just upgraded connection,
/// bounded by `--tls-handshake-timeout`, counted in the metrics. `None` (the connection is
/// closed) when TLS is not configured, or the handshake failed or timed out.
pub async fn accept<S>(
    ctx: &NetCtx<S>,
    stream: TcpStream,
) -> Option<(TlsStream<GatherTcp>, Negotiated)> {
    let Some(certs) = &ctx.tls else {
        tracing::error!("TLS requested without a certificate; closing the connection");
        return None;
    };
    match certs
        .handshake(stream, ctx.config.tls_handshake_timeout)
        .await
    {
        Ok(done) => {
            Counters::add(&ctx.counters.tls_sessions_total, 1);
            Some(done)
        }
        Err(error) => {
            Counters::add(&ctx.counters.tls_handshake_failures_total, 1);
            match error {
                HandshakeError::TimedOut => tracing::debug!("TLS handshake timed out"),
                HandshakeError::Failed(error) => tracing::debug!("TLS handshake failed: {error}"),
            }
            None
        }
    }
}

impl Source {
    fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        match self {
            Source::Files { cert, key } => {
                let cert_pem = read_pem_file("--tls-cert", cert)?;
                let key_pem = read_pem_file("--tls-key", key)?;
                let (chain, key_der) = parse_pem(cert, &cert_pem, key, &key_pem)?;
                server_config(chain, key_der).map_err(|reason| TlsError::Mismatch {
                    cert: cert.clone(),
                    key: key.clone(),
                    reason,
                })
            }
            Source::SelfSigned { hostname } => {
                let self_signed_error =
                    |error: rcgen::Error| TlsError::SelfSigned(error.to_string());
                // The hostname as subject alternative name and common name, so that clients
                // and `openssl s_client` show whose certificate it is.
                let mut params = rcgen::CertificateParams::new(vec![hostname.clone()])
                    .map_err(self_signed_error)?;
                params
                    .distinguished_name
                    .push(rcgen::DnType::CommonName, hostname.as_str());
                let signing_key = rcgen::KeyPair::generate().map_err(self_signed_error)?;
                let cert = params
                    .self_signed(&signing_key)
                    .map_err(self_signed_error)?;
                let chain = vec![cert.der().clone()];
                let key_der =
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der()));
                server_config(chain, key_der).map_err(TlsError::SelfSigned)
            }
        }
    }
}

/// Parses a certificate chain (leaf first) and a private key (PKCS#8, PKCS#1 or SEC1).
fn parse_pem(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_error = |reason: String| TlsError::Parse {
        flag: "--tls-cert",
        path: cert_path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| cert_error(format!("not a PEM certificate chain ({error})")))?;
    if chain.is_empty() {
        return Err(cert_error(
            "no PEM certificate (BEGIN CERTIFICATE) found".to_string(),
        ));
    }
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| TlsError::Parse {
        flag: "--tls-key",
        path: key_path.to_path_buf(),
        reason: match error {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) found"
                    .to_string()
            }
            other => format!("not a PEM private key ({other})"),
        },
    })?;
    Ok((chain, key_der))
}

/// A rustls server config with the ring provider, TLS 1.2 and 1.3, no client certificates,
/// and stateless session resumption: the session state is sealed into the ticket the
/// client keeps (rustls `Ticketer`), so every returning sender can resume, however many
/// there are, without a server-side cache to fill, share or evict (the default in-memory
/// cache holds 256 sessions, two per handshake, so with a few hundred senders half the
/// resumptions missed). A resumed TLS 1.3 handshake skips the certificate and its
/// signature (it still does the key exchange: rustls offers only `psk_dhe_ke`). 0-RTT
/// stays off: SMTP commands are not safe to replay.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    // AES-128-GCM first, and the server's order over the client's (rustls and OpenSSL
    // clients ask for AES-256-GCM with SHA-384 first): the TLS 1.3 key schedule then runs
    // HKDF on SHA-256, which this class of CPU has in hardware (SHA-NI) and SHA-384 is not;
    // a full handshake costs 13% less server CPU, a resumed one 20% (tls-floor, 88 vs 102
    // and 72 vs 90 us). AES-128 is TLS 1.3's mandatory suite and the first choice of
    // Mozilla's recommended server configurations.
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    let provider = Arc::new(provider);
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| error.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|error| error.to_string())?;
    let mut config = config;
    config.ticketer = TICKETER
        .get_or_init(|| {
            rustls::crypto::ring::Ticketer::new()
                .map_err(|error| format!("TLS session tickets: {error}"))
        })
        .clone()?;
    config.send_tls13_tickets = TLS13_TICKETS_PER_HANDSHAKE;
    config.ignore_client_order = true;
    debug_assert_eq!(config.max_early_data_size, 0, "0-RTT must stay off");
    Ok(Arc::new(config))
}

fn read_pem_file(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read as _;
    let read_error = |reason: String| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|error| read_error(io_reason(&error)))?;
    let mut bytes = Vec::new();
    file.take(PEM_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| read_error(io_reason(&error)))?;
    if bytes.len() as u64 > PEM_FILE_BYTES_MAX {
        return Err(read_error(
            "larger than 1MiB, which is not a PEM file".to_string(),
        ));
    }
    Ok(bytes)
}

/// The version and cipher names for the Received header.
fn negotiated(connection: &rustls::ServerConnection) -> Negotiated {
    let version = match connection.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        // Only 1.2 and 1.3 are enabled; anything else cannot finish a handshake.
        _ => "TLS",
    };
    let cipher = connection
        .negotiated_cipher_suite()
        .and_then(|suite| suite.suite().as_str())
        .unwrap_or("unknown");
    Negotiated { version, cipher }
}

/// An I/O error's text without std's " (os error N)" suffix.
fn io_reason(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(idx) => text[..idx].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    fn generated(name: &str) -> (String, String) {
        let certified =
            rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("rcgen works");
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    fn files_source(dir: &TempDir, cert_pem: &[u8], key_pem: &[u8]) -> Source {
        Source::Files {
            cert: dir.write("cert.pem", cert_pem),
            key: dir.write("key.pem", key_pem),
        }
    }

    #[test]
    fn loads_matching_files_and_refuses_bad_ones() {
        let dir = TempDir::new("load");
        let (cert, key) = generated("mx.example.test");
        let (_, other_key) = generated("other.example.test");
        let good = files_source(&dir, cert.as_bytes(), key.as_bytes());
        assert!(good.load().is_ok());

        // (cert, key, expected start of the message)
        let cases: &[(&[u8], &[u8], &str)] = &[
            (b"", key.as_bytes(), "--tls-cert "),
            (b"not pem at all\n", key.as_bytes(), "--tls-cert "),
            (cert.as_bytes(), b"", "--tls-key "),
            (cert.as_bytes(), cert.as_bytes(), "--tls-key "),
            (
                cert.as_bytes(),
                other_key.as_bytes(),
                "--tls-cert {cert} with --tls-key",
            ),
        ];
        for (cert_pem, key_pem, expected) in cases {
            let source = files_source(&dir, cert_pem, key_pem);
            let text = source.load().expect_err("bad input is refused").to_string();
            let expected = expected.replace("{cert}", &dir.0.join("cert.pem").to_string_lossy());
            assert!(text.starts_with(&expected), "{expected:?}: {text}");
            assert!(!text.contains('\n'), "{text}");
        }
    }

    #[test]
    fn missing_file_names_flag_and_path() {
        let source = Source::Files {
            cert: PathBuf::from("/nonexistent/mayfly/cert.pem"),
            key: PathBuf::from("/nonexistent/mayfly/key.pem"),
        };
        let text = source.load().expect_err("missing file").to_string();
        assert_eq!(
            text,
            "cannot read --tls-cert /nonexistent/mayfly/cert.pem: No such file or directory"
        );
    }

    #[test]
    fn reload_keeps_the_old_config_on_error() {
        let dir = TempDir::new("reload");
        let (cert, key) = generated("first.example.test");
        let source = files_source(&dir, cert.as_bytes(), key.as_bytes());
        let server_config = source.load().expect("loads");
        let certs = TlsCerts {
            source,
            current: RwLock::new(server_config),
        };
        let before = certs.server_config();
        dir.write("cert.pem", b"garbage");
        assert!(certs.reload().is_err());
        assert!(Arc::ptr_eq(&before, &certs.server_config()));

        let (cert, key) = generated("second.example.test");
        dir.write("cert.pem", cert.as_bytes());
        dir.write("key.pem", key.as_bytes());
        certs.reload().expect("new files load");
        assert!(!Arc::ptr_eq(&before, &certs.server_config()));
    }

    #[test]
    fn self_signed_for_hostname() {
        let source = Source::SelfSigned {
            hostname: "mx.example.test".to_string(),
        };
        let server_config = source.load().expect("generates");
        let certs = TlsCerts {
            source,
            current: RwLock::new(server_config),
        };
        assert!(!certs.reloadable());
        let before = certs.server_config();
        certs.reload().expect("nothing to reload");
        assert!(Arc::ptr_eq(&before, &certs.server_config()));
    }
}
