//! The Summary table of docs/configuration.md, rendered from the settings table, and the
//! tests that keep the operator's docs in step with the code: the rendered table must be
//! the one in the file (`MAYFLY_WRITE_DOCS=1 cargo test --lib config` rewrites it), every
//! setting needs its own section, and the shipped example file must load and show every key.

use crate::config::SETTINGS;
use crate::config::table::{Bounds, CONFIG_ENV, CONFIG_FLAG, DefaultValue, Setting, Shape};
use crate::config::values::format_duration;

/// The line before the generated table in docs/configuration.md.
pub(super) const TABLE_BEGIN: &str = "<!-- Generated from the settings table in src/config/mod.rs \
     by `MAYFLY_WRITE_DOCS=1 cargo test --lib config`; edit the table there, not here. -->";
/// The line after it.
pub(super) const TABLE_END: &str = "<!-- End of the generated table. -->";

/// The Summary table in Markdown, one row per setting in table order, after `--config`.
/// Every line ends with a newline.
pub(super) fn summary_table() -> String {
    let mut table = String::from(
        "| Flag | Environment variable | TOML key | Default | Unit or form |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    table.push_str(&format!(
        "| `--{CONFIG_FLAG} FILE` | `{CONFIG_ENV}` | (none) | no file | path |\n"
    ));
    for setting in SETTINGS {
        table.push_str(&format!(
            "| {} | {} | `{}` | {} | {} |\n",
            flag_cell(setting),
            env_cell(setting),
            setting.key,
            default_cell(setting),
            setting.bounds.describe()
        ));
    }
    table
}

fn flag_cell(setting: &Setting) -> String {
    let flag = setting.flag_name();
    match setting.shape {
        Shape::Switch => format!("`{flag}`"),
        Shape::Text | Shape::Bool => format!("`{flag} {}`", setting.value_name),
        Shape::List => format!("`{flag} {}` (repeatable)", setting.value_name),
    }
}

fn env_cell(setting: &Setting) -> String {
    match setting.shape {
        Shape::List => format!("`{}` (comma-separated)", setting.env),
        Shape::Text | Shape::Bool | Shape::Switch => format!("`{}`", setting.env),
    }
}

fn default_cell(setting: &Setting) -> String {
    match (setting.default, &setting.bounds, setting.shape) {
        (DefaultValue::Text("false"), _, Shape::Bool | Shape::Switch) => "off (`false`)".into(),
        (DefaultValue::Text("true"), _, Shape::Bool | Shape::Switch) => "on (`true`)".into(),
        (DefaultValue::Text("0"), Bounds::Count(range), _) if *range.start() == 0 => {
            "0 (off)".into()
        }
        (DefaultValue::Text(text), _, _) => text.into(),
        (
            DefaultValue::Absent(doc) | DefaultValue::Computed(doc) | DefaultValue::Empty(doc),
            _,
            _,
        ) => doc.into(),
    }
}

