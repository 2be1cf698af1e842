"""The other mail catchers Mayfly is compared with: how to start each one, and how to count
what it stored through its own interface.

Used by bench.py; the catchers themselves are installed outside the repository by
catchers.sh, each in <dir>/<name>/ with a VERSION.txt.  Every catcher runs with its default
settings except where a setting would make the comparison meaningless (listen on 127.0.0.1,
a port of our choosing, quiet logs, no per-mailbox cap that would throw messages away by
design), pinned with taskset to the server CPUs like Mayfly.  Python 3 standard library only.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse

NAMES = ("mailcrab", "maildev", "haraka", "inbucket", "mailpit")
# How long a catcher may take to open its ports (Haraka loads its TLD lists first).
START_TIMEOUT_SECS = 30
HTTP_TIMEOUT_SECS = 30


def version(catchers_dir, name):
    try:
        with open(os.path.join(catchers_dir, name, "VERSION.txt")) as f:
            return f.readline().strip()
    except OSError:
        return None


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait_port(proc, port, name, log_path):
    deadline = time.monotonic() + START_TIMEOUT_SECS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{name} did not open 127.0.0.1:{port}; see {log_path}")


def start(name, catchers_dir, server_cpus, work):
    """Start one catcher; returns (process, smtp address, http address or None, scratch dir).

    The scratch directory holds whatever the catcher writes to disk; the caller removes it."""
    home = os.path.join(catchers_dir, name)
    scratch = os.path.join(work, f"{name}-{os.getpid()}-{time.monotonic_ns()}")
    os.makedirs(scratch)
    smtp_port, http_port = _free_port(), _free_port()
    env = dict(os.environ, TMPDIR=scratch)
    if name == "mailcrab":
        cmd = [os.path.join(home, "bin", "mailcrab-backend")]
        env.update(SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port), HTTP_HOST="127.0.0.1",
                   HTTP_PORT=str(http_port), RUST_LOG="warn")
    elif name == "maildev":
        # in-memory store (no --mail-directory); it still writes each .eml into $TMPDIR/maildev
        cmd = [os.path.join(home, "node_modules", ".bin", "maildev"), "--smtp", str(smtp_port),
               "--ip", "127.0.0.1", "--web", str(http_port), "--web-ip", "127.0.0.1", "--silent"]
    elif name == "haraka":
        conf = os.path.join(scratch, "haraka")
        shutil.copytree(os.path.join(home, "template"), conf)
        with open(os.path.join(conf, "config", "smtp.ini"), "w") as f:
            f.write(f"listen=127.0.0.1:{smtp_port}\nnodes=0\n")
        # queue/test writes each message to $TMPDIR/mail_<uuid>.eml before it answers 250
        env["TMPDIR"] = os.path.join(scratch, "queue")
        os.makedirs(env["TMPDIR"])
        cmd = [os.path.join(home, "node_modules", ".bin", "haraka"), "-c", conf]
        http_port = None
    elif name == "inbucket":
        # memory store (the default); the per-mailbox cap (default 500) is lifted so that
        # smtp-source's single mailbox keeps every message; POP3 gets a port of its own
        env.update(INBUCKET_SMTP_ADDR=f"127.0.0.1:{smtp_port}", INBUCKET_WEB_ADDR=f"127.0.0.1:{http_port}",
                   INBUCKET_POP3_ADDR=f"127.0.0.1:{_free_port()}", INBUCKET_STORAGE_MAILBOXMSGCAP="0",
                   INBUCKET_LOGLEVEL="warn", INBUCKET_WEB_UIDIR=os.path.join(scratch, "ui"))
        cmd = [os.path.join(home, "bin", "inbucket")]
    elif name == "mailpit":
        cmd = [os.path.join(home, "bin", "mailpit"), "--smtp", f"127.0.0.1:{smtp_port}",
               "--listen", f"127.0.0.1:{http_port}", "--quiet", "--max", "0",
               "--database", os.path.join(scratch, "mailpit.db")]
    else:
        raise ValueError(f"unknown catcher {name}")
    log_path = os.path.join(work, f"{name}.log")
    log = open(log_path, "ab")
    proc = subprocess.Popen(["taskset", "-c", server_cpus, *cmd], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, env=env, cwd=scratch)
    _wait_port(proc, smtp_port, name, log_path)
    if http_port:
        _wait_port(proc, http_port, name, log_path)
    # the readiness probes above were sessions of their own; let them end before measuring
    time.sleep(0.2)
    return proc, f"127.0.0.1:{smtp_port}", f"127.0.0.1:{http_port}" if http_port else None, scratch


class _Http:
    """One kept-alive HTTP/1.1 connection for many GETs (1,000 inboxes are counted one by one)."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT_SECS)

    def get_json(self, path):
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {r.status}: {body[:200]!r}")
        return json.loads(body)

    def close(self):
        self.conn.close()


def count_stored(kind, http_addr, scratch, recipients):
    """Messages the server holds now, read through its own interface, or None for a sink.

    recipients: the addresses this run sent to (one message per recipient each)."""
    if kind == "smtp-sink":
        return None
    if kind == "haraka":
        q = os.path.join(scratch, "queue")
        return sum(1 for n in os.listdir(q) if n.startswith("mail_") and n.endswith(".eml"))
    c = _Http(http_addr)
    try:
        if kind == "mayfly":
            # per inbox: "total" is what the inbox holds now
            return sum(c.get_json(f"/api/v1/inboxes/{urllib.parse.quote(a, safe='@')}?limit=1")["total"]
                       for a in recipients)
        if kind == "mailcrab":
            return len(c.get_json("/api/messages"))
        if kind == "maildev":
            return c.get_json("/api/email/summary?limit=1")["total"]
        if kind == "inbucket":
            # mailboxes are named by the local part (INBUCKET_MAILBOXNAMING=local, the default)
            return sum(len(c.get_json(f"/api/v1/mailbox/{urllib.parse.quote(a.split('@')[0])}"))
                       for a in recipients)
        if kind == "mailpit":
            return c.get_json("/api/v1/messages?limit=1")["total"]
    finally:
        c.close()
    raise ValueError(f"unknown server kind {kind}")
