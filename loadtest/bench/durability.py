"""Durability modes side by side, and restore speed: the `durability` and `restore` parts of
bench.py.

`durability`: W2, pipelined, BDAT and 100 KiB against one Mayfly build started with each of
--durability none, snapshot and journal (rotating which goes first every round), each run
on a fresh data directory under --data-root (a real disk: the point is its fdatasync).
Reports server CPU per message, msg/s and, from /metrics after the run, journal commits
(one write + one fdatasync each) per message and the commit latency.

`restore`: fills a journaling server with N 1 KiB messages, kills it with SIGKILL, and
times the restart until it prints its listening line (it does so only once every shard has
restored); then stops it with SIGTERM (which writes a snapshot) and times that restart too.
RSS after each restore and the shards' own restore_duration_ms are recorded.

Python 3 standard library only; 127.0.0.1 only; every run bounded in messages and time.

Before the modes, `disk_probe` measures what the disk under --data-root does for a journal:
O_DIRECT 4 KiB overwrites of a written file, each followed by fdatasync, from 1 and from 4
threads at once (the journal keeps up to 4 commits in flight per shard), on the server's CPUs.
"""

import mmap
import os
import shutil
import threading
import signal
import subprocess
import tempfile
import time

PROBE_FILE_BYTES = 16 << 20
PROBE_BLOCK_BYTES = 4096
PROBE_SYNCS_PER_THREAD = 400
PROBE_THREADS = (1, 4)
MODES = ("none", "snapshot", "journal")
# A journaling server at the fsync rate of this VM's disk takes 30-60 k msg/s; runs are
# timed rather than counted so each mode gets the same seconds.
RESTORE_INBOXES = 100000
RESTORE_MEMORY = "2GiB"
RESTORE_START_TIMEOUT_SECS = 600


def workloads(tools, cfg):
    size_1k = str(tools.SIZE_1K_BYTES)
    secs = str(cfg.durability_secs)
    return [
        ("w2-1k", ["-c", "32", "-d", secs, "--size", size_1k]),
        ("pipelined-1k", ["-c", "32", "-d", secs, "--size", size_1k, "--pipelining"]),
        ("bdat8-1k", ["-c", "32", "-d", secs, "--size", size_1k, "--bdat", "--in-flight", "8"]),
        ("100k", ["-c", "16", "-d", secs, "--size", str(tools.SIZE_100K_BYTES), "--pipelining"]),
    ]


def mode_flags(mode, data):
    return [] if mode == "none" else ["--durability", mode, "--data-dir", data]


