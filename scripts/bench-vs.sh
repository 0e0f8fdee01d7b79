#!/usr/bin/env bash
# LCache vs Redis vs memcached, side by side, on this machine and over loopback only.
#
# Installs redis-server and memcached if missing (Debian, as root), builds lcache-node and
# lcache-bench (as deployed: see PGO below), starts redis-server, memcached, a 1-node LCache (gRPC,
# and RESP through --resp-listen: target lcache-resp, the same node and the same Redis client as
# the redis target) and a 3-node LCache cluster on free loopback ports, runs every scenario against
# every backend in turn (rounds interleaved), stops everything it started, and writes a markdown
# table to target/bench-vs.md (and stdout).
#
# Knobs (environment): DURATION (measured time per round, default 3s), WARMUP (1s), ROUNDS (3),
# CONNECTIONS (32), WORKERS (concurrent workers sharing the connections, default CONNECTIONS;
# memcached keeps one connection per worker), KEYS (100000), THREADS (generator threads, 1),
# SEED (1), LCACHE_THREADS (tokio worker threads of every lcache-node; default the runtime's, one
# per CPU), SCENARIOS (space-separated lcache-bench --scenario specs), TARGETS (subset of:
# lcache-1 lcache-resp lcache-3 redis memcached), OUT (target/bench-vs.md), TIME_LIMIT (seconds the
# generator may run in all, 900), PGO (1: build with scripts/build-pgo.sh; 0: the production profile
# alone).
# Time per backend per scenario: ROUNDS x (WARMUP + DURATION) plus the preload, about 15 s by
# default; the whole default run takes about 5 minutes after the build.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-1s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
WORKERS=${WORKERS:-$CONNECTIONS}
KEYS=${KEYS:-100000}
THREADS=${THREADS:-1}
LCACHE_THREADS=${LCACHE_THREADS:-}
SEED=${SEED:-1}
OUT=${OUT:-$ROOT/target/bench-vs.md}
TIME_LIMIT=${TIME_LIMIT:-900}
TARGETS=${TARGETS:-lcache-1 lcache-resp lcache-3 redis memcached}
SCENARIOS=${SCENARIOS:-"dist=uniform,value=100,read=1 dist=zipf,value=100,read=0.9 dist=uniform,value=4KiB,read=1 dist=zipf,value=4KiB,read=0.9"}

log() { echo "bench-vs: $*" >&2; }

# --- what it needs -------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null || ! command -v memcached >/dev/null; then
    command -v apt-get >/dev/null || { log "redis-server and memcached are needed (no apt-get here)"; exit 1; }
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
    log "installing redis-server and memcached"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server memcached >/dev/null
fi
command -v cargo >/dev/null || { log "cargo is needed (https://rustup.rs)"; exit 1; }

# Both binaries are built as deployed, the generator too: a faster generator only helps the
# fastest target (Redis).
# shellcheck source=lib/deployed.sh
source "$ROOT/scripts/lib/deployed.sh"
build_deployed

# --- processes we start, stopped on exit ---------------------------------------------------------
# shellcheck source=lib/servers.sh
source "$ROOT/scripts/lib/servers.sh"

has_target() { [[ " $TARGETS " == *" $1 "* ]]; }

ARGS=()
# Room for every key at 4 KiB with headroom (the stores are byte-budgeted).
GROUP="default:budget=2GiB"
# How lcache-node is run: on LCACHE_THREADS tokio workers when set.
NODE=("$BIN/lcache-node")
if [ -n "$LCACHE_THREADS" ]; then NODE=(env "TOKIO_WORKER_THREADS=$LCACHE_THREADS" "$BIN/lcache-node"); fi

if has_target lcache-1 || has_target lcache-resp; then
    free_port 17001
    p=$PORT
    free_port 16380
    rp=$PORT
    start lcache-1 "$p" "${NODE[@]}" --node-id solo --listen "127.0.0.1:$p" \
        --resp-listen "127.0.0.1:$rp" --group "$GROUP"
    if has_target lcache-1; then
        ARGS+=(--target "lcache-1=lcache://127.0.0.1:$p" --pids "lcache-1=$STARTED")
    fi
    if has_target lcache-resp; then
        ARGS+=(--target "lcache-resp=resp://127.0.0.1:$rp" --pids "lcache-resp=$STARTED")
    fi
fi
if has_target lcache-3; then
    ports=()
    for i in 0 1 2; do
        free_port $((17101 + i))
        ports+=("$PORT")
    done
    peers="a=127.0.0.1:${ports[0]},b=127.0.0.1:${ports[1]},c=127.0.0.1:${ports[2]}"
    pids=()
    addrs=()
    for i in 0 1 2; do
        id=$(printf '%s' abc | cut -c$((i + 1)))
        start "lcache-3-$id" "${ports[$i]}" "${NODE[@]}" --node-id "$id" \
            --listen "127.0.0.1:${ports[$i]}" --peers "$peers" --group "$GROUP"
        pids+=("$STARTED")
        addrs+=("127.0.0.1:${ports[$i]}")
    done
    ARGS+=(--target "lcache-3=lcache://$(IFS=,; echo "${addrs[*]}")" --pids "lcache-3=$(IFS=,; echo "${pids[*]}")")
fi
if has_target redis; then
    free_port 16379
    p=$PORT
    start redis "$p" redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
        --daemonize no --dir "$WORK"
    ARGS+=(--target "redis=redis://127.0.0.1:$p" --pids "redis=$STARTED")
fi
if has_target memcached; then
    free_port 11311
    p=$PORT
    start memcached "$p" memcached -l 127.0.0.1 -p "$p" -U 0 -m 2048 -u "$(id -un)"
    ARGS+=(--target "memcached=memcached://127.0.0.1:$p" --pids "memcached=$STARTED")
fi
[ ${#ARGS[@]} -gt 0 ] || { log "no targets in TARGETS=$TARGETS"; exit 1; }

for s in $SCENARIOS; do ARGS+=(--scenario "$s"); done

log "versions: $(redis-server --version | cut -d' ' -f1-3), $(memcached -V)"
mkdir -p "$(dirname "$OUT")"
# A hard bound on the whole measurement, whatever happens to a server.
LIMIT=()
if command -v timeout >/dev/null; then LIMIT=(timeout --signal=INT "$TIME_LIMIT"); fi
"${LIMIT[@]}" "$BIN/lcache-bench" "${ARGS[@]}" --connections "$CONNECTIONS" \
    --workers "$WORKERS" --keys "$KEYS" \
    --duration "$DURATION" --warmup "$WARMUP" --rounds "$ROUNDS" --threads "$THREADS" \
    --seed "$SEED" --markdown "$OUT"
