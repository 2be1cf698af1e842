#!/usr/bin/env python3
"""How soon an IMAP client in IDLE hears of a new message: its 250 -> `* n EXISTS`.

Starts Mayfly (`--cores 1`, pinned to SERVER_CPUS, default CPU 0) with an IMAP listener,
pins itself to LOAD_CPUS (default CPU 1), logs one IMAP client in, SELECTs an inbox and
IDLEs; then, per probe, sends one small message to that inbox over a kept-open SMTP
connection and timestamps, with both sockets in one select loop, the arrival of the final
"250" and of the "* n EXISTS" line. The number the target is about is EXISTS minus 250
(negative when the push overtook the 250: the shard signals the idler when it stores,
before the reply is written); the time from the final dot to EXISTS is reported too.

Two phases: idle (nothing else running) and loaded (smtp-blaster in open loop at --rate
messages/s to other inboxes, on the load CPU, while the probes run).

Usage: loadtest/bench/idle_probe.py [--probes 400] [--rate 20000] [--out DIR]
Environment: MAYFLY, SMTP_BLASTER (binaries; default target/release/...), SERVER_CPUS, LOAD_CPUS.
Prints the results and writes DIR/<date>-<commit>-<machine>-idle-probe.json and .md.
Python 3 standard library only; 127.0.0.1 only.
"""

