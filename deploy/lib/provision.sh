#!/usr/bin/env bash
# deploy/lib/provision.sh - what `deploy/local.sh up` installs before it starts
# any server: Debian packages (only those missing), a Go toolchain when the
# machine has none new enough, LiveKit, helm, kubeconform and versitygw (`go
# install`), LiveKit Egress (`go build`), the test venv, the npm packages of
# clients/ts, web and deploy/oidc, and the web app's bundle; oha for `bench`, sqlx-cli for `test` (cargo install). Every version is pinned in the block
# below (or a lockfile it names); every step first checks whether its result
# is already there, at that version, so a second run does nothing.
# What is downloaded or built goes to $CALLGATE_CACHE (~/.cache/callgate);
# in the clone only what git ignores: clients/ts/node_modules,
# web/node_modules and web/dist (npm, tsc and esbuild look for packages
# beside the sources).
#
# Sourced by deploy/local.sh. Run alone (deploy/lib/provision.sh), it installs
# all that and starts nothing.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    SELF="$(readlink -f "$0")"
    ROOT="$(cd "$(dirname "$SELF")/../.." && pwd)"
    cd "$ROOT"
    # shellcheck source=deploy/lib/common.sh
    . "$ROOT/deploy/lib/common.sh"
fi

# ---------------------------------------------------------- pinned versions ---
# Every version the stack installs is pinned in this block or in a lockfile
# it names; Debian's packages are whatever Debian 12 ships.

# LiveKit server; docker-compose.yml and the Helm chart run the same image
# version (tests/api/containers.rs holds them to it).
LIVEKIT_VERSION=1.13.5
# tests/api/cluster.rs: `helm lint`, `helm template` and kubeconform on
# deploy/helm/callgate, against the Kubernetes schemas of kubernetes-validate
# (PY_PACKAGES); both tools built with `go install`, like LiveKit.
HELM_VERSION=3.22.0
KUBECONFORM_VERSION=0.8.0
# LiveKit Egress, the recorder (issue 27): built from the module the Go
# proxy serves (`go mod download`, not `go install`: the module's embedded
# room-composite page is not in its zip, and newer releases are refused by
# the proxy here) against Debian's GStreamer 1.22; its page
# (template-default) is built with npm from deploy/egress/template/'s
# package-lock.json (@livekit/egress-sdk 0.2.1).
EGRESS_VERSION=1.8.6
# versitygw, the S3-compatible server recordings go to with
# RECORDING_STORAGE=s3 (tests/api/recording_s3.rs): SigV4, multipart and
# presigned URLs, served from a folder (`go install`, like LiveKit).
VERSITYGW_VERSION=1.8.0
# The Go that builds them: livekit-server v1.13.5's go.mod says `go 1.26`;
# bootstrapped from the Go module proxy when the machine has no Go >= 1.21.
GO_MIN_MINOR=26
GO_BOOTSTRAP_VERSION=go1.26.0
# `bench`'s HTTP load generator (examples/api_load.rs reads its JSON).
OHA_VERSION=1.16.0
# `test`'s check that .sqlx (the query macros' offline data) is up to date
# (`cargo sqlx prepare --check`), and its scratch database's migrations
# (`sqlx migrate run`): the version of the sqlx crate in Cargo.lock, which
# the check holds it to.
SQLX_CLI_VERSION=0.9.0
NEXTEST_VERSION=0.9.151
# The test venv: these seven, pinned with everything they pull in, in
# deploy/venv-requirements.txt.
# livekit, livekit-api: the end-to-end tests' WebRTC clients; jsonschema,
# PyYAML: tests/api/containers.rs validates docker-compose.yml with them;
# schemathesis: tests/api/openapi.rs fuzzes the API against /openapi.json;
# playwright: tests/e2e/browser.py drives Debian's chromium (no browser download);
# kubernetes-validate: the Kubernetes JSON schemas tests/api/cluster.rs validates with.
PY_PACKAGES=(livekit livekit-api jsonschema PyYAML schemathesis playwright kubernetes-validate)
PY_REQUIREMENTS="$ROOT/deploy/venv-requirements.txt"
# npm: clients/ts/package-lock.json, web/package-lock.json and
# deploy/oidc/package-lock.json (`npm ci`); Rust: Cargo.lock.

