# shellcheck shell=bash
# deploy/lib/services.sh - the servers of the loopback stack and the commands
# that run them: up (provision, then start whatever does not answer yet),
# down (stop what up started), status, run (up + callgate in the foreground).
# PostgreSQL runs as Debian clusters (pg_ctlcluster), the others as processes
# of their own session with pid files and logs in $RUN. Sourced by
# deploy/local.sh after common.sh and provision.sh.

# Ports (all 127.0.0.1; see the header of deploy/local.sh).
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
# LiveKit Egress: its status (GET /) and the room-composite page it serves
# its own chromium (deploy/egress/egress.yaml's health_port, template_port).
EGRESS_HEALTH_PORT=7985
EGRESS_CONF="$ROOT/deploy/egress/egress.yaml"
# Where recordings are written (file outputs name a path in it).
EGRESS_OUTPUT="$CACHE/recordings"
# versitygw, the S3-compatible server of RECORDING_STORAGE=s3: its buckets
# are folders of S3_DATA (.env.example's S3_BUCKET is made by `up`); its
# root keys are .env.example's S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY.
S3_PORT=7070
S3_DATA="$CACHE/s3"

# ---------------------------------------------------------------- processes ---

# Run as the postgres OS user (local peer auth on the Debian cluster's socket).
as_postgres() {
    if [[ "$(id -u)" -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        sudo -u postgres -- "$@"
    fi
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

# -------------------------------------------------------------- PostgreSQL ---

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 2 >/dev/null 2>&1; }

# Prints "<version> <cluster>" of the Debian cluster configured for $PG_PORT.
pg_cluster() {
    pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2; exit }'
}

# The test suite runs many apps at once, each with its own pools (requests,
# and the job runner's, which every LiveKit settling now uses): 300 ran out
# in a full run (an app could not connect at start).
PG_MAX_CONNECTIONS=600

# pg_stat_statements (loaded at start) lets the bench count the statements
# of a call's lifecycle; its cost is a hash update per statement.
PG_PRELOAD=pg_stat_statements

# Returns 0 when one of the cluster's settings was changed (a restart applies it).
configure_pg_cluster() {
    local ver="$1" name="$2" cur changed=1
    cur="$(pg_conftool "$ver" "$name" show max_connections 2>/dev/null | awk -F' = ' '{ print $2 }')"
    if [[ "$cur" != "$PG_MAX_CONNECTIONS" ]]; then
        log "PostgreSQL $ver/$name: max_connections $PG_MAX_CONNECTIONS"
        $SUDO pg_conftool "$ver" "$name" set max_connections "$PG_MAX_CONNECTIONS"
        changed=0
    fi
    cur="$(pg_conftool "$ver" "$name" show shared_preload_libraries 2>/dev/null | awk -F' = ' '{ print $2 }' | tr -d "'")"
    if [[ "$cur" != "$PG_PRELOAD" ]] && [[ -e "$(dirname "$(dirname "$(compgen -G "/usr/lib/postgresql/$ver/bin/postgres")")")/lib/$PG_PRELOAD.so" ]]; then
        log "PostgreSQL $ver/$name: shared_preload_libraries $PG_PRELOAD"
        $SUDO pg_conftool "$ver" "$name" set shared_preload_libraries "$PG_PRELOAD"
        changed=0
    fi
    return "$changed"
}

ensure_postgres() {
    local running ver name
    running="$(pg_cluster)"
    read -r ver name <<<"$running"
    if [[ -n "$running" ]] && pg_ready && configure_pg_cluster "$ver" "$name"; then
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

# ------------------------------------------------------ PulseAudio, Egress ---

# A room composite's chromium plays into a PulseAudio sink egress makes;
# egress starts Xvfb itself, but PulseAudio must already run (as this user).
pulse_ready() { pactl info >/dev/null 2>&1; }

ensure_pulseaudio() {
    pulse_ready && return 0
    section "start PulseAudio"
    # Root's session daemon (no --system: egress's pactl talks to the
    # per-user server); it must never exit when idle.
    rotate_log "$RUN/pulseaudio.log"
    pulseaudio --daemonize=yes --exit-idle-time=-1 --disallow-exit --log-target=file:"$RUN/pulseaudio.log" \
        </dev/null >/dev/null 2>&1 || true
    wait_for "$WAIT_SECS" "PulseAudio" "$RUN/pulseaudio.log" pulse_ready
    touch "$RUN/pulseaudio.started"
    section_done
}

egress_ready() { http_ok "$EGRESS_HEALTH_PORT" /; }

# LiveKit Egress under deploy/egress/supervise (pid file egress.pid: the
# supervisor; egress.child.pid: egress itself), restarted when its config or
# binary changed. PATH starts with $BIN: egress runs `egress run-handler`
# per recording. Its temporary files (a directory per recording) go to
# $RUN/egress-tmp.
ensure_egress() {
    local hash
    hash="$({ cat "$EGRESS_CONF" "$ROOT/deploy/egress/supervise"; stat -c '%s %Y' "$EGRESS_BIN"; } | sha256sum | cut -c1-16)"
    mkdir -p "$EGRESS_OUTPUT" "$RUN/egress-tmp"
    if pid_alive "$RUN/egress.pid" supervise; then
        if [[ "$(cat "$RUN/egress.hash" 2>/dev/null)" == "$hash" ]]; then
            return 0
        fi
        log "deploy/egress/ or the egress binary changed: restarting egress"
        stop_pidfile Egress "$RUN/egress.pid" supervise
    elif egress_ready; then
        log "Egress: reusing the server already on 127.0.0.1:$EGRESS_HEALTH_PORT (not started by local.sh)"
        return 0
    fi
    section "start LiveKit Egress (supervised)"
    rotate_log "$RUN/egress.log"
    spawn "$RUN/egress.pid" "$RUN/egress.log" env PATH="$BIN:$PATH" TMPDIR="$RUN/egress-tmp" \
        "$ROOT/deploy/egress/supervise" "$EGRESS_BIN" "$EGRESS_CONF" "$RUN/egress.child.pid"
    echo "$hash" >"$RUN/egress.hash"
    wait_for "$WAIT_SECS" "Egress" "$RUN/egress.log" egress_started
    section_done
}

egress_started() {
    spawned_alive "$RUN/egress.pid" || {
        log "the egress supervisor exited during start-up"
        tail -n 40 "$RUN/egress.log" >&2 || true
        exit 1
    }
    egress_ready
}

# ----------------------------------------------------------------- versitygw ---

s3_ready() { tcp_open "$S3_PORT"; }

# env_example <NAME>: the value .env.example gives NAME.
# shellcheck disable=SC2016 # expanded by the inner shell
env_example() { bash -c 'set -a && . "$1" && printf "%s\n" "${!2:-}"' _ "$ROOT/.env.example" "$1"; }

# Restarted when its binary or its keys changed. The bucket is made through
# versitygw's admin API (a folder made by hand has no owner, and versitygw
# fails the bucket's requests), once.
ensure_versitygw() {
    local access secret bucket hash
    access="$(env_example S3_ACCESS_KEY_ID)" secret="$(env_example S3_SECRET_ACCESS_KEY)"
    bucket="$(env_example S3_BUCKET)"
    [[ -n "$access" && -n "$secret" && -n "$bucket" ]] || die ".env.example sets no S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY or S3_BUCKET"
    mkdir -p "$S3_DATA"
    hash="$({ echo "$access $secret"; stat -c '%s %Y' "$VERSITYGW_BIN"; } | sha256sum | cut -c1-16)"
    if pid_alive "$RUN/versitygw.pid" versitygw; then
        if [[ "$(cat "$RUN/versitygw.hash" 2>/dev/null)" != "$hash" ]]; then
            log "the versitygw binary or .env.example's S3 keys changed: restarting versitygw"
            stop_pidfile versitygw "$RUN/versitygw.pid" versitygw
        fi
    elif s3_ready; then
        log "versitygw: reusing the server already on 127.0.0.1:$S3_PORT (not started by local.sh; it must take .env.example's S3 keys)"
    fi
    if ! s3_ready; then
        section "start versitygw (S3-compatible storage)"
        rotate_log "$RUN/versitygw.log"
        spawn "$RUN/versitygw.pid" "$RUN/versitygw.log" env ROOT_ACCESS_KEY_ID="$access" ROOT_SECRET_ACCESS_KEY="$secret" \
            "$VERSITYGW_BIN" --port "127.0.0.1:$S3_PORT" --quiet posix "$S3_DATA"
        echo "$hash" >"$RUN/versitygw.hash"
        wait_for "$WAIT_SECS" "versitygw" "$RUN/versitygw.log" versitygw_started
        section_done
    fi
    s3_admin "$access" "$secret" list-buckets | awk -v b="$bucket" '$1 == b { found = 1 } END { exit !found }' && return 0
    log "versitygw: creating the bucket $bucket"
    s3_admin "$access" "$secret" create-bucket --owner "$access" --bucket "$bucket" >/dev/null ||
        die "could not create the bucket $bucket on versitygw (see $RUN/versitygw.log)"
}

s3_admin() { # s3_admin <access> <secret> <admin command...>
    local access="$1" secret="$2"
    shift 2
    ADMIN_ACCESS_KEY_ID="$access" ADMIN_SECRET_ACCESS_KEY="$secret" \
        "$VERSITYGW_BIN" admin --endpoint-url "http://127.0.0.1:$S3_PORT" "$@"
}

versitygw_started() {
    spawned_alive "$RUN/versitygw.pid" || {
        log "versitygw exited during start-up"
        tail -n 40 "$RUN/versitygw.log" >&2 || true
        exit 1
    }
    s3_ready
}

# ------------------------------------------------ up, down, status, run ---

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
    provision
    ensure_postgres
    ensure_chaos_postgres
    ensure_redis
    ensure_redis_cluster
    ensure_coturn
    ensure_livekit
    ensure_pulseaudio
    ensure_egress
    ensure_versitygw
    log "stack up ($((SECONDS - t0))s): postgres :$PG_PORT (and :$CHAOS_PG_PORT for the outage test), redis :$REDIS_PORT (and a cluster on ${REDIS_CLUSTER_PORTS[*]}), coturn :$TURN_PORT, livekit :$LK_PORT, egress (status :$EGRESS_HEALTH_PORT, files in $EGRESS_OUTPUT), versitygw (S3 :$S3_PORT, data in $S3_DATA) (state in $RUN)"
}

cmd_down() {
    stop_pidfile versitygw "$RUN/versitygw.pid" versitygw
    stop_pidfile Egress "$RUN/egress.pid" supervise
    if [[ -e "$RUN/pulseaudio.started" ]]; then
        log "stopping PulseAudio"
        pulseaudio --kill 2>/dev/null || true
        rm -f "$RUN/pulseaudio.started"
    fi
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
    rm -f "$RUN/livekit.hash" "$RUN/coturn.hash" "$RUN/egress.hash" "$RUN/versitygw.hash"
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
    egress_ready && state=up || state=down
    if pid_alive "$RUN/egress.pid" supervise; then
        owner="local.sh (supervisor pid $(cat "$RUN/egress.pid"), egress pid $(cat "$RUN/egress.child.pid" 2>/dev/null || echo -))"
    else owner="$(ext "$state")"; fi
    status_line egress "127.0.0.1:$EGRESS_HEALTH_PORT" "$state" "$owner"
    pulse_ready && state=up || state=down
    if [[ -e "$RUN/pulseaudio.started" ]]; then owner="local.sh (for egress)"; else owner="$(ext "$state")"; fi
    status_line pulseaudio "-" "$state" "$owner"
    s3_ready && state=up || state=down
    if pid_alive "$RUN/versitygw.pid" versitygw; then owner="local.sh (pid $(cat "$RUN/versitygw.pid"))"; else owner="$(ext "$state")"; fi
    status_line versitygw "127.0.0.1:$S3_PORT" "$state" "$owner"
    tcp_open 8080 && state=up || state=down
    status_line callgate "127.0.0.1:8080" "$state" "deploy/local.sh run"
    echo
    provision_status
    echo "logs:           $RUN/{livekit,turnserver,redis,egress,versitygw}.log"
    echo "recordings:     $EGRESS_OUTPUT (egress writes), $S3_DATA (versitygw's buckets)"
    local down=0
    pg_ready && redis_ready && redis_cluster_ready && turn_ready && livekit_ready && egress_ready && s3_ready || down=1
    return "$down"
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
