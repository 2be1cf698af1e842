#!/usr/bin/env python3
"""Mayfly vs Postfix smtp-sink on one machine: the orchestrator behind loadtest/run-bench.sh.

Runs every workload against Mayfly and smtp-sink in turn (A, B, B, A, ... so neither always
goes first), the server pinned to one CPU set and the load to another, and measures:
server CPU time per message (utime+stime deltas from /proc/<pid>/stat), throughput,
client latency percentiles (smtp-blaster --json), server RSS (VmRSS), and the CPU used by
everything else on the machine during the run (to judge how noisy it was).
Then writes <out>/<date>-<commit>-<machine>.json (every run) and .md (medians and ratios).

With --catchers, each round also runs a smaller set of workloads against Mayfly, smtp-sink
and the other mail catchers (catchers.py, installed by catchers.sh), in rotating order, and
after each run counts through the server's own interface how many of the acknowledged
messages it actually holds.

The durability and restore parts (durability.py) run Mayfly alone under --durability none,
snapshot and journal, and time restarts from a journal and from a snapshot.

The mailbox part (mail_clients.py, only with --only mailbox) reads messages back over POP3 and
IMAP with mail-reader, Mayfly against Dovecot 2.3 serving the same messages.

The auth part (auth.py) measures --verify-senders: W2 with it off and on (unsigned, DKIM
RSA-2048 and Ed25519 with a warm cache, Ed25519 with a key lookup per message) against a
private nsd, and W2 beside sessions whose DNS never answers.
The mx part (mx.py, only with --only mx): a new connection and STARTTLS per message from many
slow senders, Mayfly against Postfix smtpd, Haraka and smtp-sink (plaintext), plus the bare
rustls handshake that makes the TLS part of the floor.

Every run is bounded in messages and time; everything talks to 127.0.0.1 only.
Python 3 standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import auth  # loadtest/bench/auth.py
import catchers
import durability
import mail_clients  # loadtest/bench/mail_clients.py
import mx  # loadtest/bench/mx.py

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
# smtp-source -l 1024 sends 1,136 bytes with its headers; the blaster's "1 KiB" messages are
# sized the same so both clients put the same bytes on the wire.
SIZE_1K_BYTES = 1136
SIZE_100K_BYTES = 102400
# Every child run is killed after this long, whatever it was asked to do.
RUN_TIMEOUT_SECS = 120
# Mayfly settings shared by the interleaved workloads: room for 10k idle sessions plus load.
MAYFLY_SESSIONS_PER_CORE = 12000
MAYFLY_MEMORY = "512MiB"
# smtp-sink: -m is its concurrency cap (default 256); the idle workload needs more.
SINK_CONCURRENCY = 12000
SINK_BACKLOG = 1024
RSS_SAMPLE_SECS = 0.5
# The catcher comparison: counts small enough for catchers that keep every message in memory.
CATCH_1K_MESSAGES = 20000
CATCH_100K_MESSAGES = 2000
CATCH_QUICK_1K_MESSAGES = 5000
CATCH_QUICK_100K_MESSAGES = 500
# smtp-source sends every message to this one address (-t); the blaster to user0..user999.
CATCH_SOURCE_RCPT = "sink@example.test"
BLASTER_DOMAIN = "example.test"
BLASTER_INBOXES = 1000
# After a run, wait (at most this long) until the server stops using CPU: some catchers
# store asynchronously, after the reply has gone out.
SETTLE_MAX_SECS = 15
SETTLE_SAMPLE_SECS = 0.1
SETTLE_QUIET_SAMPLES = 3
# If a catcher still holds fewer than acknowledged, look again this often before believing it.
RECOUNT_TRIES = 3
RECOUNT_SLEEP_SECS = 1.0


# ----------------------------------------------------------------------------- /proc helpers

def proc_cpu_ticks(pid):
    """(utime, stime) of a process in clock ticks, all threads included."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]), int(fields[12])


def cpu_list(spec):
    """CPU numbers of a taskset list such as "0", "0,2" or "0-3"."""
    cpus = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def interrupts(name, cpus):
    """Sum of the /proc/interrupts line `name` (e.g. "RES") over the given CPUs."""
    with open("/proc/interrupts") as f:
        header = f.readline().split()
        for line in f:
            parts = line.split()
            if parts and parts[0] == name + ":":
                counts = parts[1:1 + len(header)]
                return sum(int(counts[header.index(f"CPU{c}")]) for c in cpus)
    return None


