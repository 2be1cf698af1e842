//! Webhook requests: one sender task per executor posts the events of its shard's
//! `webhook::Queue` to the configured URLs, never on the path of a `250`.
//!
//! The task takes every attempt that is due ([`Outbox::take_due`]), spawns one request
//! task each (the queue bounds how many are in flight per webhook), and sleeps until the
//! queue wakes it (an event queued, a request finished) or the earliest retry falls due.
//! Each request has one deadline (`--webhook-timeout`) over connecting, the TLS handshake,
//! writing and reading the reply; a 2xx is delivered, anything else is handed back to be
//! retried.
//!
//! Connections are kept per webhook, up to the requests in flight, and reused while the
//! receiver's replies allow it (`http_client::Response::reusable`), so a steady stream of
//! mail costs a write and a read per message rather than a TCP (and TLS) handshake. A kept
//! connection the receiver closed while it was idle fails at once; the request is then sent
//! again on a new connection within the same deadline.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::mpsc;
use futures_lite::AsyncWriteExt;
use futures_rustls::TlsConnector;
use futures_util::StreamExt;
use rustls::pki_types::ServerName;

use crate::clock::now_ms;
use crate::config::{Config, Webhook};
use crate::net::http_client::{self, Stream};
use crate::webhook::{self, Attempt, IN_FLIGHT_MAX, REPLY_BYTES_MAX};

/// A kept connection idle longer than this is closed rather than reused: receivers close
/// idle connections after a while (Node.js's default is 5 s), and a request written into
/// a connection the peer is closing fails.
const CONN_IDLE_MAX: Duration = Duration::from_secs(4);
/// At most one warning per webhook per core in this time, so a receiver that is down
/// does not flood the log with a line per message.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// What every executor's sender shares: the webhooks and, for `https://` ones, the TLS
/// client configuration with the system's roots.
pub struct Client {
    webhooks: Arc<[Webhook]>,
    tls: Option<TlsConnector>,
}

/// The shard's side of the queue, as the sender needs it (the runtime implements it, so
/// `net` does not import the runtime).
pub trait Outbox: 'static {
    /// Every attempt due at `now_ms` that has a free request slot, bodies rendered.
    fn take_due(&self, now_ms: u64) -> Vec<Attempt>;
    /// Hands an attempt back: delivered (a 2xx), or to be retried.
    fn finish(&self, attempt: Attempt, delivered: bool, now_ms: u64);
    /// When the earliest retry falls due, if one is scheduled.
    fn next_retry_ms(&self) -> Option<u64>;
}

impl Client {
    /// The client for `config.webhooks`; `None` without webhooks. Loads the system's
    /// trusted roots (`SSL_CERT_FILE` or `SSL_CERT_DIR` replace them) when a webhook is
    /// `https://`.
    ///
    /// # Errors
    /// An `https://` webhook, and no trusted root could be loaded.
    pub fn new(config: &Config) -> anyhow::Result<Option<Arc<Client>>> {
        if config.webhooks.is_empty() {
            return Ok(None);
        }
        let tls = if config.webhooks.iter().any(|webhook| webhook.url.tls) {
            Some(TlsConnector::from(client_config()?))
        } else {
            None
        };
        Ok(Some(Arc::new(Client {
            webhooks: Arc::from(config.webhooks.as_slice()),
            tls,
        })))
    }

    /// The configured webhooks, shared with every shard's queue.
    pub fn webhooks(&self) -> Arc<[Webhook]> {
        self.webhooks.clone()
    }
}

