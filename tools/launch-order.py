#!/usr/bin/env python3
"""Regenerates packaging/launch-order.txt: the functions a launch runs, for the release
linker (packaging/link-ordered.sh) to put first in .text.

    sudo tools/launch-order.py > target/host-order.txt

on a host without systemd (a launch there has no scope), then the launches with a scope, in
the systemd test bed, after those: on an ext4 image the host mounts below the repository
(the bed can neither make a loop device nor reach the host's /tmp):

    truncate -s 64M target/cold.img && mkfs.ext4 -q target/cold.img && mkdir -p target/cold
    sudo mount -o loop target/cold.img target/cold
    sudo blockdev --setra 0 "$(findmnt -no SOURCE target/cold)"
    sudo tests/systemd/bed.sh run -- /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        LAUNCH_ORDER_COLD_DIR="$PWD/target/cold" "$PWD/tools/launch-order.py" \
        --first "$PWD/target/host-order.txt" > packaging/launch-order.txt

Build first with packaging/release-build.sh. With no PROFILE arguments it measures
tests/bench/bench.toml, the benchmark's host row, and, where systemd runs (the test bed
above, or a host booted with systemd), the same profile with a scope. Takes a few minutes,
nearly all of them spent registering uprobes.

Two measurements, both of every process of the launch (supervisor, init, the service up to
its exec):
  1. Which 4 KiB pages of the binary the launch reads: a copy on a loop-mounted ext4 with
     readahead 0 and a cold page cache, then mincore(). The candidates are the functions
     whose first instruction lies on such a page (a superset: a page holds many functions).
  2. Which candidates are entered: one counting uprobe each (perf_event_open on the uprobe
     PMU), in eight batches on eight copies of the binary, run side by side. A batch whose
     launch does not finish (a rare function does not survive its probe) keeps all its
     candidates.
Output: one key a line, in today's address order, the key being the symbol without the
hashes that change between builds (link-ordered.sh --keys defines it, for both).
"""
import concurrent.futures
import ctypes
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(REPO, "target/release/stockade")
BENCH = os.path.join(REPO, "tests/bench/bench.toml")
# A launch as the benchmark and a shell start it (logging to stderr), and a quiet one.
LAUNCHES = [["run", "--name", "launch-order"], ["-q", "run", "--name", "launch-order"]]
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p


def keys(names):
    """Each name's key, by packaging/link-ordered.sh --keys (the linker's own definition)."""
    script = os.path.join(REPO, "packaging/link-ordered.sh")
    text = subprocess.run([script, "--keys"], input="\n".join(names) + "\n", check=True,
                          capture_output=True, text=True).stdout
    return dict(reversed(line.split("\t")) for line in text.splitlines())


