#!/usr/bin/python3
"""Many sandboxes at once, and many one after another, inside the systemd test bed.

  many.py STOCKADE PROFILE N          N launches started together
  many.py --cycles STOCKADE PROFILE N N start/stop cycles, one at a time

A launch's latency is the time from spawning `stockade -v run --name bench-I PROFILE` to
stockade's "started" line (the service has exec'd in its scope). The reference is one
sandbox alone, measured the same way just before. Every run must end with status 0. After
the last one ends this prints what is left against a count taken before: scopes
(systemctl), cgroups below the bed's root, mounts, records and /run/stockade entries,
processes, and systemd's open descriptors; with --cycles the same counts at cycle 10 and at
the end. Prints figures and the leftovers; asserts nothing: it is a benchmark mode."""

import os
import select
import statistics
import subprocess
import sys
import time


def counts():
    def run(*argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout
    scopes = [l for l in run("systemctl", "list-units", "--all", "--plain", "--no-legend",
                             "--type=scope").splitlines() if "stockade" in l]
    cgroups = sum(len(d) for _, d, _ in os.walk("/sys/fs/cgroup"))
    with open("/proc/self/mountinfo") as f:
        mounts = len(f.readlines())
    run_dir = sum(len(d) + len(f) for _, d, f in os.walk("/run/stockade"))
    records = len([f for f in os.listdir("/run/stockade/instances")]) \
        if os.path.isdir("/run/stockade/instances") else 0
    procs = 0
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/comm") as f:
                    procs += f.read().strip() in ("stockade", "sleep", "true")
            except OSError:
                pass
    systemd_fds = len(os.listdir("/proc/1/fd"))
    return {"scopes": len(scopes), "cgroups": cgroups, "mounts": mounts, "records": records,
            "/run/stockade entries": run_dir, "processes": procs, "systemd fds": systemd_fds}


def launch(stockade, profile, name):
    p = subprocess.Popen([stockade, "-v", "run", "--name", name, profile],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return p, time.perf_counter()


def watch(procs):
    """Latency (ms) of each launch to its started line, and the exit codes."""
    latency = {}
    buf = {p.stderr.fileno(): b"" for p, _ in procs}
    by_fd = {p.stderr.fileno(): (p, t0) for p, t0 in procs}
    open_fds = set(by_fd)
    while open_fds:
        ready, _, _ = select.select(list(open_fds), [], [], 60)
        if not ready:
            break
        now = time.perf_counter()
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                open_fds.discard(fd)
                continue
            buf[fd] += data
            if fd not in latency and b" started (profile " in buf[fd]:
                latency[fd] = (now - by_fd[fd][1]) * 1000
    codes = [p.wait() for p, _ in procs]
    errors = [buf[p.stderr.fileno()].decode(errors="replace").strip().splitlines()[-1:]
              for p, _ in procs if p.returncode != 0]
    return list(latency.values()), codes, errors


def pct(v, q):
    s = sorted(v)
    return s[min(len(s) - 1, int(q * len(s)))]


def main():
    args = sys.argv[1:]
    cycles = args and args[0] == "--cycles"
    if cycles:
        args = args[1:]
    stockade, profile, n = args[0], args[1], int(args[2])
    before = counts()
    alone = []
    for i in range(3):
        lat, codes, errors = watch([launch(stockade, profile, f"bench-alone-{i}")])
        if codes != [0]:
            sys.exit(f"many.py: a launch alone failed: {errors}")
        alone += lat
    single = statistics.median(alone)
    print(f"  one sandbox alone: median {single:.1f} ms to started (3 launches)")
    if not cycles:
        t0 = time.perf_counter()
        procs = [launch(stockade, profile, f"bench-{i}") for i in range(n)]
        lat, codes, errors = watch(procs)
        wall = (time.perf_counter() - t0) * 1000
        ok = sum(c == 0 for c in codes)
        print(f"  {n} at once: {ok}/{n} ended with status 0, {len(lat)} reported started;"
              f" wall {wall:.0f} ms")
        if lat:
            p50, p99, mx = statistics.median(lat), pct(lat, 0.99), max(lat)
            print(f"  latency to started: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {mx:.0f} ms;"
                  f" p99 = {p99 / single:.1f}x one alone (target <= 10x)")
        for e in errors[:5]:
            print(f"  failed: {e}")
        time.sleep(0.5)
        after = counts()
        left = {k: after[k] - before[k] for k in before if after[k] != before[k]}
        print(f"  left after all ended, against before: {left or 'nothing'}")
        return
    at10 = None
    lat_all = []
    for i in range(n):
        lat, codes, errors = watch([launch(stockade, profile, "bench-cycle")])
        if codes != [0]:
            print(f"  cycle {i + 1} failed: {errors}")
            break
        lat_all += lat
        if i + 1 == 10:
            at10 = counts()
    end = counts()
    print(f"  {len(lat_all)} cycles, latency to started p50 {statistics.median(lat_all):.1f} ms,"
          f" p99 {pct(lat_all, 0.99):.1f} ms")
    if at10:
        grew = {k: (at10[k], end[k]) for k in at10 if end[k] != at10[k]}
        print(f"  growth between cycle 10 and cycle {n} (at 10, at {n}): {grew or 'none'}")
    left = {k: end[k] - before[k] for k in before if end[k] != before[k]}
    print(f"  left after the last cycle, against before: {left or 'nothing'}")


if __name__ == "__main__":
    main()
