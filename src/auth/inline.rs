//! Sender checks on the executor itself, when every answer they need is cached there.
//!
//! Handing a message to the resolver thread and its answer back costs an executor 12 to
//! 17 µs per message in W2 (a wake-up of the thread, which then preempts the executor on
//! its core, and a wake-up back: docs/performance.md, "Sender authentication cost"), more
//! than SPF, DMARC and iprev cost from a cache together. So each executor keeps its own
//! copy of the caches, filled with what the thread's checks used (`Learned`, sent back
//! after the answer), and checks a message itself first: the same `check_message`, polled
//! once. With every answer cached it finishes in that one poll, with the very results
//! the thread would give. The first miss (a name not cached, or expired) marks the try
//! as failed; its results are dropped and the message goes to the thread as before, with
//! the executor asking for what the check used. A sender whose SPF record the executor has
//! not got yet (a first message from its domain) goes to the thread without a try.
//!
//! The executor never waits on DNS: its mail-auth resolver has no name servers, so a
//! lookup after a miss fails at once (and is never awaited: the try ends with its first
//! poll). It does spend the signature verification itself, so only what is cheap enough
//! to do between two other sessions' turns is tried: messages up to
//! `INLINE_MESSAGE_BYTES_MAX` (DKIM hashes the whole body) with at most
//! `INLINE_SIGNATURES_MAX` signatures.

use std::future::Future;
use std::task::{Context, Waker};

use futures_channel::oneshot;
use mail_auth::MessageAuthenticator;
use mail_auth::hickory_resolver::config::{ResolveHosts, ResolverConfig, ResolverOpts};

use crate::auth::cache::{Caches, Learned, Track};
use crate::auth::checks::{Checker, check_message, is_spf_domain};
use crate::auth::results::spf_identity;
use crate::auth::{AuthResults, Verifier, VerifyRequest};

/// Largest message an executor checks itself: hashing 64 KiB of body and headers takes
/// some 40 µs, about one RSA-2048 verification. Larger ones go to the thread.
pub const INLINE_MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// Most signatures (DKIM, and ARC's two per hop) an executor verifies for one message:
/// two Ed25519 signatures are some 80 µs. Messages with more go to the thread.
pub const INLINE_SIGNATURES_MAX: usize = 2;
/// Batches of learned entries waiting for the executor. The thread never blocks on a
/// full queue: it drops the batch, and the executor's next such check misses again.
const LEARNED_BATCHES_MAX: usize = 256;

/// Where a message's checks ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// On the executor: every answer was cached there. The receiver is already complete.
    Executor,
    /// On the resolver thread.
    Thread,
}

/// One executor's sender checks: its own caches, and the shared resolver thread for
/// whatever they lack. Not `Send`: one per executor.
pub struct LocalVerifier {
    verifier: Verifier,
    /// A resolver with no name servers: a lookup after a cache miss fails at once. None
    /// if hickory could not build one: then every message goes to the thread.
    authenticator: Option<MessageAuthenticator>,
    caches: Caches,
    learned_tx: crossbeam_channel::Sender<Vec<Learned>>,
    learned_rx: crossbeam_channel::Receiver<Vec<Learned>>,
}

impl LocalVerifier {
    /// This executor's checks, on `verifier`'s thread for what is not cached here.
    pub fn new(verifier: Verifier) -> LocalVerifier {
        let mut opts = ResolverOpts::default();
        opts.use_hosts_file = ResolveHosts::Never;
        opts.cache_size = 0;
        opts.attempts = 0;
        let authenticator = {
            let _entered = verifier.shared.runtime.enter();
            MessageAuthenticator::new(
                ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
                opts,
            )
        }
        .inspect_err(|err| {
            tracing::warn!("sender checks all go to the resolver thread: {err}");
        })
        .ok();
        let (learned_tx, learned_rx) = crossbeam_channel::bounded(LEARNED_BATCHES_MAX);
        LocalVerifier {
            verifier,
            authenticator,
            caches: Caches::new(),
            learned_tx,
            learned_rx,
        }
    }

    /// The shared resolver thread (its deadline, its counts).
    pub fn shared(&self) -> &Verifier {
        &self.verifier
    }

    /// Checks one message: here when every answer is cached here, else on the thread
    /// (see `Verifier::verify`). Either way the receiver gets exactly one answer.
    pub fn verify(&self, request: VerifyRequest) -> (oneshot::Receiver<AuthResults>, Route) {
        for batch in self.learned_rx.try_iter() {
            for entry in batch {
                self.caches.learn(entry);
            }
        }
        if request.message.len() > INLINE_MESSAGE_BYTES_MAX {
            return (self.verifier.verify(request), Route::Thread);
        }
        if self.knows_sender(&request)
            && let Some(results) = self.try_here(&request)
        {
            let (reply, answer) = oneshot::channel();
            let _ = reply.send(results);
            return (answer, Route::Executor);
        }
        // What the thread's check uses comes back for the next message of this sender.
        let learn = Some(self.learned_tx.clone());
        (self.verifier.verify_learning(request, learn), Route::Thread)
    }

    /// Whether this executor has the SPF record of the sender's domain (or SPF needs none):
    /// for a sender it has not heard of, the try would parse the message only to miss at the
    /// first lookup.
    fn knows_sender(&self, request: &VerifyRequest) -> bool {
        use mail_auth::common::resolver::ToFqdn as _;
        let (_, domain) = spf_identity(request);
        !is_spf_domain(domain) || self.caches.has_txt(&domain.to_fqdn(), &Track::misses())
    }

    /// The results, when every check finished in one poll without a cache miss.
    fn try_here(&self, request: &VerifyRequest) -> Option<AuthResults> {
        let track = Track::misses();
        let checker = Checker {
            authenticator: self.authenticator.as_ref()?,
            caches: &self.caches,
            track: &track,
            resolves: false,
            signatures_max: INLINE_SIGNATURES_MAX,
        };
        let mut results = AuthResults::temperror(request);
        let finished = {
            // A lookup after a miss may want a tokio reactor even though it fails at
            // once; it finds the resolver thread's (and is dropped unpolled after).
            let _entered = self.verifier.shared.runtime.enter();
            let check = std::pin::pin!(check_message(&checker, request, &mut results));
            check
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_ready()
        };
        (finished && !track.missed()).then_some(results)
    }
}
