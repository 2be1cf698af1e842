"""Mailbox reads, Mayfly against Dovecot 2.3: the `mailbox` part of bench.py.

How to run it (as root; about 2 minutes with 2 rounds):

    loadtest/run-bench.sh --only mailbox --rounds 2
    # with binaries built already:
    MAYFLY=target/release/mayfly SMTP_BLASTER=target/release/smtp-blaster \
        MAIL_READER=target/release/mail-reader loadtest/run-bench.sh --only mailbox --rounds 2

It needs Dovecot 2.3 (`apt-get install -y dovecot-imapd dovecot-pop3d`; no daemon has to
run, this part starts its own instance) and Mayfly built with `--pop3` (and `--imap` for the
IMAP rows; a build without IMAP gets Dovecot-only IMAP rows and a note saying why).

What it does, per message size (1 KiB and 100 KiB, the sizes of the other parts):

1. Starts Mayfly (`--cores 1`, pinned to the server CPUs) with `--pop3` and `--imap`, and
   fills INBOXES inboxes `user0..user31@example.test` with MESSAGES_PER_INBOX messages each
   through smtp-blaster.
2. Reads every message back over Mayfly's HTTP API (`/messages/{id}/raw`) and writes those
   exact bytes into one Maildir per inbox, so both servers serve identical messages, and
   starts Dovecot on them: a private instance in a temporary directory under --data-root,
   127.0.0.1 on free high ports, no SSL, plaintext logins allowed, a passwd-file with one
   user per inbox (password PASSWORD, mail as uid/gid 65534), `mail_location =
   maildir:~/Maildir`, login services in high-performance mode (`service_count = 0`,
   `process_min_avail = 1` per server CPU), and the master started under `taskset` on the
   server CPUs so every process it forks inherits them.
3. One unmeasured pass of mail-reader over every inbox on each server and protocol (builds
   Dovecot's index and cache files, and checks every size), then `--rounds` rounds: in each,
   for POP3 and for IMAP, mail-reader runs against Mayfly and Dovecot in turn (the order
   flips every round), pinned to the load CPUs, CLIENTS clients with one inbox each, per
   message requests (POP3 `RETR n`, IMAP `UID FETCH <uid> (BODY.PEEK[])`), one at a time,
   for 3 s (2 with --quick) after a READER_WARMUP_SECS warm-up, with `--verify` (each
   message's size against LIST / RFC822.SIZE). The warm-up pass uses `--verify-checksums`
   (smtp-blaster's checksum of every message too); the measured runs do not, because with
   100 KiB messages the copy and CRC would make the client the bottleneck.

What it reports per (size, protocol, server), medians over rounds: messages and MB per
second, p50/p99 latency per message (from the request's write to the message's last byte),
and server CPU per message read. Server CPU is counted over the measured window only (from
the end of the reader's warm-up to its exit, so logins, Dovecot's process forks and the
listing stay out) and divided by the messages read in that window:
- Mayfly: utime+stime of its one process (all threads) from /proc/PID/stat;
- Dovecot: utime+stime of the master and every process below it, plus cutime+cstime (the
  children they reaped during the window, e.g. a login process that exited), from
  /proc/PID/stat of the whole tree. A process that starts and exits between two samples is
  still counted through its parent's cutime.
As a cross-check the JSON also has the busy time of the server CPUs from /proc/stat per
message (`cpus_busy_us_per_msg`: includes anything else that ran there, and the other,
idle, server), and the CPU per message over the whole reader run including logins
(`cpu_us_per_msg_whole_run`). The ratio columns are Mayfly / Dovecot.

Both servers stay up for all rounds of a size (the data is filled once); the one not being
measured is idle. Every run is bounded (`-d` plus RUN_TIMEOUT_SECS), everything is on
127.0.0.1, and both servers are stopped (Dovecot's whole process tree) and their files
removed at the end.

Python 3 standard library only. This file is named like the standard library's `mailbox`
module and shadows it inside bench.py's process (bench.py's directory comes first on
sys.path); nothing in the bench uses that module.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

PROTOCOLS = ("pop3", "imap")
SERVERS = ("mayfly", "dovecot")
INBOXES = 32
MESSAGES_PER_INBOX = 50
CLIENTS = 32
DOMAIN = "example.test"
# smtp-blaster sends to user<k>@DOMAIN; mail-reader's pattern names the same inboxes.
ADDRESS_PATTERN = "user{n}@" + DOMAIN
PASSWORD = "bench"
# Dovecot refuses to access mail as root; nobody:nogroup owns the Maildirs.
MAIL_UID = 65534
MAIL_GID = 65534
READER_WARMUP_SECS = 0.5
READER_TIMEOUT_SECS = 10
DOVECOT_START_TIMEOUT_SECS = 20
DOVECOT_STOP_TIMEOUT_SECS = 10
GREETING_TIMEOUT_SECS = 3
HTTP_TIMEOUT_SECS = 10
# Mayfly's inbox listing returns at most this many per page; MESSAGES_PER_INBOX is below it.
LIST_LIMIT = 1000


# ----------------------------------------------------------------------------- /proc

def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()


def _tree(root_pid):
    """root_pid and every process below it."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat_fields(name)
        if fields:
            children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def tree_cpu_ticks(root_pid):
    """utime+stime+cutime+cstime summed over root_pid's process tree, in clock ticks."""
    total = 0
    for pid in _tree(root_pid):
        fields = _stat_fields(pid)
        if fields:
            total += sum(int(x) for x in fields[11:15])
    return total


