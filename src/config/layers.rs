//! The layers a setting can come from, and which one wins: a flag, then an environment
//! variable, then the `--config` file, then the default.
//!
//! `Layers` only picks the winning text and remembers where it came from; the generated
//! `resolve` (see `table.rs`) hands it each setting's parser, and `Layers` turns a parse
//! failure into an error that points at the flag, the variable, or the file's key and line.
//! A lower layer's value is never parsed once a higher layer sets the setting, so a flag
//! can override a bad value in the file.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap::ArgMatches;
use clap::parser::ValueSource;

use crate::config::file::ConfigFile;
use crate::config::table::{CONFIG_ENV, CONFIG_FLAG, ENV_LIST_SEPARATOR, Setting, Shape};
use crate::config::{Error, SETTINGS};

/// The command line, the environment and the file, before they are merged.
pub(super) struct Layers {
    matches: ArgMatches,
    env: Env,
    file: Option<ConfigFile>,
}

/// The environment variables that name a setting (or `--config`); every other variable,
/// `MAYFLY_*` or not, is left alone. An empty variable counts as unset, so a deployment
/// template that leaves `MAYFLY_TTL=` blank means "not set here" rather than an error.
#[derive(Debug, Default)]
pub(super) struct Env {
    vars: Vec<(&'static str, OsString)>,
}

/// Where a setting's text came from, so that an error can point there.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// Given on the command line.
    Flag,
    /// From the setting's environment variable.
    Env,
    /// From the config file, at this byte offset.
    File { offset: usize },
    /// The built-in default (which a test proves valid).
    Default,
}

/// One piece of text for a setting (a scalar's value, or one item of a list).
struct Raw<'a> {
    text: &'a str,
    origin: Origin,
}

impl Layers {
    pub(super) fn new(matches: ArgMatches, env: Env, file: Option<ConfigFile>) -> Layers {
        Layers { matches, env, file }
    }

    /// The file named by `--config`, or else by `MAYFLY_CONFIG`.
    pub(super) fn config_path(matches: &ArgMatches, env: &Env) -> Option<PathBuf> {
        if let Some(path) = matches.get_one::<PathBuf>(CONFIG_FLAG) {
            return Some(path.clone());
        }
        env.get(CONFIG_ENV).map(PathBuf::from)
    }

    /// The file this configuration came from, for `Config::config_file`.
    pub(super) fn config_file(&self) -> Option<PathBuf> {
        self.file.as_ref().map(|file| file.path.clone())
    }