import argparse
import datetime
import json
import os
import select
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def start_mayfly(binary, cpus):
    cmd = ["taskset", "-c", cpus, binary, "--cores", "1", "--smtp", "127.0.0.1:0",
           "--http", "127.0.0.1:0", "--imap", "127.0.0.1:0", "--max-memory", "512MiB",
           "--max-messages-per-inbox", "100000", "--log-level", "warn"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    fields = dict(field.split("=", 1) for field in line.split()[2:])
    return proc, fields


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


class Lines:
    """Line reader over a non-blocking-friendly socket, with arrival times."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def pop(self):
        if b"\n" not in self.buf:
            return None
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def line(self):
        while True:
            line = self.pop()
            if line is not None:
                return line
            self.fill()


def smtp_reply(lines):
    while True:
        line = lines.line()
        if line[3:4] != b"-":
            return int(line[:3])


def pct(sorted_vals, q):
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def run_probes(smtp_addr, imap_addr, n_probes, address):
    imap = socket.create_connection(imap_addr, timeout=10)
    imap.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    il = Lines(imap)
    il.line()
    for tag, command in (("a", f'LOGIN "{address}" x'), ("b", "SELECT INBOX")):
        imap.sendall(f"{tag} {command}\r\n".encode())
        while not il.line().startswith(tag.encode() + b" "):
            pass
    imap.sendall(b"i IDLE\r\n")
    assert il.line().startswith(b"+"), "IDLE not accepted"
    smtp = socket.create_connection(smtp_addr, timeout=10)
    smtp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sl = Lines(smtp)
    smtp_reply(sl)
    smtp.sendall(b"EHLO probe.test\r\n")
    smtp_reply(sl)
    from_250, from_dot = [], []
    body = b"Subject: probe\r\n\r\nprobe\r\n.\r\n"
    for n in range(n_probes):
        smtp.sendall(f"MAIL FROM:<p@probe.test>\r\nRCPT TO:<{address}>\r\nDATA\r\n".encode())
        for _ in range(3):
            smtp_reply(sl)
        dot_at = time.perf_counter()
        smtp.sendall(body)
        t_250 = t_exists = None
        while t_250 is None or t_exists is None:
            readable, _, _ = select.select([smtp, imap], [], [], 10)
            now = time.perf_counter()
            if not readable:
                raise TimeoutError(f"probe {n}: no 250 or EXISTS within 10 s")
            for sock in readable:
                if sock is smtp:
                    sl.fill()
                    while t_250 is None and (line := sl.pop()) is not None:
                        if line.startswith(b"250 "):
                            t_250 = now
                else:
                    il.fill()
                    while t_exists is None and (line := il.pop()) is not None:
                        if line.startswith(b"* ") and line.rstrip().endswith(b"EXISTS"):
                            t_exists = now
        from_250.append((t_exists - t_250) * 1e6)
        from_dot.append((t_exists - dot_at) * 1e6)
    imap.sendall(b"DONE\r\n")
    smtp.sendall(b"QUIT\r\n")
    imap.close()
    smtp.close()
    s250, sdot = sorted(from_250), sorted(from_dot)
    return {
        "probes": n_probes,
        "exists_minus_250_us": {"p50": pct(s250, 0.5), "p90": pct(s250, 0.9), "p99": pct(s250, 0.99),
                                "max": s250[-1], "min": s250[0]},
        "dot_to_exists_us": {"p50": pct(sdot, 0.5), "p90": pct(sdot, 0.9), "p99": pct(sdot, 0.99),
                             "max": sdot[-1]},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probes", type=int, default=400)
    ap.add_argument("--rate", type=int, default=20000, help="background load, messages/s")
    ap.add_argument("--out", default=os.path.join(ROOT, "loadtest", "results"))
    args = ap.parse_args()
    mayfly = os.environ.get("MAYFLY", os.path.join(ROOT, "target", "release", "mayfly"))
    blaster = os.environ.get("SMTP_BLASTER", os.path.join(ROOT, "target", "release", "smtp-blaster"))
    server_cpus = os.environ.get("SERVER_CPUS", "0")
    load_cpus = os.environ.get("LOAD_CPUS", "1")
    os.sched_setaffinity(0, {int(c) for c in load_cpus.split(",")})
    proc, fields = start_mayfly(mayfly, server_cpus)
    results = {}
    try:
        smtp_addr, imap_addr = addr(fields["smtp"]), addr(fields["imap"])
        results["idle"] = run_probes(smtp_addr, imap_addr, args.probes, "idler@probe.test")
        load = subprocess.Popen(
            # --epoll: the blaster sleeps between sends instead of busy-polling the CPU the
            # probe shares with it (as bench.py's HTTP probe runs it).
            ["taskset", "-c", load_cpus, blaster, fields["smtp"], "--connections", "32",
             "--rate", str(args.rate), "--duration", "60", "--inboxes", "1000", "--size", "1024",
             "--domain", "load.test", "--pipelining", "--epoll"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        try:
            results["loaded"] = run_probes(smtp_addr, imap_addr, args.probes, "idler2@probe.test")
            results["loaded"]["background_rate"] = args.rate
        finally:
            load.terminate()
            load.wait()
    finally:
        proc.terminate()
        proc.wait()
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    stamp = datetime.datetime.now(datetime.timezone.utc)
    machine = os.environ.get("MACHINE", "vm")
    base = os.path.join(args.out, f"{stamp:%Y-%m-%d}-{commit}-{machine}-idle-probe")
    with open(base + ".json", "w") as f:
        json.dump({"date": f"{stamp:%Y-%m-%d %H%M} UTC", "commit": commit, **results}, f, indent=1)
    lines = [f"# IMAP IDLE probe {stamp:%Y-%m-%d %H%M} UTC (commit {commit}, {machine})", "",
             f"Server `--cores 1` on CPU {server_cpus}, probe and load on CPU {load_cpus}; "
             f"{args.probes} probes per phase. Times in microseconds; EXISTS-250 is negative when "
             "the push arrived before the 250.", "",
             "| phase | EXISTS-250 p50 | p90 | p99 | max | dot->EXISTS p50 | p99 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for phase in ("idle", "loaded"):
        r = results[phase]
        a, d = r["exists_minus_250_us"], r["dot_to_exists_us"]
        name = phase if phase == "idle" else f"loaded ({args.rate} msg/s to other inboxes)"
        lines.append(f"| {name} | {a['p50']:.0f} | {a['p90']:.0f} | {a['p99']:.0f} | {a['max']:.0f} | "
                     f"{d['p50']:.0f} | {d['p99']:.0f} |")
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
