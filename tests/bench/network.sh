#!/usr/bin/env bash
# Bridge network benchmark: prints figures, asserts nothing. Runs inside the systemd test
# bed, in its own network namespace (all traffic stays there):
#   tests/systemd/bed.sh run -- tests/bench/network.sh [REQUESTS] [ROUNDS] [LAUNCH_ROUNDS]
#  1. redis-benchmark (SET and GET, 50 clients, REQUESTS each) in interleaved rounds (the
#     order turns every round: A B C, C B A, ...), ROUNDS of each (default 5), against redis
#     in a sandbox on the host's network (127.0.0.1:16600, the peer), and against one redis
#     in a bridge sandbox reached two ways: through its published port 127.0.0.1:16601
#     (DNAT in the output hook, route_localnet, masquerade, veth and bridge) and directly at
#     its bridge address 10.89.0.50:6379 (veth and bridge, no NAT: the floor the published
#     port cannot beat). Median requests per second of each, and the median of the per-round
#     ratios against the host network (target for the published port: >= 0.90).
#  2. Launch time of /bin/true in a sandbox with mode = "bridge" against mode = "none",
#     tests/bench/abab.py interleaved rounds (default 30): median ms and the ratio (target
#     <= 1.3), twice: joining a network another sandbox is on (the bridge exists), and
#     alone on it (the bridge is made and removed with every launch).
# STOCKADE=path picks the binary (default target/release/stockade, else target/debug).
# GAP=MS waits MS ms after each launch (abab.py --gap): the kernel's teardown of the last
# sandbox's namespace is then over before the next launch is timed. bed.sh clears the
# environment: pass these through env, `bed.sh run -- env GAP=50 tests/bench/network.sh`.
set -euo pipefail
cd "$(dirname "$0")/../.."
requests=${1:-100000}
rounds=${2:-5}
launch_rounds=${3:-30}
stockade=${STOCKADE:-$PWD/target/release/stockade}
[ -x "$stockade" ] || stockade=$PWD/target/debug/stockade
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT

redis='["/usr/bin/redis-server", "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]'
printf '[exec]\ncommand = %s\nargs_append = true\n[namespaces]\nnet = false\n' "$redis" > "$dir/host.toml"
printf '[exec]\ncommand = %s\n[network]\nmode = "bridge"\naddress = "10.89.0.50"\npublish = ["127.0.0.1:16601:6379"]\n' "$redis" > "$dir/bridge.toml"
"$stockade" -q run "$dir/host.toml" -- --port 16600 & pids+=($!)
"$stockade" -q run "$dir/bridge.toml" & pids+=($!)
targets=("host=127.0.0.1:16600" "direct=10.89.0.50:6379" "published=127.0.0.1:16601")
for t in "${targets[@]}"; do
  addr=${t#*=}
  for _ in $(seq 50); do [ "$(timeout 1 redis-cli -h "${addr%:*}" -p "${addr#*:}" ping 2>/dev/null)" = PONG ] && break; sleep 0.2; done
done
# One figure per run: the mean of SET's and GET's requests per second.
rps() { timeout 120 redis-benchmark -h "${1%:*}" -p "${1#*:}" -n "$requests" -c 50 -t set,get -q --csv | awk -F'"' '/SET|GET/ {s += $4; n++} END {printf "%.0f", s / n}'; }
: > "$dir/rps"
for r in $(seq "$rounds"); do
  order=("${targets[@]}")
  if [ $((r % 2)) = 0 ]; then order=("${targets[2]}" "${targets[1]}" "${targets[0]}"); fi
  for t in "${order[@]}"; do echo "$r ${t%%=*} $(rps "${t#*=}")" >> "$dir/rps"; done
done
python3 - "$dir/rps" "$requests" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, name, rps in rows:
    by.setdefault(name, {})[int(r)] = float(rps)
host = by["host"]
print(f"redis-benchmark, {len(host)} interleaved rounds of {sys.argv[2]} requests (SET+GET mean, 50 clients):")
for name, label in [("host", "host network, 127.0.0.1"), ("direct", "bridge address, no NAT"),
                    ("published", "published 127.0.0.1 port")]:
    v = by[name]
    ratios = [v[r] / host[r] for r in sorted(v)]
    print(f"  {label:28} median {statistics.median(v.values()):9.0f} rps"
          f"  ratio {statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f})")
PY

printf '[exec]\ncommand = ["/bin/true"]\n' > "$dir/none.toml"
printf '[exec]\ncommand = ["/bin/true"]\n[network]\nmode = "bridge"\n' > "$dir/br.toml"
launch() {
  python3 tests/bench/abab.py --rounds "$launch_rounds" --warmup 3 --rss-rounds 0 ${GAP:+--gap "$GAP"} \
    "bridge=$stockade -q run --name nb-bridge $dir/br.toml" "none=$stockade -q run --name nb-none $dir/none.toml"
}
echo "launch, mode bridge against mode none, joining a network that has a sandbox (the redis one):"
launch
for p in "${pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
pids=()
echo "launch, mode bridge against mode none, alone on its network (the bridge made and removed each time):"
launch