    /// A one-value setting with a default text, parsed by `parse`.
    ///
    /// A default that fails to parse (a machine-dependent bound) is reported against the
    /// flag: that is where the operator can fix it.
    pub(super) fn value<T>(
        &self,
        setting: &'static Setting,
        default: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, Error> {
        let raw = match self.winner(setting)? {
            Some(mut raws) => one(setting, &mut raws),
            None => Raw {
                text: default,
                origin: Origin::Default,
            },
        };
        parse(raw.text).map_err(|reason| self.invalid(setting, &raw, reason))
    }

    /// A one-value setting without a default text: `None` when no layer sets it.
    pub(super) fn optional<T>(
        &self,
        setting: &'static Setting,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Error> {
        let Some(mut raws) = self.winner(setting)? else {
            return Ok(None);
        };
        let raw = one(setting, &mut raws);
        parse(raw.text)
            .map(Some)
            .map_err(|reason| self.invalid(setting, &raw, reason))
    }

    /// A list setting, each item parsed by `parse`; empty when no layer sets it. The
    /// winning layer's list replaces the lower layers' lists as a whole.
    pub(super) fn list<T>(
        &self,
        setting: &'static Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, Error> {
        let raws = self.winner(setting)?.unwrap_or_default();
        raws.iter()
            .map(|raw| parse(raw.text).map_err(|reason| self.invalid(setting, raw, reason)))
            .collect()
    }

    /// The text the highest layer that sets `setting` gives it, or `None`.
    fn winner(&self, setting: &'static Setting) -> Result<Option<Vec<Raw<'_>>>, Error> {
        if self.matches.value_source(setting.key) == Some(ValueSource::CommandLine) {
            let raws = match setting.shape {
                Shape::Switch => vec![Raw {
                    text: "true",
                    origin: Origin::Flag,
                }],
                Shape::Text | Shape::Bool | Shape::List => self
                    .matches
                    .get_many::<String>(setting.key)
                    .into_iter()
                    .flatten()
                    .map(|text| Raw {
                        text,
                        origin: Origin::Flag,
                    })
                    .collect(),
            };
            return Ok(Some(raws));
        }
        if let Some(value) = self.env.get(setting.env) {
            let Some(text) = value.to_str() else {
                return Err(Error::InvalidEnv {
                    var: setting.env,
                    value: value.to_string_lossy().into_owned(),
                    reason: "not UTF-8".to_string(),
                });
            };
            let raws = match setting.shape {
                Shape::List => text
                    .split(ENV_LIST_SEPARATOR)
                    .map(|item| Raw {
                        text: item.trim(),
                        origin: Origin::Env,
                    })
                    .collect(),
                Shape::Text | Shape::Bool | Shape::Switch => vec![Raw {
                    text,
                    origin: Origin::Env,
                }],
            };
            return Ok(Some(raws));
        }
        let file_items = self.file.as_ref().and_then(|file| file.items(setting.key));
        Ok(file_items.map(|items| {
            items
                .iter()
                .map(|item| Raw {
                    text: &item.text,
                    origin: Origin::File {
                        offset: item.offset,
                    },
                })
                .collect()
        }))
    }

    fn invalid(&self, setting: &'static Setting, raw: &Raw<'_>, reason: String) -> Error {
        match (raw.origin, &self.file) {
            (Origin::File { offset }, Some(file)) => Error::InvalidKey {
                path: file.path.clone(),
                key: setting.key,
                line: file.line_of(offset),
                value: raw.text.to_string(),
                reason,
            },
            (Origin::Env, _) => Error::InvalidEnv {
                var: setting.env,
                value: raw.text.to_string(),
                reason,
            },
            (Origin::Flag | Origin::Default | Origin::File { .. }, _) => Error::InvalidFlag {
                flag: setting.flag_name(),
                value: raw.text.to_string(),
                reason,
            },
        }
    }
}

/// The single value of a one-value setting. Every layer gives exactly one (clap refuses
/// a repeated flag); should one ever give none, the setting reads as empty text, which
/// every parser refuses with a message.
fn one<'a>(setting: &Setting, raws: &mut Vec<Raw<'a>>) -> Raw<'a> {
    debug_assert_eq!(raws.len(), 1, "{} has one value", setting.key);
    raws.pop().unwrap_or(Raw {
        text: "",
        origin: Origin::Default,
    })
}

