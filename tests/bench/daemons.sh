#!/usr/bin/env bash
# Daemon throughput inside a shipped profile against the same daemon run bare: the same
# binary, command line, user and port, alternating bare/sandboxed and sandboxed/bare round
# by round (with a third side, the bare daemon in a session of its own: see below), on
# loopback only. Prints each side's median and the ratios against both bare sides, with
# the range of the per-round ratios (how noisy it was). Asserts nothing.
#
#   tests/bench/daemons.sh redis|memcached [ROUNDS]     (root; STOCKADE=path to the binary)
#
# redis: redis-benchmark SET and GET, 50 clients, 20000 requests each. memcached:
# memcaslap (libmemcached-tools), 50 concurrent clients on 2 threads, 50000 operations
# (its default mix, 9 get : 1 set). The profiles are the shipped ones with their
# [resources] removed (a v1/v2 hybrid host cannot enforce limits and stockade refuses a
# limit it cannot enforce), a volume and port of the benchmark's own so that nothing else
# running on this host is disturbed.
set -euo pipefail
cd "$(dirname "$0")/../.."
daemon=$1 rounds=${2:-10}
stockade=${STOCKADE:-$PWD/target/release/stockade}
dir=$(mktemp -d /tmp/stockade-daemons.XXXXXX)
chmod 755 "$dir"   # the bare daemon runs as its own user
server=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$dir"
  # The benchmark's own volume only.
  rm -rf /var/lib/stockade/volumes/bench-redis-data
}
trap cleanup EXIT
cp -r examples/include "$dir/"
# The profile without its [resources] table.
without_resources() { awk '/^\[/{skip = ($0 == "[resources]")} !skip' "$1"; }

case $daemon in
  redis)
    port=6479
    without_resources examples/redis.toml | sed 's/name = "redis-data"/name = "bench-redis-data"/' > "$dir/redis.toml"
    data=$dir/bare-data; mkdir "$data"; chown redis:redis "$data"
    # The profile's command line, with the bare server's data in a directory of its own.
    bare=(setpriv --reuid redis --regid redis --init-groups /usr/bin/redis-server /etc/redis/redis.conf
      --daemonize no --supervised no --logfile "" --pidfile "" --dir "$data" --appendonly yes
      --bind 127.0.0.1 --port "$port")
    sandboxed=("$stockade" run "$dir/redis.toml" -- --port "$port")
    up() { [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; }
    bench() {
      redis-benchmark -p "$port" -c 50 -n 20000 -t set,get --csv 2>/dev/null \
        | awk -F'"' '$2 == "SET" || $2 == "GET" {printf "%s %s\n", $2, $4}'
    }
    ;;
  memcached)
    port=11311
    without_resources examples/memcached.toml > "$dir/memcached.toml"
    bare=(setpriv --reuid memcache --regid memcache --init-groups /usr/bin/memcached -p "$port"
      -U 0 -l 127.0.0.1 -m 64 -c 1024)
    sandboxed=("$stockade" run "$dir/memcached.toml" -- -p "$port")
    up() { memcstat --servers="127.0.0.1:$port" >/dev/null 2>&1; }
    bench() {
      memcaslap -s "127.0.0.1:$port" -T 2 -c 50 -x 50000 2>/dev/null \
        | awk '/^Run time:/ {for (i = 1; i <= NF; i++) if ($i == "TPS:") print "ops/s", $(i + 1)}'
    }
    ;;
  *) echo "daemons.sh: redis or memcached" >&2; exit 2 ;;
esac

# One round of one side: start, wait until it answers (at most 10 s), measure, stop.
measure() {
  local side=$1; shift
  if up; then echo "daemons.sh: something else answers on port $port already" >&2; exit 1; fi
  "$@" >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 200); do up && break; sleep 0.05; done
  up || { echo "daemons.sh: $daemon ($side) did not answer on port $port" >&2; exit 1; }
  bench | sed "s/^/$side /" >> "$dir/results"
  kill "$server"; wait "$server" 2>/dev/null || true; server=
  # The port is free again before the next side starts.
  for _ in $(seq 100); do up || break; sleep 0.05; done
}
# A third side: the bare daemon in a session of its own, as a daemon started by systemd
# or one that daemonizes runs. stockade's service calls setsid(), and with
# kernel.sched_autogroup_enabled=1 a new session is a scheduling group of its own: the
# bare daemon started from this script shares one group with the benchmark client (and
# this script), the sandboxed one does not. The ratio against this side separates that
# scheduling difference from the sandbox's own cost.
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then
    measure bare "${bare[@]}"; measure bare-setsid setsid "${bare[@]}"; measure stockade "${sandboxed[@]}"
  else
    measure stockade "${sandboxed[@]}"; measure bare-setsid setsid "${bare[@]}"; measure bare "${bare[@]}"
  fi
done
/usr/bin/python3 - "$dir/results" "$rounds" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
tests = sorted({t for _, t, _ in rows})
print(f"  {sys.argv[2]} alternating rounds; requests per second, median")
for t in tests:
    box = [float(v) for s, tt, v in rows if s == "stockade" and tt == t]
    for side in ("bare", "bare-setsid"):
        bare = [float(v) for s, tt, v in rows if s == side and tt == t]
        per_round = [b / a for a, b in zip(bare, box)]
        print(f"  {t:6} {side:11} {statistics.median(bare):10.0f}   stockade {statistics.median(box):10.0f}"
              f"   ratio {statistics.median(box) / statistics.median(bare):.3f}"
              f"   (per round {min(per_round):.2f}-{max(per_round):.2f})")
PY
