#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests against the real binary.
# Installs what the integration tests drive when it is missing: the real SMTP clients
# (swaks; Python 3 with smtplib is expected on the machine), the mail clients (fetchmail,
# mutt, mbsync, curl; Python's poplib and imaplib), and for the web page's
# end-to-end test Debian's Chromium plus tests/browser/node_modules (playwright-core,
# pinned by package-lock.json; Node.js 20+ and npm are expected on the machine, and no
# browser is downloaded by npm). MAYFLY_SKIP_BROWSER=1 skips the browser test and its
# installs. Then runs `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
need_apt=()
if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
command -v swaks >/dev/null 2>&1 || need_apt+=(swaks)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# Mail clients for the POP3 and IMAP tests.
command -v fetchmail >/dev/null 2>&1 || need_apt+=(fetchmail)
command -v mutt >/dev/null 2>&1 || need_apt+=(mutt)
command -v mbsync >/dev/null 2>&1 || need_apt+=(isync)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The sender-check tests make RSA keys with openssl and serve their zones with nsd.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v nsd >/dev/null 2>&1 || [ -x /usr/sbin/nsd ] || need_apt+=(nsd) # authoritative DNS for tests/auth_dns.rs
command -v rspamd >/dev/null 2>&1 || need_apt+=(rspamd) # the spam filter for tests/spam.rs
# The scale-out test (loadtest/tests/cluster.rs): Postfix and HAProxy in network namespaces.
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
if ! command -v postfix >/dev/null 2>&1 && [ ! -x /usr/sbin/postfix ]; then
    need_apt+=(postfix)
    # No questions, no system mail setup: the test runs private instances only.
    echo "postfix postfix/main_mailer_type select No configuration" |
        "${sudo[@]}" debconf-set-selections
fi
if [ "${MAYFLY_SKIP_BROWSER:-}" != 1 ] && [ ! -x /usr/bin/chromium ]; then
    need_apt+=(chromium fonts-liberation)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} for the integration tests" >&2
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The README's QA example (tests/clients/qa_wait_code.py) uses requests.
if ! python3 -c 'import requests' >/dev/null 2>&1; then
    echo "installing requests (pip) for the QA example test" >&2
    python3 -m pip install --quiet requests ||
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq python3-requests >/dev/null
fi
browser_dir=tests/browser
if [ "${MAYFLY_SKIP_BROWSER:-}" != 1 ] && {
    [ ! -f "$browser_dir/node_modules/.package-lock.json" ] ||
        [ "$browser_dir/package-lock.json" -nt "$browser_dir/node_modules/.package-lock.json" ]
}; then
    echo "installing $browser_dir/node_modules (npm ci) for the browser test" >&2
    (cd "$browser_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
exec cargo test --workspace --locked "$@"
