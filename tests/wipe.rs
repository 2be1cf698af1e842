//! Deleted and expired mail leaves no copy in the server's memory.
//!
//! Each message carries unique random markers: in the envelope sender, the subject, the
//! text body, an HTML part, an attachment's file name and its content (base64 in the
//! message, decoded in the download). The test sends it over SMTP, reads it (or not)
//! over HTTP (searches included), deletes it or lets its TTL pass, closes every connection, and then reads
//! the server's whole writable memory through `/proc/PID/mem` (the test runs as the
//! server's parent, so the kernel lets it) looking for any marker.
//!
//! Connections are closed before a scan, and the scan waits until the server counts
//! none open (but the one asking), because a live connection's buffers legitimately
//! hold what it is processing; what the product promises is that nothing survives once
//! the message and the connections that carried it are gone.
//!
//! The scan is shown to work first: while the message is held, it must find every marker
//! that lies in the store. With `--cores 2` the message goes to one inbox on each shard,
//! so whichever core accepts the SMTP connection, one copy crosses to the other core
//! (the `Arc<[u8]>` path) and one HTTP answer comes back from the other core.

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::time::{Duration, Instant};

use common::{Server, inbox_path, metric_sum, metric_sum_with_label};
use memchr::memmem;

/// Random bytes in a marker (printed as twice as many hex digits): enough that a marker
/// never occurs in memory by chance.
const MARKER_RANDOM_BYTES: usize = 12;
/// TTL for the expiry cases: long enough to read a message in a debug build on a busy
/// machine, short enough to wait for.
const SHORT_TTL: &str = "5s";
/// How long the messages may take to expire after the TTL passed.
const EXPIRY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to close its side of connections the test closed.
const QUIET_TIMEOUT: Duration = Duration::from_secs(10);
/// The scan reads the server's memory this much at a time.
const SCAN_CHUNK_BYTES: usize = 1024 * 1024;
/// Most writable memory a scan reads: far above what a 16 MiB server maps, so hitting it
/// means something is wrong with the server or the scan, and the test says so.
const SCAN_BYTES_MAX: u64 = 8 * 1024 * 1024 * 1024;
/// Most hits a failing scan describes.
const HITS_SHOWN_MAX: usize = 40;
/// Bytes of context shown on each side of a hit.
const HIT_CONTEXT_BYTES: usize = 96;
/// Server flags for every case: small memory, so there is little to scan.
const BASE_FLAGS: &[&str] = &["--max-memory", "16MiB", "--max-message-size", "1MiB"];

/// The markers of one message, and the message built from them.
struct Markers {
    /// Unique per message; used in every marker.
    tag: String,
    /// Decoded attachment content (starts with its marker, so its base64 is fixed).
    attachment: Vec<u8>,
}

/// What a marker is, and the bytes to search for.
struct Marker {
    what: String,
    bytes: Vec<u8>,
}

impl Markers {
    fn new(name: &str) -> Markers {
        let mut random = [0u8; MARKER_RANDOM_BYTES];
        getrandom::fill(&mut random).expect("random marker");
        let hex: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
        let tag = format!("{name}{hex}");
        let mut attachment = format!("attachment-{tag} ").into_bytes();
        // Binary bytes after the marker, as a real attachment has.
        attachment.extend((0u8..=255).cycle().take(3000));
        Markers { tag, attachment }
    }

    fn sender(&self) -> String {
        format!("sender-{}@sender.test", self.tag)
    }

    fn subject(&self) -> String {
        format!("subject-{}", self.tag)
    }

    fn text(&self) -> String {
        format!("text-{}", self.tag)
    }

    fn html(&self) -> String {
        format!("html-{}", self.tag)
    }

    fn filename(&self) -> String {
        format!("file-{}.bin", self.tag)
    }

    /// The attachment's first 60 base64 characters (45 bytes, all marker text and fixed
    /// because the content starts with the marker): its form in the stored message.
    fn attachment_base64(&self) -> String {
        let encoded = base64(&self.attachment);
        encoded[..60].to_string()
    }

    /// Every marker that lies in the stored message (and so in the store's ring while
    /// the message is held), with what it is.
    fn stored(&self) -> Vec<Marker> {
        [
            ("sender", self.sender()),
            ("subject", self.subject()),
            ("text body", self.text()),
            ("html part", self.html()),
            ("attachment file name", self.filename()),
            ("attachment, base64", self.attachment_base64()),
        ]
        .into_iter()
        .map(|(what, text)| Marker {
            what: format!("{what} of {}", self.tag),
            bytes: text.into_bytes(),
        })
        .collect()
    }

