//! FETCH: the items a client asked for, and one message's `* n FETCH (...)` response.
//!
//! Items that need the message's bytes (ENVELOPE, BODY, BODYSTRUCTURE, sections, RFC822)
//! are rendered when the socket loop has handed the bytes over (`Event::NeedMessages`);
//! FLAGS, UID, INTERNALDATE and RFC822.SIZE come from the model, so a FETCH of only those
//! answers at once. Rendering a big message is the costly step: the socket loop may run
//! `Session::messages` on a blocking thread.

use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItemName, Section as WireSection,
};

use crate::imap::mime::{self, Part, Section, SectionText};
use crate::imap::model::Slot;
use crate::imap::reply;
use crate::imap::structure;

/// Most messages one `Event::NeedMessages` asks for: a FETCH or SEARCH over a large
/// mailbox proceeds in rounds, so the socket loop never holds a whole mailbox.
pub const ROUND_MESSAGES_MAX: usize = 256;
/// Most message bytes (by the model's sizes) one round asks for; a single larger message
/// still gets a round of its own.
pub const ROUND_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// One FETCH item, owned (the command's borrowed form does not outlive its input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Flags,
    Uid,
    InternalDate,
    Rfc822Size,
    Envelope,
    /// BODY without a section: the non-extensible BODYSTRUCTURE.
    Body,
    BodyStructure,
    Section {
        kind: SectionKind,
        section: Section,
        /// `<origin.length>`.
        partial: Option<(u32, u32)>,
        peek: bool,
    },
}

/// How a section item is named in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    Body,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
}

/// The items of a FETCH command, macros expanded.
pub fn items_of(names: &MacroOrMessageDataItemNames<'_>) -> Vec<Item> {
    let names: Vec<MessageDataItemName<'_>> = match names {
        MacroOrMessageDataItemNames::Macro(macro_name) => macro_name.expand(),
        MacroOrMessageDataItemNames::MessageDataItemNames(names) => names.clone(),
    };
    let whole = |text: Option<SectionText>| Section {
        part: Vec::new(),
        text,
    };
    names
        .iter()
        .map(|name| match name {
            MessageDataItemName::Flags => Item::Flags,
            MessageDataItemName::Uid => Item::Uid,
            MessageDataItemName::InternalDate => Item::InternalDate,
            MessageDataItemName::Rfc822Size => Item::Rfc822Size,
            MessageDataItemName::Envelope => Item::Envelope,
            MessageDataItemName::Body => Item::Body,
            MessageDataItemName::BodyStructure => Item::BodyStructure,
            MessageDataItemName::Rfc822 => Item::Section {
                kind: SectionKind::Rfc822,
                section: whole(None),
                partial: None,
                peek: false,
            },
            MessageDataItemName::Rfc822Header => Item::Section {
                kind: SectionKind::Rfc822Header,
                section: whole(Some(SectionText::Header)),
                partial: None,
                peek: true,
            },
            MessageDataItemName::Rfc822Text => Item::Section {
                kind: SectionKind::Rfc822Text,
                section: whole(Some(SectionText::Text)),
                partial: None,
                peek: false,
            },
            MessageDataItemName::BodyExt {
                section,
                partial,
                peek,
            } => Item::Section {
                kind: SectionKind::Body,
                section: section.as_ref().map_or(whole(None), section_of),
                partial: partial.map(|(origin, length)| (origin, length.get())),
                peek: *peek,
            },
        })
        .collect()
}

fn section_of(section: &WireSection<'_>) -> Section {
    let numbers = |part: Option<&imap_codec::imap_types::fetch::Part>| {
        part.map(|part| part.0.as_ref().iter().map(|number| number.get()).collect())
            .unwrap_or_default()
    };
    let names = |names: &imap_codec::imap_types::core::NonEmptyVec<
        imap_codec::imap_types::core::AString<'_>,
    >| {
        names
            .as_ref()
            .iter()
            .map(|name| AsRef::<[u8]>::as_ref(name).to_vec())
            .collect()
    };
    match section {
        WireSection::Part(part) => Section {
            part: numbers(Some(part)),
            text: None,
        },
        WireSection::Header(part) => Section {
            part: numbers(part.as_ref()),
            text: Some(SectionText::Header),
        },
        WireSection::HeaderFields(part, fields) => Section {
            part: numbers(part.as_ref()),
            text: Some(SectionText::HeaderFields(names(fields))),
        },
        WireSection::HeaderFieldsNot(part, fields) => Section {
            part: numbers(part.as_ref()),
            text: Some(SectionText::HeaderFieldsNot(names(fields))),
        },
        WireSection::Text(part) => Section {
            part: numbers(part.as_ref()),
            text: Some(SectionText::Text),
        },
        WireSection::Mime(part) => Section {
            part: numbers(Some(part)),
            text: Some(SectionText::Mime),
        },
    }
}

/// Whether any item needs the message's bytes.
pub fn needs_bytes(items: &[Item]) -> bool {
    items.iter().any(|item| {
        matches!(
            item,
            Item::Envelope | Item::Body | Item::BodyStructure | Item::Section { .. }
        )
    })
}

/// Whether fetching these items sets `\Seen` (a section fetched without PEEK).
pub fn sets_seen(items: &[Item]) -> bool {
    items
        .iter()
        .any(|item| matches!(item, Item::Section { peek: false, .. }))
}

