#!/usr/bin/env python3
"""Watches one inbox through HAProxy the two ways the page does, while the blast runs:
a long poll (GET ...?wait=) and the inbox's WebSocket. Exits 0 when both saw a message,
1 otherwise, so loadtest/cluster/run.sh can check that HAProxy routes both to the
owning node (the WebSocket upgrade included).

Usage: watch_inbox.py HOST:PORT ADDRESS TIMEOUT_SECS
"""

import base64
import http.client
import json
import os
import socket
import sys
import threading


def long_poll(host, port, address, timeout_s, result):
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s + 5)
    conn.request("GET", f"/api/v1/inboxes/{address}?wait={timeout_s}")
    response = conn.getresponse()
    body = json.loads(response.read())
    result["long_poll"] = response.status == 200 and len(body["messages"]) > 0


def websocket(host, port, address, timeout_s, result):
    sock = socket.create_connection((host, port), timeout=timeout_s + 5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/v1/inboxes/{address}/ws HTTP/1.1\r\nHost: {host}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            result["websocket"] = False
            return
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    if not head.startswith(b"HTTP/1.1 101"):
        result["websocket"] = False
        return
    # The first text frame (server frames are unmasked): one message summary.
    while len(rest) < 2:
        rest += sock.recv(4096)
    length = rest[1] & 0x7F
    offset = 2
    if length == 126:
        while len(rest) < 4:
            rest += sock.recv(4096)
        length = int.from_bytes(rest[2:4], "big")
        offset = 4
    while len(rest) < offset + length:
        rest += sock.recv(4096)
    summary = json.loads(rest[offset : offset + length])
    result["websocket"] = (rest[0] & 0x0F) == 1 and "id" in summary


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    address, timeout_s = sys.argv[2], int(sys.argv[3])
    result = {}
    threads = [
        threading.Thread(target=f, args=(host, int(port), address, timeout_s, result))
        for f in (long_poll, websocket)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s + 10)
    print(f"long poll through HAProxy: {'ok' if result.get('long_poll') else 'FAILED'}")
    print(f"WebSocket through HAProxy: {'ok' if result.get('websocket') else 'FAILED'}")
    sys.exit(0 if result.get("long_poll") and result.get("websocket") else 1)


if __name__ == "__main__":
    main()
