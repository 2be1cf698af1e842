//! Searching an inbox, step by step as the runtime drives it, against a naive model: every
//! message parsed whole, every term tested with `str::contains` on folded text.

use proptest::prelude::*;

use super::*;
use crate::address::InboxKey;
use crate::mail::{ParsedMessage, Summary, ViewCache};
use crate::store::{Incoming, MessageId, Rcpt, Shard, ShardConfig};

const INBOX: &str = "a@x.test";
const T0_MS: u64 = 1_795_737_600_000;

/// Words messages and queries are made of, so that queries often match.
const WORDS: &[&str] = &[
    "code", "Verify", "your", "account", "ÜBER", "straße", "482913", "Welcome", "news",
];

/// One generated message and what the store is told about it.
#[derive(Debug, Clone)]
struct Mail {
    mail_from: &'static str,
    rcpt_written: &'static str,
    header_from: Option<(&'static str, &'static str)>,
    to_header: Option<&'static str>,
    subject: Vec<usize>,
    body: Vec<usize>,
    shape: Shape,
    seen: bool,
    age_secs: u64,
}

#[derive(Debug, Clone, Copy)]
enum Shape {
    Plain,
    HtmlOnly,
    WithAttachment,
    NoBody,
}

fn words(idxs: &[usize], separator: &str) -> String {
    idxs.iter()
        .map(|&idx| WORDS[idx % WORDS.len()])
        .collect::<Vec<_>>()
        .join(separator)
}

impl Mail {
    fn render(&self) -> String {
        let mut head = String::new();
        if let Some((name, address)) = self.header_from {
            head.push_str(&format!("From: {name} <{address}>\r\n"));
        }
        if let Some(to) = self.to_header {
            head.push_str(&format!("To: {to}\r\n"));
        }
        head.push_str(&format!("Subject: {}\r\n", words(&self.subject, " ")));
        // Line breaks inside the body: phrases must match across them.
        let body = words(&self.body, " \r\n ");
        match self.shape {
            Shape::Plain => format!("{head}\r\n{body}\r\n"),
            Shape::NoBody => format!("{head}\r\n"),
            Shape::HtmlOnly => {
                format!("{head}Content-Type: text/html\r\n\r\n<p>{body}</p>\r\n")
            }
            Shape::WithAttachment => format!(
                "{head}Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
                 Content-Type: text/plain\r\n\r\n{body}\r\n--b\r\n\
                 Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
            ),
        }
    }
}

fn any_mail() -> impl Strategy<Value = Mail> {
    let word_idxs = proptest::collection::vec(0..WORDS.len(), 0..6);
    (
        prop::sample::select(vec!["", "bounce@news.test", "Bob@B.test"]),
        prop::sample::select(vec!["a@x.test", "A@X.test"]),
        prop::option::of(prop::sample::select(vec![
            ("Alice Code", "alice@a.test"),
            ("Ünal", "unal@b.test"),
        ])),
        prop::option::of(prop::sample::select(vec![
            "Team <team@x.test>",
            "a@x.test, Welcome <w@x.test>",
        ])),
        word_idxs.clone(),
        word_idxs,
        prop::sample::select(vec![
            Shape::Plain,
            Shape::HtmlOnly,
            Shape::WithAttachment,
            Shape::NoBody,
        ]),
        any::<bool>(),
        0..7200u64,
    )
        .prop_map(
            |(
                mail_from,
                rcpt_written,
                header_from,
                to_header,
                subject,
                body,
                shape,
                seen,
                age_secs,
            )| Mail {
                mail_from,
                rcpt_written,
                header_from,
                to_header,
                subject,
                body,
                shape,
                seen,
                age_secs,
            },
        )
}

fn any_search_query() -> impl Strategy<Value = Query> {
    let needle = prop_oneof![
        (0..WORDS.len()).prop_map(|idx| fold(WORDS[idx])),
        // Two words in a row: a phrase across the body's line breaks.
        (0..WORDS.len(), 0..WORDS.len())
            .prop_map(|(a, b)| fold(&format!("{} {}", WORDS[a], WORDS[b]))),
        prop::sample::select(vec!["bob", "alice", "ünal", "x.test", "team", "w@x", "ode"])
            .prop_map(str::to_string),
    ];
    let key = prop_oneof![
        needle.clone().prop_map(Key::From),
        needle.clone().prop_map(Key::To),
        needle.clone().prop_map(Key::Subject),
        needle.clone().prop_map(Key::Text),
        needle.clone().prop_map(Key::Text),
        needle.prop_map(Key::Tag),
        Just(Key::HasAttachment),
        Just(Key::Read),
        Just(Key::Unread),
        (0..7200i64).prop_map(|secs| Key::Before(T0_MS as i64 + secs * 1000)),
        (0..7200i64).prop_map(|secs| Key::After(T0_MS as i64 + secs * 1000)),
    ];
    proptest::collection::vec((prop::bool::weighted(0.25), key), 1..4).prop_map(|terms| Query {
        terms: terms
            .into_iter()
            .map(|(negated, key)| Term { negated, key })
            .collect(),
    })
}

