#!/usr/bin/python3
"""Interleaved side-by-side timing: runs each command once per round, in A B order on even
rounds and B A on odd ones, so the drift of a machine shared with other work (load, caches,
frequency) falls on every command alike. Prints, per command, the median wall time, its
spread (p10-p90), the median peak RSS of the largest process (/usr/bin/time's %M: ru_maxrss
of the child and its waited descendants, in rounds of their own), and the ratio of medians against the peer (the last command).
How noisy the run was: the rounds are cut into five consecutive blocks and the ratio of
medians is given for each block (min-max); a ratio whose block range straddles the target
is not shown by this run.

  abab.py [--rounds N] [--warmup N] [--rss-rounds N] [--gap MS] [--json FILE] NAME=COMMAND ... PEER=COMMAND

--gap MS waits MS milliseconds after each run before the next starts: what the kernel does
after a process is gone (tearing down its namespaces in a worker) is then over before the
next one is timed, which measures one launch on an idle machine rather than a stream of them.

COMMAND is split like a shell word list (no shell runs it); stdout goes to /dev/null; a
non-zero exit stops the run with the command's name and its stderr, so a failure is never
timed as a launch. Asserts nothing: it is a benchmark."""

import json
import os
import shlex
import statistics
import sys
import time


def run_once(argv, devnull, errors):
    start = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[
        (os.POSIX_SPAWN_DUP2, devnull, 1),
        (os.POSIX_SPAWN_OPEN, 2, errors, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)])
    _, status = os.waitpid(pid, 0)
    elapsed = (time.perf_counter_ns() - start) / 1e6
    return elapsed, os.waitstatus_to_exitcode(status)


def peak_rss(argv, devnull, scratch):
    """Peak RSS in KiB of the largest process of one run, as /usr/bin/time reports it: a
    child spawned from this interpreter would count the interpreter's own pages (a vfork'd
    child's high-water mark is taken from the parent's memory at exec)."""
    pid = os.posix_spawn("/usr/bin/time", ["/usr/bin/time", "-f", "%M", "-o", scratch] + argv,
                         os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 1),
                                                   (os.POSIX_SPAWN_DUP2, devnull, 2)])
    os.waitpid(pid, 0)
    with open(scratch) as f:
        return int(f.read().split()[-1])


def quantile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main():
    args = sys.argv[1:]
    rounds, warmup, json_out, rss_rounds, gap = 100, 5, None, 10, 0.0
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--rounds":
            rounds = int(args.pop(0))
        elif opt == "--warmup":
            warmup = int(args.pop(0))
        elif opt == "--rss-rounds":
            rss_rounds = int(args.pop(0))
        elif opt == "--gap":
            gap = float(args.pop(0)) / 1000
        elif opt == "--json":
            json_out = args.pop(0)
        else:
            sys.exit(f"abab.py: unknown option {opt}")
    if len(args) < 2:
        sys.exit(__doc__)
    cmds = []
    for a in args:
        name, _, cmd = a.partition("=")
        argv = shlex.split(cmd)
        if argv and "/" not in argv[0]:
            argv[0] = next((os.path.join(d, argv[0]) for d in os.environ["PATH"].split(":")
                            if os.access(os.path.join(d, argv[0]), os.X_OK)), argv[0])
        cmds.append((name, argv))
    devnull = os.open("/dev/null", os.O_WRONLY)
    # The last run's stderr, shown if it fails.
    errors = f"/tmp/abab-stderr.{os.getpid()}"
    times = {n: [] for n, _ in cmds}
    rss = {n: [] for n, _ in cmds}
    for r in range(warmup + rounds):
        order = cmds if r % 2 == 0 else list(reversed(cmds))
        for name, argv in order:
            t, code = run_once(argv, devnull, errors)
            if code != 0:
                with open(errors) as f:
                    said = f.read().strip()
                os.unlink(errors)
                sys.exit(f"abab.py: {name} exited with {code}: {shlex.join(argv)}\n{said}")
            if r >= warmup:
                times[name].append(t)
            if gap:
                time.sleep(gap)
    # Peak RSS in rounds of its own (the wrapper would add to the times), interleaved too.
    scratch = f"/tmp/abab-rss.{os.getpid()}"
    for r in range(rss_rounds):
        for name, argv in (cmds if r % 2 == 0 else list(reversed(cmds))):
            rss[name].append(peak_rss(argv, devnull, scratch))
    for f in (scratch, errors):
        if os.path.exists(f):
            os.unlink(f)
    peer = cmds[-1][0]
    blocks = 5 if rounds >= 10 else 1
    size = rounds // blocks
    out = {"rounds": rounds, "peer": peer, "commands": {}}
    for name, argv in cmds:
        t = times[name]
        block_ratios = [
            statistics.median(t[i * size:(i + 1) * size])
            / statistics.median(times[peer][i * size:(i + 1) * size])
            for i in range(blocks)
        ]
        out["commands"][name] = {
            "argv": argv,
            "median_ms": statistics.median(t),
            "p10_ms": quantile(t, 0.10),
            "p90_ms": quantile(t, 0.90),
            "rss_kib": statistics.median(rss[name]) if rss[name] else 0,
            "rss_max_kib": max(rss[name], default=0),
            "ratio": statistics.median(t) / statistics.median(times[peer]),
            "rss_ratio": statistics.median(rss[name]) / statistics.median(rss[peer])
            if rss[name] else 0,
            "block_ratio_min": min(block_ratios),
            "block_ratio_max": max(block_ratios),
        }
    if json_out:
        with open(json_out, "w") as f:
            json.dump(out, f, indent=1)
    print(f"  {rounds} interleaved rounds; ratios against {peer}")
    rss_cols = rss_rounds > 0
    width = max(30, max(len(n) for n, _ in cmds))
    print(f"  {'':{width}} {'median ms':>9} {'p10-p90 ms':>13} {'ratio':>6} {'5 blocks':>11}"
          + (f" {'RSS KiB':>8} {'RSS ratio':>9}" if rss_cols else ""))
    for name, c in out["commands"].items():
        print(f"  {name:{width}} {c['median_ms']:9.2f} {c['p10_ms']:6.2f}-{c['p90_ms']:<6.2f} {c['ratio']:6.2f}"
              f" {c['block_ratio_min']:5.2f}-{c['block_ratio_max']:<5.2f}"
              + (f" {c['rss_kib']:8.0f} {c['rss_ratio']:9.2f}" if rss_cols else ""))


if __name__ == "__main__":
    main()
