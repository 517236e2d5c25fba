#!/usr/bin/python3
"""Where a launch's wall time goes, by stage, for stockade and its peer side by side.

  stages.py [--rounds N] [--perf] [--keep DIR] NAME=COMMAND ...

Each COMMAND runs under `strace -f -ttt --seccomp-bpf` tracing only a dozen landmark calls
(the filter is in the kernel, so the calls between landmarks run untraced and the stages
keep their shape; every landmark costs one ptrace stop, tens of microseconds). A stage is
the time between two landmarks, found in the order they happen; the landmarks of each kind
of launch are the table LANDMARKS below (its first column names the stage that ends
there). Rounds are interleaved A B A B; the median of each stage is printed, with the
median end-to-end time under the tracer and its sum. Asserts nothing: a benchmark tool.
The landmark set is chosen by NAME's first word (up to a colon or space): stockade (a host
launch), scope (stockade run with a scope), systemd-run, bwrap."""

import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

TRACED = ("execve,clone,clone3,unshare,pivot_root,umount2,landlock_restrict_self,seccomp,"
          "exit_group,openat,write,wait4,connect,sendmsg,recvmsg")

# (stage that ends at this landmark, regex on the strace line). The first landmark starts
# the clock; its stage name is ignored.
LANDMARKS = {
    "stockade": [
        ("", r'execve\("[^"]*stockade[^"]*"'),
        ("exec, ld.so: libraries mapped, relocated", r'openat\(AT_FDCWD, "/proc/self/maps"'),
        ("Rust std init, clap, logging", r'openat\(AT_FDCWD, "[^"]*\.toml"'),
        ("profile: read, parse, includes, drop-ins", r'openat\(AT_FDCWD, "/proc/self/cgroup"'),
        ("host facts, plan, id claim", r'openat\(AT_FDCWD, "[^"]*/instances/[^"]*\.lock"'),
        ("instance lock, sync channel", r'clone\(.*CLONE_NEWUSER'),
        ("clone init, write id maps", r'write\(\d+, "P", 1'),
        ("send plan, init wakes, unshare", r'unshare\(CLONE_NEWNS'),
        ("mounts on the new root", r'pivot_root\("\.", "oldroot"\)'),
        ("mounts after pivot, detach old root", r'umount2\("\.", MNT_DETACH\)'),
        ("cgroup ns, init reports Ready", r'write\(\d+, "R", 1'),
        ("record written, supervisor says Start", r'write\(\d+, "S", 1'),
        ("init forks the service", r'clone\(child_stack=NULL, flags=CLONE_CHILD_CLEARTID'),
        ("service: fds, rlimits, landlock rules", r'landlock_restrict_self'),
        ("service: ids, caps, no_new_privs", r'seccomp\(SECCOMP_SET_MODE_FILTER'),
        ("service: execve /bin/true", r'execve\("/bin/true"'),
        ("/bin/true runs", r'exit_group'),
        ("init reaps, exits", r'exit_group'),
        ("supervisor: wait for init, remove record", r'exit_group'),
    ],
    "scope": [
        ("", r'execve\("[^"]*stockade[^"]*"'),
        ("exec, ld.so: libraries mapped, relocated", r'openat\(AT_FDCWD, "/proc/self/maps"'),
        ("Rust std init, clap, logging", r'openat\(AT_FDCWD, "[^"]*\.toml"'),
        ("profile, host facts, plan, id claim", r'openat\(AT_FDCWD, "[^"]*/instances/[^"]*\.lock"'),
        ("instance lock, sync channel", r'clone\(.*CLONE_NEWUSER'),
        ("clone init, write id maps", r'write\(\d+, "P", 1'),
        ("namespace inodes; connect to systemd", r'connect\(\d+, \{sa_family=AF_UNIX, sun_path="/run/systemd/'),
        ("scope job: StartTransientUnit to JobRemoved (init builds the root meanwhile)",
         r'openat\(AT_FDCWD, "/proc/\d+/cgroup"'),
        ("check the cgroup, plan to init, init's cgroup ns, Ready", r'write\(\d+, "R", 1'),
        ("record written, supervisor says Start", r'write\(\d+, "S", 1'),
        ("service: fork, landlock, seccomp, execve /bin/true", r'execve\("/bin/true"'),
        ("/bin/true runs", r'exit_group'),
        ("init reaps, exits", r'exit_group'),
        ("supervisor: wait for init, remove record, close the scope", r'exit_group'),
    ],
    "systemd-run": [
        ("", r'execve\("[^"]*systemd-run"'),
        ("exec, ld.so: libsystemd-shared and 21 more libraries", r'openat\(AT_FDCWD, "/proc/sys/kernel/cap_last_cap"'),
        ("argument and property parsing", r'connect\(\d+, \{sa_family=AF_UNIX, sun_path="/run/systemd/'),
        ("AUTH round trip", r'sendmsg\(\d+, \{msg_name=NULL, msg_namelen=0, msg_iov=\[\{iov_base="l'),
        ("scope job: StartTransientUnit to JobRemoved", r'execve\("/bin/true"'),
        ("/bin/true runs", r'exit_group'),
    ],
    "bwrap": [
        ("", r'execve\("[^"]*bwrap"'),
        ("exec, ld.so: 4 libraries (selinux, pcre2, cap, libc)", r'openat\(AT_FDCWD, "/proc/filesystems"'),
        ("argument parsing, checks", r'clone\(.*CLONE_NEWUSER'),
        ("clone (all namespaces), write id maps", r'openat\(\d+, "gid_map"'),
        ("mounts on the new root (before pivot)", r'pivot_root\("/tmp", "oldroot"\)'),
        ("mounts (setup ops), detach old root", r'umount2\("\.", MNT_DETACH\)'),
        ("pid 1 forks the service", r'clone\(child_stack=NULL, flags=CLONE_CHILD_CLEARTID'),
        ("service: caps, execve /bin/true", r'execve\("/bin/true"'),
        ("/bin/true runs", r'exit_group'),
        ("pid 1 reports the status; bwrap exits", r'exit_group'),
    ],
}


