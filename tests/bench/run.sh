#!/usr/bin/env bash
# The benchmark of issue 15: every row of its table, each against its peer measured in the
# same run, interleaved A B A B (tests/bench/abab.py), with the ratio and the target.
# Prints figures, asserts nothing; about 10 minutes in full (8.5 here, the VM rows included),
# a few minutes with --smoke.
#
#   sudo tests/bench/run.sh [--smoke] [ROUNDS]
#
# STOCKADE=path benchmarks another binary (default: a release build made here, as the
# package makes it). --smoke runs 10 rounds of each row, to keep the script working.
# ROWS="host bed many cycles redis memcached vm" (the default: all) picks rows:
#   host       host launch and peak RSS (vs bwrap, same mounts)
#   bed        in the systemd bed (tests/systemd/bed.sh): launch with a scope (vs
#              systemd-run --scope), under stockade@.service (vs systemctl start of a plain
#              unit) and vs the unit `stockade export --format systemd` writes
#   many       200 launches at once in the bed;  cycles: 1,000 start/stop cycles there
#   redis      redis-benchmark in the redis profile (vs bare redis-server, and bare in a
#              session of its own)
#   memcached  memcaslap against the memcached profile (the same two peers)
#   stages     (not in the default) where a host launch's time goes, stage by stage, for
#              stockade and bwrap (tests/bench/stages.py, perf tracepoints and strace)
#   vm         in the VM (tests/vm/vm.sh: pure cgroup v2, controllers, systemd as pid 1):
#              the scope, stockade@ and export rows again, with MemoryMax and TasksMax set
#              on both sides (the bed has no controllers, so limits cannot be set there)
set -euo pipefail
cd "$(dirname "$0")/../.."

smoke=
[ "${1:-}" = --smoke ] && { smoke=1; shift; }
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root" >&2; exit 1; }
for tool in bwrap:bubblewrap /usr/bin/time:time /usr/bin/python3:python3 redis-benchmark:redis-tools; do
  command -v "${tool%%:*}" >/dev/null || { echo "run.sh: missing ${tool%%:*} (apt-get install ${tool#*:})" >&2; exit 1; }
done
stockade=${STOCKADE:-$PWD/target/release/stockade}
case "${1:-}" in --in-bed|--in-vm) ;; *)
  if [ -z "${STOCKADE:-}" ]; then
    # Built as the package builds it (packaging/release-build.sh).
    packaging/release-build.sh --quiet
  fi
esac
abab=$PWD/tests/bench/abab.py
rows=" ${ROWS:-host bed many cycles redis memcached vm} "
want() { [[ $rows == *" $1 "* ]]; }
# The host row's peer: every namespace, the same mounts as bench.toml.
bwrap_cmd="/usr/bin/bwrap --unshare-all --unshare-user --uid 0 --gid 0 --die-with-parent --new-session --ro-bind / / --proc /proc --dev /dev --tmpfs /tmp --tmpfs /var/tmp --hostname bench /bin/true"

profiles() {
  local dir=$1
  cp tests/bench/bench.toml "$dir/bench.toml"
  { cat "$dir/bench.toml"; printf '[systemd]\nmode = "scope"\n'; } > "$dir/scope.toml"
  sed 's#"/bin/true"#"/bin/sleep", "4"#' "$dir/scope.toml" > "$dir/sleep.toml"
  # The same with the limits of the issue's rows, for the VM (where they can be enforced).
  { cat "$dir/bench.toml"; printf '[resources]\nmemory_max = "256M"\ntasks_max = 32\n'; } > "$dir/limits.toml"
  { cat "$dir/limits.toml"; printf '[systemd]\nmode = "scope"\n'; } > "$dir/scope-limits.toml"
}

