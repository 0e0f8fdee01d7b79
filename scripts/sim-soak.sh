#!/usr/bin/env bash
# Runs N seeds of the deterministic simulation (sim/) in release, split across parallel
# processes, and prints one summary line:
#
#   soak: seeds=N failures=F violated=S8:12,S9:3 seeds_per_minute=R sim_s_per_wall_s=X sim_s_per_seed=T requests_per_seed=Q
#
# then, for each failing seed, the command that replays it. A seed that aborts the whole test
# process counts as failed with CRASH; the seeds after it still run.
#
# Usage: scripts/sim-soak.sh [N] [FIRST_SEED]
#   N           seeds to run (default 300)
#   FIRST_SEED  first seed (default 0); seeds FIRST_SEED..FIRST_SEED+N-1 are run
# Environment:
#   SOAK_JOBS            parallel processes (default: the number of CPUs, at most 2)
#   LCACHE_SIM_MUTATION  run with a broken double (see sim/src/options.rs)
# Exit status: 0 when every seed passed, 1 otherwise, 2 on a usage or build error.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds="${1:-300}"
first="${2:-0}"
case "$seeds$first" in
  *[!0-9]*) echo "usage: $0 [N] [FIRST_SEED] (non-negative integers)" >&2; exit 2 ;;
esac
cpus="$(nproc 2>/dev/null || echo 1)"
jobs="${SOAK_JOBS:-$(( cpus < 2 ? cpus : 2 ))}"
if [ "$jobs" -lt 1 ]; then jobs=1; fi

# Build once, then run the test binary directly (no cargo lock contention between jobs).
build_log="$(mktemp)"
if ! cargo test --release --locked -p lcache-sim --all-features --test sim --no-run >"$build_log" 2>&1; then
  cat "$build_log" >&2
  rm -f "$build_log"
  exit 2
fi
bin="$(sed -n 's/^ *Executable tests\/sim.rs (\(.*\))$/\1/p' "$build_log" | tail -n1)"
rm -f "$build_log"
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
  echo "error: could not find the built simulation test binary" >&2
  exit 2
fi

out_dir="$(mktemp -d)"
trap 'rm -rf "$out_dir"' EXIT

# Runs seeds [from, from+count) into log $3; a seed that takes the whole process down (a panic
# in a destructor while a host's runtime shuts down aborts it) is reported as crashed and the
# range goes on after it.
run_range() {
  local from="$1" count="$2" log="$3" end=$(( $1 + $2 ))
  : >"$log"
  while [ "$from" -lt "$end" ]; do
    LCACHE_SIM_FIRST_SEED="$from" LCACHE_SIM_SEEDS="$(( end - from ))" RUST_BACKTRACE=0 \
      "$bin" sweep --exact --nocapture >>"$log" 2>/dev/null || true
    local last
    last="$(sed -n 's/^seed=\([0-9]*\) .*/\1/p' "$log" | tail -n1)"
    local next=$(( ${last:-$(( from - 1 ))} + 1 ))
    if [ "$next" -lt "$end" ]; then
      echo "seed=$next crashed=1 violated=CRASH" >>"$log"
      echo "replay: LCACHE_SIM_SEED=$next cargo test -p lcache-sim --test sim sweep -- --nocapture" >>"$log"
      next=$(( next + 1 ))
    fi
    from="$next"
  done
}

start_ns="$(date +%s%N)"
per_job=$(( (seeds + jobs - 1) / jobs ))
pids=()
for ((j = 0; j < jobs; j++)); do
  from=$(( first + j * per_job ))
  count=$(( seeds - j * per_job ))
  if [ "$count" -gt "$per_job" ]; then count="$per_job"; fi
  if [ "$count" -le 0 ]; then break; fi
  run_range "$from" "$count" "$out_dir/job$j.log" &
  pids+=("$!")
done
for pid in "${pids[@]}"; do
  wait "$pid" || true
done
end_ns="$(date +%s%N)"

cat "$out_dir"/job*.log >"$out_dir/all.log"
awk -v wall_ns="$(( end_ns - start_ns ))" '
  /^seed=[0-9]+ (trace_hash|crashed)=/ {
    ran++
    for (i = 1; i <= NF; i++) {
      split($i, kv, "=")
      if (kv[1] == "sim_secs") sim += kv[2]
      if (kv[1] == "requests") req += kv[2]
      if (kv[1] == "violated" && kv[2] != "") {
        failed++
        n = split(kv[2], props, ",")
        for (p = 1; p <= n; p++) count[props[p]]++
      }
    }
  }
  END {
    wall = wall_ns / 1e9
    list = ""
    for (p in count) list = list (list == "" ? "" : ",") p ":" count[p]
    if (list == "") list = "none"
    printf "soak: seeds=%d failures=%d violated=%s seeds_per_minute=%.1f sim_s_per_wall_s=%.1f sim_s_per_seed=%.1f requests_per_seed=%.0f\n",
      ran, failed, list, (wall > 0 ? ran * 60 / wall : 0), (wall > 0 ? sim / wall : 0), (ran > 0 ? sim / ran : 0), (ran > 0 ? req / ran : 0)
  }' "$out_dir/all.log"
grep '^replay: ' "$out_dir/all.log" | sort -u || true
if grep -q '^seed=[0-9]* .*violated=[A-Z]' "$out_dir/all.log"; then
  exit 1
fi
if ! grep -q '^seed=' "$out_dir/all.log"; then
  echo "error: no seed ran; last output:" >&2
  tail -n 20 "$out_dir/all.log" >&2
  exit 2
fi
