"""The MX workload: many slow senders, a new connection and a STARTTLS handshake per message.

The `mx` part of bench.py (`loadtest/run-bench.sh --only mx`), also runnable alone to compare
Mayfly builds or TLS settings (see main() below):

    loadtest/run-bench.sh --only mx --rounds 3
    python3 loadtest/bench/mx.py --rounds 5 --servers mayfly:old,mayfly:new \
        --mayfly-build old=/tmp/mayfly-old --mayfly-build new=target/release/mayfly \
        --workloads closed-full --out /tmp/mx

What a sender does (smtp-blaster, pinned to the load CPUs, sleeping in epoll like a real MTA
process): connect, greeting, EHLO, STARTTLS, TLS handshake, EHLO again, MAIL, RCPT, DATA,
one message of 1 KiB (50%), 4 KiB (30%) or 10 KiB (20%) with a realistic header block
(`--headers mx`), QUIT, wait for the server to close; and a think time (THINK_MS mean,
uniform in half to 1.5 times it) after every reply before the next command and before the
next connection, so the server parks between replies as it does on the internet.

Workloads:
- closed-full: CLOSED_SENDERS senders in closed loop, every handshake a full one
  (`--tls-no-resumption`): the most the server does per message, at the most it can take.
- closed-resume: the same with session resumption (the client offers the ticket or session
  id it got last time; what the server does with it is the server's configuration).
- open-full: open loop at OPEN_RATE arrivals per second, each arrival a new sender with its
  own connection (`--connect-per-arrival`, at most OPEN_SLOTS at once), full handshakes,
  think time OPEN_THINK_MS; latency from the intended arrival time to the final 250, so a
  slow server shows up as latency (no coordinated omission). The rate is one Postfix
  keeps up with on one core, so every server gets the same offered load.
smtp-sink gets the same connection pattern in plaintext (no STARTTLS): the floor's first part.

Servers, each pinned with `taskset` to the server CPUs and started fresh per run:
- mayfly: `--cores 1 --tls-cert/--tls-key` with the run's certificate (plus any extra flags
  of a --mayfly-build).
- postfix: Debian's Postfix as a private instance in a temporary directory (its own
  main.cf/master.cf, queue and data directories on DATA_ROOT, a real disk): smtpd with
  STARTTLS (`smtpd_tls_security_level = may`, the run's certificate, the Debian-default
  session cache database), the blaster's domain as its relay domain with every recipient
  accepted (`relay_recipient_maps =`) and `relay_transport = discard`,
  no chroot, no per-client limits (all senders come from 127.0.0.1), Postfix's default
  process limit (100). The queue is real: cleanup writes every message to the incoming
  queue on disk and qmgr hands it to discard, which deletes it.
- haraka: Haraka 3.3.4 from loadtest/haraka (installed by `npm ci` from its
  package-lock.json; run-bench.sh does that before the part starts), one process (nodes=0),
  plugins tls (the run's certificate), a plugin that accepts every recipient and names
  127.0.0.1 without DNS, and queue/discard.
- smtp-sink: Postfix's smtp-sink, plaintext.
- mayfly-plain: Mayfly as above, driven without STARTTLS: what Mayfly itself costs on the
  connection pattern, against smtp-sink's plaintext floor.
Server CPU: each server is started inside a cgroup (v1 cpuacct, or v2) of its own, so every
process it forks is counted (Postfix's master, smtpd, cleanup, qmgr, trivial-rewrite, discard,
tlsmgr, anvil...); the CPU per message is the cgroup's usage over the client run divided by
the messages accepted. Startup happens before the run and is not counted. As a cross-check
the JSON also has the busy time of the server CPUs from /proc/stat per message (which also
counts anything else that ran there).

The TLS part of the floor: `tls-floor` (loadtest/src/bin/tls-floor.rs) runs bare rustls
handshakes in memory with the same certificate, Mayfly's server configuration and cipher
suite, pinned to the server CPU, and measures the server side's thread CPU time; once per
round, full and resumed. Floor = smtp-sink's plaintext CPU per message on the same
connection pattern + the bare handshake's CPU.

Python 3 standard library only.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CLOSED_SENDERS = 200
# floor-sink's connection cap: above the open loop's OPEN_SLOTS plus the closed loop's senders.
FLOOR_CONNECTIONS_MAX = 4096
THINK_MS = 2
OPEN_RATE = 100
OPEN_SLOTS = 2000
OPEN_THINK_MS = 10
SIZE_DIST = "1k:0.5,4k:0.3,10k:0.2"
RUN_SECS = 4
QUICK_RUN_SECS = 3
WARMUP_SECS = 0.5
TLS_FLOOR_HANDSHAKES = 3000
# Mayfly's server settings, so the floor's handshake is the one Mayfly does: it picks
# TLS13_AES_128_GCM_SHA256 whatever the client prefers, and sends one ticket per handshake.
TLS_FLOOR_ARGS = ["--suite", "aes128", "--tickets", "1"]
START_TIMEOUT_SECS = 30
STOP_TIMEOUT_SECS = 15
POSTFIX_DAEMONS = "/usr/lib/postfix/sbin"
HERE = os.path.dirname(os.path.abspath(__file__))
HARAKA_DIR = os.path.join(os.path.dirname(HERE), "haraka")
WORKLOADS = ("closed-full", "closed-resume", "open-full")
# The servers run by default in each workload (the sink stands for the plaintext floor).
DEFAULT_SERVERS = {
    "closed-full": ("mayfly", "mayfly-plain", "postfix", "haraka", "smtp-sink"),
    "closed-resume": ("mayfly", "postfix"),
    "open-full": ("mayfly", "mayfly-plain", "postfix", "haraka", "smtp-sink"),
}


# ----------------------------------------------------------------------------- CPU accounting

class Cgroup:
    """A cgroup of our own whose CPU usage counts every process started in it."""

    def __init__(self, name):
        v1 = "/sys/fs/cgroup/cpuacct"
        if os.path.isdir(v1):
            self.path = os.path.join(v1, name)
            self.usage_file, self.v2 = "cpuacct.usage", False
        else:
            self.path = os.path.join("/sys/fs/cgroup", name)
            self.usage_file, self.v2 = "cpu.stat", True
        os.makedirs(self.path, exist_ok=True)

    def usage_s(self):
        with open(os.path.join(self.path, self.usage_file)) as f:
            text = f.read()
        if not self.v2:
            return int(text) / 1e9
        for line in text.splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) / 1e6
        return 0.0

    def pids(self):
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def kill_all(self):
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def remove(self):
        self.kill_all()
        try:
            os.rmdir(self.path)
        except OSError:
            pass

    def wrap(self, cmd):
        """`cmd` run inside this cgroup (the shell joins it, then execs the command)."""
        return ["sh", "-c", f'echo $$ > "{self.path}/cgroup.procs" && exec "$@"', "sh", *cmd]


def cpus_busy_s(cpus):
    """Busy seconds of the given CPUs so far, from /proc/stat."""
    want = {f"cpu{c}" for c in cpus}
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in want:
                vals = [int(x) for x in parts[1:9]]
                total += sum(vals) - vals[3] - vals[4]
    return total / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- certificates

def make_certs(work):
    """An ECDSA P-256 and an RSA 2048 self-signed certificate for localhost (openssl)."""
    certs = {}
    for kind, newkey in (("ecdsa", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                         ("rsa", ["-newkey", "rsa:2048"])):
        cert, key = os.path.join(work, f"{kind}.pem"), os.path.join(work, f"{kind}.key")
        subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", cert,
                        "-days", "30", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                       check=True, capture_output=True)
        os.chmod(key, 0o644)  # Postfix's smtpd and Haraka read it after dropping privileges
        certs[kind] = (cert, key)
    return certs


# ----------------------------------------------------------------------------- servers

class MxServer:
    def __init__(self, kind, smtp, cgroup, proc=None, stop_cmd=None, scratch=None):
        self.kind, self.smtp, self.cgroup = kind, smtp, cgroup
        self.proc, self.stop_cmd, self.scratch = proc, stop_cmd, scratch

    def stop(self):
        if self.stop_cmd:
            subprocess.run(self.stop_cmd, capture_output=True, timeout=STOP_TIMEOUT_SECS)
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.cgroup.remove()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


def wait_port(port, what, proc=None):
    import socket
    deadline = time.monotonic() + START_TIMEOUT_SECS
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            # the probe was a session; let the server finish it before measuring
            time.sleep(0.2)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}")


def start_mayfly(tools, cfg, build, cert, cg):
    path, extra = cfg.mayfly_builds[build]
    cmd = cg.wrap(["taskset", "-c", cfg.server_cpus, path, "--smtp", "127.0.0.1:0", "--http", "127.0.0.1:0",
                   "--cores", "1", "--max-memory", "512MiB", "--max-sessions-per-core", "12000",
                   "--shutdown-grace", "1s", "--log-level", "warn",
                   "--tls-cert", cert[0], "--tls-key", cert[1], *extra])
    log = open(os.path.join(cfg.work, "mayfly.log"), "ab")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                            env=tools.mayfly_env())
    line = proc.stdout.readline()
    import re
    m = re.search(rb"smtp=(\S+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"mayfly did not start: {line!r}; see {cfg.work}/mayfly.log")
    return MxServer("mayfly", m.group(1).decode(), cg, proc=proc)


def postfix_master_cf(port):
    """Debian's master.cf with smtpd on 127.0.0.1:PORT and no chroot anywhere."""
    lines = []
    with open("/etc/postfix/master.cf") as f:
        for line in f:
            fields = line.split()
            if line.startswith("#") or line.startswith(" ") or len(fields) < 8:
                lines.append(line)
                continue
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"127.0.0.1:{port}"
            fields[4] = "n"  # chroot: the private instance has no chroot jail set up
            lines.append("  ".join(fields) + "\n")
    return "".join(lines)


