//! Replays the fuzz campaign without a fuzzer: every input in `tests/fuzz/corpus/<target>/`
//! and `tests/fuzz/regressions/<target>/` goes through its harness in `mayfly::fuzzing`,
//! whose assertions are the targets' contracts. So CI checks every input the fuzzer found
//! interesting (and every crash it found) against the current code on each run.
//! `docs/fuzzing.md` says how the corpus was made and how to add to it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use mayfly::fuzzing::HTTP_LIMITS;
use mayfly::http::request;

/// Fewest corpus inputs a target may have: a corpus that vanished or was emptied by
/// mistake would otherwise make its test pass without checking anything.
const CORPUS_FILES_MIN: usize = 5;

/// The inputs of `target` in `tests/fuzz/<kind>/<target>/`, sorted; none when the folder
/// does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("read the corpus folder").path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
}

/// Runs `harness` on every corpus and regression input of `target` and fails with the names
/// of all inputs whose harness panicked (each panic's message is printed as it happens).
fn replay(target: &str, harness: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    assert!(
        corpus.len() >= CORPUS_FILES_MIN,
        "tests/fuzz/corpus/{target} has {} inputs",
        corpus.len()
    );
    let regressions = inputs("regressions", target);
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("read a corpus input");
        if catch_unwind(AssertUnwindSafe(|| harness(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs failed:\n{}",
        failed.len(),
        corpus.len() + regressions.len(),
        failed.join("\n")
    );
}

#[test]
fn smtp_session_corpus() {
    replay("smtp_session", mayfly::fuzzing::smtp_session);
}

#[test]
fn data_scanner_corpus() {
    replay("data_scanner", mayfly::fuzzing::data_scanner);
}

#[test]
fn http_request_corpus() {
    replay("http_request", mayfly::fuzzing::http_request);
}

#[test]
fn websocket_corpus() {
    replay("websocket", mayfly::fuzzing::websocket);
}

/// A finding of the campaign, fixed: a head longer than `head_bytes_max` with a byte
/// httparse rejects past that point was a 400 (a bad header byte) or a 505 (a bad version)
/// when it arrived in one read, but a 431 when the first read ended past the limit and
/// before the bad byte. `http::request::parse` now looks at no more than the first
/// `head_bytes_max + 1` bytes of a head, so the verdict is 431 however the bytes arrive.
#[test]
fn http_verdict_past_the_head_limit_does_not_depend_on_the_split() {
    let status = |buf: &[u8]| match request::parse(buf, &HTTP_LIMITS) {
        Err(response) => response.status,
        Ok(parsed) => panic!("not refused: {parsed:?}"),
    };
    for name in [
        "verdict-depends-on-split-past-head-limit",
        "version-verdict-depends-on-split-past-head-limit",
    ] {
        let input = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fuzz/regressions/http_request")
                .join(name),
        )
        .expect("read the regression input");
        assert_eq!(status(&input), 431, "{name} read whole");
        let first_read = &input[..HTTP_LIMITS.head_bytes_max + 1];
        assert_eq!(status(first_read), 431, "{name} split past the limit");
    }
}
