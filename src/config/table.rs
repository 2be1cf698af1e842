//! The machinery behind the settings table in `config/mod.rs`: the `settings!` macro, the
//! `Setting` record it produces for each entry, and everything derived from a `Setting`:
//! its flag and environment variable names, its clap argument, and key suggestions.
//!
//! The macro is plain `macro_rules!`, so that a reader can see every expansion here.
//! From one entry it writes three things:
//! - the `Config` field, with the entry's doc comment;
//! - a `Setting` in `SETTINGS` (the list clap, the file reader, the environment reader
//!   and the docs renderer walk);
//! - one step of `resolve`, which asks `Layers` for the winning text and parses it.
//!
//! Names are derived at compile time from the TOML key, so they cannot drift apart:
//! `max_memory` gives the flag `--max-memory` and the variable `MAYFLY_MAX_MEMORY`.
//! An entry may name its flag explicitly (`domains as "domain"`), because a repeatable
//! flag reads better in the singular.

use std::ops::RangeInclusive;
use std::time::Duration;

use std::path::PathBuf;

use clap::{Arg, ArgAction, Command};

use crate::config::SETTINGS;

/// Every environment variable of Mayfly starts with this.
pub(super) const ENV_PREFIX: &str = "MAYFLY_";
/// `--config`: the one flag that is not a setting (it names the file layer).
pub(super) const CONFIG_FLAG: &str = "config";
/// The environment's `--config`.
pub(super) const CONFIG_ENV: &str = "MAYFLY_CONFIG";
/// Separates the items of a list setting in its environment variable.
pub(super) const ENV_LIST_SEPARATOR: char = ',';
const CONFIG_HELP: &str =
    "TOML configuration file (or MAYFLY_CONFIG); environment variables and flags override it";
const AFTER_HELP: &str = "Every flag except --config can also be set in the --config file under the same \
     name in snake_case (max_memory = \"256MiB\"), and in the environment as MAYFLY_ and that \
     name in upper case (MAYFLY_MAX_MEMORY=256MiB). A flag beats the environment, which beats \
     the file. See docs/configuration.md.";
/// How far a mistyped key may be from a real one to be suggested.
const SUGGESTION_DISTANCE_MAX: usize = 2;

/// One setting, as declared in the table: everything but its type and parser, which
/// live in the code the macro generates.
#[derive(Debug)]
pub(crate) struct Setting {
    /// The TOML key, and the clap argument id.
    pub(super) key: &'static str,
    /// The long flag without its dashes: the key in kebab-case unless declared otherwise.
    pub(super) flag: &'static str,
    /// `MAYFLY_` and the key in upper case.
    pub(super) env: &'static str,
    pub(super) shape: Shape,
    /// What `--help` shows after the flag (`DURATION`, `ADDR:PORT`); empty for switches.
    pub(super) value_name: &'static str,
    pub(super) default: DefaultValue,
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by the docs renderer, which runs in tests")
    )]
    pub(super) bounds: Bounds,
    /// One line for `--help`, without a final full stop (clap's style).
    pub(super) help: &'static str,
}

/// How a setting is written in each layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// One value. Flag: `--ttl 1h`; environment: the text; TOML: a string or an integer.
    Text,
    /// `true` or `false`. Flag: `--wipe-freed-memory false`; environment: a boolean word
    /// (see `parse_bool`); TOML: a boolean.
    Bool,
    /// A flag that can only switch something on (`--require-tls`, no value); the
    /// environment and TOML take a boolean, so they can also switch it off.
    Switch,
    /// A list that replaces, never extends, the list of a lower layer. Flag: repeated;
    /// environment: comma-separated; TOML: an array of strings.
    List,
}