impl Env {
    /// Keeps the variables that name a setting or `--config`, and are not empty.
    pub(super) fn collect(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Env {
        let known = |name: &OsStr| {
            let names = SETTINGS.iter().map(|setting| setting.env);
            std::iter::once(CONFIG_ENV)
                .chain(names)
                .find(|known| OsStr::new(known) == name)
        };
        let vars = vars
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .filter_map(|(name, value)| known(&name).map(|name| (name, value)))
            .collect();
        Env { vars }
    }

    fn get(&self, name: &str) -> Option<&OsStr> {
        let mut matching = self.vars.iter().filter(|(known, _)| *known == name);
        matching.next().map(|(_, value)| value.as_os_str())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::tests::{TempFile, error_text, load_env};

    #[test]
    fn environment_sets_every_kind_of_setting() {
        let config = load_env(
            &[],
            &[
                ("MAYFLY_TTL", "10m"),
                ("MAYFLY_MAX_MEMORY", "64MiB"),
                ("MAYFLY_MAX_RECIPIENTS", "7"),
                ("MAYFLY_SMTP", "0.0.0.0:2526"),
                ("MAYFLY_DOMAINS", "a.test, *.b.test ,c.test"),
                ("MAYFLY_CLIENT_LIMIT_EXEMPT", "10.0.0.0/8,::1"),
                ("MAYFLY_LOG_CLIENT_IP", "yes"),
                ("MAYFLY_WIPE_FREED_MEMORY", "OFF"),
                ("MAYFLY_HOSTNAME", "mx.env.test"),
                ("MAYFLY_CORES", "1"),
                ("MAYFLY_TLS_SELF_SIGNED", "1"),
                ("MAYFLY_SMTPS", "127.0.0.1:0"),
            ],
        )
        .expect("environment loads");
        assert_eq!(config.ttl, Duration::from_secs(600));
        assert_eq!(config.memory_bytes_max, 64 << 20);
        assert_eq!(config.recipients_max, 7);
        assert_eq!(config.smtp_addr.to_string(), "0.0.0.0:2526");
        assert!(config.domains.accepts("a.test"));
        assert!(config.domains.accepts("x.b.test"));
        assert!(config.domains.accepts("c.test"));
        assert!(!config.domains.accepts("d.test"));
        assert_eq!(config.domains.first(), Some("a.test"));
        assert_eq!(config.client_limit_exempt.len(), 2);
        assert!(config.log_client_ip);
        assert!(!config.wipe_freed_memory);
        assert_eq!(config.hostname, "mx.env.test");
        assert_eq!(config.cores, 1);
        assert!(config.tls_self_signed);
        assert_eq!(config.smtps_addr.map(|addr| addr.port()), Some(0));
    }

    #[test]
    fn flag_beats_environment_beats_file_beats_default() {
        let toml = "ttl = \"2h\"\nmax_recipients = 20\nmax_messages_per_inbox = 30\n\
                    domains = [\"file.test\"]\nlog_client_ip = true\nrequire_tls = true\n\
                    tls_self_signed = true\n";
        let file = TempFile::new(toml);
        let env = [
            ("MAYFLY_TTL", "3h"),
            ("MAYFLY_MAX_RECIPIENTS", "21"),
            ("MAYFLY_DOMAINS", "env.test"),
            ("MAYFLY_LOG_CLIENT_IP", "false"),
            ("MAYFLY_REQUIRE_TLS", "no"),
        ];
        let config =
            load_env(&["--config", file.path(), "--ttl", "4h"], &env).expect("all layers load");
        assert_eq!(config.ttl, Duration::from_secs(4 * 3_600), "flag over env");
        assert_eq!(config.recipients_max, 21, "env over file");
        assert_eq!(config.inbox_messages_max, 30, "file over default");
        assert_eq!(
            config.smtp_sessions_per_core_max,
            super::super::machine::smtp_sessions_default(config.memory_bytes_max, config.cores),
            "default"
        );
        assert!(
            config.domains.accepts("env.test"),
            "env list replaces file list"
        );
        assert!(!config.domains.accepts("file.test"));
        assert!(
            !config.log_client_ip,
            "env switches off what the file switched on"
        );
        assert!(!config.tls_required);
        assert!(config.tls_self_signed, "file, no env");

        // The on-only flag still beats an environment that says off.
        let config =
            load_env(&["--log-client-ip", "--domain", "flag.test"], &env).expect("flags over env");
        assert!(config.log_client_ip);
        assert!(config.domains.accepts("flag.test"));
        assert!(
            !config.domains.accepts("env.test"),
            "flags replace the env list"
        );
    }

    #[test]
    fn config_file_from_the_environment() {
        let file = TempFile::new("ttl = \"5m\"\n");
        let config = load_env(&[], &[("MAYFLY_CONFIG", file.path())]).expect("MAYFLY_CONFIG");
        assert_eq!(config.ttl, Duration::from_secs(300));
        assert_eq!(
            config.config_file.as_deref(),
            Some(std::path::Path::new(file.path()))
        );
        // --config wins over MAYFLY_CONFIG.
        let other = TempFile::new("ttl = \"6m\"\n");
        let config = load_env(
            &["--config", other.path()],
            &[("MAYFLY_CONFIG", file.path())],
        )
        .expect("--config");
        assert_eq!(config.ttl, Duration::from_secs(360));
        let missing = "/nonexistent/mayfly-config-test.toml";
        assert_eq!(
            error_text(load_env(&[], &[("MAYFLY_CONFIG", missing)])),
            format!("cannot read config file {missing}: No such file or directory")
        );
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "MAYFLY_TTL",
                "abc",
                "invalid value 'abc' for MAYFLY_TTL: expected a duration such as 500ms, 30s, 10m, 1h or 1h30m",
            ),
            (
                "MAYFLY_MAX_RECIPIENTS",
                "0",
                "invalid value '0' for MAYFLY_MAX_RECIPIENTS: expected a whole number from 1 to 1000",
            ),
            (
                "MAYFLY_REQUIRE_TLS",
                "maybe",
                "invalid value 'maybe' for MAYFLY_REQUIRE_TLS: expected true or false (also 1/0, yes/no, on/off)",
            ),
            (
                "MAYFLY_DOMAINS",
                "a.test,,b.test",
                "invalid value '' for MAYFLY_DOMAINS: empty domain name",
            ),
            (
                "MAYFLY_DOMAINS",
                "a.test,user@b.test",
                "invalid value 'user@b.test' for MAYFLY_DOMAINS: '@' is not allowed",
            ),
            (
                "MAYFLY_CLIENT_LIMIT_EXEMPT",
                "10.0.0.0/8,10.0.0.1/8",
                "invalid value '10.0.0.1/8' for MAYFLY_CLIENT_LIMIT_EXEMPT: 10.0.0.1/8 has bits set",
            ),
            (
                "MAYFLY_SMTP",
                "localhost:25",
                "invalid value 'localhost:25' for MAYFLY_SMTP: expected an IP address and port",
            ),
            (
                "MAYFLY_HOSTNAME",
                "mx\r\n250 x",
                "invalid value 'mx\\r\\n250 x' for MAYFLY_HOSTNAME: ",
            ),
        ];
        for (name, value, expected) in cases {
            let text = error_text(load_env(&[], &[(name, value)]));
            assert!(text.starts_with(expected), "{name}={value:?}: {text}");
        }
        // A flag overrides a bad variable before it is parsed.
        let config = load_env(&["--ttl", "1m"], &[("MAYFLY_TTL", "abc")]).expect("flag wins");
        assert_eq!(config.ttl, Duration::from_secs(60));
        // A bad variable is reported even when the file has a good value: it wins.
        let file = TempFile::new("ttl = \"1h\"\n");
        let text = error_text(load_env(
            &["--config", file.path()],
            &[("MAYFLY_TTL", "abc")],
        ));
        assert!(
            text.starts_with("invalid value 'abc' for MAYFLY_TTL"),
            "{text}"
        );
    }

