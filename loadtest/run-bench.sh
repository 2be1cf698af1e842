#!/usr/bin/env bash
# Mayfly vs Postfix smtp-sink on one machine, interleaved, server and load pinned apart.
#
# Usage: loadtest/run-bench.sh [--quick] [--rounds N] [--out DIR] [--only PARTS] [--flamegraphs]
#                              [--catchers LIST] [--durability MODES]
#
#   --quick         smaller runs, 1 round, no 1 M store (about 5 minutes)
#   --rounds N      rounds of the interleaved workloads (default 5; medians are reported)
#   --out DIR       where results go (default loadtest/results)
#   --only PARTS    comma list of: interleaved, ring, held, sweeps, probe, durability, restore,
#                   auth (default all); catchers alone runs only the mail-catcher comparison;
#                   mailbox (not in the default) reads mail back over POP3 and IMAP with
#                   mail-reader, Mayfly against Dovecot 2.3 (see bench/mail_clients.py);
#                   auth is the cost of --verify-senders (see bench/auth.py; needs nsd and
#                   openssl, and is skipped with a note in the report without them)
#                   mx (not in the default): many slow senders, a new connection and STARTTLS
#                   per message, Mayfly against Postfix smtpd, Haraka and smtp-sink, and the
#                   bare rustls handshake (see bench/mx.py; installs Haraka with npm ci first)
#                   floor (not in the default): the runtime's own floor, a do-nothing SMTP sink on
#                   glommio 0.9 and on monoio with and without COOP/DEFER_TASKRUN against
#                   smtp-sink, driven by smtp-source (builds loadtest/floor; see bench/floor.py;
#                   skipped with a message without smtp-sink and smtp-source; needs no Mayfly
#                   build; with perf installed it also counts syscalls and io_uring work)
#   --durability MODES  the --durability modes the durability part runs side by side (comma list
#                   of none, snapshot, journal; default all three); adds that part to --only.
#                   Data directories go under DATA_ROOT (default /var/tmp: a real disk, not tmpfs)
#   --catchers LIST also compare these mail catchers in every interleaved round (comma list of
#                   mailcrab, maildev, haraka, inbucket, mailpit; "none" for none). Default: the
#                   ones loadtest/bench/catchers.sh has installed ("catchers.sh install" first)
#   --flamegraphs   afterwards, record perf flamegraphs of the server into flamegraphs/
#                   (needs perf, inferno-collapse-perf and inferno-flamegraph)
#
# Environment:
#   MAYFLY=path SMTP_BLASTER=path   use these binaries instead of building release ones
#   MAIL_READER=path                the mail-reader binary for --only mailbox (default: beside
#                                   smtp-blaster); DOVECOT=path the Dovecot binary (default: dovecot)
#   CARGO_TARGET_DIR                where cargo builds (default: the workspace's target/)
#   SERVER_CPUS=0 LOAD_CPUS=1       CPU lists for the server (taskset) and the load
#   MACHINE=name                    machine tag in result file names (default: hostname)
#   DATA_ROOT=/var/tmp              where the durability and restore parts make data directories
#   MAX_BUSY=0.5                    before each round and part, wait (at most 30 s) until other work
#                                   on the machine uses less than this many CPUs
#   MAYFLY_CATCHERS_DIR             where catchers.sh installs the catchers (/var/tmp/mayfly-catchers)
#   CATCH_WORKLOADS=a,b             run only these catcher workloads (w2-1k, pipelined-1k, 100k,
#                                   w2-1k-all-cpus)
#
# Needs: Python 3, taskset, Postfix's smtp-sink and smtp-source (/usr/sbin), nsd and openssl
# for the auth part (run `cargo bench --bench auth` first to have it quote ring's cost), run as root
# (smtp-sink -u nobody, and 10 000 idle connections need a raised open-file limit).
# Everything talks to 127.0.0.1 only, and every run is bounded in messages and time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
quick=""
rounds=""
out="$here/results"
only="interleaved,ring,held,sweeps,probe,durability,restore,auth"
durability_modes="none,snapshot,journal"
flame=""
catchers=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick="--quick" ;;
        --rounds) rounds="$2"; shift ;;
        --out) out="$2"; shift ;;
        --only) only="$2"; shift ;;
        --flamegraphs) flame=1 ;;
        --catchers) catchers="$2"; shift ;;
        --durability) durability_modes="$2"; [[ ",$only," == *,durability,* ]] || only="$only,durability"; shift ;;
        -h|--help) sed -n "2,$(grep -n '^set -euo' "$0" | cut -d: -f1)p" "$0" | head -n -1 | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "run-bench.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