def cpus_busy_ticks(cpus):
    """Busy (non-idle, non-iowait) ticks of the listed CPUs, from /proc/stat."""
    wanted = {f"cpu{c}" for c in cpus}
    total = 0
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in wanted:
                vals = [int(x) for x in parts[1:9]]
                total += sum(vals) - vals[3] - vals[4]
    return total


# ----------------------------------------------------------------------------- servers

def _greeting(addr, timeout=GREETING_TIMEOUT_SECS):
    """The first bytes a server sends on connect (b"" if none in time)."""
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(512)
    except OSError:
        return b""


def _greets(addr, protocol):
    return _greeting(addr).startswith(b"+OK" if protocol == "pop3" else b"* OK")


class Dovecot:
    """A private Dovecot instance on its own Maildirs, pinned like the other servers."""

    kind = "dovecot"

    def __init__(self, binary, cfg, maildirs_root, users):
        self.root = maildirs_root
        self.pop3 = f"127.0.0.1:{_free_port()}"
        self.imap = f"127.0.0.1:{_free_port()}"
        conf = os.path.join(self.root, "dovecot.conf")
        with open(os.path.join(self.root, "users"), "w") as f:
            for user in users:
                home = os.path.join(self.root, "home", user)
                f.write(f"{user}:{{PLAIN}}{PASSWORD}:{MAIL_UID}:{MAIL_GID}::{home}::\n")
        n_cpus = len(_cpu_list(cfg.server_cpus))
        with open(conf, "w") as f:
            f.write(DOVECOT_CONF.format(root=self.root, pop3_port=self.pop3.rsplit(":", 1)[1],
                                        imap_port=self.imap.rsplit(":", 1)[1], login_min_avail=n_cpus,
                                        process_limit=max(1024, 4 * CLIENTS),
                                        instance=f"mayfly-bench-{os.getpid()}"))
        log = open(os.path.join(self.root, "dovecot.stdout"), "ab")
        self.proc = subprocess.Popen(["taskset", "-c", cfg.server_cpus, binary, "-F", "-c", conf],
                                     stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + DOVECOT_START_TIMEOUT_SECS
        while time.monotonic() < deadline and self.proc.poll() is None:
            if _greets(self.pop3, "pop3") and _greets(self.imap, "imap"):
                return
            time.sleep(0.2)
        self.stop(keep_files=True)
        raise RuntimeError(f"dovecot did not start (exit {self.proc.returncode}); see "
                           f"{self.root}/dovecot.stdout and {self.root}/dovecot.log: "
                           + _tail(os.path.join(self.root, "dovecot.stdout"))
                           + _tail(os.path.join(self.root, "dovecot.log")))

    @property
    def pid(self):
        return self.proc.pid

    def cpu_ticks(self):
        return tree_cpu_ticks(self.pid)

    def rss_kib(self):
        total = 0
        for pid in _tree(self.pid):
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self, keep_files=False):
        pids = _tree(self.pid) if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=DOVECOT_STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # The master stops its children; kill any that outlived it (by pid, as recorded).
        for pid in pids:
            if pid != self.pid and _stat_fields(pid) is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if not keep_files:
            shutil.rmtree(self.root, ignore_errors=True)