    #[test]
    fn not_utf8_is_an_error_naming_the_variable() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;

        let env = [(
            OsString::from("MAYFLY_LOG_LEVEL"),
            OsString::from_vec(b"info\xff".to_vec()),
        )];
        let err = crate::config::Config::load_from(["mayfly"], env).expect_err("not UTF-8");
        assert_eq!(
            err.to_string(),
            "invalid value 'info\u{fffd}' for MAYFLY_LOG_LEVEL: not UTF-8"
        );
        // A path need not be UTF-8: MAYFLY_CONFIG is taken as bytes.
        let env = [(
            OsString::from("MAYFLY_CONFIG"),
            OsString::from_vec(b"/nonexistent/\xff.toml".to_vec()),
        )];
        let err = crate::config::Config::load_from(["mayfly"], env).expect_err("missing file");
        assert!(
            err.to_string()
                .starts_with("cannot read config file /nonexistent/")
        );
    }

    #[test]
    fn unknown_empty_and_unrelated_variables_are_ignored() {
        let env = [
            ("MAYFLY_SKIP_BROWSER", "1"),
            ("MAYFLY_BIN", "/usr/bin/false"),
            ("MAYFLY_TLL", "not even a duration"),
            ("MAYFLY_TTL", ""),
            ("MAYFLY_DOMAINS", ""),
            ("mayfly_ttl", "2h"),
            ("TTL", "2h"),
            ("RUST_LOG", "trace"),
        ];
        let config = load_env(&[], &env).expect("nothing here is a setting");
        assert_eq!(config.ttl, Duration::from_secs(3_600));
        assert!(config.domains.is_catch_all());
        assert_eq!(config.log_level, "info");
        // An empty variable does not hide the file's value either.
        let file = TempFile::new("ttl = \"2h\"\n");
        let config =
            load_env(&["--config", file.path()], &[("MAYFLY_TTL", "")]).expect("file value stays");
        assert_eq!(config.ttl, Duration::from_secs(7_200));
    }
}
