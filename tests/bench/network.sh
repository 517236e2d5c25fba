#!/usr/bin/env bash
# Bridge network benchmark: prints figures, asserts nothing. Runs inside the systemd test
# bed, in its own network namespace (all traffic stays there):
#   tests/systemd/bed.sh run -- tests/bench/network.sh [REQUESTS] [RUNS]
#  1. redis-benchmark (SET and GET, 50 clients) against redis in a sandbox on the host's
#     network and against redis in a bridge sandbox through its published 127.0.0.1 port,
#     in one run; requests per second and the ratio bridge/host (target >= 0.90).
#  2. Launch time (hyperfine) of /bin/true in a sandbox with mode = "none" and "bridge";
#     median ms and the ratio (target <= 1.3).
# STOCKADE=path picks the binary (default target/release/stockade, else target/debug).
set -euo pipefail
cd "$(dirname "$0")/../.."
requests=${1:-100000}
runs=${2:-30}
stockade=${STOCKADE:-$PWD/target/release/stockade}
[ -x "$stockade" ] || stockade=$PWD/target/debug/stockade
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

redis='["/usr/bin/redis-server", "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]'
printf '[exec]\ncommand = %s\nargs_append = true\n[namespaces]\nnet = false\n' "$redis" > "$dir/host.toml"
printf '[exec]\ncommand = %s\n[network]\nmode = "bridge"\npublish = ["127.0.0.1:16601:6379"]\n' "$redis" > "$dir/bridge.toml"
"$stockade" -q run "$dir/host.toml" -- --port 16600 & pids+=($!)
"$stockade" -q run "$dir/bridge.toml" & pids+=($!)
for port in 16600 16601; do
  for _ in $(seq 50); do [ "$(timeout 1 redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break; sleep 0.2; done
done
rps() { redis-benchmark -p "$1" -n "$requests" -c 50 -t set,get -q --csv | awk -F'"' '/SET|GET/ {s += $4; n++} END {printf "%.0f", s / n}'; }
host=$(rps 16600)
bridge=$(rps 16601)
echo "redis-benchmark ($requests requests, SET+GET mean): host network $host rps, bridge published port $bridge rps, ratio $(echo "scale=3; $bridge / $host" | bc)"

printf '[exec]\ncommand = ["/bin/true"]\n' > "$dir/none.toml"
printf '[exec]\ncommand = ["/bin/true"]\n[network]\nmode = "bridge"\n' > "$dir/br.toml"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$dir/launch.json" \
  "$stockade -q run $dir/none.toml" "$stockade -q run $dir/br.toml" >/dev/null
none=$(jq '.results[0].median * 1000' "$dir/launch.json")
br=$(jq '.results[1].median * 1000' "$dir/launch.json")
printf 'launch median: mode none %.1f ms, bridge %.1f ms, ratio %.2f\n' "$none" "$br" "$(echo "scale=3; $br / $none" | bc)"
