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
import os, statistics, subprocess

from population import HERE, floor_in, population, run
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
    figures = {k: [] for k in ("floor_busy", "busy_alone", "all_netlink", "walk_oneshot", "walk_steady",
                                  "allnetns_oneshot", "allnetns_steady")}
    with population() as (busy, empties):
        busy_arg = ["--netns", f"/proc/{busy.pid}/ns/net"]
        listed = [a for e in empties for a in ("--netns", f"/proc/{e.pid}/ns/net")]
        for r in range(RUNS):
            figures["floor_busy"].append(floor_in(busy.pid))
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


if __name__ == "__main__":
    main()