def disk_probe(data_root, cpus):
    """Write + fdatasync rate and latency of 4 KiB O_DIRECT overwrites under `data_root`,
    from 1 and 4 threads; None where O_DIRECT is not supported (tmpfs)."""
    path = os.path.join(data_root, f"mayfly-fsync-probe-{os.getpid()}")
    old_cpus = os.sched_getaffinity(0)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o600)
    except OSError:
        return None
    out = {}
    try:
        os.sched_setaffinity(0, cpus)
        zeros = mmap.mmap(-1, 1 << 20)
        for offset in range(0, PROBE_FILE_BYTES, 1 << 20):
            os.pwrite(fd, zeros, offset)
        os.fdatasync(fd)
        block = mmap.mmap(-1, PROBE_BLOCK_BYTES)
        block.write(b"j" * PROBE_BLOCK_BYTES)
        n_blocks = PROBE_FILE_BYTES // PROBE_BLOCK_BYTES

        def worker(idx, n_threads, latencies):
            for i in range(PROBE_SYNCS_PER_THREAD):
                t0 = time.perf_counter()
                os.pwrite(fd, block, ((i * n_threads + idx) % n_blocks) * PROBE_BLOCK_BYTES)
                os.fdatasync(fd)
                latencies.append(time.perf_counter() - t0)

        for n_threads in PROBE_THREADS:
            latencies = []
            threads = [threading.Thread(target=worker, args=(idx, n_threads, latencies)) for idx in range(n_threads)]
            t0 = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - t0
            latencies.sort()
            out[str(n_threads)] = {"syncs_per_s": len(latencies) / elapsed,
                                   "p50_us": latencies[len(latencies) // 2] * 1e6,
                                   "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6}
    finally:
        os.sched_setaffinity(0, old_cpus)
        os.close(fd)
        os.unlink(path)
    return out


def _cpu_set(spec):
    cpus = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def run_modes(tools, cfg, results):
    """Every workload under every mode, cfg.rounds rounds, order rotated per round."""
    out = results.setdefault("durability", {"data_root": cfg.data_root, "runs": []})
    probe = disk_probe(cfg.data_root, _cpu_set(cfg.server_cpus))
    out["disk_probe"] = probe
    for n_threads, r in (probe or {}).items():
        tools.log(f"disk probe, {n_threads} thread(s): {r['syncs_per_s']:,.0f} 4 KiB write+fdatasync/s, "
                  f"p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us")
    for rnd in range(1, cfg.rounds + 1):
        la, busy = tools.wait_quiet(cfg)
        tools.log(f"durability round {rnd}/{cfg.rounds} (load average {la:.2f}, other work {busy:.2f} CPUs, "
                  f"data under {cfg.data_root})")
        for name, args in workloads(tools, cfg):
            shift = (rnd - 1) % len(cfg.durability_modes)
            order = cfg.durability_modes[shift:] + cfg.durability_modes[:shift]
            for mode in order:
                data = tempfile.mkdtemp(prefix="mayfly-bench-data-", dir=cfg.data_root)
                srv = tools.start_mayfly(cfg, extra=mode_flags(mode, data))
                try:
                    rec = tools.run_measured(cfg, srv, tools.blaster_cmd(cfg, srv, *args))
                    metrics = srv.metrics() or ""
                finally:
                    srv.stop()
                    shutil.rmtree(data, ignore_errors=True)
                commits = tools.metric_sum(metrics, "mayfly_journal_fsyncs_total")
                commit_sum = tools.metric_sum(metrics, "mayfly_journal_commit_seconds_sum")
                msgs = rec.get("messages") or 0
                rec.update({
                    "round": rnd, "workload": name, "mode": mode, "loadavg": la, "other_busy_cpus": busy,
                    "fsyncs_per_msg": commits / msgs if commits is not None and msgs else None,
                    "commit_mean_us": commit_sum / commits * 1e6 if commits and commit_sum is not None else None,
                    "snapshots": tools.metric_sum(metrics, "mayfly_snapshots_written_total"),
                })
                out["runs"].append(rec)
                fsyncs = f" {rec['fsyncs_per_msg']:.3f} fsyncs/msg" if rec["fsyncs_per_msg"] is not None else ""
                commit = f" commit {rec['commit_mean_us']:.0f} us" if rec["commit_mean_us"] is not None else ""
                tools.log(f"  {name:13} {mode:9} {tools.fmt(rec.get('msgs_per_s'), 0):>9} msg/s "
                          f"{tools.fmt(rec.get('cpu_us_per_msg'), 1):>7} us/msg{fsyncs}{commit}"
                          f"{'  ERR ' + str(rec['errors']) if tools.bad(rec) else ''}")


def _timed_start(tools, cfg, data):
    """Starts a journaling server on `data`; returns it and the seconds until it listened."""
    t0 = time.monotonic()
    srv = tools.start_mayfly(cfg, max_memory=RESTORE_MEMORY,
                             extra=["--durability", "journal", "--data-dir", data],
                             start_timeout=RESTORE_START_TIMEOUT_SECS)
    return srv, time.monotonic() - t0


def _restored(tools, srv, seconds):
    metrics = srv.metrics() or ""
    return {"start_s": seconds, "rss_kib": srv.rss_kib(),
            "restored": tools.metric_sum(metrics, "mayfly_messages_restored_total"),
            "skipped": tools.metric_sum(metrics, "mayfly_restore_records_skipped_total"),
            "held": tools.metric_sum(metrics, "mayfly_messages_held"),
            "shard_restore_ms": tools.metric_sum(metrics, "mayfly_restore_duration_ms")}


def restore(tools, cfg, results):
    """Restart speed with cfg.restore_messages held: from the journal after SIGKILL, then
    from the snapshot written at SIGTERM."""
    la, busy = tools.wait_quiet(cfg)
    n = cfg.restore_messages
    tools.log(f"restore: {n} messages of 1 KiB, --max-memory {RESTORE_MEMORY} "
              f"(load average {la:.2f}, other work {busy:.2f} CPUs)")
    data = tempfile.mkdtemp(prefix="mayfly-bench-restore-", dir=cfg.data_root)
    out = {"messages": n, "max_memory": RESTORE_MEMORY, "loadavg": la, "other_busy_cpus": busy}
    try:
        srv, empty_s = _timed_start(tools, cfg, data)
        try:
            out["empty_start_s"] = empty_s
            out["fill"] = tools.run_measured(
                cfg, srv, tools.blaster_cmd(cfg, srv, "-c", "32", "-m", str(n), "--size", str(tools.SIZE_1K_BYTES),
                                            "--pipelining", "--inboxes", str(RESTORE_INBOXES)))
            out["held_before"] = tools.metric_sum(srv.metrics() or "", "mayfly_messages_held")
            out["rss_before_kib"] = srv.rss_kib()
            out["journal_bytes"] = _dir_bytes(data)
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait()
        finally:
            srv.stop()
        tools.log(f"  filled {out['held_before']:.0f} held, RSS {out['rss_before_kib']} KiB, "
                  f"{out['journal_bytes'] / 1e6:.0f} MB on disk; killed (SIGKILL)")
        for kind in ("journal_after_sigkill", "snapshot_after_sigterm"):
            srv, seconds = _timed_start(tools, cfg, data)
            try:
                out[kind] = _restored(tools, srv, seconds)
                if kind == "journal_after_sigkill":
                    srv.proc.send_signal(signal.SIGTERM)
                    srv.proc.wait(timeout=RESTORE_START_TIMEOUT_SECS)
                    out["disk_bytes_after_sigterm"] = _dir_bytes(data)
            finally:
                srv.stop()
            r = out[kind]
            rate = r["restored"] / r["start_s"] if r["restored"] and r["start_s"] else None
            r["messages_per_s"] = rate
            tools.log(f"  {kind}: listening after {r['start_s']:.2f} s (empty store: {empty_s:.2f} s), "
                      f"{tools.fmt(r['restored'], 0)} restored ({tools.fmt(rate, 0)} msg/s), "
                      f"{tools.fmt(r['skipped'], 0)} skipped, shard restore {tools.fmt(r['shard_restore_ms'], 0)} ms, "
                      f"RSS {r['rss_kib']} KiB")
    finally:
        shutil.rmtree(data, ignore_errors=True)
    results["restore"] = out


def _dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def markdown(tools, results):
    """The durability and restore sections of the report, or an empty list."""
    lines = []
    runs = (results.get("durability") or {}).get("runs") or []
    if runs:
        lines += ["## Durability modes", "",
                  f"Data directories under `{results['durability']['data_root']}`; medians over rounds. "
                  "Commits are journal writes, each with one fdatasync.", ""]
        probe = results["durability"].get("disk_probe")
        if probe:
            lines += ["Disk probe (4 KiB O_DIRECT overwrite + fdatasync on the server's CPUs): " + "; ".join(
                f"{n} thread{'s' if n != '1' else ''}: {r['syncs_per_s']:,.0f}/s, p50 {r['p50_us']:.0f} us, "
                f"p99 {r['p99_us']:.0f} us" for n, r in probe.items()) + ".", ""]
        lines += ["| workload | mode | msg/s | vs none | CPU us/msg | vs none | commits/msg | commit mean us | snapshots |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        names = []
        for r in runs:
            if r["workload"] not in names:
                names.append(r["workload"])
        for name in names:
            base = [r for r in runs if r["workload"] == name and r["mode"] == "none"]
            base_rate = tools.med([r.get("msgs_per_s") for r in base])
            base_cpu = tools.med([r.get("cpu_us_per_msg") for r in base])
            for mode in MODES:
                rs = [r for r in runs if r["workload"] == name and r["mode"] == mode]
                if not rs:
                    continue
                rate = tools.med([r.get("msgs_per_s") for r in rs])
                cpu = tools.med([r.get("cpu_us_per_msg") for r in rs])
                lines.append(
                    f"| {name} | {mode} | {tools.fmt(rate, 0)} | {_ratio(rate, base_rate)} | {tools.fmt(cpu, 1)} | "
                    f"{_ratio(cpu, base_cpu)} | {tools.fmt(tools.med([r.get('fsyncs_per_msg') for r in rs]), 3)} | "
                    f"{tools.fmt(tools.med([r.get('commit_mean_us') for r in rs]), 0)} | "
                    f"{tools.fmt(tools.med([r.get('snapshots') for r in rs]), 0)} |")
        lines.append("")
    rest = results.get("restore")
    if rest:
        lines += ["## Restore", "",
                  f"{rest['messages']:,} messages of 1 KiB in 100,000 inboxes, `--max-memory {rest['max_memory']}`: "
                  f"held {tools.fmt(rest.get('held_before'), 0)}, RSS {rest.get('rss_before_kib')} KiB, "
                  f"{(rest.get('journal_bytes') or 0) / 1e6:.0f} MB of journal on disk. "
                  f"An empty start took {rest['empty_start_s']:.2f} s (the ring is allocated and prefaulted).", "",
                  "| restart | until listening s | restored | msg/s | skipped | shard restore ms | RSS KiB |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for kind in ("journal_after_sigkill", "snapshot_after_sigterm"):
            r = rest.get(kind)
            if r:
                lines.append(f"| {kind.replace('_', ' ')} | {r['start_s']:.2f} | {tools.fmt(r['restored'], 0)} | "
                             f"{tools.fmt(r.get('messages_per_s'), 0)} | {tools.fmt(r['skipped'], 0)} | "
                             f"{tools.fmt(r['shard_restore_ms'], 0)} | {r['rss_kib']} |")
        lines.append("")
    return lines


def _ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"
