#!/usr/bin/env python3
"""What inbox watchers (WebSockets, long polls) cost Mayfly while SMTP load runs.

Three variants, interleaved over --rounds, each on a fresh server pinned to the server CPU
(one core) with the load (smtp-blaster, open loop) and the watchers (watchers.py) on the
load CPU:
  none   no watchers;
  idle   N WebSockets and N long polls on inboxes that get no mail;
  busy   N WebSockets and N long polls on the very inboxes the blaster sends to, so every
         message is pushed to a WebSocket or answers a long poll (which is then re-issued).
For each: server CPU per message and msg/s (closed loop, or an open-loop rate), server RSS before
and after the watchers connected (-> bytes per watcher), server CPU while the watchers sit
idle with no load, and, for busy, the frames the watchers received against the server's
count of frames sent. Writes <out>/<date>-<commit>-watchers.{json,md}.

Needs MAYFLY and SMTP_BLASTER (paths to release binaries), root for the raised file limit.
Everything talks to 127.0.0.1 only and every run is bounded.
"""

import argparse
import datetime
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (the /proc helpers)

IDLE_MEASURE_SECS = 10
VARIANTS = ("none", "idle", "busy")


def start(cfg):
    n = cfg.watchers
    cmd = ["taskset", "-c", cfg.server_cpu, cfg.mayfly, "--smtp", "127.0.0.1:0",
           "--http", "127.0.0.1:0", "--cores", "1", "--max-memory", "512MiB",
           "--max-http-connections-per-core", str(2 * n + 1000),
           "--max-websockets-per-core", str(n + 100),
           "--max-long-polls-per-core", str(n + 100),
           "--shutdown-grace", "1s", "--log-level", "warn"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL,
                            env={**os.environ, "MAYFLY_MAX_SESSIONS_PER_IP": "0"})
    line = proc.stdout.readline()
    m = re.search(rb"smtp=(\S+) http=(\S+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"mayfly did not start: {line!r}")
    return bench.Server("mayfly", proc, m.group(1).decode(), m.group(2).decode())


def cpu_secs(server):
    u, s = server.cpu()
    return (u + s) / bench.CLK_TCK


def run_variant(cfg, variant):
    server = start(cfg)
    rec = {"variant": variant, "watchers_per_kind": cfg.watchers if variant != "none" else 0}
    watchers = None
    try:
        time.sleep(0.5)
        rec["rss_empty_kib"] = server.rss_kib()
        if variant != "none":
            first = 0 if variant == "busy" else 10_000_000
            watchers = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "watchers.py"), server.http,
                 "--websockets", str(cfg.watchers), "--long-polls", str(cfg.watchers),
                 "--first", str(first), "--cpu", cfg.load_cpu, "--max-secs", "300"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            ready = watchers.stdout.readline().decode().split()
            rec["ws_open"], rec["polls_open"], rec["watch_failed"] = map(int, ready[1:4])
            time.sleep(1.0)
            rec["rss_watched_kib"] = server.rss_kib()
            opened = rec["ws_open"] + rec["polls_open"]
            rec["bytes_per_watcher"] = ((rec["rss_watched_kib"] - rec["rss_empty_kib"]) * 1024
                                        / opened if opened else None)
        c0 = cpu_secs(server)
        time.sleep(IDLE_MEASURE_SECS)
        rec["idle_cpu_ms_per_s"] = (cpu_secs(server) - c0) * 1000 / IDLE_MEASURE_SECS
        # The blaster sends to user0..user<inboxes-1>: for busy, exactly the watched inboxes.
        inboxes = 2 * cfg.watchers if variant != "none" else 2 * cfg.watchers
        load = (["--rate", str(cfg.rate), "-d", str(cfg.secs)] if cfg.rate
                else ["-m", str(cfg.messages)])
        cmd = ["taskset", "-c", cfg.load_cpu, cfg.blaster, server.smtp, "--json", "--timeout", "10",
               "-c", "32", *load, "--size", str(bench.SIZE_1K_BYTES), "--inboxes", str(inboxes)]
        rec.update(bench.run_measured(cfg, server, cmd))
        if watchers:
            time.sleep(1.0)
            watchers.stdin.close()
            counts = json.loads(watchers.stdout.readlines()[-1])
            watchers.wait(timeout=30)
            rec["watcher_counts"] = counts
        metrics = server.metrics() or ""
        rec["server_frames"] = bench.metric_sum(metrics, "mayfly_websocket_frames_total")
        rec["server_dropped_slow"] = bench.metric_sum(metrics, "mayfly_websockets_dropped_slow_total")
        rec["rss_end_kib"] = server.rss_kib()
    finally:
        if watchers and watchers.poll() is None:
            watchers.kill()
            watchers.wait()
        server.stop()
    return rec


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 8000 + 8000: both the server and watchers.py stay under a 20 000 open-file limit.
    ap.add_argument("--watchers", type=int, default=8000, help="WebSockets, and as many long polls")
    ap.add_argument("--messages", type=int, default=200000,
                    help="closed loop (the W2 workload): this many messages over 32 connections")
    ap.add_argument("--rate", type=int, default=0, help="open loop instead: offered msg/s ...")
    ap.add_argument("--secs", type=int, default=10, help="... for this many seconds")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "results"))
    args = ap.parse_args()
    args.mayfly = os.environ["MAYFLY"]
    args.blaster = os.environ["SMTP_BLASTER"]
    args.server_cpu = os.environ.get("SERVER_CPUS", "0")
    args.load_cpu = os.environ.get("LOAD_CPUS", "1")
    args.work = "/tmp"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * args.watchers + 10000
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(want, hard)), hard))

    records = []
    for rnd in range(1, args.rounds + 1):
        order = VARIANTS if rnd % 2 else tuple(reversed(VARIANTS))
        for variant in order:
            rec = run_variant(args, variant)
            rec["round"] = rnd
            rec["load"] = os.getloadavg()[0]
            records.append(rec)
            print(f"round {rnd} {variant:4}: {rec.get('cpu_us_per_msg') or 0:.1f} us/msg "
                  f"{rec.get('msgs_per_s') or 0:.0f} msg/s, RSS {rec['rss_empty_kib']} -> "
                  f"{rec.get('rss_watched_kib', '-')} KiB, idle {rec['idle_cpu_ms_per_s']:.2f} ms/s, "
                  f"frames {rec.get('server_frames')} counts {rec.get('watcher_counts')}",
                  file=sys.stderr, flush=True)

    commit = subprocess.run(["git", "-C", HERE, "log", "-1", "--format=%h"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    stem = os.path.join(args.out, f"{datetime.date.today()}-{commit}-watchers")
    with open(stem + ".json", "w") as f:
        json.dump({"args": {k: v for k, v in vars(args).items()}, "records": records}, f, indent=1)
    lines = [f"# Watchers under SMTP load ({commit}, {datetime.date.today()})", "",
             f"Server: mayfly --cores 1 pinned to CPU {args.server_cpu}; load: smtp-blaster "
             + (f"open loop {args.rate} msg/s for {args.secs} s" if args.rate
                else f"closed loop, {args.messages} messages")
             + f", 32 connections, 1 KiB, and watchers.py, both on CPU "
             f"{args.load_cpu}. {args.watchers} WebSockets + {args.watchers} long polls. "
             f"Medians of {args.rounds} rounds (variants interleaved).", "",
             "| variant | server CPU us/msg | msg/s | RSS empty KiB | RSS with watchers KiB | bytes/watcher | idle server CPU ms/s | frames sent (server) | frames received | long-poll answers | dropped slow |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for variant in VARIANTS:
        rs = [r for r in records if r["variant"] == variant]

        def m(key, digits=1):
            v = med([r.get(key) for r in rs])
            return "-" if v is None else f"{v:.{digits}f}"

        def mc(key):
            v = med([(r.get("watcher_counts") or {}).get(key) for r in rs])
            return "-" if v is None else f"{v:.0f}"
        lines.append(f"| {variant} | {m('cpu_us_per_msg')} | {m('msgs_per_s', 0)} | {m('rss_empty_kib', 0)} | "
                     f"{m('rss_watched_kib', 0)} | {m('bytes_per_watcher', 0)} | {m('idle_cpu_ms_per_s', 2)} | "
                     f"{m('server_frames', 0)} | {mc('ws_frames')} | {mc('poll_answers')} | {m('server_dropped_slow', 0)} |")
    lines += ["", "Load average at each run: " + ", ".join(f"{r['load']:.2f}" for r in records), ""]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
