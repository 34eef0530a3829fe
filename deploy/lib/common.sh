# shellcheck shell=bash disable=SC2034 # the variables are read by the files that source this one
# deploy/lib/common.sh - what every piece of deploy/local.sh uses: where the
# cache lives, logging, the CI section headers and timings, probes and the
# two ways of running a step (quietly, run_step). Sourced, never run; expects
# ROOT (the repository) to be set.

# Everything installed or run lives here, outside the clone: bin/ (LiveKit,
# helm, kubeconform, oha), go/ (a bootstrapped Go toolchain), venv/, npm/
# (npm's cache), oidc-provider/, logs/ (what installing and compiling print),
# run/ (pid files, server logs, Redis/Coturn data).
CACHE="${CALLGATE_CACHE:-$HOME/.cache/callgate}"
RUN="$CACHE/run"
BIN="$CACHE/bin"
VENV="$CACHE/venv"

# How long a server (or the bench's callgate) may take to answer.
WAIT_SECS="${CALLGATE_WAIT_SECS:-60}"

export DEBIAN_FRONTEND=noninteractive

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

rotate_log() { # keep the previous run's log as <log>.1
    [[ -s "$1" ]] && mv -f "$1" "$1.1"
    : >"$1"
}

file_hash() { cat "$@" | sha256sum | cut -c1-16; }

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
