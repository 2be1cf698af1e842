#!/usr/bin/env python3
"""Record SVG flamegraphs of the Mayfly server under the benchmark's workloads.

For each workload: start Mayfly pinned to the server CPUs, start smtp-blaster pinned to the
load CPUs, wait a second for it to settle, then sample the server with
`perf record -F 999 --call-graph dwarf` for a few seconds, fold the stacks with
`inferno-collapse-perf --all` (kernel frames marked _[k]) and draw them with
`inferno-flamegraph`.  Writes <out>/<date>-<commit>-<workload>.svg and a short text
summary (.txt: kernel share, categories, top functions by self time) that
flamegraphs/README.md is written from.

DWARF unwinding is used because the release build keeps line tables (profile.release
debug = 1) but no frame pointers; kernel stacks are exact either way.
Python 3 standard library only.
"""

import argparse
import datetime
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

SIZE_1K_BYTES = 1136
SAMPLE_HZ = 999
RECORD_SECS = 4
SETTLE_SECS = 1.0
# name -> (client, arguments): "blaster" runs smtp-blaster for a bounded time, "source" runs
# Postfix smtp-source (killed once the recording is done), "idle+blaster" first opens
# IDLE_CONNS mostly-idle sessions with idle.py.
WORKLOADS = {
    "w2-1k": ("blaster", ["-c", "32", "--size", str(SIZE_1K_BYTES)]),
    "w2-1k-smtp-source": ("source", ["-d", "-l", "1024", "-s", "32", "-m", "2000000"]),
    "pipelined-1k": ("blaster", ["-c", "32", "--size", str(SIZE_1K_BYTES), "--pipelining"]),
    "bdat8-1k": ("blaster", ["-c", "32", "--size", str(SIZE_1K_BYTES), "--bdat", "--in-flight", "8"]),
    "100k": ("blaster", ["-c", "16", "--size", "102400", "--pipelining"]),
    "1m": ("blaster", ["-c", "16", "--size", "1048576", "--pipelining"]),
    "idle10k-w2-1k": ("idle+blaster", ["-c", "32", "--size", str(SIZE_1K_BYTES)]),
    # The MX workload of bench/mx.py (closed-full): 200 slow senders, a new connection, STARTTLS
    # and a full handshake per message. Not in the default list (it needs --tls-self-signed).
    "mx": ("blaster", ["-c", "200", "--epoll", "--messages-per-connection", "1", "--think-ms", "2",
                       "--headers", "mx", "--size-dist", "1k:0.5,4k:0.3,10k:0.2", "--starttls",
                       "--tls-insecure", "--tls-no-resumption"]),
    "mx-resume": ("blaster", ["-c", "200", "--epoll", "--messages-per-connection", "1", "--think-ms", "2",
                              "--headers", "mx", "--size-dist", "1k:0.5,4k:0.3,10k:0.2", "--starttls",
                              "--tls-insecure"]),
    # bench/mx.py's open-full: 100 arrivals a second, each its own sender and connection.
    "mx-open": ("blaster", ["-c", "2000", "--epoll", "--rate", "100", "--connect-per-arrival",
                            "--messages-per-connection", "1", "--think-ms", "10", "--headers", "mx",
                            "--size-dist", "1k:0.5,4k:0.3,10k:0.2", "--starttls", "--tls-insecure",
                            "--tls-no-resumption"]),
}
DEFAULT_WORKLOADS = [w for w in WORKLOADS if not w.startswith("mx")]
# Extra server flags per workload.
SERVER_EXTRA = {name: ["--tls-self-signed", "--hostname", "localhost"] for name in ("mx", "mx-resume", "mx-open")}
IDLE_CONNS = 10000
HERE = os.path.dirname(os.path.abspath(__file__))
TOP_N = 25
# Frame substrings that place a sample in a category (a sample may be in several).
CATEGORIES = [
    ("kernel: io_uring_enter (submit + wait)", ("io_uring_enter",)),
    ("kernel: io_uring task work (completions run in the executor's context)", ("tctx_task_work", "io_run_task_work", "task_work_run")),
    ("kernel: TCP send (tcp_sendmsg, incl. loopback delivery to the peer)", ("tcp_sendmsg",)),
    ("kernel: TCP receive copy (tcp_recvmsg)", ("tcp_recvmsg",)),
    ("kernel: softirq / loopback receive (net_rx_action, tcp_v4_rcv)", ("net_rx_action", "tcp_v4_rcv")),
    ("kernel: IPIs (reschedule / call-function)", ("sysvec_reschedule_ipi", "sysvec_call_function", "reschedule_interrupt")),
    ("kernel: accept/connect/close", ("__sys_accept", "io_accept", "tcp_close", "inet_release", "tcp_v4_connect")),
    ("kernel: scheduler idle / sleep", ("schedule_hrtimeout", "io_cqring_wait", "do_idle", "__schedule")),
    ("user: mayfly::smtp (protocol, DATA scan)", ("mayfly::smtp",)),
    ("user: mayfly::store (ring, index, eviction)", ("mayfly::store",)),
    ("user: mayfly::net (connection loops)", ("mayfly::net",)),
    ("user: mayfly::runtime (delivery, mesh)", ("mayfly::runtime",)),
    ("user: glommio reactor / executor", ("glommio::",)),
    ("user: rustls (TLS state machine, records)", ("rustls::",)),
    ("user: ring (crypto: X25519, ECDSA, AES-GCM, SHA)", ("ring::", "ring_core_", "x25519", "p256_", "ecp_nistz256",
                                                         "aes_gcm", "sha256_block", "sha512_block", "gcm_")),
    ("user: memcpy/memmove", ("__memmove", "__memcpy", "memcpy")),
    ("user: allocator (mimalloc)", ("mi_", "mimalloc")),
]


