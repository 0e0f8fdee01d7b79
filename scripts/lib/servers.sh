# Servers a script starts on loopback, stopped when it exits. Sourced (not run) by the benchmark
# scripts and scripts/build-pgo.sh, after they define `log`.
#
# Sets PIDS (the processes started) and WORK (a scratch directory holding each server's log),
# both cleaned up on exit; provides listening, free_port, wait_listening and start.

PIDS=()
WORK=$(mktemp -d)
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Succeeds when something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Leaves in $PORT a free loopback port at or above $1 that no earlier call chose.
CHOSEN=" "
PORT=
free_port() {
    PORT=$1
    while listening "$PORT" || [[ $CHOSEN == *" $PORT "* ]]; do PORT=$((PORT + 1)); done
    CHOSEN="$CHOSEN$PORT "
}

# Waits (10 s at most) until server $2 (pid $3) listens on port $1; exits with its log if it
# stopped or never listened.
wait_listening() {
    local port=$1 name=$2 pid=$3
    for _ in $(seq 1 200); do
        listening "$port" && return 0
        kill -0 "$pid" 2>/dev/null || { log "$name exited; its log:"; cat "$WORK/$name.log" >&2; exit 1; }
        sleep 0.05
    done
    log "$name is not listening on 127.0.0.1:$port after 10 s"
    exit 1
}

# Starts a server in the background (not in a subshell, so the trap knows its pid) and waits
# until it listens; its pid is left in $STARTED, its output in $WORK/NAME.log.
STARTED=
start() { # name port command...
    local name=$1 port=$2
    shift 2
    "$@" >"$WORK/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_listening "$port" "$name" "$STARTED"
}