    /// Every marker: the stored ones plus the decoded attachment, which exists only
    /// while an attachment download is answered.
    fn all(&self) -> Vec<Marker> {
        let mut all = self.stored();
        all.push(Marker {
            what: format!("attachment, decoded, of {}", self.tag),
            bytes: self.attachment[..45].to_vec(),
        });
        all
    }

    /// The message: multipart/mixed with text and HTML alternatives and an attachment.
    fn message(&self, recipients: &[String]) -> Vec<u8> {
        let mut base64_lines = String::new();
        for line in base64(&self.attachment).as_bytes().chunks(76) {
            base64_lines.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            base64_lines.push_str("\r\n");
        }
        format!(
            "From: <{sender}>\r\n\
             To: {to}\r\n\
             Subject: {subject}\r\n\
             Date: Fri, 27 Nov 2026 22:15:44 +0000\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
             \r\n\
             --outer\r\n\
             Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
             \r\n\
             --alt\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             \r\n\
             Hello, {text} here.\r\n\
             --alt\r\n\
             Content-Type: text/html; charset=utf-8\r\n\
             \r\n\
             <p>Hello, <b>{html}</b> here.</p>\r\n\
             --alt--\r\n\
             --outer\r\n\
             Content-Type: application/octet-stream; name=\"{filename}\"\r\n\
             Content-Disposition: attachment; filename=\"{filename}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\
             \r\n\
             {base64_lines}\
             --outer--\r\n",
            sender = self.sender(),
            to = recipients.join(", "),
            subject = self.subject(),
            text = self.text(),
            html = self.html(),
            filename = self.filename(),
        )
        .into_bytes()
    }
}

/// Standard base64 with padding (RFC 4648), for the attachment.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for idx in 0..4 {
            if idx <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * idx)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One inbox per shard, with random local parts (no marker: addresses also live in
/// request paths and in the inbox index).
fn inbox_per_shard(n_cores: usize) -> Vec<String> {
    let mut inboxes: Vec<Option<String>> = vec![None; n_cores];
    let mut n_found = 0;
    while n_found < n_cores {
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).expect("random address");
        let local: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
        let address = format!("wipe-{local}@example.test");
        let shard_idx = mayfly::store::shard_of(
            &mayfly::address::InboxKey::new(&address).expect("a valid address"),
            n_cores,
        );
        if inboxes[shard_idx].is_none() {
            inboxes[shard_idx] = Some(address);
            n_found += 1;
        }
    }
    inboxes.into_iter().flatten().collect()
}

/// Sends `markers`' message to `recipients` on a fresh SMTP connection, then QUITs and
/// closes it.
fn send(server: &Server, markers: &Markers, recipients: &[String]) {
    let mut smtp = server.smtp_ehlo();
    let recipients_str: Vec<&str> = recipients.iter().map(String::as_str).collect();
    smtp.send_mail(
        &markers.sender(),
        &recipients_str,
        &markers.message(recipients),
    );
    smtp.expect("QUIT", "221");
}

/// Lists `inbox` (once it holds `total` messages), finds `markers`' message by its
/// subject, opens it, downloads the attachment and the raw message, checking each answer
/// holds the markers it should; returns the message id.
fn read_everything(server: &Server, inbox: &str, total: u64, markers: &Markers) -> String {
    let listing = server.wait_inbox_total(inbox, total);
    let summary = listing["messages"]
        .as_array()
        .expect("listing has messages")
        .iter()
        .find(|summary| summary["subject"].as_str() == Some(markers.subject().as_str()))
        .unwrap_or_else(|| panic!("no message with subject {} in {listing}", markers.subject()));
    let id = summary["id"]
        .as_str()
        .expect("summary has an id")
        .to_string();
    let message_path = format!("{}/messages/{id}", inbox_path(inbox));

    // A search reads the summary and, to rule a phrase out, the text body (a search view
    // parsed off the executor, fields folded into buffers): none of it may outlive the mail.
    let query = format!(
        "q=subject:{}+-%22{}-absent%22",
        markers.subject(),
        markers.text()
    );
    let found = server.inbox_query(inbox, &query);
    assert!(
        found["messages"]
            .as_array()
            .is_some_and(|found| found.iter().any(|summary| summary["id"] == id.as_str())),
        "the search {query} did not find {id}: {found}"
    );

    let opened = server.get(&message_path);
    assert_eq!(
        opened.status,
        200,
        "GET {message_path}: {}",
        opened.describe()
    );
    let opened = opened.json();
    let text = opened["text"].as_str().unwrap_or_default();
    assert!(text.contains(&markers.text()), "text body: {text:?}");
    let html = opened["html"].as_str().unwrap_or_default();
    assert!(html.contains(&markers.html()), "html part: {html:?}");
    let filename = opened["attachments"][0]["filename"].as_str();
    assert_eq!(filename, Some(markers.filename().as_str()));

    let attachment = server.get(&format!("{message_path}/attachments/0"));
    assert_eq!(
        attachment.status,
        200,
        "attachment: {}",
        attachment.describe()
    );
    assert_eq!(attachment.body, markers.attachment, "attachment content");

    let raw = server.raw(inbox, &id);
    assert!(
        memmem::find(&raw, markers.attachment_base64().as_bytes()).is_some(),
        "raw message lacks the attachment's base64"
    );
    id
}

