#!/usr/bin/env bash
# What RESP lingering (lcache-node --resp-linger-turns) buys without pipelining, and why: one
# LCache node lingering (the default), one not (--resp-linger-turns 0), and a redis-server, all on
# loopback, measured in alternated rounds with Redis's own tool:
#
#   redis-benchmark -c 50 -n 400000 -d 100 -t get -P 1      (COMMAND=set: -t set)
#
# For each run it prints the ops/s, the CPU the *client* (redis-benchmark) spent per request, the
# server's CPU per request, and the inter-processor interrupts per request machine-wide (the
# function-call and rescheduling lines of /proc/interrupts: how a CPU wakes a sleeping thread on
# another CPU). redis-benchmark's one thread is the bound at -P 1, so anything a server makes the
# client pay per request shows in the ops/s. Then the medians and each round's LCache / Redis.
#
# Knobs (environment): ROUNDS (6), REQUESTS (400000), CLIENTS (50), DATA (100), COMMAND (get),
# THREADS (LCache's
# tokio worker threads: 1, the only setting that lingers), PGO (1: scripts/build-pgo.sh; 0: the
# production profile alone), LCACHE_ARGS (extra lcache-node flags for both nodes).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROUNDS=${ROUNDS:-6}
REQUESTS=${REQUESTS:-400000}
CLIENTS=${CLIENTS:-50}
DATA=${DATA:-100}
COMMAND=${COMMAND:-get}
THREADS=${THREADS:-1}
LCACHE_ARGS=${LCACHE_ARGS:-}

log() { echo "bench-resp-wakeups: $*" >&2; }

# shellcheck source=lib/redis-bench.sh
source "$ROOT/scripts/lib/redis-bench.sh"
need_redis_tools

# shellcheck source=lib/deployed.sh
source "$ROOT/scripts/lib/deployed.sh"
build_deployed
# shellcheck source=lib/servers.sh
source "$ROOT/scripts/lib/servers.sh"

TICKS=$(getconf CLK_TCK)
# Function-call and rescheduling interrupts so far, summed over CPUs.
ipis() { awk '$1 == "CAL:" || $1 == "RES:" { for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i } END { print n }' /proc/interrupts; }

declare -A PORT PID
names=(lingering no-linger redis)
# shellcheck disable=SC2086
start_node() { # name grpc-port resp-port extra-args...
    local name=$1 grpc=$2 resp=$3
    shift 3
    start "$name" "$resp" env "TOKIO_WORKER_THREADS=$THREADS" "$BIN/lcache-node" --node-id "$name" \
        --listen "127.0.0.1:$grpc" --resp-listen "127.0.0.1:$resp" --group default:budget=256MiB \
        $LCACHE_ARGS "$@"
    PORT[$name]=$resp
    PID[$name]=$STARTED
}
free_port 17311
g1=$PORT
free_port 16381
start_node lingering "$g1" "$PORT"
free_port 17312
g2=$PORT
free_port 16382
start_node no-linger "$g2" "$PORT" --resp-linger-turns 0
free_port 16383
start redis "$PORT" redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$WORK"
PORT[redis]=$PORT
PID[redis]=$STARTED

for name in "${names[@]}"; do
    redis-benchmark -p "${PORT[$name]}" -c "$CLIENTS" -n 50000 -d "$DATA" -t set -P 1 -q >/dev/null
done

TIMEFORMAT='%3U %3S'
: >"$WORK/runs"
for round in $(seq 1 "$ROUNDS"); do
    order=("${names[@]}")
    if [ $((round % 2)) = 0 ]; then order=(redis no-linger lingering); fi
    for name in "${order[@]}"; do
        t0=$(cpu_ticks "${PID[$name]}")
        i0=$(ipis)
        { time redis-benchmark -h 127.0.0.1 -p "${PORT[$name]}" -c "$CLIENTS" -n "$REQUESTS" \
            -d "$DATA" -t "$COMMAND" -P 1 --csv >"$WORK/out"; } 2>"$WORK/time"
        i1=$(ipis)
        t1=$(cpu_ticks "${PID[$name]}")
        rps=$(awk -F'","' 'NR > 1 { gsub(/"/, "", $2); print $2 }' "$WORK/out")
        read -r user sys <"$WORK/time"
        awk -v r="$round" -v s="$name" -v rps="$rps" -v u="$user" -v y="$sys" -v n="$REQUESTS" \
            -v t=$((t1 - t0)) -v hz="$TICKS" -v i=$((i1 - i0)) 'BEGIN {
                printf "%d %s %.0f %.3f %.3f %.4f\n", r, s, rps, (u + y) * 1e6 / n, t / hz * 1e6 / n, i / n
            }' | tee -a "$WORK/runs" | awk '{
                printf "round %s  %-10s %8s ops/s  client %s µs/req  server %s µs/req  IPIs %s/req\n", $1, $2, $3, $4, $5, $6
            }' >&2
    done
done

echo "redis-benchmark -c $CLIENTS -n $REQUESTS -d $DATA -t $COMMAND -P 1, $ROUNDS alternated rounds; medians."
echo "LCache on $THREADS tokio worker thread(s); $(redis-server --version | cut -d' ' -f1-3); $(nproc) CPUs."
echo
echo "| server | ops/s | client CPU µs/req | server CPU µs/req | IPIs/req |"
echo "|---|--:|--:|--:|--:|"
for name in "${names[@]}"; do
    row="| $name"
    for col in 3 4 5 6; do
        format=%.2f
        if [ "$col" = 3 ]; then format=%.0f; elif [ "$col" = 6 ]; then format=%.3f; fi
        value=$(awk -v s="$name" -v c="$col" '$2 == s { print $c }' "$WORK/runs" | median)
        row="$row | $(printf "$format" "$value")"
    done
    echo "$row |"
done
echo
for name in lingering no-linger; do
    ratios=$(awk -v s="$name" '$2 == s { l[$1] = $3 } $2 == "redis" { r[$1] = $3 }
        END { for (k in l) printf "%d %.3f\n", k, l[k] / r[k] }' "$WORK/runs" | sort -n | awk '{ printf "%s ", $2 }')
    echo "$name / redis, each round: $ratios"
done
