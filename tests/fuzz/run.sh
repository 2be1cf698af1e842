#!/usr/bin/env bash
# Runs a bounded fuzz campaign with cargo-fuzz (libFuzzer) on the stable toolchain, then
# minimises each target's corpus into tests/fuzz/corpus/<target>/.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 600; the targets default to all six. One fuzzer process
# at a time, at low priority (the machine is shared). Needs `cargo install cargo-fuzz`.
# RUSTC_BOOTSTRAP=1 lets the stable compiler take the -Z flags cargo-fuzz passes
# (sanitizer coverage and AddressSanitizer); no nightly toolchain is used.
#
# New inputs go to tests/fuzz/work/<target>/ (not committed); the committed corpus and the
# regression inputs are read as seeds, then the corpus is replaced by the minimised union
# of the work folder and itself. Crashes land in
# tests/fuzz/artifacts/<target>/: copy each one into tests/fuzz/regressions/<target>/ with
# a name that says what it found, so tests/fuzz_corpus.rs replays it on every CI run.
# Each target's libFuzzer summary is appended to tests/fuzz/work/campaign.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

secs_per_target=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(smtp_session data_scanner http_request websocket pop3_session imap_session)
fi
# Largest input the fuzzer makes, per target: the HTTP parser's head limit is 8 KiB, so its
# inputs must be able to pass it; elsewhere libFuzzer's default of 4 KiB reaches every
# limit (the harnesses expand short inputs into long bodies and frames).
max_len() {
    case "$1" in
        http_request) echo 12288 ;;
        *) echo 4096 ;;
    esac
}
# libFuzzer grows its length limit slowly (a 10-minute run reached 405 bytes); the HTTP
# target starts at full length so heads past 8 KiB are tried from the first minute, and
# the IMAP one so whole sessions (login, SELECT, a few commands: 790 bytes after its first
# 10 minutes) fit with room to spare.
len_control() {
    case "$1" in
        http_request | imap_session) echo 0 ;;
        *) echo 100 ;;
    esac
}
# Committed inputs stay small (the whole corpus is replayed by cargo test in debug builds).
input_bytes_max=65536

export RUSTC_BOOTSTRAP=1
# cargo-fuzz passes its flags in RUSTFLAGS, which replaces .cargo/config.toml's; the
# sanitizer needs ammonia's unstable API as the server does (src/mail/sanitize/mod.rs).
export RUSTFLAGS="${RUSTFLAGS:-} --cfg ammonia_unstable"
fuzz_dir=tests/fuzz
log=$fuzz_dir/work/campaign.log
mkdir -p "$fuzz_dir/work"
# Fuzz the dependency versions that ship: start from the server's lock file every time
# (cargo then only adds libfuzzer-sys), so this lock is derived and not committed.
cp Cargo.lock "$fuzz_dir/Cargo.lock"
nice -n 10 cargo fuzz build --fuzz-dir "$fuzz_dir"

for target in "${targets[@]}"; do
    work=$fuzz_dir/work/$target
    corpus=$fuzz_dir/corpus/$target
    mkdir -p "$work" "$corpus"
    echo "== $target: ${secs_per_target}s, started $(date -u +%FT%TZ)" | tee -a "$log"
    # -print_final_stats=1 prints the executions run; the summary lines go to the log.
    # Inputs that once failed are seeds too: the code around them is where bugs were.
    seeds=("$corpus")
    if [ -d "$fuzz_dir/regressions/$target" ]; then
        seeds+=("$fuzz_dir/regressions/$target")
    fi
    nice -n 10 cargo fuzz run --fuzz-dir "$fuzz_dir" "$target" "$work" "${seeds[@]}" -- \
        -max_total_time="$secs_per_target" -max_len="$(max_len "$target")" \
        -len_control="$(len_control "$target")" -timeout=10 -print_final_stats=1 2>&1 |
        tee "$fuzz_dir/work/$target.out" |
        grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE) |stat::|==[0-9]+==|SUMMARY|Done [0-9]+ runs)' |
        tee -a "$log" || true

    # Minimise into an empty folder: the smallest set of inputs (libFuzzer's set-cover
    # merge) that keeps every feature (edges and their hit counts) that the work and the
    # committed corpora reach; much smaller than `cargo fuzz cmin`'s greedy merge.
    minimised=$(mktemp -d)
    nice -n 10 cargo fuzz run --fuzz-dir "$fuzz_dir" "$target" "$minimised" "$work" "$corpus" -- \
        -set_cover_merge=1 -max_len="$(max_len "$target")" 2>&1 |
        grep -E '^MERGE-OUTER: [0-9]+ new files' | tee -a "$log" || true
    rm -f "$corpus"/*
    find "$minimised" -maxdepth 1 -type f -size -"$input_bytes_max"c -exec cp {} "$corpus"/ \;
    rm -rf "$minimised"
    echo "== $target: corpus $(find "$corpus" -type f | wc -l) files, $(cat "$corpus"/* | wc -c) bytes" | tee -a "$log"
done