fn key() -> InboxKey<'static> {
    InboxKey::new(INBOX).expect("valid")
}

/// A shard holding `mails` in order (the last is the newest), with their seen flags.
fn shard_with(mails: &[Mail], ring_bytes: usize) -> (Shard, Vec<MessageId>) {
    let mut shard = Shard::new(ShardConfig {
        shard_idx: 0,
        boot_micros: 1,
        ring_bytes,
        ttl_ms: 86_400_000,
        inbox_messages_max: 10_000,
    });
    let mut ids = Vec::new();
    for (mail_idx, mail) in mails.iter().enumerate() {
        let raw = mail.render();
        let rcpts = [Rcpt::new(mail.rcpt_written).expect("valid")];
        let parts: [&[u8]; 1] = [raw.as_bytes()];
        // Arrival order is id order; the receive times are the generated ones.
        let received_at_ms = T0_MS + mail.age_secs * 1000;
        let id = shard
            .insert(
                &Incoming {
                    mail_from: mail.mail_from,
                    rcpts: &rcpts,
                    parts: &parts,
                    received_at_ms,
                },
                T0_MS + mail_idx as u64,
            )
            .expect("fits");
        shard.set_seen(&key(), id, mail.seen);
        ids.push(id);
    }
    (shard, ids)
}

/// The model: does `query` match the message `id`, judged on its whole parse?
fn model_matches(query: &Query, shard: &Shard, id: MessageId) -> bool {
    let message = shard.get(&key(), id).expect("held");
    let summary = Summary::parse(message.raw);
    let (_, parsed) = ParsedMessage::parse(message.raw);
    let body = parsed.text(message.raw).unwrap_or_default();
    let has =
        |fields: &[&str], needle: &str| fields.iter().any(|field| fold(field).contains(needle));
    let rcpts: Vec<&str> = message.rcpts().collect();
    query.terms().iter().all(|term| {
        let matched = match &term.key {
            Key::From(needle) => has(
                &[message.mail_from, &summary.from_name, &summary.from_address],
                needle,
            ),
            Key::To(needle) => has(&rcpts, needle) || has(&[&summary.to_cc], needle),
            Key::Subject(needle) => has(&[&summary.subject], needle),
            Key::Text(needle) => has(&[&summary.subject, &body], needle),
            Key::HasAttachment => !parsed.attachments().is_empty(),
            Key::Read => message.seen,
            Key::Unread => !message.seen,
            Key::Before(unix_ms) => (message.received_at_ms as i64) < *unix_ms,
            Key::After(unix_ms) => (message.received_at_ms as i64) >= *unix_ms,
            Key::Tag(needle) => message
                .rcpts()
                .any(|rcpt| crate::mail::search::matcher::has_tag(rcpt, needle)),
        };
        matched != term.negated
    })
}

