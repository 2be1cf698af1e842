"""What sender authentication costs: the `auth` part of bench.py.

How to run it (as root; about 2 to 3 minutes with 3 rounds):

    apt-get install -y nsd openssl      # once; no daemon needs to run, this part starts its own
    loadtest/run-bench.sh --only auth --rounds 3
    # with binaries built already:
    MAYFLY=target/release/mayfly SMTP_BLASTER=target/release/smtp-blaster \\
        loadtest/run-bench.sh --only auth --rounds 3

Run `cargo bench --bench auth` before it to have the report quote ring's signature
verification cost beside the measured one (it reads target/criterion/; without it the goal
column says which numbers are missing).

Setup, once per run of this part, in a scratch directory:
- an RSA-2048 and an Ed25519 key (`openssl genpkey`), and zones for nsd 4.6: `test.` (so a
  DMARC tree walk ends in NXDOMAIN) and `example.test.` with SPF `v=spf1 ip4:127.0.0.1 -all`,
  DMARC `p=reject`, the keys at `rsa._domainkey` and `ed._domainkey`, and each key again
  under a wildcard, `*.rsa._domainkey` and `*.ed._domainkey`, so any selector `cN.ed` finds
  the Ed25519 key; every TTL is an hour, longer than any run;
- nsd on 127.0.0.1 (a free port), pinned to the load CPUs, as Mayfly's --dns-resolver.

Part 1, cost per message: W2 as in the interleaved part (smtp-blaster, 32 connections, no
pipelining, busy-polling, 1,136-byte messages, on the load CPUs) against a fresh Mayfly
(`--cores 1` on the server CPUs) per run, the cases in rotating order every round:
- `off`: `--verify-senders off`, unsigned messages (the baseline);
- `annotate, unsigned`: SPF, DMARC and iprev, no signature to check;
- `annotate, RSA-2048, warm` and `annotate, Ed25519, warm`: every message signed with the one
  key (selector `rsa` or `ed`), so after the first message every answer comes from the
  resolver thread's caches;
- `annotate, Ed25519, cold`: message n is signed with selector `c<n>.ed` (the blaster's
  `--dkim-variants` = messages), so every message's key lookup is a cache miss that goes to
  nsd (SPF and DMARC stay cached: the DNS cost of one DKIM key per message).
Signatures are made by smtp-blaster before its run (`--dkim-key`), and it sizes the body so a
signed message is as long as an unsigned one. The client IP is 127.0.0.1, whose PTR hickory
answers itself (`localhost`, RFC 6761): iprev costs no query.

Part 2, a resolver that never answers: Mayfly's --dns-resolver is dns_blackhole.py (on the
load CPUs), which relays to nsd but drops every query under `blackhole.test`. Group A is W2
with RSA-2048-signed mail from example.test (warm), busy-polling, for a fixed time; it runs
alone, and while a group B of NB sessions (smtp-blaster --epoll, so it takes no CPU while it
waits) sends mail from blackhole.test, whose SPF lookup never returns: each B message is
answered only at --auth-timeout (2 s). B starts one deadline before A, so A runs while B's
lookups are in steady state. NB is 32 (another W2 group) and BLACKHOLE_SESSIONS_MANY, more
than the resolver thread's IN_FLIGHT_MAX (128) requests in flight.

Measured per run: msg/s and latency from smtp-blaster's JSON; server CPU per message as the
server's utime+stime (all threads: the executor and the resolver thread, both on the server
CPUs) over the client's run, per accepted message of the measured client; UDP receive errors
on the machine during the run (/proc/net/snmp: a dropped DNS datagram makes a lookup wait
for the deadline); and, after the run, the auth results of the messages in a few inboxes
(the message JSON's `auth`), counted, to show the checks did what the case says.

Python 3 standard library only; 127.0.0.1 only; every run bounded in messages or time.
"""

import base64
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DOMAIN = "example.test"
BLACKHOLE_DOMAIN = "blackhole.test"
ZONE_TTL_SECS = 3600
# Mayfly's deadline for the checks; B's messages take this long each.
AUTH_TIMEOUT = "2s"
AUTH_TIMEOUT_SECS = 2.0
BLACKHOLE_SESSIONS = 32
BLACKHOLE_SESSIONS_MANY = 256
# After the run: read the messages of this many inboxes back (about messages/1000 each).
SAMPLE_INBOXES = 5
HTTP_TIMEOUT_SECS = 10
NSD_START_TIMEOUT_SECS = 10
NSD_STOP_TIMEOUT_SECS = 10
FORWARDER_START_TIMEOUT_SECS = 10
CRITERION_BENCHES = ("signature/rsa2048", "signature/ed25519", "dkim_1KiB/rsa2048", "dkim_1KiB/ed25519",
                     "dkim_1KiB/parse_only", "executor/header", "executor/strip_forged")

