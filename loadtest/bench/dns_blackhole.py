#!/usr/bin/env python3
"""A UDP DNS forwarder that never answers for some names: the "resolver that never answers"
of the auth part of bench.py (auth.py).

It relays every query to one upstream server (the bench's nsd) and the answer back to the
asker, except queries for names at or under a --drop suffix, which it reads and drops
without a word, as a dead or firewalled name server would. Point Mayfly's --dns-resolver
at it; mail from a domain under the suffix then waits for its SPF (and DMARC) lookups
until --auth-timeout, while mail from other domains is answered as usual.

    python3 dns_blackhole.py --upstream 127.0.0.1:5353 --drop blackhole.test --max-secs 600

Prints "listening 127.0.0.1:PORT" once bound, then serves until stdin closes (or EOF, or
SIGTERM, or --max-secs), and prints one JSON line of counts: queries forwarded, dropped,
answers relayed, answers nobody waited for, malformed datagrams.

UDP only: an answer too large for UDP would make the asker retry over TCP, which this does
not serve; the bench's answers (a DKIM RSA-2048 key is the largest, some 480 bytes) fit.
Python 3 standard library only; binds 127.0.0.1 only.
"""

import argparse
import json
import selectors
import signal
import socket
import sys
import time

# Queries relayed but not answered yet, each remembered this long (the longest an asker in
# the bench waits is its --auth-timeout, a few seconds).
PENDING_TTL_SECS = 30.0
# At most this many remembered at once; beyond it the oldest are forgotten.
PENDING_MAX = 100_000
DATAGRAM_BYTES_MAX = 65_535
# DNS header (RFC 1035 4.1.1) before the question section.
HEADER_BYTES = 12
LABEL_BYTES_MAX = 63


def question(datagram):
    """(lowercase dotted name, question section bytes lowercased) of a DNS message, or None
    if it is malformed. The question section, with the id, keys a relayed query: the
    upstream server echoes both in its answer."""
    if len(datagram) < HEADER_BYTES + 5:
        return None
    idx, labels = HEADER_BYTES, []
    while True:
        if idx >= len(datagram):
            return None
        n = datagram[idx]
        if n == 0:
            break
        if n > LABEL_BYTES_MAX or idx + 1 + n > len(datagram):
            return None  # compression pointers do not occur in a query's question
        labels.append(datagram[idx + 1:idx + 1 + n].decode("ascii", "replace").lower())
        idx += 1 + n
    end = idx + 1 + 4  # the root label, QTYPE and QCLASS
    if end > len(datagram):
        return None
    return ".".join(labels), datagram[HEADER_BYTES:end].lower()


def dropped(name, suffixes):
    return any(name == s or name.endswith("." + s) for s in suffixes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="HOST:PORT of the name server to relay to")
    ap.add_argument("--drop", action="append", default=[], help="drop queries at or under this name (repeatable)")
    ap.add_argument("--port", type=int, default=0, help="port to listen on, 127.0.0.1 (default: any free one)")
    ap.add_argument("--max-secs", type=float, default=600, help="stop after this long whatever happens")
    args = ap.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    suffixes = [s.strip(".").lower() for s in args.drop]

    clients = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    clients.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    clients.bind(("127.0.0.1", args.port))
    upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    upstream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    upstream.connect((host, int(port)))
    clients.setblocking(False)
    upstream.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(clients, selectors.EVENT_READ, "clients")
    sel.register(upstream, selectors.EVENT_READ, "upstream")
    sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

    counts = {"forwarded": 0, "dropped": 0, "relayed": 0, "unmatched": 0, "malformed": 0}
    pending = {}  # (id, question) -> (client address, time relayed); dicts keep insertion order
    print(f"listening 127.0.0.1:{clients.getsockname()[1]}", flush=True)
    deadline = time.monotonic() + args.max_secs
    last_prune = time.monotonic()
    while not stop and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            if key.data == "stdin":
                if not sys.stdin.readline():
                    stop.append(True)
                continue
            sock = key.fileobj
            while True:
                try:
                    datagram, addr = sock.recvfrom(DATAGRAM_BYTES_MAX)
                except BlockingIOError:
                    break
                except ConnectionRefusedError:
                    continue  # the upstream was not there for an earlier datagram
                q = question(datagram)
                if q is None:
                    counts["malformed"] += 1
                    continue
                name, qsection = q
                ident = (datagram[:2], qsection)
                if key.data == "clients":
                    if dropped(name, suffixes):
                        counts["dropped"] += 1
                        continue
                    if len(pending) >= PENDING_MAX:
                        pending.pop(next(iter(pending)))
                    pending[ident] = (addr, time.monotonic())
                    try:
                        upstream.send(datagram)
                        counts["forwarded"] += 1
                    except OSError:
                        pending.pop(ident, None)
                else:
                    entry = pending.pop(ident, None)
                    if entry is None:
                        counts["unmatched"] += 1
                        continue
                    try:
                        clients.sendto(datagram, entry[0])
                        counts["relayed"] += 1
                    except OSError:
                        pass
        now = time.monotonic()
        if now - last_prune > 1.0:
            last_prune = now
            while pending:
                oldest = next(iter(pending))
                if now - pending[oldest][1] < PENDING_TTL_SECS:
                    break
                pending.pop(oldest)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
