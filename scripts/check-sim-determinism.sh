#!/usr/bin/env bash
# Fails on what would break a seeded replay of the simulation in code that runs under it (the
# node, transport, discovery and simulation sources): a `tokio::select!` whose first line is
# not `biased;` (its branch order would be random), or a read of the real clock
# (`std::time::Instant`, `SystemTime`) instead of tokio's, which turmoil drives.
set -euo pipefail
cd "$(dirname "$0")/.."

dirs=(node/src transport/src discovery/src sim/src)
status=0

unbiased=$(find "${dirs[@]}" -name '*.rs' -print0 | xargs -0 awk '
  /select![[:space:]]*\{/ { file = FILENAME; line = FNR; want = 1; next }
  want && NF { if ($0 !~ /^[[:space:]]*biased;/) print file ":" line ": tokio::select! without biased;"; want = 0 }
')
if [ -n "$unbiased" ]; then
  printf '%s\n' "$unbiased" >&2
  status=1
fi

if clock=$(grep -rnE 'std::time::(\{[^}]*)?Instant|SystemTime' "${dirs[@]}" --include='*.rs' \
    | grep -vE '^[^:]+:[0-9]+:[[:space:]]*//'); then
  echo "real-clock reads in code that runs under the simulation (use tokio::time):" >&2
  printf '%s\n' "$clock" >&2
  status=1
fi

if [ "$status" -eq 0 ]; then
  echo "simulated code: every tokio::select! is biased, no real-clock reads"
fi
exit "$status"
