//! The `--config` file: read it (at most `CONFIG_FILE_BYTES_MAX`), parse the TOML, and
//! check each key against the settings table and each value's TOML type against the
//! setting's shape. Values stay text, with their byte offsets, so that they are parsed by
//! the same code as flags and environment variables and an error can give the line.
//!
//! The file is read with serde into a list of spanned keys and values rather than into a
//! struct with one field per setting, so the table stays the only list of keys.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Unexpected};
use toml::Spanned;

use crate::config::table::{Setting, Shape, closest_key};
use crate::config::values::format_size;
use crate::config::{Error, SETTINGS};

/// A config file is a few hundred bytes; refuse to slurp something that clearly is not one.
pub(super) const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// A loaded `--config` file.
#[derive(Debug)]
pub(super) struct ConfigFile {
    pub(super) path: PathBuf,
    /// The file's text, to turn byte offsets into line numbers.
    text: String,
    /// The settings the file sets, in file order, each at most once (TOML forbids a
    /// repeated key).
    entries: Vec<(&'static Setting, Vec<Item>)>,
}

/// One value as text: a scalar, or one element of a list.
#[derive(Debug)]
pub(super) struct Item {
    /// A TOML string as is, an integer as its decimal digits, a boolean as `true`/`false`.
    pub(super) text: String,
    /// Where the value starts in the file.
    pub(super) offset: usize,
}

/// A top-level TOML value, before it is checked against a setting's shape.
#[derive(Debug)]
enum RawValue {
    String(String),
    /// As decimal text: `max_memory = 0x100` reaches the size parser as `256`.
    Integer(String),
    Boolean(bool),
    Array(Vec<Spanned<RawValue>>),
    /// Anything no setting takes (a float, a table, a date), as serde describes it.
    Other(String),
}

/// The file's top-level table in file order.
struct RawTable(Vec<(Spanned<String>, Spanned<RawValue>)>);

impl ConfigFile {
    /// Reads, parses and checks the file at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::ReadFile`] when it cannot be read or is too large; [`Error::FileSyntax`] for
    /// bad UTF-8, bad TOML or a value of the wrong TOML type; [`Error::UnknownKey`] for a
    /// key that is not a setting. The first problem in file order is reported.
    pub(super) fn read(path: &Path) -> Result<ConfigFile, Error> {
        let read_error = |reason: String| Error::ReadFile {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|err| read_error(io_reason(&err)))?;
        let mut bytes = Vec::new();
        file.take(CONFIG_FILE_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|err| read_error(io_reason(&err)))?;
        if bytes.len() as u64 > CONFIG_FILE_BYTES_MAX {
            return Err(read_error(format!(
                "larger than {}, which is not a config file",
                format_size(CONFIG_FILE_BYTES_MAX as usize)
            )));
        }
        let text = String::from_utf8(bytes).map_err(|err| Error::FileSyntax {
            path: path.to_path_buf(),
            line: None,
            message: format!(
                "not UTF-8 (bad byte at offset {})",
                err.utf8_error().valid_up_to()
            ),
        })?;
        let RawTable(raw_entries) =
            toml::from_str::<RawTable>(&text).map_err(|err| toml_error(path, &text, &err))?;
        let mut entries = Vec::with_capacity(raw_entries.len());
        for (key, value) in raw_entries {
            let line = line_of(&text, key.span().start);
            let key = key.into_inner();
            let Some(setting) = SETTINGS.iter().find(|setting| setting.key == key) else {
                return Err(Error::UnknownKey {
                    path: path.to_path_buf(),
                    suggestion: closest_key(&key, SETTINGS),
                    key,
                    line: Some(line),
                });
            };
            let items =
                items(setting.shape, value).map_err(|(offset, message)| Error::FileSyntax {
                    path: path.to_path_buf(),
                    line: Some(line_of(&text, offset)),
                    message,
                })?;
            entries.push((setting, items));
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            text,
            entries,
        })
    }