DOVECOT_CONF = """\
# Written by loadtest/bench/mail_clients.py for one benchmark run.
instance_name = {instance}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
login_trusted_networks = 127.0.0.0/8
mail_location = maildir:~/Maildir
mail_max_userip_connections = 1000
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  service_count = 0
  process_min_avail = {login_min_avail}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
  service_count = 0
  process_min_avail = {login_min_avail}
}}
service imap {{
  process_limit = {process_limit}
}}
service pop3 {{
  process_limit = {process_limit}
}}
"""


def _tail(path, n=400):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")
    except OSError:
        return ""


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _cpu_list(spec):
    cpus = set()
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            cpus.update(range(int(a), int(b) + 1))
        elif part:
            cpus.add(int(part))
    return sorted(cpus)


def dovecot_binary(cfg):
    return cfg.dovecot if os.path.sep in cfg.dovecot else shutil.which(cfg.dovecot) or (
        "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)


def dovecot_version(binary):
    try:
        p = subprocess.run([binary, "--version"], capture_output=True, timeout=10)
        return p.stdout.decode().strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def _mayfly_flags(cfg):
    """Mayfly's --help, to see whether this build has --pop3 and --imap."""
    try:
        p = subprocess.run([cfg.mayfly, "--help"], capture_output=True, timeout=10)
        return p.stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return ""


def start_mayfly(tools, cfg, help_text):
    extra = []
    pop3 = imap = None
    if "--pop3 " in help_text:
        pop3 = f"127.0.0.1:{_free_port()}"
        extra += ["--pop3", pop3]
    if "--imap " in help_text:
        imap = f"127.0.0.1:{_free_port()}"
        extra += ["--imap", imap]
    if "--max-mailbox-sessions-per-ip" in help_text:
        # all load comes from 127.0.0.1
        extra += ["--max-mailbox-sessions-per-ip", "0"]
    srv = tools.start_mayfly(cfg, extra=extra)
    srv.pop3, srv.imap = pop3, imap
    srv.cpu_ticks = lambda: sum(srv.cpu())
    return srv


# ----------------------------------------------------------------------------- data

def fill(tools, cfg, srv, size):
    """Sends INBOXES * MESSAGES_PER_INBOX messages of `size` bytes; raises unless all were accepted."""
    n = INBOXES * MESSAGES_PER_INBOX
    cmd = tools.blaster_cmd(cfg, srv, "-c", "32", "-m", str(n), "--size", str(size), "--inboxes", str(INBOXES),
                            "--domain", DOMAIN, "--pipelining")
    p = subprocess.run(cmd, capture_output=True, timeout=tools.RUN_TIMEOUT_SECS)
    try:
        j = json.loads(p.stdout)
    except ValueError:
        j = {}
    if j.get("messages_accepted") != n:
        raise RuntimeError(f"filling Mayfly: {j.get('messages_accepted')} of {n} accepted "
                           f"(exit {p.returncode}): {p.stderr.decode(errors='replace')[-300:]}")
    return j


def _get(url):
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECS) as r:
        return r.read()


def export_to_maildirs(srv, root):
    """Copies every inbox's raw messages from Mayfly's HTTP API into root/home/<addr>/Maildir/cur,
    oldest first, and returns (addresses, messages, bytes)."""
    users, n_messages, n_bytes = [], 0, 0
    seq = 0
    for k in range(INBOXES):
        addr = ADDRESS_PATTERN.replace("{n}", str(k))
        q = urllib.parse.quote(addr, safe="")
        listing = json.loads(_get(f"http://{srv.http}/api/v1/inboxes/{q}?limit={LIST_LIMIT}"))
        ids = [m["id"] for m in listing.get("messages", [])]
        if len(ids) != MESSAGES_PER_INBOX:
            raise RuntimeError(f"{addr} holds {len(ids)} messages, expected {MESSAGES_PER_INBOX}")
        maildir = os.path.join(root, "home", addr, "Maildir")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(maildir, sub), exist_ok=True)
        # The listing is newest first; Dovecot numbers files in the order it finds them.
        for mid in reversed(ids):
            raw = _get(f"http://{srv.http}/api/v1/inboxes/{q}/messages/{urllib.parse.quote(mid, safe='')}/raw")
            # S= is the file size, W= the size with CRLF line ends (RFC822.SIZE); giving both
            # spares Dovecot reading the file to learn them.
            vsize = len(raw) + raw.count(b"\n") - raw.count(b"\r\n")
            seq += 1
            name = f"{1700000000 + seq}.M{seq}P{os.getpid()}.mayfly-bench,S={len(raw)},W={vsize}:2,"
            with open(os.path.join(maildir, "cur", name), "wb") as f:
                f.write(raw)
            n_messages += 1
            n_bytes += len(raw)
        users.append(addr)
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "home")):
        os.chown(dirpath, MAIL_UID, MAIL_GID)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), MAIL_UID, MAIL_GID)
    return users, n_messages, n_bytes


