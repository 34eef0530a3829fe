#!/usr/bin/env bash
# deploy/local.sh - install and run callgate's whole stack on loopback.
#
#   deploy/local.sh up       install what is missing, start PostgreSQL, Redis,
#                            Coturn, LiveKit, PulseAudio, LiveKit Egress
#                            (under deploy/egress/supervise, which restarts it)
#                            and versitygw (S3-compatible storage)
#                            (idempotent: reuses whatever already answers)
#   deploy/local.sh down     stop the servers `up` started (servers it found
#                            already running are left alone)
#   deploy/local.sh run      up + `cargo run --release -- serve` (foreground;
#                            metrics on ADMIN_PORT, 9090 unless set)
#   deploy/local.sh test [cargo test args] [-- test binary args]
#                            up + layers, cargo fmt --check, clippy -D warnings,
#                            sqlx prepare --check, then every test: without
#                            arguments cargo-nextest's profiles default (unit and
#                            fast), stack and browser one after the other, and
#                            the benches' smoke runs; with arguments cargo test
#   deploy/local.sh nextest [fast|stack|browser] [nextest args]
#                            up + cargo nextest run with that profile of
#                            .config/nextest.toml (all tests by default;
#                            `fast` needs only PostgreSQL: seconds, not minutes)
#   deploy/local.sh status   what runs where
#   deploy/local.sh bench    up + callgate (release) on a spare port with a fresh
#                            database callgate_bench: requests/s and p50/p99 of
#                            GET /health, join tokens, the call lifecycle and
#                            signed LiveKit webhooks (oha, examples/api_load.rs;
#                            JSON in target/bench/), the service's peak memory,
#                            then the consent latency bench (benches/)
#
# Environment:
#   CALLGATE_CACHE   cache dir (default ~/.cache/callgate): bin/ (LiveKit, egress, versitygw,
#                    oha, helm and kubeconform for the cluster checks),
#                    egress-build/ (egress's module and page, built there once
#                    per EGRESS_VERSION), recordings/ (egress's files), s3/
#                    (versitygw's buckets, a folder each), venv/ (Python
#                    LiveKit SDK for the e2e tests, jsonschema and PyYAML for the
#                    container checks, kubernetes-validate's Kubernetes schemas
#                    for the cluster checks), run/ (pid files, logs, Redis/Coturn
#                    data). Nothing is written to the repo but what git
#                    ignores (node_modules/ and web/dist/: the web app's build).
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
#                    oha (the load generator, OHA_VERSION) is installed with
#                    `cargo install` into bin/ when missing or another version.
#
# Ports (all 127.0.0.1): 5432 PostgreSQL, 5434 PostgreSQL cluster "chaos" (only
# the outage test uses it: it stops and restarts it), 6379 Redis, 3478 udp+tcp Coturn
# (relays 49160-49260/udp), 7880 LiveKit HTTP/WebSocket, 7881/tcp + 7882/udp
# LiveKit WebRTC, 7980 egress's room-composite page (its own chromium reads
# it), 7985 egress's status, 7070 versitygw (S3), 8080 callgate (`run`; 9090 its operations listener), 8089
# the test suite's webhook receiver, 18080 (or the next free port) callgate
# under `bench`. The sign-in tests (tests/api/oidc.rs) each start their own
# OpenID Connect provider (deploy/oidc/provider.mjs: panva/oidc-provider,
# installed by `up` into $CALLGATE_CACHE/oidc-provider) on a free port of
# 127.0.0.1 the kernel picks, and stop it themselves.
#
# The pieces, in deploy/lib/ (sourced here, in this order):
#   common.sh     the cache's paths, logging, CI section headers, probes
#   provision.sh  what `up` installs, pinned and idempotent, into
#                 CALLGATE_CACHE (runs alone too: deploy/lib/provision.sh)
#   services.sh   the servers: up, down, status, run
#   tests.sh      test: lint steps, cargo test, the summary of what failed
#   bench.sh      bench
set -euo pipefail

SELF="$(readlink -f "${BASH_SOURCE[0]}")"
ROOT="$(cd "$(dirname "$SELF")/.." && pwd)"
cd "$ROOT"

# shellcheck source=deploy/lib/common.sh
. "$ROOT/deploy/lib/common.sh"
# shellcheck source=deploy/lib/provision.sh
. "$ROOT/deploy/lib/provision.sh"
# shellcheck source=deploy/lib/services.sh
. "$ROOT/deploy/lib/services.sh"
# shellcheck source=deploy/lib/tests.sh
. "$ROOT/deploy/lib/tests.sh"
# shellcheck source=deploy/lib/bench.sh
. "$ROOT/deploy/lib/bench.sh"

usage() {
    sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

# Whatever file descriptors the caller handed down (a lock held with
# flock(1), a pipe) are not handed on to the servers started here, which
# would keep them open for as long as they run.
close_inherited_fds() {
    local fd
    for fd in "/proc/$$/fd/"*; do
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
    nextest) cmd_nextest "$@" ;;
    status) cmd_status ;;
    bench) cmd_bench ;;
    -h | --help | help) usage 0 ;;
    *) usage 2 ;;
    esac
}

main "$@"
