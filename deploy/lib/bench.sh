# shellcheck shell=bash
# deploy/lib/bench.sh - `deploy/local.sh bench`: up, a release build, then
# each step (api, events, reconcile, consent; CALLGATE_BENCH_ONLY picks some)
# on a fresh database callgate_bench, with deploy/webhook_sink.py answering
# LiveKit's webhooks where nobody else does; a failed step is counted and the
# others go on. The figures land in target/bench/ (JSON, and table.md from
# deploy/bench_table.py). Sourced by deploy/local.sh after common.sh,
# provision.sh and services.sh.

BENCH_DB=callgate_bench
BENCH_SERVICE_PID=""

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
    for ((try = 0; try < 10; try++)); do
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

# Top-level statements per database for the work-per-lifecycle row: the
# server loads pg_stat_statements (services.sh), the bench database gets the
# extension (its creation needs a superuser).
bench_db_statements() {
    as_postgres psql -X -q -p "$PG_PORT" -d "$BENCH_DB" -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' \
        >/dev/null 2>&1 || log "pg_stat_statements not available: statements per lifecycle not measured"
}

# build_bench_base <ref>: that commit's release service, built in a worktree
# of the cache; prints the binary's path.
build_bench_base() {
    local ref="$1" sha dir target
    sha="$(git -C "$ROOT" rev-parse --verify "$ref^{commit}")" || die "CALLGATE_BENCH_BASE: no commit $ref"
    dir="$CACHE/bench-base/$sha"
    target="$CACHE/bench-base/target"
    if [[ ! -d "$dir" ]]; then
        git -C "$ROOT" worktree prune
        git -C "$ROOT" worktree add -q --detach "$dir" "$sha" >&2 || die "cannot check out $ref into $dir"
    fi
    (cd "$dir" && SQLX_OFFLINE=true CARGO_TARGET_DIR="$target" run_step "cargo build --release (base $ref, ${sha:0:9})" \
        cargo build --release --bin callgate) >&2 || return 1
    cp -f "$target/release/callgate" "$CACHE/bench-base/callgate-${sha:0:12}"
    echo "$CACHE/bench-base/callgate-${sha:0:12}"
}

bench_api() { # bench_api <service binary> <report.json> <label>
    local service="$1" report="$2" label="$3" port db_url log="$RUN/bench-callgate.log"
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    recreate_bench_db
    bench_db_statements
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
        "$service" serve >>"$log" 2>&1 &
    BENCH_SERVICE_PID=$!
    local rc=0
    if (wait_for "$WAIT_SECS" "callgate (bench, port $port)" "$log" http_ok "$port" /health); then
        section "API load ($label)"
        BENCH_URL="http://127.0.0.1:$port" BENCH_PID="$BENCH_SERVICE_PID" BENCH_OHA="$BIN/oha" BENCH_DATABASE_URL="$db_url" \
            BENCH_SECS="${CALLGATE_BENCH_SECS:-10}" BENCH_CONCURRENCY="${CALLGATE_BENCH_CONCURRENCY:-32}" \
            BENCH_JSON="$report" "$target/release/examples/api_load" || rc=$?
        if ((rc == 0)); then section_done; else section_fail; fi
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
    local target="${CARGO_TARGET_DIR:-$ROOT/target}" db_url base="" round
    BENCH_OUT="$ROOT/target/bench"
    BENCH_FAILED=0
    run_step "cargo build --release --bin callgate --examples api_load, reconcile_pass" \
        cargo build --release --bin callgate --example api_load --example reconcile_pass
    if [[ -n "${CALLGATE_BENCH_BASE:-}" ]]; then
        base="$(build_bench_base "$CALLGATE_BENCH_BASE")" || die "the base $CALLGATE_BENCH_BASE does not build"
    fi
    mkdir -p "$BENCH_OUT"
    # Figures of this run only.
    rm -f "$BENCH_OUT"/*.json "$BENCH_OUT/steps.txt" "$BENCH_OUT/table.md"
    db_url="postgres://callgate:callgate@127.0.0.1:$PG_PORT/$BENCH_DB"

    trap stop_bench_helpers EXIT
    start_webhook_sink 8089
    if [[ -n "$base" ]]; then
        # Old and new in turn, each on a fresh database: the box's drift
        # falls on both alike.
        # Odd rounds old first, even rounds new first: whatever the run
        # before leaves behind (LiveKit's rooms, the database's files)
        # weighs on each side alike.
        for ((round = 1; round <= ${CALLGATE_BENCH_PAIRS:-2}; round++)); do
            if ((round % 2 == 1)); then
                bench_step "api-base-$round" bench_api "$base" "$BENCH_OUT/api-base-$round.json" "base $CALLGATE_BENCH_BASE, round $round"
                bench_step "api-$round" bench_api "$target/release/callgate" "$BENCH_OUT/api-$round.json" "this commit, round $round"
            else
                bench_step "api-$round" bench_api "$target/release/callgate" "$BENCH_OUT/api-$round.json" "this commit, round $round"
                bench_step "api-base-$round" bench_api "$base" "$BENCH_OUT/api-base-$round.json" "base $CALLGATE_BENCH_BASE, round $round"
            fi
        done
        printf '%s\n' "$CALLGATE_BENCH_BASE" >"$BENCH_OUT/base.txt"
    else
        bench_step api bench_api "$target/release/callgate" "$BENCH_OUT/api.json" "this commit"
    fi
    stop_webhook_sink
    start_webhook_sink 8080 8089

    # Two instances of its own for event latency, one for 10,000 idle event
    # streams (each end of a stream is a file descriptor).
    recreate_bench_db
    # shellcheck disable=SC2016 # expanded by the inner shell
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