# ---------------------------------------------------------------- where ---

LIVEKIT_BIN="$BIN/server"
LIVEKIT_PKG="github.com/livekit/livekit-server/cmd/server@v$LIVEKIT_VERSION"
HELM_PKG="helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
KUBECONFORM_PKG="github.com/yannh/kubeconform/cmd/kubeconform@v$KUBECONFORM_VERSION"
VERSITYGW_PKG="github.com/versity/versitygw/cmd/versitygw@v$VERSITYGW_VERSION"
VERSITYGW_BIN="$BIN/versitygw"
NPM_CACHE="$CACHE/npm"
EGRESS_MOD="github.com/livekit/egress@v$EGRESS_VERSION"
EGRESS_BIN="$BIN/egress"
# Where the module is copied out of the (read-only) module cache and built.
EGRESS_BUILD="$CACHE/egress-build"
EGRESS_TEMPLATE="$ROOT/deploy/egress/template"
# The sign-in tests' OpenID Connect provider: deploy/oidc/package-lock.json's
# packages, installed outside the clone, again only when the lock changes.
OIDC_DIR="$CACHE/oidc-provider"
CHROMIUM=/usr/bin/chromium

# --------------------------------------------------------------- packages ---

ensure_packages() {
    local missing=()
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null &&
        command -v pg_ctlcluster >/dev/null && command -v psql >/dev/null &&
        command -v pg_isready >/dev/null || missing+=(postgresql)
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-server)
    command -v turnserver >/dev/null && command -v turnutils_uclient >/dev/null || missing+=(coturn)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v flock >/dev/null && command -v runuser >/dev/null || missing+=(util-linux)
    # LiveKit Egress: GStreamer 1.22 to build and run it, Xvfb and PulseAudio
    # for a room composite's page (in chromium), ffmpeg (ffprobe) to read files.
    pkg-config --exists 'gstreamer-1.0 >= 1.22' 'gstreamer-app-1.0' 'gstreamer-pbutils-1.0' 2>/dev/null ||
        missing+=(libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev)
    local pkg
    for pkg in gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
        gstreamer1.0-plugins-ugly gstreamer1.0-libav; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
    done
    command -v gcc >/dev/null && command -v pkg-config >/dev/null || missing+=(gcc pkg-config)
    command -v Xvfb >/dev/null || missing+=(xvfb)
    command -v pulseaudio >/dev/null && command -v pactl >/dev/null || missing+=(pulseaudio pulseaudio-utils)
    command -v ffprobe >/dev/null && command -v ffmpeg >/dev/null || missing+=(ffmpeg)
    # The web app's build and the TypeScript client's tests; its browser tests.
    command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
    [[ -x "$CHROMIUM" ]] || missing+=(chromium)
    if ! command -v python3 >/dev/null; then
        missing+=(python3 python3-venv)
    elif [[ ! -x "$VENV/bin/python" ]] && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    ((${#missing[@]} == 0)) && return 0

    section "apt-get install ${missing[*]}"
    log "installing Debian packages: ${missing[*]}"
    # Do not let the packages' maintainer scripts start their system services
    # (coturn/redis/postgresql with Debian's configs); `up` starts its own.
    local policy=/usr/sbin/policy-rc.d added_policy=""
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        added_policy=1
    fi
    local rc=0
    quietly apt-get bash -c "$SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends ${missing[*]}" || rc=$?
    [[ -n "$added_policy" ]] && $SUDO rm -f "$policy"
    ((rc == 0)) || die "apt-get install ${missing[*]} failed"
    section_done
}

# --------------------------------------------------------- Go and LiveKit ---

go_minor() { # go_minor <go binary>: prints the minor version (go1.26.8 -> 26)
    local v
    v="$("$1" env GOVERSION 2>/dev/null || "$1" version 2>/dev/null | awk '{print $3}')" || return 1
    v="${v#go1.}"
    printf '%s\n' "${v%%[.a-z]*}"
}

# Prints the path of a Go toolchain able to build LiveKit, bootstrapping one
# through the Go module proxy (golang.org/toolchain module, the same mechanism
# as GOTOOLCHAIN) when the machine has none or only an old one.
find_go() {
    local cand minor best="" best_minor=0
    for cand in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/lib/go/bin/go \
        "$CACHE/go/bin/go"; do
        [[ -n "$cand" && -x "$cand" ]] || continue
        minor="$(go_minor "$cand")" || continue
        [[ "$minor" =~ ^[0-9]+$ ]] || continue
        if ((minor > best_minor)); then best="$cand" best_minor=$minor; fi
    done
    if [[ -n "$best" ]] && ((best_minor >= GO_MIN_MINOR)); then
        printf '%s\n' "$best"
        return 0
    fi
    if [[ -n "$best" ]] && ((best_minor >= 21)); then
        # go >= 1.21 switches toolchains itself (GOTOOLCHAIN=auto, set by the caller).
        printf '%s\n' "$best"
        return 0
    fi
    if [[ -z "$best" ]]; then
        log "no Go toolchain found; installing Debian's golang-go to bootstrap"
        quietly apt-get-go bash -c "$SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends golang-go ca-certificates" ||
            die "apt-get install golang-go failed"
        best=/usr/lib/go/bin/go
        [[ -x "$best" ]] || best="$(command -v go)"
    fi
    local arch mod dir
    arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
    mod="golang.org/toolchain@v0.0.1-$GO_BOOTSTRAP_VERSION.linux-$arch"
    log "bootstrapping $GO_BOOTSTRAP_VERSION from the Go module proxy ($mod)"
    dir="$(cd /tmp && GOFLAGS=-modcacherw GO111MODULE=on "$best" mod download -json "$mod" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')" || true
    [[ -n "$dir" && -d "$dir/bin" ]] || die "could not download $mod; install Go >= 1.$GO_MIN_MINOR (e.g. /usr/local/go)"
    rm -rf "$CACHE/go"
    cp -a "$dir" "$CACHE/go"
    chmod -R u+w "$CACHE/go"
    # module zips carry no executable bits
    find "$CACHE/go/bin" "$CACHE/go/pkg/tool" -type f -exec chmod 755 {} +
    printf '%s\n' "$CACHE/go/bin/go"
}

livekit_version_ok() {
    [[ -x "$LIVEKIT_BIN" ]] && "$LIVEKIT_BIN" --version 2>/dev/null | grep -qw "$LIVEKIT_VERSION"
}

ensure_livekit_binary() {
    livekit_version_ok && return 0
    section "build LiveKit server v$LIVEKIT_VERSION (go install, takes minutes)"
    local go
    go="$(find_go)"
    log "building LiveKit v$LIVEKIT_VERSION with $go ($("$go" version)) into $BIN"
    mkdir -p "$BIN"
    quietly go-install-livekit env GOBIN="$BIN" GOTOOLCHAIN=auto GOFLAGS=-modcacherw "$go" install "$LIVEKIT_PKG" ||
        die "go install $LIVEKIT_PKG failed"
    livekit_version_ok || die "$LIVEKIT_BIN --version does not report $LIVEKIT_VERSION"
    section_done
}

# ------------------------------------------------------------------ Egress ---

# The stamp beside the binary: the version, and the hash of the page's lock.
egress_want() { echo "$EGRESS_VERSION $(file_hash "$EGRESS_TEMPLATE/package.json" "$EGRESS_TEMPLATE/package-lock.json")"; }

egress_ok() {
    [[ -x "$EGRESS_BIN" && "$(cat "$BIN/.egress.version" 2>/dev/null)" == "$(egress_want)" ]]
}

# Copies the module out of the module cache, builds its room-composite page
# into cmd/server/templates/ (the binary embeds it), then the binary; about
# five minutes on two cores, once per version.
ensure_egress_binary() {
    egress_ok && return 0
    section "build LiveKit Egress v$EGRESS_VERSION (go build with GStreamer, takes minutes)"
    local go dir src
    go="$(find_go)"
    dir="$(cd /tmp && GOFLAGS=-modcacherw GO111MODULE=on GOTOOLCHAIN=auto "$go" mod download -json "$EGRESS_MOD" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')" || true
    [[ -n "$dir" && -d "$dir/cmd/server" ]] || die "go mod download $EGRESS_MOD failed"
    src="$EGRESS_BUILD/egress-$EGRESS_VERSION"
    log "building LiveKit Egress v$EGRESS_VERSION in $src with $go"
    rm -rf "$src"
    mkdir -p "$EGRESS_BUILD"
    cp -a "$dir" "$src"
    chmod -R u+w "$src"
    # The page: template-default's sources, our pinned package.json and lock.
    cp "$EGRESS_TEMPLATE/package.json" "$EGRESS_TEMPLATE/package-lock.json" "$EGRESS_TEMPLATE/.npmrc" "$src/template-default/"
    # shellcheck disable=SC2016 # expanded by the inner shell
    quietly egress-template bash -c 'cd "$1/template-default" && npm ci --cache "$2" --no-audit --no-fund --loglevel=error &&
        CI=false GENERATE_SOURCEMAP=false npm run build' _ "$src" "$NPM_CACHE" ||
        die "building egress's template-default page (npm) failed"
    rm -rf "$src/cmd/server/templates"
    cp -a "$src/template-default/build" "$src/cmd/server/templates"
    find "$src/cmd/server/templates" -name '*.map' -delete
    rm -rf "$src/template-default/node_modules"
    mkdir -p "$BIN"
    # shellcheck disable=SC2016 # expanded by the inner shell
    quietly go-build-egress bash -c 'cd "$1" && CGO_ENABLED=1 GOTOOLCHAIN=auto GOFLAGS=-modcacherw "$2" build -o "$3.tmp" ./cmd/server &&
        mv -f "$3.tmp" "$3"' _ "$src" "$go" "$EGRESS_BIN" ||
        die "go build of LiveKit Egress v$EGRESS_VERSION failed"
    egress_want >"$BIN/.egress.version"
    section_done
}

# go_tool_ok <name> <version>: $BIN/<name> was installed at <version> (go
# install leaves no version a binary reports reliably: a stamp beside it says).
go_tool_ok() {
    [[ -x "$BIN/$1" && "$(cat "$BIN/.$1.version" 2>/dev/null)" == "$2" ]]
}

# The cluster checks' tools (tests/api/cluster.rs), once, into $BIN.
ensure_cluster_tools() {
    local name version pkg go=""
    for name in helm kubeconform; do
        if [[ "$name" == helm ]]; then version="$HELM_VERSION" pkg="$HELM_PKG"; else version="$KUBECONFORM_VERSION" pkg="$KUBECONFORM_PKG"; fi
        go_tool_ok "$name" "$version" && continue
        section "go install $pkg"
        [[ -n "$go" ]] || go="$(find_go)"
        mkdir -p "$BIN"
        quietly "go-install-$name" env GOBIN="$BIN" GOTOOLCHAIN=auto GOFLAGS=-modcacherw "$go" install "$pkg" ||
            die "go install $pkg failed"
        echo "$version" >"$BIN/.$name.version"
        section_done
    done
}

# The S3-compatible server (deploy/lib/services.sh starts it), once per
# version, into $BIN.
ensure_versitygw_binary() {
    go_tool_ok versitygw "$VERSITYGW_VERSION" && return 0
    section "go install $VERSITYGW_PKG"
    local go
    go="$(find_go)"
    mkdir -p "$BIN"
    quietly go-install-versitygw env GOBIN="$BIN" GOTOOLCHAIN=auto GOFLAGS=-modcacherw "$go" install "$VERSITYGW_PKG" ||
        die "go install $VERSITYGW_PKG failed"
    echo "$VERSITYGW_VERSION" >"$BIN/.versitygw.version"
    section_done
}

# ------------------------------------------------------------- Python venv ---

venv_ok() { # cheap check: every pinned distribution at its version, and the modules present
    [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" - "$PY_REQUIREMENTS" 2>/dev/null <<'PY'
import importlib.metadata as md, importlib.util as iu, sys
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, version = line.split("==")
        assert md.version(name) == version, name
assert iu.find_spec("livekit.rtc") and iu.find_spec("livekit.api")
assert iu.find_spec("jsonschema") and iu.find_spec("yaml") and iu.find_spec("schemathesis")
assert iu.find_spec("playwright.sync_api") and iu.find_spec("kubernetes_validate")
PY
}

ensure_venv() {
    venv_ok && return 0
    section "Python venv with ${PY_PACKAGES[*]}"
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        log "creating virtualenv $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
    fi
    log "installing ${PY_PACKAGES[*]} into $VENV (deploy/venv-requirements.txt)"
    quietly pip-install "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$PY_REQUIREMENTS" ||
        die "pip install -r $PY_REQUIREMENTS failed"
    "$VENV/bin/python" -c 'import livekit.api, livekit.rtc, jsonschema, yaml, schemathesis, playwright.sync_api, kubernetes_validate' ||
        die "$VENV: ${PY_PACKAGES[*]} still not importable"
    section_done
}

# ------------------------------------------------- npm packages, web build ---

# npm ci for clients/ts and web (cache outside the repository), then the web
# app's bundle web/dist/app.js; each is redone only when its inputs change.
ensure_web() {
    local dir stamp want
    for dir in clients/ts web; do
        stamp="$ROOT/$dir/node_modules/.callgate-lock"
        want="$(file_hash "$ROOT/$dir/package-lock.json")"
        [[ -r "$stamp" && "$(cat "$stamp")" == "$want" ]] && continue
        section "npm ci ($dir)"
        # shellcheck disable=SC2016 # expanded by the inner shell
        quietly "npm-ci-${dir//\//-}" bash -c 'cd "$1" && npm ci --cache "$2" --no-audit --no-fund --loglevel=error' _ "$ROOT/$dir" "$NPM_CACHE" ||
            die "npm ci in $dir failed"
        echo "$want" >"$stamp"
        section_done
    done
    stamp="$ROOT/web/dist/.callgate-build"
    want="$(file_hash "$ROOT"/web/src/*.ts "$ROOT"/clients/ts/src/*.ts "$ROOT/web/package.json" "$ROOT/web/package-lock.json")"
    [[ -r "$stamp" && "$(cat "$stamp")" == "$want" ]] && return 0
    (cd "$ROOT/web" && npm run --silent build >/dev/null) || die "the web app's build (web: npm run build) failed"
    echo "$want" >"$stamp"
}

# ---------------------------------------------- the OpenID Connect provider ---

oidc_provider_ok() {
    [[ -r "$OIDC_DIR/node_modules/oidc-provider/package.json" &&
        "$(cat "$OIDC_DIR/.callgate-lock" 2>/dev/null)" == "$(file_hash "$ROOT/deploy/oidc/package-lock.json")" ]]
}

ensure_oidc_provider() {
    oidc_provider_ok && return 0
    section "npm ci (deploy/oidc: the sign-in tests' OpenID Connect provider)"
    rm -rf "$OIDC_DIR"
    mkdir -p "$OIDC_DIR"
    cp "$ROOT/deploy/oidc/package.json" "$ROOT/deploy/oidc/package-lock.json" "$OIDC_DIR/"
    # shellcheck disable=SC2016 # expanded by the inner shell
    quietly npm-ci-oidc bash -c 'cd "$1" && npm ci --cache "$2" --no-audit --no-fund --loglevel=error' _ "$OIDC_DIR" "$NPM_CACHE" ||
        die "npm ci in $OIDC_DIR failed"
    file_hash "$ROOT/deploy/oidc/package-lock.json" >"$OIDC_DIR/.callgate-lock"
    section_done
}

oha_ok() { [[ -x "$BIN/oha" ]] && "$BIN/oha" --version 2>/dev/null | grep -qw "$OHA_VERSION"; }

ensure_oha() { # needs cargo on PATH (ensure_cargo_on_path)
    oha_ok && return 0
    section "cargo install oha $OHA_VERSION (HTTP load generator, once)"
    log "installing oha $OHA_VERSION into $BIN"
    quietly cargo-install-oha cargo install oha --version "$OHA_VERSION" --locked --force --root "$CACHE" ||
        die "cargo install oha failed"
    section_done
}

sqlx_cli_ok() {
    [[ -x "$BIN/sqlx" && -x "$BIN/cargo-sqlx" ]] && "$BIN/sqlx" --version 2>/dev/null | grep -qw "$SQLX_CLI_VERSION"
}

ensure_sqlx_cli() { # needs cargo on PATH (ensure_cargo_on_path)
    sqlx_cli_ok && return 0
    section "cargo install sqlx-cli $SQLX_CLI_VERSION (PostgreSQL only, once)"
    log "installing sqlx-cli $SQLX_CLI_VERSION into $BIN"
    quietly cargo-install-sqlx-cli cargo install sqlx-cli --version "$SQLX_CLI_VERSION" --locked --force \
        --no-default-features --features postgres,rustls --root "$CACHE" ||
        die "cargo install sqlx-cli failed"
    sqlx_cli_ok || die "$BIN/sqlx --version does not report $SQLX_CLI_VERSION"
    section_done
}

nextest_ok() {
    [[ -x "$BIN/cargo-nextest" ]] && "$BIN/cargo-nextest" nextest --version 2>/dev/null | grep -qw "$NEXTEST_VERSION"
}

ensure_nextest() { # needs cargo on PATH (ensure_cargo_on_path)
    nextest_ok && return 0
    section "cargo install cargo-nextest $NEXTEST_VERSION (once)"
    log "installing cargo-nextest $NEXTEST_VERSION into $BIN"
    quietly cargo-install-nextest cargo install cargo-nextest --version "$NEXTEST_VERSION" --locked --force \
        --root "$CACHE" || die "cargo install cargo-nextest failed"
    section_done
}

# ------------------------------------------------------------------ all of it ---

# What `up` installs before it starts the servers, in this order.
provision() {
    ensure_packages
    ensure_livekit_binary
    ensure_egress_binary
    ensure_versitygw_binary
    ensure_cluster_tools
    ensure_venv
    ensure_web
    ensure_oidc_provider
}

provision_status() { # for `status`: what is installed where
    if livekit_version_ok; then echo "livekit binary: $LIVEKIT_BIN (v$LIVEKIT_VERSION)"; else echo "livekit binary: missing ($LIVEKIT_BIN)"; fi
    if egress_ok; then echo "egress binary:  $EGRESS_BIN (v$EGRESS_VERSION)"; else echo "egress binary:  missing ($EGRESS_BIN)"; fi
    if go_tool_ok versitygw "$VERSITYGW_VERSION"; then echo "versitygw:      $VERSITYGW_BIN (v$VERSITYGW_VERSION)"; else echo "versitygw:      missing ($VERSITYGW_BIN)"; fi
    if venv_ok; then echo "python venv:    $VENV (${PY_PACKAGES[*]})"; else echo "python venv:    missing ($VENV)"; fi
    if go_tool_ok helm "$HELM_VERSION" && go_tool_ok kubeconform "$KUBECONFORM_VERSION"; then
        echo "cluster tools:  $BIN/helm (v$HELM_VERSION), $BIN/kubeconform (v$KUBECONFORM_VERSION)"
    else
        echo "cluster tools:  missing ($BIN/helm, $BIN/kubeconform)"
    fi
    if oidc_provider_ok; then echo "oidc provider:  $OIDC_DIR (deploy/oidc, started by the sign-in tests)"; else echo "oidc provider:  missing ($OIDC_DIR)"; fi
    if sqlx_cli_ok; then echo "sqlx-cli:       $BIN/sqlx (v$SQLX_CLI_VERSION)"; else echo "sqlx-cli:       missing ($BIN/sqlx; \`test\` installs it)"; fi
    if nextest_ok; then echo "cargo-nextest:  $BIN/cargo-nextest (v$NEXTEST_VERSION)"; else echo "cargo-nextest:  missing ($BIN/cargo-nextest; \`test\` installs it)"; fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    mkdir -p "$CACHE"
    # Serialised with `up` (deploy/lib/services.sh, cmd_up) on the same lock.
    if [[ -z "${CALLGATE_UP_LOCKED:-}" ]] && command -v flock >/dev/null; then
        CALLGATE_UP_LOCKED=1 exec flock -o "$CACHE/.lock" "$SELF" "$@"
    fi
    provision
    ensure_cargo_on_path
    ensure_sqlx_cli
    ensure_nextest
    log "provisioned (state in $CACHE)"
fi
