#!/usr/bin/env bash
# deploy/local.sh - install and run callgate's whole stack on loopback.
#
#   deploy/local.sh up       install what is missing, start PostgreSQL, Redis,
#                            Coturn and LiveKit (idempotent: reuses whatever
#                            already answers on the ports)
#   deploy/local.sh down     stop the servers `up` started (servers it found
#                            already running are left alone)
#   deploy/local.sh run      up + `cargo run --release -- serve` (foreground;
#                            metrics on ADMIN_PORT, 9090 unless set)
#   deploy/local.sh test [cargo test args] [-- test binary args]
#                            up + cargo fmt --check, clippy -D warnings, cargo test
#   deploy/local.sh status   what runs where
#   deploy/local.sh bench    up + callgate (release) on a spare port with a fresh
#                            database callgate_bench: requests/s and p50/p99 of
#                            GET /health, join tokens, the call lifecycle and
#                            signed LiveKit webhooks (oha, examples/api_load.rs;
#                            JSON in target/bench/), the service's peak memory,
#                            then the consent latency bench (benches/)
#
# Environment:
#   CALLGATE_CACHE   cache dir (default ~/.cache/callgate): bin/ (LiveKit, oha,
#                    helm and kubeconform for the cluster checks), venv/ (Python
#                    LiveKit SDK for the e2e tests, jsonschema and PyYAML for the
#                    container checks, kubernetes-validate's Kubernetes schemas
#                    for the cluster checks), run/ (pid files, logs, Redis/Coturn
#                    data). Nothing is written to the repo.
#   CI=true          section headers and timings for every step.
#   CALLGATE_SKIP_LINT=1   `test` skips cargo fmt / clippy.
#   CALLGATE_TEST_DB=callgate_test   `test`: the shared test database (created
#                    if missing), e.g. one per worktree whose migrations differ.
#   CALLGATE_BENCH_SECS=10, CALLGATE_BENCH_CONCURRENCY=32, CALLGATE_BENCH_PORT=8080
#                    `bench`: seconds per scenario, requests in flight, the
#                    first port tried (8080: LiveKit posts its webhooks there;
#                    deploy/webhook_sink.py answers them on 8080 and 8089
#                    where nobody else does); CALLGATE_BENCH_SKIP_CONSENT=1 skips the
#                    consent latency bench; CALLGATE_BENCH_ONLY=api,events
#                    runs only those steps (api, events, reconcile, consent).
#                    oha (the load generator) is installed with
#                    `cargo install` into bin/ when missing.
#
# Ports (all 127.0.0.1): 5432 PostgreSQL, 5434 PostgreSQL cluster "chaos" (only
# the outage test uses it: it stops and restarts it), 6379 Redis, 3478 udp+tcp Coturn
# (relays 49160-49260/udp), 7880 LiveKit HTTP/WebSocket, 7881/tcp + 7882/udp
# LiveKit WebRTC, 8080 callgate (`run`; 9090 its operations listener), 8089
# the test suite's webhook receiver, 18080 (or the next free port) callgate
# under `bench`. The sign-in tests (tests/api/oidc.rs) each start their own
# OpenID Connect provider (deploy/oidc/provider.mjs: panva/oidc-provider,
# installed by `up` into $CALLGATE_CACHE/oidc-provider) on a free port of
# 127.0.0.1 the kernel picks, and stop it themselves.
set -euo pipefail

SELF="$(readlink -f "${BASH_SOURCE[0]}")"
ROOT="$(cd "$(dirname "$SELF")/.." && pwd)"
cd "$ROOT"

CACHE="${CALLGATE_CACHE:-$HOME/.cache/callgate}"
RUN="$CACHE/run"
BIN="$CACHE/bin"
VENV="$CACHE/venv"

LIVEKIT_VERSION=1.13.5
LIVEKIT_BIN="$BIN/server"
LIVEKIT_PKG="github.com/livekit/livekit-server/cmd/server@v$LIVEKIT_VERSION"
# tests/api/cluster.rs: `helm lint`, `helm template` and kubeconform on
# deploy/helm/callgate, against the Kubernetes schemas of kubernetes-validate
# (PY_PACKAGES); both tools built with `go install`, like LiveKit.
HELM_VERSION=3.22.0
HELM_PKG="helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
KUBECONFORM_VERSION=0.8.0
KUBECONFORM_PKG="github.com/yannh/kubeconform/cmd/kubeconform@v$KUBECONFORM_VERSION"
# livekit-server v1.13.5's go.mod says `go 1.26`.
GO_MIN_MINOR=26
GO_BOOTSTRAP_VERSION=go1.26.0
# livekit, livekit-api: the end-to-end tests' WebRTC clients; jsonschema,
# PyYAML: tests/api/containers.rs validates docker-compose.yml with them;
# schemathesis: tests/api/openapi.rs fuzzes the API against /openapi.json;
# playwright: tests/e2e/browser.py drives Debian's chromium (no browser download);
# kubernetes-validate: the Kubernetes JSON schemas tests/api/cluster.rs validates with.
PY_PACKAGES=(livekit livekit-api jsonschema PyYAML schemathesis playwright kubernetes-validate)
NPM_CACHE="$CACHE/npm"
# The sign-in tests' OpenID Connect provider: deploy/oidc/package-lock.json's
# packages, installed outside the clone, again only when the lock changes.
OIDC_DIR="$CACHE/oidc-provider"
CHROMIUM=/usr/bin/chromium

PG_PORT=5432
# A second cluster of its own for tests/api/outages.rs, which stops it with
# `-m immediate` and starts it again (the shared one on PG_PORT must never be).
CHAOS_PG_PORT=5434
CHAOS_PG_CLUSTER=chaos
REDIS_PORT=6379
# A three-node Redis Cluster for tests/api/redis_cluster.rs (sharded pub/sub).
REDIS_CLUSTER_PORTS=(7001 7002 7003)
TURN_PORT=3478
LK_PORT=7880
WAIT_SECS="${CALLGATE_WAIT_SECS:-60}"

export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------- helpers ---

