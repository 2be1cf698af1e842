#!/usr/bin/env python3
"""Hold many inbox watchers (WebSockets and long polls) open against a loopback Mayfly.

Used by run-bench.sh's "watchers" part to measure what idle and busy watchers cost the
server while SMTP load runs. It opens --websockets WebSockets on
/api/v1/inboxes/user<k>@DOMAIN/ws and --long-polls long polls on
/api/v1/inboxes/user<k>@DOMAIN?wait=60 (k counting on from the WebSockets, so every
watcher has its own inbox, the inboxes smtp-blaster sends to with --inboxes), paced so the
listen backlog never overflows. With --query, the long polls wait for a match of that
search (`&q=`, percent-encoded here).

It prints "ready <websockets open> <long polls open> <failed>" on stdout once every
watcher is connected, then serves them: answers pings (masked pongs, as RFC 6455 wants
from a client), counts summary frames, re-issues each long poll when it is answered (with
?after= the id it got). When stdin closes, SIGTERM arrives or --max-secs passes, it prints
one JSON line of counts and exits. Python 3 standard library only.
"""

import argparse
import base64
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import urllib.parse

CONNECT_BATCH = 200
CONNECT_PAUSE_SECS = 0.005
SETTLE_TIMEOUT_SECS = 30.0
LONG_POLL_SECS = 60


class Watcher:
    __slots__ = ("sock", "kind", "address", "buf", "state", "after")

    def __init__(self, sock, kind, address):
        self.sock = sock
        self.kind = kind  # "ws" or "poll"
        self.address = address
        self.buf = b""
        self.state = "handshake"  # handshake -> open (ws) / waiting (poll)
        self.after = None


def ws_request(host, address):
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET /api/v1/inboxes/{address}/ws HTTP/1.1\r\nHost: {host}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\n\r\n").encode()


def poll_request(host, address, after, search=None):
    query = f"wait={LONG_POLL_SECS}&limit=1000" + (f"&after={after}" if after else "")
    if search:
        query += "&q=" + urllib.parse.quote(search, safe="")
    return f"GET /api/v1/inboxes/{address}?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def masked_frame(opcode, payload):
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def parse_frames(buf):
    """Yields (opcode, payload) of complete server frames; returns the rest."""
    frames = []
    while len(buf) >= 2:
        opcode = buf[0] & 0x0F
        length = buf[1] & 0x7F
        offset = 2
        if length == 126:
            if len(buf) < 4:
                break
            length = struct.unpack(">H", buf[2:4])[0]
            offset = 4
        elif length == 127:
            if len(buf) < 10:
                break
            length = struct.unpack(">Q", buf[2:10])[0]
            offset = 10
        if len(buf) < offset + length:
            break
        frames.append((opcode, buf[offset:offset + length]))
        buf = buf[offset + length:]
    return frames, buf