# (name, label, key, selector, variants): key None = unsigned; variants "messages" = one per message.
CASES = (
    ("off", "off", None, None, None),
    ("unsigned", "annotate, unsigned", None, None, None),
    ("rsa-warm", "annotate, RSA-2048, warm", "rsa", "rsa", None),
    ("ed-warm", "annotate, Ed25519, warm", "ed", "ed", None),
    ("ed-cold", "annotate, Ed25519, cold (a key lookup per message)", "ed", "c{n}.ed", "messages"),
)
# What the checks should say for each case's messages (dkim: the results, in order).
EXPECTED = {
    "unsigned": "spf=pass dkim=[] dmarc=pass arc=none iprev=pass",
    "rsa-warm": "spf=pass dkim=[pass] dmarc=pass arc=none iprev=pass",
    "ed-warm": "spf=pass dkim=[pass] dmarc=pass arc=none iprev=pass",
    "ed-cold": "spf=pass dkim=[pass] dmarc=pass arc=none iprev=pass",
}


# ----------------------------------------------------------------------------- setup

def which(tool):
    """The tool's path; daemons such as nsd live in /usr/sbin, which PATH may lack."""
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def missing_tools():
    return [t for t in ("nsd", "openssl") if not which(t)]


def make_keys(work):
    """(paths, zone TXT data) of an RSA-2048 and an Ed25519 key."""
    paths, records = {}, {}
    for name, args, kind in (("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "rsa"),
                             ("ed", ["-algorithm", "ed25519"], "ed25519")):
        path = os.path.join(work, f"{name}.pem")
        subprocess.run(["openssl", "genpkey", *args, "-out", path], check=True, capture_output=True)
        der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                             check=True, capture_output=True).stdout
        # DKIM's p= is the SubjectPublicKeyInfo for RSA (RFC 6376 3.6.1) but the bare
        # 32-byte key for Ed25519 (RFC 8463 4), the last 32 bytes of its SPKI.
        public = der if kind == "rsa" else der[-32:]
        paths[name] = path
        records[name] = f"v=DKIM1; k={kind}; p={base64.b64encode(public).decode()}"
    return paths, records


def txt(text):
    """TXT data as quoted strings of at most 255 octets each (RFC 1035 3.3.14)."""
    return " ".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255))


def zones(records):
    soa = (f"@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 {ZONE_TTL_SECS}\n@ IN NS ns.test.\n")
    head = lambda origin: f"$ORIGIN {origin}\n$TTL {ZONE_TTL_SECS}\n{soa}"
    return {
        "test.": head("test.") + "ns IN A 127.0.0.1\n",
        f"{DOMAIN}.": head(f"{DOMAIN}.") +
        '@ IN TXT "v=spf1 ip4:127.0.0.1 -all"\n'
        '_dmarc IN TXT "v=DMARC1; p=reject"\n' +
        "".join(f"{k}._domainkey IN TXT {txt(v)}\n*.{k}._domainkey IN TXT {txt(v)}\n" for k, v in records.items()),
    }


def dns_query(name, qtype=6):
    """A DNS query for `name` (default SOA), id 0x4d59."""
    q = bytearray(b"\x4d\x59\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00")
    for label in name.strip(".").split("."):
        q.append(len(label))
        q += label.encode()
    q += b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"
    return bytes(q)


