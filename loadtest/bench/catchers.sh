#!/usr/bin/env bash
# Installs or builds the mail catchers that loadtest/run-bench.sh compares Mayfly with,
# outside the repository, and says which ones are there.
#
# Usage: loadtest/bench/catchers.sh install [NAMES]   install or build NAMES (default: all)
#        loadtest/bench/catchers.sh list              one line per catcher: name, state, version
#        loadtest/bench/catchers.sh available         comma list of the installed ones
#
#   NAMES is a comma or space separated list of: mailcrab maildev haraka inbucket mailpit.
#   Installing is idempotent: a catcher whose pinned version is already in place is kept.
#
# Where each comes from:
#   maildev   the npm package maildev (pinned below); in-memory store, HTTP API /api/email
#   haraka    the npm package Haraka (pinned below), configured as a catcher: a local plugin
#             accepts every recipient and Haraka's own queue/test plugin writes each message
#             to a file (in $TMPDIR, which the benchmark points at a scratch directory)
#   mailcrab  Rust. Its server (backend/) is not published on crates.io, so it is built from a
#             git checkout of tweedegolf/mailcrab named by MAILCRAB_SRC (a work tree or a bare
#             repository; MAILCRAB_REV picks the commit, default HEAD) with its own Cargo.lock.
#             The web page is not built (it needs a wasm toolchain); the HTTP API is all we use.
#   inbucket  Go. Built from a git checkout of inbucket/inbucket named by INBUCKET_SRC at
#             INBUCKET_REV (default v3.0.4, the last release whose imports Debian bookworm
#             packages) in GOPATH mode against Debian's golang-*-dev libraries, installed
#             with apt-get when missing (as root); nothing is downloaded from a module proxy.
#   mailpit   Go. Built from a checkout named by MAILPIT_SRC only where its Go modules can be
#             had (a vendor/ directory next to it, or a reachable module proxy): Mailpit 1.x
#             needs modernc.org/sqlite and others that Debian does not package, and Go >= 1.24.
#
# Environment:
#   MAYFLY_CATCHERS_DIR   install directory (default /var/tmp/mayfly-catchers)
#   MAILCRAB_SRC MAILCRAB_REV INBUCKET_SRC INBUCKET_REV MAILPIT_SRC MAILPIT_REV
#   GO                    the go binary (default: go on PATH, else the newest /usr/lib/go-1.*/bin/go)
#   CARGO_BUILD_JOBS      as for cargo (the machine may be shared)
#
# Nothing here touches the repository; every catcher lives in its own directory under
# MAYFLY_CATCHERS_DIR with a VERSION file that loadtest/bench/bench.py reads.
set -euo pipefail

MAILDEV_VERSION="3.0.0"
HARAKA_VERSION="3.3.4"
ALL="mailcrab maildev haraka inbucket mailpit"

dir="${MAYFLY_CATCHERS_DIR:-/var/tmp/mayfly-catchers}"

say() { echo "catchers.sh: $*" >&2; }

# The version a catcher would be installed at, or nothing if it cannot be built here.
want_version() {
    case "$1" in
        maildev) echo "$MAILDEV_VERSION" ;;
        haraka) echo "$HARAKA_VERSION" ;;
        mailcrab|inbucket|mailpit)
            local src rev
            src="$(src_of "$1")"
            [[ -n "$src" ]] || return 0
            rev="$(rev_of "$1")"
            git -C "$src" rev-parse --short=10 "$rev^{commit}" 2>/dev/null || true
            ;;
    esac
}

src_of() {
    case "$1" in
        mailcrab) echo "${MAILCRAB_SRC:-}" ;;
        inbucket) echo "${INBUCKET_SRC:-}" ;;
        mailpit) echo "${MAILPIT_SRC:-}" ;;
    esac
}

rev_of() {
    case "$1" in
        mailcrab) echo "${MAILCRAB_REV:-HEAD}" ;;
        inbucket) echo "${INBUCKET_REV:-v3.0.4}" ;;
        mailpit) echo "${MAILPIT_REV:-HEAD}" ;;
    esac
}

# The executable the benchmark starts, relative to the catcher's directory.
bin_of() {
    case "$1" in
        maildev) echo "node_modules/.bin/maildev" ;;
        haraka) echo "node_modules/.bin/haraka" ;;
        mailcrab) echo "bin/mailcrab-backend" ;;
        inbucket) echo "bin/inbucket" ;;
        mailpit) echo "bin/mailpit" ;;
    esac
}

installed_version() {
    local d="$dir/$1"
    [[ -f "$d/VERSION" && -e "$d/$(bin_of "$1")" ]] && head -n 1 "$d/VERSION" || true
}

install_npm() {
    local name="$1" package="$2" version="$3" d="$dir/$1"
    command -v npm >/dev/null || { say "$name: npm not found"; return 1; }
    mkdir -p "$d"
    # npm keeps its own lock file in $d; --omit=dev keeps the tree to what runs
    (cd "$d" && npm install --no-audit --no-fund --omit=dev --loglevel=error "$package@$version" >&2)
}

