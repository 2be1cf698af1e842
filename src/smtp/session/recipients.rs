//! The recipients of one transaction: every spelling the client used, once each, and how
//! many inboxes they name.
//!
//! RFC 5321 2.4 lets a local part be case-sensitive, so `A@x.test` and `a@x.test` are two
//! recipients on the wire, but both name one inbox (`address::InboxKey`, the one rule for
//! that). Both spellings are listed: the store keeps the message once per inbox and shows
//! every spelling it was sent to. An exact repeat is not listed again.
//!
//! `recipients_max` counts inboxes, not spellings: an inbox is what costs a copy and an
//! index entry in the store, and a second spelling of one adds neither. Spellings are
//! bounded separately (`SPELLINGS_PER_INBOX_MAX`), so varying the case of one address
//! cannot grow the envelope without bound.

/// Spellings listed per inbox. More are answered `250` (the inbox gets the message anyway)
/// but not listed: an n-letter local part has 2^n case variants, and each listed one would
/// cost envelope bytes in the store and a comparison on every later RCPT.
pub const SPELLINGS_PER_INBOX_MAX: usize = 4;
/// Text capacity kept between transactions, per list: enough for dozens of recipients, so
/// most sessions never allocate for them again, while a session that once listed hundreds
/// (up to `recipients_max` inboxes of 256-octet paths, four spellings each) does not keep
/// that memory for as long as it stays connected.
pub const RECIPIENTS_TEXT_KEPT_BYTES: usize = 4 * 1024;

/// What `Recipients::add` did with a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Added {
    /// Listed: a new inbox, or a new spelling of a listed one.
    Listed,
    /// Not listed, and nothing to refuse: an exact repeat, or one spelling too many of an
    /// inbox that is listed already.
    AlreadyCovered,
    /// A new inbox beyond the limit: not listed.
    TooManyInboxes,
}

/// The listed recipients. Cleared between transactions, keeping a little memory.
///
/// Invariant: `spellings` and `keys` hold `n_spellings` entries each, entry `i` of `keys`
/// being the inbox key of entry `i` of `spellings`; `n_inboxes` distinct keys among them;
/// no spelling twice, and no key more than `SPELLINGS_PER_INBOX_MAX` times.
#[derive(Debug, Default)]
pub(super) struct Recipients {
    /// Each spelling as the client wrote it, followed by `\n` (addresses never contain LF).
    spellings: String,
    /// The inbox key of each spelling, in the same order, each followed by `\n`.
    keys: String,
    n_spellings: usize,
    n_inboxes: usize,
}

impl Recipients {
    /// Lists `spelling`, whose inbox key is `key`, unless it is listed already or would
    /// make more than `inboxes_max` inboxes.
    pub(super) fn add(&mut self, spelling: &str, key: &str, inboxes_max: usize) -> Added {
        debug_assert!(!spelling.contains('\n') && !key.contains('\n'));
        let mut n_same_inbox = 0;
        let listed = self.spellings.split_terminator('\n');
        for (listed_spelling, listed_key) in listed.zip(self.keys.split_terminator('\n')) {
            if listed_spelling == spelling {
                return Added::AlreadyCovered;
            }
            if listed_key == key {
                n_same_inbox += 1;
            }
        }
        if n_same_inbox >= SPELLINGS_PER_INBOX_MAX {
            return Added::AlreadyCovered;
        }
        if n_same_inbox == 0 {
            if self.n_inboxes >= inboxes_max {
                return Added::TooManyInboxes;
            }
            self.n_inboxes += 1;
        }
        self.spellings.push_str(spelling);
        self.spellings.push('\n');
        self.keys.push_str(key);
        self.keys.push('\n');
        self.n_spellings += 1;
        Added::Listed
    }

    /// Forgets every recipient; keeps at most `RECIPIENTS_TEXT_KEPT_BYTES` of memory per list.
    pub(super) fn clear(&mut self) {
        // Addresses of a delivered (maybe since deleted) message: wiped, not just dropped.
        crate::alloc::wipe_str_if_on(&mut self.spellings);
        self.spellings.shrink_to(RECIPIENTS_TEXT_KEPT_BYTES);
        crate::alloc::wipe_str_if_on(&mut self.keys);
        self.keys.shrink_to(RECIPIENTS_TEXT_KEPT_BYTES);
        self.n_spellings = 0;
        self.n_inboxes = 0;
    }

    /// The listed spellings, each followed by `\n`.
    pub(super) fn spellings_text(&self) -> &str {
        &self.spellings
    }

    /// How many spellings are listed.
    pub(super) fn n_spellings(&self) -> usize {
        self.n_spellings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_are_listed_once_and_inboxes_counted() {
        let mut recipients = Recipients::default();
        let table = [
            ("a@x.test", "a@x.test", Added::Listed),
            ("a@x.test", "a@x.test", Added::AlreadyCovered),
            ("A@x.test", "a@x.test", Added::Listed),
            ("b@x.test", "b@x.test", Added::Listed),
            // Two inboxes is the limit below: a third is refused, spellings of the two
            // are not.
            ("c@x.test", "c@x.test", Added::TooManyInboxes),
            ("B@X.TEST", "b@x.test", Added::Listed),
            ("a@X.test", "a@x.test", Added::Listed),
            ("a@x.TEST", "a@x.test", Added::Listed),
            // The fifth spelling of one inbox is covered, not listed.
            ("A@X.TEST", "a@x.test", Added::AlreadyCovered),
            ("c@x.test", "c@x.test", Added::TooManyInboxes),
        ];
        for (spelling, key, expected) in table {
            assert_eq!(recipients.add(spelling, key, 2), expected, "{spelling}");
        }
        assert_eq!(
            recipients
                .spellings
                .split_terminator('\n')
                .collect::<Vec<_>>(),
            [
                "a@x.test", "A@x.test", "b@x.test", "B@X.TEST", "a@X.test", "a@x.TEST"
            ]
        );
        assert_eq!((recipients.n_spellings, recipients.n_inboxes), (6, 2));
        assert_eq!(
            recipients.spellings_text().matches('\n').count(),
            recipients.n_spellings()
        );
        recipients.clear();
        assert_eq!((recipients.n_spellings, recipients.n_inboxes), (0, 0));
        assert!(
            recipients.spellings.capacity() > 0,
            "small lists keep their memory"
        );
        assert_eq!(recipients.add("c@x.test", "c@x.test", 2), Added::Listed);
    }

    #[test]
    fn a_long_list_gives_its_memory_back() {
        let mut recipients = Recipients::default();
        for idx in 0..1000 {
            let address = format!("{idx:0>200}@example.test");
            assert_eq!(recipients.add(&address, &address, 1000), Added::Listed);
        }
        assert!(recipients.spellings.capacity() > 200_000);
        recipients.clear();
        assert!(recipients.spellings.capacity() <= RECIPIENTS_TEXT_KEPT_BYTES);
        assert!(recipients.keys.capacity() <= RECIPIENTS_TEXT_KEPT_BYTES);
    }
}