# ----------------------------------------------------------------------------- runs

def reader_cmd(cfg, addr, protocol, *args):
    return ["taskset", "-c", cfg.load_cpus, cfg.reader, addr, "--protocol", protocol, "-c", str(CLIENTS),
            "--inboxes", str(INBOXES), "--address", ADDRESS_PATTERN, "--password", PASSWORD,
            "--json", "--timeout", str(READER_TIMEOUT_SECS), *args]


def _parse(p):
    try:
        return json.loads(p.stdout)
    except ValueError:
        return {"fatal": (p.stdout.decode(errors="replace")[-300:] + p.stderr.decode(errors="replace")[-300:])
                or f"exit {p.returncode}"}


def _errors(j):
    v = j.get("verify") or {}
    return {"errors": j.get("errors") or None, "conn": j.get("connection_errors") or None,
            "fatal": j.get("fatal"), "size_mismatches": v.get("size_mismatches") or None,
            "checksum_mismatches": v.get("checksum_mismatches") or None}


def warm_up(tools, cfg, srv, protocol, addr):
    """One unmeasured pass over every inbox; returns the reader's JSON."""
    n = INBOXES * MESSAGES_PER_INBOX
    p = subprocess.run(reader_cmd(cfg, addr, protocol, "-m", str(n), "--verify-checksums"), capture_output=True,
                       timeout=tools.RUN_TIMEOUT_SECS)
    j = _parse(p)
    j["exit"] = p.returncode
    return j


def measure(tools, cfg, srv, protocol, addr):
    """One measured reader run; server CPU counted from the end of the reader's warm-up."""
    secs = cfg.mailbox_secs
    cpus = _cpu_list(cfg.server_cpus)
    cmd = reader_cmd(cfg, addr, protocol, "-d", str(secs), "--warmup", str(READER_WARMUP_SECS), "--verify")
    all0, srv0, set0 = tools.system_busy_ticks(), srv.cpu_ticks(), cpus_busy_ticks(cpus)
    ru0 = os.times()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(READER_WARMUP_SECS)
    srv_w, set_w = srv.cpu_ticks(), cpus_busy_ticks(cpus)
    try:
        out, err = p.communicate(timeout=tools.RUN_TIMEOUT_SECS)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    wall = time.monotonic() - t0
    srv1, set1, all1 = srv.cpu_ticks(), cpus_busy_ticks(cpus), tools.system_busy_ticks()
    ru1 = os.times()
    p.stdout, p.stderr = out, err
    j = _parse(p)
    msgs = j.get("messages_read") or 0
    all_msgs = msgs + (j.get("messages_read_unmeasured") or 0)
    clk = tools.CLK_TCK
    server_cpu = (srv1 - srv_w) / clk
    client_cpu = (ru1.children_user - ru0.children_user) + (ru1.children_system - ru0.children_system)
    other = max(0.0, (all1 - all0) / clk - (srv1 - srv0) / clk - client_cpu)
    lat = j.get("latency_us") or {}
    v = j.get("verify") or {}
    return {
        "client_cmd": " ".join(cmd), "exit": p.returncode, "wall_s": wall,
        "messages": msgs, "bytes": j.get("bytes_read"), "msgs_per_s": j.get("messages_per_sec"),
        "mb_per_s": j.get("megabytes_per_sec"),
        "bytes_per_msg": j["bytes_read"] / msgs if msgs else None,
        "lat_p50_us": lat.get("p50"), "lat_p99_us": lat.get("p99"),
        "client_idle": j.get("client_idle_fraction"),
        "server_cpu_s": server_cpu,
        "cpu_us_per_msg": server_cpu / msgs * 1e6 if msgs else None,
        "cpus_busy_us_per_msg": (set1 - set_w) / clk / msgs * 1e6 if msgs else None,
        "cpu_us_per_msg_whole_run": (srv1 - srv0) / clk / all_msgs * 1e6 if all_msgs else None,
        "server_busy_frac": server_cpu / max(1e-9, wall - READER_WARMUP_SECS) / len(cpus),
        "other_cpu_frac": other / wall / os.cpu_count() if wall > 0 else None,
        "server_rss_kib": srv.rss_kib(),
        "verified": v.get("size_checked"), "checksums_checked": v.get("checksums_checked"),
        "errors": _errors(j),
    }