/// Runs a search to its end as the runtime does (parse jobs run inline, the cache synced
/// after every step); returns the ids found and the number of steps.
fn search(
    query: &Query,
    shard: &mut Shard,
    views: &mut ViewCache,
    after: Option<MessageId>,
    limit: usize,
) -> (Vec<MessageId>, usize) {
    let mut state = SearchState::default();
    let mut n_steps = 0;
    loop {
        n_steps += 1;
        assert!(n_steps < 10_000, "the search makes no progress");
        let found = match state.step(query, shard, views, &key(), after, limit) {
            Step::Done(matches) => Some(matches.iter().map(|m| m.id).collect()),
            Step::Parse(batch) => {
                assert!(!batch.ids().is_empty());
                assert!(batch.ids().len() <= BATCH_MESSAGES_MAX);
                state.absorb(batch.job(shard, &key()).run());
                None
            }
            Step::Yield => None,
        };
        views.sync(shard);
        if let Some(found) = found {
            return (found, n_steps);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The search finds exactly the newest `limit` messages after `after` that the model
    /// says match, with a roomy cache and with one too small to keep what it parses.
    #[test]
    fn finds_what_the_model_finds(
        mails in proptest::collection::vec(any_mail(), 0..24),
        query in any_search_query(),
        limit in 1usize..6,
        after_idx in proptest::option::of(0usize..24),
        tiny_cache in any::<bool>(),
    ) {
        let (mut shard, ids) = shard_with(&mails, 1 << 20);
        let after = after_idx.and_then(|idx| ids.get(idx).copied());
        let expected: Vec<MessageId> = ids
            .iter()
            .rev()
            .copied()
            .filter(|&id| Some(id) > after)
            .filter(|&id| model_matches(&query, &shard, id))
            .take(limit)
            .collect();
        let mut views = ViewCache::new(if tiny_cache { 2048 } else { 16 << 20 });
        let (found, _) = search(&query, &mut shard, &mut views, after, limit);
        prop_assert_eq!(&found, &expected, "query {}", query);
        // Warm: the same answer from what the first search cached.
        let (again, n_steps) = search(&query, &mut shard, &mut views, after, limit);
        prop_assert_eq!(again, expected);
        if !tiny_cache {
            prop_assert_eq!(n_steps, 1, "a warm search needs no parse");
        }
    }
}

/// Bodies that need more folding than one step may do: the search yields, keeps what it
/// decided, and still finds every match, newest first.
#[test]
fn long_searches_yield_and_resume() {
    let filler = "lorem ipsum ".repeat(25_000);
    let mut mails = Vec::new();
    for idx in 0..24 {
        mails.push(Mail {
            mail_from: "",
            rcpt_written: INBOX,
            header_from: None,
            to_header: None,
            subject: vec![8],
            body: if idx % 5 == 0 { vec![0, 6] } else { vec![] },
            shape: Shape::Plain,
            seen: false,
            age_secs: idx,
        });
    }
    let (mut shard, _) = shard_with(&[], 16 << 20);
    let mut ids = Vec::new();
    for (idx, mail) in mails.iter().enumerate() {
        let raw = mail
            .render()
            .replacen("\r\n\r\n", &format!("\r\n\r\n{filler}\r\n"), 1);
        let rcpts = [Rcpt::new(INBOX).expect("valid")];
        let parts: [&[u8]; 1] = [raw.as_bytes()];
        let incoming = Incoming {
            mail_from: "",
            rcpts: &rcpts,
            parts: &parts,
            received_at_ms: T0_MS + idx as u64,
        };
        ids.push(shard.insert(&incoming, T0_MS + idx as u64).expect("fits"));
    }
    let query = Query::parse("\"code 482913\"").expect("valid");
    let mut views = ViewCache::new(64 << 20);
    let expected: Vec<MessageId> = ids
        .iter()
        .enumerate()
        .rev()
        .filter(|(idx, _)| idx % 5 == 0)
        .map(|(_, &id)| id)
        .collect();
    let (found, n_steps) = search(&query, &mut shard, &mut views, None, 50);
    assert_eq!(found, expected);
    // 24 bodies of 300 KB: parsed in one job, then folded in two steps of 4 MiB.
    assert!(n_steps >= 3, "{n_steps} steps");
    let (again, n_steps) = search(&query, &mut shard, &mut views, None, 50);
    assert_eq!(again, expected);
    assert!(
        n_steps >= 2,
        "warm, but more than a step's folding: {n_steps} steps"
    );
}

/// After a long poll parks, a wake searches only the mail newer than what was searched.
#[test]
fn the_floor_skips_what_was_searched() {
    let mail = |body: Vec<usize>| Mail {
        mail_from: "",
        rcpt_written: INBOX,
        header_from: None,
        to_header: None,
        subject: vec![],
        body,
        shape: Shape::Plain,
        seen: false,
        age_secs: 0,
    };
    let (mut shard, ids) = shard_with(&[mail(vec![0]), mail(vec![1])], 1 << 20);
    let mut views = ViewCache::new(1 << 20);
    let query = Query::parse("code").expect("valid");
    let mut state = SearchState::default();
    state.set_floor(Some(ids[0]));
    let Step::Parse(batch) = state.step(&query, &shard, &mut views, &key(), None, 10) else {
        panic!("the newer message needs its body");
    };
    assert_eq!(batch.ids(), [ids[1]], "the older one is under the floor");
    state.absorb(batch.job(&shard, &key()).run());
    let Step::Done(found) = state.step(&query, &shard, &mut views, &key(), None, 10) else {
        panic!("done");
    };
    assert!(
        found.is_empty(),
        "the match under the floor is not searched again"
    );
    let (found, _) = search(&query, &mut shard, &mut views, None, 10);
    assert_eq!(found, [ids[0]], "a new request searches everything");
}