def proc_status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def system_busy_ticks():
    """Busy (non-idle, non-iowait) ticks of all CPUs together, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts[:8]]
    return sum(vals) - vals[3] - vals[4]


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def metric_sum(text, name):
    """Sum of all samples of a Prometheus metric (over shards and labels)."""
    total = 0.0
    found = False
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


# ----------------------------------------------------------------------------- servers

class Server:
    """A server process pinned to the server CPUs, with its SMTP (and maybe HTTP) address."""

    def __init__(self, kind, proc, smtp, http=None, scratch=None):
        self.kind, self.proc, self.smtp, self.http = kind, proc, smtp, http
        # a directory the server writes into (catchers), removed when it stops
        self.scratch = scratch

    @property
    def pid(self):
        return self.proc.pid

    def cpu(self):
        return proc_cpu_ticks(self.pid)

    def rss_kib(self):
        return proc_status_kib(self.pid, "VmRSS")

    def hwm_kib(self):
        return proc_status_kib(self.pid, "VmHWM")

    def metrics(self):
        if not self.http:
            return None
        try:
            return http_get(f"http://{self.http}/metrics")
        except OSError:
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


def mayfly_env():
    """The load comes from one address (127.0.0.1) with thousands of sessions: lift the
    per-client-IP limits. Set through the environment, which binaries from before those
    limits existed ignore, so old and new builds run the same command line."""
    env = dict(os.environ)
    env["MAYFLY_MAX_SESSIONS_PER_IP"] = "0"
    env["MAYFLY_MAX_MESSAGES_PER_IP_PER_MINUTE"] = "0"
    return env


def start_mayfly(cfg, max_memory=MAYFLY_MEMORY, extra=(), cpus=None, start_timeout=60):
    cpus = cpus or cfg.server_cpus
    cmd = ["taskset", "-c", cpus, cfg.mayfly,
           "--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0",
           "--cores", str(len(_cpu_list(cpus))), "--max-memory", max_memory,
           "--max-sessions-per-core", str(MAYFLY_SESSIONS_PER_CORE),
           "--max-http-connections-per-core", "1000",
           "--shutdown-grace", "1s", "--log-level", "warn", *extra]
    log = open(os.path.join(cfg.work, "mayfly.log"), "ab")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                            env=mayfly_env())
    line = b""
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line or proc.poll() is not None:
            break
    m = re.search(rb"smtp=(\S+) http=(\S+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"mayfly did not start: {line!r}; see {cfg.work}/mayfly.log")
    return Server("mayfly", proc, m.group(1).decode(), m.group(2).decode())


def start_sink(cfg, cpus=None):
    port = free_port()
    cmd = ["taskset", "-c", cpus or cfg.server_cpus, cfg.smtp_sink, "-u", "nobody",
           "-m", str(SINK_CONCURRENCY), f"127.0.0.1:{port}", str(SINK_BACKLOG)]
    log = open(os.path.join(cfg.work, "smtp-sink.log"), "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    addr = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("smtp-sink did not start")
    # the probe connection above is a session; let it finish before measuring
    time.sleep(0.1)
    return Server("smtp-sink", proc, addr)


def start_server(cfg, kind, mayfly_extra=(), cpus=None):
    """Start one server on `cpus` (default: the server CPUs)."""
    if kind == "mayfly":
        return start_mayfly(cfg, extra=mayfly_extra, cpus=cpus)
    if kind == "smtp-sink":
        return start_sink(cfg, cpus=cpus)
    proc, smtp, http, scratch = catchers.start(kind, cfg.catchers_dir, cpus or cfg.server_cpus, cfg.work)
    return Server(kind, proc, smtp, http, scratch)


# ----------------------------------------------------------------------------- clients

def run_measured(cfg, server, client_cmd, messages_hint=None, parse_json=True):
    """Run one client to completion and measure the server around it."""
    busy0 = system_busy_ticks()
    u0, s0 = server.cpu()
    ru0 = os.times()
    t0 = time.monotonic()
    p = subprocess.run(client_cmd, capture_output=True, timeout=RUN_TIMEOUT_SECS)
    wall = time.monotonic() - t0
    ru1 = os.times()
    u1, s1 = server.cpu()
    busy1 = system_busy_ticks()
    client_cpu = (ru1.children_user - ru0.children_user) + (ru1.children_system - ru0.children_system)
    server_cpu = ((u1 - u0) + (s1 - s0)) / CLK_TCK
    other = max(0.0, (busy1 - busy0) / CLK_TCK - server_cpu - client_cpu)
    rec = {
        "client_cmd": " ".join(client_cmd), "exit": p.returncode, "wall_s": wall,
        "server_cpu_s": server_cpu, "server_user_s": (u1 - u0) / CLK_TCK,
        "server_sys_s": (s1 - s0) / CLK_TCK, "client_cpu_s": client_cpu,
        "other_cpu_frac": other / wall / os.cpu_count() if wall > 0 else None,
        "server_rss_kib": server.rss_kib(),
    }
    if parse_json:
        try:
            j = json.loads(p.stdout)
        except ValueError:
            j = {"fatal": p.stdout.decode(errors="replace")[-500:] + p.stderr.decode(errors="replace")[-500:]}
        msgs = j.get("messages_accepted") or 0
        rec.update({
            "messages": msgs, "msgs_per_s": j.get("messages_per_sec"),
            "mb_per_s": j.get("megabytes_per_sec"),
            "lat_p50_us": (j.get("latency_us") or {}).get("p50"),
            "lat_p99_us": (j.get("latency_us") or {}).get("p99"),
            "client_idle": j.get("client_idle_fraction"),
            "errors": {"reply": j.get("reply_errors"), "conn": j.get("connection_errors"),
                       "rejected": j.get("messages_rejected"), "unfinished": j.get("messages_unfinished"),
                       "fatal": j.get("fatal")},
        })
    else:
        msgs = messages_hint
        err = p.stderr.decode(errors="replace").strip()
        rec.update({"messages": msgs, "msgs_per_s": msgs / wall if wall > 0 else None,
                    "errors": {"stderr": err[-500:] if err else None}})
    rec["cpu_us_per_msg"] = server_cpu / msgs * 1e6 if msgs else None
    rec["sys_share"] = rec["server_sys_s"] / server_cpu if server_cpu > 0 else None
    return rec


def blaster_cmd(cfg, server, *args):
    return ["taskset", "-c", cfg.load_cpus, cfg.blaster, server.smtp, "--json",
            "--timeout", "10", *args]


def source_cmd(cfg, server, *args):
    return ["taskset", "-c", cfg.load_cpus, cfg.smtp_source, *args, server.smtp]


# ----------------------------------------------------------------------------- workloads

def interleaved_workloads(cfg):
    """(name, servers, client label, command builder, messages for smtp-source)."""
    n = cfg.n_w2
    w = []
    w.append(("w2-1k", ("mayfly", "smtp-sink"), "smtp-source -d",
              lambda s: source_cmd(cfg, s, "-d", "-l", "1024", "-s", "32", "-m", str(n)), n))
    w.append(("w2-1k", ("mayfly", "smtp-sink"), "smtp-blaster",
              lambda s: blaster_cmd(cfg, s, "-c", "32", "-m", str(n), "--size", str(SIZE_1K_BYTES)), None))
    w.append(("pipelined-1k", ("mayfly", "smtp-sink"), "smtp-blaster --pipelining",
              lambda s: blaster_cmd(cfg, s, "-c", "32", "-m", str(n * 3), "--size", str(SIZE_1K_BYTES),
                                    "--pipelining"), None))
    w.append(("bdat8-1k", ("mayfly",), "smtp-blaster --bdat --in-flight 8",
              lambda s: blaster_cmd(cfg, s, "-c", "32", "-m", str(n * 10), "--size", str(SIZE_1K_BYTES),
                                    "--bdat", "--in-flight", "8"), None))
    w.append(("newconn-1k", ("mayfly", "smtp-sink"), "smtp-source",
              lambda s: source_cmd(cfg, s, "-l", "1024", "-s", "32", "-m", str(cfg.n_newconn)), cfg.n_newconn))
    w.append(("newconn-1k", ("mayfly", "smtp-sink"), "smtp-blaster --messages-per-connection 1",
              lambda s: blaster_cmd(cfg, s, "-c", "32", "-m", str(cfg.n_newconn), "--size", str(SIZE_1K_BYTES),
                                    "--messages-per-connection", "1"), None))
    w.append(("100k", ("mayfly", "smtp-sink"), "smtp-blaster --pipelining -c 16",
              lambda s: blaster_cmd(cfg, s, "-c", "16", "-d", str(cfg.secs_100k), "--size", str(SIZE_100K_BYTES),
                                    "--pipelining"), None))
    return w


def run_idle(cfg, server, rnd):
    """W2 blaster load with cfg.idle_conns mostly-idle connections held open meanwhile."""
    rss_before = server.rss_kib()
    cmd = [sys.executable, os.path.join(HERE, "idle.py"), server.smtp, "--count", str(cfg.idle_conns),
           "--cpu", cfg.load_cpus.split(",")[0].split("-")[0], "--max-secs", "300"]
    idle = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = idle.stdout.readline().decode().split()
    opened = int(line[1]) if len(line) == 3 else 0
    failed = int(line[2]) if len(line) == 3 else cfg.idle_conns
    time.sleep(0.5)
    rss_idle = server.rss_kib()
    # bounded by time, not count: smtp-sink slows to a few hundred msg/s with 10k sessions open
    rec = run_measured(cfg, server, blaster_cmd(cfg, server, "-c", "32", "-d", str(cfg.secs_idle),
                                                "--size", str(SIZE_1K_BYTES)))
    idle.stdin.close()
    try:
        idle.wait(timeout=30)
    except subprocess.TimeoutExpired:
        idle.kill()
        idle.wait()
    rec.update({"round": rnd, "workload": "idle10k-w2-1k", "server": server.kind,
                "client": f"smtp-blaster + {cfg.idle_conns} idle", "idle_open": opened,
                "idle_failed": failed, "rss_before_idle_kib": rss_before, "rss_with_idle_kib": rss_idle})
    return rec


def catcher_workloads(cfg):
    """(name, client label, command builder, messages for smtp-source, recipients used,
    whether the server gets every CPU).

    Bounded by message count, not time: a catcher keeps every message, so a run by time
    would store as much as it is fast.  No pipelining for 100 KiB, because MailCrab and
    Inbucket do not offer it (and with 100 KiB bodies one round trip per message is cheap).
    The last workload lets each server use both the server and the load CPUs (the load
    still on its own): a multi-threaded catcher then runs more than one worker, which is
    where a store that falls behind its SMTP side shows up as lost messages."""
    n, n100 = cfg.n_catch_1k, cfg.n_catch_100k
    inboxes = [f"user{i}@{BLASTER_DOMAIN}" for i in range(BLASTER_INBOXES)]
    blast = ("--inboxes", str(BLASTER_INBOXES), "--domain", BLASTER_DOMAIN)
    return [
        ("w2-1k", "smtp-source -d",
         lambda s: source_cmd(cfg, s, "-d", "-l", "1024", "-s", "32", "-m", str(n),
                              "-f", f"source@{BLASTER_DOMAIN}", "-t", CATCH_SOURCE_RCPT), n, [CATCH_SOURCE_RCPT], False),
        ("w2-1k", "smtp-blaster",
         lambda s: blaster_cmd(cfg, s, "-c", "32", "-m", str(n), "--size", str(SIZE_1K_BYTES), *blast), None, inboxes, False),
        ("pipelined-1k", "smtp-blaster --pipelining",
         lambda s: blaster_cmd(cfg, s, "-c", "32", "-m", str(n), "--size", str(SIZE_1K_BYTES), "--pipelining",
                               *blast), None, inboxes, False),
        ("100k", "smtp-blaster -c 16 (no pipelining)",
         lambda s: blaster_cmd(cfg, s, "-c", "16", "-m", str(n100), "--size", str(SIZE_100K_BYTES), *blast),
         None, inboxes, False),
        # --epoll: the client shares a CPU with the server here, and a busy-polling client
        # would take that CPU from whatever server thread is pinned to it (Mayfly pins one
        # executor per CPU; the others let the scheduler move their threads away).
        ("w2-1k-all-cpus", "smtp-blaster -c 64 --epoll, server on all CPUs",
         lambda s: blaster_cmd(cfg, s, "-c", "64", "-m", str(n), "--size", str(SIZE_1K_BYTES), "--epoll",
                               *blast), None, inboxes, True),
    ]


def wait_server_idle(server):
    """Wait, bounded, until the server has used at most one clock tick over the last few
    samples; returns (seconds waited, CPU seconds used meanwhile)."""
    t0 = time.monotonic()
    first = last = sum(server.cpu())
    deltas = []
    while time.monotonic() - t0 < SETTLE_MAX_SECS:
        time.sleep(SETTLE_SAMPLE_SECS)
        now = sum(server.cpu())
        deltas = (deltas + [now - last])[-SETTLE_QUIET_SAMPLES:]
        last = now
        if len(deltas) == SETTLE_QUIET_SAMPLES and sum(deltas) <= 1:
            break
    return time.monotonic() - t0, (last - first) / CLK_TCK


def run_catch(cfg, srv, build, n_hint, recipients):
    """One catcher-comparison run: measure, let the server settle, count what it holds."""
    rec = run_measured(cfg, srv, build(srv), messages_hint=n_hint, parse_json=n_hint is None)
    settle_s, settle_cpu = wait_server_idle(srv)
    acked = rec.get("messages") or 0
    if n_hint is not None and (rec["exit"] != 0 or rec["errors"].get("stderr")):
        acked = None  # smtp-source does not say how many of its messages were accepted
    rec.update({"settle_s": settle_s, "settle_cpu_s": settle_cpu, "acked": acked,
                "server_rss_settled_kib": srv.rss_kib()})
    cpu = rec["server_cpu_s"] + settle_cpu
    rec["cpu_us_per_msg_settled"] = cpu / acked * 1e6 if acked else None
    fatal = (rec.get("errors") or {}).get("fatal")
    if fatal and not rec.get("messages"):
        rec["unsupported"] = fatal.strip().splitlines()[-1][:200]
        return rec
    stored, tries = None, 0
    try:
        while True:
            stored = catchers.count_stored(srv.kind, srv.http, srv.scratch, recipients)
            tries += 1
            if stored is None or acked is None or stored >= acked or tries >= RECOUNT_TRIES:
                break
            time.sleep(RECOUNT_SLEEP_SECS)
    except (OSError, RuntimeError, ValueError, KeyError) as e:
        rec["count_error"] = f"{type(e).__name__}: {e}"[:300]
    rec["stored"] = stored
    rec["count_tries"] = tries
    return rec


def catcher_round(cfg, results, rnd, la, busy):
    """Every catcher workload against Mayfly, smtp-sink and each catcher, in rotating order."""
    kinds = ["mayfly", "smtp-sink", *cfg.catchers]
    for name, client, build, n_hint, recipients, all_cpus in catcher_workloads(cfg):
        if cfg.catch_workloads and name not in cfg.catch_workloads:
            continue
        cpus = f"{cfg.server_cpus},{cfg.load_cpus}" if all_cpus else None
        shift = (rnd - 1) % len(kinds)
        for kind in kinds[shift:] + kinds[:shift]:
            # Mayfly keeps at most --max-messages-per-inbox per inbox (1000 by default) and drops
            # the oldest by design; smtp-source sends everything to one inbox, so raise it
            extra = ("--max-messages-per-inbox", str(n_hint)) if kind == "mayfly" and n_hint else ()
            try:
                srv = start_server(cfg, kind, mayfly_extra=extra, cpus=cpus)
            except RuntimeError as e:
                log(f"  catch {name:12} {kind:9} did not start: {e}")
                results["catcher_runs"].append({"round": rnd, "workload": name, "server": kind, "client": client,
                                                "start_error": str(e)[:300]})
                continue
            try:
                rec = run_catch(cfg, srv, build, n_hint, recipients)
            finally:
                srv.stop()
            rec.update({"round": rnd, "workload": name, "server": kind, "client": client,
                        "server_cpus": cpus or cfg.server_cpus, "loadavg": la, "other_busy_cpus": busy})
            results["catcher_runs"].append(rec)
            if rec.get("unsupported"):
                log(f"  catch {name:12} {kind:9} {client:36} not supported: {rec['unsupported']}")
                continue
            log(f"  catch {name:12} {kind:9} {client:36} {fmt(rec.get('msgs_per_s'), 0):>8} msg/s "
                f"{fmt(rec.get('cpu_us_per_msg_settled'), 1):>7} us/msg stored {fmt(rec.get('stored'), 0)}"
                f"/{fmt(rec.get('acked'), 0)} other {fmt(rec.get('other_cpu_frac'), 2)}"
                f"{'  COUNT ' + rec['count_error'] if rec.get('count_error') else ''}"
                f"{'  ERR ' + json.dumps(rec['errors']) if bad(rec) else ''}")


def catchers_only(cfg, results):
    for rnd in range(1, cfg.rounds + 1):
        la, busy = wait_quiet(cfg)
        log(f"catchers round {rnd}/{cfg.rounds} (load average {la:.2f}, other work {busy:.2f} CPUs)")
        catcher_round(cfg, results, rnd, la, busy)


def busy_cpus(secs=1.0):
    """CPUs' worth of busy time on the whole machine over the next `secs` seconds."""
    b0, t0 = system_busy_ticks(), time.monotonic()
    time.sleep(secs)
    return (system_busy_ticks() - b0) / CLK_TCK / (time.monotonic() - t0)


