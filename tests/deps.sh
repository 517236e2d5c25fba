#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages stockade's build, examples and tests need.
# Idempotent; run as root. The Rust toolchain itself comes from rustup (Debian's cargo is
# too old for the crates stockade uses).
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "tests/deps.sh: run as root (it uses apt-get)" >&2; exit 1; }

packages=(
  build-essential pkg-config   # crates that compile C
  libseccomp-dev               # the seccomp filter is compiled with libseccomp
  util-linux                   # setpriv, unshare, nsenter (tests run stockade as nobody)
  procps                       # ps, pgrep in test diagnostics
  redis-server redis-tools     # examples/redis.toml and its test
  bubblewrap time python3      # tests/bench/run.sh: bwrap is the launch peer, abab.py times
  libmemcached-tools           # memcaslap: the memcached row of tests/bench/run.sh
  systemd dbus                 # the systemd test bed boots a real systemd in namespaces
  nginx memcached postgresql   # the shipped daemon profiles are tested with the real daemons
  curl jq bc                   # clients in tests, figures in the benchmark
  libcap2-bin                  # setcap: the escape suite execs a file-capability binary
  bsdutils                     # script(1): a pseudo-terminal for the log-colour test
  prometheus                   # promtool: the metrics test checks stockade's exposition with it
  crun                         # the exported OCI bundles run with crun in tests/integration/export.rs
  rpm makepkg lintian          # packaging/check-packages.sh: rpmbuild, makepkg, lintian
  pacman-package-manager       # makepkg looks up pacman at start, and Debian's makepkg does not depend on it
  libarchive-tools             # bsdtar, which makepkg packs with
  nftables iproute2            # bridge networks: nft -j for stockade's table; ip -j in the network tests
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the packaged redis-server from starting on the host.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # Only its promtool is wanted: the server is not enabled for a systemd that boots here.
  systemctl disable --quiet prometheus.service 2>/dev/null || true
fi