def start_postfix(tools, cfg, cert, cg):
    root = tempfile.mkdtemp(prefix="mayfly-bench-postfix-", dir=cfg.data_root)
    os.chmod(root, 0o755)
    conf, queue, data = (os.path.join(root, d) for d in ("etc", "queue", "data"))
    for d in (conf, queue, data, os.path.join(root, "log")):
        os.makedirs(d)
    shutil.chown(data, "postfix", "postfix")
    port = tools.free_port()
    main_cf = f"""# written by loadtest/bench/mx.py: an MX that discards every message after queueing it
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
command_directory = /usr/sbin
daemon_directory = {POSTFIX_DAEMONS}
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.example.test
mydomain = example.test
mydestination =
relay_domains = example.test
relay_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_new_tls_session_rate_limit = 0
default_transport = discard
relay_transport = discard
local_transport = discard
smtpd_tls_security_level = may
smtpd_tls_cert_file = {cert[0]}
smtpd_tls_key_file = {cert[1]}
smtpd_tls_session_cache_database = btree:${{data_directory}}/smtpd_scache
smtp_tls_security_level = none
maillog_file = {root}/log/postfix.log
maillog_file_prefixes = {root}
biff = no
"""
    with open(os.path.join(conf, "main.cf"), "w") as f:
        f.write(main_cf)
    with open(os.path.join(conf, "master.cf"), "w") as f:
        f.write(postfix_master_cf(port))
    p = subprocess.run(cg.wrap(["taskset", "-c", cfg.server_cpus, "/usr/sbin/postfix", "-c", conf, "start"]),
                       capture_output=True, timeout=START_TIMEOUT_SECS)
    if p.returncode != 0:
        cg.remove()
        raise RuntimeError(f"postfix start failed: {p.stdout.decode()[-300:]} {p.stderr.decode()[-300:]}")
    try:
        wait_port(port, "postfix smtpd")
    except RuntimeError:
        subprocess.run(["/usr/sbin/postfix", "-c", conf, "abort"], capture_output=True)
        cg.remove()
        raise
    return MxServer("postfix", f"127.0.0.1:{port}", cg, stop_cmd=["/usr/sbin/postfix", "-c", conf, "stop"],
                    scratch=root)