def split_response(buf):
    """(status, body, rest) of one complete HTTP response with Content-Length, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1")
    status = int(head.split(" ", 2)[1])
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if len(buf) < end + 4 + length:
        return None
    return status, buf[end + 4:end + 4 + length], buf[end + 4 + length:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", help="HOST:PORT of Mayfly's HTTP listener (loopback)")
    ap.add_argument("--websockets", type=int, default=10000)
    ap.add_argument("--long-polls", type=int, default=10000)
    ap.add_argument("--domain", default="example.test")
    ap.add_argument("--first", type=int, default=0,
                    help="first inbox number k (user<k>); the blaster sends to user0..user<inboxes-1>")
    ap.add_argument("--max-secs", type=float, default=600.0)
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    ap.add_argument("--query", default=None,
                    help="long polls wait for a message matching this search (q=)")
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    host, port = args.target.rsplit(":", 1)
    if not host.startswith("127.") and host != "::1":
        sys.exit("watchers.py: loopback targets only")
    addr = (host, int(port))
    deadline = time.monotonic() + args.max_secs
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))

    sel = selectors.DefaultSelector()
    counts = {"ws_open": 0, "polls_open": 0, "failed": 0, "ws_frames": 0, "ws_pings": 0,
              "ws_closed": 0, "poll_answers": 0, "poll_messages": 0, "poll_errors": 0}
    watchers = []
    plan = [("ws", args.first + k) for k in range(args.websockets)]
    plan += [("poll", args.first + args.websockets + k) for k in range(args.long_polls)]

    def fail(w):
        counts["failed"] += 1
        try:
            sel.unregister(w.sock)
        except (KeyError, ValueError):
            pass
        w.sock.close()
        w.state = "dead"

    def on_readable(w):
        try:
            data = w.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            if w.kind == "ws" and w.state == "open":
                counts["ws_open"] -= 1
                counts["ws_closed"] += 1
                sel.unregister(w.sock)
                w.sock.close()
                w.state = "dead"
            else:
                fail(w)
            return
        w.buf += data
        if w.kind == "ws":
            if w.state == "handshake":
                end = w.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                if not w.buf.startswith(b"HTTP/1.1 101"):
                    fail(w)
                    return
                w.buf = w.buf[end + 4:]
                w.state = "open"
                counts["ws_open"] += 1
            frames, w.buf = parse_frames(w.buf)
            for opcode, payload in frames:
                if opcode == 0x1:
                    counts["ws_frames"] += 1
                elif opcode == 0x9:
                    counts["ws_pings"] += 1
                    w.sock.sendall(masked_frame(0xA, payload))
                elif opcode == 0x8:
                    counts["ws_open"] -= 1
                    counts["ws_closed"] += 1
                    sel.unregister(w.sock)
                    w.sock.close()
                    w.state = "dead"
                    return
        else:
            while True:
                parsed = split_response(w.buf)
                if parsed is None:
                    return
                status, body, w.buf = parsed
                if w.state == "handshake":
                    # The first answer came: this poll was parked (or answered at once).
                    w.state = "waiting"
                    counts["polls_open"] += 1
                if status != 200:
                    counts["poll_errors"] += 1
                else:
                    listing = json.loads(body)
                    counts["poll_answers"] += 1
                    counts["poll_messages"] += len(listing["messages"])
                    w.after = listing["next_after"] or w.after
                w.sock.sendall(poll_request(host, w.address, w.after, args.query))

    def on_event(w, events):
        """A connect that finished (send the request) or bytes to read."""
        if events & selectors.EVENT_WRITE:
            if w.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                fail(w)
                return
            request = (ws_request(host, w.address) if w.kind == "ws"
                       else poll_request(host, w.address, None, args.query))
            w.sock.sendall(request)
            sel.modify(w.sock, selectors.EVENT_READ, w)
        elif events & selectors.EVENT_READ:
            on_readable(w)

    started = 0
    while started < len(plan):
        for kind, k in plan[started:started + CONNECT_BATCH]:
            s = socket.socket(socket.AF_INET)
            s.setblocking(False)
            try:
                s.connect(addr)
            except BlockingIOError:
                pass
            address = f"user{k}@{args.domain}"
            w = Watcher(s, kind, address)
            watchers.append(w)
            sel.register(s, selectors.EVENT_WRITE, w)
        started += CONNECT_BATCH
        pause_end = time.monotonic() + CONNECT_PAUSE_SECS
        while time.monotonic() < pause_end:
            for key, events in sel.select(timeout=0.001):
                on_event(key.data, events)

    # Settle: every WebSocket upgraded; long polls are parked (they answer only when mail
    # comes or after 60 s), so a poll counts as open once its request is written.
    settle_end = time.monotonic() + SETTLE_TIMEOUT_SECS
    while time.monotonic() < settle_end:
        pending_ws = sum(1 for w in watchers if w.kind == "ws" and w.state == "handshake")
        pending_write = any(key.events & selectors.EVENT_WRITE
                            for key in sel.get_map().values())
        if pending_ws == 0 and not pending_write:
            break
        for key, events in sel.select(timeout=0.05):
            on_event(key.data, events)
    polls_parked = sum(1 for w in watchers if w.kind == "poll" and w.state != "dead")
    print(f"ready {counts['ws_open']} {polls_parked} {counts['failed']}", flush=True)

    stdin_fd = sys.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    sel.register(stdin_fd, selectors.EVENT_READ, None)
    while not stop[0] and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            if key.data is None:
                try:
                    if not os.read(stdin_fd, 4096):
                        stop[0] = True
                except BlockingIOError:
                    pass
                continue
            on_readable(key.data)
    counts["polls_parked_at_start"] = polls_parked
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