/// The end (exclusive) of the next round in `slot_idxs[from..]`: at most
/// `ROUND_MESSAGES_MAX` messages and `ROUND_BYTES_MAX` bytes, at least one message.
pub fn round_end(slots: &[Slot], slot_idxs: &[usize], from: usize) -> usize {
    let mut bytes = 0u64;
    let mut end = from;
    while end < slot_idxs.len() && end - from < ROUND_MESSAGES_MAX {
        let size_bytes = slots
            .get(slot_idxs[end])
            .map_or(0, |slot| u64::from(slot.size_bytes));
        if end > from && bytes + size_bytes > ROUND_BYTES_MAX {
            break;
        }
        bytes += size_bytes;
        end += 1;
    }
    end
}

/// Appends `* seq FETCH (...)` for one message. `raw` is `None` only when no item needs
/// it. `with_uid` puts UID first when the command was UID FETCH and did not ask for it
/// (RFC 3501 6.4.8); `add_flags` appends FLAGS when a fetch set `\Seen` and the client
/// did not ask for FLAGS (it must learn of the change).
pub fn write_fetch(
    out: &mut Vec<u8>,
    seq: usize,
    slot: &Slot,
    items: &[Item],
    raw: Option<&[u8]>,
    with_uid: bool,
    add_flags: bool,
) {
    out.extend_from_slice(b"* ");
    reply::push_number(out, seq as u64);
    out.extend_from_slice(b" FETCH (");
    let mut first = true;
    let mut separate = |out: &mut Vec<u8>| {
        if !first {
            out.push(b' ');
        }
        first = false;
    };
    if with_uid && !items.contains(&Item::Uid) {
        separate(out);
        out.extend_from_slice(b"UID ");
        reply::push_number(out, u64::from(slot.uid));
    }
    let raw = raw.unwrap_or_default();
    let mut tree: Option<Part> = None;
    for item in items {
        separate(out);
        match item {
            Item::Flags => {
                out.extend_from_slice(b"FLAGS ");
                reply::flags(out, slot.seen, slot.deleted);
            }
            Item::Uid => {
                out.extend_from_slice(b"UID ");
                reply::push_number(out, u64::from(slot.uid));
            }
            Item::InternalDate => {
                out.extend_from_slice(b"INTERNALDATE ");
                reply::internal_date(out, slot.received_at_ms);
            }
            Item::Rfc822Size => {
                out.extend_from_slice(b"RFC822.SIZE ");
                reply::push_number(out, u64::from(slot.size_bytes));
            }
            Item::Envelope => {
                out.extend_from_slice(b"ENVELOPE ");
                let root = tree.get_or_insert_with(|| mime::parse_message(raw));
                structure::write_envelope(out, raw, root.header.clone());
            }
            Item::Body | Item::BodyStructure => {
                let extensible = *item == Item::BodyStructure;
                out.extend_from_slice(if extensible {
                    b"BODYSTRUCTURE "
                } else {
                    b"BODY "
                });
                let root = tree.get_or_insert_with(|| mime::parse_message(raw));
                structure::write_body_structure(out, raw, root, extensible);
            }
            Item::Section {
                kind,
                section,
                partial,
                ..
            } => {
                write_section_name(out, *kind, section, *partial);
                out.push(b' ');
                let data = if section.part.is_empty() && section.text.is_none() {
                    std::borrow::Cow::Borrowed(raw)
                } else {
                    let root = tree.get_or_insert_with(|| mime::parse_message(raw));
                    mime::section_bytes(raw, root, section)
                };
                let data = match partial {
                    Some((origin, length)) => {
                        let start = (*origin as usize).min(data.len());
                        let end = start.saturating_add(*length as usize).min(data.len());
                        &data[start..end]
                    }
                    None => &data[..],
                };
                // Message data always goes as a literal: it is long and may hold anything.
                reply::literal(out, data);
            }
        }
    }
    if add_flags && !items.contains(&Item::Flags) {
        separate(out);
        out.extend_from_slice(b"FLAGS ");
        reply::flags(out, slot.seen, slot.deleted);
    }
    out.extend_from_slice(b")\r\n");
}

/// `BODY[1.HEADER.FIELDS (From)]<0>` and the like: the request echoed, as clients match
/// responses to requests by it.
fn write_section_name(
    out: &mut Vec<u8>,
    kind: SectionKind,
    section: &Section,
    partial: Option<(u32, u32)>,
) {
    match kind {
        SectionKind::Rfc822 => return out.extend_from_slice(b"RFC822"),
        SectionKind::Rfc822Header => return out.extend_from_slice(b"RFC822.HEADER"),
        SectionKind::Rfc822Text => return out.extend_from_slice(b"RFC822.TEXT"),
        SectionKind::Body => {}
    }
    out.extend_from_slice(b"BODY[");
    for (number_idx, number) in section.part.iter().enumerate() {
        if number_idx > 0 {
            out.push(b'.');
        }
        reply::push_number(out, u64::from(*number));
    }
    if let Some(text) = &section.text {
        if !section.part.is_empty() {
            out.push(b'.');
        }
        let (word, names): (&[u8], Option<&Vec<Vec<u8>>>) = match text {
            SectionText::Header => (b"HEADER", None),
            SectionText::HeaderFields(names) => (b"HEADER.FIELDS", Some(names)),
            SectionText::HeaderFieldsNot(names) => (b"HEADER.FIELDS.NOT", Some(names)),
            SectionText::Text => (b"TEXT", None),
            SectionText::Mime => (b"MIME", None),
        };
        out.extend_from_slice(word);
        if let Some(names) = names {
            out.extend_from_slice(b" (");
            for (name_idx, name) in names.iter().enumerate() {
                if name_idx > 0 {
                    out.push(b' ');
                }
                reply::astring(out, name);
            }
            out.push(b')');
        }
    }
    out.push(b']');
    if let Some((origin, _)) = partial {
        out.push(b'<');
        reply::push_number(out, u64::from(origin));
        out.push(b'>');
    }
}
