#!/usr/bin/env bash
# Runs one command inside a throwaway VM whose kernel has a pure cgroup v2 hierarchy with
# systemd as pid 1, so memory, cpu and pids limits are enforced by a real kernel (CI hosts
# and containers often bind those controllers to cgroup v1, or hand out no controller at
# all). The guest's root is the host's own / over virtio-9p, read-only, under a tmpfs
# overlay: the guest sees every host package and the work tree at the same paths, and
# nothing it writes reaches the host. See tests/vm/README.md.
#
#   tests/vm/vm.sh prepare                 fetch the kernel, build the initramfs (cached)
#   tests/vm/vm.sh run -- CMD [ARGS...]    boot, run CMD as root in $PWD, stream its stdout and
#                                          stderr, exit with its status (124 on VM_TIMEOUT,
#                                          125 when the VM failed before CMD finished)
#
# Environment: VM_MEM (2048M), VM_CPUS (2), VM_TIMEOUT (600 s), VM_VERBOSE=1 (kernel and
# systemd console on stderr), VM_CACHE (/var/cache/stockade-vm), VM_ENV (names of extra host
# variables to pass in; PATH, RUST_* and CARGO_* always are).
set -euo pipefail

cache=${VM_CACHE:-/var/cache/stockade-vm}
self=$(readlink -f "${BASH_SOURCE[0]}")

die() { echo "vm.sh: $*" >&2; exit 125; }

# --- prepare -----------------------------------------------------------------------------

apt_updated=
apt_update() {
  [ -n "$apt_updated" ] && return 0
  apt-get update -qq
  apt_updated=1
}

