//! Criterion benchmarks of the journal's keys (`journal::ratchet`): what crypto-shredding
//! costs, and proof that the per-record path did not change.
//!
//! - `journal_keys/new_file_key`: `KeyFile::new_file_key` for the next file number (a
//!   random salt, one ratchet step, one HKDF for the data key) and the AES key schedule
//!   of its `Sealer`: what the flusher pays once per journal file (every
//!   `--journal-file-size`, 64 MiB by default), never per record.
//! - `journal_keys/prepare_advance`: the CPU side of deleting files: step the seed past
//!   one file and seal the new key-file slot under the master key.
//! - `journal_keys/advance_durable`: `KeyFile::write_advance`, the two in-place slot writes
//!   and their two `fdatasync`s, on the disk holding the temp directory (`TMPDIR`); paid
//!   once per batch of deleted files, on the housekeeping path, not by any message.
//! - `journal_seal/frame_1KiB/{data_key,master_key}`: sealing one 1 KiB record with a
//!   per-file data key and with a master key (how files were sealed before): the same
//!   `Sealer::seal`, so the two should cost the same.
//!
//! Every benchmark checks its answer, so a broken one fails instead of measuring an error.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mayfly::journal::crypto::KeyRing;
use mayfly::journal::ratchet::{KEY_FILE_BYTES, KEY_FILE_NAME, KeyFile};

/// The server's allocator (`src/main.rs`), so allocation costs are the ones it pays.
#[global_allocator]
static GLOBAL: mayfly::alloc::WipingMiMalloc = mayfly::alloc::WipingMiMalloc;

/// Bytes of the sealed record in `journal_seal`.
const RECORD_BYTES: usize = 1024;

fn criterion_config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// A fresh directory, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("mayfly-bench-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::default()
        .make()
        .expect("executor")
        .run(future)
}

fn key_file(dir: &Path, master: &Arc<KeyRing>) -> KeyFile {
    let (dir, master) = (dir.to_path_buf(), master.clone());
    run(async move {
        KeyFile::open_or_create(&dir, 0, 1, &master)
            .await
            .expect("key file")
    })
}

fn keys(c: &mut Criterion) {
    let dir = TempDir::new();
    let master = Arc::new(KeyRing::from_keys(&[[7; 32]], Path::new("bench.key")).expect("key"));
    let mut key_file = key_file(&dir.0, &master);
    let mut group = c.benchmark_group("journal_keys");
    let mut number = 1u64;
    let mut last_fingerprint = 0;
    group.bench_function("new_file_key", |b| {
        b.iter(|| {
            number += 1;
            let file_key = key_file.new_file_key(black_box(number)).expect("live");
            let fingerprint = file_key.key.fingerprint();
            assert_ne!(fingerprint, last_fingerprint, "a key of its own");
            last_fingerprint = fingerprint;
            file_key.key.sealer(0, number)
        })
    });
    let base = key_file.base();
    group.bench_function("prepare_advance", |b| {
        b.iter(|| {
            let advance = key_file
                .prepare_advance(black_box(base + 1))
                .expect("random");
            assert!(advance.is_some());
            advance
        })
    });
    group.bench_function("advance_durable", |b| {
        b.iter_custom(|n_iters| {
            let mut key_file = KeyFile::load(&dir.0, &master)
                .expect("loads")
                .expect("there");
            let path = dir.0.join(KEY_FILE_NAME);
            run(async move {
                let started = Instant::now();
                for _ in 0..n_iters {
                    let advance = key_file
                        .prepare_advance(key_file.base() + 1)
                        .expect("random")
                        .expect("moves");
                    KeyFile::write_advance(&path, &advance)
                        .await
                        .expect("written");
                    key_file.finish_advance(advance);
                }
                started.elapsed()
            })
        })
    });
    group.finish();
    let on_disk = std::fs::metadata(dir.0.join(KEY_FILE_NAME)).expect("there");
    assert_eq!(on_disk.len(), KEY_FILE_BYTES as u64, "overwritten in place");
}

fn seal(c: &mut Criterion) {
    let dir = TempDir::new();
    let master = Arc::new(KeyRing::from_keys(&[[7; 32]], Path::new("bench.key")).expect("key"));
    let mut key_file = key_file(&dir.0, &master);
    let data_key = key_file.new_file_key(1).expect("live").key.sealer(0, 1);
    let master_key = master
        .opener(master.current_id(), 0, 1, "bench")
        .expect("key");
    let mut group = c.benchmark_group("journal_seal");
    group.throughput(Throughput::Bytes(RECORD_BYTES as u64));
    for (name, sealer) in [("data_key", &data_key), ("master_key", &master_key)] {
        let mut record = vec![0x42u8; RECORD_BYTES];
        let mut counter = 0u64;
        group.bench_function(format!("frame_1KiB/{name}"), |b| {
            b.iter(|| {
                counter += 1;
                let tag = sealer.seal(counter, black_box(&mut record));
                assert_ne!(tag, [0; 16]);
                tag
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion_config();
    targets = keys, seal
}
criterion_main!(benches);
