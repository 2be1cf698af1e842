#!/usr/bin/env python3
"""A/B of Mayfly binaries on one workload: server CPU per message, alternating binaries.

Usage: ab.py [--rounds N] [--secs S] [--rest S] [--load "BLASTER ARGS"] NAME=PATH [NAME=PATH ...]

A PATH whose file name is smtp-sink runs Postfix's smtp-sink instead (the plaintext floor).
PATH may carry extra server flags after it, separated by spaces (quote the whole spec):
`journal="target/release/mayfly --durability journal --data-dir {data}"`; `{data}` becomes a
fresh empty directory under --data-root for every run (removed afterwards), so durability
modes can be compared with the same binary. For those, the journal's fdatasyncs per message
are read from /metrics after the run and printed.

Each run starts one binary fresh (`taskset -c 0 ... --cores 1 --max-memory 512MiB`, as
bench.py does; --server-cpus, --cores and --load-cpus change that), drives it with smtp-blaster on CPU 1 for --secs seconds (default load: the
100 KiB workload, `-c 16 --size 102400 --pipelining`), and reads the server's utime+stime
from /proc/<pid>/stat before and after. Binaries alternate in every round (reversed in odd
rounds) so none always gets the quieter moment; --rest sleeps before each run. Prints every
run and the median CPU us/msg per binary, with GB/s per core for --size workloads.
Needs the blaster from SMTP_BLASTER (default: target/release/smtp-blaster); 127.0.0.1 only.

--source "ARGS" drives the server with Postfix's smtp-source instead (e.g. `-d -l 1024 -s 32
-m 30000` for W2: a client that sleeps while it waits for every reply); --secs is then unused
and the rate is the messages over smtp-source's wall time. Every run also reports the
reschedule IPIs the server's CPUs took per message (the RES line of /proc/interrupts), the cost the wait
path pays when the server parks.
"""
import argparse
import json
import os
import re
import shutil
import sys
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench as tools  # noqa: E402  (/proc helpers, free_port, metric_sum)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def start_smtp_sink(path, args):
    """Postfix's smtp-sink (a spec named smtp-sink), as run-bench.sh runs it: the plaintext floor."""
    sink = tools.start_sink(argparse.Namespace(server_cpus=args.server_cpus, smtp_sink=path, work=args.work))
    return sink.proc, sink.smtp, None