/// A rustls client config with the ring provider, TLS 1.2 and 1.3, and the system's roots.
fn client_config() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (n_added, _n_ignored) = roots.add_parsable_certificates(loaded.certs);
    if n_added == 0 {
        let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "an https:// --webhook needs trusted root certificates, and none could be loaded \
             from the system (install ca-certificates, or point SSL_CERT_FILE at a PEM file){}",
            if errors.is_empty() {
                String::new()
            } else {
                format!(": {}", errors.join("; "))
            }
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| anyhow::anyhow!("TLS client: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One webhook's connections and log state on this executor.
struct Lane {
    url: crate::config::WebhookUrl,
    /// For `https://`: the name the certificate must carry.
    server_name: Option<ServerName<'static>>,
    /// Kept connections, the most recently used last.
    idle: RefCell<Vec<(Stream, Instant)>>,
    last_warning: Cell<Option<Instant>>,
}

/// Sends the shard's webhook events until `wake` ends (the shard closed its queue at
/// shutdown). Requests still in flight then finish on their own, by their deadline.
pub async fn run<O: Outbox>(
    outbox: Rc<O>,
    client: Arc<Client>,
    timeout: Duration,
    mut wake: mpsc::Receiver<()>,
) {
    let lanes: Rc<[Lane]> = client
        .webhooks
        .iter()
        .map(|webhook| Lane {
            server_name: webhook
                .url
                .tls
                .then(|| ServerName::try_from(webhook.url.host.clone()).ok())
                .flatten(),
            url: webhook.url.clone(),
            idle: RefCell::new(Vec::with_capacity(IN_FLIGHT_MAX)),
            last_warning: Cell::new(None),
        })
        .collect();
    loop {
        for attempt in outbox.take_due(now_ms()) {
            let outbox = outbox.clone();
            let client = client.clone();
            let lanes = lanes.clone();
            glommio::spawn_local(async move {
                let lane = &lanes[attempt.webhook_idx];
                let delivered = post(&client, lane, &attempt, timeout).await;
                outbox.finish(attempt, delivered, now_ms());
            })
            .detach();
        }
        let woken = match outbox.next_retry_ms() {
            Some(due_ms) => {
                let wait = Duration::from_millis(due_ms.saturating_sub(now_ms()));
                futures_lite::future::or(async { wake.next().await.is_some() }, async {
                    glommio::timer::sleep(wait).await;
                    true
                })
                .await
            }
            None => wake.next().await.is_some(),
        };
        if !woken {
            return;
        }
    }
}

/// Sends one attempt; true when the receiver answered 2xx.
async fn post(client: &Client, lane: &Lane, attempt: &Attempt, timeout: Duration) -> bool {
    // Head and body in one buffer: one write and, with TCP_NODELAY, one segment, rather
    // than a small segment for the head that the receiver wakes up for on its own.
    let mut request = webhook::request_head(&lane.url, attempt, true);
    request.extend_from_slice(attempt.body.as_bytes());
    let deadline = Instant::now() + timeout;
    let exchange = async {
        if let Some(mut stream) = take_idle(lane) {
            match http_client::send(&mut stream, &request, &[], REPLY_BYTES_MAX).await {
                Ok(response) => return Ok((response, stream)),
                // The receiver closed it while it was idle: try once on a new connection.
                Err(http_client::Error::Closed | http_client::Error::Io(_)) => {}
                Err(error) => return Err(error),
            }
        }
        let tls = match (&client.tls, &lane.server_name) {
            (Some(connector), Some(name)) => Some((connector, name.clone())),
            _ => None,
        };
        let connect_timeout = deadline.saturating_duration_since(Instant::now());
        let mut stream = http_client::connect(lane.url.addr, tls, connect_timeout).await?;
        let response = http_client::send(&mut stream, &request, &[], REPLY_BYTES_MAX).await?;
        Ok((response, stream))
    };
    match http_client::within(deadline, exchange).await {
        Ok((response, mut stream)) => {
            if response.reusable {
                let mut idle = lane.idle.borrow_mut();
                if idle.len() < IN_FLIGHT_MAX {
                    idle.push((stream, Instant::now()));
                }
            } else {
                let _ = stream.close().await;
            }
            let delivered = (200..300).contains(&response.status);
            if !delivered {
                warn(lane, attempt, &format!("answered {}", response.status));
            }
            delivered
        }
        Err(error) => {
            warn(lane, attempt, &error.to_string());
            false
        }
    }
}

/// The most recently used kept connection that has not idled too long; older ones are
/// closed (dropped) on the way.
fn take_idle(lane: &Lane) -> Option<Stream> {
    let mut idle = lane.idle.borrow_mut();
    let (stream, since) = idle.pop()?;
    if since.elapsed() > CONN_IDLE_MAX {
        // The others are older still.
        idle.clear();
        return None;
    }
    Some(stream)
}

/// Logs a failed attempt, at most once per `WARN_INTERVAL` per webhook on this executor.
fn warn(lane: &Lane, attempt: &Attempt, why: &str) {
    let now = Instant::now();
    if lane
        .last_warning
        .get()
        .is_some_and(|last| now.duration_since(last) < WARN_INTERVAL)
    {
        return;
    }
    lane.last_warning.set(Some(now));
    tracing::warn!(
        webhook = %lane.url,
        attempt = attempt.attempt_n,
        "webhook request failed: {why} (further failures of this webhook are not logged for \
         {}s)",
        WARN_INTERVAL.as_secs()
    );
}
