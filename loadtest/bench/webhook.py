#!/usr/bin/env python3
"""What a webhook costs the server: W2 CPU per message without a webhook, with one to a fast
receiver, and with one to a receiver that never answers, in interleaved rounds.

Usage: webhook.py [--rounds N] [--secs S] [--load "BLASTER ARGS"] [--arms none,fast,hung]

Each run starts Mayfly fresh (`taskset -c 0 ... --cores 1 --max-memory 512MiB`, as ab.py
does) and drives it with smtp-blaster on CPU 1 (default load: W2, `-c 32 --size 1136`).
The arms differ only in their flags:

- none: no webhook;
- fast: `--webhook` to HAProxy 2.6 (Debian package `haproxy`) on CPU 1 answering every
  request `204` with `http-request return` (one thread, keep-alive), the fastest receiver
  at hand that is not Mayfly itself;
- hung: `--webhook` to a receiver in this script that accepts, reads and never answers.

Server CPU is utime+stime from /proc/<pid>/stat, from before the blaster starts until the
webhook queue has drained (so requests still queued when the load stops are counted; the
hung receiver's queue never drains, and its run stops with the blaster), divided by the
messages accepted. Also printed: webhook requests delivered and events dropped per message,
from /metrics. Arms alternate, reversed every other round. 127.0.0.1 only.
Needs MAYFLY (default target/release/mayfly) and SMTP_BLASTER (target/release/smtp-blaster).
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
HAPROXY_CONFIG = """global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout client 30s
    timeout connect 5s
    timeout server 5s
    timeout http-keep-alive 30s
frontend hook
    bind 127.0.0.1:{port}
    http-request return status 204
"""
# How long a run waits for its webhook queue to drain after the load stops.
DRAIN_WAIT_SECS = 10


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_hung_receiver():
    """Accepts connections, reads what comes, never answers; returns its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)

    def drain(conn):
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass
        conn.close()

    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def metrics(http):
    text = urllib.request.urlopen(f"http://{http}/metrics", timeout=10).read().decode()
    sums = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return sums


def run_once(flags, args):
    server = subprocess.Popen(
        ["taskset", "-c", "0", args.mayfly, "--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0",
         "--cores", "1", "--max-memory", "512MiB", "--max-sessions-per-core", "12000",
         "--log-level", "error", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, "MAYFLY_MAX_SESSIONS_PER_IP": "0"})
    try:
        line = server.stdout.readline().decode()
        smtp, http = re.search(r"smtp=(\S+)", line), re.search(r"http=(\S+)", line)
        if not smtp or not http:
            raise RuntimeError(f"mayfly did not start: {line!r}")
        ticks_before = cpu_ticks(server.pid)
        blast = subprocess.run(["taskset", "-c", "1", args.blaster, smtp.group(1), "--json", "--timeout", "10",
                                "-d", str(args.secs), *args.load.split()], capture_output=True, timeout=120)
        deadline = time.time() + DRAIN_WAIT_SECS
        while True:
            sums = metrics(http.group(1))
            queued = sums.get("mayfly_webhook_queue_length", 0)
            if queued == 0 or sums.get("mayfly_webhook_deliveries_total", 0) == 0 or time.time() > deadline:
                break
            time.sleep(0.2)
        ticks_after = cpu_ticks(server.pid)
        sums = metrics(http.group(1))
    finally:
        server.terminate()
        server.wait()
    report = json.loads(blast.stdout)
    n_messages = sums["mayfly_messages_accepted_total"]
    return {"us_per_msg": (ticks_after - ticks_before) / CLK_TCK * 1e6 / n_messages,
            "msgs_per_s": report["messages_per_sec"],
            "delivered_per_msg": sums.get("mayfly_webhook_deliveries_total", 0) / n_messages,
            "dropped_per_msg": sums.get("mayfly_webhook_dropped_total", 0) / n_messages,
            "load1": os.getloadavg()[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--secs", type=int, default=5)
    parser.add_argument("--load", default="-c 32 --size 1136")
    parser.add_argument("--arms", default="none,fast,hung")
    parser.add_argument("--mayfly", default=os.environ.get("MAYFLY", "target/release/mayfly"))
    parser.add_argument("--blaster", default=os.environ.get("SMTP_BLASTER", "target/release/smtp-blaster"))
    args = parser.parse_args()
    arms = args.arms.split(",")
    haproxy = None
    flags = {"none": []}
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as scratch:
        if "fast" in arms:
            port = free_port()
            config = os.path.join(scratch, "haproxy.cfg")
            with open(config, "w") as f:
                f.write(HAPROXY_CONFIG.format(port=port))
            haproxy = subprocess.Popen(["taskset", "-c", "1", "haproxy", "-db", "-f", config],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            flags["fast"] = ["--webhook", f"http://127.0.0.1:{port}/hook"]
        if "hung" in arms:
            flags["hung"] = ["--webhook", f"http://127.0.0.1:{start_hung_receiver()}/hook"]
        try:
            time.sleep(0.5)
            results = {arm: [] for arm in arms}
            for round_idx in range(args.rounds):
                for arm in arms if round_idx % 2 == 0 else arms[::-1]:
                    run = run_once(flags[arm], args)
                    results[arm].append(run)
                    print(f"round {round_idx} {arm}: {run['us_per_msg']:.1f} us/msg, {run['msgs_per_s']:,.0f} msg/s, "
                          f"delivered {run['delivered_per_msg']:.3f}/msg, dropped {run['dropped_per_msg']:.3f}/msg, "
                          f"load {run['load1']:.2f}", flush=True)
            for arm, runs in results.items():
                us = [run["us_per_msg"] for run in runs]
                print(f"median {arm}: {statistics.median(us):.1f} us/msg (range {min(us):.1f}-{max(us):.1f}), "
                      f"{statistics.median(run['msgs_per_s'] for run in runs):,.0f} msg/s, "
                      f"delivered {statistics.median(run['delivered_per_msg'] for run in runs):.3f}/msg, "
                      f"dropped {statistics.median(run['dropped_per_msg'] for run in runs):.3f}/msg")
        finally:
            if haproxy:
                haproxy.terminate()
                haproxy.wait()


if __name__ == "__main__":
    main()
