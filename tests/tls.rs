//! TLS on the real binary: STARTTLS (RFC 3207) with lettre and by hand, the plaintext
//! injection of CVE-2011-0411, `--require-tls`, implicit TLS on `--smtps` (RFC 8314),
//! HTTPS, handshake and read timeouts under TLS, certificate reload on SIGHUP, bad
//! certificate files, `--tls-self-signed`, and session resumption with stateless tickets
//! (`openssl s_client -sess_out` / `-sess_in`).
//!
//! Each test makes its own CA and server certificate with rcgen and writes them to a
//! temporary directory; the clients trust only that CA, so a passing test proves the
//! server presented the configured chain.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{IO_TIMEOUT, Server, TlsListeners, eventually, metric_sum, run_to_exit};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// The name the server certificate is issued for, and the server's --hostname.
const HOSTNAME: &str = "mx.example.test";
/// Longest any single test waits for the server to notice something (a close, a reload).
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Certificates

/// A test CA and the PEM files of a server certificate it issued, in a temp directory.
struct Pki {
    dir: PathBuf,
    ca_cert_der: CertificateDer<'static>,
    ca_cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mayfly-tls-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Mayfly test CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = params.self_signed(&ca_key).expect("CA cert");
        let pki = Pki {
            dir,
            ca_cert_der: ca_cert.der().clone(),
            ca_cert_pem: ca_cert.pem(),
            issuer: Issuer::new(params, ca_key),
        };
        pki.issue("first server cert");
        pki
    }

    /// Issues a new server certificate for `HOSTNAME` (common name `common_name`) and
    /// writes it and its key over `cert.pem` and `key.pem`. Returns the certificate DER.
    fn issue(&self, common_name: &str) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(vec![HOSTNAME.to_string()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        // Chain: leaf then CA, as an operator's fullchain.pem would have it.
        let chain = format!("{}{}", cert.pem(), self.ca_cert_pem);
        std::fs::write(self.cert_path(), chain).expect("write cert");
        std::fs::write(self.key_path(), key.serialize_pem()).expect("write key");
        cert.der().clone()
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// Starts the server with this certificate, `--hostname`, and `extra_args`.
    fn start(&self, extra_args: &[&str]) -> (Server, TlsListeners) {
        let cert = self.cert_path();
        let key = self.key_path();
        let mut args = vec![
            "--tls-cert",
            path_str(&cert),
            "--tls-key",
            path_str(&key),
            "--hostname",
            HOSTNAME,
        ];
        args.extend_from_slice(extra_args);
        Server::start_tls(&args)
    }

    /// A rustls client that trusts only this CA.
    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_cert_der.clone()).expect("add CA root");
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

// ---------------------------------------------------------------------------------------
// A small SMTP client over any stream (plain TCP, then TLS)

/// An SMTP reply: code and lines.
#[derive(Debug)]
struct Reply {
    code: u16,
    text: String,
}

/// The client side of a connection that may be upgraded to TLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.as_mut(),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

struct Client {
    stream: Stream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        tcp.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        tcp.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        tcp.set_nodelay(true).expect("nodelay");
        Client {
            stream: Stream::Plain(tcp),
            buf: Vec::new(),
        }
    }

    /// Connects and does the TLS handshake at once (implicit TLS).
    fn connect_tls(addr: SocketAddr, config: Arc<ClientConfig>) -> Client {
        let mut client = Client::connect(addr);
        client.upgrade(config);
        client
    }

    /// Runs the TLS handshake on the current TCP stream.
    fn upgrade(&mut self, config: Arc<ClientConfig>) {
        assert!(
            self.buf.is_empty(),
            "server sent bytes before the handshake: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let Stream::Plain(tcp) = &self.stream else {
            panic!("already TLS");
        };
        let tcp = tcp.try_clone().expect("clone TCP stream");
        let name = ServerName::try_from(HOSTNAME).expect("server name");
        let connection = ClientConnection::new(config, name).expect("client connection");
        let mut tls = StreamOwned::new(connection, tcp);
        // Drive the handshake to completion now, so a failure shows up here.
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .unwrap_or_else(|error| panic!("TLS handshake failed: {error}"));
        }
        self.stream = Stream::Tls(Box::new(tls));
    }

    fn tls(&self) -> &ClientConnection {
        match &self.stream {
            Stream::Tls(tls) => &tls.conn,
            Stream::Plain(_) => panic!("not TLS"),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let io = self.stream.io();
        io.write_all(bytes).expect("write");
        io.flush().expect("flush");
    }

    fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    #[track_caller]
    fn expect(&mut self, line: &str, code: u16) -> Reply {
        let reply = self.cmd(line);
        assert_eq!(reply.code, code, "after {line:?}: {}", reply.text);
        reply
    }

    /// Reads one reply; panics on EOF, timeout or garbage.
    fn reply(&mut self) -> Reply {
        self.try_reply()
            .unwrap_or_else(|why| panic!("reading reply: {why}"))
    }

    fn try_reply(&mut self) -> Result<Reply, String> {
        let mut text = String::new();
        loop {
            let Some(line_end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                if self.fill()? == 0 {
                    return Err(format!("closed; got so far {text:?}"));
                }
                continue;
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            self.buf.drain(..line_end + 2);
            let code: u16 = line
                .get(..3)
                .and_then(|code| code.parse().ok())
                .ok_or_else(|| format!("malformed line {line:?}"))?;
            text.push_str(&line);
            text.push('\n');
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(Reply { code, text });
            }
        }
    }

    fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 4096];
        match self.stream.io().read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            // A TCP close without close_notify is how a server may drop a TLS client.
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => Ok(0),
            Err(error) => Err(format!("read failed: {error}")),
        }
    }

    /// Reads until the server closes; returns what arrived, or `None` if it stayed open
    /// longer than the socket's read timeout (`IO_TIMEOUT`).
    fn read_until_close(&mut self) -> Option<String> {
        loop {
            match self.fill() {
                Ok(0) => return Some(String::from_utf8_lossy(&self.buf).into_owned()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// MAIL, RCPT, DATA and a small message; asserts the 250.
    fn send_mail(&mut self, rcpt: &str, subject: &str) {
        self.expect("MAIL FROM:<sender@client.test>", 250);
        self.expect(&format!("RCPT TO:<{rcpt}>"), 250);
        self.expect("DATA", 354);
        let message = format!(
            "From: sender@client.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nbody\r\n.\r\n"
        );
        self.send(message.as_bytes());
        let reply = self.reply();
        assert_eq!(reply.code, 250, "after the message: {}", reply.text);
    }
}

/// The first line of the stored message's Received header.
fn received_line(server: &Server, address: &str) -> String {
    let inbox = server.wait_inbox_total(address, 1);
    let id = inbox["messages"][0]["id"].as_str().expect("id").to_string();
    let raw = server.raw(address, &id);
    let text = String::from_utf8_lossy(&raw).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

fn metric(server: &Server, name: &str) -> f64 {
    metric_sum(&server.metrics(), name).unwrap_or_else(|| panic!("no metric {name}"))
}

/// Plain connection, greeting, EHLO (which must offer STARTTLS), STARTTLS, handshake.
fn starttls(server: &Server, pki: &Pki) -> Client {
    let mut client = Client::connect(server.smtp_addr);
    assert_eq!(client.reply().code, 220);
    let ehlo = client.expect("EHLO client.test", 250);
    assert!(ehlo.text.contains("250-STARTTLS\n"), "{}", ehlo.text);
    client.expect("STARTTLS", 220);
    client.upgrade(pki.client_config());
    client
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn lettre_starttls_delivers_and_received_says_esmtps() {
    use lettre::message::Mailbox;
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    use lettre::transport::smtp::extension::ClientId;
    use lettre::{Message, SmtpTransport, Transport};

    let pki = Pki::new();
    let (server, _) = pki.start(&[]);
    let tls = TlsParameters::builder(HOSTNAME.to_string())
        .add_root_certificate(Certificate::from_pem(pki.ca_cert_pem.as_bytes()).expect("CA"))
        .build_rustls()
        .expect("TLS parameters");
    let mailer = SmtpTransport::builder_dangerous("127.0.0.1")
        .port(server.smtp_port())
        .tls(Tls::Required(tls))
        .hello_name(ClientId::Domain("client.test".to_string()))
        .timeout(Some(IO_TIMEOUT))
        .build();
    let email = Message::builder()
        .from(
            "Sender <sender@client.test>"
                .parse::<Mailbox>()
                .expect("from"),
        )
        .to("lettre-tls@example.test".parse::<Mailbox>().expect("to"))
        .subject("over STARTTLS")
        .body("sent with lettre over TLS\r\n".to_string())
        .expect("message");
    mailer.send(&email).expect("lettre sends over STARTTLS");

    let received = received_line(&server, "lettre-tls@example.test");
    assert!(
        received.contains("with ESMTPS (version=TLSv1.3 cipher=TLS13_AES_128_GCM_SHA256)"),
        "{received}"
    );
    assert!(metric(&server, "mayfly_tls_sessions_total") >= 1.0);
}

#[test]
fn plaintext_pipelined_after_starttls_is_never_executed() {
    let pki = Pki::new();
    let (server, _) = pki.start(&[]);
    let mut client = Client::connect(server.smtp_addr);
    assert_eq!(client.reply().code, 220);
    client.expect("EHLO client.test", 250);
    // CVE-2011-0411: a man in the middle appends a command to the client's STARTTLS.
    client.send(b"STARTTLS\r\nMAIL FROM:<injected@attacker.test>\r\n");
    let ready = client.reply();
    assert_eq!(ready.code, 220, "{}", ready.text);
    client.upgrade(pki.client_config());
    // Had the injected MAIL been kept, its reply (503: EHLO needed after STARTTLS) would
    // come before the EHLO reply, and RCPT would find a transaction.
    let ehlo = client.expect("EHLO client.test", 250);
    assert!(!ehlo.text.contains("STARTTLS"), "{}", ehlo.text);
    let rcpt = client.expect("RCPT TO:<victim@example.test>", 503);
    assert!(rcpt.text.contains("Need MAIL"), "{}", rcpt.text);
    client.expect("NOOP", 250);
    client.send_mail("after-injection@example.test", "clean");
    let received = received_line(&server, "after-injection@example.test");
    assert!(received.contains("with ESMTPS"), "{received}");
    assert_eq!(
        server.inbox("victim@example.test")["total"].as_u64(),
        Some(0)
    );
}

#[test]
fn require_tls_refuses_mail_before_starttls() {
    let pki = Pki::new();
    let (server, _) = pki.start(&["--require-tls"]);
    let mut client = Client::connect(server.smtp_addr);
    assert_eq!(client.reply().code, 220);
    client.expect("EHLO client.test", 250);
    let refused = client.expect("MAIL FROM:<sender@client.test>", 530);
    assert!(
        refused
            .text
            .starts_with("530 5.7.0 Must issue a STARTTLS command first"),
        "{}",
        refused.text
    );
    client.expect("STARTTLS", 220);
    client.upgrade(pki.client_config());
    client.expect("EHLO client.test", 250);
    client.send_mail("required@example.test", "after STARTTLS");
    assert!(received_line(&server, "required@example.test").contains("ESMTPS"));
}

#[test]
fn implicit_tls_on_smtps_and_https() {
    let pki = Pki::new();
    let (server, listeners) = pki.start(&["--smtps", "127.0.0.1:0", "--https", "127.0.0.1:0"]);
    let smtps = listeners.smtps.expect("ready line has smtps=");
    let https = listeners.https.expect("ready line has https=");
    assert_eq!(
        server.ready_line,
        format!(
            "mayfly listening smtp={} http={} smtps={smtps} https={https}",
            server.smtp_addr, server.http_addr
        )
    );

    let mut client = Client::connect_tls(smtps, pki.client_config());
    let greeting = client.reply();
    assert!(
        greeting.text.starts_with("220 mx.example.test"),
        "{}",
        greeting.text
    );
    assert_eq!(
        client.tls().protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let ehlo = client.expect("EHLO client.test", 250);
    assert!(!ehlo.text.contains("STARTTLS"), "{}", ehlo.text);
    client.expect("STARTTLS", 503);
    client.send_mail("smtps@example.test", "implicit TLS");
    client.expect("QUIT", 221);
    assert!(received_line(&server, "smtps@example.test").contains("with ESMTPS (version=TLSv1.3"));

    let mut client = Client::connect_tls(https, pki.client_config());
    client.send(b"GET /healthz HTTP/1.1\r\nHost: mx.example.test\r\nConnection: close\r\n\r\n");
    let response = client
        .read_until_close()
        .expect("HTTPS response then close");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");
}

#[test]
fn stalled_handshakes_and_idle_tls_sessions_time_out() {
    let pki = Pki::new();
    let (server, listeners) = pki.start(&[
        "--smtps",
        "127.0.0.1:0",
        "--tls-handshake-timeout",
        "500ms",
        "--command-timeout",
        "1s",
    ]);
    let smtps = listeners.smtps.expect("smtps");

    // Connect to --smtps and say nothing: closed after the handshake timeout.
    let started = Instant::now();
    let mut silent = Client::connect(smtps);
    let sent = silent.read_until_close().expect("closed before IO_TIMEOUT");
    let waited = started.elapsed();
    assert!(sent.is_empty(), "{sent:?}");
    assert!(
        waited >= Duration::from_millis(400),
        "closed too early: {waited:?}"
    );
    assert!(waited < WAIT, "{waited:?}");

    // STARTTLS, then nothing: the same.
    let mut client = Client::connect(server.smtp_addr);
    assert_eq!(client.reply().code, 220);
    client.expect("EHLO client.test", 250);
    client.expect("STARTTLS", 220);
    let started = Instant::now();
    assert!(client.read_until_close().is_some());
    assert!(started.elapsed() < WAIT);

    // A half handshake (a ClientHello trickled in part) is cut at the deadline too.
    let mut partial = TcpStream::connect(smtps).expect("connect");
    partial.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0xff, 0x01])
        .expect("write");
    let started = Instant::now();
    let mut rest = Vec::new();
    match partial.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(error) => panic!("half handshake not closed: {error}"),
    }
    assert!(started.elapsed() < WAIT);

    assert!(eventually(WAIT, || {
        metric(&server, "mayfly_tls_handshake_failures_total") >= 3.0
    }));

    // After a good handshake, the command timeout still applies under TLS.
    let mut client = starttls(&server, &pki);
    client.expect("EHLO client.test", 250);
    let started = Instant::now();
    let reply = client.reply();
    assert!(
        reply.text.starts_with("421 4.4.2"),
        "want the timeout reply over TLS: {}",
        reply.text
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert!(client.read_until_close().is_some());
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections() {
    let pki = Pki::new();
    let (server, listeners) = pki.start(&["--smtps", "127.0.0.1:0"]);
    let smtps = listeners.smtps.expect("smtps");
    let first_leaf = {
        let client = Client::connect_tls(smtps, pki.client_config());
        client.tls().peer_certificates().expect("peer certs")[0].clone()
    };

    // A session that is open across the reload.
    let mut old_session = starttls(&server, &pki);
    old_session.expect("EHLO client.test", 250);

    let second_leaf = pki.issue("second server cert");
    assert_ne!(first_leaf, second_leaf);
    server.signal(libc::SIGHUP);
    assert!(
        eventually(WAIT, || server
            .stderr_text()
            .contains("TLS certificate reloaded")),
        "no reload in the log:\n{}",
        server.stderr_text()
    );
    let mut client = Client::connect_tls(smtps, pki.client_config());
    assert_eq!(
        client.tls().peer_certificates().expect("peer certs")[0],
        second_leaf
    );
    assert_eq!(client.reply().code, 220);
    // STARTTLS on the plain listener also gets the new certificate.
    let fresh = starttls(&server, &pki);
    assert_eq!(
        fresh.tls().peer_certificates().expect("peer certs")[0],
        second_leaf
    );

    // The old session keeps working.
    old_session.send_mail("across-reload@example.test", "old session");
    assert!(received_line(&server, "across-reload@example.test").contains("ESMTPS"));

    // A broken file on the next SIGHUP keeps the last good certificate.
    std::fs::write(pki.cert_path(), "not a certificate\n").expect("write");
    server.signal(libc::SIGHUP);
    assert!(eventually(WAIT, || server
        .stderr_text()
        .contains("TLS certificate not reloaded")));
    let client = Client::connect_tls(smtps, pki.client_config());
    assert_eq!(
        client.tls().peer_certificates().expect("peer certs")[0],
        second_leaf
    );
    // Still serving, and SIGHUP did not stop it.
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn bad_certificate_files_stop_start_up() {
    let pki = Pki::new();
    let key = pki.key_path();
    let cert = pki.cert_path();
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "hello\n").expect("write");
    let cases: [(&str, &str, &str); 3] = [
        (
            "/nonexistent/mayfly/cert.pem",
            path_str(&key),
            "error: cannot read --tls-cert /nonexistent/mayfly/cert.pem: No such file or directory",
        ),
        (path_str(&garbage), path_str(&key), "error: --tls-cert "),
        (path_str(&cert), path_str(&garbage), "error: --tls-key "),
    ];
    for (cert, key, expected) in cases {
        let args = [
            "--smtp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--cores",
            "1",
            "--max-memory",
            "16MiB",
            "--max-message-size",
            "1MiB",
            "--tls-cert",
            cert,
            "--tls-key",
            key,
        ];
        let (status, stdout, stderr) = run_to_exit(&args, WAIT);
        assert_eq!(status.code(), Some(78), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "no ready line: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with(expected), "{expected:?}: {stderr}");
    }
}

/// Accepts any certificate: only for `--tls-self-signed`, which no client can verify.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[test]
fn self_signed_certificate_offers_starttls() {
    let (server, _) = Server::start_tls(&["--tls-self-signed", "--hostname", HOSTNAME]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("TLS 1.2")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    let mut client = Client::connect(server.smtp_addr);
    assert_eq!(client.reply().code, 220);
    let ehlo = client.expect("EHLO client.test", 250);
    assert!(ehlo.text.contains("250-STARTTLS\n"), "{}", ehlo.text);
    client.expect("STARTTLS", 220);
    client.upgrade(Arc::new(config));
    // The generated certificate names --hostname.
    let leaf = client.tls().peer_certificates().expect("peer certs")[0].clone();
    assert!(
        leaf.windows(HOSTNAME.len())
            .any(|w| w == HOSTNAME.as_bytes()),
        "certificate does not name {HOSTNAME}"
    );
    client.expect("EHLO client.test", 250);
    client.send_mail("self-signed@example.test", "TLS 1.2");
    let received = received_line(&server, "self-signed@example.test");
    assert!(
        received.contains("with ESMTPS (version=TLSv1.2 cipher=TLS_ECDHE_"),
        "{received}"
    );
}

/// One STARTTLS session of `openssl s_client` (EHLO, QUIT), saving its TLS session to
/// `session` (`-sess_out`) or resuming from it (`-sess_in`). Returns s_client's summary
/// line, "New, TLSv1.3, ..." or "Reused, TLSv1.3, ...".
fn s_client_session(server: &Server, ca_file: &Path, session: &Path, resume: bool) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-starttls",
            "smtp",
            "-ign_eof",
            "-verify_return_error",
        ])
        .args([
            "-connect",
            &server.smtp_addr.to_string(),
            "-servername",
            HOSTNAME,
        ])
        .arg("-CAfile")
        .arg(ca_file)
        .arg(if resume { "-sess_in" } else { "-sess_out" })
        .arg(session)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (the TLS tests need it as a resuming client)");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(b"EHLO client.test\r\nQUIT\r\n")
        .expect("write to s_client");
    drop(stdin);
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("openssl s_client did not finish within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().expect("s_client output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        stdout.contains("221 "),
        "no 221 to QUIT through TLS:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find(|line| line.starts_with("New, ") || line.starts_with("Reused, "))
        .unwrap_or_else(|| panic!("no session line in s_client's output:\n{stdout}"))
        .to_string()
}

#[test]
fn returning_senders_resume_with_tickets_whatever_came_between() {
    // Stateless tickets: a sender resumes its session although hundreds of other senders
    // did full handshakes since (they would have evicted it from a server-side session
    // cache of 256), and across a certificate reload (the ticket key is kept).
    let pki = Pki::new();
    let (server, _) = pki.start(&[]);
    let ca_file = pki.dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_cert_pem).expect("write CA");
    let session = pki.dir.join("session.pem");
    let first = s_client_session(&server, &ca_file, &session, false);
    assert!(first.starts_with("New, TLSv1.3"), "{first}");
    for _ in 0..300 {
        // Each a new sender: a fresh client config has no session to offer.
        let mut other = starttls(&server, &pki);
        other.expect("EHLO client.test", 250);
    }
    let again = s_client_session(&server, &ca_file, &session, true);
    assert!(again.starts_with("Reused, TLSv1.3"), "{again}");

    pki.issue("reloaded server cert");
    server.signal(libc::SIGHUP);
    assert!(eventually(WAIT, || server
        .stderr_text()
        .contains("TLS certificate reloaded")));
    let after_reload = s_client_session(&server, &ca_file, &session, true);
    assert!(
        after_reload.starts_with("Reused, TLSv1.3"),
        "{after_reload}"
    );
    // The resumed sessions were real STARTTLS sessions: the server counted them.
    assert!(metric(&server, "mayfly_tls_sessions_total") >= 303.0);
}