# The same without ptrace: kernel tracepoints recorded by `perf record` (no stop at any
# landmark, so forks and execs keep their real cost), fewer and coarser landmarks.
PERF_EVENTS = ("sched:sched_process_fork,sched:sched_process_exec,sched:sched_process_exit,"
               "syscalls:sys_enter_pivot_root,syscalls:sys_enter_landlock_restrict_self")
PERF_LANDMARKS = {
    "stockade": [
        ("", r'sched_process_exec: filename=\S*stockade'),
        ("exec, start-up, profile, host facts, plan, id claim, lock", r'sched_process_fork'),
        ("id maps, plan to init, unshare, mounts before the pivot", r'sys_enter_pivot_root'),
        ("mounts on the new root, second pivot", r'sys_enter_pivot_root'),
        ("detach old root, Ready, record, Start, fork the service", r'sched_process_fork'),
        ("service: signals, session, landlock rules", r'sys_enter_landlock_restrict_self'),
        ("service: caps, ids, seccomp, execve", r'sched_process_exec: filename=/bin/true'),
        ("/bin/true runs", r'sched_process_exit'),
        ("init reaps it, reports, exits", r'sched_process_exit'),
        ("namespaces torn down, supervisor wakes, removes the record, exits", r'sched_process_exit'),
    ],
    "bwrap": [
        ("", r'sched_process_exec: filename=\S*bwrap'),
        ("exec, start-up, argument parsing", r'sched_process_fork'),
        ("clone wakes, id maps, mounts before the pivot", r'sys_enter_pivot_root'),
        ("setup ops (mounts), second pivot", r'sys_enter_pivot_root'),
        ("detach old root, fork the service", r'sched_process_fork'),
        ("service: caps, execve", r'sched_process_exec: filename=/bin/true'),
        ("/bin/true runs", r'sched_process_exit'),
        ("pid 1 reports; bwrap and pid 1 exit", r'sched_process_exit'),
        ("the other of the two exits", r'sched_process_exit'),
    ],
}


