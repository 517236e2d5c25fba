#!/usr/bin/env bash
# Every check stockade's CI makes, in order: style, lints, unit tests, then the integration
# tests that start real sandboxes (root). This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "tests/run-all.sh: the integration tests need root (sudo tests/run-all.sh)" >&2; exit 1; }

bash tests/deps.sh

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== unit and integration tests (host tier)"
cargo test --locked
