# shellcheck shell=bash
# deploy/lib/tests.sh - `deploy/local.sh test`: up, the environment the tests
# read (.env.example, the test database, the tools provision.sh installed,
# the stack's addresses), the lint steps (with the check that .sqlx is up to
# date), the build, then cargo test with its
# output kept in $RUN/test-output.log and, on failure, a summary of what failed.
# Sourced by deploy/local.sh after common.sh, provision.sh and services.sh.

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

# sqlx_prepare_check <database>: `cargo sqlx prepare --check`, against a
# scratch database made afresh and migrated with migrations/: fails when
# .sqlx (the query macros' offline data, committed) does not match the
# statements of src/ or the schema. The check re-expands the macros by
# touching the crate's target sources; their times are put back after it,
# so that the build that follows does not rebuild what did not change.
sqlx_prepare_check() {
    local db="$1" url want stamps rc=0 i
    want="$(awk '$0 == "name = \"sqlx\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)"
    if [[ "$want" != "$SQLX_CLI_VERSION" ]]; then
        log "Cargo.lock has sqlx $want but deploy/lib/provision.sh pins sqlx-cli $SQLX_CLI_VERSION: make them agree"
        return 1
    fi
    url="postgres://callgate:callgate@127.0.0.1:$PG_PORT/$db"
    PGPASSWORD=callgate psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U callgate -d callgate \
        -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null || return 1
    "$BIN/sqlx" migrate run --source migrations --database-url "$url" >/dev/null || return 1
    local sources=()
    mapfile -t sources < <(cargo metadata -q --no-deps --format-version 1 |
        python3 -c 'import json, sys; [print(t["src_path"]) for p in json.load(sys.stdin)["packages"] for t in p["targets"]]')
    stamps="$(mktemp -d)"
    for i in "${!sources[@]}"; do touch -r "${sources[$i]}" "$stamps/$i"; done
    PATH="$BIN:$PATH" cargo sqlx prepare --check --database-url "$url" || rc=$?
    for i in "${!sources[@]}"; do touch -r "$stamps/$i" "${sources[$i]}"; done
    rm -rf "$stamps"
    return "$rc"
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

# test_environment: what the tests read (.env.example, the test database,
# the tools provision.sh installed, the stack's addresses), exported.
test_environment() {
    load_env
    test_db="${CALLGATE_TEST_DB:-callgate_test}"
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
    # tests/api/egress.rs: where egress writes, and its pid (CPU and memory);
    # tests/api/recording_faults.rs: its status port (back after a kill).
    export CALLGATE_EGRESS_OUTPUT="$EGRESS_OUTPUT" CALLGATE_EGRESS_PID_FILE="$RUN/egress.child.pid"
    export CALLGATE_EGRESS_HEALTH_PORT="$EGRESS_HEALTH_PORT"
    # The outage test's own cluster, and how it stops and starts it.
    export CHAOS_DATABASE_URL="postgres://callgate:callgate@127.0.0.1:$CHAOS_PG_PORT/callgate"
    CHAOS_PG_CTL="${SUDO:+$SUDO }pg_ctlcluster $(cat "$RUN/chaos.cluster")"
    export CHAOS_PG_CTL
    # tests/api/redis_cluster.rs: the Redis Cluster's seed nodes.
    CLUSTER_REDIS_URL="$(redis_cluster_urls)"
    export CLUSTER_REDIS_URL
    # The query macros read .sqlx, never DATABASE_URL's database (as
    # .cargo/config.toml says too): no build here needs one.
    export SQLX_OFFLINE=true
    ensure_cargo_on_path
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

    local t0=$SECONDS test_db
    cmd_up
    test_environment

    run_step "drop leftover test databases" drop_test_databases
    if [[ "${CALLGATE_SKIP_LINT:-}" != "1" ]]; then
        run_step "layers: no circle, arrows point down (.ci/layers.py)" python3 .ci/layers.py
        run_step "cargo fmt --all -- --check" cargo fmt --all -- --check
        run_step "cargo clippy --all-targets -- -D warnings" cargo clippy -q --all-targets -- -D warnings
        ensure_sqlx_cli
        run_step "cargo sqlx prepare --check (.sqlx against ${test_db}_sqlx, migrated)" \
            sqlx_prepare_check "${test_db}_sqlx"
    fi
    # A failing test shows its panic and its captured logs; backtraces only
    # on request (TEST_BACKTRACE=1), they bury the message.
    export RUST_BACKTRACE="${TEST_BACKTRACE:-0}"
    if [[ $# -eq 0 ]]; then
        # The whole suite (CI, the README's command): cargo-nextest, a process
        # per test, in three runs one after the other so that browsers and
        # egress recordings never share the two cores with the 200 other
        # real-stack tests; then the benches' smoke runs (no libtest harness).
        ensure_nextest
        # (nextest runs the test targets: a bench has no test harness, and
        # listing one would run it.)
        run_step "cargo build of the tests" quietly cargo-build-tests cargo test --no-run --all-targets
        nextest_profile default -E 'kind(lib) | binary(fast)' || return 1
        nextest_profile stack || return 1
        nextest_profile browser || return 1
        local output="$RUN/test-output.log"
        # (Not `--benches`: the library is a bench target too, and its unit
        # tests would run again.)
        if ! run_step "the benches' smoke runs" run_tee "$output" \
            cargo test -q --bench consent_latency --bench events; then
            is_ci && dump_server_logs
            return 1
        fi
        log "all checks passed ($((SECONDS - t0))s)"
        return 0
    fi
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

RECEIVER_PID=""

stop_receiver() {
    [[ -n "$RECEIVER_PID" ]] || return 0
    kill -TERM "$RECEIVER_PID" 2>/dev/null || true
    wait "$RECEIVER_PID" 2>/dev/null || true
    RECEIVER_PID=""
}

# nextest_profile <profile> [nextest args]: `cargo nextest run` with that
# profile of .config/nextest.toml; the api binary's tests get the shared
# webhook receiver as a process of its own (examples/webhook_receiver.rs).
nextest_profile() {
    local profile="$1"
    shift
    if [[ "$profile" != "fast" ]]; then
        ! tcp_open "$TEST_WEBHOOK_PORT" ||
            die "port $TEST_WEBHOOK_PORT (LiveKit's webhooks to the tests) is in use: is another test run going?"
        run_step "cargo build of the webhook receiver" quietly cargo-build-receiver \
            cargo build --example webhook_receiver
        local log_file="$RUN/webhook-receiver.log"
        "$ROOT/target/debug/examples/webhook_receiver" >"$log_file" 2>&1 &
        RECEIVER_PID=$!
        trap stop_receiver EXIT
        local i
        for ((i = 0; i < 300; i++)); do tcp_open "$TEST_WEBHOOK_PORT" && break; sleep 0.1; done
        tcp_open "$TEST_WEBHOOK_PORT" || { cat "$log_file" >&2; die "the webhook receiver did not start"; }
        export TEST_WEBHOOK_RECEIVER=external
    fi
    local output="$RUN/test-output-$profile.log" rc=0
    run_step "cargo nextest run --profile $profile $*" run_tee "$output" \
        "$BIN/cargo-nextest" nextest run --profile "$profile" "$@" || rc=$?
    stop_receiver
    unset TEST_WEBHOOK_RECEIVER
    if ((rc != 0)); then
        is_ci && dump_server_logs
        [[ "$profile" == "fast" ]] || { printf '\n---- last 40 lines of the webhook receiver ----\n' >&2; tail -n 40 "$RUN/webhook-receiver.log" >&2 || true; }
        return "$rc"
    fi
}

# cmd_nextest [profile] [nextest args]: up, the tests' environment, then
# `cargo nextest run --profile <profile>` (.config/nextest.toml: fast,
# stack, browser; all of them by default).
cmd_nextest() {
    local profile="default"
    if [[ $# -gt 0 && "$1" != -* ]]; then profile="$1"; shift; fi
    local t0=$SECONDS test_db
    cmd_up
    test_environment
    export RUST_BACKTRACE="${TEST_BACKTRACE:-0}"
    ensure_nextest
    # A real-stack run elsewhere may be using them: only runs that use the
    # stack themselves drop them.
    [[ "$profile" == "fast" ]] || run_step "drop leftover test databases" drop_test_databases
    nextest_profile "$profile" "$@" || return 1
    log "all tests of profile $profile passed ($((SECONDS - t0))s)"
}
