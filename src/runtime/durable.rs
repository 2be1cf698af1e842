//! What the executors share about durability: the data directory, the keys, and the two
//! moments all shards must agree on, the end of the restore (every shard's restored mail
//! is durable in the new generation, so `CURRENT` may switch to it) and snapshot rounds
//! (`--durability snapshot`: every shard has written its part of a new generation).
//!
//! The coordination is a few atomics and one mutex, touched a few times per restart or
//! snapshot, never per message. The file operations here (`CURRENT`, creating and removing
//! generation directories) are small and rare, and run on glommio's blocking pool.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;

use crate::config::{Config, Durability};
use crate::journal::crypto::KeyRing;
use crate::journal::layout::{Current, Layout};

/// How often a shard waiting for the others looks again.
const COORDINATION_POLL: Duration = Duration::from_millis(10);

/// Durability state shared by every executor.
pub struct Durable {
    pub layout: Layout,
    pub keys: Option<Arc<KeyRing>>,
    /// What `CURRENT` said at start: the generation to restore from.
    pub restore_from: Option<Current>,
    /// This boot's `MessageId::boot_micros`: later than every restored id's.
    pub boot_micros: u64,
    n_shards: usize,
    /// The generation `CURRENT` names now (0: none yet).
    current: AtomicU64,
    /// The generation being written: the restore's, then each snapshot round's (0: none).
    round: AtomicU64,
    /// Shards done with the round.
    round_done: AtomicUsize,
    /// The generation of the snapshot round taken on the way out (0: not started).
    final_round: AtomicU64,
    /// Serializes starting and finishing rounds (rare).
    round_lock: Mutex<()>,
    /// A shard failed to restore: the others stop waiting.
    pub failed: AtomicBool,
}

impl Durable {
    /// Opens the data directory, reads `CURRENT` and the keys, and creates the generation
    /// the restore writes into. `None` with `--durability none`.
    ///
    /// # Errors
    /// The data directory or the key file cannot be used (the message says which and why).
    pub fn prepare(config: &Config, now_micros: u64) -> anyhow::Result<Option<Arc<Durable>>> {
        if config.durability == Durability::None {
            return Ok(None);
        }
        let root = config
            .data_dir
            .as_deref()
            .context("--durability needs --data-dir")?;
        let layout = Layout::open(root)
            .with_context(|| format!("cannot use --data-dir {}", root.display()))?;
        let restore_from = layout
            .current()
            .with_context(|| format!("cannot read the data directory {}", root.display()))?;
        let keys = config
            .encryption_key_file
            .as_deref()
            .map(KeyRing::load)
            .transpose()?
            .map(Arc::new);
        let generation = restore_from.map_or(1, |current| current.generation + 1);
        match restore_from {
            // Half-written generations of an earlier start go; the one to restore stays.
            Some(current) => layout.remove_other_generations(current.generation),
            None => layout.remove_other_generations(0),
        }
        .with_context(|| format!("cannot tidy the data directory {}", root.display()))?;
        layout
            .create_generation(generation, config.cores)
            .with_context(|| format!("cannot write to the data directory {}", root.display()))?;
        let boot_micros = now_micros.max(restore_from.map_or(0, |current| current.boot_micros + 1));
        Ok(Some(Arc::new(Durable {
            layout,
            keys,
            restore_from,
            boot_micros,
            n_shards: config.cores,
            current: AtomicU64::new(restore_from.map_or(0, |current| current.generation)),
            round: AtomicU64::new(generation),
            round_done: AtomicUsize::new(0),
            final_round: AtomicU64::new(0),
            round_lock: Mutex::new(()),
            failed: AtomicBool::new(false),
        })))
    }

    /// The generation being written now (the restore's, or a snapshot round's); 0: none.
    pub fn round(&self) -> u64 {
        self.round.load(Ordering::Acquire)
    }

    /// The generation `CURRENT` names.
    pub fn current(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    /// Starts a snapshot round (creating its generation), or joins the one in progress;
    /// returns its generation.
    ///
    /// # Errors
    /// The generation's directories cannot be created.
    pub fn start_round(&self) -> std::io::Result<u64> {
        let _lock = self
            .round_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let round = self.round.load(Ordering::Acquire);
        if round != 0 {
            return Ok(round);
        }
        let generation = self.current() + 1;
        self.layout.create_generation(generation, self.n_shards)?;
        self.round_done.store(0, Ordering::Release);
        self.round.store(generation, Ordering::Release);
        Ok(generation)
    }

    /// The round every shard writes once nothing is stored any more: started by the first
    /// shard to ask, joined by the others. `Err(Ok(round))` while a periodic round is in
    /// progress (the caller writes its part of that one first, if it has not).
    ///
    /// # Errors
    /// `Err(Ok(round))` as above; `Err(Err(_))` when the generation cannot be created.
    pub fn start_final_round(&self) -> Result<u64, std::io::Result<u64>> {
        let _lock = self
            .round_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let final_round = self.final_round.load(Ordering::Acquire);
        if final_round != 0 {
            return Ok(final_round);
        }
        let round = self.round.load(Ordering::Acquire);
        if round != 0 {
            return Err(Ok(round));
        }
        let generation = self.current() + 1;
        self.layout
            .create_generation(generation, self.n_shards)
            .map_err(Err)?;
        self.round_done.store(0, Ordering::Release);
        self.round.store(generation, Ordering::Release);
        self.final_round.store(generation, Ordering::Release);
        Ok(generation)
    }

    /// This shard has made its part of round `generation` durable; the last shard to say
    /// so switches `CURRENT` to it and removes the older generation. Returns whether this
    /// call switched.
    ///
    /// # Errors
    /// `CURRENT` could not be written (the round stays unfinished and the old generation
    /// stays current).
    pub fn finish_part(&self, generation: u64) -> std::io::Result<bool> {
        let _lock = self
            .round_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.round.load(Ordering::Acquire) != generation {
            return Ok(false);
        }
        let n_done = self.round_done.fetch_add(1, Ordering::AcqRel) + 1;
        if n_done < self.n_shards {
            return Ok(false);
        }
        self.layout.write_current(&Current {
            generation,
            cores: self.n_shards,
            boot_micros: self.boot_micros,
        })?;
        self.current.store(generation, Ordering::Release);
        self.round.store(0, Ordering::Release);
        if let Err(error) = self.layout.remove_other_generations(generation) {
            tracing::warn!("cannot remove an old generation of the data directory: {error}");
        }
        Ok(true)
    }

    /// Waits until `CURRENT` names `generation` (every shard finished its part), or a
    /// shard failed, or `give_up` says so. Returns whether it was switched.
    pub async fn switched(&self, generation: u64, give_up: impl Fn() -> bool) -> bool {
        loop {
            if self.current() >= generation {
                return true;
            }
            if self.failed.load(Ordering::Acquire) || give_up() {
                return false;
            }
            glommio::timer::sleep(COORDINATION_POLL).await;
        }
    }
}
