//! Tests of journal files: commits read back, damage detected, per-file keys (a deleted
//! file's key gone), and files of the format before per-file keys still read.

use std::sync::Arc;

use super::*;
use crate::journal::crypto::KeyRing;
use crate::journal::ratchet::KeyFile;
use crate::journal::record::{ArchivedRecord, IdRecord, RcptRecord, Record, append_frame};
use crate::testing::{TempDir, run_local as run};

/// A batch of `n` Stored records with bodies `body{first}`.. and their frame starts.
fn batch(first: u64, n: u64, sealed: bool) -> (Vec<u8>, Vec<usize>) {
    let rcpts = [RcptRecord {
        key: "a@x.test",
        written: "a@x.test",
    }];
    let mut out = Vec::new();
    let mut starts = Vec::new();
    for seq in first..first + n {
        let body = format!("body{seq} {}", "x".repeat(seq as usize * 37 % 3000));
        let record = Record::Stored {
            id: IdRecord {
                boot_micros: 1,
                shard_idx: 0,
                seq,
            },
            received_at_ms: seq,
            expires_at_ms: 1_000_000,
            mail_from: "s@x.test",
            rcpts: &rcpts,
            received: b"Received: x\r\n",
            body: body.as_bytes(),
        };
        starts.push(append_frame(&mut out, &record, sealed));
    }
    (out, starts)
}

fn seqs(contents: &FileContents) -> Vec<u64> {
    contents
        .records()
        .map(|record| match record.expect("valid") {
            ArchivedRecord::Stored { id, body, .. } => {
                let seq = id.to_native().seq;
                assert!(body.as_ref().starts_with(format!("body{seq} ").as_bytes()));
                seq
            }
            _ => panic!("only Stored records were written"),
        })
        .collect()
}

fn keys(key: u8) -> Arc<KeyRing> {
    Arc::new(KeyRing::from_keys(&[[key; 32]], Path::new("k")).expect("key"))
}

/// A data key for file `number` of `dir`, from the directory's key file (made on
/// first use, as the flusher makes it).
async fn file_key(dir: &Path, keys: &Arc<KeyRing>, number: u64) -> FileKey {
    let mut key_file = KeyFile::open_or_create(dir, 0, 1, keys)
        .await
        .expect("key file");
    key_file.new_file_key(number).expect("key")
}

/// Reads `path` with its directory's keys under `master`.
async fn read_with(path: &Path, master: Option<Arc<KeyRing>>) -> Result<FileContents, ReadError> {
    let mut dir_keys = DirKeys::new(path.parent().expect("a dir"), master);
    FileContents::read(path, &mut dir_keys).await
}

/// The error reading `path` with `master` gives (the test fails if it reads).
fn refused(path: &Path, master: Option<Arc<KeyRing>>) -> ReadError {
    let path = path.to_path_buf();
    run(async move { read_with(&path, master).await.err().expect("refused") })
}

#[test]
fn commits_read_back_in_order_sealed_or_not() {
    for sealed in [false, true] {
        let dir = TempDir::new(if sealed { "sealed" } else { "plain" });
        let path = dir.0.clone();
        let keys = sealed.then(|| keys(1));
        let read = run(async move {
            let file_key = match &keys {
                Some(keys) => Some(file_key(&path, keys, 7).await),
                None => None,
            };
            let mut writer = FileWriter::create(&path, 2, 7, file_key, 99, 64 * 1024)
                .await
                .expect("created");
            // Batches of odd sizes, so commits rewrite partial blocks.
            let mut first = 0;
            for n in [1, 5, 2, 30, 1] {
                let (mut bytes, starts) = batch(first, n, sealed);
                writer.commit(&mut bytes, &starts).await.expect("committed");
                first += n;
            }
            assert_eq!(writer.number(), 7);
            let file_path = writer.path().to_path_buf();
            writer.close().await;
            read_with(&file_path, keys).await.expect("read")
        });
        assert_eq!(read.header.shard_idx, 2);
        assert_eq!(read.header.number, 7);
        assert_eq!(read.header.key_id.is_some(), sealed);
        assert_eq!(seqs(&read), (0..39).collect::<Vec<_>>());
        assert_eq!((read.n_corrupt, read.torn_tail), (0, false));
    }
}

