#!/usr/bin/env bash
# Runs LCache's whole test suite on a fresh machine: installs what the tests need, then tests
# every crate of the workspace. This is the test command README.md gives, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; install a Rust toolchain (https://rustup.rs) first" >&2
  exit 2
fi

cargo test --workspace --all-targets --locked
# Doc tests are not part of --all-targets.
cargo test --workspace --doc --locked
