#!/usr/bin/env bash
# The benchmark of issue 15: every row of its table that can be measured here, each against
# its peer measured in the same run, interleaved A B A B (tests/bench/abab.py), with the
# ratio and the target; rows that need what is not built are printed as "not measured".
# Prints figures, asserts nothing; about 10 minutes in full, under a minute with --smoke.
#
#   sudo tests/bench/run.sh [--smoke] [ROUNDS]
#
# STOCKADE=path benchmarks another binary (default: a release build made here, as the
# package makes it). --smoke runs 10 rounds of each row, to keep the script working.
# Rows: host launch and peak RSS (vs bwrap, same mounts); launch with a scope in the
# systemd bed (vs systemd-run --scope); launch under stockade@.service (vs systemctl start
# of a plain unit); 200 launches at once in the bed; redis-benchmark in the redis profile
# (vs bare redis-server); memcached under memcaslap (vs bare memcached).
set -euo pipefail
cd "$(dirname "$0")/../.."

smoke=
[ "${1:-}" = --smoke ] && { smoke=1; shift; }
[ "$(id -u)" = 0 ] || { echo "run.sh: run as root" >&2; exit 1; }
for tool in bwrap:bubblewrap /usr/bin/time:time /usr/bin/python3:python3 redis-benchmark:redis-tools; do
  command -v "${tool%%:*}" >/dev/null || { echo "run.sh: missing ${tool%%:*} (apt-get install ${tool#*:})" >&2; exit 1; }
done
stockade=${STOCKADE:-$PWD/target/release/stockade}
if [ -z "${STOCKADE:-}" ] && [ "${1:-}" != --in-bed ]; then
  # Built as the package builds it (libseccomp linked statically when possible).
  . packaging/static-seccomp.sh; cargo build --release --quiet
fi
abab=$PWD/tests/bench/abab.py

profiles() {
  local dir=$1
  cat > "$dir/bench.toml" <<'TOML'
[exec]
command = ["/bin/true"]
[filesystem]
read_only = true
private_tmp = true
private_dev = true
proc = true
[security]
landlock = { read = ["/usr", "/lib", "/lib64", "/etc"], exec = ["/bin", "/usr/bin", "/usr/lib", "/lib"] }
TOML
  # Every namespace and these mounts are stockade's defaults, and so are the seccomp
  # baseline and protect_kernel's masks; bench.toml only adds landlock.
  { cat "$dir/bench.toml"; printf '[systemd]\nmode = "scope"\n'; } > "$dir/scope.toml"
  sed 's#"/bin/true"#"/bin/sleep", "4"#' "$dir/scope.toml" > "$dir/sleep.toml"
}

if [ "${1:-}" = --in-bed ]; then
  # Inside tests/systemd/bed.sh: the rows that need a real systemd.
  dir=$2 rounds=$3 stockade=$4 smoke=$5
  # The bed has no cgroup controllers on a v1/v2 hybrid host: limits cannot be set there,
  # and stockade refuses a limit it cannot enforce. systemd-run accepts them regardless.
  echo "## launch with a scope (target <= 0.75x systemd-run --scope -p MemoryMax=256M -p TasksMax=32 /bin/true)"
  "$abab" --rounds "$rounds" --rss-rounds 0 \
    "stockade run, scope=$stockade run --name bench-$$ $dir/scope.toml" \
    "systemd-run --scope (no -p)=systemd-run --quiet --scope /bin/true" \
    "systemd-run --scope -p MemoryMax -p TasksMax=systemd-run --quiet --scope -p MemoryMax=256M -p TasksMax=32 /bin/true"

  echo
  echo "## launch under stockade@.service (target <= 1.10x systemctl start of a plain unit)"
  mkdir -p /etc/stockade/profiles
  cp "$dir/bench.toml" /etc/stockade/profiles/bench.toml
  sed "s#/usr/bin/stockade#$stockade#" units/stockade@.service > /etc/systemd/system/stockade@.service
  cp units/stockade.slice /etc/systemd/system/
  printf '[Service]\nType=oneshot\nExecStart=/bin/true\nSlice=stockade.slice\n' > /etc/systemd/system/bench-plain.service
  systemctl daemon-reload
  # stockade@ is Type=notify: start returns once the service has exec'd, and /bin/true ends
  # at once; the plain unit is a oneshot, whose start returns when /bin/true has ended.
  "$abab" --rounds "$rounds" --rss-rounds 0 \
    "systemctl start stockade@bench=systemctl start stockade@bench.service" \
    "systemctl start plain=systemctl start bench-plain.service"

  echo
  n=200; [ -n "$smoke" ] && n=20
  echo "## $n sandboxes started at once (scope mode, each a sleep; target p99 <= 10x one alone, all start)"
  "$PWD/tests/bench/many.py" "$stockade" "$dir/sleep.toml" "$n"
  echo
  n=1000; [ -n "$smoke" ] && n=20
  echo "## $n start/stop cycles, one at a time (target: no growth between cycle 10 and $n)"
  "$PWD/tests/bench/many.py" --cycles "$stockade" "$dir/scope.toml" "$n"
  exit 0
fi

rounds=${1:-200}; [ -n "$smoke" ] && rounds=10
mkdir -p target
# Inside the repo, so the systemd test bed (which has its own /tmp) sees it too.
dir=$(mktemp -d "$PWD/target/bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
profiles "$dir"

echo "# stockade benchmark $(date -u +%FT%TZ)"
echo "# machine: kernel $(uname -r), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load $(cut -d' ' -f1-3 /proc/loadavg), $(systemd --version 2>/dev/null | head -1 || echo 'no systemd')"
echo "# stockade $("$stockade" --version 2>/dev/null | head -1), $(git rev-parse --short HEAD 2>/dev/null)"
echo
echo "## host launch, default hardening + landlock, /bin/true (target <= 0.90x bwrap --unshare-all, same mounts)"
echo "## peak RSS of the largest process (target <= 1.3x bwrap)"
bwrap_cmd="bwrap --unshare-all --unshare-user --uid 0 --gid 0 --die-with-parent --new-session --ro-bind / / --proc /proc --dev /dev --tmpfs /tmp --tmpfs /var/tmp --hostname bench /bin/true"
"$abab" --rounds "$rounds" --rss-rounds "$([ -n "$smoke" ] && echo 4 || echo 20)" \
  "stockade run=$stockade run --name bench-$$ $dir/bench.toml" "bwrap=$bwrap_cmd"

echo
echo "## the same sandbox applied by systemd itself (target <= 1.00x)"
echo "  not measured: stockade export --format systemd does not exist yet"

echo
# The bed starts its commands with a clean environment: what they need goes as arguments.
tests/systemd/bed.sh run -- "$PWD/tests/bench/run.sh" --in-bed "$dir" "$([ -n "$smoke" ] && echo 10 || echo 100)" "$stockade" "$smoke"

echo
echo "## redis-benchmark SET/GET, 50 clients, loopback (target >= 0.98x bare redis-server)"
STOCKADE="$stockade" tests/bench/daemons.sh redis "$([ -n "$smoke" ] && echo 2 || echo 10)"
echo
echo "## memcached under memcaslap, 50 clients (target >= 0.98x bare memcached)"
STOCKADE="$stockade" tests/bench/daemons.sh memcached "$([ -n "$smoke" ] && echo 2 || echo 10)"
