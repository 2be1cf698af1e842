#!/usr/bin/env python3
"""Sends one message to a local Mayfly with Python's stdlib smtplib, for the
integration tests in tests/smtp_clients.rs.

Usage:
  send_smtplib.py PORT --from ADDR --to ADDR [--to ADDR ...]
                  (--message-file FILE | --build-multipart SUBJECT)
                  [--smtputf8] [--no-ehlo-check]

--message-file sends the file's bytes as they are (they should use CRLF line ends).
--build-multipart builds a multipart/mixed message with the email package.
Either way the script sends with SMTP.sendmail (DATA, never BDAT: smtplib has none)
and prints one JSON line on stdout:
  {"features": [...EHLO keywords...], "refused": {...},
   "sent_b64": "<the message as smtplib put it on the wire, before dot-stuffing>"}
Any SMTP error is printed on stderr and the exit status is 1.
"""

import argparse
import base64
import json
import smtplib
import sys
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

TIMEOUT_SECONDS = 10


def build_multipart(subject, sender, recipients):
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = "Fri, 27 Nov 2026 22:15:44 +0000"
    message.set_content("Hello from smtplib.\n.leading dot line\n..two dots\n")
    message.add_alternative("<p>Hello <b>from</b> smtplib</p>\n", subtype="html")
    message.add_attachment(
        bytes(range(256)) * 4,
        maintype="application",
        subtype="octet-stream",
        filename="blob.bin",
    )
    return message.as_bytes(policy=SMTP_POLICY)


def as_sent(message):
    """What smtplib.SMTP.data() sends for a bytes message before dot-stuffing: the
    bytes unchanged, plus a final CRLF when missing (see SMTP.data)."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--from", dest="sender", required=True)
    parser.add_argument("--to", dest="recipients", action="append", required=True)
    parser.add_argument("--message-file")
    parser.add_argument("--build-multipart")
    parser.add_argument("--smtputf8", action="store_true")
    args = parser.parse_args()

    if args.message_file:
        with open(args.message_file, "rb") as file:
            message = file.read()
    elif args.build_multipart:
        message = build_multipart(args.build_multipart, args.sender, args.recipients)
    else:
        parser.error("need --message-file or --build-multipart")

    mail_options = ["SMTPUTF8"] if args.smtputf8 else []
    try:
        with smtplib.SMTP("127.0.0.1", args.port, timeout=TIMEOUT_SECONDS) as smtp:
            smtp.ehlo("smtplib.client.test")
            features = sorted(smtp.esmtp_features.keys())
            if args.smtputf8 and not smtp.has_extn("smtputf8"):
                print("server does not advertise SMTPUTF8", file=sys.stderr)
                return 1
            refused = smtp.sendmail(
                args.sender, args.recipients, message, mail_options=mail_options
            )
    except (smtplib.SMTPException, OSError) as error:
        print(f"smtplib error: {error!r}", file=sys.stderr)
        return 1

    print(
        json.dumps(
            {
                "features": features,
                "refused": {k: [v[0], v[1].decode("utf-8", "replace")] for k, v in refused.items()},
                "sent_b64": base64.b64encode(as_sent(message)).decode("ascii"),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