def _bad(rec):
    return rec.get("exit") not in (0, None) or any(v for v in (rec.get("errors") or {}).values())


def run(tools, cfg, results):
    """The whole part: for each size, fill, mirror into Dovecot, warm up, interleaved rounds."""
    out = results.setdefault("mailbox", {"runs": [], "sizes": [], "warmups": [], "unsupported": {}, "notes": []})
    binary = dovecot_binary(cfg)
    out["dovecot"] = dovecot_version(binary) if binary else None
    if not binary:
        out["notes"].append(f"Dovecot not found ({cfg.dovecot!r}); "
                            "apt-get install -y dovecot-imapd dovecot-pop3d. Mayfly alone was measured.")
        tools.log("mailbox: " + out["notes"][-1])
    help_text = _mayfly_flags(cfg)
    sizes = (("1k", tools.SIZE_1K_BYTES), ("100k", tools.SIZE_100K_BYTES))
    for size_name, size in sizes:
        la, busy = tools.wait_quiet(cfg)
        tools.log(f"mailbox {size_name}: {INBOXES} inboxes x {MESSAGES_PER_INBOX} messages "
                  f"(load average {la:.2f}, other work {busy:.2f} CPUs)")
        root = tempfile.mkdtemp(prefix="mayfly-bench-dovecot-", dir=cfg.data_root)
        # Dovecot's mail processes run as MAIL_UID and must get through this directory.
        os.chmod(root, 0o755)
        mayfly = dovecot = None
        try:
            mayfly = start_mayfly(tools, cfg, help_text)
            filled = fill(tools, cfg, mayfly, size)
            users, n_msgs, n_bytes = export_to_maildirs(mayfly, root)
            out["sizes"].append({"size": size_name, "blaster_size": size, "messages": n_msgs, "bytes": n_bytes,
                                 "bytes_per_msg": n_bytes / n_msgs, "fill_msgs_per_s": filled.get("messages_per_sec")})
            tools.log(f"  filled Mayfly and mirrored {n_msgs} messages ({n_bytes / n_msgs:.0f} bytes each on "
                      f"average, as stored) into Maildirs under {root}")
            servers = {"mayfly": mayfly}
            if binary:
                try:
                    dovecot = Dovecot(binary, cfg, root, users)
                    servers["dovecot"] = dovecot
                except RuntimeError as e:
                    out["unsupported"]["dovecot"] = str(e)[:600]
                    tools.log(f"  dovecot: {e}")
            targets = {}
            for kind, srv in servers.items():
                for proto in PROTOCOLS:
                    addr = getattr(srv, proto)
                    if not addr or not _greets(addr, proto):
                        why = (f"no --{proto} in this build" if not addr
                               else f"no {proto.upper()} greeting on --{proto} (this build does not serve it)")
                        out["unsupported"][f"{kind} {proto}"] = why
                        tools.log(f"  {kind} {proto}: not measured: {why}")
                        continue
                    j = warm_up(tools, cfg, srv, proto, addr)
                    ok = j["exit"] == 0 and not any(_errors(j).values())
                    v = j.get("verify") or {}
                    tools.log(f"  warm-up {kind:8} {proto}: {j.get('messages_read')} messages, "
                              f"{tools.fmt(j.get('messages_per_sec'), 0)} msg/s, {v.get('size_checked')} sizes and "
                              f"{v.get('checksums_checked')} checksums checked"
                              f"{'' if ok else '  ERR ' + json.dumps(_errors(j))}")
                    out["warmups"].append({"size": size_name, "server": kind, "protocol": proto, "ok": ok,
                                           "messages": j.get("messages_read"), "verify": v, "errors": _errors(j)})
                    targets[(kind, proto)] = (srv, addr)
            for rnd in range(1, cfg.rounds + 1):
                la, busy = tools.wait_quiet(cfg)
                tools.log(f"  round {rnd}/{cfg.rounds} (load average {la:.2f}, other work {busy:.2f} CPUs)")
                for proto in PROTOCOLS:
                    order = SERVERS if rnd % 2 else tuple(reversed(SERVERS))
                    for kind in order:
                        if (kind, proto) not in targets:
                            continue
                        srv, addr = targets[(kind, proto)]
                        rec = measure(tools, cfg, srv, proto, addr)
                        rec.update({"round": rnd, "size": size_name, "protocol": proto, "server": kind,
                                    "loadavg": la, "other_busy_cpus": busy})
                        out["runs"].append(rec)
                        tools.log(f"    {size_name:4} {proto:4} {kind:8} {tools.fmt(rec['msgs_per_s'], 0):>8} msg/s "
                                  f"{tools.fmt(rec['mb_per_s'], 0):>6} MB/s {tools.fmt(rec['cpu_us_per_msg'], 1):>7} us/msg "
                                  f"p50/p99 {tools.fmt(rec['lat_p50_us'], 0)}/{tools.fmt(rec['lat_p99_us'], 0)} us "
                                  f"server busy {tools.fmt(rec['server_busy_frac'], 2)} "
                                  f"other {tools.fmt(rec['other_cpu_frac'], 2)}"
                                  f"{'  ERR ' + json.dumps(rec['errors']) if _bad(rec) else ''}")
        finally:
            if dovecot:
                dovecot.stop()
            if mayfly:
                mayfly.stop()
            shutil.rmtree(root, ignore_errors=True)
            out["summary"] = summarize(tools, results)


