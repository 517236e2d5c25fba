#!/usr/bin/env bash
# Fuzzes the profile parser and merger (fuzz/fuzz_targets/profile.rs) for a bounded time,
# starting from the corpus in fuzz/corpus/profile. New inputs go to a scratch directory, so
# the run leaves the repository unchanged; a crash leaves its input in fuzz/artifacts/ and
# fails the run. The stable toolchain is used, with RUSTC_BOOTSTRAP for cargo fuzz's -Z flags.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
RUSTC_BOOTSTRAP=1 cargo fuzz run profile "$scratch" corpus/profile -- \
  -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$scratch.log" 2>&1 || status=$?
# libFuzzer's chatter stays in the log unless the run failed.
if [ "$status" != 0 ]; then cat "$scratch.log"; else grep -E "DONE|^stat::(number_of_executed_units|new_units_added)" "$scratch.log"; fi
rm -f "$scratch.log"
exit "$status"
