#!/usr/bin/env bash
# LCache's RESP front door vs redis-server, measured with Redis's own tool (redis-benchmark, the C
# program), same flags for both, in the same run, over loopback only:
#
#   redis-benchmark -c 50 -n 200000 -d 100 -t get,set -P 1     (and again with -P 16)
#
# Installs redis-server and redis-tools if missing (Debian, as root), builds lcache-node (as
# deployed: see PGO below), starts a 1-node LCache with --resp-listen and two identical
# redis-servers on free loopback ports (the second one a control: what the tool reads between two
# servers doing the same work), runs ROUNDS rounds (each round: both pipelining modes against every
# server, the order reversed between rounds), and prints the median ops/s of each (server, mode,
# command), the ratios LCache / Redis and Redis-2 / Redis, and each server's CPU time per request
# (user + system, from /proc, over the whole redis-benchmark run of that mode, so SET and GET
# together). Writes the table to target/bench-resp.md as well.
#
# Knobs (environment): ROUNDS (3), REQUESTS (200000), CLIENTS (50), DATA (100), PIPELINES ("1 16"),
# THREADS (LCache's tokio worker threads; default: the runtime's, one per CPU), OUT
# (target/bench-resp.md), LCACHE_ARGS (extra lcache-node flags), PGO (1: build with
# scripts/build-pgo.sh; 0: the production profile alone).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-200000}
CLIENTS=${CLIENTS:-50}
DATA=${DATA:-100}
PIPELINES=${PIPELINES:-"1 16"}
THREADS=${THREADS:-}
OUT=${OUT:-$ROOT/target/bench-resp.md}
LCACHE_ARGS=${LCACHE_ARGS:-}

log() { echo "bench-resp: $*" >&2; }

# --- what it needs -------------------------------------------------------------------------------
# shellcheck source=lib/redis-bench.sh
source "$ROOT/scripts/lib/redis-bench.sh"
need_redis_tools
command -v cargo >/dev/null || { log "cargo is needed (https://rustup.rs)"; exit 1; }

# shellcheck source=lib/deployed.sh
source "$ROOT/scripts/lib/deployed.sh"
build_deployed

# --- processes we start, stopped on exit ---------------------------------------------------------
# shellcheck source=lib/servers.sh
source "$ROOT/scripts/lib/servers.sh"

TICKS=$(getconf CLK_TCK)

free_port 17301
grpc_port=$PORT
free_port 16380
lcache_port=$PORT
ENV=()
if [ -n "$THREADS" ]; then ENV=(env "TOKIO_WORKER_THREADS=$THREADS"); fi
# Room for every value the benchmark writes (one key unless -r is given, but keep headroom).
# shellcheck disable=SC2086
start lcache "$lcache_port" "${ENV[@]}" "$BIN/lcache-node" --node-id bench --listen "127.0.0.1:$grpc_port" \
    --resp-listen "127.0.0.1:$lcache_port" --group default:budget=256MiB $LCACHE_ARGS
lcache_pid=$STARTED
lcache_threads=$(awk '/^Threads:/ { print $2 }' "/proc/$lcache_pid/status")
runtime_threads=$(ls /proc/"$lcache_pid"/task | while read -r t; do cat "/proc/$lcache_pid/task/$t/comm"; done | grep -c tokio-rt-worker || true)

free_port 16379
redis_port=$PORT
start redis "$redis_port" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
    --appendonly no --daemonize no --dir "$WORK"
redis_pid=$STARTED
# A second, identical redis-server, measured like the others: Redis-2 / Redis is what the tool
# reads between two servers that do the same work, the noise floor every ratio here is read
# against.
free_port 16390
redis2_port=$PORT
start redis-2 "$redis2_port" redis-server --port "$redis2_port" --bind 127.0.0.1 --save '' \
    --appendonly no --daemonize no --dir "$WORK"
redis2_pid=$STARTED