impl Bounds {
    /// The "Unit or form" column of the docs: `duration, 1ms to 1d`, `0 (off) to 1000`.
    pub(super) fn describe(&self) -> String {
        match self {
            Bounds::Duration(range) => format!(
                "duration, {} to {}",
                format_duration(*range.start()),
                format_duration(*range.end())
            ),
            Bounds::Count(range) if *range.start() == 0 => format!("0 (off) to {}", range.end()),
            Bounds::Count(range) => format!("{} to {}", range.start(), range.end()),
            Bounds::Other(text) => (*text).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::machine::HOSTNAME_FALLBACK;
    use crate::config::table::command;
    use crate::config::tests::{TempFile, load};

    /// The example shipped for operators; a test proves it loads.
    const EXAMPLE_TOML: &str = include_str!("../../docs/mayfly.example.toml");
    /// The operator's reference; tests prove it mentions every flag, variable and key.
    const CONFIGURATION_MD: &str = include_str!("../../docs/configuration.md");
    /// Set to 1 to rewrite the generated table in docs/configuration.md.
    const WRITE_DOCS_ENV: &str = "MAYFLY_WRITE_DOCS";
    const REGENERATE: &str = "MAYFLY_WRITE_DOCS=1 cargo test --lib config";

    fn configuration_md_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md")
    }

    /// The file's text before, inside and after the generated table's markers.
    fn split_at_markers(text: &str) -> (&str, &str, &str) {
        let begin = format!("{TABLE_BEGIN}\n");
        let Some((before, rest)) = text.split_once(&begin) else {
            panic!("docs/configuration.md lacks the line {TABLE_BEGIN:?}");
        };
        let Some((table, after)) = rest.split_once(TABLE_END) else {
            panic!("docs/configuration.md lacks the line {TABLE_END:?}");
        };
        (before, table, after)
    }

    #[test]
    fn summary_table_in_configuration_md_is_generated() {
        let path = configuration_md_path();
        let text = std::fs::read_to_string(&path).expect("read docs/configuration.md");
        let (before, table, after) = split_at_markers(&text);
        let expected = summary_table();
        if table == expected {
            return;
        }
        if std::env::var_os(WRITE_DOCS_ENV).is_some_and(|value| value == "1") {
            let text = format!("{before}{TABLE_BEGIN}\n{expected}{TABLE_END}{after}");
            std::fs::write(&path, text).expect("write docs/configuration.md");
            return;
        }
        panic!(
            "the Summary table in docs/configuration.md is not the one the settings table \
             gives (- in the file, + generated):\n{}\nregenerate it with: {REGENERATE}",
            line_diff(table, &expected)
        );
    }

    #[test]
    fn summary_table_has_a_row_per_setting() {
        let table = summary_table();
        assert_eq!(table.lines().count(), 2 + 1 + SETTINGS.len());
        for line in table.lines() {
            assert_eq!(line.matches(" | ").count(), 4, "five cells: {line}");
        }
        assert!(table.contains(
            "| `--max-memory SIZE` | `MAYFLY_MAX_MEMORY` | `max_memory` | 256MiB | \
             size, at least 1MiB per core |\n"
        ));
        assert!(table.contains(
            "| `--domain NAME` (repeatable) | `MAYFLY_DOMAINS` (comma-separated) | `domains` | \
             empty: accept every domain | domain names |\n"
        ));
        assert!(table.contains(
            "| `--log-client-ip` | `MAYFLY_LOG_CLIENT_IP` | `log_client_ip` | off (`false`) |"
        ));
        assert!(table.contains("| `--http-rate-limit N` | `MAYFLY_HTTP_RATE_LIMIT` | `http_rate_limit` | 0 (off) | 0 (off) to 1000000 |\n"));
        assert!(table.contains("| 10m | duration, 1ms to 1d |\n"), "{table}");
    }

    #[test]
    fn line_diff_marks_changed_lines() {
        assert_eq!(line_diff("a\nb\nc\n", "a\nb\nc\n"), "");
        assert_eq!(line_diff("a\nb\nc\n", "a\nB\nc\n"), "- b\n+ B\n");
        assert_eq!(line_diff("a\nc\n", "a\nb\nc\n"), "+ b\n");
        assert_eq!(line_diff("a\nb\n", "b\n"), "- a\n");
    }

    #[test]
    fn every_setting_has_a_section_and_is_named() {
        for arg in command().get_arguments() {
            if let Some(long) = arg.get_long() {
                let flag = format!("`--{long}");
                assert!(
                    CONFIGURATION_MD.contains(&flag),
                    "configuration.md lacks {flag}"
                );
            }
        }
        for setting in SETTINGS {
            let heading = format!("### `{}", setting.flag_name());
            let key = format!("`{}`", setting.key);
            let env = format!("`{}`", setting.env);
            for expected in [&heading, &key, &env] {
                assert!(
                    CONFIGURATION_MD.contains(expected.as_str()),
                    "configuration.md lacks {expected}"
                );
            }
        }
        assert!(CONFIGURATION_MD.contains(HOSTNAME_FALLBACK));
        assert!(CONFIGURATION_MD.contains(CONFIG_ENV));
        assert!(
            CONFIGURATION_MD.contains(&format!("```toml\n{EXAMPLE_TOML}```\n")),
            "configuration.md must embed docs/mayfly.example.toml verbatim"
        );
    }

    #[test]
    fn example_file_loads_and_sets_every_key() {
        let file = TempFile::new(EXAMPLE_TOML);
        let config = load(&["--config", file.path()]).expect("docs/mayfly.example.toml loads");
        assert!(!config.domains.is_catch_all());
        for setting in SETTINGS {
            let key = setting.key;
            let present = EXAMPLE_TOML.lines().any(|line| {
                let line = line.strip_prefix("# ").unwrap_or(line);
                line.starts_with(&format!("{key} ="))
            });
            assert!(present, "docs/mayfly.example.toml does not show '{key}'");
        }
    }

    /// The lines only in `old` (`- `) and only in `new` (`+ `), in order, from a longest
    /// common subsequence: small tables only (quadratic).
    fn line_diff(old: &str, new: &str) -> String {
        let old: Vec<&str> = old.lines().collect();
        let new: Vec<&str> = new.lines().collect();
        // common[i][j]: length of the LCS of old[i..] and new[j..].
        let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
        for old_idx in (0..old.len()).rev() {
            for new_idx in (0..new.len()).rev() {
                common[old_idx][new_idx] = if old[old_idx] == new[new_idx] {
                    common[old_idx + 1][new_idx + 1] + 1
                } else {
                    common[old_idx + 1][new_idx].max(common[old_idx][new_idx + 1])
                };
            }
        }
        let (mut old_idx, mut new_idx) = (0, 0);
        let mut diff = String::new();
        while old_idx < old.len() || new_idx < new.len() {
            if old_idx < old.len() && new_idx < new.len() && old[old_idx] == new[new_idx] {
                old_idx += 1;
                new_idx += 1;
            } else if new_idx == new.len()
                || (old_idx < old.len()
                    && common[old_idx + 1][new_idx] >= common[old_idx][new_idx + 1])
            {
                diff.push_str(&format!("- {}\n", old[old_idx]));
                old_idx += 1;
            } else {
                diff.push_str(&format!("+ {}\n", new[new_idx]));
                new_idx += 1;
            }
        }
        diff
    }
}
