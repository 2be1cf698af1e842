#!/usr/bin/env python3
"""Measure how soon a message is listed over HTTP after its final 250.

For each probe: send one small message over a kept-open SMTP connection to a fresh inbox,
note the time the final "250" to DATA arrives, then at once ask the HTTP API for that inbox
(GET /api/v1/inboxes/{address}?limit=1 on a kept-alive raw socket) until it lists the
message.  The delta (250 received -> listing response received) is the number the target
"final 250 -> listed over HTTP p99 < 1 ms" is about; it includes one HTTP round trip.
A 250 promises the message is stored, so the first GET should always list it: the number
of GETs that came back empty is reported too (it should be 0).

Prints one JSON object: probes, p50/p90/p99/max in microseconds, empty_gets, errors.
Python 3 standard library only.
"""

import argparse
import json
import os
import random
import socket
import sys
import time

# Give up on a probe after this many empty listings (a lost message, not a slow one).
EMPTY_GETS_MAX = 1000


def read_reply(f):
    """Read one (possibly multi-line) SMTP reply; return its code."""
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("SMTP connection closed")
        if line[3:4] != b"-":
            return int(line[:3])


def connect_http(host, port):
    s = socket.create_connection((host, int(port)), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    RESP_BUF.clear()
    return s


# Bytes read past the end of the last response (none expected: one request at a time).
RESP_BUF = bytearray()


def read_http_response(sock):
    """Read one HTTP/1.1 response with Content-Length from a kept-alive socket: (status, body).

    A raw socket instead of http.client keeps the probe's own cost per GET small, so the
    delta measures the server more than the client."""
    buf = RESP_BUF
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("HTTP connection closed")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    body = bytearray(rest)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("HTTP connection closed")
        body += chunk
    buf.clear()
    buf += body[length:]
    return status, bytes(body[:length])


def pct(sorted_vals, q):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[i]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smtp", required=True, help="HOST:PORT")
    ap.add_argument("--http", required=True, help="HOST:PORT")
    ap.add_argument("--probes", type=int, default=300)
    ap.add_argument("--interval-ms", type=float, default=5.0, help="pause between probes")
    ap.add_argument("--domain", default="example.test")
    ap.add_argument("--max-secs", type=float, default=120.0)
    ap.add_argument("--cpu", type=int, default=None)
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    sh, sp = args.smtp.rsplit(":", 1)
    hh, hp = args.http.rsplit(":", 1)
    for h in (sh, hh):
        if not h.startswith("127."):
            sys.exit("probe.py: loopback targets only")
    deadline = time.monotonic() + args.max_secs
    tag = "%08x" % random.getrandbits(32)

    smtp = socket.create_connection((sh, int(sp)), timeout=10)
    smtp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = smtp.makefile("rb")
    read_reply(f)
    smtp.sendall(b"EHLO probe.invalid\r\n")
    read_reply(f)
    http = connect_http(hh, hp)

    deltas_us = []
    empty_gets = 0
    errors = 0
    for i in range(args.probes):
        if time.monotonic() > deadline:
            break
        rcpt = f"probe{tag}n{i}@{args.domain}"
        body = (f"From: probe@{args.domain}\r\nTo: {rcpt}\r\nSubject: probe {i}\r\n\r\n"
                f"probe body {i}\r\n.\r\n").encode()
        try:
            smtp.sendall(f"MAIL FROM:<probe@{args.domain}>\r\n".encode())
            if read_reply(f) != 250:
                errors += 1
                continue
            smtp.sendall(f"RCPT TO:<{rcpt}>\r\n".encode())
            if read_reply(f) != 250:
                errors += 1
                continue
            smtp.sendall(b"DATA\r\n")
            if read_reply(f) != 354:
                errors += 1
                continue
            smtp.sendall(body)
            code = read_reply(f)
            t0 = time.perf_counter()
            if code != 250:
                errors += 1
                continue
            listed = False
            req = (f"GET /api/v1/inboxes/{rcpt}?limit=1 HTTP/1.1\r\nHost: {args.http}\r\n\r\n").encode()
            for _ in range(EMPTY_GETS_MAX):
                http.sendall(req)
                status, data = read_http_response(http)
                t1 = time.perf_counter()
                if status == 200 and json.loads(data).get("total", 0) >= 1:
                    listed = True
                    break
                empty_gets += 1
            if listed:
                deltas_us.append((t1 - t0) * 1e6)
            else:
                errors += 1
        except (OSError, ValueError):
            errors += 1
            http.close()
            http = connect_http(hh, hp)
        time.sleep(args.interval_ms / 1000.0)
    try:
        smtp.sendall(b"QUIT\r\n")
    except OSError:
        pass
    deltas_us.sort()
    print(json.dumps({
        "probes": len(deltas_us),
        "p50_us": pct(deltas_us, 0.50),
        "p90_us": pct(deltas_us, 0.90),
        "p99_us": pct(deltas_us, 0.99),
        "max_us": deltas_us[-1] if deltas_us else None,
        "empty_gets": empty_gets,
        "errors": errors,
    }))


if __name__ == "__main__":
    main()