# The stockade@ and export rows, in whichever systemd this runs under. PROFILE is installed
# as /etc/stockade/profiles/bench.toml; LIMITS are the plain unit's directives for the
# same limits (empty where none are set).
unit_rows() {
  local profile=$1 rounds=$2 limits=$3
  mkdir -p /etc/stockade/profiles
  cp "$profile" /etc/stockade/profiles/bench.toml
  sed "s#/usr/bin/stockade#$stockade#" units/stockade@.service > /etc/systemd/system/stockade@.service
  cp units/stockade.slice /etc/systemd/system/
  printf '[Service]\nType=oneshot\nExecStart=/bin/true\nSlice=stockade.slice\n%b' "$limits" > /etc/systemd/system/bench-plain.service
  # The floor of any tool that builds the sandbox itself inside a unit: the same unit
  # running bwrap with the host row's sandbox.
  printf '[Service]\nType=oneshot\nExecStart=%s\nSlice=stockade.slice\n%b' "$bwrap_cmd" "$limits" > /etc/systemd/system/bench-bwrap.service
  "$stockade" -q export --format systemd /etc/stockade/profiles/bench.toml 2>/dev/null > /etc/systemd/system/bench-export.service
  systemctl daemon-reload
  echo "## launch under stockade@.service (target <= 1.10x systemctl start of a plain unit${limits:+ with the same limits})"
  # stockade@ is Type=notify: start returns once the service has exec'd, and /bin/true ends
  # at once; the plain unit is a oneshot, whose start returns when /bin/true has ended.
  "$abab" --rounds "$rounds" --rss-rounds 0 \
    "systemctl start stockade@bench=systemctl start stockade@bench.service" \
    "systemctl start bwrap in a oneshot=systemctl start bench-bwrap.service" \
    "systemctl start plain=systemctl start bench-plain.service"
  echo
  echo "## the same sandbox applied by systemd itself (target: stockade@bench <= 1.00x the unit export writes)"
  # The exported unit is Type=exec: its start returns once /bin/true has been exec'd, as
  # stockade@'s does (READY=1 after the exec); both start through systemctl into the same
  # slice, so stockade@ is the fair peer of the unit (a bare `stockade run` is not started
  # by systemd, and its scope job is not the unit's).
  "$abab" --rounds "$rounds" --rss-rounds 0 \
    "systemctl start stockade@bench=systemctl start stockade@bench.service" \
    "systemctl start exported=systemctl start bench-export.service"
}

if [ "${1:-}" = --in-vm ]; then
  # Inside tests/vm/vm.sh: pure cgroup v2 with the memory and pids controllers, systemd 252
  # as pid 1. TCG (no hardware virtualisation here) makes every launch several times slower,
  # on both sides alike: read the ratios, not the milliseconds.
  dir=$2 rounds=$3 stockade=$4
  echo "# in the VM: kernel $(uname -r), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
  echo "## launch with a scope and limits (target <= 0.75x systemd-run --scope -p MemoryMax=256M -p TasksMax=32 /bin/true)"
  "$abab" --rounds "$rounds" --rss-rounds 0 \
    "stockade run, scope + limits=$stockade run --name bench-vm $dir/scope-limits.toml" \
    "systemd-run --scope -p MemoryMax -p TasksMax=systemd-run --quiet --scope -p MemoryMax=256M -p TasksMax=32 /bin/true"
  echo
  unit_rows "$dir/limits.toml" "$rounds" 'MemoryMax=256M\nTasksMax=32\n'
  exit 0
fi

