//! The few commands imap-codec 1.0 does not parse: ID (RFC 2971), NAMESPACE (RFC 2342),
//! UID EXPUNGE (RFC 4315) and STATUS with SIZE (RFC 8438). They are read here only when
//! imap-codec has refused a command, and their syntax is small enough to check by hand.

use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::status::StatusDataItemName;

use crate::imap::framing::tag_of;

/// One STATUS item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    Recent,
    UidNext,
    UidValidity,
    Unseen,
    /// RFC 8438: the mailbox's total octets.
    Size,
    /// RFC 9051 DELETED: the store has no `\Deleted` (it is session-local), so 0.
    Deleted,
    /// RFC 9051 DELETED-STORAGE, likewise 0.
    DeletedStorage,
}

impl StatusItem {
    /// From imap-codec's item; `None` for one we do not offer.
    pub fn of(name: &StatusDataItemName) -> Option<StatusItem> {
        Some(match name {
            StatusDataItemName::Messages => StatusItem::Messages,
            StatusDataItemName::Recent => StatusItem::Recent,
            StatusDataItemName::UidNext => StatusItem::UidNext,
            StatusDataItemName::UidValidity => StatusItem::UidValidity,
            StatusDataItemName::Unseen => StatusItem::Unseen,
            StatusDataItemName::Deleted => StatusItem::Deleted,
            StatusDataItemName::DeletedStorage => StatusItem::DeletedStorage,
            // Another crate enabling imap-codec's CONDSTORE feature (Cargo unifies features)
            // adds HIGHESTMODSEQ, which we do not offer.
            #[allow(unreachable_patterns)]
            _ => return None,
        })
    }

    fn named(word: &[u8]) -> Option<StatusItem> {
        let items = [
            ("MESSAGES", StatusItem::Messages),
            ("RECENT", StatusItem::Recent),
            ("UIDNEXT", StatusItem::UidNext),
            ("UIDVALIDITY", StatusItem::UidValidity),
            ("UNSEEN", StatusItem::Unseen),
            ("SIZE", StatusItem::Size),
            ("DELETED", StatusItem::Deleted),
            ("DELETED-STORAGE", StatusItem::DeletedStorage),
        ];
        items
            .iter()
            .find(|(name, _)| word.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, item)| *item)
    }

    /// The item's name in a STATUS response.
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Size => "SIZE",
            StatusItem::Deleted => "DELETED",
            StatusItem::DeletedStorage => "DELETED-STORAGE",
        }
    }
}

/// A command from this file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extra {
    Id,
    Namespace,
    UidExpunge(SequenceSet),
    Status {
        mailbox: Vec<u8>,
        items: Vec<StatusItem>,
    },
}

/// Parses one whole command (CRLF included); `None` if it is none of these or malformed.
pub fn parse(command: &[u8]) -> Option<(&str, Extra)> {
    let tag = tag_of(command)?;
    let rest = command[tag.len()..].strip_prefix(b" ")?;
    let rest = rest.strip_suffix(b"\r\n")?;
    let (word, args) = match rest.iter().position(|&b| b == b' ') {
        Some(space_idx) => (&rest[..space_idx], &rest[space_idx + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let extra = if word.eq_ignore_ascii_case(b"ID") {
        // The client's parameters are not used; only their outline is checked.
        let list = args.starts_with(b"(") && args.ends_with(b")");
        if !(list || args.eq_ignore_ascii_case(b"NIL")) {
            return None;
        }
        Extra::Id
    } else if word.eq_ignore_ascii_case(b"NAMESPACE") && rest.len() == word.len() {
        Extra::Namespace
    } else if word.eq_ignore_ascii_case(b"UID") {
        let set = strip_prefix_ignore_case(args, b"EXPUNGE ")?;
        let set = std::str::from_utf8(set).ok()?;
        Extra::UidExpunge(set.parse().ok()?)
    } else if word.eq_ignore_ascii_case(b"STATUS") {
        let (mailbox, after) = astring(args)?;
        let list = after.strip_prefix(b" (")?.strip_suffix(b")")?;
        let items = list
            .split(|&b| b == b' ')
            .map(StatusItem::named)
            .collect::<Option<Vec<_>>>()?;
        Extra::Status { mailbox, items }
    } else {
        return None;
    };
    Some((tag, extra))
}

fn strip_prefix_ignore_case<'b>(bytes: &'b [u8], prefix: &[u8]) -> Option<&'b [u8]> {
    let head = bytes.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &bytes[prefix.len()..])
}

/// An astring at the start of `bytes` (atom, quoted string or literal): its value and
/// the rest.
fn astring(bytes: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    match bytes.first()? {
        b'"' => {
            let mut value = Vec::new();
            let mut idx = 1;
            while idx < bytes.len() {
                match bytes[idx] {
                    b'"' => return Some((value, &bytes[idx + 1..])),
                    b'\\' => {
                        value.push(*bytes.get(idx + 1)?);
                        idx += 2;
                    }
                    byte => {
                        value.push(byte);
                        idx += 1;
                    }
                }
            }
            None
        }
        b'{' => {
            let close_idx = bytes.iter().position(|&b| b == b'}')?;
            let digits = bytes[1..close_idx]
                .strip_suffix(b"+")
                .unwrap_or(&bytes[1..close_idx]);
            let length: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
            let data = bytes[close_idx + 1..].strip_prefix(b"\r\n")?;
            Some((data.get(..length)?.to_vec(), &data[length..]))
        }
        _ => {
            let end = bytes.iter().position(|&b| b == b' ').unwrap_or(bytes.len());
            Some((bytes[..end].to_vec(), &bytes[end..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_extra_commands() {
        assert_eq!(parse(b"a ID NIL\r\n"), Some(("a", Extra::Id)));
        assert_eq!(parse(b"a id (\"name\" \"x\")\r\n"), Some(("a", Extra::Id)));
        assert_eq!(parse(b"a ID x\r\n"), None);
        assert_eq!(parse(b"b NAMESPACE\r\n"), Some(("b", Extra::Namespace)));
        assert_eq!(parse(b"b NAMESPACE x\r\n"), None);
        assert_eq!(
            parse(b"c UID EXPUNGE 1:3,7\r\n"),
            Some(("c", Extra::UidExpunge("1:3,7".parse().unwrap())))
        );
        assert_eq!(parse(b"c UID EXPUNGE x\r\n"), None);
        assert_eq!(
            parse(b"d STATUS \"INBOX\" (SIZE MESSAGES)\r\n"),
            Some((
                "d",
                Extra::Status {
                    mailbox: b"INBOX".to_vec(),
                    items: vec![StatusItem::Size, StatusItem::Messages]
                }
            ))
        );
        assert_eq!(
            parse(b"d STATUS {5}\r\ninbox (size)\r\n"),
            Some((
                "d",
                Extra::Status {
                    mailbox: b"inbox".to_vec(),
                    items: vec![StatusItem::Size]
                }
            ))
        );
        assert_eq!(parse(b"d STATUS INBOX (SIZE BOGUS)\r\n"), None);
        assert_eq!(parse(b"d FROB\r\n"), None);
    }
}
