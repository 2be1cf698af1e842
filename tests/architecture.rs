//! The shape of the code, checked: the invariants of docs/ARCHITECTURE.md that a reader
//! would otherwise have to trust. Reads the sources; starts nothing.
//!
//! - The modules under `src/` depend on each other without a cycle, and the dependency
//!   arrows the design fixes hold (the store and mail know no protocol, no socket code, no
//!   executor; `net` never imports `runtime`; the protocols do no IO).
//! - Every file under `src/` is short enough to hold in one's head (`FILE_LINES_MAX`), or
//!   is listed in `LONG_FILES` with the reason.
//! - docs/ARCHITECTURE.md names every file under `src/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lines a source file may have, its tests included.
const FILE_LINES_MAX: usize = 900;
/// Files allowed to be longer, and why (none today: `fuzzing.rs`, the one that was, is now
/// a folder with a file per fuzz target). A slice, so an entry can be added without
/// counting.
const LONG_FILES: &[(&str, &str)] = &[];
/// Top-level modules that must not depend on these others (directly; indirect edges are
/// caught by the cycle check or by listing them too).
const FORBIDDEN: [(&str, &[&str]); 15] = [
    (
        "partition",
        &[
            "http", "net", "runtime", "smtp", "store", "watch", "mail", "journal", "auth",
        ],
    ),
    (
        "spam",
        &[
            "http", "net", "runtime", "smtp", "store", "watch", "mail", "journal", "imap", "pop3",
        ],
    ),
    (
        "auth",
        &[
            "http", "net", "runtime", "smtp", "store", "watch", "mail", "journal",
        ],
    ),
    (
        "imap",
        &["http", "net", "runtime", "watch", "journal", "pop3", "smtp"],
    ),
    (
        "pop3",
        &["http", "net", "runtime", "watch", "journal", "mail", "imap"],
    ),
    (
        "mailbox",
        &["http", "net", "runtime", "smtp", "pop3", "imap"],
    ),
    (
        "journal",
        &["http", "net", "runtime", "smtp", "watch", "mail"],
    ),
    (
        "store",
        &["http", "net", "runtime", "mail", "smtp", "watch", "metrics"],
    ),
    ("mail", &["http", "net", "runtime", "smtp", "watch"]),
    (
        "smtp",
        &["http", "net", "runtime", "store", "mail", "watch"],
    ),
    ("http", &["net", "runtime", "smtp", "watch"]),
    ("watch", &["net", "runtime", "smtp"]),
    (
        "webhook",
        &[
            "http", "net", "runtime", "smtp", "watch", "mail", "journal", "imap", "pop3",
        ],
    ),
    ("net", &["runtime"]),
    (
        "token",
        &[
            "http", "net", "runtime", "smtp", "store", "mail", "watch", "pop3", "imap",
        ],
    ),
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, relative to it.
fn source_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("src is readable")
            .map(|entry| entry.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path.strip_prefix(base).expect("under src").to_path_buf());
            }
        }
    }
    let mut files = Vec::new();
    walk(&src_dir(), &src_dir(), &mut files);
    files
}

/// The top-level module a file belongs to (`store/shard/mod.rs` -> `store`); `None` for
/// the crate roots.
fn module_of(file: &Path) -> Option<String> {
    let first = file.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// Module -> the other top-level modules it names as `crate::name`.
fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in source_files() {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(src_dir().join(&file)).expect("readable");
        let deps = graph.entry(module.clone()).or_default();
        for (idx, _) in text.match_indices("crate::") {
            let name: String = text[idx + "crate::".len()..]
                .chars()
                .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
                .collect();
            if !name.is_empty() && name != module {
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn modules_depend_on_each_other_without_a_cycle() {
    let graph = dependency_graph();
    // Depth-first search with colours; report the first cycle as a path.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) {
        match state.get(node) {
            Some(2) => return,
            Some(1) => {
                path.push(node.to_string());
                panic!("import cycle: {}", path.join(" -> "));
            }
            _ => {}
        }
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, state, path);
        }
        path.pop();
        state.insert(node.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        visit(node, &graph, &mut state, &mut Vec::new());
    }
}

#[test]
fn dependency_arrows_point_the_way_the_design_says() {
    let graph = dependency_graph();
    let mut violations = Vec::new();
    for (module, forbidden) in FORBIDDEN {
        let deps = graph.get(module).cloned().unwrap_or_default();
        for dep in forbidden {
            if deps.contains(*dep) {
                violations.push(format!("{module} imports {dep}"));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:?}; graph: {graph:#?}");
    // Only `net` may name glommio's sockets.
    for file in source_files() {
        let text = std::fs::read_to_string(src_dir().join(&file)).expect("readable");
        let in_net = file.starts_with("net");
        if !in_net && text.contains("glommio::net") {
            violations.push(format!("{} uses glommio::net", file.display()));
        }
    }
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn files_are_short_enough_to_read() {
    let mut too_long = Vec::new();
    for file in source_files() {
        let text = std::fs::read_to_string(src_dir().join(&file)).expect("readable");
        let n_lines = text.lines().count();
        let name = file.to_string_lossy().replace('\\', "/");
        let excused = LONG_FILES.iter().any(|(long, _)| *long == name);
        if n_lines > FILE_LINES_MAX && !excused {
            too_long.push(format!("{name}: {n_lines} lines"));
        }
    }
    assert!(
        too_long.is_empty(),
        "over {FILE_LINES_MAX} lines (split it, or list it in LONG_FILES with the reason): {too_long:?}"
    );
}

#[test]
fn the_code_map_names_every_file() {
    let architecture =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md"))
            .expect("docs/ARCHITECTURE.md");
    let missing: Vec<String> = source_files()
        .iter()
        .map(|file| file.to_string_lossy().replace('\\', "/"))
        .filter(|name| !architecture.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md does not name these files (as `path` relative to src/): {missing:?}"
    );
}