# The runtime floor needs neither Mayfly nor the blaster: it runs first and on its own (its
# own Cargo project, loadtest/floor, outside the workspace), and the other parts follow.
if [[ ",$only," == *,floor,* ]]; then
    only="$(echo ",$only," | sed 's/,floor,/,/g; s/^,//; s/,$//')"
    if [[ ! -x /usr/sbin/smtp-sink || ! -x /usr/sbin/smtp-source ]]; then
        echo "run-bench.sh: floor part skipped: it needs Postfix's smtp-sink and smtp-source in /usr/sbin" >&2
    else
        (cd "$here/floor" && cargo build --release)
        floor_commit="$(git -C "$root" log -1 --format=%h 2>/dev/null || echo unknown)"
        if [[ -n "$(GIT_OPTIONAL_LOCKS=0 git -C "$root" status --porcelain -- loadtest/floor loadtest/bench/floor.py 2>/dev/null)" ]]; then
            floor_commit="$floor_commit-dirty"
        fi
        floor_args=(--out "$out" --floor-sink "${CARGO_TARGET_DIR:-$here/floor/target}/release/floor-sink"
                    --server-cpus "${SERVER_CPUS:-0}" --load-cpus "${LOAD_CPUS:-1}" --commit "$floor_commit"
                    --machine "${MACHINE:-$(hostname -s 2>/dev/null || echo machine)}" --max-load "${MAX_BUSY:-0.5}")
        [[ -n "$quick" ]] && floor_args+=("$quick")
        [[ -n "$rounds" ]] && floor_args+=(--rounds "$rounds")
        # syscalls and io_uring work per message, one extra run per variant, when perf is here
        command -v perf >/dev/null && floor_args+=(--perf)
        python3 "$here/bench/floor.py" "${floor_args[@]}"
    fi
    [[ -n "$only" ]] || exit 0
fi

for tool in taskset python3 /usr/sbin/smtp-sink /usr/sbin/smtp-source; do
    command -v "$tool" >/dev/null || { echo "run-bench.sh: $tool not found" >&2; exit 1; }
done

if [[ ",$only," == *,mx,* ]]; then
    for tool in openssl /usr/sbin/postfix; do
        command -v "$tool" >/dev/null || { echo "run-bench.sh: $tool not found (the mx part)" >&2; exit 1; }
    done
    # Haraka from the pinned package-lock.json, installed before any measurement.
    if command -v npm >/dev/null && [[ ! -d "$here/haraka/node_modules" ]]; then
        (cd "$here/haraka" && npm ci --no-audit --no-fund >/dev/null) \
            || echo "run-bench.sh: npm ci in $here/haraka failed; Haraka is left out" >&2
    fi
fi

if [[ -z "${MAYFLY:-}" || -z "${SMTP_BLASTER:-}" ]]; then
    (cd "$root" && cargo build --release --workspace)
    target="${CARGO_TARGET_DIR:-$root/target}"
    MAYFLY="${MAYFLY:-$target/release/mayfly}"
    SMTP_BLASTER="${SMTP_BLASTER:-$target/release/smtp-blaster}"
fi
commit="$(git -C "$root" log -1 --format=%h 2>/dev/null || echo unknown)"
if [[ -n "$(GIT_OPTIONAL_LOCKS=0 git -C "$root" status --porcelain -- src loadtest/src Cargo.toml 2>/dev/null)" ]]; then
    commit="$commit-dirty"
fi

# 10 000 idle connections plus the load need more descriptors than the usual 1024 or 20000.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

args=(--out "$out" --mayfly "$MAYFLY" --blaster "$SMTP_BLASTER"
      --reader "${MAIL_READER:-$(dirname "$SMTP_BLASTER")/mail-reader}" --dovecot "${DOVECOT:-dovecot}"
      --server-cpus "${SERVER_CPUS:-0}" --load-cpus "${LOAD_CPUS:-1}"
      --commit "$commit" --machine "${MACHINE:-$(hostname -s 2>/dev/null || echo machine)}"
      --max-load "${MAX_BUSY:-0.5}" --only "$only"
      --durability-modes "$durability_modes" --data-root "${DATA_ROOT:-/var/tmp}")
[[ -n "$quick" ]] && args+=("$quick")
[[ -n "$rounds" ]] && args+=(--rounds "$rounds")
catchers_dir="${MAYFLY_CATCHERS_DIR:-/var/tmp/mayfly-catchers}"
if [[ -z "$catchers" ]]; then
    catchers="$(MAYFLY_CATCHERS_DIR="$catchers_dir" "$here/bench/catchers.sh" available)"
fi
if [[ -n "$catchers" && "$catchers" != "none" ]]; then
    echo "run-bench.sh: comparing with mail catchers: $catchers (from $catchers_dir)" >&2
    args+=(--catchers "$catchers" --catchers-dir "$catchers_dir")
    [[ -n "${CATCH_WORKLOADS:-}" ]] && args+=(--catch-workloads "$CATCH_WORKLOADS")
fi
python3 "$here/bench/bench.py" "${args[@]}"

if [[ -n "$flame" ]]; then
    python3 "$here/bench/flame.py" --mayfly "$MAYFLY" --blaster "$SMTP_BLASTER" \
        --server-cpus "${SERVER_CPUS:-0}" --load-cpus "${LOAD_CPUS:-1}" \
        --commit "$commit" --out "$root/flamegraphs"
fi
