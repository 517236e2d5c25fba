#!/usr/bin/python3
"""Many sandboxes at once, and many one after another, inside the systemd test bed.

  many.py STOCKADE PROFILE N          N launches started together
  many.py --cycles STOCKADE PROFILE N N start/stop cycles, one at a time

A launch's latency is the time from spawning `stockade -v run --name bench-I PROFILE` to
stockade's "started" line (the service has exec'd in its scope). The reference is one
sandbox alone, measured the same way just before. Every run must end with status 0. After
the last one ends this prints what is left against a count taken after the launches alone
(the first launch on a fresh host makes what stays by design): scopes
(systemctl), cgroups below the bed's root, mounts, records and /run/stockade entries,
processes, and systemd's open descriptors, at once and again once systemd has collected
the last empty scope (it does so asynchronously; at most 5 s); with --cycles the same counts
at cycle 10 and at the end. Prints figures and the leftovers; asserts nothing: it is a
benchmark mode."""

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


def steady(limit=5.0):
    """The counts once two readings 100 ms apart agree (at most `limit` seconds)."""
    t0 = time.perf_counter()
    prev = counts()
    while time.perf_counter() - t0 < limit:
        time.sleep(0.1)
        now = counts()
        if now == prev:
            return now
        prev = now
    return prev


def settle(before, limit=5.0):
    """What is left against `before` right after the last stockade ended, and after systemd
    has had up to `limit` seconds to collect the last empty scope (it removes a scope
    asynchronously, once it sees its cgroup empty): (left at once, left at the end, ms
    waited)."""
    t0 = time.perf_counter()
    now = counts()
    first = {k: now[k] - before[k] for k in before if now[k] != before[k]}
    while now != before and time.perf_counter() - t0 < limit:
        time.sleep(0.05)
        now = counts()
    last = {k: now[k] - before[k] for k in before if now[k] != before[k]}
    return first, last, (time.perf_counter() - t0) * 1000


def report_left(before):
    first, last, waited = settle(before)
    if not first:
        print("  left after the last one ended, against before: nothing")
    elif not last:
        print(f"  left after the last one ended, against before: {first} at once,"
              f" nothing {waited:.0f} ms later (systemd collected the last scope)")
    else:
        print(f"  left after the last one ended, against before: {first} at once,"
              f" {last} still after {waited:.0f} ms")


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
    alone = []
    for i in range(3):
        lat, codes, errors = watch([launch(stockade, profile, f"bench-alone-{i}")])
        if codes != [0]:
            sys.exit(f"many.py: a launch alone failed: {errors}")
        alone += lat
    single = statistics.median(alone)
    # Counted after the three launches alone, once systemd has collected their scopes: the
    # first launch on a fresh host makes what stays by design (/run/stockade/instances,
    # the slice's cgroup), which is not something a launch leaves behind.
    before = steady()
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
        report_left(before)
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
            settle(before)
            at10 = counts()
    print(f"  {len(lat_all)} cycles, latency to started p50 {statistics.median(lat_all):.1f} ms,"
          f" p99 {pct(lat_all, 0.99):.1f} ms")
    if at10:
        # Both counts are taken once systemd has collected the last cycle's scope, so
        # that one scope being collected is not counted as growth.
        settle(at10)
        end = counts()
        grew = {k: (at10[k], end[k]) for k in at10 if end[k] != at10[k]}
        print(f"  growth between cycle 10 and cycle {n} (at 10, at {n}): {grew or 'none'}")
    report_left(before)


if __name__ == "__main__":
    main()
