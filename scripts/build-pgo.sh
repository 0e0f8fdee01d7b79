#!/usr/bin/env bash
# Builds lcache-node and lcache-bench with profile-guided optimisation (PGO) on top of the
# production profile (fat LTO, see Cargo.toml), and prints the directory that holds them.
#
#   1. an instrumented build of both (target/pgo-instrumented/),
#   2. a training run: a 3-node cluster on loopback, each node also serving RESP, driven by the
#      instrumented lcache-bench over gRPC and over RESP with a mix of workloads (below) that is
#      deliberately not the benchmarks' own scenarios (sizes, read ratios and skew all differ),
#   3. the optimised build of both with that profile (target/pgo/production/).
#
# The training is skipped when its profile is newer than the instrumented binaries (nothing
# changed since it ran). Needs rustup's llvm-tools (for llvm-profdata; installed if missing).
# Everything it starts listens on loopback and is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
INSTRUMENTED=$TARGET/pgo-instrumented
OPTIMISED=$TARGET/pgo
DATA=$TARGET/pgo-data
# RUSTFLAGS replaces `build.rustflags` of .cargo/config.toml, so its flags are repeated here.
WORKSPACE_FLAGS="--cfg tokio_unstable"
grep -q '"--cfg", "tokio_unstable"' .cargo/config.toml ||
    { echo "build-pgo: .cargo/config.toml's rustflags changed; update WORKSPACE_FLAGS" >&2; exit 1; }
BINS=(-p lcache-node --bin lcache-node -p lcache-bench --bin lcache-bench)

log() { echo "build-pgo: $*" >&2; }

# --- llvm-profdata, from the toolchain's own LLVM ------------------------------------------------
host=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA_TOOL=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata
if [ ! -x "$PROFDATA_TOOL" ]; then
    log "installing rustup's llvm-tools (llvm-profdata)"
    rustup component add llvm-tools >&2
fi

# --- 1. instrumented build -----------------------------------------------------------------------
log "instrumented build (production profile)"
RUSTFLAGS="$WORKSPACE_FLAGS -Cprofile-generate=$DATA/raw" CARGO_TARGET_DIR=$INSTRUMENTED \
    cargo build --profile production -q "${BINS[@]}"
GEN_BIN=$INSTRUMENTED/production

# --- 2. training ---------------------------------------------------------------------------------
MERGED=$DATA/merged.profdata
if [ -f "$MERGED" ] && [ "$MERGED" -nt "$GEN_BIN/lcache-node" ] && [ "$MERGED" -nt "$GEN_BIN/lcache-bench" ]; then
    log "profile up to date: $MERGED"
else
    rm -rf "$DATA/raw"
    mkdir -p "$DATA/raw"
    # shellcheck source=lib/servers.sh
    source "$ROOT/scripts/lib/servers.sh"
    grpc=()
    resp=()
    for _ in a b c; do
        free_port 17401
        grpc+=("$PORT")
        free_port 16401
        resp+=("$PORT")
    done
    peers="a=127.0.0.1:${grpc[0]},b=127.0.0.1:${grpc[1]},c=127.0.0.1:${grpc[2]}"
    i=0
    for id in a b c; do
        start "$id" "${grpc[$i]}" env LLVM_PROFILE_FILE="$DATA/raw/node-%p-%m.profraw" \
            "$GEN_BIN/lcache-node" --node-id "$id" --listen "127.0.0.1:${grpc[$i]}" \
            --resp-listen "127.0.0.1:${resp[$i]}" --peers "$peers" --group "default:budget=256MiB"
        wait_listening "${resp[$i]}" "$id" "$STARTED"
        i=$((i + 1))
    done

    log "training run (3 nodes; gRPC and RESP; 4 workloads)"
    LLVM_PROFILE_FILE="$DATA/raw/bench-%p-%m.profraw" "$GEN_BIN/lcache-bench" --quiet \
        --target "grpc=lcache://127.0.0.1:${grpc[0]},127.0.0.1:${grpc[1]},127.0.0.1:${grpc[2]}" \
        --target "resp=resp://127.0.0.1:${resp[0]}" \
        --scenario dist=zipf:0.8,value=1KiB,read=0.7 \
        --scenario dist=uniform,value=300,read=0.5 \
        --scenario dist=zipf:1.1,value=40,read=0.95 \
        --scenario dist=uniform,value=16KiB,read=0.8 \
        --connections 16 --keys 20000 --duration 2s --warmup 500ms --rounds 1 --seed 11 \
        >"$WORK/bench.log" 2>&1 || { log "training run failed"; cat "$WORK/bench.log" >&2; exit 1; }

    # A node writes its profile when it exits: SIGTERM is its graceful shutdown.
    for pid in "${PIDS[@]}"; do kill -TERM "$pid"; done
    for pid in "${PIDS[@]}"; do
        wait "$pid" || { log "a training node did not exit cleanly"; cat "$WORK"/*.log >&2; exit 1; }
    done
    PIDS=()
    "$PROFDATA_TOOL" merge -o "$MERGED" "$DATA"/raw/*.profraw
fi

# --- 3. optimised build --------------------------------------------------------------------------
# The profile's content is in its path, so a new profile is a new RUSTFLAGS and cargo rebuilds.
sum=$(sha256sum "$MERGED" | cut -c1-16)
PROFILE=$DATA/lcache-$sum.profdata
[ -f "$PROFILE" ] || cp "$MERGED" "$PROFILE"
find "$DATA" -maxdepth 1 -name 'lcache-*.profdata' ! -path "$PROFILE" -delete
log "optimised build with $PROFILE"
RUSTFLAGS="$WORKSPACE_FLAGS -Cprofile-use=$PROFILE" CARGO_TARGET_DIR=$OPTIMISED \
    cargo build --profile production -q "${BINS[@]}"
echo "$OPTIMISED/production"