install_maildev() {
    install_npm maildev maildev "$MAILDEV_VERSION"
    echo "maildev $MAILDEV_VERSION (npm), node $(node --version)" > "$dir/maildev/VERSION.txt"
}

install_haraka() {
    local d="$dir/haraka"
    install_npm haraka Haraka "$HARAKA_VERSION"
    # A config directory from Haraka's own defaults, then changed into a catcher.  The
    # benchmark copies it per run and writes the listen address into config/smtp.ini.
    rm -rf "$d/template"
    node "$d/$(bin_of haraka)" -i "$d/template" >/dev/null
    cat > "$d/template/config/smtp.ini" <<'EOF'
; written per run by loadtest/bench/bench.py (listen=127.0.0.1:PORT); one process, no cluster
nodes=0
EOF
    printf '[main]\nlevel=warn\n' > "$d/template/config/log.ini"
    # every recipient accepted, and each message written to a file: the closest Haraka
    # gets to a mail catcher without a web UI
    printf 'accept_all_rcpt\nqueue/test\n' > "$d/template/config/plugins"
    cat > "$d/template/plugins/accept_all_rcpt.js" <<'EOF'
// Accept every recipient, as a mail catcher does (no relaying checks, no host list).
exports.hook_rcpt = (next) => next(OK)
// The benchmark talks to 127.0.0.1 only: name the peer without a reverse DNS query, which
// would otherwise leave the machine once per connection.
exports.hook_lookup_rdns = (next) => next(OK, 'localhost')
EOF
    echo "Haraka $HARAKA_VERSION (npm), node $(node --version)" > "$d/VERSION.txt"
}

install_mailcrab() {
    local src rev commit d="$dir/mailcrab" work
    src="$(src_of mailcrab)"
    [[ -n "$src" ]] || { say "mailcrab: set MAILCRAB_SRC to a git checkout of tweedegolf/mailcrab"; return 1; }
    command -v cargo >/dev/null || { say "mailcrab: cargo not found"; return 1; }
    rev="$(rev_of mailcrab)"
    commit="$(git -C "$src" rev-parse --short=10 "$rev^{commit}")"
    work="$d/src-$commit"
    rm -rf "$work"
    mkdir -p "$work" "$d/bin"
    git -C "$src" archive "$commit" backend mailcrab | tar -x -C "$work"
    # the web page would be built here by trunk (wasm); the server embeds whatever is there
    mkdir -p "$work/frontend/dist"
    (cd "$work/backend" && cargo build --release --locked --target-dir "$d/build" >&2)
    cp "$d/build/release/mailcrab-backend" "$d/bin/mailcrab-backend.new"
    mv "$d/bin/mailcrab-backend.new" "$d/bin/mailcrab-backend"
    local cargo_version
    cargo_version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$work/backend/Cargo.toml" | head -n 1)"
    echo "mailcrab $cargo_version (git $commit), $(rustc --version | cut -d' ' -f1-2)" > "$d/VERSION.txt"
}

find_go() {
    if [[ -n "${GO:-}" ]]; then echo "$GO"; return; fi
    if command -v go >/dev/null; then command -v go; return; fi
    local g
    for g in /usr/lib/go-1.*/bin/go; do [[ -x "$g" ]] && echo "$g"; done | sort -V | tail -n 1
}

# Inbucket 3.0.x imports only libraries that Debian bookworm packages (as golang-*-dev
# source packages under /usr/share/gocode), so it builds in GOPATH mode with no module
# download at all.  Later releases need Go >= 1.23 and modules Debian does not have.
INBUCKET_DEBIAN_GO_PACKAGES="golang-go golang-github-gorilla-mux-dev golang-github-gorilla-websocket-dev
    golang-github-gorilla-css-dev golang-github-rs-zerolog-dev golang-github-microcosm-cc-bluemonday-dev
    golang-github-kelseyhightower-envconfig-dev golang-github-google-subcommands-dev
    golang-golang-x-net-dev golang-github-jhillyerd-enmime-dev"

