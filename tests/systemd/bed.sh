#!/usr/bin/env bash
# Boots a real systemd as pid 1 of new pid+mount+cgroup+uts+ipc+net namespaces, runs a
# command inside it (systemctl, busctl, journalctl and stockade all talk to that systemd),
# then stops it and removes everything it made. Nothing is written to the host: the
# container's root is the host's / under an overlay whose writable layer is a tmpfs.
#
#   tests/systemd/bed.sh run -- CMD [ARGS...]     exit status is CMD's
#
# BED_UNITS_DIR=DIR copies unit files into the container's /etc/systemd/system first;
# BED_VERBOSE=1 shows systemd's console. The current directory (the repo, with its
# target/ directory) is visible inside at the same path, read-write.
set -euo pipefail

die() { echo "bed.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root"
[ "${1:-}" = run ] && [ "${2:-}" = -- ] && [ $# -ge 3 ] || die "usage: bed.sh run -- CMD [ARGS...]"
shift 2

unified=/sys/fs/cgroup/unified
[ -f "$unified/cgroup.procs" ] || unified=/sys/fs/cgroup
state=$(mktemp -d /run/stockade-bed.XXXXXX)
cg="$unified/stockade-bed-$$"
workdir=$PWD

inner() {
  # Runs as pid 1 of the new namespaces, then becomes systemd.
  set -euo pipefail
  local root=$state/root
  # A tmpfs holds the overlay's writable layer, so the host's disk is never written.
  mount -t tmpfs -o mode=0755 bed "$state"
  mkdir -p "$state"/{upper,work,root}
  mount -t overlay overlay -o "lowerdir=/,upperdir=$state/upper,workdir=$state/work" "$root"
  # The host's /.dockerenv would make systemd think it runs under docker.
  rm -f "$root/.dockerenv"
  mount -t proc proc "$root/proc"
  mount -o bind,ro /proc/sys "$root/proc/sys" 2>/dev/null || true
  mount -t sysfs -o ro sysfs "$root/sys"
  mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"
  mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run"
  mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/tmp"
  # A second, fully visible procfs: the kernel refuses a new procfs (stockade's, inside a
  # user namespace) while every procfs in the mount namespace is partly covered.
  mkdir -p "$root/run/bed-proc" && mount -t proc proc "$root/run/bed-proc"
  mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
  for d in null zero full random urandom tty; do
    touch "$root/dev/$d" && mount --bind "/dev/$d" "$root/dev/$d"
  done
  mkdir -p "$root/dev/pts" "$root/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
  ln -s pts/ptmx "$root/dev/ptmx"
  mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
  # The repo (with target/) stays writable and shared with the host, at the same path.
  # (Its mount point may lie on one of the tmpfs mounts above, /tmp for a clone in /tmp.)
  mkdir -p "$root$workdir"
  mount --rbind "$workdir" "$root$workdir"
  local units=$root/etc/systemd/system
  # Only what the tests need: journald and the bus. The host's enabled services
  # (postgres, redis, ...) must not start here.
  cat > "$units/stockade-bed.target" <<'UNIT'
[Unit]
Description=stockade test bed
Requires=systemd-journald.socket systemd-journald.service dbus.socket dbus.service
After=systemd-journald.service dbus.service
AllowIsolate=yes
UNIT
  if [ -n "${BED_UNITS_DIR:-}" ]; then cp "$BED_UNITS_DIR"/* "$units/"; fi
  echo "stockade-bed" > "$root/etc/hostname"
  hostname stockade-bed
  cd "$root"
  mkdir -p .oldroot
  pivot_root . .oldroot
  umount -l /.oldroot
  rmdir /.oldroot
  local out=/dev/null
  [ -n "${BED_VERBOSE:-}" ] && out=/dev/stderr
  exec env -i container=stockade-bed PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /usr/lib/systemd/systemd --system --unit=stockade-bed.target --log-target=console >"$out" 2>&1
}

pid=""
cleanup() {
  local rc=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -s RTMIN+4 "$pid" 2>/dev/null || true   # systemd's "exit now"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  # Back to the root cgroup, then remove what systemd left below ours, deepest first.
  echo $$ > "$unified/cgroup.procs" 2>/dev/null || true
  if [ -d "$cg" ]; then
    echo 1 > "$cg/cgroup.kill" 2>/dev/null || true
    for _ in $(seq 100); do
      find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [ -d "$cg" ] || break
      sleep 0.05
    done
  fi
  rmdir "$state" 2>/dev/null || rm -rf "$state"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Our own cgroup, so the container's cgroup namespace is rooted there and its systemd
# manages only this subtree.
mkdir "$cg"
echo $$ > "$cg/cgroup.procs"
export state workdir BED_UNITS_DIR="${BED_UNITS_DIR:-}" BED_VERBOSE="${BED_VERBOSE:-}"
export -f inner
unshare --pid --fork --mount --uts --ipc --net --cgroup --propagation private --kill-child \
  bash -c inner &
ushare=$!
# The container's pid 1 as the host sees it: unshare's only child.
for _ in $(seq 200); do
  pid=$(cat "/proc/$ushare/task/$ushare/children" 2>/dev/null | awk '{print $1}')
  [ -n "$pid" ] && break
  sleep 0.01
done
[ -n "$pid" ] || die "the container did not start"
# The script itself leaves the container's cgroup, which systemd will own.
echo $$ > "$unified/cgroup.procs"

# nsenter's --wd resolves the directory before entering the mount namespace, which leaves a
# working directory the new root cannot reach; change into it from inside instead.
enter() {
  nsenter --target "$pid" --mount --pid --uts --ipc --net --cgroup --root -- \
    /bin/sh -c 'cd "$0" && exec "$@"' "$workdir" "$@"
}
for _ in $(seq 300); do
  state_now=$(enter systemctl is-system-running 2>/dev/null || true)
  case "$state_now" in running|degraded) break ;; esac
  kill -0 "$pid" 2>/dev/null || die "systemd exited during boot (BED_VERBOSE=1 shows why)"
  sleep 0.02
done
case "$state_now" in running|degraded) ;; *) die "systemd did not finish booting (state: ${state_now:-none})" ;; esac

set +e
enter env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM="${TERM:-dumb}" \
  CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUST_BACKTRACE="${RUST_BACKTRACE:-}" "$@"
rc=$?
set -e
exit $rc
