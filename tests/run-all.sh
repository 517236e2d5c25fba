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
echo "== unit tests and integration tests on the host (root, namespaces, mounts, landlock)"
cargo test --locked --bins --test integration
echo "== systemd tier: tests inside a real systemd booted in namespaces (D-Bus, units, journald)"
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/systemd/bed.sh run --" \
  cargo test --locked --test systemd