def wait_quiet(cfg):
    """Wait (bounded) until the rest of the machine is quiet, and say how quiet it was.

    Called between runs, when none of ours is running, so the busy CPUs sampled here are
    other people's work.  The 1-minute load average would also count our own last run (a
    busy-polling client and a busy server are two runnable threads), so it is recorded but
    not used to decide."""
    t0 = time.monotonic()
    busy = busy_cpus()
    while busy >= cfg.max_load and time.monotonic() - t0 < cfg.max_wait_quiet:
        busy = busy_cpus(2.0)
    return loadavg(), busy


def interleaved(cfg, results):
    for rnd in range(1, cfg.rounds + 1):
        la, busy = wait_quiet(cfg)
        log(f"round {rnd}/{cfg.rounds} (load average {la:.2f}, other work {busy:.2f} CPUs)")
        for name, servers, client, build, n_hint in interleaved_workloads(cfg):
            order = servers if rnd % 2 else tuple(reversed(servers))
            for kind in order:
                srv = start_server(cfg, kind)
                try:
                    rec = run_measured(cfg, srv, build(srv), messages_hint=n_hint, parse_json=n_hint is None)
                finally:
                    srv.stop()
                rec.update({"round": rnd, "workload": name, "server": kind, "client": client,
                            "loadavg": la, "other_busy_cpus": busy})
                results["runs"].append(rec)
                log(f"  {name:13} {kind:9} {client:38} {fmt(rec.get('msgs_per_s'), 0):>9} msg/s "
                    f"{fmt(rec.get('cpu_us_per_msg'), 1):>7} us/msg  other {fmt(rec.get('other_cpu_frac'), 2)}"
                    f"{'  ERR ' + json.dumps(rec['errors']) if bad(rec) else ''}")
        # smtp-sink settles 10k connections slowly (about half within the 20 s allowed), so it
        # is measured in the first round only, as a reference
        idle_kinds = ("mayfly", "smtp-sink") if rnd == 1 else ("mayfly",)
        for kind in idle_kinds:
            srv = start_server(cfg, kind)
            try:
                rec = run_idle(cfg, srv, rnd)
            finally:
                srv.stop()
            rec["loadavg"] = la
            rec["other_busy_cpus"] = busy
            results["runs"].append(rec)
            log(f"  idle10k       {kind:9} {rec['idle_open']} open/{rec['idle_failed']} failed "
                f"{fmt(rec.get('msgs_per_s'), 0):>9} msg/s {fmt(rec.get('cpu_us_per_msg'), 1):>7} us/msg "
                f"RSS {rec['rss_before_idle_kib']} -> {rec['rss_with_idle_kib']} KiB"
                f"{'  ERR ' + json.dumps(rec['errors']) if bad(rec) else ''}")
        if cfg.catchers:
            catcher_round(cfg, results, rnd, la, busy)