install_inbucket() {
    local src rev commit d="$dir/inbucket" gopath go missing=()
    src="$(src_of inbucket)"
    [[ -n "$src" ]] || { say "inbucket: set INBUCKET_SRC to a git checkout of inbucket/inbucket"; return 1; }
    local p
    for p in $INBUCKET_DEBIAN_GO_PACKAGES; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        [[ $EUID -eq 0 ]] || { say "inbucket: needs Debian packages: ${missing[*]}"; return 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
    go="$(find_go)"
    [[ -n "$go" ]] || { say "inbucket: no Go toolchain"; return 1; }
    rev="$(rev_of inbucket)"
    commit="$(git -C "$src" rev-parse --short=10 "$rev^{commit}")"
    gopath="$d/gopath-$commit"
    rm -rf "$gopath"
    mkdir -p "$gopath/src/github.com/inbucket/inbucket" "$d/bin"
    git -C "$src" archive "$commit" | tar -x -C "$gopath/src/github.com/inbucket/inbucket"
    # GOPATH mode: imports resolve to this tree first, then to Debian's /usr/share/gocode
    (cd "$gopath/src/github.com/inbucket/inbucket" && rm -f go.mod go.sum &&
        GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOTOOLCHAIN=local CGO_ENABLED=0 \
        "$go" build -o "$d/bin/inbucket.new" ./cmd/inbucket >&2)
    mv "$d/bin/inbucket.new" "$d/bin/inbucket"
    echo "Inbucket $(git -C "$src" describe --tags "$commit" 2>/dev/null || echo "git $commit"), $("$go" version | cut -d' ' -f3), Debian bookworm Go libraries" > "$d/VERSION.txt"
}

# Mailpit 1.x stores mail in modernc.org/sqlite, which Debian does not package, so it only
# builds where its Go modules can be had: a vendor/ directory next to MAILPIT_SRC or a
# reachable module proxy, and the Go version its go.mod asks for.  Its web UI (embedded
# with go:embed) is built with npm first.
install_mailpit() {
    local src rev commit d="$dir/mailpit" work go
    src="$(src_of mailpit)"
    [[ -n "$src" ]] || { say "mailpit: set MAILPIT_SRC to a git checkout of axllent/mailpit"; return 1; }
    go="$(find_go)"
    [[ -n "$go" ]] || { say "mailpit: no Go toolchain"; return 1; }
    rev="$(rev_of mailpit)"
    commit="$(git -C "$src" rev-parse --short=10 "$rev^{commit}")"
    work="$d/src-$commit"
    rm -rf "$work"
    mkdir -p "$work" "$d/bin"
    git -C "$src" archive "$commit" | tar -x -C "$work"
    if [[ -d "$src/vendor" && ! -d "$work/vendor" ]]; then cp -r "$src/vendor" "$work/vendor"; fi
    local flags=()
    [[ -d "$work/vendor" ]] && flags+=(-mod=vendor)
    # fail early, before the npm build, if the modules cannot be had
    (cd "$work" && GOTOOLCHAIN=local "$go" list "${flags[@]}" -deps . >/dev/null) ||
        { say "mailpit: its Go modules cannot be had here (see above)"; rm -rf "$work"; return 1; }
    (cd "$work" && npm install --no-audit --no-fund --loglevel=error >&2 && npm run package >&2)
    (cd "$work" && GOTOOLCHAIN=local CGO_ENABLED=0 "$go" build "${flags[@]}" -o "$d/bin/mailpit.new" . >&2)
    mv "$d/bin/mailpit.new" "$d/bin/mailpit"
    echo "Mailpit $(git -C "$src" describe --tags "$commit" 2>/dev/null || echo "git $commit"), $("$go" version | cut -d' ' -f3)" > "$d/VERSION.txt"
}

install_one() {
    local name="$1" want have
    want="$(want_version "$name")"
    have="$(installed_version "$name")"
    if [[ -n "$want" && "$have" == "$want" ]]; then
        say "$name $have already installed in $dir/$name"
        return 0
    fi
    say "installing $name ${want:-(no source)} into $dir/$name"
    case "$name" in
        maildev) install_maildev ;;
        haraka) install_haraka ;;
        mailcrab) install_mailcrab ;;
        inbucket) install_inbucket ;;
        mailpit) install_mailpit ;;
        *) say "unknown catcher $name (known: $ALL)"; return 1 ;;
    esac
    echo "$want" > "$dir/$name/VERSION"
}

cmd="${1:-list}"
shift || true
case "$cmd" in
    install)
        names="${*:-$ALL}"
        failed=()
        for name in ${names//,/ }; do
            # a process of its own: inside "cmd || ..." bash ignores set -e in functions
            "$0" install-one "$name" || failed+=("$name")
        done
        "$0" list
        if [[ ${#failed[@]} -gt 0 ]]; then
            say "not installed: ${failed[*]}"
            exit 1
        fi
        ;;
    install-one) install_one "$1" ;;
    list)
        for name in $ALL; do
            have="$(installed_version "$name")"
            if [[ -n "$have" ]]; then
                printf '%-9s available  %s\n' "$name" "$(cat "$dir/$name/VERSION.txt" 2>/dev/null || echo "$have")"
            else
                printf '%-9s missing\n' "$name"
            fi
        done
        ;;
    available)
        out=()
        for name in $ALL; do
            [[ -n "$(installed_version "$name")" ]] && out+=("$name")
        done
        (IFS=,; echo "${out[*]}")
        ;;
    -h|--help) sed -n "2,$(grep -n "^set -euo" "$0" | cut -d: -f1)p" "$0" | head -n -2 | sed 's/^# \{0,1\}//' ;;
    *) say "unknown command $cmd"; exit 2 ;;
esac
