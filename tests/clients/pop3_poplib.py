#!/usr/bin/env python3
"""Reads an inbox over POP3 with Python's poplib and prints what it saw as JSON.

Usage: pop3_poplib.py HOST PORT plain|stls|ssl USER [--dele] [--top N] [--apop-none]
                     [--password P] [--sasl] [--report-refusal]

Retrieves every message (RETR), lists sizes and UIDLs, optionally TOP N of the first, and
with --dele marks every message deleted before QUIT. Certificates are not verified (the
test server's is self-signed). Message bytes are returned hex-encoded, CRLF line ends
restored (poplib strips them).

The password is "any password" unless --password gives one (the inbox's token with
--private-inboxes); --sasl logs in with AUTH PLAIN instead of USER/PASS. A refused login
fails the script, or with --report-refusal prints {"refused": "<the server's -ERR line>"}.
"""
import base64
import json
import poplib
import ssl
import sys


def main():
    host, port, mode, user = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rest = sys.argv[5:]
    context = ssl._create_unverified_context()
    if mode == "ssl":
        pop = poplib.POP3_SSL(host, port, context=context, timeout=10)
    else:
        pop = poplib.POP3(host, port, timeout=10)
    report = {"welcome": pop.getwelcome().decode()}
    report["capa"] = sorted(pop.capa().keys())
    if mode == "stls":
        report["stls"] = pop.stls(context=context).decode()
        report["capa_after_stls"] = sorted(pop.capa().keys())
    password = rest[rest.index("--password") + 1] if "--password" in rest else "any password"
    try:
        if "--sasl" in rest:
            plain = b"\0" + user.encode() + b"\0" + password.encode()
            pop._shortcmd("AUTH PLAIN " + base64.b64encode(plain).decode())
        else:
            pop.user(user)
            pop.pass_(password)
    except poplib.error_proto as error:
        if "--report-refusal" not in rest:
            raise
        print(json.dumps({"refused": error.args[0].decode()}))
        pop.quit()
        return
    count, size = pop.stat()
    report["stat"] = [count, size]
    report["list"] = [line.decode() for line in pop.list()[1]]
    report["uidl"] = [line.decode() for line in pop.uidl()[1]]
    messages = []
    for number in range(1, count + 1):
        _, lines, octets = pop.retr(number)
        raw = b"\r\n".join(lines) + b"\r\n"
        messages.append({"octets": octets, "raw": raw.hex()})
    report["messages"] = messages
    if "--top" in rest and count > 0:
        n = int(rest[rest.index("--top") + 1])
        _, lines, _ = pop.top(1, n)
        report["top"] = (b"\r\n".join(lines) + b"\r\n").hex()
    if "--dele" in rest:
        for number in range(1, count + 1):
            pop.dele(number)
    report["quit"] = pop.quit().decode()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