def run_once(spec, args):
    path, *extra = spec.split()
    data = tempfile.mkdtemp(prefix="ab-data-", dir=args.data_root) if any("{data}" in a for a in extra) else None
    extra = [a.replace("{data}", data) if data else a for a in extra]
    if os.path.basename(path) == "smtp-sink":
        server, smtp, http = start_smtp_sink(path, args)
    else:
        server = subprocess.Popen(["taskset", "-c", args.server_cpus, path, "--smtp", "127.0.0.1:0",
                                   "--http", "127.0.0.1:0", "--cores", str(args.cores), "--max-memory", "512MiB",
                                   "--max-sessions-per-core", "12000", "--log-level", "warn", *extra],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "MAYFLY_MAX_SESSIONS_PER_IP": "0"})
        line = server.stdout.readline().decode()
        smtp, http = (match.group(1) if match else None
                      for match in (re.search(r"smtp=(\S+)", line), re.search(r"http=(\S+)", line)))
    fsyncs = None
    try:
        if not smtp:
            raise RuntimeError(f"{path} did not start")
        ticks_before, ipis_before, started = sum(tools.proc_cpu_ticks(server.pid)), tools.interrupts("RES", tools.cpu_list(args.server_cpus)), time.monotonic()
        if args.source:
            blast = subprocess.run(["taskset", "-c", args.load_cpus, args.smtp_source, *args.source.split(), smtp],
                                   capture_output=True, timeout=300)
        else:
            blast = subprocess.run(["taskset", "-c", args.load_cpus, args.blaster, smtp, "--json", "--timeout", "10",
                                    "-d", str(args.secs), *args.load.split()], capture_output=True, timeout=120)
        ticks_after, ipis_after, elapsed = sum(tools.proc_cpu_ticks(server.pid)), tools.interrupts("RES", tools.cpu_list(args.server_cpus)), time.monotonic() - started
        if data:
            fsyncs = tools.metric_sum(tools.http_get(f"http://{http}/metrics", timeout=10), "mayfly_journal_fsyncs_total")
    finally:
        server.terminate()
        server.wait()
        if data:
            shutil.rmtree(data, ignore_errors=True)
    if args.source:
        if blast.returncode != 0:
            raise RuntimeError(f"smtp-source failed: {blast.stderr.decode()[-300:]}")
        n_messages = int(re.search(r"-m (\d+)", args.source).group(1))
        report = {"messages_per_sec": n_messages / elapsed}
    else:
        report = json.loads(blast.stdout)
        n_messages = report["messages_accepted"]
    cpu_us = (ticks_after - ticks_before) / CLK_TCK * 1e6
    return {"us_per_msg": cpu_us / n_messages, "msgs_per_s": report["messages_per_sec"],
            "rejected": report.get("messages_rejected"), "load1": os.getloadavg()[0],
            "fsyncs_per_msg": fsyncs / n_messages if fsyncs is not None else None,
            "lat_p99_us": (report.get("latency_us") or {}).get("p99"),
            "res_ipis_per_msg": (ipis_after - ipis_before) / n_messages}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--secs", type=int, default=3)
    parser.add_argument("--rest", type=float, default=0.0)
    parser.add_argument("--load", default="-c 16 --size 102400 --pipelining")
    parser.add_argument("--server-cpus", default="0", help="taskset list for the server")
    parser.add_argument("--cores", type=int, default=1, help="the server's --cores")
    parser.add_argument("--load-cpus", default="1", help="taskset list for the load")
    parser.add_argument("--source", default=None, help="smtp-source arguments instead of the blaster")
    parser.add_argument("--smtp-source", default="/usr/sbin/smtp-source")
    parser.add_argument("--blaster", default=os.environ.get("SMTP_BLASTER", "target/release/smtp-blaster"))
    parser.add_argument("--data-root", default="/var/tmp",
                        help="where {data} directories are made: a real disk, not tmpfs")
    parser.add_argument("binaries", nargs="+", metavar="NAME=PATH")
    args = parser.parse_args()
    args.work = tempfile.mkdtemp(prefix="ab-")  # smtp-sink's log
    binaries = [spec.split("=", 1) for spec in args.binaries]
    size = None if args.source else re.search(r"--size (\d+)", args.load)
    results = {name: [] for name, _ in binaries}
    for round_idx in range(args.rounds):
        for name, path in binaries if round_idx % 2 == 0 else binaries[::-1]:
            time.sleep(args.rest)
            run = run_once(path, args)
            results[name].append(run)
            fsyncs = f", {run['fsyncs_per_msg']:.3f} fsyncs/msg" if run["fsyncs_per_msg"] is not None else ""
            print(f"round {round_idx} {name}: {run['us_per_msg']:.1f} us/msg, {run['msgs_per_s']:,.0f} msg/s, "
                  f"p99 {run['lat_p99_us']} us{fsyncs}, {run['res_ipis_per_msg']:.2f} RES/msg, "
                  f"rejected {run['rejected']}, load {run['load1']:.2f}",
                  flush=True)
    for name, runs in results.items():
        median_us = statistics.median(run["us_per_msg"] for run in runs)
        median_rate = statistics.median(run["msgs_per_s"] for run in runs)
        per_core = f" = {int(size.group(1)) / median_us / 1e3:.2f} GB/s per core" if size else ""
        fsyncs = [run["fsyncs_per_msg"] for run in runs if run["fsyncs_per_msg"] is not None]
        fsync_text = f", {statistics.median(fsyncs):.3f} fsyncs/msg" if fsyncs else ""
        ipis = statistics.median(run["res_ipis_per_msg"] for run in runs)
        print(f"median {name}: {median_us:.1f} us/msg{per_core}, {median_rate:,.0f} msg/s{fsync_text}, "
              f"{ipis:.2f} RES/msg; "
              f"all {[round(run['us_per_msg'], 1) for run in runs]}")


if __name__ == "__main__":
    main()
