#!/usr/bin/env python3
"""What a QA suite writes to get a sign-up code out of Mayfly, with `requests`.

Makes a private address, prints it (the test then makes the "app under test" mail it),
waits for the sign-up mail with ONE request (a search with wait=), and prints the code
and the verification link Mayfly extracted. This is the README's example, run for real by
tests/http_search.rs against the binary.

Usage: qa_wait_code.py BASE_URL QUERY [WAIT_SECONDS]
Prints "address=ADDR" first, then "code=CODE" and "link=URL", or exits 1 with the reason.
"""

import sys

import requests


def new_inbox(base):
    """A fresh address and its token (POST /api/v1/addresses)."""
    response = requests.post(f"{base}/api/v1/addresses", timeout=10)
    response.raise_for_status()
    return response.json()


def wait_for_mail(base, inbox, query, wait_s):
    """The newest message matching `query`, waiting up to `wait_s` seconds for it."""
    response = requests.get(
        f"{base}/api/v1/inboxes/{inbox['address']}",
        params={"q": query, "wait": wait_s},
        headers={"Authorization": f"Bearer {inbox['token']}"},
        timeout=wait_s + 10,
    )
    response.raise_for_status()
    messages = response.json()["messages"]
    if not messages:
        raise SystemExit(f"no mail matching {query!r} within {wait_s} s")
    return messages[0]


def codes_of(base, inbox, message):
    """The message's likely codes and links (GET .../messages/{id}/codes)."""
    response = requests.get(
        f"{base}/api/v1/inboxes/{inbox['address']}/messages/{message['id']}/codes",
        headers={"Authorization": f"Bearer {inbox['token']}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def main():
    base, query = sys.argv[1], sys.argv[2]
    wait_s = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    inbox = new_inbox(base)
    print(f"address={inbox['address']}", flush=True)
    message = wait_for_mail(base, inbox, query, wait_s)
    found = codes_of(base, inbox, message)
    if not found["codes"]:
        raise SystemExit(f"the mail {message['subject']!r} has no code")
    print(f"code={found['codes'][0]['value']}", flush=True)
    verify = [link["url"] for link in found["links"] if link["kind"] == "verify"]
    print(f"link={verify[0] if verify else ''}", flush=True)


if __name__ == "__main__":
    main()
