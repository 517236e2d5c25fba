#!/usr/bin/env bash
# Builds target/release/stockade as the packages ship it (packaging/build-deb.sh, the
# benchmark tests/bench/run.sh). Against a plain `cargo build --release`, where the toolchain
# and the host allow each:
#   - libseccomp linked statically (Debian's libseccomp-dev has libseccomp.a): one shared
#     library less to map and relocate at every start, about 0.3 ms of a 7 ms launch.
#   - glibc linked statically (a static-pie: ASLR kept): no ld.so, libc.so and libgcc_s to
#     load and relocate at each launch. stockade calls nothing of glibc that loads modules
#     (no NSS lookups: it reads the sandbox's /etc/passwd itself, no iconv, no dlopen), so a
#     static glibc behaves as the shared one; what it costs is that a glibc security update
#     reaches stockade only with a rebuild (the Debian package says so in Built-Using).
#   - the launch's functions first in .text (packaging/link-ordered.sh, with v0 symbol
#     mangling so that the list's keys name single functions): what the kernel maps of the
#     binary at each launch shrinks to the code the launch runs.
# Measured in BENCH.md ("Peak RSS"). Distribution builds from source (packaging/PKGBUILD,
# packaging/stockade.spec) keep the plain build: linking is their policy.
#
# Set STOCKADE_PLAIN_RELEASE=1 for the plain build, LIBSECCOMP_LINK_TYPE yourself to override
# libseccomp's linking (dylib for distributions without libseccomp.a).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${LIBSECCOMP_LINK_TYPE:-}" ]; then
  libdir=$(pkg-config --variable=libdir libseccomp 2>/dev/null || true)
  if [ -n "$libdir" ] && [ -f "$libdir/libseccomp.a" ]; then
    export LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$libdir
  fi
fi

host=$(rustc -vV | sed -n 's/^host: //p')
args=(--release --locked)
if [ -z "${STOCKADE_PLAIN_RELEASE:-}" ] && [[ $host == *-linux-gnu ]]; then
  flags=()
  # A static glibc needs its libc.a (libc6-dev); gcc answers the bare name when it has none.
  case $(cc -print-file-name=libc.a) in /*) flags+=(-C target-feature=+crt-static) ;; esac
  # The order file is an lld option (rustc links with lld by default on x86_64 Linux since
  # 1.90); with another linker the build goes on without it.
  probe=$(mktemp -d)
  if echo 'fn main() {}' | rustc -o "$probe/p" -C link-arg=-Wl,--symbol-ordering-file=/dev/null - 2>/dev/null; then
    flags+=(-C symbol-mangling-version=v0)
    export "CARGO_TARGET_$(echo "$host" | tr 'a-z-' 'A-Z_')_LINKER=$PWD/packaging/link-ordered.sh"
  fi
  rm -rf "$probe"
  if [ ${#flags[@]} -gt 0 ]; then
    # --target: with +crt-static, cargo must build the proc-macros and build scripts for the
    # host without it, which it does only when the target is named.
    export RUSTFLAGS="${RUSTFLAGS:-} ${flags[*]}"
    cargo build "${args[@]}" --target "$host" "$@"
    # Where every script and package looks for it.
    mkdir -p target/release
    install -m 755 "target/$host/release/stockade" target/release/stockade
    exit 0
  fi
fi
cargo build "${args[@]}" "$@"
