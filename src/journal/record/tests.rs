//! Frames and records against what a crash or a bad disk can do to them.

use super::*;

fn stored<'a>(rcpts: &'a [RcptRecord<'a>], body: &'a [u8]) -> Record<'a> {
    Record::Stored {
        id: IdRecord {
            boot_micros: 1_764_000_000_000_000,
            shard_idx: 3,
            seq: 42,
        },
        received_at_ms: 1_000,
        expires_at_ms: 3_601_000,
        mail_from: "sender@example.test",
        rcpts,
        received: b"Received: from x\r\n",
        body,
    }
}

fn rcpts() -> [RcptRecord<'static>; 2] {
    [
        RcptRecord {
            key: "a@x.test",
            written: "A@x.test",
        },
        RcptRecord {
            key: "b@x.test",
            written: "b@x.test",
        },
    ]
}

/// Appends and finishes an unsealed frame, as the journal does at commit.
fn append(out: &mut Vec<u8>, record: &Record<'_>) -> usize {
    let start = append_frame(out, record, false);
    finish_frame(&mut out[start..], None);
    start
}

/// A buffer whose start is 16-byte aligned, as a DMA read buffer is.
fn aligned(bytes: &[u8]) -> rkyv::util::AlignedVec<16> {
    let mut buf = rkyv::util::AlignedVec::<16>::new();
    buf.extend_from_slice(bytes);
    buf
}

#[test]
fn a_record_reads_back_in_place() {
    let rcpts = rcpts();
    let mut out = Vec::new();
    let start = append(&mut out, &stored(&rcpts, b"Subject: hi\r\n\r\nbody\r\n"));
    append(
        &mut out,
        &Record::Deleted {
            id: IdRecord {
                boot_micros: 1,
                shard_idx: 0,
                seq: 2,
            },
            key: "a@x.test",
        },
    );
    append(&mut out, &Record::InboxDeleted { key: "b@x.test" });
    assert_eq!(start, 0);
    assert!(out.len().is_multiple_of(FRAME_ALIGN));
    let buf = aligned(&out);

    let frame = read_frame(&buf, 0).expect("first frame");
    assert_eq!(frame.flags, 0);
    let archive = &buf[frame.payload_start..frame.payload_start + frame.payload_bytes];
    match access(archive).expect("valid") {
        ArchivedRecord::Stored {
            id,
            received_at_ms,
            mail_from,
            rcpts,
            received,
            body,
            ..
        } => {
            assert_eq!(id.to_native().seq, 42);
            assert_eq!(received_at_ms.to_native(), 1_000);
            assert_eq!(mail_from.as_ref(), "sender@example.test");
            assert_eq!(rcpts.len(), 2);
            assert_eq!(rcpts[0].key.as_ref(), "a@x.test");
            assert_eq!(rcpts[0].written.as_ref(), "A@x.test");
            assert_eq!(received.as_ref(), b"Received: from x\r\n");
            // In place: the body is a slice of the buffer, not a copy.
            let body: &[u8] = body.as_ref();
            assert_eq!(body, b"Subject: hi\r\n\r\nbody\r\n");
            assert!(buf.as_ptr_range().contains(&body.as_ptr()));
        }
        _ => panic!("not a Stored record"),
    }
    let second = read_frame(&buf, frame.next).expect("second frame");
    let archive = &buf[second.payload_start..second.payload_start + second.payload_bytes];
    assert!(matches!(
        access(archive).expect("valid"),
        ArchivedRecord::Deleted { key, .. } if key.as_ref() == "a@x.test"
    ));
    let third = read_frame(&buf, second.next).expect("third frame");
    assert_eq!(third.next, buf.len());
    assert_eq!(read_frame(&buf, third.next), Err(FrameError::End));
}

#[test]
fn a_torn_tail_is_told_from_the_end_and_from_corruption() {
    let rcpts = rcpts();
    let mut out = Vec::new();
    append(&mut out, &stored(&rcpts, &[b'x'; 1000]));
    let whole = out.len();
    append(&mut out, &stored(&rcpts, &[b'y'; 1000]));
    // Every cut inside the second frame is a torn tail; zeros after the first are its end.
    for cut in whole + 1..out.len() {
        let buf = aligned(&out[..cut]);
        let first = read_frame(&buf, 0).expect("first frame intact");
        assert_eq!(
            read_frame(&buf, first.next),
            Err(FrameError::Truncated),
            "cut {cut}"
        );
    }
    let mut padded = out[..whole].to_vec();
    padded.extend_from_slice(&[0u8; 4096]);
    assert_eq!(read_frame(&aligned(&padded), whole), Err(FrameError::End));
}

#[test]
fn a_flipped_byte_is_caught_and_the_next_frame_found() {
    let rcpts = rcpts();
    let mut out = Vec::new();
    append(&mut out, &stored(&rcpts, &[b'x'; 300]));
    let second_start = append(&mut out, &stored(&rcpts, &[b'y'; 300]));
    for flip in [20, 100, 250] {
        let mut bad = out.clone();
        bad[flip] ^= 0x40;
        let buf = aligned(&bad);
        assert_eq!(
            read_frame(&buf, 0),
            Err(FrameError::BadChecksum),
            "flip at {flip}"
        );
        assert_eq!(resync(&buf, 0), Some(second_start));
        assert!(read_frame(&buf, second_start).is_ok());
    }
    let mut bad_magic = out.clone();
    bad_magic[1] ^= 1;
    assert_eq!(
        read_frame(&aligned(&bad_magic), 0),
        Err(FrameError::BadHeader)
    );
}

#[test]
fn an_archive_that_is_not_a_record_is_refused_not_trusted() {
    // A frame whose checksum matches its payload but whose payload is not a record: the
    // checked access refuses it.
    let mut garbage = vec![0xffu8; 64];
    garbage[0..4].copy_from_slice(&FRAME_MAGIC);
    let payload = [0xa5u8; 48];
    garbage[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    garbage[8..12].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    garbage[12..16].copy_from_slice(&0u32.to_le_bytes());
    garbage[16..64].copy_from_slice(&payload);
    let buf = aligned(&garbage);
    let frame = read_frame(&buf, 0).expect("checksum matches");
    assert!(access(&buf[frame.payload_start..frame.payload_start + frame.payload_bytes]).is_err());
}

#[test]
fn sealing_encrypts_the_archive_and_flags_the_frame() {
    let rcpts = rcpts();
    let mut out = Vec::new();
    let mut seal = |archive: &mut [u8]| {
        for byte in archive.iter_mut() {
            *byte ^= 0x5a;
        }
        [7u8; 16]
    };
    append_frame(&mut out, &stored(&rcpts, b"plaintext marker"), true);
    finish_frame(&mut out, Some(&mut seal));
    let frame = read_frame(&aligned(&out), 0).expect("frame");
    assert_eq!(frame.flags, FLAG_SEALED);
    assert!(!out.windows(16).any(|window| window == b"plaintext marker"));
    assert_eq!(
        &out[frame.payload_start + frame.payload_bytes - 16..][..16],
        &[7u8; 16]
    );
}
