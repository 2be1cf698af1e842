#!/usr/bin/env python3
"""The runtime floor: a do-nothing SMTP sink on glommio 0.9 and on monoio, against smtp-sink.

The `floor` part of loadtest/run-bench.sh (`run-bench.sh --only floor`), also runnable alone:

    cargo build --release --manifest-path loadtest/floor/Cargo.toml
    python3 loadtest/bench/floor.py --rounds 5 --out /tmp/floor

It answers one question of issue 14 (item 5): how much of the gap between Mayfly and Postfix's
smtp-sink on W2/smtp-source is the runtime itself, and would another io_uring runtime, one that
lets the application create its ring with IORING_SETUP_COOP_TASKRUN or DEFER_TASKRUN, close it.
So every server here does nothing but answer SMTP (no storage, no parsing beyond the verb and
the end-of-data line):

- smtp-sink: Postfix's `smtp-sink -u nobody -m 12000 127.0.0.1:PORT 1024` (one process,
  select loop, blocking-style syscalls): the plaintext floor.
- glommio: `floor-sink --runtime glommio` (loadtest/floor): glommio 0.9 set up as Mayfly sets
  it up (pinned LocalExecutor, ring depth 4096, glommio's TcpListener/TcpStream; glommio's
  rings have no setup flags).
- monoio, monoio-coop, monoio-coop-flag, monoio-defer: the same protocol code on monoio 0.2.4's
  io_uring driver with no flags, COOP_TASKRUN, COOP_TASKRUN|TASKRUN_FLAG, and
  DEFER_TASKRUN|SINGLE_ISSUER.

Workloads, Postfix `smtp-source` (sleeps in poll between replies, like a real MTA):
- w2: `-d -s 32 -l 1024`: 32 sessions, reused connections, no pipelining, 1 KiB payload
  (1,136 bytes with smtp-source's headers); the tech notes' W2.
- newconn: `-s 32 -l 1024`: the same with a new connection per message.
and, asked for with `--workloads pipelined`, smtp-blaster (`--blaster`):
- pipelined: `-c 32 --size 1136 --pipelining`, the durability benches' pipelined 1 KiB.

The journal question of issue 12 (can a journal keep pipelined 1 KiB at half the in-memory
rate on this disk, and is what is missing the runtime's): `--variants` may also name
`<runtime>+journal` (every message's 250 waits until a 1 KiB record of it is durable in a
file on --data-root: group commit, O_DIRECT write + fdatasync, two commits in flight, as the
server's journal does it; loadtest/floor/src/journal.rs) and `glommio-thread+journal` (the
same on glommio, written by a plain thread with blocking syscalls instead of glommio's DMA
file). The report then compares each with the same runtime without the journal:

    python3 loadtest/bench/floor.py --rounds 5 --workloads pipelined \
        --variants glommio,glommio+journal,glommio-thread+journal,monoio,monoio+journal,monoio-coop,monoio-coop+journal

Every run starts the server fresh, pinned with taskset to the server CPU (default 0), inside a
cgroup of its own; smtp-source runs pinned to the load CPU (default 1). Per run:
- server CPU per message: the cgroup's CPU usage (ns; every thread, glommio's helper threads
  too) over the client run / messages; the utime+stime ticks of /proc/PID/stat as a
  cross-check (`stat_us_per_msg`), and the busy time of the server CPU from /proc/stat
  (`cpu_busy_us_per_msg`: also counts interrupts and softirqs that ran there, and anything
  else that ran on that CPU);
- msg/s: messages / wall time of smtp-source, process start included (as bench.py does);
- reschedule IPIs (the RES line of /proc/interrupts) and function-call IPIs (CAL) on the
  server CPU per message, before/after the run; the RES count of the load CPU too. These count
  every source of IPIs on that CPU, other people's processes included: the idle rate of the
  server CPU is sampled for a second before every round (`res_idle_per_s`) to judge that.
The variants rotate their order every round (round r starts at variant r), so none always
runs first; before each round the script waits (at most 30 s) until other work uses less than
`--max-load` CPUs, and records that figure and the load average (`uptime`'s three numbers).
Medians over rounds, ranges in brackets, are written to <out>/<date>-<commit>-<machine>-floor.md
(and every run to the .json).

With --perf, after the rounds, one more run per variant and workload under `perf stat` (the
server started as perf's child, so every thread is counted from its start) gives what each
runtime asks of the kernel per message: syscalls, io_uring_enter, recvfrom/sendto, io_uring
requests submitted, internal poll arms, membarrier calls, reschedule IPIs taken while the
server was running (exact, and only the server's: the IPIs that wake it from idle land in
the idle task and are not in this count), context switches.
Those counts are exact and do not depend on how busy the machine is; the CPU of that run is
not used (tracing costs some).

Python 3 standard library only; talks to 127.0.0.1 only; every run is bounded in messages and
killed after RUN_TIMEOUT_SECS.
"""

