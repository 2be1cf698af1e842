#!/usr/bin/env bash
# The whole test suite: unit, property and integration tests against the real binary.
# Installs the real SMTP clients the integration tests drive (swaks; Python 3 with smtplib
# is expected on the machine) when they are missing, then runs `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
need_apt=()
command -v swaks >/dev/null 2>&1 || need_apt+=(swaks)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]} for the integration tests" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
exec cargo test --workspace --locked "$@"