def start_mayfly(args, extra=()):
    cmd = ["taskset", "-c", args.server_cpus, args.mayfly, "--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0",
           "--cores", str(len(args.server_cpus.split(","))), "--max-memory", "512MiB",
           "--max-sessions-per-core", "12000", "--shutdown-grace", "1s", "--log-level", "warn", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            env={**os.environ, "MAYFLY_MAX_SESSIONS_PER_IP": "0"})
    line = proc.stdout.readline()
    m = re.search(rb"smtp=(\S+) http=(\S+)", line)
    if not m:
        proc.kill()
        sys.exit(f"mayfly did not start: {line!r}")
    return proc, m.group(1).decode()


def summarize(folded_path):
    """Kernel share of samples and the top functions by self (leaf) samples."""
    total = 0
    kernel_leaf = 0
    leaf = Counter()
    inclusive = Counter()
    cats = Counter()
    with open(folded_path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            n = int(n)
            frames = stack.split(";")
            total += n
            leaf[frames[-1]] += n
            if frames[-1].endswith("_[k]"):
                kernel_leaf += n
            for fr in set(frames):
                inclusive[fr] += n
            for label, needles in CATEGORIES:
                if any(nd in stack for nd in needles):
                    cats[label] += n
    out = [f"samples: {total}", f"kernel leaf share: {kernel_leaf / max(1, total):.1%}", "",
           "top self (leaf) frames:"]
    for fr, n in leaf.most_common(TOP_N):
        out.append(f"  {n / total:6.1%}  {fr}")
    out += ["", "categories (inclusive share of samples whose stack contains a matching frame):"]
    for label, n in cats.most_common():
        out.append(f"  {n / total:6.1%}  {label}")
    out += ["", "top inclusive frames (below 99%):"]
    shown = 0
    for fr, n in inclusive.most_common():
        if n / total < 0.99 and shown < TOP_N * 2:
            out.append(f"  {n / total:6.1%}  {fr}")
            shown += 1
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mayfly", required=True)
    ap.add_argument("--blaster", required=True)
    ap.add_argument("--smtp-source", default="/usr/sbin/smtp-source")
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--load-cpus", default="1")
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--out", required=True)
    ap.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                    help=f"comma list of {', '.join(WORKLOADS)} (default: all but the mx ones)")
    ap.add_argument("--keep-folded", action="store_true", help="keep the folded stacks (about 1 MB each)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    for name in args.workloads.split(","):
        base = os.path.join(args.out, f"{date}-{args.commit}-{name}")
        data = base + ".perf.data"
        proc, smtp = start_mayfly(args, SERVER_EXTRA.get(name, ()))
        idle = None
        load = None
        out = b""
        try:
            client, cargs = WORKLOADS[name]
            if client == "idle+blaster":
                idle = subprocess.Popen([sys.executable, os.path.join(HERE, "idle.py"), smtp, "--count",
                                         str(IDLE_CONNS), "--cpu", args.load_cpus.split(",")[0].split("-")[0],
                                         "--max-secs", "120"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                idle.stdout.readline()
            if client == "source":
                load = subprocess.Popen(["taskset", "-c", args.load_cpus, args.smtp_source, *cargs, smtp],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                load = subprocess.Popen(["taskset", "-c", args.load_cpus, args.blaster, smtp, "--json",
                                         "-d", str(int(SETTLE_SECS + RECORD_SECS + 2)), *cargs],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(SETTLE_SECS)
            subprocess.run(["perf", "record", "-q", "-F", str(SAMPLE_HZ), "--call-graph", "dwarf,16384",
                            "-p", str(proc.pid), "-o", data, "--", "sleep", str(RECORD_SECS)],
                           check=True, stdout=subprocess.DEVNULL, timeout=120)
            if client == "source":
                load.terminate()
                load.wait(timeout=30)
            else:
                out, _ = load.communicate(timeout=120)
        finally:
            for p in (load, idle):
                if p is not None and p.poll() is None:
                    p.kill()
                    p.wait()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        with open(base + ".folded", "w") as folded:
            script = subprocess.Popen(["perf", "script", "-i", data], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL)
            subprocess.run(["inferno-collapse-perf", "--all"], stdin=script.stdout, stdout=folded, check=True)
            script.wait()
        with open(base + ".svg", "w") as svg:
            subprocess.run(["inferno-flamegraph", "--title", f"mayfly {args.commit} {name} (perf, {SAMPLE_HZ} Hz)",
                            base + ".folded"], stdout=svg, check=True)
        with open(base + ".txt", "w") as f:
            f.write(f"workload: {name}; client: {' '.join(WORKLOADS[name][1])}; "
                    f"blaster report: {out.decode(errors='replace').strip() or '-'}\n")
            f.write(summarize(base + ".folded"))
        os.remove(data)
        if not args.keep_folded:
            os.remove(base + ".folded")
        print(f"flamegraph {base}.svg", flush=True)


if __name__ == "__main__":
    main()