def run_perf(argv, out):
    t0 = time.perf_counter()
    code = subprocess.call(["perf", "record", "-q", "-o", out + ".data", "-e", PERF_EVENTS, "--", *argv],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = (time.perf_counter() - t0) * 1000
    with open(out, "w") as f:
        subprocess.call(["perf", "script", "-i", out + ".data", "-F", "tid,time,event,trace"],
                        stdout=f, stderr=subprocess.DEVNULL)
    os.unlink(out + ".data")
    return code, wall


def kind(name):
    return re.split(r"[: ]", name, maxsplit=1)[0]


def run_traced(argv, out):
    t0 = time.perf_counter()
    code = subprocess.call(["strace", "-f", "-ttt", "-qq", "--seccomp-bpf", "-o", out,
                            "-e", f"trace={TRACED}", *argv],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = (time.perf_counter() - t0) * 1000
    return code, wall


def stages(trace, marks):
    """Stage durations (ms) in landmark order, or None when a landmark is missing."""
    lines = []
    with open(trace) as f:
        for line in f:
            parts = line.split(None, 2)
            if len(parts) == 3 and "resumed>" not in parts[2][:40]:
                lines.append((float(parts[1].rstrip(":")), parts[2]))
    out, i, start = [], 0, None
    last = None
    for stage, pattern in marks:
        rx = re.compile(pattern)
        while i < len(lines) and not rx.search(lines[i][1]):
            i += 1
        if i == len(lines):
            return None
        t = lines[i][0]
        if start is None:
            start = t
        else:
            out.append((t - last) * 1000)
        last = t
        i += 1
    return out


def main():
    args = sys.argv[1:]
    rounds, keep, perf = 20, None, False
    while args and args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--rounds":
            rounds = int(args.pop(0))
        elif opt == "--perf":
            perf = True
        elif opt == "--keep":
            keep = args.pop(0)
        else:
            sys.exit(f"stages.py: unknown option {opt}")
    cmds = []
    for a in args:
        name, _, cmd = a.partition("=")
        table = PERF_LANDMARKS if perf else LANDMARKS
        if kind(name) not in table:
            sys.exit(f"stages.py: {name}: the name must start with one of {sorted(table)}")
        cmds.append((name, shlex.split(cmd)))
    if not cmds:
        sys.exit(__doc__)
    tmp = keep or tempfile.mkdtemp(prefix="stages.")
    got = {n: [] for n, _ in cmds}
    walls = {n: [] for n, _ in cmds}
    for r in range(rounds + 2):
        for name, argv in (cmds if r % 2 == 0 else list(reversed(cmds))):
            trace = os.path.join(tmp, f"{kind(name)}.{r}.trace")
            code, wall = (run_perf if perf else run_traced)(argv, trace)
            if code != 0:
                sys.exit(f"stages.py: {name} exited with {code} traced: {shlex.join(argv)}")
            s = stages(trace, table[kind(name)])
            if not keep:
                os.unlink(trace)
            if r < 2:
                continue   # warm-up
            if s is None:
                print(f"  {name}: round {r}: a landmark is missing (kept no stage)", file=sys.stderr)
                continue
            got[name].append(s)
            walls[name].append(wall)
    if not keep:
        os.rmdir(tmp)
    for name, _ in cmds:
        marks = table[kind(name)]
        runs = got[name]
        how = "perf record (tracepoints)" if perf else "strace (landmarks only)"
        print(f"  {name}: {len(runs)} rounds under {how}, median ms per stage")
        total = 0.0
        for j, (stage, _) in enumerate(marks[1:]):
            v = [run[j] for run in runs]
            med = statistics.median(v)
            total += med
            print(f"    {med:7.2f}  {stage}")
        if perf:
            print(f"    {total:7.2f}  sum of medians")
        else:
            print(f"    {total:7.2f}  sum of medians;  end to end under strace: median "
                  f"{statistics.median(walls[name]):.2f} ms")


if __name__ == "__main__":
    main()