log() { printf '[local.sh] %s\n' "$*" >&2; }
die() { printf '[local.sh] error: %s\n' "$*" >&2; exit 1; }
is_ci() { [[ "${CI:-}" == "true" ]]; }

SECTION_NAME=""
SECTION_T0=0
section() { # section <name>: header (CI) and start the clock
    SECTION_NAME="$1"
    SECTION_T0=$SECONDS
    if is_ci; then
        printf '\n==== %s ====\n' "$SECTION_NAME" >&2
    fi
}
section_done() {
    if is_ci; then
        printf '==== %s: ok (%ss) ====\n' "$SECTION_NAME" "$((SECONDS - SECTION_T0))" >&2
    fi
}
section_fail() {
    printf '==== %s: FAILED after %ss ====\n' "$SECTION_NAME" "$((SECONDS - SECTION_T0))" >&2
}

SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: cannot install packages or manage PostgreSQL"
    SUDO="sudo"
fi

# Run as the postgres OS user (local peer auth on the Debian cluster's socket).
as_postgres() {
    if [[ "$(id -u)" -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        sudo -u postgres -- "$@"
    fi
}

tcp_open() { # tcp_open <port>: something accepts TCP connections on 127.0.0.1:<port>
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

http_ok() { # http_ok <port> [path]: GET answers 200
    local port="$1" path="${2:-/}"
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
        IFS= read -r -t 5 status <&3 || exit 1
        [[ "$status" == HTTP/1.?" 200"* ]]
    ) 2>/dev/null
}

pid_alive() { # pid_alive <pidfile> <comm>: the pid in the file runs a process named <comm>
    local file="$1" comm="$2" pid
    [[ -s "$file" ]] || return 1
    pid="$(tr -dc '0-9' <"$file")"
    [[ -n "$pid" && -r "/proc/$pid/comm" ]] || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm"* ]]
}

# spawn <pidfile> <logfile> <command...>: start a server in its own session
# (so Ctrl-C on `run` does not reach it), detached from our stdio, and record
# its pid (written by the shell that then execs the server, so it is right even
# if setsid has to fork).
spawn() {
    local pidfile="$1" logfile="$2" i
    shift 2
    rm -f "$pidfile"
    # shellcheck disable=SC2016 # expanded by the inner shell
    setsid bash -c 'echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
        </dev/null >>"$logfile" 2>&1 &
    for ((i = 0; i < 100; i++)); do
        [[ -s "$pidfile" ]] && return 0
        sleep 0.05
    done
    die "could not start $1"
}

spawned_alive() { # spawned_alive <pidfile>: that process still runs
    local pid
    pid="$(tr -dc '0-9' <"$1" 2>/dev/null)" && [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# wait_for <seconds> <what> <logfile> <command...>: poll until the command succeeds;
# on timeout print the tail of the log and fail.
wait_for() {
    local secs="$1" what="$2" logfile="$3"
    shift 3
    local deadline=$((SECONDS + secs))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            log "$what did not come up within ${secs}s"
            if [[ -n "$logfile" && -r "$logfile" ]]; then
                log "---- last 40 lines of $logfile ----"
                tail -n 40 "$logfile" >&2 || true
            fi
            exit 1
        fi
        sleep 0.3
    done
}

stop_pidfile() { # stop_pidfile <name> <pidfile> <comm>
    local name="$1" file="$2" comm="$3" pid i
    if ! pid_alive "$file" "$comm"; then
        rm -f "$file"
        return 0
    fi
    pid="$(tr -dc '0-9' <"$file")"
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        # LiveKit drains rooms on the first signal and stops at once on the second.
        ((i == 30)) && kill -TERM "$pid" 2>/dev/null
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not stop in 10s; killing"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

rotate_log() { # keep the previous run's log as <log>.1
    [[ -s "$1" ]] && mv -f "$1" "$1.1"
    : >"$1"
}

file_hash() { cat "$@" | sha256sum | cut -c1-16; }

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

# ------------------------------------------------------------- Python venv ---

venv_ok() { # cheap check: distributions installed and modules present
    [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c '
import importlib.metadata as md, importlib.util as iu
for d in ("livekit", "livekit-api", "jsonschema", "PyYAML", "schemathesis", "playwright", "kubernetes-validate"): md.version(d)
assert iu.find_spec("livekit.rtc") and iu.find_spec("livekit.api")
assert iu.find_spec("jsonschema") and iu.find_spec("yaml") and iu.find_spec("schemathesis")
assert iu.find_spec("playwright.sync_api") and iu.find_spec("kubernetes_validate")' 2>/dev/null
}

ensure_venv() {
    venv_ok && return 0
    section "Python venv with ${PY_PACKAGES[*]}"
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        log "creating virtualenv $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
    fi
    log "installing ${PY_PACKAGES[*]} into $VENV"
    quietly pip-install "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade "${PY_PACKAGES[@]}" ||
        die "pip install ${PY_PACKAGES[*]} failed"
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
        quietly "npm-ci-${dir//\//-}" bash -c 'cd "$1" && npm ci --cache "$2" --no-audit --no-fund --loglevel=error' _ "$ROOT/$dir" "$NPM_CACHE" ||
            die "npm ci in $dir failed"
        echo "$want" >"$stamp"
        section_done
    done
    stamp="$ROOT/web/dist/.callgate-build"
    want="$(file_hash "$ROOT/web/src/app.ts" "$ROOT"/clients/ts/src/*.ts "$ROOT/web/package.json" "$ROOT/web/package-lock.json")"
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
    quietly npm-ci-oidc bash -c 'cd "$1" && npm ci --cache "$2" --no-audit --no-fund --loglevel=error' _ "$OIDC_DIR" "$NPM_CACHE" ||
        die "npm ci in $OIDC_DIR failed"
    file_hash "$ROOT/deploy/oidc/package-lock.json" >"$OIDC_DIR/.callgate-lock"
    section_done
}

# -------------------------------------------------------------- PostgreSQL ---

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

# Prints "<version> <cluster>" of the Debian cluster configured for $PG_PORT.
pg_cluster() {
    pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2; exit }'
}

# The test suite runs many apps at once, each with its own pool.
PG_MAX_CONNECTIONS=300

# Returns 0 when the cluster's setting was changed (a restart applies it).
configure_pg_cluster() {
    local ver="$1" name="$2" cur
    cur="$(pg_conftool "$ver" "$name" show max_connections 2>/dev/null | awk -F' = ' '{ print $2 }')"
    [[ "$cur" == "$PG_MAX_CONNECTIONS" ]] && return 1
    log "PostgreSQL $ver/$name: max_connections $PG_MAX_CONNECTIONS"
    $SUDO pg_conftool "$ver" "$name" set max_connections "$PG_MAX_CONNECTIONS"
}

ensure_postgres() {
    local running ver name
    running="$(pg_cluster)"
    if [[ -n "$running" ]] && pg_ready && configure_pg_cluster $running; then
        read -r ver name <<<"$running"
        log "restarting PostgreSQL cluster $ver/$name to apply its settings"
        $SUDO pg_ctlcluster "$ver" "$name" restart
        wait_for "$WAIT_SECS" "PostgreSQL $ver/$name" /dev/null pg_ready
    fi
    if pg_ready; then
        [[ -s "$RUN/postgres.cluster" ]] || log "PostgreSQL: reusing the server already on 127.0.0.1:$PG_PORT"
    else
        section "start PostgreSQL"
        local cl ver name logf
        cl="$(pg_cluster)"
        if [[ -z "$cl" ]]; then
            ver="$(basename "$(dirname "$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n1)")")")"
            [[ -n "$ver" ]] || die "no PostgreSQL server installed"
            name=main
            if pg_lsclusters -h 2>/dev/null | awk -v v="$ver" '$1 == v && $2 == "main" { f = 1 } END { exit !f }'; then
                name=callgate
            fi
            log "creating PostgreSQL $ver cluster '$name' on port $PG_PORT"
            $SUDO pg_createcluster --port "$PG_PORT" "$ver" "$name" >&2
            cl="$ver $name"
        fi
        read -r ver name <<<"$cl"
        configure_pg_cluster "$ver" "$name" || true
        logf="$(pg_lsclusters -h | awk -v v="$ver" -v n="$name" '$1 == v && $2 == n { print $7 }')"
        log "starting PostgreSQL cluster $ver/$name (pg_ctlcluster)"
        if ! $SUDO pg_ctlcluster "$ver" "$name" start; then
            [[ -r "$logf" ]] && tail -n 40 "$logf" >&2
            die "pg_ctlcluster $ver $name start failed"
        fi
        printf '%s %s\n' "$ver" "$name" >"$RUN/postgres.cluster"
        wait_for "$WAIT_SECS" "PostgreSQL $ver/$name" "$logf" pg_ready
        section_done
    fi
    ensure_pg_roles
}

ensure_pg_roles() {
    local ok
    ok="$(PGPASSWORD=callgate PGCONNECT_TIMEOUT=5 psql -X -qAt -h 127.0.0.1 -p "$PG_PORT" -U callgate -d callgate -c \
        "SELECT (SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user)::text || ':' ||
                (SELECT count(*) FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
                  WHERE d.datname IN ('callgate', 'callgate_test') AND r.rolname = 'callgate')" 2>/dev/null)" || true
    [[ "$ok" == "true:2" ]] && return 0
    log "PostgreSQL: creating role callgate (CREATEDB) and databases callgate, callgate_test"
    id postgres >/dev/null 2>&1 ||
        die "PostgreSQL on $PG_PORT is not a local Debian cluster; create role callgate/callgate (CREATEDB) and databases callgate, callgate_test yourself"
    create_pg_role_and_databases "$PG_PORT" callgate callgate_test
}

# create_pg_role_and_databases PORT DB...: the role callgate (password
# callgate, CREATEDB) and the databases it owns, on the cluster at PORT.
create_pg_role_and_databases() {
    local port="$1" db sql
    shift
    sql="DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'callgate') THEN
    CREATE ROLE callgate LOGIN CREATEDB PASSWORD 'callgate';
  ELSE
    ALTER ROLE callgate LOGIN CREATEDB PASSWORD 'callgate';
  END IF;
END
\$\$;"
    for db in "$@"; do
        sql+="
SELECT 'CREATE DATABASE $db OWNER callgate'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db') \\gexec
ALTER DATABASE $db OWNER TO callgate;"
    done
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres <<<"$sql"
}

drop_test_databases() {
    local dbs port
    for port in "$PG_PORT" "$CHAOS_PG_PORT"; do
        dbs="$(PGPASSWORD=callgate psql -X -qAt -h 127.0.0.1 -p "$port" -U callgate -d callgate -c \
            "SELECT datname FROM pg_database WHERE datname LIKE 'callgate\_t\_%'")"
        [[ -z "$dbs" ]] && continue
        log "dropping $(wc -w <<<"$dbs") leftover test database(s) callgate_t_* on port $port"
        PGPASSWORD=callgate psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U callgate -d callgate >/dev/null <<'SQL'
SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', datname)
  FROM pg_database WHERE datname LIKE 'callgate\_t\_%' \gexec
SQL
    done
}

chaos_pg_ready() { pg_isready -q -h 127.0.0.1 -p "$CHAOS_PG_PORT" -t 2 >/dev/null 2>&1; }

# Prints the version of the Debian cluster named $CHAOS_PG_CLUSTER, if any.
chaos_pg_version() {
    pg_lsclusters -h 2>/dev/null | awk -v n="$CHAOS_PG_CLUSTER" '$2 == n { print $1; exit }'
}

# The outage test's own cluster (same PostgreSQL version as the shared one),
# with the same role and a database `callgate`. Idempotent.
ensure_chaos_postgres() {
    local ver logf
    ver="$(chaos_pg_version)"
    if [[ -z "$ver" ]]; then
        ver="$(pg_cluster | awk '{ print $1 }')"
        [[ -n "$ver" ]] || ver="$(basename "$(dirname "$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n1)")")")"
        log "creating PostgreSQL $ver cluster '$CHAOS_PG_CLUSTER' on port $CHAOS_PG_PORT (the outage test's)"
        $SUDO pg_createcluster --port "$CHAOS_PG_PORT" "$ver" "$CHAOS_PG_CLUSTER" >&2
    fi
    printf '%s %s\n' "$ver" "$CHAOS_PG_CLUSTER" >"$RUN/chaos.cluster"
    if ! chaos_pg_ready; then
        section "start PostgreSQL cluster $ver/$CHAOS_PG_CLUSTER"
        logf="$(pg_lsclusters -h | awk -v v="$ver" -v n="$CHAOS_PG_CLUSTER" '$1 == v && $2 == n { print $7 }')"
        # An outage test killed mid-run may have left it stopped.
        if ! $SUDO pg_ctlcluster "$ver" "$CHAOS_PG_CLUSTER" start; then
            [[ -r "$logf" ]] && tail -n 40 "$logf" >&2
            die "pg_ctlcluster $ver $CHAOS_PG_CLUSTER start failed"
        fi
        wait_for "$WAIT_SECS" "PostgreSQL $ver/$CHAOS_PG_CLUSTER" "$logf" chaos_pg_ready
        section_done
    fi
    PGPASSWORD=callgate PGCONNECT_TIMEOUT=5 psql -X -qAt -h 127.0.0.1 -p "$CHAOS_PG_PORT" -U callgate -d callgate \
        -c 'SELECT 1' >/dev/null 2>&1 && return 0
    log "PostgreSQL $ver/$CHAOS_PG_CLUSTER: creating role callgate (CREATEDB) and database callgate"
    create_pg_role_and_databases "$CHAOS_PG_PORT" callgate
}

# ------------------------------------------------------------------- Redis ---

redis_ready() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]; }

ensure_redis() {
    if redis_ready; then
        pid_alive "$RUN/redis.pid" redis-server || log "Redis: reusing the server already on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    section "start Redis"
    mkdir -p "$RUN/redis"
    # No persistence: Redis only holds ephemeral state (pub/sub, presence,
    # rate limits, cooldowns); PostgreSQL is the source of truth.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
        --pidfile "$RUN/redis.pid" --logfile "$RUN/redis.log" --dir "$RUN/redis" \
        --save '' --appendonly no </dev/null >/dev/null 2>&1 || true
    wait_for "$WAIT_SECS" "Redis" "$RUN/redis.log" redis_ready
    section_done
}

# ----------------------------------------------------------- Redis Cluster ---

redis_cluster_ready() {
    [[ "$(redis-cli -h 127.0.0.1 -p "${REDIS_CLUSTER_PORTS[0]}" cluster info 2>/dev/null | tr -d '\r' | grep -c '^cluster_state:ok$')" == 1 ]] &&
        [[ "$(redis-cli -h 127.0.0.1 -p "${REDIS_CLUSTER_PORTS[0]}" cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" == "${#REDIS_CLUSTER_PORTS[@]}" ]]
}

redis_cluster_urls() { # the seed nodes, as REDIS_URL takes them with REDIS_CLUSTER=true
    local port urls=()
    for port in "${REDIS_CLUSTER_PORTS[@]}"; do urls+=("redis://127.0.0.1:$port"); done
    (IFS=,; echo "${urls[*]}")
}

ensure_redis_cluster() {
    if redis_cluster_ready; then return 0; fi
    section "start a Redis Cluster (${REDIS_CLUSTER_PORTS[*]})"
    local port nodes=()
    for port in "${REDIS_CLUSTER_PORTS[@]}"; do
        # A fresh cluster each time: its state is a test fixture, not data.
        stop_pidfile "Redis Cluster node $port" "$RUN/redis-$port.pid" redis-server
        rm -rf "$RUN/redis-$port" && mkdir -p "$RUN/redis-$port"
        redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --cluster-enabled yes \
            --cluster-config-file "$RUN/redis-$port/nodes.conf" --cluster-node-timeout 5000 \
            --pidfile "$RUN/redis-$port.pid" --logfile "$RUN/redis-$port.log" --dir "$RUN/redis-$port" \
            --save '' --appendonly no </dev/null >/dev/null 2>&1 || true
        wait_for "$WAIT_SECS" "Redis Cluster node $port" "$RUN/redis-$port.log" \
            bash -c "[[ \"\$(redis-cli -h 127.0.0.1 -p $port ping 2>/dev/null)\" == PONG ]]"
        nodes+=("127.0.0.1:$port")
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$RUN/redis-cluster-create.log" 2>&1 ||
        die "could not create the Redis Cluster (see $RUN/redis-cluster-create.log)"
    wait_for "$WAIT_SECS" "the Redis Cluster" "$RUN/redis-cluster-create.log" redis_cluster_ready
    section_done
}

# ------------------------------------------------------------------ Coturn ---

turn_ready() { tcp_open "$TURN_PORT"; }

ensure_coturn() {
    local conf="$ROOT/coturn/turnserver.conf" hash
    hash="$(file_hash "$conf")"
    if pid_alive "$RUN/coturn.pid" turnserver; then
        if [[ "$(cat "$RUN/coturn.hash" 2>/dev/null)" == "$hash" ]]; then
            return 0
        fi
        log "coturn/turnserver.conf changed: restarting Coturn"
        stop_pidfile Coturn "$RUN/coturn.pid" turnserver
    elif turn_ready; then
        log "Coturn: reusing the server already on 127.0.0.1:$TURN_PORT (not started by local.sh; it must use coturn/turnserver.conf's secret)"
        return 0
    fi
    section "start Coturn"
    mkdir -p "$RUN/coturn"
    rotate_log "$RUN/turnserver.log"
    : >"$RUN/turnserver.out"
    spawn "$RUN/coturn.pid" "$RUN/turnserver.out" \
        turnserver -c "$conf" --log-file "$RUN/turnserver.log" --no-stdout-log \
        --pidfile "$RUN/coturn/turnserver.pid" --userdb "$RUN/coturn/turndb"
    echo "$hash" >"$RUN/coturn.hash"
    wait_for "$WAIT_SECS" "Coturn" "$RUN/turnserver.log" coturn_started
    section_done
}

coturn_started() {
    spawned_alive "$RUN/coturn.pid" || {
        log "Coturn exited during start-up"
        cat "$RUN/turnserver.out" >&2 || true
        tail -n 40 "$RUN/turnserver.log" >&2 || true
        exit 1
    }
    turn_ready
}

# ----------------------------------------------------------------- LiveKit ---

livekit_ready() { http_ok "$LK_PORT" /; }

ensure_livekit() {
    local conf="$ROOT/livekit.yaml" hash
    hash="$({ cat "$conf"; stat -c '%s %Y' "$LIVEKIT_BIN"; } | sha256sum | cut -c1-16)"
    if pid_alive "$RUN/livekit.pid" server; then
        if [[ "$(cat "$RUN/livekit.hash" 2>/dev/null)" == "$hash" ]]; then
            return 0
        fi
        log "livekit.yaml or the LiveKit binary changed: restarting LiveKit"
        stop_pidfile LiveKit "$RUN/livekit.pid" server
    elif livekit_ready; then
        log "LiveKit: reusing the server already on 127.0.0.1:$LK_PORT (not started by local.sh)"
        return 0
    fi
    section "start LiveKit"
    rotate_log "$RUN/livekit.log"
    spawn "$RUN/livekit.pid" "$RUN/livekit.log" "$LIVEKIT_BIN" --config "$conf"
    echo "$hash" >"$RUN/livekit.hash"
    wait_for "$WAIT_SECS" "LiveKit" "$RUN/livekit.log" livekit_started
    section_done
}

livekit_started() {
    spawned_alive "$RUN/livekit.pid" || {
        log "LiveKit exited during start-up"
        tail -n 40 "$RUN/livekit.log" >&2 || true
        exit 1
    }
    livekit_ready
}

# -------------------------------------------------------------- subcommands ---

cmd_up() {
    mkdir -p "$CACHE" "$RUN"
    if [[ -z "${CALLGATE_UP_LOCKED:-}" ]] && command -v flock >/dev/null; then
        # Serialise concurrent `up`s; -o: the servers we start do not inherit the lock.
        section "stack up"
        CALLGATE_UP_LOCKED=1 flock -o "$CACHE/.lock" "$SELF" up
        section_done
        return
    fi
    local t0=$SECONDS
    ensure_packages
    ensure_livekit_binary
    ensure_cluster_tools
    ensure_venv
    ensure_web
    ensure_oidc_provider
    ensure_postgres
    ensure_chaos_postgres
    ensure_redis
    ensure_redis_cluster
    ensure_coturn
    ensure_livekit
    log "stack up ($((SECONDS - t0))s): postgres :$PG_PORT (and :$CHAOS_PG_PORT for the outage test), redis :$REDIS_PORT (and a cluster on ${REDIS_CLUSTER_PORTS[*]}), coturn :$TURN_PORT, livekit :$LK_PORT (state in $RUN)"
}

cmd_down() {
    stop_pidfile LiveKit "$RUN/livekit.pid" server
    stop_pidfile Coturn "$RUN/coturn.pid" turnserver
    stop_pidfile Redis "$RUN/redis.pid" redis-server
    local port
    for port in "${REDIS_CLUSTER_PORTS[@]}"; do
        stop_pidfile "Redis Cluster node $port" "$RUN/redis-$port.pid" redis-server
    done
    local marker ver name
    for marker in "$RUN/postgres.cluster" "$RUN/chaos.cluster"; do
        [[ -s "$marker" ]] || continue
        read -r ver name <"$marker"
        log "stopping PostgreSQL cluster $ver/$name"
        $SUDO pg_ctlcluster "$ver" "$name" stop || true
        rm -f "$marker"
    done
    rm -f "$RUN/livekit.hash" "$RUN/coturn.hash"
    log "down (servers not started by local.sh were left running)"
}

ext() { if [[ "$1" == up ]]; then echo "not local.sh (reused)"; else echo "-"; fi; }

status_line() { # status_line <name> <addr> <up?> <owner>
    printf '%-11s %-24s %-5s %s\n' "$1" "$2" "$3" "$4"
}

cmd_status() {
    local state owner
    printf '%-11s %-24s %-5s %s\n' SERVICE ADDRESS STATE MANAGED-BY
    pg_ready && state=up || state=down
    if [[ -s "$RUN/postgres.cluster" ]]; then owner="local.sh (cluster $(cat "$RUN/postgres.cluster"))"; else owner="$(ext "$state")"; fi
    status_line postgresql "127.0.0.1:$PG_PORT" "$state" "$owner"
    chaos_pg_ready && state=up || state=down
    if [[ -s "$RUN/chaos.cluster" ]]; then owner="local.sh (cluster $(cat "$RUN/chaos.cluster"), outage test)"; else owner="-"; fi
    status_line pg-chaos "127.0.0.1:$CHAOS_PG_PORT" "$state" "$owner"
    redis_ready && state=up || state=down
    if pid_alive "$RUN/redis.pid" redis-server; then owner="local.sh (pid $(cat "$RUN/redis.pid"))"; else owner="$(ext "$state")"; fi
    status_line redis "127.0.0.1:$REDIS_PORT" "$state" "$owner"
    redis_cluster_ready && state=up || state=down
    status_line redis-clstr "127.0.0.1:${REDIS_CLUSTER_PORTS[0]}+" "$state" "local.sh (${#REDIS_CLUSTER_PORTS[@]} nodes, cluster test)"
    turn_ready && state=up || state=down
    if pid_alive "$RUN/coturn.pid" turnserver; then owner="local.sh (pid $(cat "$RUN/coturn.pid"))"; else owner="$(ext "$state")"; fi
    status_line coturn "127.0.0.1:$TURN_PORT" "$state" "$owner"
    livekit_ready && state=up || state=down
    if pid_alive "$RUN/livekit.pid" server; then owner="local.sh (pid $(cat "$RUN/livekit.pid"))"; else owner="$(ext "$state")"; fi
    status_line livekit "127.0.0.1:$LK_PORT" "$state" "$owner"
    tcp_open 8080 && state=up || state=down
    status_line callgate "127.0.0.1:8080" "$state" "deploy/local.sh run"
    echo
    if livekit_version_ok; then echo "livekit binary: $LIVEKIT_BIN (v$LIVEKIT_VERSION)"; else echo "livekit binary: missing ($LIVEKIT_BIN)"; fi
    if venv_ok; then echo "python venv:    $VENV (${PY_PACKAGES[*]})"; else echo "python venv:    missing ($VENV)"; fi
    if go_tool_ok helm "$HELM_VERSION" && go_tool_ok kubeconform "$KUBECONFORM_VERSION"; then
        echo "cluster tools:  $BIN/helm (v$HELM_VERSION), $BIN/kubeconform (v$KUBECONFORM_VERSION)"
    else
        echo "cluster tools:  missing ($BIN/helm, $BIN/kubeconform)"
    fi
    if oidc_provider_ok; then echo "oidc provider:  $OIDC_DIR (deploy/oidc, started by the sign-in tests)"; else echo "oidc provider:  missing ($OIDC_DIR)"; fi
    echo "logs:           $RUN/{livekit,turnserver,redis}.log"
    local down=0
    pg_ready && redis_ready && redis_cluster_ready && turn_ready && livekit_ready || down=1
    return "$down"
}

load_env() {
    [[ -r "$ROOT/.env.example" ]] || die "$ROOT/.env.example missing"
    set -a
    # shellcheck source=/dev/null
    . "$ROOT/.env.example"
    set +a
}

ensure_cargo_on_path() {
    command -v cargo >/dev/null && return 0
    [[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"
}

cmd_run() {
    cmd_up
    load_env
    ensure_cargo_on_path
    # The operations listener (/metrics, detailed /ready), 9090 unless set.
    export ADMIN_PORT="${ADMIN_PORT:-9090}"
    log "cargo run --release -- serve (PORT=${PORT:-}, ADMIN_PORT=$ADMIN_PORT)"
    log "the web app: open http://127.0.0.1:${PORT:-8080}/app in two browser windows, one user each"
    exec cargo run --release -- serve
}

quietly() { # quietly <name> <command...>: output to $CACHE/logs/<name>.log, shown only on failure
    local name="$1" rc=0
    shift
    mkdir -p "$CACHE/logs"
    local logf="$CACHE/logs/$name.log"
    "$@" >"$logf" 2>&1 || rc=$?
    if ((rc != 0)); then
        printf '[local.sh] %s failed (exit %s); the last 40 lines of %s:\n' "$name" "$rc" "$logf" >&2
        tail -n 40 "$logf" >&2
    fi
    return "$rc"
}

run_step() { # run_step <name> <command...>
    section "$1"
    is_ci || log "$1"
    shift
    if ! "$@"; then
        section_fail
        return 1
    fi
    section_done
}

run_tee() { # run_tee <file> <command...>: the command's output to the terminal and the file
    local file="$1"
    shift
    set -o pipefail
    "$@" 2>&1 | tee "$file"
}

failure_summary() { # failure_summary <test output>: the failing tests and their panics, last
    local file="$1"
    [[ -r "$file" ]] || return 0
    printf '\n==== what failed ====\n' >&2
    awk '
        /^failures:$/ { name = ""; shown = 0; next }
        /^---- .* stdout ----$/ { name = $2; shown = 0; next }
        name != "" && /panicked at/ {
            where = $0; sub(/.*panicked at /, "", where); sub(/:$/, "", where)
            print "FAILED " name " (" where ")"; shown = 1; lines = 0; next
        }
        shown && (/[Ss]tack backtrace/ || /^ *[0-9]+: /) { shown = 0; next }
        shown && lines < 6 && !/^note: run with/ && NF { print "    " $0; lines++ }
    ' "$file" >&2 || true
    grep -E '^test result: FAILED|^error(\[|:)' "$file" >&2 || true
}

dump_server_logs() {
    local f
    for f in "$RUN/livekit.log" "$RUN/turnserver.log"; do
        [[ -r "$f" ]] || continue
        printf '\n---- last 60 lines of %s ----\n' "$f" >&2
        tail -n 60 "$f" >&2 || true
    done
}

cmd_test() {
    # Split our args: before `--` go to cargo test, after it to the test binaries.
    local cargo_args=() bin_args=() seen_sep="" a
    for a in "$@"; do
        if [[ -z "$seen_sep" && "$a" == "--" ]]; then seen_sep=1; continue; fi
        if [[ -n "$seen_sep" ]]; then bin_args+=("$a"); else cargo_args+=("$a"); fi
    done
    local targets=(--all-targets)
    for a in "${cargo_args[@]}"; do
        case "$a" in
        --lib | --bins | --bin | --bin=* | --tests | --test | --test=* | --examples | --example | --example=* | \
            --benches | --bench | --bench=* | --doc | --all-targets) targets=() ;;
        esac
    done
    local threads=(--test-threads=8)
    for a in "${bin_args[@]}"; do
        case "$a" in --test-threads | --test-threads=*) threads=() ;; esac
    done

    local t0=$SECONDS
    cmd_up

    load_env
    local test_db="${CALLGATE_TEST_DB:-callgate_test}"
    [[ "$test_db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "CALLGATE_TEST_DB must be a plain lowercase database name"
    PGPASSWORD=callgate psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U callgate -d callgate >/dev/null <<SQL
SELECT 'CREATE DATABASE $test_db' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$test_db') \gexec
SQL
    export DATABASE_URL="postgres://callgate:callgate@127.0.0.1:$PG_PORT/$test_db"
    export CALLGATE_PYTHON="$VENV/bin/python"
    export CALLGATE_CHROMIUM="$CHROMIUM"
    # tests/api/oidc.rs: node, and the provider's packages for deploy/oidc/provider.mjs.
    export CALLGATE_OIDC_MODULES="$OIDC_DIR/node_modules"
    # tests/api/cluster.rs: the chart's tools, and LiveKit to parse the config it renders.
    export CALLGATE_HELM="$BIN/helm" CALLGATE_KUBECONFORM="$BIN/kubeconform" CALLGATE_LIVEKIT_SERVER="$LIVEKIT_BIN"
    export TEST_WEBHOOK_PORT=8089
    # The outage test's own cluster, and how it stops and starts it.
    export CHAOS_DATABASE_URL="postgres://callgate:callgate@127.0.0.1:$CHAOS_PG_PORT/callgate"
    export CHAOS_PG_CTL="${SUDO:+$SUDO }pg_ctlcluster $(cat "$RUN/chaos.cluster")"
    # tests/api/redis_cluster.rs: the Redis Cluster's seed nodes.
    CLUSTER_REDIS_URL="$(redis_cluster_urls)"
    export CLUSTER_REDIS_URL
    ensure_cargo_on_path

    run_step "drop leftover test databases" drop_test_databases
    if [[ "${CALLGATE_SKIP_LINT:-}" != "1" ]]; then
        run_step "layers: no circle, arrows point down (.ci/layers.py)" python3 .ci/layers.py
        run_step "cargo fmt --all -- --check" cargo fmt --all -- --check
        run_step "cargo clippy --all-targets -- -D warnings" cargo clippy -q --all-targets -- -D warnings
    fi
    # A failing test shows its panic and its captured logs; backtraces only
    # on request (TEST_BACKTRACE=1), they bury the message.
    export RUST_BACKTRACE="${TEST_BACKTRACE:-0}"
    local test_cmd=(cargo test "${targets[@]}" "${cargo_args[@]}" -- "${threads[@]}" "${bin_args[@]}")
    # Compiling prints a line per crate: kept in a log, shown if it fails.
    run_step "cargo build of the tests" quietly cargo-build-tests \
        cargo test --no-run "${targets[@]}" "${cargo_args[@]}"
    local output="$RUN/test-output.log"
    if ! run_step "${test_cmd[*]}" run_tee "$output" "${test_cmd[@]}"; then
        is_ci && dump_server_logs
        failure_summary "$output"
        return 1
    fi
    log "all checks passed ($((SECONDS - t0))s)"
}

# ------------------------------------------------------------------- bench ---

BENCH_DB=callgate_bench
BENCH_SERVICE_PID=""

ensure_oha() {
    [[ -x "$BIN/oha" ]] && return 0
    section "cargo install oha (HTTP load generator, once)"
    log "installing oha into $BIN"
    cargo install oha --locked --root "$CACHE" || die "cargo install oha failed"
    section_done
}

free_port() { # free_port <port>: the first port from <port> on that nothing listens on
    local port="$1"
    while tcp_open "$port"; do port=$((port + 1)); done
    echo "$port"
}

recreate_bench_db() {
    # DROP ... WITH (FORCE) refuses while an autovacuum worker is in the
    # database (it runs as no role this user may signal), which the load of
    # the scenario before makes likely: it is tried again for a while.
    local try
    for try in 1 2 3 4 5 6 7 8 9 10; do
        if PGPASSWORD=callgate psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U callgate -d callgate \
            -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" 2>/dev/null; then
            PGPASSWORD=callgate psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U callgate -d callgate \
                -c "CREATE DATABASE $BENCH_DB" || return 1
            log "database $BENCH_DB: recreated"
            return 0
        fi
        sleep 1
    done
    # Still refused: the step runs on the database as it is, and the bench
    # counts a failure rather than stopping the steps after it.
    PGPASSWORD=callgate psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U callgate -d callgate \
        -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" || true
    log "database $BENCH_DB could not be recreated; the next step runs on it as it is"
    BENCH_FAILED=$((BENCH_FAILED + 1))
}

stop_bench_service() {
    [[ -n "$BENCH_SERVICE_PID" ]] || return 0
    kill -TERM "$BENCH_SERVICE_PID" 2>/dev/null || true
    wait "$BENCH_SERVICE_PID" 2>/dev/null || true
    BENCH_SERVICE_PID=""
}

BENCH_SINK_PID=""

start_webhook_sink() { # start_webhook_sink <port...>: answers LiveKit's webhooks on those of the ports nobody listens on
    local port ports=()
    for port in "$@"; do tcp_open "$port" || ports+=("$port"); done
    ((${#ports[@]} > 0)) || return 0
    python3 "$ROOT/deploy/webhook_sink.py" "${ports[@]}" &
    BENCH_SINK_PID=$!
    local i
    for ((i = 0; i < 50; i++)); do tcp_open "${ports[0]}" && break; sleep 0.1; done
    log "LiveKit's webhooks to ${ports[*]} answered by deploy/webhook_sink.py (nobody else listens there)"
}

stop_webhook_sink() {
    [[ -n "$BENCH_SINK_PID" ]] || return 0
    kill -TERM "$BENCH_SINK_PID" 2>/dev/null || true
    wait "$BENCH_SINK_PID" 2>/dev/null || true
    BENCH_SINK_PID=""
}

stop_bench_helpers() {
    stop_bench_service
    stop_webhook_sink
}

bench_wanted() { # bench_wanted <name>: CALLGATE_BENCH_ONLY (e.g. "api,events") unset or naming it
    [[ -z "${CALLGATE_BENCH_ONLY:-}" || ",$CALLGATE_BENCH_ONLY," == *",$1,"* ]]
}

bench_step() { # bench_step <name> <command...>: runs it, records its exit code, never stops the bench
    local name="$1" rc=0
    if ! bench_wanted "$name"; then
        log "bench step $name skipped (CALLGATE_BENCH_ONLY=$CALLGATE_BENCH_ONLY)"
        return 0
    fi
    shift
    "$@" || rc=$?
    printf '%s %s\n' "$name" "$rc" >>"$BENCH_OUT/steps.txt"
    ((rc == 0)) || log "bench step $name failed (exit $rc); the others go on"
    BENCH_FAILED=$((BENCH_FAILED + (rc != 0)))
    return 0
}

bench_api() {
    local target="$1" port db_url log="$RUN/bench-callgate.log"
    recreate_bench_db
    # On 8080 if free: LiveKit posts its webhooks there (and to 8089, which
    # the sink answers), so the service handles its rooms' events as it
    # would deployed. The webhook scenario's events the driver posts itself.
    port="$(free_port "${CALLGATE_BENCH_PORT:-8080}")"
    rotate_log "$log"
    # Its own rooms. Nobody joins the rooms, so
    # the reconciler would end the calls the driver made active: it runs at
    # start only. The per-user request limit stays in the path, out of reach.
    # The calls the webhook scenario makes wait for their joins longer than
    # CONNECT_TIMEOUT while a burst queues up: the deadlines are out of reach too.
    db_url="postgres://callgate:callgate@127.0.0.1:$PG_PORT/$BENCH_DB"
    DATABASE_URL="$db_url" PORT="$port" ROOM_PREFIX=cgbench- RECONCILE_INTERVAL=3600 \
        CONNECT_TIMEOUT=3600 RINGING_TIMEOUT=3600 \
        RATE_LIMIT_REQUESTS_PER_MINUTE=1000000000 LOG_FORMAT=json RUST_LOG=warn \
        "$target/release/callgate" serve >>"$log" 2>&1 &
    BENCH_SERVICE_PID=$!
    local rc=0
    if (wait_for "$WAIT_SECS" "callgate (bench, port $port)" "$log" http_ok "$port" /health); then
        section "API load"
        BENCH_URL="http://127.0.0.1:$port" BENCH_PID="$BENCH_SERVICE_PID" BENCH_OHA="$BIN/oha" BENCH_DATABASE_URL="$db_url" \
            BENCH_SECS="${CALLGATE_BENCH_SECS:-10}" BENCH_CONCURRENCY="${CALLGATE_BENCH_CONCURRENCY:-32}" \
            BENCH_JSON="$BENCH_OUT/api.json" "$target/release/examples/api_load" || rc=$?
        ((rc == 0)) && section_done || section_fail
    else
        rc=1
    fi
    stop_bench_service
    return "$rc"
}

cmd_bench() {
    cmd_up
    load_env
    ensure_cargo_on_path
    ensure_oha
    local target="${CARGO_TARGET_DIR:-$ROOT/target}" db_url
    BENCH_OUT="$ROOT/target/bench"
    BENCH_FAILED=0
    run_step "cargo build --release --bin callgate --examples api_load, reconcile_pass" \
        cargo build --release --bin callgate --example api_load --example reconcile_pass
    mkdir -p "$BENCH_OUT"
    # Figures of this run only.
    rm -f "$BENCH_OUT"/*.json "$BENCH_OUT/steps.txt" "$BENCH_OUT/table.md"
    db_url="postgres://callgate:callgate@127.0.0.1:$PG_PORT/$BENCH_DB"

    trap stop_bench_helpers EXIT
    start_webhook_sink 8089
    bench_step api bench_api "$target"
    stop_webhook_sink
    start_webhook_sink 8080 8089

    # Two instances of its own for event latency, one for 10,000 idle event
    # streams (each end of a stream is a file descriptor).
    recreate_bench_db
    DATABASE_URL="$db_url" BENCH_JSON="$BENCH_OUT/events.json" bench_step events run_step "cargo bench --bench events" \
        bash -c 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec cargo bench --bench events'

    # A reconciler pass over 1,000 and 10,000 live calls (in the database;
    # rooms in LiveKit as many as the box takes).
    recreate_bench_db
    DATABASE_URL="$db_url" BENCH_JSON="$BENCH_OUT/reconcile.json" ROOM_PREFIX=cgbench-rec- \
        bench_step reconcile run_step "reconciler pass (examples/reconcile_pass.rs)" \
        "$target/release/examples/reconcile_pass"

    # The consent bench runs the test suite's receiver on 8089.
    stop_webhook_sink
    start_webhook_sink 8080
    if [[ "${CALLGATE_BENCH_SKIP_CONSENT:-}" == "1" ]] || ! bench_wanted consent; then
        log "consent latency bench skipped (CALLGATE_BENCH_SKIP_CONSENT=1 or CALLGATE_BENCH_ONLY)"
    elif tcp_open 8089; then
        log "consent latency bench skipped: port 8089 (the test suite's webhook receiver) is in use"
    else
        # A fresh database again rather than callgate_test: the bench does not
        # depend on what test runs left there.
        recreate_bench_db
        DATABASE_URL="$db_url" CALLGATE_PYTHON="$VENV/bin/python" TEST_WEBHOOK_PORT=8089 \
            BENCH_JSON="$BENCH_OUT/consent_latency.json" \
            bench_step consent run_step "cargo bench --bench consent_latency" cargo bench --bench consent_latency
    fi

    stop_webhook_sink
    section "the table (deploy/bench_table.py; target/bench/table.md)"
    printf '\n' >&2
    python3 deploy/bench_table.py "$BENCH_OUT"
    section_done
    if ((BENCH_FAILED > 0)); then
        log "$BENCH_FAILED bench step(s) failed (see above and $BENCH_OUT/steps.txt)"
        return 1
    fi
}

usage() {
    sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

# Whatever file descriptors the caller handed down (a lock held with
# flock(1), a pipe) are not handed on to the servers started here, which
# would keep them open for as long as they run.
close_inherited_fds() {
    local fd
    for fd in /proc/$$/fd/*; do
        fd="${fd##*/}"
        if [[ "$fd" =~ ^[0-9]+$ ]] && ((fd > 2 && fd < 255)); then
            eval "exec $fd>&-" 2>/dev/null || true
        fi
    done
}

main() {
    close_inherited_fds
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    run) cmd_run ;;
    test) cmd_test "$@" ;;
    status) cmd_status ;;
    bench) cmd_bench ;;
    -h | --help | help) usage 0 ;;
    *) usage 2 ;;
    esac
}

main "$@"
