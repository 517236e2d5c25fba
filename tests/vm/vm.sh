#!/usr/bin/env bash
# Runs a command inside a throwaway VM whose kernel has a pure cgroup v2 hierarchy, so
# memory, cpu and pids limits are really enforced (on the CI host those controllers are
# bound to cgroup v1). The guest's root is the host's own / over virtio-9p, read-only, with
# a tmpfs overlay on top: the guest sees every host package and the repo, and writes nothing
# back. systemd is pid 1 in the guest.
#
#   tests/vm/vm.sh prepare             fetch the kernel, build the initramfs (cached)
#   tests/vm/vm.sh run -- CMD [ARGS]   boot, run CMD as root in $PWD, print its output, exit
#                                      with its status (124 on timeout)
#   tests/vm/vm.sh mirror              print the Debian mirror backports would be taken from
#
# VM_MEM (2048M), VM_CPUS (2), VM_TIMEOUT (600 s), VM_VERBOSE=1 (kernel and systemd console),
# VM_CACHE (/var/cache/stockade-vm).
set -euo pipefail

cache=${VM_CACHE:-/var/cache/stockade-vm}
die() { echo "vm.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root"

# The Debian mirror this machine already uses for bookworm: the first URI of a deb822
# stanza (*.sources) or a one-line `deb` entry (sources.list, *.list) whose suites include
# bookworm itself. Security and third-party archives carry other suites and are skipped.
# APT_DIR (default /etc/apt) lets the parsing be tried on other files.
debian_mirror() {
  local dir=${APT_DIR:-/etc/apt} f
  for f in "$dir"/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      function flush() { if (suite && uri != "") { print uri; found = 1; exit } uri = ""; suite = 0 }
      /^[[:space:]]*$/ { flush(); next }
      /^[[:space:]]*#/ { next }
      tolower($1) == "uris:" { uri = $2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite = 1 }
      tolower($1) == "enabled:" && tolower($2) == "no" { uri = "" }
      END { if (!found) flush() }
    ' "$f"
  done | head -n1 | grep . && return 0
  for f in "$dir"/sources.list "$dir"/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == "bookworm") { print $i; exit } }' "$f"
  done | head -n1 | grep .
}

need_backports() {
  grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/ && return 0
  local mirror
  mirror=$(debian_mirror) || die "no Debian bookworm mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d/ to take bookworm-backports from"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" \
    > /etc/apt/sources.list.d/stockade-backports.sources
  apt-get update -qq
}

prepare() {
  mkdir -p "$cache"
  # QEMU from backports: the machine's qemu-utils already comes from there, and bookworm's
  # qemu-system would conflict with it.
  if ! command -v qemu-system-x86_64 >/dev/null || ! [ -x /bin/busybox ] || ! command -v cpio >/dev/null; then
    need_backports
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static cpio xz-utils >/dev/null
  fi
  if [ ! -f "$cache/vmlinuz" ]; then
    # bookworm-backports' 6.12 kernel: landlock ABI 6 (bookworm's 6.1 has ABI 2). It is
    # downloaded and unpacked, never installed: its postinst would rebuild the host's initramfs.
    need_backports
    local pkg
    pkg=$(apt-cache depends linux-image-6.12-amd64 | awk '/Depends: linux-image-6/{print $2; exit}')
    [ -n "$pkg" ] || die "no linux-image-6.12 package found in bookworm-backports"
    rm -rf "$cache/kernel" "$cache"/*.deb
    (cd "$cache" && apt-get download -q "$pkg" 2>/dev/null && dpkg-deb -x ./*.deb kernel && rm -f ./*.deb)
    cp "$cache"/kernel/boot/vmlinuz-* "$cache/vmlinuz.tmp" && mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
  fi
  [ -f "$cache/initrd.img" ] && [ "$cache/initrd.img" -nt "$0" ] && return 0
  local ird mods
  ird=$(mktemp -d)
  mkdir -p "$ird"/{bin,lib/modules,proc,sys,dev,lower,upper,newroot}
  cp /bin/busybox "$ird/bin/busybox"
  mods=$(echo "$cache"/kernel/lib/modules/*/kernel)
  # In dependency order; busybox's insmod cannot read xz-compressed modules.
  for m in fs/netfs/netfs net/9p/9pnet net/9p/9pnet_virtio fs/9p/9p fs/overlayfs/overlay; do
    xz -dc "$mods/$m.ko.xz" > "$ird/lib/modules/$(basename "$m").ko"
  done
  cat > "$ird/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in netfs 9pnet 9pnet_virtio 9p overlay; do insmod /lib/modules/$m.ko || exec sh; done
