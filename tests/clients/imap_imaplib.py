#!/usr/bin/env python3
"""Reads an inbox over IMAP with Python's imaplib and prints what it saw as JSON.

Usage: imap_imaplib.py HOST PORT plain|starttls|ssl USER [--expunge-first] [--search CRITERIA]
                      [--password P] [--sasl] [--report-refusal]

Logs in, lists mailboxes, SELECTs INBOX, fetches every message (UID, FLAGS, RFC822.SIZE,
INTERNALDATE, ENVELOPE, BODYSTRUCTURE, BODY.PEEK[]) and STATUS; optionally searches, and
with --expunge-first flags the first message \\Deleted and expunges it. Certificates are
not verified (the test server's is self-signed). Message bytes are hex-encoded.

The password is "any password" unless --password gives one (the inbox's token with
--private-inboxes); --sasl logs in with AUTHENTICATE PLAIN instead of LOGIN. A refused login
fails the script, or with --report-refusal prints {"refused": "<the server's NO text>"}.
"""
import imaplib
import json
import re
import ssl
import sys


def main():
    host, port, mode, user = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rest = sys.argv[5:]
    context = ssl._create_unverified_context()
    if mode == "ssl":
        imap = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=10)
    else:
        imap = imaplib.IMAP4(host, port, timeout=10)
    report = {"capabilities": sorted(c.decode() if isinstance(c, bytes) else c for c in imap.capabilities)}
    if mode == "starttls":
        report["starttls"] = imap.starttls(ssl_context=context)[0]
    password = rest[rest.index("--password") + 1] if "--password" in rest else "any password"
    try:
        if "--sasl" in rest:
            plain = b"\0" + user.encode() + b"\0" + password.encode()
            report["login"] = imap.authenticate("PLAIN", lambda _challenge: plain)[0]
        else:
            report["login"] = imap.login(user, password)[0]
    except imaplib.IMAP4.error as error:
        if "--report-refusal" not in rest:
            raise
        print(json.dumps({"refused": str(error)}))
        imap.logout()
        return
    typ, boxes = imap.list()
    report["list"] = [b.decode() for b in boxes if b]
    typ, data = imap.select("INBOX")
    report["exists"] = int(data[0])
    report["uidvalidity"] = imap.untagged_responses.get("UIDVALIDITY", [b"0"])[0].decode()
    messages = []
    if report["exists"]:
        typ, data = imap.uid(
            "FETCH", "1:*", "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE BODY.PEEK[])"
        )
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, raw = item[0].decode(), item[1]
            uid = int(re.search(r"UID (\d+)", meta).group(1))
            size = int(re.search(r"RFC822\.SIZE (\d+)", meta).group(1))
            flags = re.search(r"FLAGS \(([^)]*)\)", meta).group(1)
            messages.append({"uid": uid, "size": size, "flags": flags, "meta": meta, "raw": raw.hex()})
    report["messages"] = messages
    if "--search" in rest:
        criteria = rest[rest.index("--search") + 1]
        typ, data = imap.uid("SEARCH", None, criteria)
        report["search"] = [int(x) for x in data[0].split()]
    if "--expunge-first" in rest and messages:
        imap.uid("STORE", str(messages[0]["uid"]), "+FLAGS.SILENT", "(\\Deleted)")
        typ, data = imap.expunge()
        report["expunged"] = [int(x) for x in data if x]
    typ, data = imap.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
    report["status"] = data[0].decode()
    imap.close()
    report["logout"] = imap.logout()[0]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
