#!/usr/bin/env bash
# Launch benchmark: prints figures, asserts nothing.
#  1. On the host: `stockade run` of a minimal profile (every namespace, read-only root,
#     private /tmp and /dev, fresh /proc, landlock, the seccomp baseline, kernel masks)
#     against `bwrap --unshare-all` with the same mounts, in one hyperfine run; median ms,
#     ratio, and peak RSS of both; and stockade with an @system-service allow-list.
#  2. Inside a real systemd (tests/systemd/bed.sh): the same sandbox plus scope registration
#     over D-Bus against `systemd-run --scope /bin/true` alone.
# Usage: sudo tests/bench/launch.sh [RUNS]      (STOCKADE=path to use another binary)
set -euo pipefail
cd "$(dirname "$0")/../.."

[ "$(id -u)" = 0 ] || { echo "launch.sh: run as root" >&2; exit 1; }
for tool in hyperfine:hyperfine bwrap:bubblewrap /usr/bin/time:time jq:jq; do
  command -v "${tool%%:*}" >/dev/null || { echo "launch.sh: missing ${tool%%:*} (apt-get install ${tool#*:})" >&2; exit 1; }
done
stockade=${STOCKADE:-$PWD/target/release/stockade}
# Built as the package builds it (libseccomp linked statically when possible).
if [ -z "${STOCKADE:-}" ] && [ "${1:-}" != --in-bed ]; then
  . packaging/static-seccomp.sh; cargo build --release --quiet
fi
if [ "${1:-}" = --in-bed ]; then
  dir=$2
else
  # Inside the repo, so the systemd test bed (which has its own /tmp) sees it too.
  mkdir -p target
  dir=$(mktemp -d "$PWD/target/bench.XXXXXX")
  trap 'rm -rf "$dir"' EXIT
fi

[ -f "$dir/bench.toml" ] || cat > "$dir/bench.toml" <<'TOML'
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
# Every namespace and these mounts are stockade's defaults, and so are the seccomp baseline
# and protect_kernel's masks; this profile only adds landlock. A second profile swaps the
# baseline for the largest filter an admin is likely to write: systemd's @system-service.
[ -f "$dir/allow.toml" ] || { cat "$dir/bench.toml"; echo 'syscall_filter = ["@system-service"]'; } > "$dir/allow.toml"

bwrap_cmd="bwrap --unshare-all --unshare-user --uid 0 --gid 0 --die-with-parent --new-session --ro-bind / / --proc /proc --dev /dev --tmpfs /tmp --tmpfs /var/tmp --hostname bench /bin/true"

median_ms() { jq -r ".results[$1].median * 1000" "$2"; }
peak_rss() {
  local max=0 v
  for _ in $(seq 20); do
    /usr/bin/time -o "$dir/rss" -f %M "$@" >/dev/null 2>&1
    v=$(tail -1 "$dir/rss"); [ "$v" -gt "$max" ] && max=$v
  done
  echo "$max"
}

if [ "${1:-}" != --in-bed ]; then
  runs=${1:-300}
  echo "# stockade launch benchmark, $(date -u +%FT%TZ), kernel $(uname -r), $(nproc) cores"
  hyperfine -N --warmup 20 --runs "$runs" --export-json "$dir/host.json" \
    -n stockade "$stockade run $dir/bench.toml" -n bwrap "$bwrap_cmd" \
    -n stockade-allow-list "$stockade run $dir/allow.toml" >/dev/null
  s=$(median_ms 0 "$dir/host.json"); b=$(median_ms 1 "$dir/host.json"); a=$(median_ms 2 "$dir/host.json")
  rs=$(peak_rss "$stockade" run "$dir/bench.toml"); rb=$(peak_rss $bwrap_cmd)
  printf '%-34s %10s %14s\n' "" "median ms" "peak RSS KiB"
  printf '%-34s %10.2f %14s\n' "stockade run (baseline seccomp)" "$s" "$rs"
  printf '%-34s %10.2f\n' "stockade run (@system-service)" "$a"
  printf '%-34s %10.2f %14s\n' "bwrap --unshare-all" "$b" "$rb"
  printf 'ratio stockade/bwrap: %.2f, with the allow-list %.2f (target <= 1.00)\n' "$(echo "$s / $b" | bc -l)" "$(echo "$a / $b" | bc -l)"
  echo
  echo "# with a systemd scope, inside tests/systemd/bed.sh"
  STOCKADE="$stockade" tests/systemd/bed.sh run -- "$PWD/tests/bench/launch.sh" --in-bed "$dir" "$runs"
else
  runs=$3
  cat "$dir/bench.toml" > "$dir/scope.toml"
  printf '[systemd]\nmode = "scope"\n' >> "$dir/scope.toml"
  hyperfine -N --warmup 10 --runs "$runs" --export-json "$dir/bed.json" \
    -n stockade-scope "$stockade run $dir/scope.toml" -n systemd-run "systemd-run --quiet --scope /bin/true" >/dev/null
  s=$(median_ms 0 "$dir/bed.json"); r=$(median_ms 1 "$dir/bed.json")
  printf '%-34s %10.2f\n' "stockade run + scope" "$s"
  printf '%-34s %10.2f\n' "systemd-run --scope /bin/true" "$r"
  printf 'ratio stockade+scope/systemd-run: %.2f (target < 1.00)\n' "$(echo "$s / $r" | bc -l)"
fi