install_tools() {
  # kmod: modinfo resolves module dependencies here, and the guest (same /) needs modprobe
  # for the kernel's on-demand module loading. busybox-static: the initramfs' only binary.
  local -A want=([qemu-system-x86_64]=qemu-system-x86 [busybox]=busybox-static [cpio]=cpio
                 [xz]=xz-utils [modinfo]=kmod [depmod]=kmod [flock]=util-linux)
  local missing=() cmd
  for cmd in "${!want[@]}"; do
    command -v "$cmd" >/dev/null || [ -x "/sbin/$cmd" ] || missing+=("${want[$cmd]}")
  done
  # The guest boots the host's own systemd and D-Bus.
  [ -x /lib/systemd/systemd ] || missing+=(systemd)
  [ -x /usr/bin/dbus-daemon ] || missing+=(dbus)
  [ ${#missing[@]} -eq 0 ] && return 0
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
}

# Prints the name of the kernel image package to use. Debian 12 carries the 6.12 kernel
# (landlock ABI 6) in bookworm-security as linux-image-6.12-amd64; the plain
# linux-image-amd64 of bookworm is 6.1 (landlock ABI 2) and only a last resort.
kernel_package() {
  local meta dep
  for meta in linux-image-6.12-amd64 linux-image-amd64/bookworm-backports linux-image-amd64; do
    dep=$(apt-cache show --no-all-versions "${meta%%/*}" 2>/dev/null |
            awk -F'[ ,]+' '/^Depends:/ { for (i = 2; i <= NF; i++) if ($i ~ /^linux-image-[0-9]/) { print $i; exit } }')
    if [ "$meta" = linux-image-amd64/bookworm-backports ]; then
      # apt-cache picks the pinned (non-backports) candidate; ask for the backports one.
      dep=$(apt-cache show "${meta%%/*}" 2>/dev/null | awk -F'[ ,]+' '
              /^Version:/ { bpo = ($2 ~ /bpo/) }
              bpo && /^Depends:/ { for (i = 2; i <= NF; i++) if ($i ~ /^linux-image-[0-9]/) { print $i; exit } }')
    fi
    # The cloud flavour has no 9p; rt would do but is slower.
    case "$dep" in *-cloud-*|*-rt-*|"") continue ;; esac
    [ "$meta" = linux-image-amd64 ] &&
      echo "vm.sh: warning: no 6.12 kernel in the apt sources, using $dep (landlock ABI 2 only)" >&2
    echo "$dep"
    return 0
  done
  return 1
}

fetch_kernel() {
  local pkg kver tmp
  pkg=$(kernel_package) || { apt_update; pkg=$(kernel_package); } ||
    die "no linux-image package found in the apt sources"
  kver=${pkg#linux-image-}
  if [ ! -f "$cache/kernel-$kver/ok" ]; then
    tmp=$(mktemp -d "$cache/download.XXXXXX")
    # Downloaded and unpacked, never installed: its postinst would build an initramfs for
    # the host and touch its boot loader.
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null) ||
      { rm -rf "$tmp"; die "apt-get download $pkg failed"; }
    mkdir "$tmp/x"
    dpkg-deb -x "$tmp"/*.deb "$tmp/x"
    # The package leaves module indexes to its postinst; the guest's modprobe needs them.
    depmod -b "$tmp/x" "$kver"
    rm -rf "$cache/kernel-$kver"
    mv "$tmp/x" "$cache/kernel-$kver"
    rm -rf "$tmp"
    touch "$cache/kernel-$kver/ok"
  fi
  ln -sfn "kernel-$kver" "$cache/kernel"
}

# Modules NAME... in load order (dependencies first), as paths relative to the module tree.
module_order() {
  local dir=$1 m rel deps; shift
  for m in "$@"; do
    [[ " $seen " == *" $m "* ]] && continue
    seen+=" $m"
    rel=$(awk -F: -v m="$m" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n); gsub(/-/, "_", n) } n == m { print $1; exit }' "$dir/modules.dep")
    [ -n "$rel" ] || { grep -q "/$m.ko" "$dir/modules.builtin" && continue; die "kernel module $m not found"; }
    deps=$(modinfo -b "$cache/kernel" -k "$kver" -F depends "$dir/$rel" | tr , ' ' | tr - _)
    [ -n "$deps" ] && module_order "$dir" $deps
    echo "$rel"
  done
}

build_initramfs() {
  local kver=$1 out=$2 dir ird rel a
  dir=$cache/kernel/lib/modules/$kver
  ird=$(mktemp -d "$cache/initramfs.XXXXXX")
  mkdir -p "$ird"/{bin,dev,proc,sys,lower,rw,newroot,modules}
  cp /bin/busybox "$ird/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$ird/bin/$a"; done
  local seen="" order=()
  mapfile -t order < <(module_order "$dir" 9p 9pnet_virtio overlay)
  : > "$ird/modules/order"
  for rel in "${order[@]}"; do
    # busybox insmod reads only uncompressed modules.
    case "$rel" in
      *.xz) xz -dc "$dir/$rel" > "$ird/modules/$(basename "$rel" .xz)" ;;
      *.zst) zstd -qdc "$dir/$rel" > "$ird/modules/$(basename "$rel" .zst)" ;;
      *) cp "$dir/$rel" "$ird/modules/" ;;
    esac
    basename "${rel%.ko*}.ko" >> "$ird/modules/order"
  done
  # The init runs before any host file is reachable, so what it needs from the host side
  # (module tree path, kernel version) is baked in.
  sed -e "s|@KVER@|$kver|g" -e "s|@MODTREE@|$(readlink -f "$dir")|g" > "$ird/init" <<'INIT'
#!/bin/sh
# Initramfs of tests/vm/vm.sh: assembles the guest root (host / over 9p, read-only, under a
# tmpfs overlay), adds the units that run the job, and hands over to the host's systemd.
fail() { echo "vm-init: $*" > /dev/console; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod "/modules/$m" || fail "insmod $m"; done < /modules/order
# msize: 9p's default of 8 KiB makes every large read a round trip through qemu.
nine=trans=virtio,version=9p2000.L,msize=1048576
# cache=loose: the host's / does not change under a short-lived VM, and caching makes
# exec and library loading several times faster.
mount -t 9p -o "$nine,cache=loose,ro" hostroot /lower || fail "cannot mount the host root"
mount -t tmpfs -o mode=0755 rw /rw
mkdir /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
  fail "cannot mount the overlay"
r=/newroot
# /.dockerenv makes systemd believe it runs in a container (no cgroup setup of its own, no
# poweroff); the whiteout hides it from the guest only.
rm -f $r/.dockerenv $r/run/.containerenv
# systemd keeps a /run that is already a mount, so the job's share can live below it.
mount -t tmpfs -o mode=0755,nosuid,nodev run $r/run
mkdir -p $r/run/vm
# No cache on the share: the host streams the output files while the guest writes them.
mount -t 9p -o "$nine" vmrun $r/run/vm || fail "cannot mount the run directory"
# The host has no modules for this kernel; the unpacked package's tree stands in, so the
# kernel's on-demand modprobe works.
mkdir -p $r/lib/modules
rm -rf "$r/lib/modules/@KVER@"
ln -s "@MODTREE@" "$r/lib/modules/@KVER@"
u=$r/etc/systemd/system
mkdir -p $u
cat > $u/vm-test.target <<'UNIT'
[Unit]
Description=vm.sh: just enough system for one command
Requires=sysinit.target vm-test.service
Wants=dbus.socket dbus.service systemd-journald.service
After=sysinit.target
AllowIsolate=yes
UNIT
cat > $u/vm-test.service <<'UNIT'
[Unit]
Description=vm.sh: the command
After=sysinit.target dbus.socket dbus.service systemd-journald.service
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
# simple, not oneshot: a oneshot's start job would hold the boot "starting" for the whole
# command, and the command may want a finished boot (systemctl is-system-running).
Type=simple
ExecStart=/bin/sh /run/vm/job
StandardInput=null
# A test's own OOM kills must not stop the unit, nor a long test hit the start timeout.
OOMPolicy=continue
TimeoutStartSec=infinity
TimeoutStopSec=10
UNIT
# Boot units that cost seconds under emulation and serve no test: device management, clock
# sync, persistent journal and utmp writes, modules the tests do not need up front. The
# host's own services and timers never enter vm-test.target anyway.
for m in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
    systemd-udev-trigger.service systemd-udev-settle.service systemd-timesyncd.service \
    systemd-hwdb-update.service systemd-journal-catalog-update.service ldconfig.service \
    systemd-journal-flush.service systemd-update-utmp.service systemd-sysusers.service \
    systemd-random-seed.service systemd-modules-load.service systemd-pstore.service \
    modprobe@dm_mod.service modprobe@loop.service modprobe@drm.service \
    modprobe@efi_pstore.service apparmor.service e2scrub_reap.service \
    systemd-firstboot.service systemd-machine-id-commit.service systemd-update-done.service \
    systemd-binfmt.service proc-sys-fs-binfmt_misc.automount systemd-fsck-root.service \
    systemd-remount-fs.service systemd-ask-password-console.path \
    systemd-ask-password-wall.path cryptsetup.target veritysetup.target; do
  ln -sf /dev/null $u/$m
done
# Generators read the host's fstab, init scripts and partitions: nothing the guest uses.
# Only the debug generator stays, for systemd.mask= and friends on the command line.
mkdir -p $r/etc/systemd/system-generators
for g in $r/lib/systemd/system-generators/*; do
  case "$g" in */systemd-debug-generator) ;; *) ln -sf /dev/null "$r/etc/systemd/system-generators/${g##*/}" ;; esac
done
# tmp.conf empties /tmp at boot: whiting out the host's whole /tmp in the overlay costs
# many seconds, and a caller's directory may be there.
mkdir -p $r/etc/tmpfiles.d
echo 'd /tmp 1777 root root -' > $r/etc/tmpfiles.d/tmp.conf
umount /proc /sys
mount --move /dev $r/dev
exec switch_root $r /lib/systemd/systemd
INIT
  chmod 755 "$ird/init"
  (cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$ird"
}

prepare() {
  mkdir -p "$cache"
  install_tools
  # Concurrent runs share the cache; one prepares, the others wait for it.
  exec {lock}>"$cache/.lock"
  flock "$lock"
  local kver initrd
  # Fast path: nothing to ask apt once a kernel is unpacked; `rm -r $VM_CACHE` re-fetches.
  # An older layout of this cache kept a plain directory here.
  [ -d "$cache/kernel" ] && [ ! -L "$cache/kernel" ] && rm -rf "$cache/kernel" "$cache/vmlinuz" "$cache/initrd.img"
  [ -f "$cache/kernel/ok" ] || fetch_kernel
  kver=$(basename "$(readlink -f "$cache/kernel")"); kver=${kver#kernel-}
  initrd=$cache/initrd-$kver.img
  # The init is part of this script: rebuild whenever the script changed.
  if [ ! -f "$initrd" ] || [ "$self" -nt "$initrd" ]; then
    build_initramfs "$kver" "$initrd"
  fi
  flock -u "$lock"
  exec {lock}>&-
  vmlinuz=$cache/kernel/boot/vmlinuz-$kver
  initramfs=$initrd
  kernel_config=$cache/kernel/boot/config-$kver
}

# --- run ---------------------------------------------------------------------------------

run_dir= qemu_pid= tails=()
cleanup() {
  local p
  [ -n "$qemu_pid" ] && kill -KILL "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  for p in "${tails[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$run_dir" ] && rm -rf "$run_dir"
  return 0
}

# Writes the guest's job: cd to the caller's directory, the caller's environment as far as
# it is meaningful inside, the command, and its status into rc.
write_job() {
  local v
  {
    echo '#!/bin/sh'
    echo 'exec >/run/vm/stdout 2>/run/vm/stderr </dev/null'
    # The command may talk to systemd over D-Bus: wait until systemd is on the bus and the
    # boot transaction is done.
    echo 'systemctl is-system-running --wait >/dev/null 2>&1'
    echo 'i=0; while [ $i -lt 100 ] && ! busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.DBus.Peer Ping >/dev/null 2>&1; do sleep 0.1; i=$((i+1)); done'
    echo 'cut -d" " -f1 /proc/uptime > /run/vm/started'
    printf 'export HOME=/root USER=root LOGNAME=root\n'
    for v in PATH TERM LANG ${VM_ENV:-} $(compgen -v | grep -E '^(RUST|CARGO)_' || true); do
      [ -n "${!v+x}" ] && printf 'export %s=%q\n' "$v" "${!v}"
    done
    printf 'cd %q || { echo "vm.sh: no directory %q in the guest" >&2; echo 125 > /run/vm/rc; exit 0; }\n' "$PWD" "$PWD"
    printf '%q ' "$@"; echo
    echo 'echo $? > /run/vm/rc.tmp && mv /run/vm/rc.tmp /run/vm/rc'
  } > "$run_dir/job"
}

run() {
  prepare
  local accel=tcg cpu=max timeout=${VM_TIMEOUT:-600} append rc status f
  # /dev/kvm may be a software hypervisor (kvm_pvm) that a stock kernel cannot boot under;
  # only the hardware modules mean usable KVM.
  if [ -e /sys/module/kvm_intel ] || [ -e /sys/module/kvm_amd ]; then accel=kvm cpu=host; fi
  run_dir=$(mktemp -d "${TMPDIR:-/tmp}/stockade-vm.XXXXXX")
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM HUP
  : > "$run_dir/stdout"; : > "$run_dir/stderr"; : > "$run_dir/console"
  write_job "$@"

  append="console=ttyS0 panic=-1 systemd.unit=vm-test.target"
  append+=" systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all fstab=0"
  # Emulated hardware needs no protection from its only tenant, and page-table isolation
  # costs dearly under TCG.
  append+=" mitigations=off random.trust_cpu=on"
  # Landlock must be an active LSM; Debian's config lists it first, but an older kernel
  # config may not.
  grep -q '^CONFIG_LSM=.*landlock' "$kernel_config" ||
    append+=" lsm=landlock,lockdown,yama,integrity,apparmor,bpf"
  if [ "${VM_VERBOSE:-}" = 1 ]; then
    append+=" systemd.show_status=1"
  else
    # Every byte on the emulated UART is slow; the console file is shown on failure.
    append+=" quiet loglevel=3 systemd.show_status=0"
  fi

  local t0; t0=$(date +%s.%N)
  timeout -k 5 "$timeout" qemu-system-x86_64 \
    -accel "$accel" -cpu "$cpu" -m "${VM_MEM:-2048M}" -smp "${VM_CPUS:-2}" \
    -nodefaults -no-user-config -display none -no-reboot \
    -kernel "$vmlinuz" -initrd "$initramfs" -append "$append" \
    -serial "file:$run_dir/console" \
    -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap" \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -fsdev "local,id=vmrun,path=$run_dir,security_model=none,multidevs=remap" \
    -device virtio-9p-pci,fsdev=vmrun,mount_tag=vmrun \
    </dev/null >"$run_dir/qemu.log" 2>&1 &
  qemu_pid=$!

  # The guest writes through 9p without caching, so following the files shows the output
  # live; --pid ends each tail once qemu is gone, after it read what was written.
  tail -q -c +1 -s 0.2 --pid="$qemu_pid" -f "$run_dir/stdout" & tails+=($!)
  tail -q -c +1 -s 0.2 --pid="$qemu_pid" -f "$run_dir/stderr" >&2 & tails+=($!)
  if [ "${VM_VERBOSE:-}" = 1 ]; then
    tail -q -c +1 -s 0.2 --pid="$qemu_pid" -f "$run_dir/console" >&2 & tails+=($!)
  fi

  status=0
  wait "$qemu_pid" || status=$?
  qemu_pid=
  for f in "${tails[@]}"; do wait "$f" || true; done
  tails=()
  local t1; t1=$(date +%s.%N)

  if [ -n "${VM_TIMES:-}" ] && [ -f "$run_dir/started" ]; then
    awk -v t0="$t0" -v t1="$t1" -v s="$(cat "$run_dir/started")" \
      'BEGIN { printf "vm.sh: boot to command %.1f s, total %.1f s\n", s - t0, t1 - t0 }' >&2
  fi
  if [ "$status" = 124 ] || [ "$status" = 137 ]; then
    echo "vm.sh: the VM did not finish within VM_TIMEOUT=${timeout}s; killed it" >&2
    show_console
    exit 124
  fi
  if [ ! -f "$run_dir/rc" ]; then
    echo "vm.sh: the VM stopped before the command finished (qemu exit $status)" >&2
    show_console
    exit 125
  fi
  rc=$(cat "$run_dir/rc")
  exit "$rc"
}

show_console() {
  [ "${VM_VERBOSE:-}" = 1 ] && return 0
  echo "vm.sh: last lines of the VM console (VM_VERBOSE=1 shows all of it):" >&2
  tail -n 25 "$run_dir/console" "$run_dir/qemu.log" >&2 || true
}

case "${1:-}" in
  prepare) [ $# -eq 1 ] || die "usage: vm.sh prepare"; prepare ;;
  run)
    [ "${2:-}" = -- ] && [ $# -ge 3 ] || die "usage: vm.sh run -- CMD [ARGS...]"
    shift 2
    run "$@" ;;
  *) die "usage: vm.sh prepare | vm.sh run -- CMD [ARGS...]" ;;
esac