/// Waits until the server has no SMTP session and no HTTP connection open but the one
/// asking, so every buffer of the test's connections has been given back.
fn wait_connections_closed(server: &Server) {
    let quiet = common::eventually(QUIET_TIMEOUT, || {
        let metrics = server.metrics();
        let smtp_open = metric_sum(&metrics, "mayfly_smtp_sessions_open").unwrap_or(f64::NAN);
        let http_open = metric_sum(&metrics, "mayfly_http_connections_open").unwrap_or(f64::NAN);
        smtp_open == 0.0 && http_open <= 1.0
    });
    assert!(quiet, "connections still open after {QUIET_TIMEOUT:?}");
}

/// Where a marker was found in the server's memory.
struct Hit {
    what: String,
    addr: u64,
    /// The `/proc/PID/maps` line of the region it lies in.
    region: String,
    /// Bytes around it, printable ASCII kept and the rest as `.`.
    context: String,
}

/// Reads every resident page of every readable and writable mapping of process `pid`
/// and returns where each marker occurs.
///
/// Pages that are neither in memory nor in swap (`/proc/PID/pagemap`) are skipped: they
/// read as zeros, and the allocator's arenas reserve gigabytes of them. Regions the
/// kernel refuses to read ([vvar], [vsyscall], guard pages) are skipped too.
///
/// # Panics
/// If the process's maps cannot be read, or its resident writable memory exceeds
/// `SCAN_BYTES_MAX`.
fn scan(pid: i32, markers: &[Marker]) -> Vec<Hit> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    let mem = File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem (root?)");
    let pagemap = File::open(format!("/proc/{pid}/pagemap")).expect("open /proc/PID/pagemap");
    let finders: Vec<memmem::Finder<'_>> = markers
        .iter()
        .map(|marker| memmem::Finder::new(&marker.bytes))
        .collect();
    let mut hits = Vec::new();
    let mut scanned_bytes = 0u64;
    let mut chunk = vec![0u8; SCAN_CHUNK_BYTES];
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let name = fields.nth(3).unwrap_or("");
        if !perms.starts_with("rw") || matches!(name, "[vvar]" | "[vvar_vclock]" | "[vsyscall]") {
            continue;
        }
        let (start, end) = range.split_once('-').expect("maps range");
        let start = u64::from_str_radix(start, 16).expect("maps start");
        let end = u64::from_str_radix(end, 16).expect("maps end");
        for (run_start, run_end) in resident_runs(&pagemap, start, end) {
            scanned_bytes += run_end - run_start;
            assert!(
                scanned_bytes <= SCAN_BYTES_MAX,
                "over {SCAN_BYTES_MAX} bytes of resident writable memory to scan"
            );
            scan_run(
                &mem, run_start, run_end, line, markers, &finders, &mut chunk, &mut hits,
            );
        }
    }
    hits
}

/// Size of a page, which is what `/proc/PID/pagemap` has one entry for.
const PAGE_BYTES: u64 = 4096;
/// Pagemap entries read at once (8 bytes each).
const PAGEMAP_ENTRIES_PER_READ: usize = 64 * 1024;
/// Pagemap entry bits: the page is in memory, or in swap.
const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_SWAPPED: u64 = 1 << 62;

/// The runs of pages in `[start, end)` that are in memory or in swap, coalesced. A
/// pagemap that cannot be read yields the whole range, so nothing is skipped unseen.
fn resident_runs(pagemap: &File, start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut entries = vec![0u8; PAGEMAP_ENTRIES_PER_READ * 8];
    let mut page = start / PAGE_BYTES;
    let end_page = end.div_ceil(PAGE_BYTES);
    while page < end_page {
        let n_pages = ((end_page - page) as usize).min(PAGEMAP_ENTRIES_PER_READ);
        let bytes = &mut entries[..n_pages * 8];
        if pagemap.read_exact_at(bytes, page * 8).is_err() {
            return vec![(start, end)];
        }
        for (idx, entry) in bytes.chunks_exact(8).enumerate() {
            let entry = u64::from_le_bytes(entry.try_into().expect("8 bytes"));
            if entry & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED) == 0 {
                continue;
            }
            let page_start = (page + idx as u64) * PAGE_BYTES;
            match runs.last_mut() {
                Some(last) if last.1 == page_start => last.1 += PAGE_BYTES,
                _ => runs.push((page_start, page_start + PAGE_BYTES)),
            }
        }
        page += n_pages as u64;
    }
    runs
}

