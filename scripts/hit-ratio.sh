#!/usr/bin/env bash
# Hit ratio of LCache's store policies against libCacheSim's W-TinyLFU, S3-FIFO, SIEVE and ARC on
# the same generated traces; prints one markdown table (the one in README.md).
#
# Needs python3 with numpy and the PyPI package `libcachesim` (libCacheSim's C simulator behind
# Python bindings); installs libcachesim (which brings numpy) with pip when it is missing.
# Traces (about 400 MB, regenerated only when missing) go to target/hit-ratio/.
#
# Usage: bash scripts/hit-ratio.sh [--json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v python3 >/dev/null 2>&1; then
  echo "error: python3 is needed to generate the traces and run libCacheSim" >&2
  exit 2
fi
if ! python3 -c "import libcachesim, numpy" >/dev/null 2>&1; then
  echo "installing the PyPI package libcachesim (libCacheSim's Python bindings)" >&2
  python3 -m pip install --quiet "libcachesim==0.3.5"
fi
exec python3 scripts/hit_ratio.py --dir target/hit-ratio "$@"