import argparse
import datetime
import json
import os
import platform
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench as tools  # noqa: E402  (/proc helpers, wait_quiet, free_port)
import mx  # noqa: E402  (Cgroup, cpus_busy_s)

VARIANTS = ("smtp-sink", "glommio", "monoio", "monoio-coop", "monoio-coop-flag", "monoio-defer")
# Each runtime again with `--journal`: a 1 KiB record per message made durable (group commit,
# O_DIRECT write + fdatasync, two commits in flight) before its 250, in a file on
# --data-root. Not in the default list: asked for with --variants.
JOURNAL_SUFFIX = "+journal"
# glommio-thread+journal: glommio, its journal written by a plain thread (blocking pwrite +
# fdatasync, batches over a channel, the answer back through a waker) instead of DmaFile.
JOURNAL_VARIANTS = tuple(v + JOURNAL_SUFFIX for v in VARIANTS if v != "smtp-sink") + (
    "glommio-thread" + JOURNAL_SUFFIX,)
# (smtp-source flags, messages, messages with --quick). Sized for about 1.5 s of server CPU
# per run at the floor (30 us/msg for w2, 70 us/msg for newconn), so the 10 ms tick of the
# /proc/PID/stat cross-check stays below 1%.
WORKLOADS = {
    "w2": (["-d", "-s", "32", "-l", "1024"], 50000, 10000),
    "newconn": (["-s", "32", "-l", "1024"], 20000, 4000),
    # smtp-blaster, not smtp-source: the durability benches' pipelined 1 KiB (32 connections,
    # commands pipelined, one transaction in flight each); smtp-source cannot send fast enough
    # to show what a journal costs. Asked for with --workloads (not in the default list).
    "pipelined": (["-c", "32", "--size", "1136", "--pipelining"], 150000, 30000),
}
BLASTER_WORKLOADS = ("pipelined",)
DEFAULT_WORKLOADS = ("w2", "newconn")
SOURCE_FROM = "a@x.test"
SOURCE_TO = "b@y.test"
# smtp-sink's concurrency cap and listen backlog, as bench.py gives them.
SINK_CONCURRENCY = 12000
SINK_BACKLOG = 1024
# floor-sink's connection cap: far above the 32 sessions of the load, and within the usual
# 1024 descriptors (floor-sink refuses to start if the cap could exhaust them).
FLOOR_CONNECTIONS_MAX = 256
RUN_TIMEOUT_SECS = 120
START_TIMEOUT_SECS = 10
STOP_TIMEOUT_SECS = 10
IDLE_SAMPLE_SECS = 1.0
# What `--perf` counts, per message: (perf event, column name).
PERF_EVENTS = (
    ("raw_syscalls:sys_enter", "syscalls"),
    ("syscalls:sys_enter_io_uring_enter", "io_uring_enter"),
    ("syscalls:sys_enter_recvfrom", "recvfrom"),
    ("syscalls:sys_enter_sendto", "sendto"),
    ("syscalls:sys_enter_membarrier", "membarrier"),
    ("io_uring:io_uring_submit_req", "uring requests"),
    # Reschedule IPIs that arrived while a server thread was running (perf counts the event
    # in the context of the task it interrupts): the server's own, unlike /proc/interrupts,
    # but without those that wake it from idle.
    ("irq_vectors:reschedule_entry", "RES IPIs while running"),
    ("io_uring:io_uring_poll_arm", "poll arms"),
    ("context-switches", "context switches"),
)


# ----------------------------------------------------------------------------- counters