opts=trans=virtio,version=9p2000.L,msize=524288,cache=loose
mount -t 9p -o "$opts,ro" hostroot /lower || exec sh
mount -t tmpfs -o mode=0755 upper /upper
mkdir -p /upper/up /upper/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/up,workdir=/upper/work /newroot
# The host's /.dockerenv would make systemd believe it runs in a container.
rm -f /newroot/.dockerenv
mkdir -p /newroot/vmshare
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 vmshare /newroot/vmshare
units=/newroot/etc/systemd/system
cat > $units/vm-test.target <<'UNIT'
[Unit]
Description=stockade VM test
Requires=systemd-journald.service dbus.socket dbus.service vm-test.service
After=systemd-journald.service dbus.service
AllowIsolate=yes
UNIT
cat > $units/vm-test.service <<'UNIT'
[Unit]
Description=the test command
After=dbus.service systemd-journald.service
SuccessAction=poweroff-force
FailureAction=poweroff-force
[Service]
Type=oneshot
ExecStart=/bin/sh /vmshare/job
UNIT
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /lib/systemd/systemd
INIT
  chmod +x "$ird/init"
  (cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) > "$cache/initrd.img.tmp"
  mv "$cache/initrd.img.tmp" "$cache/initrd.img"
  rm -rf "$ird"
}

run() {
  prepare
  local share rc accel=tcg cpu=max
  # Real KVM only with a hardware module; /dev/kvm alone may be a software hypervisor
  # (kvm_pvm) that a stock kernel does not boot under.
  if [ -e /sys/module/kvm_intel ] || [ -e /sys/module/kvm_amd ]; then accel=kvm; cpu=host; fi
  share=$(mktemp -d /run/stockade-vm.XXXXXX)
  trap 'rm -rf "$share"' EXIT
  {
    echo "cd $(printf %q "$PWD") || exit 1"
    printf 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root\n'
    printf '%q ' "$@"; echo '> /vmshare/out 2>&1'
    echo 'echo $? > /vmshare/rc'
    echo 'sync'
  } > "$share/job"
  # Boot units the test needs none of. tmpfiles would also empty the guest's view of the
  # host's /tmp, where the work tree may live (a clone in /tmp).
  local masks="" u
  for u in systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service \
           systemd-tmpfiles-clean.timer systemd-timesyncd.service systemd-udevd.service \
           systemd-udev-trigger.service systemd-udev-settle.service apt-daily.timer \
           apt-daily-upgrade.timer man-db.timer e2scrub_all.timer fstrim.timer logrotate.timer; do
    masks+=" systemd.mask=$u"
  done
  local console=/dev/null
  [ -n "${VM_VERBOSE:-}" ] && console=/dev/stderr
  set +e
  timeout -k 5 "${VM_TIMEOUT:-600}" qemu-system-x86_64 -accel "$accel" -cpu "$cpu" \
    -m "${VM_MEM:-2048M}" -smp "${VM_CPUS:-2}" -nodefaults -no-reboot -display none \
    -serial stdio -kernel "$cache/vmlinuz" -initrd "$cache/initrd.img" \
    -append "console=ttyS0 panic=-1 rdinit=/init systemd.unit=vm-test.target systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all systemd.show_status=0 fstab=0 loglevel=3 $masks" \
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
    -virtfs local,path="$share",mount_tag=vmshare,security_model=none,multidevs=remap \
    -device virtio-rng-pci > "$console" 2>&1 < /dev/null
  rc=$?
  set -e
  [ -f "$share/out" ] && cat "$share/out"
  if [ "$rc" = 124 ]; then echo "vm.sh: the VM did not finish within ${VM_TIMEOUT:-600}s" >&2; exit 124; fi
  [ -f "$share/rc" ] || { echo "vm.sh: the command did not run (qemu exit $rc; VM_VERBOSE=1 shows the console)" >&2; exit 125; }
  exit "$(cat "$share/rc")"
}

case "${1:-}" in
  prepare) prepare ;;
  mirror) debian_mirror ;;
  run) [ "${2:-}" = -- ] && [ $# -ge 3 ] || die "usage: vm.sh run -- CMD [ARGS...]"; shift 2; run "$@" ;;
  *) die "usage: vm.sh prepare | run -- CMD [ARGS...]" ;;
esac