def run(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def functions(binary):
    """(address, file offset, name) of every sized function, by address."""
    segs = []
    for line in run("readelf", "-lW", binary).splitlines():
        p = line.split()
        if p and p[0] == "LOAD":
            segs.append((int(p[2], 16), int(p[1], 16), int(p[4], 16)))
    out = {}
    for line in run("nm", "-S", "--defined-only", binary).splitlines():
        p = line.split()
        if len(p) == 4 and p[2] in "tTwW" and int(p[1], 16) > 0:
            a = int(p[0], 16)
            off = next((a - v + o for v, o, s in segs if v <= a < v + s), None)
            if off is not None:
                out.setdefault(a, (a, off, p[3]))
    return sorted(out.values())


def pages_read(binary, profiles):
    fd = os.open(binary, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    for profile in profiles:
        for cmd in LAUNCHES:
            subprocess.run([binary] + cmd + [profile], check=True)
    size = os.fstat(fd).st_size
    n = (size + 4095) // 4096
    addr = libc.mmap(None, ctypes.c_size_t(size), 1, 1, fd, ctypes.c_long(0))
    vec = ctypes.create_string_buffer(n)
    if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
        sys.exit("mincore: " + os.strerror(ctypes.get_errno()))
    libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
    os.close(fd)
    return {i for i in range(n) if vec.raw[i] & 1}


def entered(binary, profiles, batch):
    """For each profile, the names of the batch's functions entered by its launches and the
    launches before it; all of them once a launch does not end."""
    pmu = int(open("/sys/bus/event_source/devices/uprobe/type").read())
    path = ctypes.create_string_buffer(os.path.realpath(binary).encode())
    fds = []
    for _, off, name in batch:
        attr = struct.pack("IIQQQQQIIQQ", pmu, 128, 0, 0, 0, 0, 0, 0, 0, ctypes.addressof(path), off)
        buf = ctypes.create_string_buffer(attr + b"\0" * (128 - len(attr)), 128)
        # cpu 0 only, the launch pinned there: one event per probe instead of one per cpu.
        fd = libc.syscall(298, buf, -1, 0, -1, 0)
        if fd < 0:
            sys.exit("perf_event_open (uprobe): " + os.strerror(ctypes.get_errno()))
        fds.append((name, fd))
    try:
        # Read after each profile's launches: what the first profile's launches enter is
        # laid out first, so that a launch of that kind maps none of the others' code.
        done, seen = True, []
        for profile in profiles:
            for cmd in LAUNCHES:
                # Each batch its own instance name: the batches run side by side.
                named = [a + "-" + os.path.basename(binary) if a == "launch-order" else a for a in cmd]
                pinned = ["taskset", "-c", "0", "timeout", "60", binary] + named + [profile]
                done = done and subprocess.run(pinned).returncode == 0
            if not done:
                print("a batch's launch did not finish: its %d functions are all kept" % len(fds), file=sys.stderr)
            seen.append({name for name, fd in fds if not done or struct.unpack("Q", os.read(fd, 8))[0] > 0})
        return seen
    finally:
        for _, fd in fds:
            os.close(fd)


def main():
    # A SIGTERM unwinds like ^C, through the unmount below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if os.geteuid() != 0:
        sys.exit("tools/launch-order.py: run as root (loop mount, uprobes, stockade run)")
    work = tempfile.mkdtemp(prefix="launch-order.")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    args = sys.argv[1:]
    first = []
    if args[:1] == ["--first"] and len(args) > 1:
        # A list measured elsewhere (the host's launches, on a host without systemd) goes
        # first: here, under systemd, even a launch of bench.toml registers a scope.
        first = [l.strip() for l in open(args[1]) if l.strip() and not l.startswith("#")]
        args = args[2:]
    profiles = args or [BENCH]
    if not args and os.path.isdir("/run/systemd/system"):
        # Under systemd (the test bed), a launch with a scope too: its D-Bus code is on the
        # path of every sandbox a unit or an admin's shell starts there.
        scope = os.path.join(work, "scope.toml")
        open(scope, "w").write(open(BENCH).read() + '[systemd]\nmode = "scope"\n')
        profiles.append(scope)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    img = os.path.join(work, "img")
    given = os.environ.get("LAUNCH_ORDER_COLD_DIR")
    try:
        if given:
            # A filesystem the caller mounted with readahead 0 (the test bed cannot make a
            # loop device; it sees the host's mounts below the repository).
            mnt = given
        else:
            with open(img, "wb") as f:
                f.truncate(64 << 20)
            run("mkfs.ext4", "-q", "-F", img)
            run("mount", "-o", "loop", img, mnt)
            dev = run("findmnt", "-no", "SOURCE", mnt).strip()
            run("blockdev", "--setra", "0", dev)
        cold = os.path.join(mnt, "stockade-launch-order")
        shutil.copy2(BINARY, cold)
        funcs = functions(cold)
        pages = pages_read(cold, profiles)
        cands = [f for f in funcs if f[1] // 4096 in pages]
        print("%d functions begin on the %d pages a launch reads" % (len(cands), len(pages)), file=sys.stderr)
        batches = [cands[i::8] for i in range(8)]
        copies = []
        for i in range(8):
            copies.append(os.path.join(work, "stockade-%d" % i))
            shutil.copy2(BINARY, copies[-1])
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: entered(copies[i], profiles, batches[i]), range(8)))
        key = keys([name for _, _, name in cands])
        ordered, seen = list(first), set(first)
        for i in range(len(profiles)):
            names = set().union(*(r[i] for r in results))
            for _, _, name in cands:
                if name in names and key[name] not in seen:
                    seen.add(key[name])
                    ordered.append(key[name])
        print("%d keys, %d of them measured here" % (len(ordered), len(ordered) - len(first)), file=sys.stderr)
        print("# The functions a launch runs, in link order: packaging/link-ordered.sh puts them")
        print("# first in .text. Made by tools/launch-order.py; one key a line.")
        print("\n".join(ordered))
    finally:
        if given:
            if os.path.exists(os.path.join(given, "stockade-launch-order")):
                os.unlink(os.path.join(given, "stockade-launch-order"))
            shutil.rmtree(work, ignore_errors=True)
        # The image only once it is unmounted: with the mount still there, rmtree would empty it.
        elif subprocess.run(["umount", mnt]).returncode == 0 or not os.path.ismount(mnt):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("tools/launch-order.py: %s is still mounted; left for you" % mnt, file=sys.stderr)


main()
