#!/usr/bin/env bash
# Every check stockade's CI makes, in order: style, lints, unit tests, then the three tiers
# of integration tests. This is the README's test command; .ci/run calls it.
#   1. the host: real sandboxes (root, namespaces, mounts, landlock)
#   2. a real systemd booted in namespaces: D-Bus scopes, units, notify, journald, daemons
#   3. a VM with pure cgroup v2: limits enforced by the kernel, the .deb installed
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "tests/run-all.sh: the integration tests need root (sudo tests/run-all.sh)" >&2; exit 1; }

bash tests/deps.sh
start=$(date +%s)

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== unit tests and integration tests on the host (root, namespaces, mounts, landlock, escape suite)"
cargo build --locked --example escape-probe
cargo test --locked --bins --test integration
echo "== fuzzing the profile parser and merger (${FUZZ_SECONDS:-60} s)"
tests/fuzz.sh
echo "== systemd tier: a real systemd booted in namespaces (D-Bus, units, journald, daemons)"
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/systemd/bed.sh run --" \
  cargo test --locked --test systemd
echo "== packaging: the Debian package"
packaging/build-deb.sh
echo "== packaging: the RPM and the Arch package from the same binary, lintian of the .deb"
packaging/check-packages.sh
echo "== VM tier: pure cgroup v2, limits enforced (one boot for all checks)"
tests/vm/vm.sh prepare
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$PWD/tests/vm/vm.sh run --" VM_TIMEOUT=1200 \
  cargo test --locked --test vm -- --test-threads=1 --nocapture
echo "== all tiers passed in $(( $(date +%s) - start )) s"