def bad(rec):
    e = rec.get("errors") or {}
    return rec.get("exit") not in (0, None) or any(v for v in e.values())


def ring_wrap(cfg, results):
    """Long run with a small ring: throughput per slice and RSS over time as eviction runs."""
    la, busy = wait_quiet(cfg)
    log(f"ring wrap: --max-memory {cfg.ring_memory}, {cfg.ring_slices} slices of {cfg.ring_slice_secs}s "
        f"(load average {la:.2f}, other work {busy:.2f} CPUs)")
    srv = start_mayfly(cfg, max_memory=cfg.ring_memory)
    rss = []
    slices = []
    t_start = time.monotonic()
    try:
        for i in range(cfg.ring_slices):
            cmd = blaster_cmd(cfg, srv, "-c", "32", "-d", str(cfg.ring_slice_secs), "--size", str(SIZE_1K_BYTES),
                              "--pipelining", "--inboxes", "10000")
            # sample RSS while the slice runs: start the client, poll, then collect
            busy0 = system_busy_ticks()
            u0, s0 = srv.cpu()
            t0 = time.monotonic()
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            while p.poll() is None and time.monotonic() - t0 < RUN_TIMEOUT_SECS:
                rss.append((round(time.monotonic() - t_start, 2), srv.rss_kib()))
                time.sleep(RSS_SAMPLE_SECS)
            out, _ = p.communicate(timeout=RUN_TIMEOUT_SECS)
            wall = time.monotonic() - t0
            u1, s1 = srv.cpu()
            busy1 = system_busy_ticks()
            j = json.loads(out) if out.strip().startswith(b"{") else {}
            m = srv.metrics() or ""
            cpu = ((u1 - u0) + (s1 - s0)) / CLK_TCK
            msgs = j.get("messages_accepted") or 0
            rec = {"slice": i + 1, "msgs_per_s": j.get("messages_per_sec"), "messages": msgs,
                   "cpu_us_per_msg": cpu / msgs * 1e6 if msgs else None,
                   "held": metric_sum(m, "mayfly_messages_held"),
                   "ring_used": metric_sum(m, "mayfly_ring_bytes_used"),
                   "ring_bytes": metric_sum(m, "mayfly_ring_bytes"),
                   "evicted_capacity": _evicted(m, "capacity"),
                   "evicted_total": metric_sum(m, "mayfly_messages_evicted_total"),
                   "stored_total": metric_sum(m, "mayfly_messages_stored_total"),
                   "bytes_stored_total": metric_sum(m, "mayfly_bytes_stored_total"),
                   "rss_kib": srv.rss_kib(), "lat_p99_us": (j.get("latency_us") or {}).get("p99"),
                   "other_cpu_frac": max(0.0, (busy1 - busy0) / CLK_TCK - cpu) / wall / os.cpu_count(),
                   "errors": {"reply": j.get("reply_errors"), "conn": j.get("connection_errors"),
                              "fatal": j.get("fatal")}}
            slices.append(rec)
            wraps = (rec["bytes_stored_total"] or 0) / (rec["ring_bytes"] or 1)
            log(f"  slice {i + 1:2}: {fmt(rec['msgs_per_s'], 0):>8} msg/s {fmt(rec['cpu_us_per_msg'], 1):>6} us/msg "
                f"held {fmt(rec['held'], 0)} evicted {fmt(rec['evicted_total'], 0)} ring wraps {wraps:.1f} "
                f"RSS {rec['rss_kib']} KiB")
    finally:
        srv.stop()
    results["ring_wrap"] = {"max_memory": cfg.ring_memory, "slice_secs": cfg.ring_slice_secs,
                            "loadavg": la, "other_busy_cpus": busy, "slices": slices, "rss_samples": rss}


def _evicted(m, reason):
    for line in m.splitlines():
        if line.startswith("mayfly_messages_evicted_total") and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def held_series(cfg, results):
    """Throughput and CPU/msg as the store fills from empty to cfg.held_target messages."""
    la, busy = wait_quiet(cfg)
    log(f"held series: --max-memory {cfg.held_memory}, slices of {cfg.held_slice} messages up to "
        f"{cfg.held_target} held (load average {la:.2f}, other work {busy:.2f} CPUs)")
    srv = start_mayfly(cfg, max_memory=cfg.held_memory)
    slices = []
    try:
        rss0 = srv.rss_kib()
        held = 0.0
        i = 0
        while held < cfg.held_target + cfg.held_slice and i < 40:
            i += 1
            m0 = metric_sum(srv.metrics() or "", "mayfly_messages_held") or 0
            rec = run_measured(cfg, srv, blaster_cmd(cfg, srv, "-c", "32", "-m", str(cfg.held_slice),
                                                     "--size", str(SIZE_1K_BYTES), "--pipelining",
                                                     "--inboxes", str(cfg.held_inboxes)))
            m = srv.metrics() or ""
            held = metric_sum(m, "mayfly_messages_held") or 0
            rec.update({"slice": i, "held_before": m0, "held_after": held,
                        "evicted_total": metric_sum(m, "mayfly_messages_evicted_total"),
                        "ring_used": metric_sum(m, "mayfly_ring_bytes_used")})
            slices.append(rec)
            log(f"  held {m0:>9.0f} -> {held:>9.0f}: {fmt(rec['msgs_per_s'], 0):>8} msg/s "
                f"{fmt(rec['cpu_us_per_msg'], 1):>6} us/msg RSS {rec['server_rss_kib']} KiB "
                f"evicted {fmt(rec['evicted_total'], 0)}{'  ERR' if bad(rec) else ''}")
    finally:
        srv.stop()
    results["held_series"] = {"max_memory": cfg.held_memory, "inboxes": cfg.held_inboxes,
                              "rss_start_kib": rss0, "loadavg": la, "other_busy_cpus": busy, "slices": slices}


def sweeps(cfg, results):
    """How cost grows with message size and with active connections (one run per point)."""
    la, busy = wait_quiet(cfg)
    log(f"sweeps: message size and active connections, {cfg.sweep_secs} s per point (load average {la:.2f}, other work {busy:.2f} CPUs)")
    out = {"loadavg": la, "other_busy_cpus": busy, "secs": cfg.sweep_secs, "size": [], "conns": []}
    points = [("size", str(size), ["-c", "16", "--size", str(size), "--pipelining"]) for size in cfg.sweep_sizes]
    points += [("conns", str(c), ["-c", str(c), "--size", str(SIZE_1K_BYTES)]) for c in cfg.sweep_conns]
    for i, (axis, value, cargs) in enumerate(points):
        for kind in (("mayfly", "smtp-sink") if i % 2 == 0 else ("smtp-sink", "mayfly")):
            srv = start_server(cfg, kind)
            try:
                rec = run_measured(cfg, srv, blaster_cmd(cfg, srv, "-d", str(cfg.sweep_secs), *cargs))
            finally:
                srv.stop()
            rec.update({"server": kind, axis: int(value)})
            out[axis].append(rec)
            log(f"  {axis} {value:>8} {kind:9} {fmt(rec.get('msgs_per_s'), 0):>8} msg/s "
                f"{fmt(rec.get('mb_per_s'), 0):>6} MB/s {fmt(rec.get('cpu_us_per_msg'), 1):>7} us/msg "
                f"other {fmt(rec.get('other_cpu_frac'), 2)}{'  ERR' if bad(rec) else ''}")
    results["sweeps"] = out


