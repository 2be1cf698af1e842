#!/usr/bin/env python3
"""Hold many mostly-idle SMTP connections open against a loopback server.

Used by run-bench.sh for the "10 000 concurrent mostly-idle connections" workload:
it connects COUNT sockets (non-blocking, paced so the listen backlog never overflows),
reads each banner, sends one EHLO, and then keeps them open.  Every second a small share
of them (--active-per-sec) sends NOOP, so the server sees a trickle of traffic on
otherwise idle sessions, as a real MX with many slow clients would.

It prints one line "ready <open> <failed>" on stdout once every connection is settled,
then waits until stdin closes, SIGTERM arrives or --max-secs passes, and sends QUIT on
none of them: closing the sockets is enough and costs the server one read each.
Python 3 standard library only.
"""

import argparse
import os
import selectors
import signal
import socket
import sys
import time

# Connections started per pacing step, and the pause between steps: the server's listen
# backlog is 1024 or less, so never have more than this many handshakes outstanding.
CONNECT_BATCH = 200
CONNECT_PAUSE_SECS = 0.005
# How long a connection may take to show its banner and EHLO reply before it counts as failed.
SETTLE_TIMEOUT_SECS = 20.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("target", help="HOST:PORT (loopback)")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--active-per-sec", type=int, default=50,
                    help="connections that send a NOOP each second")
    ap.add_argument("--max-secs", type=float, default=600.0,
                    help="exit after this long whatever happens")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = ap.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    host, port = args.target.rsplit(":", 1)
    if not host.startswith("127.") and host != "::1":
        sys.exit("idle.py: loopback targets only")
    addr = (host, int(port))
    deadline = time.monotonic() + args.max_secs
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))

    sel = selectors.DefaultSelector()
    # state per socket: 0 connecting/awaiting banner, 1 awaiting EHLO reply, 2 idle
    state = {}
    socks = []
    failed = 0
    started = 0
    while started < args.count:
        for _ in range(min(CONNECT_BATCH, args.count - started)):
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            s.setblocking(False)
            try:
                s.connect_ex(addr)
            except OSError:
                failed += 1
                s.close()
                continue
            socks.append(s)
            state[s] = 0
            sel.register(s, selectors.EVENT_READ)
            started += 1
        _pump(sel, state, 0.0)
        time.sleep(CONNECT_PAUSE_SECS)
    settle_deadline = time.monotonic() + SETTLE_TIMEOUT_SECS
    while time.monotonic() < settle_deadline and any(v != 2 for v in state.values()):
        _pump(sel, state, 0.05)
    open_count = sum(1 for v in state.values() if v == 2)
    failed += len(socks) - open_count
    print(f"ready {open_count} {failed}", flush=True)

    try:
        sel.register(sys.stdin, selectors.EVENT_READ)
    except (OSError, ValueError):
        pass  # stdin is /dev/null or a file: rely on SIGTERM and --max-secs
    idle = [s for s in socks if state.get(s) == 2]
    nxt = 0
    last_tick = time.monotonic()
    while not stop[0] and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            if key.fileobj is sys.stdin:
                if not sys.stdin.buffer.read1(4096):
                    stop[0] = True
                continue
            try:
                key.fileobj.recv(4096)
            except OSError:
                pass
        now = time.monotonic()
        if idle and now - last_tick >= 1.0:
            last_tick = now
            for _ in range(min(args.active_per_sec, len(idle))):
                try:
                    idle[nxt % len(idle)].send(b"NOOP\r\n")
                except OSError:
                    pass
                nxt += 1
    for s in socks:
        s.close()


def _pump(sel, state, timeout):
    """Advance connections: banner -> send EHLO -> EHLO reply -> idle."""
    for key, _ in sel.select(timeout=timeout):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except BlockingIOError:
            continue
        except OSError:
            state[s] = -1
            sel.unregister(s)
            continue
        if not data:
            state[s] = -1
            sel.unregister(s)
            continue
        if state[s] == 0 and data.startswith(b"220"):
            try:
                s.send(b"EHLO idle.invalid\r\n")
            except OSError:
                state[s] = -1
                continue
            state[s] = 1
        elif state[s] == 1 and b"\r\n250 " in b"\r\n" + data:
            state[s] = 2


if __name__ == "__main__":
    main()