/// Scans `[start, end)` of the process's memory in chunks that overlap by one marker
/// length less one byte, so a marker split across two chunks is found once.
#[allow(clippy::too_many_arguments)] // One call site; a struct would only rename them.
fn scan_run(
    mem: &File,
    start: u64,
    end: u64,
    region: &str,
    markers: &[Marker],
    finders: &[memmem::Finder<'_>],
    chunk: &mut [u8],
    hits: &mut Vec<Hit>,
) {
    let overlap_bytes = markers
        .iter()
        .map(|marker| marker.bytes.len())
        .max()
        .unwrap_or(1)
        - 1;
    let mut pos = start;
    while pos < end {
        let len = (end - pos).min(chunk.len() as u64) as usize;
        let Ok(n_read) = mem.read_at(&mut chunk[..len], pos) else {
            return; // Not readable (a guard page, say): skip the rest of the run.
        };
        if n_read == 0 {
            return;
        }
        let bytes = &chunk[..n_read];
        for (marker, finder) in markers.iter().zip(finders) {
            for offset in finder.find_iter(bytes) {
                // A hit that lies wholly in the overlap was already seen in the last chunk.
                if pos != start && offset + marker.bytes.len() <= overlap_bytes {
                    continue;
                }
                let from = offset.saturating_sub(HIT_CONTEXT_BYTES);
                let to = (offset + marker.bytes.len() + HIT_CONTEXT_BYTES).min(n_read);
                hits.push(Hit {
                    what: marker.what.clone(),
                    addr: pos + offset as u64,
                    region: region.to_string(),
                    context: printable(&bytes[from..to]),
                });
            }
        }
        if n_read < len || pos + n_read as u64 >= end {
            return;
        }
        pos += (n_read - overlap_bytes) as u64;
    }
}

fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&byte| {
            if byte.is_ascii_graphic() || byte == b' ' {
                byte as char
            } else {
                '.'
            }
        })
        .collect()
}

fn describe(hits: &[Hit]) -> String {
    let mut text = String::new();
    for hit in hits.iter().take(HITS_SHOWN_MAX) {
        text.push_str(&format!(
            "- {} at {:#x} in `{}`\n    {}\n",
            hit.what, hit.addr, hit.region, hit.context
        ));
    }
    if hits.len() > HITS_SHOWN_MAX {
        text.push_str(&format!("... and {} more\n", hits.len() - HITS_SHOWN_MAX));
    }
    text
}

/// Whether a hit is a copy this test knows survives and the lead has yet to remove.
///
/// Asserts that no marker of `gone` is anywhere in the server's memory.
///
/// With `MAYFLY_WIPE_TEST_INVENTORY` set it fails on nothing and prints every hit: run
/// it with `MAYFLY_WIPE_FREED_MEMORY=0` to list the buffers that the allocator wipes.
fn assert_no_copy(server: &Server, gone: &[&Markers], when: &str) {
    wait_connections_closed(server);
    let markers: Vec<Marker> = gone.iter().flat_map(|markers| markers.all()).collect();
    let started = Instant::now();
    let hits = scan(server.pid(), &markers);
    eprintln!(
        "{when}: scanned in {:?}, {} hits",
        started.elapsed(),
        hits.len()
    );
    if std::env::var_os("MAYFLY_WIPE_TEST_INVENTORY").is_some() {
        eprintln!("{when}: every copy found:\n{}", describe(&hits));
        return;
    }
    assert!(
        hits.is_empty(),
        "{when}: {} copies of deleted mail in the server's memory:\n{}",
        hits.len(),
        describe(&hits)
    );
}

/// Asserts the scan finds every stored marker of a held message: the scan works, and a
/// clean scan later means something.
fn assert_scan_finds(server: &Server, held: &Markers) {
    let markers = held.stored();
    let hits = scan(server.pid(), &markers);
    for marker in &markers {
        assert!(
            hits.iter().any(|hit| hit.what == marker.what),
            "the scan did not find the held message's {}: the scan is broken",
            marker.what
        );
    }
}

