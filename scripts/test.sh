#!/usr/bin/env bash
# Runs LCache's whole test suite on a fresh machine: installs what the tests need, then tests
# every crate of the workspace with every feature on. This is the test command README.md gives,
# and what CI runs.
#
# Needs beyond a Rust toolchain, installed here when missing (Debian, as root, with apt-get):
#   - protoc and the google/protobuf/*.proto includes: the `etcd` feature's etcd-client crate
#     compiles etcd's protos with them (protobuf-compiler, libprotobuf-dev);
#   - etcd: the etcd tests start their own private etcd servers (etcd-server, etcd-client);
#   - redis-cli and redis-benchmark: the RESP front door's test drives them (redis-tools).
#
# `bash scripts/test.sh --deps-only` installs those and exits (.ci/run does it before clippy).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; install a Rust toolchain (https://rustup.rs) first" >&2
  exit 2
fi

# --- test prerequisites: protoc and etcd -----------------------------------------------------
missing=()
if ! command -v protoc >/dev/null 2>&1; then
  missing+=(protobuf-compiler libprotobuf-dev)
elif [ -z "${PROTOC_INCLUDE:-}" ] && [ ! -e /usr/include/google/protobuf/descriptor.proto ] \
  && command -v apt-get >/dev/null 2>&1; then
  missing+=(libprotobuf-dev)
fi
if [ -z "${ETCD_BIN:-}" ] && ! command -v etcd >/dev/null 2>&1; then
  missing+=(etcd-server etcd-client)
fi
if ! command -v redis-cli >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
  missing+=(redis-tools)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing test prerequisites: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  else
    echo "error: the tests need ${missing[*]} (Debian package names); install them, e.g." >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    echo "or set ETCD_BIN to an etcd binary (protoc: see https://protobuf.dev/installation/)" >&2
    exit 2
  fi
fi
for tool in protoc etcd redis-cli redis-benchmark; do
  if [ "$tool" = etcd ] && [ -n "${ETCD_BIN:-}" ]; then continue; fi
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "error: $tool is still missing after installing ${missing[*]}" >&2
    exit 2
  fi
done
echo "test prerequisites: $(protoc --version); $("${ETCD_BIN:-etcd}" --version | head -n1); $(redis-cli --version)"
if [ "${1:-}" = "--deps-only" ]; then
  exit 0
fi

# --- the suite, every feature on (the etcd tests run against real etcd servers) ---------------
# etcd is installed now, so an etcd test that cannot find it fails instead of skipping.
export LCACHE_REQUIRE_ETCD=1
# redis-tools is installed now too: the redis-cli test must run, not skip.
export LCACHE_REQUIRE_REDIS_TOOLS=1
cargo test --workspace --all-targets --all-features --locked
# Doc tests are not part of --all-targets.
cargo test --workspace --doc --all-features --locked
# The core driven by plain threads and channels, no tokio: it checks itself and exits non-zero
# if a read missed the latest write or the loader ran more than once.
cargo run --locked -p lcache-core --example threads_cluster
# An application embedding LCache (README "Use LCache from Rust"): three in-process nodes with a
# loader over the application's own data; it checks its answers and that each key was loaded
# once, and exits non-zero otherwise.
cargo run --locked -p lcache-node --example embed
