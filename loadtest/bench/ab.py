#!/usr/bin/env python3
"""A/B of Mayfly binaries on one workload: server CPU per message, alternating binaries.

Usage: ab.py [--rounds N] [--secs S] [--rest S] [--load "BLASTER ARGS"] NAME=PATH [NAME=PATH ...]

Each run starts one binary fresh (`taskset -c 0 ... --cores 1 --max-memory 512MiB`, as
bench.py does), drives it with smtp-blaster on CPU 1 for --secs seconds (default load: the
100 KiB workload, `-c 16 --size 102400 --pipelining`), and reads the server's utime+stime
from /proc/<pid>/stat before and after. Binaries alternate in every round (reversed in odd
rounds) so none always gets the quieter moment; --rest sleeps before each run. Prints every
run and the median CPU us/msg per binary, with GB/s per core for --size workloads.
Needs the blaster from SMTP_BLASTER (default: target/release/smtp-blaster); 127.0.0.1 only.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def run_once(path, args):
    server = subprocess.Popen(["taskset", "-c", "0", path, "--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0",
                               "--cores", "1", "--max-memory", "512MiB", "--max-sessions-per-core", "12000",
                               "--log-level", "warn"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env={**os.environ, "MAYFLY_MAX_SESSIONS_PER_IP": "0"})
    try:
        match = re.search(r"smtp=(\S+)", server.stdout.readline().decode())
        if not match:
            raise RuntimeError(f"{path} did not start")
        ticks_before = cpu_ticks(server.pid)
        blast = subprocess.run(["taskset", "-c", "1", args.blaster, match.group(1), "--json", "--timeout", "10",
                                "-d", str(args.secs), *args.load.split()], capture_output=True, timeout=120)
        ticks_after = cpu_ticks(server.pid)
    finally:
        server.terminate()
        server.wait()
    report = json.loads(blast.stdout)
    n_messages = report["messages_accepted"]
    cpu_us = (ticks_after - ticks_before) / CLK_TCK * 1e6
    return {"us_per_msg": cpu_us / n_messages, "msgs_per_s": report["messages_per_sec"],
            "rejected": report.get("messages_rejected"), "load1": os.getloadavg()[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--secs", type=int, default=3)
    parser.add_argument("--rest", type=float, default=0.0)
    parser.add_argument("--load", default="-c 16 --size 102400 --pipelining")
    parser.add_argument("--blaster", default=os.environ.get("SMTP_BLASTER", "target/release/smtp-blaster"))
    parser.add_argument("binaries", nargs="+", metavar="NAME=PATH")
    args = parser.parse_args()
    binaries = [spec.split("=", 1) for spec in args.binaries]
    size = re.search(r"--size (\d+)", args.load)
    results = {name: [] for name, _ in binaries}
    for round_idx in range(args.rounds):
        for name, path in binaries if round_idx % 2 == 0 else binaries[::-1]:
            time.sleep(args.rest)
            run = run_once(path, args)
            results[name].append(run)
            print(f"round {round_idx} {name}: {run['us_per_msg']:.1f} us/msg, {run['msgs_per_s']:,.0f} msg/s, "
                  f"rejected {run['rejected']}, load {run['load1']:.2f}", flush=True)
    for name, runs in results.items():
        median_us = statistics.median(run["us_per_msg"] for run in runs)
        per_core = f" = {int(size.group(1)) / median_us / 1e3:.2f} GB/s per core" if size else ""
        print(f"median {name}: {median_us:.1f} us/msg{per_core}; "
              f"all {[round(run['us_per_msg'], 1) for run in runs]}")


if __name__ == "__main__":
    main()