/// What applies when no layer sets a setting.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "the texts are for the docs renderer, which runs in tests"
    )
)]
pub(super) enum DefaultValue {
    /// Parsed by the setting's own parser, so the default is held to the same bounds
    /// (a test loads every default). Shown in `--help`.
    Text(&'static str),
    /// No value: the field is an `Option`, `None` by default. The text is for the docs.
    Absent(&'static str),
    /// Computed at load time from the machine or from settings above it. The text says
    /// how, for the docs.
    Computed(&'static str),
    /// An empty list. The text says what that means, for the docs.
    Empty(&'static str),
}

/// A setting's bounds, as the docs quote them (the macro hands the same ranges to the
/// generic parsers).
#[derive(Debug, Clone)]
#[cfg_attr(
    not(test),
    expect(dead_code, reason = "read by the docs renderer, which runs in tests")
)]
pub(super) enum Bounds {
    /// A duration within the range; the parser is `parse_duration_within`.
    Duration(RangeInclusive<Duration>),
    /// A whole number within the range; the parser is `parse_count`. A range from 0 means
    /// that 0 turns the limit off.
    Count(RangeInclusive<usize>),
    /// Checked by the entry's own parser, which this text describes for the docs.
    Other(&'static str),
}

/// Declares the settings (see the module doc). One entry:
///
/// ```text
/// /// The `Config` field's doc.
/// field_name: FieldType = toml_key [as "flag-name"] {
///     shape: Text | Bool | Switch | List,
///     value: "VALUE_NAME",  // after the flag in --help; "" for a Switch
///     default: "text"                    // parsed like a user's value; FieldType = T
///            | (none "docs text")        // FieldType = Option<T>
///            | (computed "docs text", expression)  // may read the fields above
///            | (empty "docs text", |items: Vec<T>| -> FieldType),  // List only
///     bounds: Duration(range) | Count(range) | Other("docs text"),
///     parse: |text: &str| -> Result<T, String>,  // optional with Duration and Count
///     help: "the --help line",
/// }
/// ```
macro_rules! settings {
    (@setting $key:ident [$($flag:literal)?] $shape:ident $value_name:literal $default:tt
        $bounds_kind:ident($bounds:expr) $help:literal) => {
        $crate::config::table::Setting {
            key: stringify!($key),
            flag: settings!(@flag $key [$($flag)?]),
            env: {
                const KEY: &str = stringify!($key);
                const ENV: [u8; $crate::config::table::ENV_PREFIX.len() + KEY.len()] =
                    $crate::config::table::env_name(KEY);
                $crate::config::table::ascii_str(&ENV)
            },
            shape: $crate::config::table::Shape::$shape,
            value_name: $value_name,
            default: settings!(@default $default),
            bounds: $crate::config::table::Bounds::$bounds_kind($bounds),
            help: $help,
        }
    };
    (@flag $key:ident []) => {{
        const KEY: &str = stringify!($key);
        const FLAG: [u8; KEY.len()] = $crate::config::table::kebab_case(KEY);
        $crate::config::table::ascii_str(&FLAG)
    }};
    (@flag $key:ident [$flag:literal]) => {
        $flag
    };
    (@default $text:literal) => {
        $crate::config::table::DefaultValue::Text($text)
    };
    (@default (none $doc:literal)) => {
        $crate::config::table::DefaultValue::Absent($doc)
    };
    (@default (computed $doc:literal, $value:expr)) => {
        $crate::config::table::DefaultValue::Computed($doc)
    };
    (@default (empty $doc:literal, $build:expr)) => {
        $crate::config::table::DefaultValue::Empty($doc)
    };
    // An entry's own parser wins; otherwise Duration and Count bounds bring one.
    (@parser [$parse:expr] $bounds_kind:ident($bounds:expr)) => {
        $parse
    };
    (@parser [] Duration($bounds:expr)) => {
        |text: &str| $crate::config::values::parse_duration_within(text, &$bounds)
    };
    (@parser [] Count($bounds:expr)) => {
        |text: &str| $crate::config::values::parse_count(text, &$bounds)
    };
    (@resolve $layers:ident $setting:ident $parse:tt $bounds_kind:ident($bounds:expr) $text:literal) => {
        $layers.value($setting, $text, settings!(@parser $parse $bounds_kind($bounds)))?
    };
    (@resolve $layers:ident $setting:ident $parse:tt $bounds_kind:ident($bounds:expr)
        (none $doc:literal)) => {
        $layers.optional($setting, settings!(@parser $parse $bounds_kind($bounds)))?
    };
    // `$value` may read the fields declared above this one: they are local variables here.
    (@resolve $layers:ident $setting:ident $parse:tt $bounds_kind:ident($bounds:expr)
        (computed $doc:literal, $value:expr)) => {
        match $layers.optional($setting, settings!(@parser $parse $bounds_kind($bounds)))? {
            Some(value) => value,
            None => $value,
        }
    };
    (@resolve $layers:ident $setting:ident $parse:tt $bounds_kind:ident($bounds:expr)
        (empty $doc:literal, $build:expr)) => {
        ($build)($layers.list($setting, settings!(@parser $parse $bounds_kind($bounds)))?)
    };
    (
        $(
            $(#[doc = $doc:literal])*
            $field:ident: $ty:ty = $key:ident $(as $flag:literal)? {
                shape: $shape:ident,
                value: $value_name:literal,
                default: $default:tt,
                bounds: $bounds_kind:ident($bounds:expr),
                $(parse: $parse:expr,)?
                help: $help:literal $(,)?
            }
        ),* $(,)?
    ) => {
        /// The whole configuration, validated.
        #[derive(Debug, Clone)]
        pub struct Config {
            $(
                $(#[doc = $doc])*
                pub $field: $ty,
            )*
            /// The config file this came from, if any (for the log).
            pub config_file: Option<std::path::PathBuf>,
        }

        /// Every setting, in the order of the table: the order of `--help` and of
        /// docs/configuration.md.
        pub(crate) static SETTINGS: &[$crate::config::table::Setting] = &[
            $(
                settings!(@setting $key [$($flag)?] $shape $value_name $default
                    $bounds_kind($bounds) $help),
            )*
        ];

        /// Each field from the layer that sets it (flag, environment, file, default), in
        /// table order.
        fn resolve(layers: &$crate::config::layers::Layers) -> Result<Config, Error> {
            $(
                let $field: $ty = {
                    const SETTING: &$crate::config::table::Setting = &settings!(
                        @setting $key [$($flag)?] $shape $value_name $default
                        $bounds_kind($bounds) $help
                    );
                    settings!(@resolve layers SETTING [$($parse)?] $bounds_kind($bounds) $default)
                };
            )*
            Ok(Config {
                $($field,)*
                config_file: layers.config_file(),
            })
        }
    };
}
pub(super) use settings;

/// The command line: `--config`, then one argument per setting, in table order.
pub(super) fn command() -> Command {
    let config = Arg::new(CONFIG_FLAG)
        .long(CONFIG_FLAG)
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help(CONFIG_HELP);
    let command = Command::new("mayfly")
        .version(env!("CARGO_PKG_VERSION"))
        .about(env!("CARGO_PKG_DESCRIPTION"))
        .after_help(AFTER_HELP)
        .arg(config);
    SETTINGS
        .iter()
        .fold(command, |command, setting| command.arg(setting.arg()))
}

impl Setting {
    /// The clap argument. Values stay text: they are parsed later with the other layers',
    /// so a bad value gets the same message wherever it came from.
    pub(super) fn arg(&self) -> Arg {
        let arg = Arg::new(self.key).long(self.flag).help(self.help);
        if self.shape == Shape::Switch {
            return arg.action(ArgAction::SetTrue);
        }
        // Lets "--max-recipients -1" reach our parser, whose message says what is wrong.
        let arg = arg.value_name(self.value_name).allow_negative_numbers(true);
        match self.shape {
            Shape::List => arg.action(ArgAction::Append),
            Shape::Switch | Shape::Text | Shape::Bool => {
                let arg = arg.action(ArgAction::Set);
                // Shown in --help; the value used is the same text, through `Layers::value`.
                match self.default {
                    DefaultValue::Text(text) => arg.default_value(text),
                    _ => arg,
                }
            }
        }
    }

    /// `--max-memory`, as error messages name it.
    pub(super) fn flag_name(&self) -> String {
        format!("--{}", self.flag)
    }
}

/// `max_memory` -> `max-memory`, for a key of exactly `N` bytes (checked at compile time).
pub(super) const fn kebab_case<const N: usize>(key: &str) -> [u8; N] {
    let key = key.as_bytes();
    assert!(key.len() == N);
    let mut out = [0; N];
    let mut idx = 0;
    while idx < N {
        out[idx] = if key[idx] == b'_' { b'-' } else { key[idx] };
        idx += 1;
    }
    out
}

/// `max_memory` -> `MAYFLY_MAX_MEMORY`; `N` is the prefix's length plus the key's.
pub(super) const fn env_name<const N: usize>(key: &str) -> [u8; N] {
    let prefix = ENV_PREFIX.as_bytes();
    let key = key.as_bytes();
    assert!(prefix.len() + key.len() == N);
    let mut out = [0; N];
    let mut idx = 0;
    while idx < N {
        out[idx] = if idx < prefix.len() {
            prefix[idx]
        } else {
            key[idx - prefix.len()].to_ascii_uppercase()
        };
        idx += 1;
    }
    out
}

/// The bytes made by [`kebab_case`] or [`env_name`] as text. They come from an identifier,
/// so they are ASCII; anything else fails the build.
pub(super) const fn ascii_str(bytes: &'static [u8]) -> &'static str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(_) => panic!("setting names are ASCII identifiers"),
    }
}

/// The known key closest to a mistyped one, for a suggestion.
pub(super) fn closest_key<'a>(
    key: &str,
    settings: impl IntoIterator<Item = &'a Setting>,
) -> Option<&'static str> {
    let key = key.replace('-', "_").to_ascii_lowercase();
    settings
        .into_iter()
        .map(|setting| (edit_distance(&key, setting.key), setting.key))
        .filter(|(distance, _)| *distance <= SUGGESTION_DISTANCE_MAX)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// Levenshtein distance over bytes (keys are ASCII; anything else just scores as far).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (a_idx, a_byte) in a.iter().enumerate() {
        current[0] = a_idx + 1;
        for (b_idx, b_byte) in b.iter().enumerate() {
            let substitution = previous[b_idx] + usize::from(a_byte != b_byte);
            current[b_idx + 1] = substitution
                .min(previous[b_idx + 1] + 1)
                .min(current[b_idx] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_derived_at_compile_time() {
        const KEBAB: [u8; 10] = kebab_case("max_memory");
        const ENV: [u8; 17] = env_name("max_memory");
        assert_eq!(ascii_str(&KEBAB), "max-memory");
        assert_eq!(ascii_str(&ENV), "MAYFLY_MAX_MEMORY");
    }

    #[test]
    fn edit_distances() {
        let cases: &[(&str, &str, usize)] = &[
            ("", "", 0),
            ("ttl", "ttl", 0),
            ("tll", "ttl", 1),
            ("tl", "ttl", 1),
            ("ttl", "", 3),
            ("kitten", "sitting", 3),
        ];
        for (a, b, expected) in cases {
            assert_eq!(edit_distance(a, b), *expected, "{a} {b}");
            assert_eq!(edit_distance(b, a), *expected, "{b} {a}");
        }
    }
    #[test]
    fn names_follow_the_rules() {
        for setting in SETTINGS {
            let key = setting.key;
            let expected_flag = match key {
                // A repeatable flag reads better in the singular.
                "domains" => "domain".to_string(),
                _ => key.replace('_', "-"),
            };
            assert_eq!(setting.flag, expected_flag, "{key}");
            assert_eq!(
                setting.env,
                format!("{ENV_PREFIX}{}", key.to_ascii_uppercase()),
                "{key}"
            );
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{key} is snake_case"
            );
            assert!(
                !setting.help.ends_with('.'),
                "{key}: clap's style has no full stop"
            );
            assert_eq!(
                setting.value_name.is_empty(),
                setting.shape == Shape::Switch,
                "{key}: a value name unless it is a switch"
            );
        }
        let names: [fn(&Setting) -> &'static str; 3] = [
            |setting| setting.key,
            |setting| setting.flag,
            |setting| setting.env,
        ];
        for name in names {
            let mut names: Vec<&str> = SETTINGS.iter().map(name).collect();
            names.extend([CONFIG_FLAG, CONFIG_ENV]);
            let n_names = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n_names, "unique: {names:?}");
        }
    }

    #[test]
    fn switches_default_to_off_and_booleans_to_a_boolean() {
        for setting in SETTINGS {
            match (setting.shape, setting.default) {
                (Shape::Switch, DefaultValue::Text("false")) => {}
                (Shape::Switch, other) => {
                    panic!(
                        "{}: a switch can only turn on, so it defaults to false, not {other:?}",
                        setting.key
                    )
                }
                (Shape::Bool, DefaultValue::Text("true" | "false")) => {}
                (Shape::Bool, other) => panic!("{}: {other:?}", setting.key),
                (Shape::List, DefaultValue::Empty(_)) => {}
                (Shape::List, other) => {
                    panic!("{}: a list defaults to empty, not {other:?}", setting.key)
                }
                (Shape::Text, DefaultValue::Empty(_)) => {
                    panic!("{}: only lists are empty", setting.key)
                }
                (Shape::Text, _) => {}
            }
        }
    }

    #[test]
    fn closest_key_suggests_near_misses_only() {
        let cases: &[(&str, Option<&str>)] = &[
            ("tll", Some("ttl")),
            ("max-memory", Some("max_memory")),
            ("MAX_MEMORY", Some("max_memory")),
            ("max_sesions_per_ip", Some("max_sessions_per_ip")),
            ("completely_different", None),
            ("", None),
        ];
        for (typo, expected) in cases {
            assert_eq!(closest_key(typo, SETTINGS), *expected, "{typo}");
        }
    }
}
