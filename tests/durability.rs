//! Durability against the real binary: `--data-dir` with `--durability journal` and
//! `snapshot`, killed with SIGKILL or stopped with SIGTERM and started again on the same
//! directory; sealed with a key, damaged on disk, restarted with other `--cores`.
//!
//! The promise checked: in journal mode every message that got a 250 is readable after
//! `kill -9`, byte for byte, with its id; a deleted message never comes back; files hold
//! no plaintext when a key is given; damage is detected and reported, never trusted; a
//! journal file deleted with a key can no longer be opened from a copy of the disk.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, Smtp, inbox_path, run_to_exit, simple_message, strip_received};
use mayfly::journal::crypto::KeyRing;
use mayfly::journal::ratchet::{DirKeys, KEY_FILE_NAME};
use mayfly::journal::segment::{FileContents, ReadError};

/// A data directory for one test, removed at the end.
struct DataDir(PathBuf);

impl DataDir {
    fn new(name: &str) -> DataDir {
        let path =
            std::env::temp_dir().join(format!("mayfly-durability-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        DataDir(path)
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("UTF-8 temp path")
    }

    /// Every journal file under it.
    fn journal_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut dirs = vec![self.0.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|ext| ext == "journal") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(data: &DataDir, extra: &[&str]) -> Server {
    // Small files: each is zero-filled ahead when it is made.
    let mut args = vec!["--data-dir", data.arg(), "--journal-file-size", "1MiB"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn kill_9(mut server: Server) {
    server.signal(libc::SIGKILL);
    server.wait_exit(Duration::from_secs(10)).expect("killed");
}

fn stop(mut server: Server) {
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(60))
        .expect("stopped on SIGTERM");
    assert!(status.success(), "{status:?}: {}", server.stderr_text());
}

/// The ids and raw bytes (without our Received header) of an inbox, oldest first.
fn inbox_raw(server: &Server, address: &str) -> Vec<(String, Vec<u8>)> {
    let listing = server.inbox_query(address, "limit=1000");
    let mut messages: Vec<(String, Vec<u8>)> = listing["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|summary| {
            let id = summary["id"].as_str().expect("id").to_string();
            let raw = server.raw(address, &id);
            (id, strip_received(&raw).to_vec())
        })
        .collect();
    messages.reverse();
    messages
}

#[test]
fn journaled_mail_survives_kill_9_byte_for_byte_and_deletes_stay_deleted() {
    let data = DataDir::new("journal");
    let server = start(&data, &["--cores", "2"]);
    let mut smtp = server.smtp_ehlo();
    let mut sent = Vec::new();
    for index in 0..30 {
        let message = simple_message(&format!("kept {index}"), &format!("body {index}\r\n.dot"));
        let rcpts = [
            format!("alice{}@example.test", index % 3),
            "bob@example.test".to_string(),
        ];
        let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        smtp.send_mail("sender@example.test", &rcpts, &message);
        sent.push(message);
    }
    let before: Vec<_> = (0..3)
        .map(|n| inbox_raw(&server, &format!("alice{n}@example.test")))
        .collect();
    let bob_before = inbox_raw(&server, "bob@example.test");
    assert_eq!(bob_before.len(), 30);
    // One message deleted from one inbox, a whole inbox emptied: both acknowledged (204).
    let (deleted_id, _) = &before[0][0];
    let response = server.delete(&format!(
        "{}/messages/{deleted_id}",
        inbox_path("alice0@example.test")
    ));
    assert_eq!(response.status, 204);
    assert_eq!(
        server.delete(&inbox_path("alice1@example.test")).status,
        204
    );
    kill_9(server);

    let server = start(&data, &["--cores", "2"]);
    let alice0 = inbox_raw(&server, "alice0@example.test");
    assert_eq!(
        alice0,
        before[0][1..],
        "same ids, same bytes, the deleted one gone"
    );
    assert!(inbox_raw(&server, "alice1@example.test").is_empty());
    assert_eq!(inbox_raw(&server, "alice2@example.test"), before[2]);
    assert_eq!(inbox_raw(&server, "bob@example.test"), bob_before);
    for (index, (_, raw)) in bob_before.iter().enumerate() {
        assert_eq!(raw, &sent[index]);
    }
    // One copy per shard a message had recipients in: at least bob's 30 and alice's 20
    // left after the deletes (some share a shard with bob's copy).
    assert!(server.metric_total("mayfly_messages_restored_total") >= 30);
    // New mail after a restart gets ids after the restored ones.
    server.smtp_ehlo().send_mail(
        "x@example.test",
        &["bob@example.test"],
        &simple_message("new", "n"),
    );
    let bob = inbox_raw(&server, "bob@example.test");
    assert_eq!(bob.len(), 31);
    assert!(bob[30].0 > bob[29].0, "{} after {}", bob[30].0, bob[29].0);
    stop(server);
    // A clean stop and start again: still all there.
    let server = start(&data, &["--cores", "2"]);
    assert_eq!(inbox_raw(&server, "bob@example.test"), bob);
}

/// (recipient, message) of every message that got a 250.
type Acknowledged = Vec<(String, Vec<u8>)>;

#[test]
fn kill_9_in_the_middle_of_a_blast_loses_nothing_acknowledged() {
    let data = DataDir::new("blast");
    for round in 0..3 {
        let server = start(&data, &["--cores", "2"]);
        let acknowledged: Arc<Mutex<Acknowledged>> = Arc::new(Mutex::new(Vec::new()));
        let stop_sending = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..4)
            .map(|sender| {
                let (smtp_addr, acknowledged, stop_sending) =
                    (server.smtp_addr, acknowledged.clone(), stop_sending.clone());
                std::thread::spawn(move || {
                    let mut smtp = Smtp::connect(smtp_addr);
                    if smtp.read_reply_or_close().is_none() {
                        return;
                    }
                    smtp.send(b"EHLO blaster.example\r\n");
                    let _ = smtp.read_reply_or_close();
                    for index in 0.. {
                        if stop_sending.load(Ordering::Relaxed) {
                            return;
                        }
                        let address = format!("r{round}s{sender}n{}@example.test", index % 7);
                        let message = simple_message(
                            &format!("round {round} sender {sender} message {index}"),
                            &"x".repeat(200 + index % 900),
                        );
                        // Any failure (the server was killed) ends this sender; only a
                        // 250 counts as acknowledged.
                        let lines = format!(
                            "MAIL FROM:<s@example.test>\r\nRCPT TO:<{address}>\r\nDATA\r\n"
                        );
                        if !smtp.try_send(lines.as_bytes()) {
                            return;
                        }
                        for _ in 0..3 {
                            if smtp.read_reply_or_close().is_none() {
                                return;
                            }
                        }
                        if !smtp.try_send(&common::dot_stuff(&message)) {
                            return;
                        }
                        match smtp.read_reply_or_close() {
                            Some(reply) if reply.code == 250 => {
                                acknowledged.lock().unwrap().push((address, message));
                            }
                            _ => return,
                        }
                    }
                })
            })
            .collect();
        // Kill while the senders are busy.
        assert!(common::eventually(Duration::from_secs(30), || {
            acknowledged.lock().unwrap().len() >= 100 + round * 50
        }));
        kill_9(server);
        stop_sending.store(true, Ordering::Relaxed);
        for sender in senders {
            let _ = sender.join();
        }
        let server = start(&data, &["--cores", "2"]);
        let acknowledged = acknowledged.lock().unwrap();
        let mut by_inbox: std::collections::HashMap<&str, Vec<&[u8]>> = Default::default();
        for (address, message) in acknowledged.iter() {
            by_inbox.entry(address).or_default().push(message);
        }
        for (address, messages) in by_inbox {
            let stored: Vec<Vec<u8>> = inbox_raw(&server, address)
                .into_iter()
                .map(|(_, raw)| raw)
                .collect();
            for message in messages {
                assert!(
                    stored.iter().any(|raw| raw == message),
                    "round {round}: an acknowledged message to {address} is missing after kill -9"
                );
            }
        }
        stop(server);
    }
}

#[test]
fn sealed_files_hold_no_plaintext_and_need_their_key() {
    let data = DataDir::new("sealed");
    let keys = std::env::temp_dir().join(format!("mayfly-durability-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&keys);
    std::fs::create_dir_all(&keys).unwrap();
    let old_key = keys.join("old.key");
    let (status, stdout, _) = run_to_exit(
        &["keygen", old_key.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert!(status.success(), "{stdout}");
    let key_arg = old_key.to_str().unwrap();
    let server = start(&data, &["--encryption-key-file", key_arg]);
    let marker = "Vanilla-Plaintext-Marker-7f3a";
    server.smtp_ehlo().send_mail(
        "secret-sender@example.test",
        &["secret-rcpt@example.test"],
        &simple_message(marker, marker),
    );
    stop(server);
    for file in data.journal_files() {
        let bytes = std::fs::read(&file).unwrap();
        for needle in [marker.as_bytes(), b"secret-sender", b"secret-rcpt"] {
            assert!(
                !bytes.windows(needle.len()).any(|window| window == needle),
                "{} holds {}",
                file.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
    // Another key: refused at start, naming the file and the key; nothing is lost.
    let other_key = keys.join("other.key");
    run_to_exit(
        &["keygen", other_key.to_str().unwrap()],
        Duration::from_secs(10),
    );
    let (status, _, stderr) = run_to_exit(
        &[
            "--smtp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
            data.arg(),
            "--encryption-key-file",
            other_key.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(!status.success());
    assert!(stderr.contains("does not hold"), "{stderr}");
    // Rotated: the new key first, the old one below it: restores, and re-seals with the new.
    let rotated = keys.join("rotated.key");
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&other_key).unwrap(),
        std::fs::read_to_string(&old_key).unwrap()
    );
    std::fs::write(&rotated, text).unwrap();
    let server = start(&data, &["--encryption-key-file", rotated.to_str().unwrap()]);
    assert_eq!(server.inbox("secret-rcpt@example.test")["total"], 1);
    stop(server);
    let server = start(
        &data,
        &["--encryption-key-file", other_key.to_str().unwrap()],
    );
    assert_eq!(
        server.inbox("secret-rcpt@example.test")["total"],
        1,
        "after a restart everything is sealed with the new key alone"
    );
    drop(server);
    std::fs::remove_dir_all(&keys).unwrap();
}

/// Flips one byte of the frames of a journal file, `at_fraction` of the way through them
/// (files are zero-filled ahead: the frames end where the zeros start).
fn flip_a_byte(file: &Path, at_fraction: f64) {
    let mut bytes = std::fs::read(file).unwrap();
    let data_end = data_end(&bytes);
    let at = 4096 + ((data_end - 4096) as f64 * at_fraction) as usize;
    bytes[at] ^= 0x5a;
    std::fs::write(file, bytes).unwrap();
}

/// Where a journal file's frames end (its last non-zero byte, plus one).
fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).expect("data") + 1
}

#[test]
fn a_damaged_journal_is_reported_and_the_rest_restored() {
    let data = DataDir::new("damaged");
    let server = start(&data, &[]);
    let mut smtp = server.smtp_ehlo();
    for index in 0..20 {
        smtp.send_mail(
            "s@example.test",
            &["damaged@example.test"],
            &simple_message(&format!("m{index}"), &"y".repeat(300)),
        );
    }
    kill_9(server);
    // The first file holds the frames; the second was made ahead and holds none.
    let files = data.journal_files();
    assert_eq!(files.len(), 2);
    flip_a_byte(&files[0], 0.5);
    let server = start(&data, &[]);
    let total = server.inbox("damaged@example.test")["total"]
        .as_u64()
        .unwrap();
    assert_eq!(total, 19, "one record skipped, the others restored");
    assert_eq!(
        server.metric_total("mayfly_restore_records_skipped_total"),
        1
    );
    assert!(
        server.stderr_text().contains("journal file damaged"),
        "{}",
        server.stderr_text()
    );
    kill_9(server);
    // A file cut in the middle of a frame (a torn write): the tail is cut off.
    let file = &data.journal_files()[0];
    let bytes = std::fs::read(file).unwrap();
    // Cut inside the last frame, before its end.
    std::fs::write(file, &bytes[..data_end(&bytes) - 100]).unwrap();
    let server = start(&data, &[]);
    let total = server.inbox("damaged@example.test")["total"]
        .as_u64()
        .unwrap();
    assert!((17..=19).contains(&total), "{total}");
    assert!(server.stderr_text().contains("torn_tail=true"));
}

#[test]
fn snapshots_keep_everything_across_a_clean_restart() {
    // In the clear, and sealed: each snapshot generation has its own key files.
    let keys = std::env::temp_dir().join(format!("mayfly-snapshot-key-{}", std::process::id()));
    let _ = std::fs::remove_file(&keys);
    run_to_exit(&["keygen", keys.to_str().unwrap()], Duration::from_secs(10));
    for key_flags in [
        vec![],
        vec!["--encryption-key-file", keys.to_str().unwrap()],
    ] {
        snapshot_keeps_everything(&key_flags);
    }
    std::fs::remove_file(&keys).unwrap();
}

fn snapshot_keeps_everything(key_flags: &[&str]) {
    let data = DataDir::new("snapshot");
    let mut flags = vec!["--durability", "snapshot", "--cores", "2"];
    flags.extend_from_slice(key_flags);
    let server = start(&data, &flags);
    let mut smtp = server.smtp_ehlo();
    for index in 0..12 {
        smtp.send_mail(
            "s@example.test",
            &[&format!("snap{}@example.test", index % 4)],
            &simple_message(&format!("s{index}"), "snapshot me"),
        );
    }
    let before: Vec<_> = (0..4)
        .map(|n| inbox_raw(&server, &format!("snap{n}@example.test")))
        .collect();
    stop(server);
    let files = data.journal_files();
    assert!(!files.is_empty());
    for file in &files {
        let key_file = file.parent().expect("a shard dir").join(KEY_FILE_NAME);
        assert_eq!(
            key_file.exists(),
            !key_flags.is_empty(),
            "{}",
            key_file.display()
        );
    }
    let server = start(&data, &flags);
    for (n, messages) in before.iter().enumerate() {
        assert_eq!(
            &inbox_raw(&server, &format!("snap{n}@example.test")),
            messages
        );
    }
    assert!(server.metric_total("mayfly_snapshots_written_total") == 0);
    stop(server);
}

#[test]
fn a_different_number_of_cores_keeps_every_inbox() {
    // In the clear, and sealed: each old shard directory has its own key file.
    let keys = std::env::temp_dir().join(format!("mayfly-cores-key-{}", std::process::id()));
    let _ = std::fs::remove_file(&keys);
    run_to_exit(&["keygen", keys.to_str().unwrap()], Duration::from_secs(10));
    for key_flags in [
        vec![],
        vec!["--encryption-key-file", keys.to_str().unwrap()],
    ] {
        resharded_keeps_every_inbox(&key_flags);
    }
    std::fs::remove_file(&keys).unwrap();
}

fn resharded_keeps_every_inbox(key_flags: &[&str]) {
    let data = DataDir::new("cores");
    let with = |cores: &'static str| {
        let mut flags = vec!["--cores", cores];
        flags.extend_from_slice(key_flags);
        flags
    };
    let server = start(&data, &with("2"));
    let mut smtp = server.smtp_ehlo();
    for index in 0..24 {
        smtp.send_mail(
            "s@example.test",
            &[&format!("spread{}@example.test", index % 8)],
            &simple_message(&format!("c{index}"), "re-sharded"),
        );
    }
    let before: Vec<_> = (0..8)
        .map(|n| inbox_raw(&server, &format!("spread{n}@example.test")))
        .collect();
    stop(server);
    for cores in ["1", "2"] {
        let server = start(&data, &with(cores));
        for (n, messages) in before.iter().enumerate() {
            assert_eq!(
                &inbox_raw(&server, &format!("spread{n}@example.test")),
                messages,
                "--cores {cores}"
            );
        }
        stop(server);
    }
}

#[test]
fn expired_mail_is_not_restored() {
    let data = DataDir::new("expired");
    let server = start(&data, &["--ttl", "1s"]);
    server.smtp_ehlo().send_mail(
        "s@example.test",
        &["short@example.test"],
        &simple_message("short", "lived"),
    );
    kill_9(server);
    std::thread::sleep(Duration::from_millis(1200));
    let server = start(&data, &["--ttl", "1s"]);
    assert_eq!(server.inbox("short@example.test")["total"], 0);
    assert_eq!(server.metric_total("mayfly_messages_restored_total"), 0);
}

#[test]
fn durability_without_a_data_dir_is_a_configuration_error() {
    let (status, _, stderr) = run_to_exit(&["--durability", "journal"], Duration::from_secs(10));
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("--durability journal needs --data-dir"),
        "{stderr}"
    );
}

/// A body of about 20 KiB in short lines, each carrying `marker`.
fn marked_body(marker: &str) -> String {
    (0..240)
        .map(|line| format!("{marker} line {line} {}\r\n", "z".repeat(60)))
        .collect()
}

/// Whether journal file `segment` opens with the key file of `dir` under `master`, and
/// if so whether one of its records holds `marker`. Runs the crate's own reader.
fn open_segment(
    segment: &Path,
    dir: &Path,
    master: &Arc<KeyRing>,
    marker: &str,
) -> Result<bool, String> {
    let (segment, dir, master) = (segment.to_path_buf(), dir.to_path_buf(), master.clone());
    let marker = marker.as_bytes().to_vec();
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::default()
            .make()
            .expect("executor")
            .run(async move {
                let mut keys = DirKeys::new(&dir, Some(master));
                let contents = FileContents::read(&segment, &mut keys)
                    .await
                    .map_err(|error| match error {
                        ReadError::Shredded { .. } => format!("shredded: {error}"),
                        other => other.to_string(),
                    })?;
                Ok(contents.records().any(|record| match record {
                    Ok(mayfly::journal::record::ArchivedRecord::Stored { body, .. }) => {
                        let body: &[u8] = body.as_ref();
                        body.windows(marker.len()).any(|window| window == marker)
                    }
                    _ => false,
                }))
            })
    })
    .join()
    .expect("reader thread")
}

#[test]
fn a_deleted_journal_file_cannot_be_opened_from_a_copy_of_the_disk() {
    let data = DataDir::new("shred");
    let aside = std::env::temp_dir().join(format!("mayfly-shred-aside-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&aside);
    std::fs::create_dir_all(&aside).unwrap();
    let key_path = aside.join("master.key");
    let (status, stdout, _) = run_to_exit(
        &["keygen", key_path.to_str().unwrap()],
        Duration::from_secs(10),
    );
    assert!(status.success(), "{stdout}");
    let master = Arc::new(KeyRing::load(&key_path).expect("key"));
    // One shard, a 2 MiB ring and 1 MiB files: new mail evicts the oldest, so the first
    // file empties and is deleted without waiting for a TTL.
    let flags = [
        "--encryption-key-file",
        key_path.to_str().unwrap(),
        "--cores",
        "1",
        "--max-memory",
        "2MiB",
        "--max-message-size",
        "64KiB",
    ];
    let server = start(&data, &flags);
    let shard_dir = data.0.join("gen-000001").join("shard-000");
    let mut smtp = server.smtp_ehlo();
    // About 1.2 MiB: the first file fills and the shard goes on in the second.
    for index in 0..60 {
        let marker = format!("Shred-A-{index:03}");
        smtp.send_mail(
            "s@example.test",
            &[&format!("early{}@example.test", index % 5)],
            &simple_message(&marker, &marked_body(&marker)),
        );
    }
    let first = shard_dir.join("0000000000000001.journal");
    assert!(first.exists() && shard_dir.join("0000000000000002.journal").exists());
    // The disk as it is now: the first file and the key file, copied aside.
    let copy_dir = aside.join("copy");
    std::fs::create_dir_all(&copy_dir).unwrap();
    let first_copy = copy_dir.join("0000000000000001.journal");
    std::fs::copy(&first, &first_copy).unwrap();
    std::fs::copy(shard_dir.join(KEY_FILE_NAME), copy_dir.join(KEY_FILE_NAME)).unwrap();
    let copied_bytes = std::fs::read(&first_copy).unwrap();
    assert!(
        !copied_bytes
            .windows(12)
            .any(|window| window == b"Shred-A-000 ")
    );
    // With the key file as it was, the copy opens: the test can see a readable copy.
    assert_eq!(
        open_segment(&first_copy, &copy_dir, &master, "Shred-A-000 "),
        Ok(true)
    );

    // About 2.5 MiB more: every early message is evicted, the first file deleted.
    for index in 0..125 {
        let marker = format!("Shred-B-{index:03}");
        smtp.send_mail(
            "s@example.test",
            &[&format!("late{}@example.test", index % 5)],
            &simple_message(&marker, &marked_body(&marker)),
        );
    }
    assert!(
        common::eventually(Duration::from_secs(30), || !first.exists()),
        "the first journal file was never deleted"
    );
    assert_eq!(server.inbox("early0@example.test")["total"], 0);
    // Same master key, the data directory's key file now: the copy does not open.
    let reopened = open_segment(&first_copy, &shard_dir, &master, "Shred-A-000 ");
    assert!(
        reopened
            .as_ref()
            .is_err_and(|error| error.starts_with("shredded")),
        "{reopened:?}"
    );
    // And the key file holds neither of the seeds sealed in the copy.
    let old_keys = std::fs::read(copy_dir.join(KEY_FILE_NAME)).unwrap();
    let new_keys = std::fs::read(shard_dir.join(KEY_FILE_NAME)).unwrap();
    assert_eq!(old_keys.len(), new_keys.len(), "overwritten in place");
    for slot_at in [0, 4096] {
        let sealed_seed = &old_keys[slot_at + 52..slot_at + 84];
        assert!(!new_keys.windows(32).any(|window| window == sealed_seed));
    }

    // The live files still restore byte for byte after kill -9.
    let live: Vec<_> = (0..5)
        .map(|n| inbox_raw(&server, &format!("late{n}@example.test")))
        .collect();
    assert!(
        live.iter().map(Vec::len).sum::<usize>() >= 40,
        "the ring holds ~2 MiB"
    );
    let old_key_file = std::fs::File::open(shard_dir.join(KEY_FILE_NAME)).unwrap();
    kill_9(server);
    let server = start(&data, &flags);
    for (n, messages) in live.iter().enumerate() {
        assert_eq!(
            &inbox_raw(&server, &format!("late{n}@example.test")),
            messages
        );
    }
    // The old generation went, its key file zeroed where it lay before the unlink.
    assert!(!shard_dir.exists());
    let mut old_key_bytes = Vec::new();
    std::io::Read::read_to_end(&mut &old_key_file, &mut old_key_bytes).unwrap();
    assert!(!old_key_bytes.is_empty() && old_key_bytes.iter().all(|&byte| byte == 0));
    stop(server);
    std::fs::remove_dir_all(&aside).unwrap();
}

#[test]
fn a_journal_file_that_never_fills_is_still_deleted_after_its_mail_expires() {
    let data = DataDir::new("rotate");
    let aside = std::env::temp_dir().join(format!("mayfly-rotate-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&aside);
    std::fs::create_dir_all(&aside).unwrap();
    let key_path = aside.join("master.key");
    run_to_exit(
        &["keygen", key_path.to_str().unwrap()],
        Duration::from_secs(10),
    );
    let flags = [
        "--encryption-key-file",
        key_path.to_str().unwrap(),
        "--cores",
        "1",
        "--ttl",
        "1s",
    ];
    let server = start(&data, &flags);
    server.smtp_ehlo().send_mail(
        "s@example.test",
        &["once@example.test"],
        &simple_message("once", "a lone message in a 1 MiB file"),
    );
    let shard_dir = data.0.join("gen-000001").join("shard-000");
    let first = shard_dir.join("0000000000000001.journal");
    assert!(first.exists());
    // Its message expires after 1 s; the file is closed once it has been open for the
    // journal's minimum (10 s), then deleted, its key destroyed.
    assert!(
        common::eventually(Duration::from_secs(40), || !first.exists()),
        "a file holding only expired mail stayed on disk"
    );
    let master = Arc::new(KeyRing::load(&key_path).expect("key"));
    let key_file = mayfly::journal::ratchet::KeyFile::load(&shard_dir, &master)
        .expect("opens")
        .expect("there");
    assert!(key_file.base() >= 2, "base {}", key_file.base());
    stop(server);
    std::fs::remove_dir_all(&aside).unwrap();
}