#[test]
fn damage_is_detected_and_the_rest_still_read() {
    let dir = TempDir::new("damage");
    let path = dir.0.clone();
    let file_path = run(async move {
        let file_key = file_key(&path, &keys(3), 1).await;
        let mut writer = FileWriter::create(&path, 0, 1, Some(file_key), 0, 0)
            .await
            .expect("created");
        let (mut bytes, starts) = batch(0, 10, true);
        writer.commit(&mut bytes, &starts).await.expect("committed");
        let file_path = writer.path().to_path_buf();
        writer.close().await;
        file_path
    });
    let original = std::fs::read(&file_path).unwrap();
    // Sealed: the plaintext is nowhere in the file.
    assert!(!original.windows(5).any(|window| window == b"body3"));

    // A flipped byte inside the third frame: that record is skipped, the others read.
    let mut flipped = original.clone();
    let third = HEADER_BYTES as usize + batch(0, 10, true).1[2] + 40;
    flipped[third] ^= 0x10;
    std::fs::write(&file_path, &flipped).unwrap();
    let path = file_path.clone();
    let read = run(async move { read_with(&path, Some(keys(3))).await.expect("read") });
    assert_eq!(read.n_corrupt, 1);
    assert_eq!(seqs(&read), [0, 1, 3, 4, 5, 6, 7, 8, 9]);

    // Cut in the middle of the last frame: a torn tail, the rest read.
    let cut = HEADER_BYTES as usize + batch(0, 10, true).1[9] + 30;
    std::fs::write(&file_path, &original[..cut]).unwrap();
    let path = file_path.clone();
    let read = run(async move { read_with(&path, Some(keys(3))).await.expect("read") });
    assert!(read.torn_tail);
    assert_eq!(seqs(&read), (0..9).collect::<Vec<_>>());

    // Without the key, or with another one: refused with a clear error.
    std::fs::write(&file_path, &original).unwrap();
    let error = refused(&file_path, None);
    assert!(
        error
            .to_string()
            .contains("is sealed but no --encryption-key-file"),
        "{error}"
    );
    let error = refused(&file_path, Some(keys(4)));
    assert!(
        error.to_string().contains("which --encryption-key-file"),
        "{error}"
    );
    // A header that is not ours.
    let mut bad = original.clone();
    bad[0] = b'X';
    std::fs::write(&file_path, &bad).unwrap();
    let error = refused(&file_path, Some(keys(3)));
    assert!(matches!(error, ReadError::BadHeader { .. }));
}

#[test]
fn a_deleted_files_key_is_gone_and_a_foreign_key_file_is_named() {
    let dir = TempDir::new("shredded");
    let other = TempDir::new("shredded-other");
    let (path, other_path) = (dir.0.clone(), other.0.clone());
    let master = keys(3);
    run(async move {
        let mut key_file = KeyFile::open_or_create(&path, 0, 1, &master).await.unwrap();
        for number in [1, 2] {
            let file_key = key_file.new_file_key(number).unwrap();
            let mut writer = FileWriter::create(&path, 0, number, Some(file_key), 0, 0)
                .await
                .unwrap();
            let (mut bytes, starts) = batch(number * 10, 3, true);
            writer.commit(&mut bytes, &starts).await.unwrap();
            writer.close().await;
        }
        let advance = key_file.prepare_advance(2).unwrap().unwrap();
        KeyFile::write_advance(key_file.path(), &advance)
            .await
            .unwrap();
        key_file.finish_advance(advance);
        let mut dir_keys = DirKeys::new(&path, Some(master.clone()));
        let first = path.join(file_name(1));
        let error = FileContents::read(&first, &mut dir_keys).await.err();
        assert!(
            matches!(error, Some(ReadError::Shredded { .. })),
            "{error:?}"
        );
        assert!(FileContents::check_key(&first, &mut dir_keys).is_err());
        let second = FileContents::read(&path.join(file_name(2)), &mut dir_keys)
            .await
            .expect("live");
        assert_eq!(seqs(&second), [20, 21, 22]);
        // Another directory's key file, same master key: named, not taken for damage.
        KeyFile::open_or_create(&other_path, 0, 1, &master)
            .await
            .unwrap();
        let mut foreign = DirKeys::new(&other_path, Some(master));
        let error = FileContents::check_key(&path.join(file_name(2)), &mut foreign);
        assert!(
            matches!(error, Err(ReadError::WrongKeyFile { .. })),
            "{error:?}"
        );
    });
}