if [ "${1:-}" = --in-bed ]; then
  # Inside tests/systemd/bed.sh: the rows that need a real systemd.
  dir=$2 rounds=$3 stockade=$4 smoke=$5
  if want bed; then
    # The bed has no cgroup controllers on a v1/v2 hybrid host: limits cannot be set there,
    # and stockade refuses a limit it cannot enforce. systemd-run accepts them regardless
    # (the VM rows set them on both sides).
    echo "## launch with a scope (target <= 0.75x systemd-run --scope -p MemoryMax=256M -p TasksMax=32 /bin/true)"
    "$abab" --rounds "$rounds" --rss-rounds 0 \
      "stockade run, scope=$stockade run --name bench-$$ $dir/scope.toml" \
      "systemd-run --scope (no -p)=systemd-run --quiet --scope /bin/true" \
      "systemd-run --scope -p MemoryMax -p TasksMax=systemd-run --quiet --scope -p MemoryMax=256M -p TasksMax=32 /bin/true"
    echo
    unit_rows "$dir/bench.toml" "$rounds" ''
    echo
  fi
  if want many; then
    n=200; [ -n "$smoke" ] && n=20
    echo "## $n sandboxes started at once (scope mode, each a sleep; target p99 <= 10x one alone, all start)"
    "$PWD/tests/bench/many.py" "$stockade" "$dir/sleep.toml" "$n"
    echo
  fi
  if want cycles; then
    n=1000; [ -n "$smoke" ] && n=20
    echo "## $n start/stop cycles, one at a time (target: no growth between cycle 10 and $n)"
    "$PWD/tests/bench/many.py" --cycles "$stockade" "$dir/scope.toml" "$n"
  fi
  exit 0
fi

rounds=${1:-200}; [ -n "$smoke" ] && rounds=10
mkdir -p target
# Inside the repo, so the systemd test bed (which has its own /tmp) and the VM see it too.
dir=$(mktemp -d "$PWD/target/bench.XXXXXX")
chmod 755 "$dir"
trap 'rm -rf "$dir"' EXIT
profiles "$dir"

echo "# stockade benchmark $(date -u +%FT%TZ)"
echo "# machine: kernel $(uname -r), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load $(cut -d' ' -f1-3 /proc/loadavg), $(systemd --version 2>/dev/null | head -1 || echo 'no systemd')"
echo "# stockade $("$stockade" --version 2>/dev/null | head -1), $(git rev-parse --short HEAD 2>/dev/null)"
echo
if want host; then
  echo "## host launch, default hardening + landlock, /bin/true (target <= 0.90x bwrap --unshare-all, same mounts)"
  echo "## peak RSS of the largest process (target <= 1.3x bwrap)"
  "$abab" --rounds "$rounds" --rss-rounds "$([ -n "$smoke" ] && echo 4 || echo 20)" \
    "stockade run=$stockade run --name bench-$$ $dir/bench.toml" "bwrap=$bwrap_cmd"
  echo
fi

if want stages; then
  echo "## where a host launch's time goes, by stage (tests/bench/stages.py)"
  n=$([ -n "$smoke" ] && echo 3 || echo 20)
  tests/bench/stages.py --perf --rounds "$n" "stockade: host=$stockade run --name bench-$$ $dir/bench.toml" "bwrap=$bwrap_cmd"
  tests/bench/stages.py --rounds "$n" "stockade: host=$stockade run --name bench-$$ $dir/bench.toml" "bwrap=$bwrap_cmd"
  echo
fi

if want bed || want many || want cycles; then
  # The bed starts its commands with a clean environment: what they need goes as arguments.
  ROWS="$rows" tests/systemd/bed.sh run -- /usr/bin/env ROWS="$rows" "$PWD/tests/bench/run.sh" --in-bed "$dir" \
    "$([ -n "$smoke" ] && echo 10 || echo 100)" "$stockade" "$smoke"
  echo
fi

if want redis; then
  echo "## redis-benchmark SET/GET, 50 clients, loopback (target >= 0.98x bare redis-server)"
  STOCKADE="$stockade" tests/bench/daemons.sh redis "$([ -n "$smoke" ] && echo 2 || echo 10)"
  echo
fi
if want memcached; then
  echo "## memcached under memcaslap, 50 clients (target >= 0.98x bare memcached)"
  STOCKADE="$stockade" tests/bench/daemons.sh memcached "$([ -n "$smoke" ] && echo 2 || echo 10)"
  echo
fi

if want vm; then
  # TCG launches take about a second each: fewer rounds than on the host.
  vm_rounds=$([ -n "$smoke" ] && echo 4 || echo 30)
  tests/vm/vm.sh prepare
  VM_TIMEOUT=${VM_TIMEOUT:-1800} tests/vm/vm.sh run -- "$PWD/tests/bench/run.sh" --in-vm "$dir" "$vm_rounds" "$stockade"
fi