def answers(addr, name, timeout=0.2):
    """Whether the server at addr answers a query for name with NOERROR."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        q = dns_query(name)
        s.sendto(q, addr)
        data, _ = s.recvfrom(4096)
        return len(data) >= 12 and data[:2] == q[:2] and data[2] & 0x80 and data[3] & 0x0F == 0
    except OSError:
        return False
    finally:
        s.close()


class Nsd:
    """A private nsd serving `zone_texts`, pinned to `cpus`, on 127.0.0.1 and a free port."""

    def __init__(self, work, zone_texts, cpus):
        self.dir = os.path.join(work, "nsd")
        os.makedirs(self.dir, exist_ok=True)
        zone_lines = ""
        for name, text in zone_texts.items():
            fname = name.rstrip(".") + ".zone"
            with open(os.path.join(self.dir, fname), "w") as f:
                f.write(text)
            zone_lines += f'zone:\n    name: "{name}"\n    zonefile: "{fname}"\n'
        self.proc = None
        for _attempt in range(5):
            port = free_udp_tcp_port()
            d = self.dir
            conf = (f'server:\n    ip-address: 127.0.0.1@{port}\n    username: ""\n    database: ""\n'
                    f'    zonesdir: "{d}"\n    pidfile: "{d}/nsd.pid"\n    xfrdfile: "{d}/xfrd.state"\n'
                    f'    xfrdir: "{d}"\n    zonelistfile: "{d}/zone.list"\n    server-count: 1\n'
                    f'    do-ip6: no\n    verbosity: 1\nremote-control:\n    control-enable: no\n{zone_lines}')
            with open(os.path.join(d, "nsd.conf"), "w") as f:
                f.write(conf)
            with open(os.path.join(d, "nsd.log"), "ab") as log:
                self.proc = subprocess.Popen(["taskset", "-c", cpus, which("nsd"), "-d", "-c",
                                              os.path.join(d, "nsd.conf")],
                                             stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
            self.addr = ("127.0.0.1", port)
            deadline = time.monotonic() + NSD_START_TIMEOUT_SECS
            while time.monotonic() < deadline and self.proc.poll() is None:
                if answers(self.addr, "test."):
                    return
            self.stop()
        with open(os.path.join(self.dir, "nsd.log"), errors="replace") as f:
            raise RuntimeError(f"nsd never answered; its log: {f.read()[-1000:]}")

    @property
    def spec(self):
        return f"{self.addr[0]}:{self.addr[1]}"

    def stop(self):
        # SIGTERM, not SIGKILL: nsd's server process would keep the port.
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=NSD_STOP_TIMEOUT_SECS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Blackhole:
    """dns_blackhole.py relaying to `upstream`, dropping BLACKHOLE_DOMAIN, pinned to `cpus`."""

    def __init__(self, upstream, cpus, max_secs):
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpus, sys.executable, os.path.join(HERE, "dns_blackhole.py"), "--upstream", upstream,
             "--drop", BLACKHOLE_DOMAIN, "--max-secs", str(max_secs)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "listening":
            self.proc.kill()
            raise RuntimeError(f"dns_blackhole.py did not start: {self.proc.stderr.read().decode()[-500:]}")
        self.spec = line[1]
        host, port = self.spec.rsplit(":", 1)
        deadline = time.monotonic() + FORWARDER_START_TIMEOUT_SECS
        while not answers((host, int(port)), "test."):
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("dns_blackhole.py does not relay to nsd")

    def stop(self):
        """Stops it; returns its counts."""
        if self.proc.poll() is None:
            try:
                # communicate closes stdin, which is the forwarder's cue to print and exit
                out, _ = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate()
        else:
            out = self.proc.stdout.read()
        try:
            return json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None


def free_udp_tcp_port():
    while True:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()


# ----------------------------------------------------------------------------- measuring

def udp_errors():
    """InErrors + RcvbufErrors of UDP on the whole machine (/proc/net/snmp)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    if len(rows) < 2:
        return 0
    named = dict(zip(rows[0][1:], rows[1][1:]))
    return int(named.get("InErrors", 0)) + int(named.get("RcvbufErrors", 0))


def thread_counts(pid):
    """Per thread name of process pid: CPU clock ticks (utime+stime, /proc/PID/task/*/stat)
    and context switches (voluntary: it slept; involuntary: it was preempted; from
    /proc/PID/task/*/status). Mayfly's executor threads are `mayfly-<n>` (glommio's helper
    thread of each executor is named the same and counted with it), the resolver thread
    `mayfly-auth`; the rest (`mayfly`, `mayfly-log`, `mayfly-signals`) is "other"."""
    out = collections.defaultdict(collections.Counter)
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue  # the thread ended
        comm = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        kind = ("resolver" if comm == "mayfly-auth" else
                "executor" if comm.startswith("mayfly-") and comm[7:].isdigit() else "other")
        out[kind]["ticks"] += int(fields[11]) + int(fields[12])
        out[kind]["vcsw"] += int(status.get("voluntary_ctxt_switches", "0").strip())
        out[kind]["ivcsw"] += int(status.get("nonvoluntary_ctxt_switches", "0").strip())
    return out