def http_probe(cfg, results):
    """final 250 -> listed over HTTP, with and without blaster load."""
    la, busy = wait_quiet(cfg)
    log(f"HTTP probe: {cfg.probes} probes idle, then under load (--rate {cfg.probe_rate}) "
        f"(load average {la:.2f}, other work {busy:.2f} CPUs)")
    srv = start_mayfly(cfg)
    out = {"loadavg": la, "other_busy_cpus": busy}
    cpu = cfg.load_cpus.split(",")[0].split("-")[0]
    probe = [sys.executable, os.path.join(HERE, "probe.py"), "--smtp", srv.smtp, "--http", srv.http,
             "--probes", str(cfg.probes), "--cpu", cpu, "--max-secs", "60"]
    def measured_probe():
        busy0, (u0, s0), ru0, t0 = system_busy_ticks(), srv.cpu(), os.times(), time.monotonic()
        p = subprocess.run(probe, capture_output=True, timeout=RUN_TIMEOUT_SECS)
        busy1, (u1, s1), ru1, wall = system_busy_ticks(), srv.cpu(), os.times(), time.monotonic() - t0
        r = json.loads(p.stdout or b"{}")
        server = ((u1 - u0) + (s1 - s0)) / CLK_TCK
        children = (ru1.children_user - ru0.children_user) + (ru1.children_system - ru0.children_system)
        # the blaster under load is still running, so its CPU counts as "other" here: subtract
        # it separately once it has finished (see load_cpu_s)
        r["server_cpu_frac"] = server / wall
        r["busy_cpu_frac"] = (busy1 - busy0) / CLK_TCK / wall / os.cpu_count()
        r["nonserver_nonprobe_cpu_s"] = max(0.0, (busy1 - busy0) / CLK_TCK - server - children)
        r["wall_s"] = wall
        return r

    try:
        out["idle"] = measured_probe()
        load = subprocess.Popen(blaster_cmd(cfg, srv, "-c", "32", "-d", str(cfg.probe_load_secs), "--size",
                                            str(SIZE_1K_BYTES), "--rate", str(cfg.probe_rate), "--pipelining", "--epoll"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)
        out["loaded"] = measured_probe()
        lo, _ = load.communicate(timeout=RUN_TIMEOUT_SECS)
        j = json.loads(lo) if lo.strip().startswith(b"{") else {}
        out["load"] = {"msgs_per_s": j.get("messages_per_sec"), "lat_p99_us": (j.get("latency_us") or {}).get("p99"),
                       "errors": j.get("reply_errors"), "fatal": j.get("fatal")}
    finally:
        srv.stop()
    results["http_probe"] = out
    for k in ("idle", "loaded"):
        r = out.get(k, {})
        log(f"  {k:6}: {r.get('probes')} probes p50 {fmt(r.get('p50_us'), 0)} us p99 {fmt(r.get('p99_us'), 0)} us "
            f"max {fmt(r.get('max_us'), 0)} us empty GETs {r.get('empty_gets')} errors {r.get('errors')}; "
            f"server CPU {fmt(r.get('server_cpu_frac'), 2)}, machine busy {fmt(r.get('busy_cpu_frac'), 2)}")
    log(f"  load during probes: {fmt(out.get('load', {}).get('msgs_per_s'), 0)} msg/s")


# ----------------------------------------------------------------------------- report

def fmt(v, digits):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def summarize(results):
    """Medians per (workload, client, server) and Mayfly/smtp-sink ratios."""
    groups = {}
    for r in results["runs"]:
        groups.setdefault((r["workload"], r["client"]), {}).setdefault(r["server"], []).append(r)
    rows = []
    for (wl, client), by in groups.items():
        row = {"workload": wl, "client": client}
        for kind, runs in by.items():
            row[kind] = {k: med([x.get(k) for x in runs]) for k in
                         ("msgs_per_s", "mb_per_s", "cpu_us_per_msg", "sys_share", "lat_p50_us", "lat_p99_us",
                          "server_rss_kib", "other_cpu_frac", "client_idle", "rss_with_idle_kib",
                          "rss_before_idle_kib")}
            row[kind]["runs"] = len(runs)
            row[kind]["all_msgs_per_s"] = [x.get("msgs_per_s") for x in runs]
            row[kind]["all_cpu_us_per_msg"] = [x.get("cpu_us_per_msg") for x in runs]
            row[kind]["errors"] = sum(1 for x in runs if bad(x))
        a, b = row.get("mayfly"), row.get("smtp-sink")
        if a and b:
            row["ratio_throughput"] = _ratio(a["msgs_per_s"], b["msgs_per_s"])
            row["ratio_cpu_per_msg"] = _ratio(a["cpu_us_per_msg"], b["cpu_us_per_msg"])
        rows.append(row)
    return rows


def summarize_catchers(results):
    """Medians per (workload, client, server) of the catcher comparison, with stored/acked
    summed over the rounds and the worst round's share."""
    groups = {}
    for r in results.get("catcher_runs", []):
        groups.setdefault((r["workload"], r["client"]), {}).setdefault(r["server"], []).append(r)
    rows = []
    for (wl, client), by in groups.items():
        row = {"workload": wl, "client": client, "servers": {}}
        for kind, runs in by.items():
            ok = [x for x in runs if not x.get("unsupported") and not x.get("start_error")]
            x = {k: med([y.get(k) for y in ok]) for k in
                 ("msgs_per_s", "cpu_us_per_msg", "cpu_us_per_msg_settled", "settle_s", "server_rss_kib",
                  "other_cpu_frac", "lat_p50_us", "lat_p99_us")}
            x["runs"] = len(ok)
            x["unsupported"] = next((y.get("unsupported") or y.get("start_error") for y in runs
                                     if y.get("unsupported") or y.get("start_error")), None)
            x["all_msgs_per_s"] = [y.get("msgs_per_s") for y in ok]
            x["all_cpu_us_per_msg_settled"] = [y.get("cpu_us_per_msg_settled") for y in ok]
            counted = [y for y in ok if y.get("stored") is not None and y.get("acked")]
            x["stored_sum"] = sum(y["stored"] for y in counted) if counted else None
            x["acked_sum"] = sum(y["acked"] for y in counted) if counted else None
            x["worst_stored_frac"] = min((y["stored"] / y["acked"] for y in counted), default=None)
            x["all_stored"] = [y.get("stored") for y in ok]
            x["all_acked"] = [y.get("acked") for y in ok]
            x["errors"] = sum(1 for y in ok if bad(y))
            x["reply_errors"] = [(y.get("errors") or {}).get("reply") for y in ok if (y.get("errors") or {}).get("reply")]
            x["count_errors"] = [y["count_error"] for y in ok if y.get("count_error")]
            row["servers"][kind] = x
        rows.append(row)
    return rows


def _ratio(a, b):
    return a / b if a is not None and b else None


def targets(results, rows):
    """The issue's targets, each with the measured value and whether it is met."""
    by = {(r["workload"], r["client"]): r for r in rows}

    def get(wl, client, kind, key):
        return (by.get((wl, client)) or {}).get(kind, {}).get(key)

    def per_core(us):
        return 1e6 / us if us else None

    out = []

    def add(name, value, ok):
        out.append(f"| {name} | {value} | {'met' if ok else ('missed' if ok is not None else '-')} |")

    a = get("w2-1k", "smtp-source -d", "mayfly", "cpu_us_per_msg")
    b = get("w2-1k", "smtp-source -d", "smtp-sink", "cpu_us_per_msg")
    add("W2 (smtp-source -d, 32 sessions): Mayfly CPU/msg <= smtp-sink's",
        f"{fmt(a, 1)} vs {fmt(b, 1)} us ({fmt(_ratio(a, b), 2)}x)", a <= b if a and b else None)
    a = get("w2-1k", "smtp-blaster", "mayfly", "cpu_us_per_msg")
    b = get("w2-1k", "smtp-blaster", "smtp-sink", "cpu_us_per_msg")
    add("W2 with smtp-blaster as client: Mayfly CPU/msg <= smtp-sink's",
        f"{fmt(a, 1)} vs {fmt(b, 1)} us ({fmt(_ratio(a, b), 2)}x)", a <= b if a and b else None)
    a = get("pipelined-1k", "smtp-blaster --pipelining", "mayfly", "cpu_us_per_msg")
    b = get("pipelined-1k", "smtp-blaster --pipelining", "smtp-sink", "cpu_us_per_msg")
    add("pipelined 1 KiB >= 50,000 msg/s per core (1e6 / CPU us per msg)",
        f"{fmt(per_core(a), 0)} msg/s per core ({fmt(get('pipelined-1k', 'smtp-blaster --pipelining', 'mayfly', 'msgs_per_s'), 0)} measured)",
        per_core(a) >= 50000 if a else None)
    add("pipelined 1 KiB: Mayfly CPU/msg < smtp-sink's", f"{fmt(a, 1)} vs {fmt(b, 1)} us ({fmt(_ratio(a, b), 2)}x)",
        a < b if a and b else None)
    a = get("bdat8-1k", "smtp-blaster --bdat --in-flight 8", "mayfly", "cpu_us_per_msg")
    add("BDAT, 8 in flight, 1 KiB >= 250,000 msg/s per core",
        f"{fmt(per_core(a), 0)} msg/s per core ({fmt(get('bdat8-1k', 'smtp-blaster --bdat --in-flight 8', 'mayfly', 'msgs_per_s'), 0)} measured)",
        per_core(a) >= 250000 if a else None)
    a = get("100k", "smtp-blaster --pipelining -c 16", "mayfly", "cpu_us_per_msg")
    gbps = SIZE_100K_BYTES / a / 1000 if a else None
    add("100 KiB >= 2 GB/s per core (bytes / CPU time)", f"{fmt(gbps, 2)} GB/s per core", gbps >= 2 if gbps else None)
    hp = (results.get("http_probe") or {}).get("loaded") or {}
    p99 = hp.get("p99_us")
    add("final 250 -> listed over HTTP, p99 < 1 ms under load", f"p99 {fmt(p99, 0)} us (p50 {fmt(hp.get('p50_us'), 0)} us)",
        p99 < 1000 if p99 else None)
    hs = (results.get("held_series") or {}).get("slices") or []
    if len(hs) >= 2:
        f, l = hs[0], hs[-1]
        r_cpu = _ratio(l.get("cpu_us_per_msg"), f.get("cpu_us_per_msg"))
        add(f"{fmt(l.get('held_before'), 0)} held vs empty store: within 10%",
            f"CPU/msg {fmt(r_cpu, 2)}x, throughput {fmt(_ratio(l.get('msgs_per_s'), f.get('msgs_per_s')), 2)}x",
            r_cpu <= 1.10 if r_cpu else None)
        rss0 = results["held_series"]["rss_start_kib"]
        per_msg = (l["server_rss_kib"] - rss0) * 1024 / max(1, l["held_after"])
        add("RSS within --max-memory plus a fixed overhead per held message",
            f"{per_msg:.0f} bytes per held message beyond the prefaulted ring", None)
    src = get("w2-1k", "smtp-source -d", "smtp-sink", "msgs_per_s")
    bl = get("w2-1k", "smtp-blaster", "smtp-sink", "msgs_per_s")
    pl = get("pipelined-1k", "smtp-blaster --pipelining", "smtp-sink", "msgs_per_s")
    add("blaster drives smtp-sink >= smtp-source on W2", f"{fmt(_ratio(bl, src), 2)}x",
        bl >= src if bl and src else None)
    add("blaster with pipelining drives smtp-sink >= 2x smtp-source", f"{fmt(_ratio(pl, src), 2)}x",
        pl >= 2 * src if pl and src else None)
    if not out:
        return []
    return ["## Targets", "", "| target | measured (medians) | |", "| --- | --- | --- |", *out, ""]


def markdown(results, rows):
    m = results["meta"]
    L = [f"# Mayfly benchmark {m['date']} (commit {m['commit']}, {m['machine']})", ""]
    L.append(f"Machine: {m['cpu_model']}, {m['ncpu']} CPUs, Linux {m['kernel']}; server on CPU {m['server_cpus']}"
             f" (`--cores {m['server_cores']}`), load on CPU {m['load_cpus']}.")
    L.append(f"Mode: {'quick' if m['quick'] else 'full'}, {m['rounds']} rounds, interleaved; load average "
             f"{m['loadavg_start']:.2f} at start, {m['loadavg_end']:.2f} at the end.")
    L.append("Numbers are medians over rounds; CPU is the server's utime+stime per accepted message.")
    L.append("")
    if not rows:
        # only the catcher comparison, or only the durability parts, were run
        L += catchers_markdown(results)
        L += durability.markdown(sys.modules[__name__], results)
        L += mail_clients.markdown(sys.modules[__name__], results)
        L += auth.markdown(sys.modules[__name__], results)
        L += mx.markdown(sys.modules[__name__], results)
        return "\n".join(L) + "\n"
    L.append("| workload | client | Mayfly msg/s | smtp-sink msg/s | ratio | Mayfly CPU us/msg | smtp-sink CPU us/msg | "
             "ratio | Mayfly sys share | Mayfly p50/p99 us | smtp-sink p50/p99 us | other CPU |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        a, b = r.get("mayfly", {}), r.get("smtp-sink", {})
        L.append(f"| {r['workload']} | {r['client']} | {fmt(a.get('msgs_per_s'), 0)} | {fmt(b.get('msgs_per_s'), 0)} | "
                 f"{fmt(r.get('ratio_throughput'), 2)} | {fmt(a.get('cpu_us_per_msg'), 1)} | "
                 f"{fmt(b.get('cpu_us_per_msg'), 1)} | {fmt(r.get('ratio_cpu_per_msg'), 2)} | "
                 f"{fmt(a.get('sys_share'), 2)} | {fmt(a.get('lat_p50_us'), 0)}/{fmt(a.get('lat_p99_us'), 0)} | "
                 f"{fmt(b.get('lat_p50_us'), 0)}/{fmt(b.get('lat_p99_us'), 0)} | "
                 f"{fmt(max([x for x in (a.get('other_cpu_frac'), b.get('other_cpu_frac')) if x is not None], default=None), 2)} |")
    L.append("")
    for r in rows:
        if r["workload"] == "100k":
            for k in ("mayfly", "smtp-sink"):
                if r.get(k, {}).get("mb_per_s") is not None:
                    L.append(f"100 KiB, {k}: {fmt(r[k]['mb_per_s'], 0)} MB/s, i.e. "
                             f"{fmt(r[k]['mb_per_s'] / (r[k]['cpu_us_per_msg'] * r[k]['msgs_per_s'] / 1e6) / 1000, 2)} "
                             f"GB/s per fully busy server core.")
        if r["workload"].startswith("idle10k"):
            for k in ("mayfly", "smtp-sink"):
                x = r.get(k)
                if x:
                    L.append(f"10k idle, {k}: RSS {fmt(x['rss_before_idle_kib'], 0)} KiB -> "
                             f"{fmt(x['rss_with_idle_kib'], 0)} KiB with the idle connections open.")
    L.append("")
    L.append("Per round (msg/s and server CPU us/msg, in round order):")
    L.append("")
    for r in rows:
        for kind in ("mayfly", "smtp-sink"):
            x = r.get(kind)
            if x:
                L.append(f"- {r['workload']}, {r['client']}, {kind}: "
                         f"{', '.join(fmt(v, 0) for v in x['all_msgs_per_s'])} msg/s; "
                         f"{', '.join(fmt(v, 1) for v in x['all_cpu_us_per_msg'])} us/msg"
                         f"{'; runs with errors: ' + str(x['errors']) if x['errors'] else ''}")
    L.append("")
    sink = {(r["workload"], r["client"]): r.get("smtp-sink", {}).get("msgs_per_s") for r in rows}
    src = sink.get(("w2-1k", "smtp-source -d"))
    if src:
        L.append("Client parity on smtp-sink (blaster throughput / smtp-source -d throughput): "
                 f"W2 {fmt(_ratio(sink.get(('w2-1k', 'smtp-blaster')), src), 2)}x, "
                 f"pipelined {fmt(_ratio(sink.get(('pipelined-1k', 'smtp-blaster --pipelining')), src), 2)}x; "
                 "new connection per message (blaster / smtp-source) "
                 f"{fmt(_ratio(sink.get(('newconn-1k', 'smtp-blaster --messages-per-connection 1')), sink.get(('newconn-1k', 'smtp-source'))), 2)}x.")
        L.append("")
    L += targets(results, rows)
    rw = results.get("ring_wrap")
    if rw:
        L.append(f"## Ring wrap (--max-memory {rw['max_memory']}, pipelined 1 KiB, {rw['slice_secs']} s slices)")
        L.append("")
        L.append("| slice | msg/s | CPU us/msg | held | evicted | ring wraps | RSS KiB |")
        L.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for s in rw["slices"]:
            wraps = (s["bytes_stored_total"] or 0) / (s["ring_bytes"] or 1)
            L.append(f"| {s['slice']} | {fmt(s['msgs_per_s'], 0)} | {fmt(s['cpu_us_per_msg'], 1)} | {fmt(s['held'], 0)} | "
                     f"{fmt(s['evicted_total'], 0)} | {wraps:.1f} | {s['rss_kib']} |")
        rs = [v for _, v in rw["rss_samples"] if v]
        if rs:
            L.append("")
            L.append(f"RSS over {len(rs)} samples every {RSS_SAMPLE_SECS} s: min {min(rs)} KiB, max {max(rs)} KiB.")
        L.append("")
    hs = results.get("held_series")
    if hs:
        L.append(f"## Messages held (--max-memory {hs['max_memory']}, {hs['inboxes']} inboxes, pipelined 1 KiB)")
        L.append("")
        L.append("| held before | held after | msg/s | CPU us/msg | RSS KiB |")
        L.append("| ---: | ---: | ---: | ---: | ---: |")
        for s in hs["slices"]:
            L.append(f"| {fmt(s['held_before'], 0)} | {fmt(s['held_after'], 0)} | {fmt(s['msgs_per_s'], 0)} | "
                     f"{fmt(s['cpu_us_per_msg'], 1)} | {s['server_rss_kib']} |")
        if len(hs["slices"]) >= 2:
            first, last = hs["slices"][0], hs["slices"][-1]
            if first.get("msgs_per_s") and last.get("msgs_per_s"):
                L.append("")
                L.append(f"Last slice vs first: throughput {last['msgs_per_s'] / first['msgs_per_s']:.2f}x; "
                         f"RSS grew {last['server_rss_kib'] - hs['rss_start_kib']} KiB for "
                         f"{fmt(last['held_after'], 0)} held messages "
                         f"({(last['server_rss_kib'] - hs['rss_start_kib']) * 1024 / max(1, last['held_after']):.0f} "
                         f"bytes per message, ring prefaulted at start: RSS {hs['rss_start_kib']} KiB).")
        L.append("")
    sw = results.get("sweeps")
    if sw:
        for axis, label in (("size", "message size in bytes (pipelined, 16 connections)"),
                            ("conns", "active connections (1 KiB, no pipelining)")):
            L.append(f"## Sweep: {label}, {sw['secs']} s per point")
            L.append("")
            L.append(f"| {axis} | Mayfly msg/s | Mayfly MB/s | Mayfly CPU us/msg | smtp-sink msg/s | smtp-sink MB/s | "
                     "smtp-sink CPU us/msg | CPU ratio |")
            L.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            by = {}
            for r in sw[axis]:
                by.setdefault(r[axis], {})[r["server"]] = r
            for v in sorted(by):
                a, b = by[v].get("mayfly", {}), by[v].get("smtp-sink", {})
                L.append(f"| {v} | {fmt(a.get('msgs_per_s'), 0)} | {fmt(a.get('mb_per_s'), 0)} | "
                         f"{fmt(a.get('cpu_us_per_msg'), 1)} | {fmt(b.get('msgs_per_s'), 0)} | {fmt(b.get('mb_per_s'), 0)} | "
                         f"{fmt(b.get('cpu_us_per_msg'), 1)} | {fmt(_ratio(a.get('cpu_us_per_msg'), b.get('cpu_us_per_msg')), 2)} |")
            L.append("")
    L += catchers_markdown(results)
    hp = results.get("http_probe")
    if hp:
        L.append("## final 250 -> listed over HTTP")
        L.append("")
        for k in ("idle", "loaded"):
            r = hp.get(k, {})
            L.append(f"- {k}: {r.get('probes')} probes, p50 {fmt(r.get('p50_us'), 0)} us, p99 {fmt(r.get('p99_us'), 0)} us, "
                     f"max {fmt(r.get('max_us'), 0)} us, empty GETs {r.get('empty_gets')}, errors {r.get('errors')}; "
                     f"server core busy {fmt(r.get('server_cpu_frac'), 2)}, whole machine busy {fmt(r.get('busy_cpu_frac'), 2)}")
        L.append(f"- load during the loaded probes: {fmt(hp.get('load', {}).get('msgs_per_s'), 0)} msg/s (open loop).")
        L.append("")
    L += durability.markdown(sys.modules[__name__], results)
    L += mail_clients.markdown(sys.modules[__name__], results)
    L += auth.markdown(sys.modules[__name__], results)
    L += mx.markdown(sys.modules[__name__], results)
    return "\n".join(L) + "\n"


def catchers_markdown(results):
    rows = results.get("catcher_summary") or []
    if not rows:
        return []
    m = results["meta"]
    L = [f"## Mail catchers ({m['catch_1k_messages']:,} messages of 1 KiB, {m['catch_100k_messages']:,} of 100 KiB "
         "per run)", ""]
    L.append("Every server fresh for each run, pinned to the server CPUs, in rotating order; medians over rounds. "
             "CPU is the server's utime+stime from the client's start until the server is idle again "
             "(so work done after the last reply counts), per acknowledged message. "
             "*stored/acked* sums, over the rounds, the messages the server holds after the run (read through its "
             "own interface) against those it acknowledged with 250; the worst round's share follows.")
    L.append("")
    L.append("Versions: " + "; ".join(f"{k}: {v}" for k, v in (m.get("server_versions") or {}).items()) + ".")
    L.append("")
    for r in rows:
        L.append(f"### {r['workload']}, {r['client']}")
        L.append("")
        L.append("| server | msg/s | CPU us/msg | stored/acked | worst round | RSS after, MiB | p50/p99 us | other CPU |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for kind, x in r["servers"].items():
            if x["unsupported"] and not x["runs"]:
                L.append(f"| {kind} | not supported: {x['unsupported']} | | | | | | |")
                continue
            sa = ("n/a (discards)" if kind == "smtp-sink" else
                  f"{fmt(x['stored_sum'], 0)}/{fmt(x['acked_sum'], 0)}" if x["acked_sum"] else "-")
            worst = f"{x['worst_stored_frac'] * 100:.1f}%" if x["worst_stored_frac"] is not None else "-"
            rss = x["server_rss_kib"] / 1024 if x["server_rss_kib"] else None
            L.append(f"| {kind} | {fmt(x['msgs_per_s'], 0)} | {fmt(x['cpu_us_per_msg_settled'], 1)} | {sa} | {worst} | "
                     f"{fmt(rss, 0)} | {fmt(x['lat_p50_us'], 0)}/{fmt(x['lat_p99_us'], 0)} | "
                     f"{fmt(x['other_cpu_frac'], 2)} |")
        L.append("")
        for kind, x in r["servers"].items():
            notes = [f"not supported: {x['unsupported']}"] if x["unsupported"] else []
            if x["errors"]:
                notes.append(f"{x['errors']} of {x['runs']} runs with errors")
            if x["reply_errors"]:
                notes.append(f"error replies {x['reply_errors'][0]}")
            if x["count_errors"]:
                notes.append(f"count failed: {x['count_errors'][0]}")
            if x["runs"]:
                notes.append("per round " + ", ".join(fmt(v, 0) for v in x["all_msgs_per_s"]) + " msg/s; "
                             + ", ".join(fmt(v, 1) for v in x["all_cpu_us_per_msg_settled"]) + " us/msg"
                             + ("" if kind == "smtp-sink" else "; stored " + ", ".join(
                                 f"{fmt(a, 0)}/{fmt(b, 0)}" for a, b in zip(x["all_stored"], x["all_acked"]))))
            L.append(f"- {kind}: {'; '.join(notes)}")
        L.append("")
    return L


def server_versions(cfg):
    """Name and version of every server in the run, as each reports it."""
    out = {}
    try:
        p = subprocess.run([cfg.mayfly, "--version"], capture_output=True, timeout=10)
        out["mayfly"] = (p.stdout.decode().strip() or "unknown") + f" (commit {cfg.commit})"
    except (OSError, subprocess.TimeoutExpired):
        out["mayfly"] = f"commit {cfg.commit}"
    try:
        p = subprocess.run(["postconf", "-h", "mail_version"], capture_output=True, timeout=10)
        out["smtp-sink"] = f"Postfix {p.stdout.decode().strip() or 'unknown'}"
    except (OSError, subprocess.TimeoutExpired):
        out["smtp-sink"] = "Postfix (version unknown)"
    for name in cfg.catchers:
        out[name] = catchers.version(cfg.catchers_dir, name) or "unknown"
    return out


# ----------------------------------------------------------------------------- main

START = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - START:6.1f}s] {msg}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mayfly", required=True)
    ap.add_argument("--blaster", required=True)
    ap.add_argument("--reader", default=None, help="mail-reader binary (the mailbox part)")
    ap.add_argument("--dovecot", default="dovecot", help="Dovecot binary (the mailbox part)")
    ap.add_argument("--smtp-sink", default="/usr/sbin/smtp-sink")
    ap.add_argument("--smtp-source", default="/usr/sbin/smtp-source")
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--load-cpus", default="1")
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--machine", default=platform.node() or "machine")
    ap.add_argument("--max-load", type=float, default=0.5,
                    help="wait for other work on the machine to drop below this many CPUs")
    ap.add_argument("--max-wait-quiet", type=float, default=30)
    ap.add_argument("--only", default="interleaved,ring,held,sweeps,probe,durability,restore,auth",
                    help="comma list of parts: interleaved, ring, held, sweeps, probe, durability, restore, auth, "
                         "catchers (catchers: only the catcher comparison, when interleaved is not run), "
                         "mailbox (POP3/IMAP reads, Mayfly vs Dovecot; not in the default list), "
                         "mx (new connection + STARTTLS per message, slow senders: Mayfly vs Postfix "
                         "smtpd, Haraka, smtp-sink; not in the default list)")
    ap.add_argument("--durability-modes", default=",".join(durability.MODES),
                    help="the --durability modes the durability part compares")
    ap.add_argument("--data-root", default="/var/tmp",
                    help="where the durability and restore parts make data directories: a real disk, not tmpfs")
    ap.add_argument("--criterion-dir", default=None,
                    help="criterion's output of `cargo bench --bench auth`, quoted by the auth part "
                         "(default: criterion/ beside the directory of --mayfly's binary)")
    ap.add_argument("--catchers", default="",
                    help=f"comma list of mail catchers to compare in each interleaved round: {', '.join(catchers.NAMES)}")
    ap.add_argument("--catchers-dir", default="/var/tmp/mayfly-catchers",
                    help="where catchers.sh installed them")
    ap.add_argument("--catch-workloads", default="",
                    help="comma list: run only these catcher workloads (w2-1k, pipelined-1k, 100k, w2-1k-all-cpus)")
    cfg = ap.parse_args()
    cfg.catchers = [c for c in cfg.catchers.split(",") if c]
    cfg.catch_workloads = [w for w in cfg.catch_workloads.split(",") if w]
    for c in cfg.catchers:
        if c not in catchers.NAMES:
            ap.error(f"unknown catcher {c}; known: {', '.join(catchers.NAMES)}")
    q = cfg.quick
    cfg.rounds = cfg.rounds or (1 if q else 5)
    cfg.server_cores = len(_cpu_list(cfg.server_cpus))
    cfg.n_w2 = 10000 if q else 30000
    cfg.n_newconn = 3000 if q else 10000
    cfg.secs_100k = 2 if q else 3
    cfg.idle_conns = 10000
    cfg.secs_idle = 2 if q else 3
    cfg.ring_memory = "64MiB" if q else "256MiB"
    cfg.ring_slices = 6 if q else 12
    cfg.ring_slice_secs = 2 if q else 4
    cfg.held_memory = "512MiB" if q else "2GiB"
    cfg.held_target = 200000 if q else 1000000
    cfg.held_slice = 50000 if q else 100000
    cfg.held_inboxes = 100000
    cfg.sweep_secs = 1 if q else 2
    cfg.sweep_sizes = [1024, 4096, 16384, 65536, 262144, 1048576]
    cfg.sweep_conns = [1, 4, 32, 256, 1000]
    cfg.probes = 100 if q else 400
    cfg.probe_rate = 20000
    cfg.probe_load_secs = 10 if q else 20
    cfg.durability_modes = [m for m in cfg.durability_modes.split(",") if m]
    cfg.durability_secs = 2 if q else 3
    cfg.restore_messages = 100000 if q else 1000000
    cfg.mailbox_secs = 2 if q else 3
    # about 40 s a round in a full run (the cold case runs at a few thousand msg/s)
    cfg.auth_messages = 6000 if q else 12000
    cfg.auth_secs = 2 if q else 3
    cfg.auth_size_bytes = SIZE_1K_BYTES
    # Beside the binary's profile directory (target/criterion), else the repository's own
    # target/ (binaries copied elsewhere for an A/B run).
    cfg.criterion_dir = cfg.criterion_dir or next(
        (d for d in (os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(cfg.mayfly))), "criterion"),
                     os.path.join(os.path.dirname(os.path.dirname(HERE)), "target", "criterion"))
         if os.path.isdir(d)), "")
    cfg.reader = cfg.reader or os.path.join(os.path.dirname(cfg.blaster), "mail-reader")
    cfg.n_catch_1k = CATCH_QUICK_1K_MESSAGES if q else CATCH_1K_MESSAGES
    cfg.n_catch_100k = CATCH_QUICK_100K_MESSAGES if q else CATCH_100K_MESSAGES
    os.makedirs(cfg.out, exist_ok=True)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H%M")
    parts = set(cfg.only.split(","))
    # a catchers-only run gets a name of its own, so it does not replace a full run's files
    suffix = ("-quick" if q else "") + ("-catchers" if parts == {"catchers"} else "")
    suffix += "-durability" if parts and parts <= {"durability", "restore"} else ""
    suffix += "-mailbox" if parts == {"mailbox"} else ""
    suffix += "-auth" if parts == {"auth"} else ""
    suffix += "-mx" if parts == {"mx"} else ""
    suffix += "".join(f"-{w}" for w in cfg.catch_workloads)
    base = os.path.join(cfg.out, f"{date}-{cfg.commit}-{cfg.machine}{suffix}")
    # server logs (warnings only) go to a scratch directory, not next to the results
    cfg.work = tempfile.mkdtemp(prefix="mayfly-bench-")
    results = {"meta": {"date": f"{date} {stamp} UTC", "commit": cfg.commit, "machine": cfg.machine,
                        "cpu_model": cpu_model(), "ncpu": os.cpu_count(), "kernel": platform.release(),
                        "server_cpus": cfg.server_cpus, "load_cpus": cfg.load_cpus,
                        "server_cores": cfg.server_cores, "quick": q, "rounds": cfg.rounds,
                        "loadavg_start": loadavg(), "clk_tck": CLK_TCK,
                        "mayfly": cfg.mayfly, "blaster": cfg.blaster,
                        "catchers": cfg.catchers, "catch_1k_messages": cfg.n_catch_1k,
                        "catch_100k_messages": cfg.n_catch_100k, "server_versions": server_versions(cfg)},
               "runs": [], "catcher_runs": []}
    log(f"load average {results['meta']['loadavg_start']:.2f}; results to {base}.json/.md; "
        f"server logs in {cfg.work}")
    try:
        if "interleaved" in parts:
            interleaved(cfg, results)
        elif "catchers" in parts and cfg.catchers:
            catchers_only(cfg, results)
        if "ring" in parts:
            ring_wrap(cfg, results)
        if "held" in parts:
            held_series(cfg, results)
        if "sweeps" in parts:
            sweeps(cfg, results)
        if "probe" in parts:
            http_probe(cfg, results)
        if "durability" in parts:
            durability.run_modes(sys.modules[__name__], cfg, results)
        if "restore" in parts:
            durability.restore(sys.modules[__name__], cfg, results)
        if "mailbox" in parts:
            mail_clients.run(sys.modules[__name__], cfg, results)
        if "auth" in parts:
            auth.run(sys.modules[__name__], cfg, results)
        if "mx" in parts:
            mx.run(sys.modules[__name__], cfg, results)
    finally:
        results["meta"]["loadavg_end"] = loadavg()
        results["meta"]["elapsed_s"] = time.monotonic() - START
        rows = summarize(results)
        results["summary"] = rows
        results["catcher_summary"] = summarize_catchers(results)
        # before the JSON: the auth section stores its summary in `results`
        text = markdown(results, rows)
        with open(base + ".json", "w") as f:
            json.dump(results, f, indent=1)
        with open(base + ".md", "w") as f:
            f.write(text)
        log(f"wrote {base}.json and {base}.md")


def _cpu_list(spec):
    cpus = set()
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            cpus.update(range(int(a), int(b) + 1))
        elif part:
            cpus.add(int(part))
    return sorted(cpus)


if __name__ == "__main__":
    main()
