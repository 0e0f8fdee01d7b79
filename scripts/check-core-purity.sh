#!/usr/bin/env bash
# Fails if lcache-core (the sans-IO core) depends on an async runtime, a network stack or etcd,
# or if its sources read a clock, ambient randomness or do IO.
set -euo pipefail
cd "$(dirname "$0")/.."

tree=$(cargo tree -p lcache-core -e normal --prefix none --locked)
forbidden='^(tokio|tonic|hyper|h2|etcd-client|turmoil|mio|async-std|futures) '
if bad=$(printf '%s\n' "$tree" | grep -E "$forbidden"); then
  echo "lcache-core must stay sans-IO, but its dependency tree contains:" >&2
  printf '%s\n' "$bad" | sort -u >&2
  exit 1
fi

if hits=$(grep -rnE 'Instant::now\(|SystemTime::now\(|thread_rng\(|rand::random|std::net::|std::fs::|async fn|\.await' core/src); then
  echo "lcache-core sources read a clock, ambient randomness, do IO or async:" >&2
  printf '%s\n' "$hits" >&2
  exit 1
fi
echo "lcache-core is sans-IO: $(printf '%s\n' "$tree" | sort -u | wc -l) crates in its normal tree, none forbidden"