# ----------------------------------------------------------------------------- report

def summarize(tools, results):
    """Medians per (size, protocol, server), with Mayfly/Dovecot ratios."""
    runs = (results.get("mailbox") or {}).get("runs") or []
    rows = []
    keys = []
    for r in runs:
        if (r["size"], r["protocol"]) not in keys:
            keys.append((r["size"], r["protocol"]))
    for size, proto in keys:
        row = {"size": size, "protocol": proto}
        for kind in SERVERS:
            rs = [r for r in runs if r["size"] == size and r["protocol"] == proto and r["server"] == kind]
            if not rs:
                continue
            x = {k: tools.med([r.get(k) for r in rs]) for k in
                 ("msgs_per_s", "mb_per_s", "cpu_us_per_msg", "cpus_busy_us_per_msg", "cpu_us_per_msg_whole_run",
                  "lat_p50_us", "lat_p99_us", "bytes_per_msg", "server_rss_kib", "other_cpu_frac",
                  "client_idle", "server_busy_frac")}
            x["runs"] = len(rs)
            x["bad_runs"] = sum(1 for r in rs if _bad(r))
            x["all_msgs_per_s"] = [r.get("msgs_per_s") for r in rs]
            x["all_cpu_us_per_msg"] = [r.get("cpu_us_per_msg") for r in rs]
            row[kind] = x
        a, b = row.get("mayfly"), row.get("dovecot")
        if a and b:
            row["ratio_msgs_per_s"] = _ratio(a["msgs_per_s"], b["msgs_per_s"])
            row["ratio_cpu_per_msg"] = _ratio(a["cpu_us_per_msg"], b["cpu_us_per_msg"])
        rows.append(row)
    return rows