def start_haraka(tools, cfg, cert, cg):
    home = HARAKA_DIR
    binary = os.path.join(home, "node_modules", ".bin", "haraka")
    if not os.path.exists(binary):
        raise RuntimeError(f"Haraka is not installed: (cd {home} && npm ci)")
    root = tempfile.mkdtemp(prefix="mayfly-bench-haraka-", dir=cfg.work)
    conf = os.path.join(root, "haraka")
    subprocess.run(["node", binary, "-i", conf], check=True, capture_output=True)
    port = tools.free_port()
    cfgdir = os.path.join(conf, "config")
    with open(os.path.join(cfgdir, "smtp.ini"), "w") as f:
        f.write(f"listen=127.0.0.1:{port}\nnodes=0\n")
    with open(os.path.join(cfgdir, "log.ini"), "w") as f:
        f.write("[main]\nlevel=warn\n")
    with open(os.path.join(cfgdir, "plugins"), "w") as f:
        f.write("tls\naccept_all_rcpt\nqueue/discard\n")
    with open(os.path.join(cfgdir, "tls.ini"), "w") as f:
        f.write(f"key={cert[1]}\ncert={cert[0]}\n")
    with open(os.path.join(conf, "plugins", "accept_all_rcpt.js"), "w") as f:
        f.write("// Accept every recipient (the MX is the final destination), and name the peer\n"
                "// without a reverse DNS query.\n"
                "exports.hook_rcpt = (next) => next(OK)\n"
                "exports.hook_lookup_rdns = (next) => next(OK, 'localhost')\n")
    env = dict(os.environ, YES_REALLY_DO_DISCARD="1")
    log = open(os.path.join(cfg.work, "haraka.log"), "ab")
    proc = subprocess.Popen(cg.wrap(["taskset", "-c", cfg.server_cpus, binary, "-c", conf]),
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    try:
        wait_port(port, "haraka", proc)
    except RuntimeError:
        proc.kill()
        cg.remove()
        raise
    return MxServer("haraka", f"127.0.0.1:{port}", cg, proc=proc, scratch=root)


def start_sink(tools, cfg, cg):
    port = tools.free_port()
    log = open(os.path.join(cfg.work, "smtp-sink.log"), "ab")
    proc = subprocess.Popen(cg.wrap(["taskset", "-c", cfg.server_cpus, cfg.smtp_sink, "-u", "nobody",
                                     "-m", "12000", f"127.0.0.1:{port}", "1024"]),
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    wait_port(port, "smtp-sink", proc)
    return MxServer("smtp-sink", f"127.0.0.1:{port}", cg, proc=proc)


def start_floor(tools, cfg, runtime, cert, cg, tls):
    """loadtest/floor's do-nothing sink on `runtime`, offering STARTTLS with the run's
    certificate and Mayfly's TLS configuration when `tls`."""
    port = tools.free_port()
    cpu = tools._cpu_list(cfg.server_cpus)[0]
    floor_sink = getattr(cfg, "floor_sink", None) or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "floor", "target", "release", "floor-sink")
    cmd = ["taskset", "-c", cfg.server_cpus, floor_sink, "--runtime", runtime, "--cpu", str(cpu),
           "--listen", f"127.0.0.1:{port}", "--connections-max", str(FLOOR_CONNECTIONS_MAX)]
    if tls:
        cmd += ["--tls-cert", cert[0], "--tls-key", cert[1]]
    log = open(os.path.join(cfg.work, f"floor-{runtime}.log"), "ab")
    proc = subprocess.Popen(cg.wrap(cmd), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    wait_port(port, f"floor-sink {runtime}", proc)
    return MxServer(f"floor:{runtime}", f"127.0.0.1:{port}", cg, proc=proc)


def start(tools, cfg, server, cert):
    """`server` is mayfly, mayfly:BUILD, postfix, haraka, smtp-sink, floor:RUNTIME (the
    runtime floor's sink with STARTTLS) or floor-plain:RUNTIME (without)."""
    cg = Cgroup(f"mayfly-mx-{os.getpid()}-{server.replace(':', '-')}")
    kind, _, build = server.partition(":")
    if kind in ("floor", "floor-plain"):
        return start_floor(tools, cfg, build, cert, cg, tls=kind == "floor")
    if kind in ("mayfly", "mayfly-plain"):
        return start_mayfly(tools, cfg, build or "default", cert, cg)
    if kind == "postfix":
        return start_postfix(tools, cfg, cert, cg)
    if kind == "haraka":
        return start_haraka(tools, cfg, cert, cg)
    if kind == "smtp-sink":
        return start_sink(tools, cfg, cg)
    raise ValueError(f"unknown server {server}")


# ----------------------------------------------------------------------------- runs

def client_args(cfg, workload, tls):
    args = ["--epoll", "--messages-per-connection", "1", "--headers", "mx", "--size-dist", SIZE_DIST,
            "-d", str(cfg.mx_secs), "--warmup", str(WARMUP_SECS), "--max-connection-errors", "1000"]
    if workload.startswith("closed"):
        args += ["-c", str(CLOSED_SENDERS), "--think-ms", str(THINK_MS)]
    else:
        args += ["-c", str(OPEN_SLOTS), "--rate", str(OPEN_RATE), "--connect-per-arrival",
                 "--think-ms", str(OPEN_THINK_MS)]
    if tls:
        args += ["--starttls", "--tls-insecure", "--tls-server-name", "localhost"]
        if workload.endswith("-full"):
            args.append("--tls-no-resumption")
    return args


def run_one(tools, cfg, server_name, workload, cert_kind, rnd):
    srv = start(tools, cfg, server_name, cfg.certs[cert_kind])
    try:
        tls = not server_name.startswith(("smtp-sink", "mayfly-plain", "floor-plain"))
        cmd = ["taskset", "-c", cfg.load_cpus, cfg.blaster, srv.smtp, "--json", "--timeout", "10",
               *client_args(cfg, workload, tls)]
        server_cpus = tools._cpu_list(cfg.server_cpus)
        busy0, cg0, t0 = cpus_busy_s(server_cpus), srv.cgroup.usage_s(), time.monotonic()
        p = subprocess.run(cmd, capture_output=True, timeout=tools.RUN_TIMEOUT_SECS)
        wall = time.monotonic() - t0
        cg1, busy1 = srv.cgroup.usage_s(), cpus_busy_s(server_cpus)
    finally:
        srv.stop()
    try:
        j = json.loads(p.stdout)
    except ValueError:
        j = {"fatal": (p.stdout + p.stderr).decode(errors="replace")[-600:]}
    msgs = j.get("messages_accepted") or 0
    c250 = j.get("connect_to_250_us") or {}
    rec = {
        "part": "mx", "round": rnd, "workload": workload, "server": server_name, "cert": cert_kind,
        "client_cmd": " ".join(cmd), "exit": p.returncode, "wall_s": wall, "messages": msgs,
        "msgs_per_s": j.get("messages_per_sec"),
        "server_cpu_s": cg1 - cg0, "server_cpus_busy_s": busy1 - busy0,
        "cpu_us_per_msg": (cg1 - cg0) / msgs * 1e6 if msgs else None,
        "cpus_busy_us_per_msg": (busy1 - busy0) / msgs * 1e6 if msgs else None,
        "server_cpu_frac": (cg1 - cg0) / wall if wall else None,
        "c250_p50_us": c250.get("p50"), "c250_p99_us": c250.get("p99"), "c250_p999_us": c250.get("p999"),
        "tls": j.get("tls"), "loadavg": tools.loadavg(),
        "errors": {"reply": j.get("reply_errors"), "conn": j.get("connection_errors"),
                   "rejected": j.get("messages_rejected"), "unfinished": j.get("messages_unfinished"),
                   "dropped": j.get("arrivals_dropped"), "fatal": j.get("fatal")},
    }
    return rec


def tls_floor(tools, cfg, cert_kind, resume, rnd):
    cert, key = cfg.certs[cert_kind]
    cmd = ["taskset", "-c", str(tools._cpu_list(cfg.server_cpus)[0]), cfg.tls_floor, "--cert", cert,
           "--key", key, "--handshakes", str(TLS_FLOOR_HANDSHAKES), "--json", *TLS_FLOOR_ARGS]
    if resume:
        cmd += ["--resume", "--ticketer"]
    p = subprocess.run(cmd, capture_output=True, timeout=tools.RUN_TIMEOUT_SECS, check=True)
    j = json.loads(p.stdout)
    return {"part": "mx-tls-floor", "round": rnd, "cert": cert_kind, "resume": resume,
            "us_per_handshake": j["server_cpu_us_per_handshake"], "cipher": j["cipher"],
            "version": j["version"], "resumed_fraction": j["resumed_fraction"], "loadavg": tools.loadavg()}


def plan(cfg):
    """(workload, server) pairs per round, in the order of round 1."""
    pairs = []
    for workload in cfg.mx_workloads:
        for server in cfg.mx_servers or DEFAULT_SERVERS[workload]:
            if server == "haraka" and not os.path.exists(os.path.join(HARAKA_DIR, "node_modules")):
                continue
            pairs.append((workload, server))
    return pairs


def run(tools, cfg, results):
    out = results.setdefault("mx", {"runs": [], "floor": [], "notes": [], "failures": []})
    cfg.certs = make_certs(cfg.work)
    cfg.mayfly_builds = getattr(cfg, "mayfly_builds", None) or {"default": (cfg.mayfly, [])}
    cfg.mx_secs = getattr(cfg, "mx_secs", None) or (QUICK_RUN_SECS if cfg.quick else RUN_SECS)
    cfg.mx_workloads = getattr(cfg, "mx_workloads", None) or list(WORKLOADS)
    cfg.mx_servers = getattr(cfg, "mx_servers", None)
    cfg.mx_certs = getattr(cfg, "mx_certs", None) or ["ecdsa"]
    cfg.tls_floor = getattr(cfg, "tls_floor", None) or os.path.join(os.path.dirname(cfg.blaster), "tls-floor")
    cfg.smtp_sink = getattr(cfg, "smtp_sink", None) or "/usr/sbin/smtp-sink"
    if not os.path.exists(os.path.join(HARAKA_DIR, "node_modules")):
        out["notes"].append(f"Haraka not installed in {HARAKA_DIR} (npm ci); left out")
    pairs = plan(cfg)
    for rnd in range(1, cfg.rounds + 1):
        la, busy = tools.wait_quiet(cfg)
        tools.log(f"mx round {rnd}/{cfg.rounds} (load average {la:.2f}, other work {busy:.2f} CPUs)")
        # Interleave: every round runs each pair once, in an order rotated by the round.
        shift = (rnd - 1) % max(1, len(pairs))
        order = pairs[shift:] + pairs[:shift]
        for cert_kind in cfg.mx_certs:
            for resume in (False, True):
                if os.path.exists(cfg.tls_floor):
                    out["floor"].append(tls_floor(tools, cfg, cert_kind, resume, rnd))
            for workload, server in order:
                try:
                    rec = run_one(tools, cfg, server, workload, cert_kind, rnd)
                except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                    out["failures"].append({"round": rnd, "workload": workload, "server": server, "error": str(e)})
                    tools.log(f"  {workload} {server}: FAILED: {e}")
                    continue
                rec["quiet_before"] = {"loadavg": la, "other_cpus": busy}
                out["runs"].append(rec)
                tools.log(f"  {workload:13} {server:16} {cert_kind}: {rec['messages']:6} msgs "
                          f"{_f(rec['msgs_per_s'], 0):>6} msg/s  cpu {_f(rec['cpu_us_per_msg'], 1):>7} us/msg  "
                          f"c250 p50/p99 {_f(rec['c250_p50_us'], 0)}/{_f(rec['c250_p99_us'], 0)} us  "
                          f"la {rec['loadavg']:.1f}  errors {_errs(rec)}")


def _f(v, d):
    return "-" if v is None else f"{v:,.{d}f}"


def _errs(rec):
    e = rec["errors"]
    bad = {k: v for k, v in e.items() if v}
    return bad or "none"


def med_range(vals):
    """(median, min, max) of the values that are not None; Nones when there are none."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


def summary(results):
    mx = results.get("mx") or {}
    rows = {}
    for r in mx.get("runs", []):
        rows.setdefault((r["workload"], r["server"], r["cert"]), []).append(r)
    table = []
    for (workload, server, cert), rs in sorted(rows.items()):
        row = {"workload": workload, "server": server, "cert": cert, "rounds": len(rs)}
        for key in ("cpu_us_per_msg", "msgs_per_s", "c250_p50_us", "c250_p99_us", "c250_p999_us",
                    "cpus_busy_us_per_msg", "server_cpu_frac"):
            row[key], row[key + "_min"], row[key + "_max"] = med_range([r.get(key) for r in rs])
        tls = next((r["tls"] for r in rs if r.get("tls")), None)
        row["tls"] = f"{tls['version']} {tls['cipher']}" if tls else "plaintext"
        row["resumed"] = sum((r.get("tls") or {}).get("resumed", 0) for r in rs)
        row["handshakes"] = sum((r.get("tls") or {}).get("handshakes", 0) for r in rs)
        row["errors"] = [(r["round"], _errs(r)) for r in rs if _errs(r) != "none"]
        table.append(row)
    floor = {}
    for f in mx.get("floor", []):
        floor.setdefault((f["cert"], f["resume"]), []).append(f["us_per_handshake"])
    floor_rows = {k: med_range(v) for k, v in floor.items()}
    return table, floor_rows


def markdown(tools, results):
    if not results.get("mx"):
        return []
    table, floor_rows = summary(results)
    L = ["", "## MX workload (new connection + STARTTLS per message, slow senders)", ""]
    L.append(f"Senders: closed loop {CLOSED_SENDERS} senders with {THINK_MS} ms think time; open loop "
             f"{OPEN_RATE} arrivals/s, each its own connection, {OPEN_THINK_MS} ms think time; messages "
             f"{SIZE_DIST} with the mx header block. Server CPU from its cgroup; medians over rounds, "
             "range in brackets.")
    L.append("")
    L.append("| workload | server | TLS | CPU us/msg | msg/s | connect-to-250 p50 / p99 / p99.9 us | resumed/handshakes | server CPU busy | errors |")
    L.append("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in table:
        L.append(f"| {r['workload']} | {r['server']} | {r['tls']} ({r['cert']}) | "
                 f"{_f(r['cpu_us_per_msg'], 1)} ({_f(r['cpu_us_per_msg_min'], 1)}-{_f(r['cpu_us_per_msg_max'], 1)}) | "
                 f"{_f(r['msgs_per_s'], 0)} | {_f(r['c250_p50_us'], 0)} / {_f(r['c250_p99_us'], 0)} / "
                 f"{_f(r['c250_p999_us'], 0)} | {r['resumed']}/{r['handshakes']} | "
                 f"{_f(r['server_cpu_frac'], 2)} | {r['errors'] or 'none'} |")
    L.append("")
    L.append("Bare rustls handshake, server side only (tls-floor, in memory, pinned to the server CPU), "
             "us per handshake:")
    L.append("")
    for (cert, resume), (m, lo, hi) in sorted(floor_rows.items()):
        L.append(f"- {cert}, {'resumed (Ticketer)' if resume else 'full'}: {_f(m, 1)} ({_f(lo, 1)}-{_f(hi, 1)})")
    by = {(r["workload"], r["server"]): r for r in table}
    L.append("")
    for wl in ("closed-full", "open-full"):
        sink, may, pfx = by.get((wl, "smtp-sink")), by.get((wl, "mayfly")), by.get((wl, "postfix"))
        full = floor_rows.get(("ecdsa", False))
        if sink and may and full and sink["cpu_us_per_msg"] and may["cpu_us_per_msg"]:
            fl = sink["cpu_us_per_msg"] + full[0]
            L.append(f"- {wl}: floor = smtp-sink {sink['cpu_us_per_msg']:.1f} + bare handshake {full[0]:.1f} = "
                     f"{fl:.1f} us; Mayfly {may['cpu_us_per_msg']:.1f} us = **{may['cpu_us_per_msg'] / fl:.2f}x the floor**"
                     + (f"; Postfix {pfx['cpu_us_per_msg']:.1f} us = {pfx['cpu_us_per_msg'] / may['cpu_us_per_msg']:.1f}x Mayfly"
                        if pfx and pfx["cpu_us_per_msg"] else ""))
    for n in (results["mx"].get("notes") or []):
        L.append(f"- note: {n}")
    for fl in (results["mx"].get("failures") or []):
        L.append(f"- failed run: round {fl['round']} {fl['workload']} {fl['server']}: {fl['error']}")
    return L


def main():
    """Standalone: the MX part alone, e.g. to compare Mayfly builds (mayfly:NAME servers)."""
    sys.path.insert(0, HERE)
    import bench as tools  # noqa: E402  (bench.py beside this file: /proc helpers, wait_quiet)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--secs", type=float, default=None, help=f"seconds per run (default {RUN_SECS})")
    ap.add_argument("--mayfly", default="target/release/mayfly")
    ap.add_argument("--mayfly-build", action="append", default=[],
                    help="NAME=PATH[,EXTRA FLAG,...]: a Mayfly build, run as server mayfly:NAME")
    ap.add_argument("--blaster", default="target/release/smtp-blaster")
    ap.add_argument("--floor-sink", default="loadtest/floor/target/release/floor-sink",
                    help="for --servers floor:RUNTIME and floor-plain:RUNTIME (cargo build --release "
                         "--manifest-path loadtest/floor/Cargo.toml)")
    ap.add_argument("--servers", default="", help="comma list (default per workload): mayfly[:NAME], postfix, haraka, smtp-sink")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--certs", default="ecdsa", help="comma list of ecdsa, rsa")
    ap.add_argument("--server-cpus", default="0")
    ap.add_argument("--load-cpus", default="1")
    ap.add_argument("--max-load", type=float, default=0.5)
    ap.add_argument("--data-root", default="/var/tmp")
    ap.add_argument("--out", default=None, help="write <out>.json and <out>.md")
    cfg = ap.parse_args()
    cfg.max_wait_quiet = 30
    cfg.mx_secs = cfg.secs
    cfg.mayfly_builds = {"default": (cfg.mayfly, [])}
    for spec in cfg.mayfly_build:
        name, _, rest = spec.partition("=")
        path, *extra = rest.split(",")
        cfg.mayfly_builds[name] = (path, extra)
    cfg.mx_servers = [s for s in cfg.servers.split(",") if s] or None
    cfg.mx_workloads = [w for w in cfg.workloads.split(",") if w]
    cfg.mx_certs = [c for c in cfg.certs.split(",") if c]
    cfg.work = tempfile.mkdtemp(prefix="mayfly-bench-mx-")
    results = {"meta": {"loadavg_start": tools.loadavg(), "argv": sys.argv}}
    try:
        run(tools, cfg, results)
    finally:
        results["meta"]["loadavg_end"] = tools.loadavg()
        md = "\n".join(markdown(tools, results)) + "\n"
        print(md)
        if cfg.out:
            with open(cfg.out + ".json", "w") as f:
                json.dump(results, f, indent=1)
            with open(cfg.out + ".md", "w") as f:
                f.write(md)


if __name__ == "__main__":
    main()