    /// The values the file gives `key` (one for a scalar), or `None` if it does not set it.
    pub(super) fn items(&self, key: &str) -> Option<&[Item]> {
        self.entries
            .iter()
            .find(|(setting, _)| setting.key == key)
            .map(|(_, items)| items.as_slice())
    }

    /// The 1-based line of a byte offset in this file.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        line_of(&self.text, offset)
    }
}

/// A value checked against the TOML type its shape takes, as text. On error: where the
/// offending value starts, and serde's wording ("invalid type: string \"yes\", expected a
/// boolean").
fn items(shape: Shape, value: Spanned<RawValue>) -> Result<Vec<Item>, (usize, String)> {
    let offset = value.span().start;
    let wrong_type = |value: &RawValue, expected: &str| {
        (
            offset,
            format!("invalid type: {}, expected {expected}", value.describe()),
        )
    };
    let text = match (shape, value.into_inner()) {
        (Shape::Text, RawValue::String(text) | RawValue::Integer(text)) => text,
        (Shape::Bool | Shape::Switch, RawValue::Boolean(value)) => value.to_string(),
        (Shape::List, RawValue::Array(elements)) => {
            return elements
                .into_iter()
                .map(|element| {
                    let offset = element.span().start;
                    match element.into_inner() {
                        RawValue::String(text) => Ok(Item { text, offset }),
                        other => Err((
                            offset,
                            format!("invalid type: {}, expected a string", other.describe()),
                        )),
                    }
                })
                .collect();
        }
        (Shape::Text, other) => return Err(wrong_type(&other, "a string or an integer")),
        (Shape::Bool | Shape::Switch, other) => return Err(wrong_type(&other, "a boolean")),
        (Shape::List, other) => return Err(wrong_type(&other, "an array of strings")),
    };
    Ok(vec![Item { text, offset }])
}

impl RawValue {
    /// What serde would call it in an "invalid type" message.
    fn describe(&self) -> String {
        match self {
            RawValue::String(text) => Unexpected::Str(text).to_string(),
            RawValue::Integer(text) => format!("integer `{text}`"),
            RawValue::Boolean(value) => Unexpected::Bool(*value).to_string(),
            RawValue::Array(_) => Unexpected::Seq.to_string(),
            RawValue::Other(description) => description.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for RawTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawTable, D::Error> {
        struct TableVisitor;
        impl<'de> de::Visitor<'de> for TableVisitor {
            type Value = RawTable;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a table of settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTable, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(RawTable(entries))
            }
        }
        deserializer.deserialize_map(TableVisitor)
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawValue, D::Error> {
        struct ValueVisitor;
        impl<'de> de::Visitor<'de> for ValueVisitor {
            type Value = RawValue;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a TOML value")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawValue, E> {
                Ok(RawValue::String(value.to_string()))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<RawValue, E> {
                Ok(RawValue::String(value))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RawValue, E> {
                Ok(RawValue::Integer(value.to_string()))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RawValue, E> {
                Ok(RawValue::Integer(value.to_string()))
            }
            fn visit_bool<E: de::Error>(self, value: bool) -> Result<RawValue, E> {
                Ok(RawValue::Boolean(value))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<RawValue, E> {
                Ok(RawValue::Other(Unexpected::Float(value).to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
                let mut elements = Vec::new();
                while let Some(element) = seq.next_element()? {
                    elements.push(element);
                }
                Ok(RawValue::Array(elements))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
                // A table (or a date, which toml hands over as one): drain it so the
                // deserializer stays in step, then report its type.
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(RawValue::Other(Unexpected::Map.to_string()))
            }
        }
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// Turns toml's multi-line error into ours: one line, with a line number.
fn toml_error(path: &Path, text: &str, err: &toml::de::Error) -> Error {
    Error::FileSyntax {
        path: path.to_path_buf(),
        line: err.span().map(|span| line_of(text, span.start)),
        // toml's messages are one line today; make sure it stays so.
        message: err.message().trim().replace('\n', " "),
    }
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|byte| **byte == b'\n').count() + 1
}

/// An I/O error's text without std's " (os error N)" suffix.
fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(idx) => text[..idx].to_string(),
        None => text,
    }
}