def loadavg3():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


class Counters:
    """Everything read before and after a run."""

    def __init__(self, server, cfg):
        self.time = time.monotonic()
        self.cgroup_s = server.cgroup.usage_s()
        self.stat_ticks = sum(tools.proc_cpu_ticks(server.proc.pid))
        self.cpu_busy_s = mx.cpus_busy_s(cfg.server_cpu_list)
        self.system_busy_s = tools.system_busy_ticks() / tools.CLK_TCK
        self.res = tools.interrupts("RES", cfg.server_cpu_list)
        self.cal = tools.interrupts("CAL", cfg.server_cpu_list)
        self.load_res = tools.interrupts("RES", cfg.load_cpu_list)


# ----------------------------------------------------------------------------- servers

class Server:
    def __init__(self, variant, proc, addr, cgroup, under_perf):
        self.variant, self.proc, self.addr, self.cgroup = variant, proc, addr, cgroup
        self.under_perf = under_perf

    def stop(self):
        if self.under_perf:
            # The server is perf's child: stop the server, and perf writes its counts and exits.
            for pid in child_pids(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.cgroup.remove()


def child_pids(pid):
    """The children of `pid` (any of its threads), from /proc."""
    pids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                pids.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return pids


def start_server(cfg, variant, perf_out=None):
    """Start one server pinned to the server CPU in a cgroup of its own; with `perf_out`,
    as the child of `perf stat`, which writes its counts there when the server exits."""
    cgroup = mx.Cgroup(f"mayfly-floor-{os.getpid()}-{variant}")
    perf = (["perf", "stat", "-x", ",", "-o", perf_out, "-e", ",".join(e for e, _ in PERF_EVENTS), "--"]
            if perf_out else [])
    log_file = open(os.path.join(cfg.work, f"{variant}.log"), "ab")
    try:
        if variant == "smtp-sink":
            port = tools.free_port()
            cmd = ["taskset", "-c", cfg.server_cpus, *perf, cfg.smtp_sink, "-u", "nobody",
                   "-m", str(SINK_CONCURRENCY), f"127.0.0.1:{port}", str(SINK_BACKLOG)]
            proc = subprocess.Popen(cgroup.wrap(cmd), stdout=log_file, stderr=log_file,
                                    stdin=subprocess.DEVNULL)
            addr = f"127.0.0.1:{port}"
            wait_accepting(proc, port)
        else:
            runtime = variant.removesuffix(JOURNAL_SUFFIX)
            journal = (["--journal", os.path.join(cfg.data_root, f"mayfly-floor-{os.getpid()}.journal")]
                       if variant.endswith(JOURNAL_SUFFIX) else [])
            cmd = ["taskset", "-c", cfg.server_cpus, *perf, cfg.floor_sink, "--runtime", runtime,
                   "--cpu", str(cfg.server_cpu_list[0]), "--listen", "127.0.0.1:0",
                   "--connections-max", str(FLOOR_CONNECTIONS_MAX), *journal]
            proc = subprocess.Popen(cgroup.wrap(cmd), stdout=subprocess.PIPE, stderr=log_file,
                                    stdin=subprocess.DEVNULL)
            addr = read_listening_line(proc, variant)
            wait_accepting(proc, int(addr.rsplit(":", 1)[1]))
    except BaseException:
        cgroup.kill_all()
        cgroup.remove()
        raise
    finally:
        log_file.close()
    return Server(variant, proc, addr, cgroup, under_perf=bool(perf_out))


def read_listening_line(proc, variant):
    """floor-sink prints `listening on ADDR` once it is listening."""
    deadline = time.monotonic() + START_TIMEOUT_SECS
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(proc.stdout.fileno(), 256)
        if not chunk:
            break
        line += chunk
    if not line.startswith(b"listening on "):
        proc.kill()
        raise RuntimeError(f"floor-sink {variant} did not start: {line!r}")
    return line.split()[2].decode()


def wait_accepting(proc, port):
    """Connect once (a probe session the server answers and drops), then let it settle."""
    deadline = time.monotonic() + START_TIMEOUT_SECS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as probe:
                probe.recv(512)  # the greeting: the runtime is up, not only the listener
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError(f"nothing accepted on port {port}")
    time.sleep(0.1)


# ----------------------------------------------------------------------------- runs

def run_one(cfg, variant, workload):
    flags, n_full, n_quick = WORKLOADS[workload]
    n = n_quick if cfg.quick else n_full
    server = start_server(cfg, variant)
    try:
        if workload in BLASTER_WORKLOADS:
            cmd = ["taskset", "-c", cfg.load_cpus, cfg.blaster, server.addr, *flags, "-m", str(n), "--json"]
        else:
            cmd = ["taskset", "-c", cfg.load_cpus, cfg.smtp_source, *flags, "-m", str(n),
                   "-f", SOURCE_FROM, "-t", SOURCE_TO, server.addr]
        before = Counters(server, cfg)
        ru0 = os.times()
        p = subprocess.run(cmd, capture_output=True, timeout=RUN_TIMEOUT_SECS)
        ru1 = os.times()
        after = Counters(server, cfg)
        alive = server.proc.poll() is None
    finally:
        server.stop()
    wall = after.time - before.time
    server_s = after.cgroup_s - before.cgroup_s
    client_s = (ru1.children_user - ru0.children_user) + (ru1.children_system - ru0.children_system)
    err = p.stderr.decode(errors="replace").strip()
    ok = p.returncode == 0 and not err and alive
    if ok and workload in BLASTER_WORKLOADS:
        try:
            report = json.loads(p.stdout)
            if report.get("fatal") or report.get("messages_accepted") != n:
                ok, err = False, f"blaster: {report.get('fatal')}, {report.get('messages_accepted')} of {n} accepted"
        except ValueError:
            ok, err = False, "blaster printed no JSON"
    msgs = n if ok else None

    def per_msg(delta, scale=1.0):
        return delta * scale / msgs if msgs and delta is not None else None

    other_s = (after.system_busy_s - before.system_busy_s) - server_s - client_s
    return {
        "variant": variant, "workload": workload, "client_cmd": " ".join(cmd),
        "exit": p.returncode, "stderr": err[-500:] or None, "server_alive": alive,
        "messages": msgs, "wall_s": wall, "server_cpu_s": server_s, "client_cpu_s": client_s,
        "msgs_per_s": msgs / wall if msgs and wall > 0 else None,
        "cpu_us_per_msg": per_msg(server_s, 1e6),
        "stat_us_per_msg": per_msg((after.stat_ticks - before.stat_ticks) / tools.CLK_TCK, 1e6),
        "cpu_busy_us_per_msg": per_msg(after.cpu_busy_s - before.cpu_busy_s, 1e6),
        "res_per_msg": per_msg(after.res - before.res),
        "cal_per_msg": per_msg(after.cal - before.cal),
        "load_res_per_msg": per_msg(after.load_res - before.load_res),
        "other_cpus": max(0.0, other_s) / wall if wall > 0 else None,
    }


def perf_one(cfg, variant, workload):
    """One run under `perf stat`: kernel work per message (see PERF_EVENTS)."""
    flags, n_full, n_quick = WORKLOADS[workload]
    n = n_quick if cfg.quick else n_full
    perf_out = os.path.join(cfg.work, f"perf-{variant}-{workload}.csv")
    server = start_server(cfg, variant, perf_out=perf_out)
    try:
        cmd = ["taskset", "-c", cfg.load_cpus, cfg.smtp_source, *flags, "-m", str(n),
               "-f", SOURCE_FROM, "-t", SOURCE_TO, server.addr]
        p = subprocess.run(cmd, capture_output=True, timeout=RUN_TIMEOUT_SECS)
    finally:
        server.stop()
    err = p.stderr.decode(errors="replace").strip()
    rec = {"variant": variant, "workload": workload, "messages": n, "exit": p.returncode,
           "stderr": err[-500:] or None, "per_msg": {}}
    names = dict(PERF_EVENTS)
    with open(perf_out) as f:
        for line in f:
            fields = line.strip().split(",")
            # perf stat -x, lines: value,unit,event,...; "<not counted>" or "<not supported>"
            # in the value when an event is unavailable.
            if len(fields) >= 3 and fields[2] in names and fields[0].isdigit():
                rec["per_msg"][names[fields[2]]] = int(fields[0]) / n
    return rec


def perf_runs(cfg, results):
    log("perf stat runs (counts per message)")
    for workload in cfg.workloads:
        for variant in cfg.variants:
            try:
                rec = perf_one(cfg, variant, workload)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                rec = {"variant": variant, "workload": workload, "error": f"{type(e).__name__}: {e}",
                       "per_msg": {}}
            results["perf"].append(rec)
            log(f"  {workload:8} {variant:17} " + " ".join(
                f"{k}={v:.2f}" for k, v in rec["per_msg"].items()) + (f"  FAILED: {rec.get('error') or rec.get('stderr')}"
                                                                        if rec.get("error") or rec.get("exit") else ""))


def idle_res_per_s(cfg):
    """Reschedule IPIs per second on the server CPU while none of our processes runs."""
    r0, t0 = tools.interrupts("RES", cfg.server_cpu_list), time.monotonic()
    time.sleep(IDLE_SAMPLE_SECS)
    return (tools.interrupts("RES", cfg.server_cpu_list) - r0) / (time.monotonic() - t0)


def run(cfg, results):
    variants = [v for v in cfg.variants if v in VARIANTS + JOURNAL_VARIANTS]
    for rnd in range(1, cfg.rounds + 1):
        la, busy = tools.wait_quiet(cfg)
        res_idle = idle_res_per_s(cfg)
        uptime = loadavg3()
        results["rounds"].append({"round": rnd, "loadavg": uptime, "other_busy_cpus": busy,
                                  "res_idle_per_s": res_idle})
        log(f"round {rnd}/{cfg.rounds}: load average {' '.join(f'{x:.2f}' for x in uptime)}, "
            f"other work {busy:.2f} CPUs, {res_idle:.0f} RES/s on the idle server CPU")
        shift = (rnd - 1) % len(variants)
        order = variants[shift:] + variants[:shift]
        for workload in cfg.workloads:
            for variant in order:
                try:
                    rec = run_one(cfg, variant, workload)
                except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                    rec = {"variant": variant, "workload": workload, "error": f"{type(e).__name__}: {e}"}
                rec.update({"round": rnd, "loadavg": uptime, "other_busy_cpus": busy})
                results["runs"].append(rec)
                log(f"  {workload:8} {variant:17} {tools.fmt(rec.get('msgs_per_s'), 0):>8} msg/s "
                    f"{tools.fmt(rec.get('cpu_us_per_msg'), 1):>6} us/msg "
                    f"{tools.fmt(rec.get('res_per_msg'), 2):>5} RES/msg "
                    f"other {tools.fmt(rec.get('other_cpus'), 2)}"
                    + (f"  FAILED: {rec.get('error') or rec.get('stderr') or rec.get('exit')}"
                       if not rec.get("messages") else ""))


# ----------------------------------------------------------------------------- report

def summary(results):
    rows = []
    for workload in WORKLOADS:
        for variant in VARIANTS + JOURNAL_VARIANTS:
            rs = [r for r in results["runs"] if r["workload"] == workload and r["variant"] == variant]
            if not rs:
                continue
            row = {"workload": workload, "variant": variant, "rounds": len(rs),
                   "failed": sum(1 for r in rs if not r.get("messages"))}
            for key in ("cpu_us_per_msg", "stat_us_per_msg", "cpu_busy_us_per_msg", "msgs_per_s",
                        "res_per_msg", "cal_per_msg", "load_res_per_msg", "other_cpus"):
                row[key], row[key + "_min"], row[key + "_max"] = mx.med_range([r.get(key) for r in rs])
            rows.append(row)
    return rows


def markdown(results):
    f = tools.fmt
    meta = results["meta"]
    rows = summary(results)
    L = ["## The runtime floor: a do-nothing SMTP sink per runtime, against smtp-sink", ""]
    L.append(f"Commit {meta['commit']}, {meta['machine']} ({meta['cpu_model']}, {meta['ncpu']} CPUs, "
             f"Linux {meta['kernel']}), {meta['date']}; server on CPU {meta['server_cpus']}, "
             f"load on CPU {meta['load_cpus']}; {len(results['rounds'])} rounds, order rotating; "
             "medians, ranges in brackets. Server CPU from its cgroup.")
    L.append("")
    L.append("| workload | server | CPU us/msg | x smtp-sink | msg/s | RES IPIs/msg (server CPU) | "
             "CAL IPIs/msg | RES/msg (load CPU) | /proc/PID/stat us/msg | server CPU busy us/msg | failed |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    sink = {r["workload"]: r for r in rows if r["variant"] == "smtp-sink"}
    for r in rows:
        base = sink.get(r["workload"])
        ratio = (r["cpu_us_per_msg"] / base["cpu_us_per_msg"]
                 if base and base["cpu_us_per_msg"] and r["cpu_us_per_msg"] else None)
        L.append(f"| {r['workload']} | {r['variant']} | {f(r['cpu_us_per_msg'], 1)} "
                 f"({f(r['cpu_us_per_msg_min'], 1)}-{f(r['cpu_us_per_msg_max'], 1)}) | "
                 f"{f(ratio, 2)} | {f(r['msgs_per_s'], 0)} | {f(r['res_per_msg'], 2)} "
                 f"({f(r['res_per_msg_min'], 2)}-{f(r['res_per_msg_max'], 2)}) | {f(r['cal_per_msg'], 2)} | "
                 f"{f(r['load_res_per_msg'], 2)} | {f(r['stat_us_per_msg'], 1)} | "
                 f"{f(r['cpu_busy_us_per_msg'], 1)} | {r['failed']}/{r['rounds']} |")
    journaled = [r for r in rows if r["variant"].endswith(JOURNAL_SUFFIX)]
    if journaled:
        L.append("")
        L.append("With a journal (`+journal`: a 1 KiB record per message durable before its 250, group "
                 "commit, O_DIRECT write + fdatasync, two commits in flight) against the same runtime "
                 "without (medians):")
        L.append("")
        L.append("| workload | runtime | msg/s without | msg/s with | with / without | CPU us/msg without | with |")
        L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        by_key = {(r["workload"], r["variant"]): r for r in rows}
        for r in journaled:
            base = by_key.get((r["workload"], r["variant"].removesuffix(JOURNAL_SUFFIX).removesuffix("-thread")))
            if not base:
                continue
            ratio = (r["msgs_per_s"] / base["msgs_per_s"]
                     if r["msgs_per_s"] and base["msgs_per_s"] else None)
            L.append(f"| {r['workload']} | {base['variant']} | {f(base['msgs_per_s'], 0)} | "
                     f"{f(r['msgs_per_s'], 0)} | {f(ratio, 2)} | {f(base['cpu_us_per_msg'], 1)} | "
                     f"{f(r['cpu_us_per_msg'], 1)} |")
    L.append("")
    L.append("Rounds (load average as `uptime` prints it, other work in CPUs, reschedule IPIs per "
             "second on the idle server CPU before the round):")
    L.append("")
    for rd in results["rounds"]:
        L.append(f"- round {rd['round']}: load {' '.join(f'{x:.2f}' for x in rd['loadavg'])}, "
                 f"other work {rd['other_busy_cpus']:.2f} CPUs, {rd['res_idle_per_s']:.0f} RES/s idle")
    if results.get("perf"):
        L.append("")
        L.append("Kernel work per message, one run each under `perf stat` (exact counts, whole server "
                 "lifetime including start-up, which is a few hundred syscalls):")
        L.append("")
        L.append("| workload | server | " + " | ".join(name for _, name in PERF_EVENTS) + " |")
        L.append("| --- | --- |" + " ---: |" * len(PERF_EVENTS))
        for r in results["perf"]:
            L.append(f"| {r['workload']} | {r['variant']} | " + " | ".join(
                f(r["per_msg"].get(name), 2) for _, name in PERF_EVENTS) + " |"
                + (f" failed: {r.get('error') or r.get('stderr') or r.get('exit')}"
                   if r.get("error") or r.get("exit") else ""))
    fails = [r for r in results["runs"] if not r.get("messages")]
    for r in fails:
        L.append(f"- failed run: round {r['round']} {r['workload']} {r['variant']}: "
                 f"{r.get('error') or r.get('stderr') or ('exit ' + str(r.get('exit')))}")
    return L


# ----------------------------------------------------------------------------- main

START = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - START:6.1f}s] {msg}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="smaller runs (for a smoke test, not for numbers)")
    ap.add_argument("--floor-sink", default=os.path.join(os.path.dirname(HERE), "floor", "target",
                                                        "release", "floor-sink"))
    ap.add_argument("--smtp-sink", default="/usr/sbin/smtp-sink")
    ap.add_argument("--smtp-source", default="/usr/sbin/smtp-source")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS))
    ap.add_argument("--blaster", default=os.path.join(os.path.dirname(os.path.dirname(HERE)), "target",
                                                      "release", "smtp-blaster"),
                    help="smtp-blaster, for the pipelined workload")
    ap.add_argument("--server-cpus", default="0", help="one CPU: the sinks are single-threaded")
    ap.add_argument("--load-cpus", default="1")
    ap.add_argument("--max-load", type=float, default=0.5)
    ap.add_argument("--data-root", default="/var/tmp",
                    help="where the +journal variants keep their file (a real disk, as the server's data dir)")
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--machine", default=(platform.node().split(".")[0] or "machine"))
    ap.add_argument("--perf", action="store_true",
                    help="afterwards, one run per variant and workload under perf stat (syscalls, io_uring work)")
    ap.add_argument("--out", default=None, help="directory for <date>-<commit>-<machine>-floor.json/.md")
    cfg = ap.parse_args()
    cfg.max_wait_quiet = 30
    cfg.server_cpu_list = tools.cpu_list(cfg.server_cpus)
    cfg.load_cpu_list = tools.cpu_list(cfg.load_cpus)
    if len(cfg.server_cpu_list) != 1:
        ap.error("--server-cpus must name one CPU")
    cfg.variants = [v for v in cfg.variants.split(",") if v]
    cfg.workloads = [w for w in cfg.workloads.split(",") if w]
    for v in cfg.variants:
        if v not in VARIANTS + JOURNAL_VARIANTS:
            ap.error(f"unknown variant {v} (known: {', '.join(VARIANTS + JOURNAL_VARIANTS)})")
    for w in cfg.workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w} (known: {', '.join(WORKLOADS)})")
    for path in (cfg.smtp_sink, cfg.smtp_source, cfg.floor_sink):
        if not os.access(path, os.X_OK):
            sys.exit(f"floor.py: {path} not found or not executable")
    if cfg.perf and any(w in BLASTER_WORKLOADS for w in cfg.workloads):
        ap.error("--perf runs smtp-source workloads only")
    if any(w in BLASTER_WORKLOADS for w in cfg.workloads) and not os.access(cfg.blaster, os.X_OK):
        sys.exit(f"floor.py: {cfg.blaster} not found or not executable (cargo build --release)")
    if cfg.perf and not shutil.which("perf"):
        sys.exit("floor.py: --perf needs perf")
    cfg.work = tempfile.mkdtemp(prefix="mayfly-bench-floor-")
    now = datetime.datetime.now(datetime.timezone.utc)
    results = {"meta": {"date": now.strftime("%Y-%m-%d %H%M UTC"), "commit": cfg.commit,
                        "machine": cfg.machine, "cpu_model": tools.cpu_model(), "ncpu": os.cpu_count(),
                        "kernel": platform.release(), "server_cpus": cfg.server_cpus,
                        "load_cpus": cfg.load_cpus, "quick": cfg.quick, "argv": sys.argv,
                        "workloads": {w: WORKLOADS[w] for w in cfg.workloads}},
               "rounds": [], "runs": [], "perf": []}
    try:
        run(cfg, results)
        if cfg.perf:
            perf_runs(cfg, results)
    finally:
        md = "\n".join(markdown(results)) + "\n"
        print(md)
        if cfg.out:
            os.makedirs(cfg.out, exist_ok=True)
            base = os.path.join(cfg.out, f"{now.strftime('%Y-%m-%d')}-{cfg.commit}-{cfg.machine}"
                                         f"{'-quick' if cfg.quick else ''}-floor")
            with open(base + ".json", "w") as f:
                json.dump(results, f, indent=1)
            with open(base + ".md", "w") as f:
                f.write(md)
            log(f"results in {base}.json and {base}.md")
        shutil.rmtree(cfg.work, ignore_errors=True)


if __name__ == "__main__":
    main()
