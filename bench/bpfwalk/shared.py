#!/usr/bin/env python3
"""Issue 35 Part 2 figures: bench/run's shared_hash scenario (SHARED_NETNS
empty namespaces next to one of SHARED_BUSY established sockets, all sharing
the host's TCP hash), measured for the netlink gathers and for the BPF walk:
alone (walk_*), and with every namespace entered for its UDP dumps as a
--source bpf --all-netns gather would (allnetns_*: every namespace of the
machine, the scenario's and any other).
Each figure RUNS times, interleaved; prints min, median, max (CPU s).

  python3 bench/bpfwalk/shared.py   (as root, after bench/run built the
  release binaries and cargo build --release in bench/bpfwalk)"""
import importlib.util, os, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("run", os.path.join(HERE, "..", "run.py"))
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)
WALK = os.path.join(HERE, "target", "release", "bpfwalk")
RUNS = int(os.environ.get("RUNS", "5"))


def steady():
    """CPU per gather of a loaded walker (no load, no process start)."""
    out = subprocess.run([WALK, "bench", "10"], capture_output=True, text=True, check=True).stdout
    words = out.split()
    return float(words[words.index("median") + 1]) / 1000, out.strip()


def allnetns_steady():
    """CPU per whole gather (walk + every namespace's UDP dumps) of a loaded walker."""
    err = subprocess.run([WALK, "allnetns", "10"], capture_output=True, text=True, check=True).stderr
    words = err.split()
    return float(words[words.index("median") + 1]) / 1000


def main():
    busy = subprocess.Popen([run.POPULATE, str(run.SHARED_BUSY), "0", "1", "0"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, preexec_fn=run.unshare_net, text=True)
    assert busy.stdout.readline().strip() == "ready"
    empties = [subprocess.Popen(["sleep", "3600"], preexec_fn=run.unshare_net) for _ in range(run.SHARED_NETNS)]
    figures = {k: [] for k in ("floor_busy", "busy_alone", "all_netlink", "walk_oneshot", "walk_steady",
                                  "allnetns_oneshot", "allnetns_steady")}
    try:
        busy_arg = ["--netns", f"/proc/{busy.pid}/ns/net"]
        listed = [a for e in empties for a in ("--netns", f"/proc/{e.pid}/ns/net")]
        for r in range(RUNS):
            home = os.open("/proc/self/ns/net", os.O_RDONLY)
            run.setns(f"/proc/{busy.pid}/ns/net")
            try:
                figures["floor_busy"].append(run.measure([[run.FLOOR]])[0])
            finally:
                run.libc.setns(home, run.CLONE_NEWNET)
                os.close(home)
            figures["busy_alone"].append(run.measure([[run.BIN, *busy_arg]])[0])
            figures["all_netlink"].append(run.measure([[run.BIN, *busy_arg, *listed]])[0])
            figures["walk_oneshot"].append(run.measure([[WALK, "dump"]])[0])
            s, line = steady()
            figures["walk_steady"].append(s)
            figures["allnetns_oneshot"].append(run.measure([[WALK, "allnetns"]])[0])
            figures["allnetns_steady"].append(allnetns_steady())
            print(f"run {r}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in figures.items()), "|", line, flush=True)
        for k, v in figures.items():
            print(f"{k}: min {min(v):.4f} median {statistics.median(v):.4f} max {max(v):.4f}")
        b = statistics.median(figures["busy_alone"])
        for k in ("all_netlink", "walk_oneshot", "walk_steady", "allnetns_oneshot", "allnetns_steady",
                  "floor_busy"):
            print(f"{k} / busy_alone: {statistics.median(figures[k]) / b:.2f}")
    finally:
        for e in empties:
            e.kill()
            e.wait()
        busy.stdin.close()
        busy.wait()


if __name__ == "__main__":
    main()
