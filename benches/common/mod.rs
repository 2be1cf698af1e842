//! Setup shared by the benches that run inbox requests against one filled shard
//! (`http.rs`, `search.rs`): the clock the messages are stored at, the shard, and a
//! listing request.

use mayfly::address::InboxKey;
use mayfly::http::api::{InboxOp, InboxRequest};
use mayfly::mail::ViewCache;
use mayfly::mail::search::Query;
use mayfly::store::{Incoming, Rcpt, Shard, ShardConfig};

/// A boot time in the past of `NOW_MS`, so ids look like a real run's.
pub const BOOT_MICROS: u64 = 1_764_000_000_000_000;
/// "Now" for every insert and request: nothing expires during a bench.
pub const NOW_MS: u64 = 1_795_817_744_000;
/// Long enough that no message expires.
pub const TTL_MS: u64 = 3_600_000;

/// A shard and its view cache: what `api::execute` runs against.
pub type Inbox = (Shard, ViewCache);

/// How big the shard is, and whose inbox it fills.
pub struct InboxSetup {
    pub address: &'static str,
    pub mail_from: &'static str,
    pub ring_bytes: usize,
    pub view_cache_bytes: usize,
}

impl InboxSetup {
    /// A shard holding every one of `messages` for `address`, no summary parsed yet.
    pub fn filled_shard(&self, messages: &[Vec<u8>]) -> Inbox {
        let mut shard = Shard::new(ShardConfig {
            shard_idx: 0,
            boot_micros: BOOT_MICROS,
            ring_bytes: self.ring_bytes,
            ttl_ms: TTL_MS,
            inbox_messages_max: messages.len(),
        });
        let rcpts = [Rcpt::new(self.address).expect("a valid address")];
        for raw in messages {
            let incoming = Incoming {
                mail_from: self.mail_from,
                rcpts: &rcpts,
                parts: &[raw.as_slice()],
                received_at_ms: NOW_MS,
            };
            if let Err(error) = shard.insert(&incoming, NOW_MS) {
                panic!("insert failed: {error}");
            }
        }
        assert_eq!(shard.stats().messages_held, messages.len() as u64);
        (shard, ViewCache::new(self.view_cache_bytes))
    }

    /// `GET` of the newest `limit` messages of the inbox, matching `q` when given.
    pub fn list_request(&self, q: Option<&str>, limit: usize) -> InboxRequest {
        InboxRequest {
            key: InboxKey::new(self.address)
                .expect("a valid address")
                .into_owned(),
            op: InboxOp::List {
                after: None,
                limit,
                wait_secs: 0,
                query: q.map(|q| Query::parse(q).expect("a valid query")),
            },
        }
    }
}