def markdown(tools, results):
    """The mailbox section of the report, or an empty list."""
    mb = results.get("mailbox")
    if not mb:
        return []
    rows = summarize(tools, results)
    m = results.get("meta") or {}
    f = tools.fmt
    L = ["## Mailbox reads: Mayfly vs Dovecot", ""]
    L.append(f"{INBOXES} inboxes x {MESSAGES_PER_INBOX} messages, the same bytes in both servers "
             f"(Mayfly's, mirrored into Maildirs); {mb.get('dovecot') and 'Dovecot ' + mb['dovecot'] or 'Dovecot: not run'}. "
             f"mail-reader on CPU {m.get('load_cpus')} with {CLIENTS} clients, one inbox each, one request per message "
             f"(POP3 `RETR n`, IMAP `UID FETCH <uid> (BODY.PEEK[])`), no pipelining, `--verify` (sizes; "
             "the unmeasured warm-up pass also checked every message's checksum); servers on CPU "
             f"{m.get('server_cpus')} (Mayfly `--cores 1`; Dovecot's master under taskset, so all its processes), "
             "alternating every round; medians over rounds.")
    L.append("Server CPU per message counts the measured window only (after a "
             f"{READER_WARMUP_SECS} s warm-up, so logins and process forks stay out): Mayfly's process utime+stime; "
             "Dovecot's whole process tree (utime+stime of the master and every descendant, plus cutime+cstime of "
             "the children they reaped), from /proc/PID/stat. Ratios are Mayfly / Dovecot: above 1 means Mayfly "
             "reads more messages per second, or spends more CPU per message.")
    L.append("")
    L.append("| size | protocol | Mayfly msg/s | Dovecot msg/s | ratio | Mayfly MB/s | Dovecot MB/s | "
             "Mayfly CPU us/msg | Dovecot CPU us/msg | ratio | Mayfly p50/p99 us | Dovecot p50/p99 us | bytes/msg | "
             "runs with errors |")
    L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        a, b = r.get("mayfly", {}), r.get("dovecot", {})
        sizes = sorted({round(x["bytes_per_msg"]) for x in (a, b) if x.get("bytes_per_msg")})
        L.append(f"| {r['size']} | {r['protocol'].upper()} | {f(a.get('msgs_per_s'), 0)} | {f(b.get('msgs_per_s'), 0)} | "
                 f"{f(r.get('ratio_msgs_per_s'), 2)} | {f(a.get('mb_per_s'), 1)} | {f(b.get('mb_per_s'), 1)} | "
                 f"{f(a.get('cpu_us_per_msg'), 1)} | {f(b.get('cpu_us_per_msg'), 1)} | {f(r.get('ratio_cpu_per_msg'), 2)} | "
                 f"{f(a.get('lat_p50_us'), 0)}/{f(a.get('lat_p99_us'), 0)} | "
                 f"{f(b.get('lat_p50_us'), 0)}/{f(b.get('lat_p99_us'), 0)} | {'/'.join(f(s, 0) for s in sizes) or '-'} | "
                 f"{a.get('bad_runs', '-')}/{b.get('bad_runs', '-')} |")
    L.append("")
    L.append("Cross-checks (medians): busy time of the server CPU from /proc/stat per message, and server CPU per "
             "message over the whole reader run (logins included); server CPU busy share; client idle share.")
    L.append("")
    for r in rows:
        for kind in SERVERS:
            x = r.get(kind)
            if x:
                L.append(f"- {r['size']} {r['protocol'].upper()} {kind}: CPU {f(x.get('cpus_busy_us_per_msg'), 1)} us/msg "
                         f"by /proc/stat, {f(x.get('cpu_us_per_msg_whole_run'), 1)} us/msg whole run; server busy "
                         f"{f(x.get('server_busy_frac'), 2)}, client idle {f(x.get('client_idle'), 2)}, RSS "
                         f"{f(x.get('server_rss_kib'), 0)} KiB; per round "
                         + ", ".join(f(v, 0) for v in x["all_msgs_per_s"]) + " msg/s, "
                         + ", ".join(f(v, 1) for v in x["all_cpu_us_per_msg"]) + " us/msg")
    warmups = mb.get("warmups") or []
    if warmups:
        sizes_checked = sum((w.get("verify") or {}).get("size_checked") or 0 for w in warmups)
        sums_checked = sum((w.get("verify") or {}).get("checksums_checked") or 0 for w in warmups)
        L.append(f"- warm-up passes (`--verify-checksums`): {sizes_checked:,} sizes and {sums_checked:,} checksums "
                 f"checked, {sum(1 for w in warmups if not w['ok'])} of {len(warmups)} passes with errors"
                 + "".join(f"; {w['size']} {w['protocol']} {w['server']}: {json.dumps(w['errors'])}"
                           for w in warmups if not w["ok"]))
    for what, why in (mb.get("unsupported") or {}).items():
        L.append(f"- not measured: {what}: {why}")
    for note in mb.get("notes") or []:
        L.append(f"- {note}")
    L.append("")
    return L


def _ratio(a, b):
    return a / b if a is not None and b else None