def thread_split(tools, before, after, messages):
    """Per message: CPU us, voluntary and involuntary context switches of the executor(s),
    the resolver thread and the rest."""
    if not messages:
        return {}
    out = {}
    for kind in set(before) | set(after):
        d = {k: after.get(kind, {}).get(k, 0) - before.get(kind, {}).get(k, 0) for k in ("ticks", "vcsw", "ivcsw")}
        out[f"{kind}_us_per_msg"] = d["ticks"] / tools.CLK_TCK / messages * 1e6
        out[f"{kind}_vcsw_per_msg"] = d["vcsw"] / messages
        out[f"{kind}_ivcsw_per_msg"] = d["ivcsw"] / messages
    return out


def http_json(srv, path):
    with urllib.request.urlopen(f"http://{srv.http}{path}", timeout=HTTP_TIMEOUT_SECS) as r:
        return json.loads(r.read())


def verdicts(auth):
    """One line of a message's `auth`, e.g. 'spf=pass dkim=[pass] dmarc=pass arc=none iprev=pass'."""
    if auth is None:
        return "no auth"
    dkim = ",".join(d.get("result", "?") for d in auth.get("dkim") or [])
    return (f"spf={(auth.get('spf') or {}).get('result')} dkim=[{dkim}] "
            f"dmarc={(auth.get('dmarc') or {}).get('result')} arc={(auth.get('arc') or {}).get('result')} "
            f"iprev={(auth.get('iprev') or {}).get('result')}")


def sample_auth(srv, domain, n_inboxes=SAMPLE_INBOXES):
    """Counts of verdict lines over every message in inboxes user0..user<n-1>@domain."""
    counts = collections.Counter()
    try:
        for k in range(n_inboxes):
            inbox = urllib.parse.quote(f"user{k}@{domain}", safe="@")
            listing = http_json(srv, f"/api/v1/inboxes/{inbox}?limit=1000")
            for m in listing.get("messages") or []:
                msg = http_json(srv, f"/api/v1/inboxes/{inbox}/messages/{m['id']}")
                counts[verdicts(msg.get("auth"))] += 1
    except (OSError, ValueError, KeyError) as e:
        counts[f"sample failed: {type(e).__name__}: {e}"[:200]] += 1
    return dict(counts)


def blaster_args(cfg, keys, key, selector, variants, n_messages):
    args = ["-c", "32", "--size", str(cfg.auth_size_bytes), "--domain", DOMAIN]
    if key:
        args += ["--dkim-key", keys[key], "--dkim-selector", selector]
        if variants == "messages":
            args += ["--dkim-variants", str(n_messages)]
    return args


def mayfly_flags(mode, resolver):
    if mode == "off":
        return ["--verify-senders", "off"]
    return ["--verify-senders", "annotate", "--dns-resolver", resolver, "--auth-timeout", AUTH_TIMEOUT]


def run_case(tools, cfg, keys, nsd, case, rnd):
    name, label, key, selector, variants = case
    n = cfg.auth_messages
    srv = tools.start_mayfly(cfg, extra=mayfly_flags("off" if name == "off" else "annotate", nsd.spec))
    try:
        udp0, threads0 = udp_errors(), thread_counts(srv.pid)
        rec = tools.run_measured(cfg, srv, tools.blaster_cmd(
            cfg, srv, "-m", str(n), *blaster_args(cfg, keys, key, selector, variants, n)))
        rec["udp_errors"] = udp_errors() - udp0
        rec.update(thread_split(tools, threads0, thread_counts(srv.pid), rec.get("messages")))
        rec["auth_sample"] = sample_auth(srv, DOMAIN) if name != "off" else {}
    finally:
        srv.stop()
    rec.update({"round": rnd, "case": name, "label": label})
    return rec


