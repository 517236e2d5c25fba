#!/usr/bin/env bash
# Builds the Debian package into target/debian/ (cargo-deb, metadata in Cargo.toml), with
# shell completions generated from the binary itself.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked --quiet cargo-deb
packaging/release-build.sh
mkdir -p target/completions
target/release/stockade completions bash > target/completions/stockade.bash
target/release/stockade completions zsh > target/completions/_stockade
target/release/stockade completions fish > target/completions/stockade.fish
# Stripped in the package (lintian: unstripped-binary-or-object is an error); target/release
# keeps its symbols for the benchmarks.
cargo deb --no-build --quiet
ls target/debian/*.deb