/// Never read, deleted; then read in every way, deleted.
fn deleted_mail_leaves_no_copy(n_cores: usize) {
    let cores = n_cores.to_string();
    let mut flags = BASE_FLAGS.to_vec();
    flags.extend(["--cores", &cores]);
    let server = Server::start(&flags);
    let inboxes = inbox_per_shard(n_cores);

    // (a) Never listed or opened: deleted with the whole inbox.
    let unread = Markers::new("unread");
    send(&server, &unread, &inboxes);
    assert_scan_finds(&server, &unread);
    for inbox in &inboxes {
        let response = server.delete(&inbox_path(inbox));
        assert_eq!(
            response.status,
            204,
            "DELETE {inbox}: {}",
            response.describe()
        );
        assert_eq!(server.inbox(inbox)["total"].as_u64(), Some(0));
    }
    assert_no_copy(&server, &[&unread], "unread, deleted");

    // (b) Listed, opened, attachment and raw downloaded, then deleted by id.
    let read = Markers::new("read");
    send(&server, &read, &inboxes);
    for inbox in &inboxes {
        let id = read_everything(&server, inbox, 1, &read);
        let path = format!("{}/messages/{id}", inbox_path(inbox));
        let response = server.delete(&path);
        assert_eq!(
            response.status,
            204,
            "DELETE {path}: {}",
            response.describe()
        );
        assert_eq!(server.get(&path).status, 404, "GET {path} after DELETE");
    }
    assert_no_copy(&server, &[&unread, &read], "read, deleted");
}

/// One message never read and one read in every way, both left to expire.
fn expired_mail_leaves_no_copy(n_cores: usize) {
    let cores = n_cores.to_string();
    let mut flags = BASE_FLAGS.to_vec();
    flags.extend(["--cores", &cores, "--ttl", SHORT_TTL]);
    let server = Server::start(&flags);
    let inboxes = inbox_per_shard(n_cores);

    let unread = Markers::new("expiredunread");
    let read = Markers::new("expiredread");
    send(&server, &unread, &inboxes);
    send(&server, &read, &inboxes);
    for inbox in &inboxes {
        // Both messages are in each inbox; only `read` is listed (its summary, that is)
        // and opened, while `unread` is listed only as a summary beside it.
        read_everything(&server, inbox, 2, &read);
    }
    let expired = common::eventually(EXPIRY_TIMEOUT, || {
        let metrics = server.metrics();
        let held = metric_sum(&metrics, "mayfly_messages_held").unwrap_or(f64::NAN);
        let expired =
            metric_sum_with_label(&metrics, "mayfly_messages_evicted_total", "reason=\"ttl\"")
                .unwrap_or(0.0);
        held == 0.0 && expired >= 2.0 * n_cores as f64
    });
    assert!(expired, "messages did not expire within {EXPIRY_TIMEOUT:?}");
    assert_no_copy(&server, &[&unread, &read], "expired");
}

#[test]
fn deleted_mail_leaves_no_copy_on_one_core() {
    deleted_mail_leaves_no_copy(1);
}

#[test]
fn deleted_mail_leaves_no_copy_on_two_cores() {
    deleted_mail_leaves_no_copy(2);
}

#[test]
fn expired_mail_leaves_no_copy_on_one_core() {
    expired_mail_leaves_no_copy(1);
}

#[test]
fn expired_mail_leaves_no_copy_on_two_cores() {
    expired_mail_leaves_no_copy(2);
}

/// An SMTP session that stays open after its message was stored (a client that sends
/// NOOP, or just waits) holds no copy of it once it is deleted: the session wipes its
/// read buffer, body buffer, envelope and Received header after each delivery.
#[test]
fn an_open_smtp_session_keeps_no_copy_after_delete() {
    let server = Server::start(BASE_FLAGS);
    let inboxes = inbox_per_shard(1);
    let markers = Markers::new("opensession");
    let mut smtp = server.smtp_ehlo();
    let recipients: Vec<&str> = inboxes.iter().map(String::as_str).collect();
    smtp.send_mail(&markers.sender(), &recipients, &markers.message(&inboxes));
    smtp.expect("NOOP", "250");
    let response = server.delete(&inbox_path(&inboxes[0]));
    assert_eq!(response.status, 204, "DELETE: {}", response.describe());
    let hits = scan(server.pid(), &markers.all());
    assert!(
        hits.is_empty(),
        "the open session still holds {} copies:\n{}",
        hits.len(),
        describe(&hits)
    );
    smtp.expect("QUIT", "221");
    drop(smtp);
    assert_no_copy(&server, &[&markers], "open session, then closed");
}