def run_blackhole(tools, cfg, keys, fwd, n_b, rnd):
    """Group A (W2, warm, RSA-signed, for cfg.auth_secs) alone (n_b 0) or beside n_b
    sessions whose mail waits for a DNS answer that never comes."""
    srv = tools.start_mayfly(cfg, extra=mayfly_flags("annotate", fwd.spec))
    b_proc = None
    try:
        if n_b:
            b_secs = cfg.auth_secs + 2 * AUTH_TIMEOUT_SECS + 1
            b_proc = subprocess.Popen(
                tools.blaster_cmd(cfg, srv, "-c", str(n_b), "-d", str(b_secs), "--size", str(cfg.auth_size_bytes),
                                  "--domain", BLACKHOLE_DOMAIN, "--inboxes", "100", "--epoll"),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            # one deadline and a bit: B's first lookups have expired and its next are waiting
            time.sleep(AUTH_TIMEOUT_SECS + 0.5)
        udp0, threads0 = udp_errors(), thread_counts(srv.pid)
        rec = tools.run_measured(cfg, srv, tools.blaster_cmd(
            cfg, srv, "-d", str(cfg.auth_secs), *blaster_args(cfg, keys, "rsa", "rsa", None, 0)))
        rec["udp_errors"] = udp_errors() - udp0
        rec.update(thread_split(tools, threads0, thread_counts(srv.pid), rec.get("messages")))
        if b_proc:
            out, _ = b_proc.communicate(timeout=tools.RUN_TIMEOUT_SECS)
            b_proc = None
            try:
                j = json.loads(out)
            except ValueError:
                j = {"fatal": out.decode(errors="replace")[-300:]}
            rec["b"] = {"sessions": n_b, "msgs_per_s": j.get("messages_per_sec"),
                        "messages": j.get("messages_accepted"),
                        "lat_p50_us": (j.get("latency_us") or {}).get("p50"),
                        "lat_max_us": (j.get("latency_us") or {}).get("max"),
                        "reply_errors": j.get("reply_errors"), "fatal": j.get("fatal"),
                        "auth_sample": sample_auth(srv, BLACKHOLE_DOMAIN, 1)}
        rec["auth_sample"] = sample_auth(srv, DOMAIN, 2)
    finally:
        if b_proc:
            b_proc.kill()
            b_proc.communicate()
        srv.stop()
    rec.update({"round": rnd, "blackhole_sessions": n_b})
    return rec


def criterion_numbers(cfg):
    """Median ns per iteration of the `auth` criterion benches, if they were run."""
    root = cfg.criterion_dir
    out = {}
    for bench in CRITERION_BENCHES:
        path = os.path.join(root, *bench.split("/"), "new", "estimates.json")
        try:
            with open(path) as f:
                est = json.load(f)
            out[bench] = {"median_ns": est["median"]["point_estimate"],
                          "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(path)))}
        except (OSError, ValueError, KeyError):
            pass
    return out


def run(tools, cfg, results):
    """Both parts, cfg.rounds rounds; results["auth"]."""
    out = results.setdefault("auth", {"runs": [], "blackhole_runs": []})
    missing = missing_tools()
    if missing:
        out["skipped"] = f"needs {', '.join(missing)} (apt-get install -y nsd openssl)"
        tools.log(f"auth: skipped, {out['skipped']}")
        return
    work = os.path.join(cfg.work, "auth")
    os.makedirs(work, exist_ok=True)
    keys, records = make_keys(work)
    nsd = Nsd(work, zones(records), cfg.load_cpus)
    fwd = None
    try:
        fwd = Blackhole(nsd.spec, cfg.load_cpus, max_secs=3600)
        out.update({"nsd": nsd.spec, "size_bytes": cfg.auth_size_bytes, "messages": cfg.auth_messages,
                    "secs": cfg.auth_secs, "auth_timeout": AUTH_TIMEOUT,
                    "nsd_version": _version([which("nsd"), "-v"])})
        variants = (0, BLACKHOLE_SESSIONS, BLACKHOLE_SESSIONS_MANY)
        for rnd in range(1, cfg.rounds + 1):
            la, busy = tools.wait_quiet(cfg)
            tools.log(f"auth round {rnd}/{cfg.rounds} (load average {la:.2f}, other work {busy:.2f} CPUs)")
            shift = (rnd - 1) % len(CASES)
            for case in CASES[shift:] + CASES[:shift]:
                rec = run_case(tools, cfg, keys, nsd, case, rnd)
                rec.update({"loadavg": la, "other_busy_cpus": busy})
                out["runs"].append(rec)
                sample = ", ".join(f"{v} {k}" for k, v in sorted(rec["auth_sample"].items(), key=lambda kv: -kv[1]))
                tools.log(f"  {case[0]:9} {tools.fmt(rec.get('msgs_per_s'), 0):>8} msg/s "
                          f"{tools.fmt(rec.get('cpu_us_per_msg'), 1):>7} us/msg (executor "
                          f"{tools.fmt(rec.get('executor_us_per_msg'), 1)}, resolver "
                          f"{tools.fmt(rec.get('resolver_us_per_msg'), 1)}; switches per msg: executor "
                          f"{tools.fmt(rec.get('executor_vcsw_per_msg'), 2)}+{tools.fmt(rec.get('executor_ivcsw_per_msg'), 2)}, "
                          f"resolver {tools.fmt(rec.get('resolver_vcsw_per_msg'), 2)}+"
                          f"{tools.fmt(rec.get('resolver_ivcsw_per_msg'), 2)})  p50 {tools.fmt(rec.get('lat_p50_us'), 0)} "
                          f"p99 {tools.fmt(rec.get('lat_p99_us'), 0)} us  udp errors {rec['udp_errors']}  "
                          f"other {tools.fmt(rec.get('other_cpu_frac'), 2)}"
                          f"{'  ERR ' + json.dumps(rec['errors']) if tools.bad(rec) else ''}"
                          f"{'  [' + sample + ']' if sample else ''}")
            shift = (rnd - 1) % len(variants)
            for n_b in variants[shift:] + variants[:shift]:
                rec = run_blackhole(tools, cfg, keys, fwd, n_b, rnd)
                rec.update({"loadavg": la, "other_busy_cpus": busy})
                out["blackhole_runs"].append(rec)
                b = rec.get("b") or {}
                tools.log(f"  A {'alone' if not n_b else f'+ {n_b} blackholed':16} "
                          f"{tools.fmt(rec.get('msgs_per_s'), 0):>8} msg/s {tools.fmt(rec.get('cpu_us_per_msg'), 1):>7} "
                          f"us/msg (resolver {tools.fmt(rec.get('resolver_us_per_msg'), 1)})  p50 {tools.fmt(rec.get('lat_p50_us'), 0)} p99 {tools.fmt(rec.get('lat_p99_us'), 0)} us"
                          + (f"; B {tools.fmt(b.get('msgs_per_s'), 1)} msg/s p50 {tools.fmt(b.get('lat_p50_us'), 0)} us"
                             if n_b else "")
                          + f"{'  ERR ' + json.dumps(rec['errors']) if tools.bad(rec) else ''}")
    finally:
        try:
            if fwd:
                out["blackhole_counts"] = fwd.stop()
        finally:
            nsd.stop()
    out["criterion"] = criterion_numbers(cfg)


def _version(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=10)
        text = (p.stdout + p.stderr).decode(errors="replace").strip().splitlines()
        return text[0] if text else None
    except (OSError, subprocess.TimeoutExpired):
        return None


# ----------------------------------------------------------------------------- report

def summarize(tools, results):
    """Medians per case and per blackhole variant, with the differences the goal is about."""
    a = results.get("auth") or {}
    cases = []
    for name, label, *_ in CASES:
        rs = [r for r in a.get("runs", []) if r["case"] == name]
        if not rs:
            continue
        samples = collections.Counter()
        for r in rs:
            samples.update(r.get("auth_sample") or {})
        cases.append({
            "case": name, "label": label, "runs": len(rs),
            **{k: tools.med([r.get(k) for r in rs]) for k in
               ("msgs_per_s", "cpu_us_per_msg", "sys_share", "lat_p50_us", "lat_p99_us", "other_cpu_frac",
                "client_idle", "executor_us_per_msg", "resolver_us_per_msg", "other_us_per_msg",
                "executor_vcsw_per_msg", "executor_ivcsw_per_msg", "resolver_vcsw_per_msg",
                "resolver_ivcsw_per_msg")},
            "all_msgs_per_s": [r.get("msgs_per_s") for r in rs],
            "all_cpu_us_per_msg": [r.get("cpu_us_per_msg") for r in rs],
            "udp_errors": sum(r.get("udp_errors") or 0 for r in rs),
            "errors": sum(1 for r in rs if tools.bad(r)),
            "auth_sample": dict(samples),
        })
    by = {c["case"]: c for c in cases}
    off = (by.get("off") or {}).get("cpu_us_per_msg")
    off_rounds = {r["round"]: r.get("cpu_us_per_msg") for r in a.get("runs", []) if r["case"] == "off"}
    for c in cases:
        c["over_off_us"] = c["cpu_us_per_msg"] - off if c["cpu_us_per_msg"] is not None and off is not None else None
        # the same difference within each round, whose median is steadier against drift
        diffs = [r.get("cpu_us_per_msg") - off_rounds[r["round"]] for r in a.get("runs", [])
                 if r["case"] == c["case"] and r.get("cpu_us_per_msg") is not None
                 and off_rounds.get(r["round"]) is not None]
        c["over_off_per_round_us"] = diffs
        c["over_off_paired_us"] = tools.med(diffs)
    blackhole = []
    for n_b in sorted({r["blackhole_sessions"] for r in a.get("blackhole_runs", [])}):
        rs = [r for r in a["blackhole_runs"] if r["blackhole_sessions"] == n_b]
        bs = [r.get("b") or {} for r in rs]
        blackhole.append({
            "blackhole_sessions": n_b, "runs": len(rs),
            **{k: tools.med([r.get(k) for r in rs]) for k in
               ("msgs_per_s", "cpu_us_per_msg", "lat_p50_us", "lat_p99_us", "other_cpu_frac",
                "executor_us_per_msg", "resolver_us_per_msg")},
            "all_msgs_per_s": [r.get("msgs_per_s") for r in rs],
            "all_cpu_us_per_msg": [r.get("cpu_us_per_msg") for r in rs],
            "b_msgs_per_s": tools.med([b.get("msgs_per_s") for b in bs]),
            "b_lat_p50_us": tools.med([b.get("lat_p50_us") for b in bs]),
            "b_samples": dict(sum((collections.Counter(b.get("auth_sample") or {}) for b in bs), collections.Counter())),
            "a_samples": dict(sum((collections.Counter(r.get("auth_sample") or {}) for r in rs), collections.Counter())),
            "errors": sum(1 for r in rs if tools.bad(r)),
        })
    return {"cases": cases, "blackhole": blackhole}


def markdown(tools, results):
    """The report's section on sender authentication, or an empty list."""
    a = results.get("auth")
    if not a:
        return []
    if a.get("skipped"):
        return ["## Sender authentication", "", f"Skipped: {a['skipped']}.", ""]
    s = summarize(tools, results)
    a["summary"] = s
    crit = a.get("criterion") or {}
    us = lambda bench: crit[bench]["median_ns"] / 1000 if bench in crit else None
    L = ["## Sender authentication (`--verify-senders`)", ""]
    L.append(f"W2: smtp-blaster, 32 connections, no pipelining, busy-polling, {a['size_bytes']:,}-byte messages "
             f"(signed ones too: the blaster shrinks the body by the signature's length), {a['messages']:,} per run; "
             f"a fresh Mayfly per run (`--cores 1`, `--auth-timeout {a['auth_timeout']}`), "
             f"cases in rotating order; nsd ({a.get('nsd_version') or 'nsd'}) on the load CPU as `--dns-resolver`. "
             "CPU is the server process's utime+stime (executor and resolver thread) per accepted message; "
             "*over off* is the case's median minus off's, and *paired* the median of that difference taken within "
             "each round.")
    L.append("")
    L.append("| case | msg/s | CPU us/msg | over off | paired | p50/p99 us | UDP errors | what the checks said (sampled) |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for c in s["cases"]:
        sample = "; ".join(f"{v}x {k}" for k, v in sorted(c["auth_sample"].items(), key=lambda kv: -kv[1])) or "-"
        L.append(f"| {c['label']} | {tools.fmt(c['msgs_per_s'], 0)} | {tools.fmt(c['cpu_us_per_msg'], 1)} | "
                 f"{tools.fmt(c['over_off_us'], 1)} | {tools.fmt(c['over_off_paired_us'], 1)} | "
                 f"{tools.fmt(c['lat_p50_us'], 0)}/{tools.fmt(c['lat_p99_us'], 0)} | {c['udp_errors']} | {sample} |")
    L.append("")
    L.append("Where the CPU goes, per message (medians): CPU us of each thread (/proc/PID/task/*/stat, in clock "
             "ticks, so the threads need not add up to the process exactly), and its context switches, voluntary "
             "(it went to sleep) + involuntary (it was preempted), from /proc/PID/task/*/status.")
    L.append("")
    L.append("| case | executor us | resolver thread us | executor switches | resolver switches | sys share |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    for c in s["cases"]:
        L.append(f"| {c['label']} | {tools.fmt(c['executor_us_per_msg'], 1)} | {tools.fmt(c['resolver_us_per_msg'], 1)} | "
                 f"{tools.fmt(c['executor_vcsw_per_msg'], 2)} + {tools.fmt(c['executor_ivcsw_per_msg'], 2)} | "
                 f"{tools.fmt(c['resolver_vcsw_per_msg'], 2)} + {tools.fmt(c['resolver_ivcsw_per_msg'], 2)} | "
                 f"{tools.fmt(c['sys_share'], 2)} |")
    L.append("")
    L.append("Per round (msg/s; CPU us/msg; over off within the round):")
    L.append("")
    for c in s["cases"]:
        L.append(f"- {c['label']}: {', '.join(tools.fmt(v, 0) for v in c['all_msgs_per_s'])} msg/s; "
                 f"{', '.join(tools.fmt(v, 1) for v in c['all_cpu_us_per_msg'])} us/msg; "
                 f"{', '.join(tools.fmt(v, 1) for v in c['over_off_per_round_us'])} us over off"
                 f"{'; runs with errors: ' + str(c['errors']) if c['errors'] else ''}")
    L.append("")
    by = {c["case"]: c for c in s["cases"]}
    if crit:
        L.append("ring and mail-auth alone (`cargo bench --bench auth`, criterion medians, measured "
                 f"{min(v['measured'] for v in crit.values())}): "
                 + ", ".join(f"{b} {tools.fmt(us(b), 1)} us" for b in CRITERION_BENCHES if b in crit) + ".")
        L.append("")
    L.append("Goal (issue 16): with a warm cache, annotate costs at most the signature verification itself "
             "plus 10 us per message over off.")
    L.append("")
    L.append("| case | over off (paired) | signature verification (ring) | goal: at most | |")
    L.append("| --- | ---: | ---: | ---: | --- |")
    for case, bench in (("unsigned", None), ("rsa-warm", "signature/rsa2048"), ("ed-warm", "signature/ed25519")):
        c = by.get(case)
        if not c:
            continue
        sig = 0.0 if bench is None else us(bench)
        bound = sig + 10 if sig is not None else None
        over = c["over_off_paired_us"]
        verdict = "-" if over is None or bound is None else ("met" if over <= bound else "missed")
        L.append(f"| {c['label']} | {tools.fmt(over, 1)} | "
                 f"{'none' if bench is None else (tools.fmt(sig, 1) if sig is not None else 'not measured')} | "
                 f"{tools.fmt(bound, 1)} | {verdict} |")
    L.append("")
    cold, warm = by.get("ed-cold"), by.get("ed-warm")
    if cold and warm and cold["cpu_us_per_msg"] is not None and warm["cpu_us_per_msg"] is not None:
        L.append(f"A key lookup per message (cold minus warm, Ed25519): "
                 f"{tools.fmt(cold['cpu_us_per_msg'] - warm['cpu_us_per_msg'], 1)} us of server CPU per message.")
        L.append("")
    if s["blackhole"]:
        L.append(f"### A resolver that never answers")
        L.append("")
        L.append(f"Group A: W2 (32 sessions, RSA-2048-signed mail from {DOMAIN}, warm) for {a['secs']} s; "
                 f"group B: sessions sending mail from {BLACKHOLE_DOMAIN}, whose queries dns_blackhole.py drops "
                 "(smtp-blaster --epoll, started one deadline before A). CPU is the server's per message of A "
                 "(B's few messages are in the numerator too).")
        L.append("")
        L.append("| group B | A msg/s | vs alone | A CPU us/msg | A p50/p99 us | B msg/s | B p50 us | A's checks (sampled) | B's checks (sampled) |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
        alone = next((x for x in s["blackhole"] if x["blackhole_sessions"] == 0), {})
        for x in s["blackhole"]:
            rel = (f"{x['msgs_per_s'] / alone['msgs_per_s']:.2f}x" if x.get("msgs_per_s") and alone.get("msgs_per_s")
                   else "-")
            fmt_s = lambda d: "; ".join(f"{v}x {k}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "-"
            L.append(f"| {'none (A alone)' if not x['blackhole_sessions'] else str(x['blackhole_sessions']) + ' sessions'} | "
                     f"{tools.fmt(x['msgs_per_s'], 0)} | {rel} | {tools.fmt(x['cpu_us_per_msg'], 1)} | "
                     f"{tools.fmt(x['lat_p50_us'], 0)}/{tools.fmt(x['lat_p99_us'], 0)} | "
                     f"{tools.fmt(x['b_msgs_per_s'], 1) if x['blackhole_sessions'] else '-'} | "
                     f"{tools.fmt(x['b_lat_p50_us'], 0) if x['blackhole_sessions'] else '-'} | "
                     f"{fmt_s(x['a_samples'])} | {fmt_s(x['b_samples']) if x['blackhole_sessions'] else '-'} |")
        L.append("")
        for x in s["blackhole"]:
            L.append(f"- B {x['blackhole_sessions']}: A per round {', '.join(tools.fmt(v, 0) for v in x['all_msgs_per_s'])} "
                     f"msg/s; {', '.join(tools.fmt(v, 1) for v in x['all_cpu_us_per_msg'])} us/msg"
                     f"{'; runs with errors: ' + str(x['errors']) if x['errors'] else ''}")
        counts = a.get("blackhole_counts")
        if counts:
            L.append(f"- dns_blackhole.py over the whole part: {counts}")
        L.append("")
    return L