# One redis-benchmark run: appends "server pipeline command rps" lines to $WORK/results and
# "server pipeline us_per_request" to $WORK/cpu.
measure() { # server port pid pipeline
    local server=$1 port=$2 pid=$3 pipeline=$4 before after csv
    before=$(cpu_ticks "$pid")
    csv=$(redis-benchmark -h 127.0.0.1 -p "$port" -c "$CLIENTS" -n "$REQUESTS" -d "$DATA" \
        -t get,set -P "$pipeline" --csv)
    after=$(cpu_ticks "$pid")
    echo "$csv" | awk -F'","' -v s="$server" -v p="$pipeline" \
        'NR > 1 { gsub(/"/, "", $1); gsub(/"/, "", $2); print s, p, $1, $2 }' >>"$WORK/results"
    awk -v s="$server" -v p="$pipeline" -v t=$((after - before)) -v hz="$TICKS" -v n="$REQUESTS" \
        'BEGIN { printf "%s %s %.3f\n", s, p, t / hz * 1e6 / (2 * n) }' >>"$WORK/cpu"
    log "$(echo "$csv" | awk -F'","' -v s="$server" -v p="$pipeline" \
        'NR > 1 { gsub(/"/, "", $1); gsub(/"/, "", $2); printf "%s -P %s %s %s rps; ", s, p, $1, $2 }')"
}

: >"$WORK/results"
: >"$WORK/cpu"
for round in $(seq 1 "$ROUNDS"); do
    log "round $round/$ROUNDS"
    for pipeline in $PIPELINES; do
        if [ $((round % 2)) = 1 ]; then
            measure lcache "$lcache_port" "$lcache_pid" "$pipeline"
            measure redis "$redis_port" "$redis_pid" "$pipeline"
            measure redis-2 "$redis2_port" "$redis2_pid" "$pipeline"
        else
            measure redis-2 "$redis2_port" "$redis2_pid" "$pipeline"
            measure redis "$redis_port" "$redis_pid" "$pipeline"
            measure lcache "$lcache_port" "$lcache_pid" "$pipeline"
        fi
    done
done

{
    echo "redis-benchmark -c $CLIENTS -n $REQUESTS -d $DATA -t get,set -P N against LCache's RESP port"
    echo "and two identical redis-servers, $ROUNDS round(s) each, order alternating; medians. $(redis-server --version | cut -d' ' -f1-3)."
    echo "LCache: lcache-node, 1 node, $runtime_threads tokio worker thread(s) ($lcache_threads threads in all); $(nproc) CPUs."
    echo "CPU µs/req: the server's user+system time over the whole run of that mode (SET and GET together)."
    echo
    echo "Redis-2 / Redis: the same ratio between the two redis-servers, the measurement's noise floor."
    echo
    echo "| mode | command | LCache ops/s | Redis ops/s | LCache / Redis | Redis-2 / Redis | LCache CPU µs/req | Redis CPU µs/req |"
    echo "|---|---|--:|--:|--:|--:|--:|--:|"
    for pipeline in $PIPELINES; do
        lcpu=$(awk -v p="$pipeline" '$1 == "lcache" && $2 == p { print $3 }' "$WORK/cpu" | median)
        rcpu=$(awk -v p="$pipeline" '$1 == "redis" && $2 == p { print $3 }' "$WORK/cpu" | median)
        for command in SET GET; do
            l=$(awk -v p="$pipeline" -v c="$command" '$1 == "lcache" && $2 == p && $3 == c { print $4 }' "$WORK/results" | median)
            r=$(awk -v p="$pipeline" -v c="$command" '$1 == "redis" && $2 == p && $3 == c { print $4 }' "$WORK/results" | median)
            r2=$(awk -v p="$pipeline" -v c="$command" '$1 == "redis-2" && $2 == p && $3 == c { print $4 }' "$WORK/results" | median)
            awk -v p="$pipeline" -v c="$command" -v l="$l" -v r="$r" -v r2="$r2" -v lc="$lcpu" -v rc="$rcpu" \
                'BEGIN { printf "| -P %s | %s | %.0f | %.0f | %.2f× | %.2f× | %.2f | %.2f |\n", p, c, l, r, l / r, r2 / r, lc, rc }'
        done
    done
} | tee "$OUT"
log "written to $OUT"