/// A version-1 file as the code before per-file keys wrote it (file 3 of shard 0,
/// sealed with master key `[0x5a; 32]` directly: two Stored records and an
/// InboxDeleted): the 48 used bytes of its header, then its frames up to the zeros.
const V1_HEADER_HEX: &str = concat!(
    "4d4159464c594a310100000000000000030000000000000060bf07c488aad18fc45b360c00e897b6",
    "9a010000ffa92cb0",
);
const V1_FRAMES_HEX: &str = concat!(
    "4d464a31d8000000d292428b010000008eed501a2d58c049b52a3e84cb2acbc6d57afb9d5c7821cc",
    "e5d762cd0606174ed77f12f5530a5ff8ff25e8c086d99fe751b1cc8bb8f785f4833f3927b579b24b",
    "47d28dd55a02deb7058275e3ea87d4e610ac7f48b400c0366edbbbd91461d88bf68a747c16d3b125",
    "a7c593f7fdca9570e93a70cd65dab5c4354374eb07ac78853855e2f5e19e92be8d8b0c74b509a252",
    "0ff570520354e74456f4d7ad52022d3ded1f450dee84711a2dc076ccfe72e330128139bcf6370cd2",
    "ca91c126b3eea7458be114b5bfe21a09ec49f72a514011297a6ddf31731cd2fa0000000000000000",
    "4d464a31d8000000b7ca798c0100000080d454747e8c4e97c5d7123c915adf795ef0d74a45c12151",
    "6262e05bb6c452be65b9a1e7a1e11a85cb72de946f2b64fd8d592817f803a75a9d9610318e9ce5bd",
    "39364c9e88f6e98017e35783e51209f7911fc7c1df4ba6c96ded25491f16dcbec57c63fc538b92da",
    "f0f0e84b46a41e705b3a82abf1f331896021a6041855f6b1735e61c896b0df56bd36a5125d678289",
    "de6b36fa41714b539151ff239af411ac2c27c7d7d53e064115f49c6952140d1baa7b344edd96f2d6",
    "498c667bb68b3fa0fe34cfe7e765311d4aea34bad370f0a6c935a653df25099c0000000000000000",
    "4d464a3178000000efc18a1d010000003ca6f00e15c6bb5d2d271ea69af67c1361ced9f424e74c0b",
    "3f6acd290c9248dbe5750cbc86289234f7faf58877ad52d2c837f7860868704814597882678a04ee",
    "6dbc60e4ed25410a3a824e9b5a4cfbabe3a6570a18d3f9b759bb39242f57d2b105ccd78e27f3e225",
    "237af808a718ce8b000d8762419a7e07",
);

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn files_sealed_with_the_master_key_before_per_file_keys_still_read() {
    let dir = TempDir::new("v1");
    let mut bytes = from_hex(V1_HEADER_HEX);
    bytes.resize(HEADER_BYTES as usize, 0);
    bytes.extend_from_slice(&from_hex(V1_FRAMES_HEX));
    // The writer padded the last block with zeros (which may end a tag, too).
    bytes.resize(bytes.len().next_multiple_of(4096), 0);
    let file_path = dir.0.join(file_name(3));
    std::fs::write(&file_path, &bytes).unwrap();
    let path = file_path.clone();
    // No key file in the directory: a version-1 file needs none.
    let contents = run(async move { read_with(&path, Some(keys(0x5a))).await.expect("read") });
    assert_eq!(contents.header.version, FORMAT_VERSION_MASTER_KEY);
    assert_eq!(contents.header.number, 3);
    assert_eq!((contents.n_corrupt, contents.torn_tail), (0, false));
    let records: Vec<String> = contents
        .records()
        .map(|record| match record.expect("valid") {
            ArchivedRecord::Stored { body, rcpts, .. } => format!(
                "{} {}",
                rcpts[0].written.as_ref() as &str,
                String::from_utf8_lossy(body.as_ref()).trim_end()
            ),
            ArchivedRecord::InboxDeleted { key } => format!("emptied {}", key.as_ref() as &str),
            ArchivedRecord::Deleted { .. } => "deleted".to_string(),
        })
        .collect();
    assert_eq!(
        records,
        [
            "Legacy@example.test Subject: v1 0\r\n\r\nLegacy-Marker-0",
            "Legacy@example.test Subject: v1 1\r\n\r\nLegacy-Marker-1",
            "emptied gone@example.test",
        ]
    );
    // Another master key: the file names the one it needs.
    let error = refused(&file_path, Some(keys(1)));
    assert!(error.to_string().contains("was sealed with key"), "{error}");
}

#[test]
fn file_names_sort_like_numbers() {
    assert_eq!(file_name(26), "000000000000001a.journal");
    assert_eq!(number_of(&file_name(u64::MAX)), Some(u64::MAX));
    assert_eq!(number_of("1a.journal"), None);
    assert_eq!(number_of("000000000000001a.tmp"), None);
}
