#!/usr/bin/env python3
"""Issue 35 Part 2 figures for the program's own `--source bpf`: bench/run's
shared_hash scenario (SHARED_NETNS empty namespaces next to one of
SHARED_BUSY established sockets, all sharing the host's TCP hash), netlink
against `--source bpf`, one-shot and per gather of a long-running --execd
process (bench/run's execd_per_gather: the first gather, a self-test, and
the load are not counted), the latter also with --prometheus-names native,
for which the walk reads each socket's bytes queued too. Each one-shot figure RUNS times, interleaved;
prints min, median, max (CPU s) and the ratio to the busy namespace alone.

  python3 bench/bpfwalk/program.py   (as root, after
  cargo build --release --locked --bin telegraf-netstat --examples and
  bench/run's spawn helper, bench/out/spawn)"""
import os, statistics, subprocess

from population import floor_in, population, run

RUNS = int(os.environ.get("RUNS", "5"))
GATHERS = int(os.environ.get("GATHERS", "20"))
NATIVE = ["--format", "prometheus", "--prometheus-names", "native"]


def lines_of(args):
    """Lines one gather with `args` prints."""
    return len(subprocess.run([run.BIN, *args], capture_output=True, text=True, check=True).stdout.splitlines())


def main():
    figures = {k: [] for k in ("floor_busy", "busy_alone", "all_netlink", "bpf_busy_oneshot",
                                  "bpf_all_oneshot")}
    with population() as (busy, empties):
        busy_arg = ["--netns", f"/proc/{busy.pid}/ns/net"]
        listed = [a for e in empties for a in ("--netns", f"/proc/{e.pid}/ns/net")]
        bpf = ["--source", "bpf"]
        for r in range(RUNS):
            figures["floor_busy"].append(floor_in(busy.pid))
            figures["busy_alone"].append(run.measure([[run.BIN, "--source", "netlink", *busy_arg]])[0])
            figures["all_netlink"].append(run.measure([[run.BIN, "--source", "netlink", *busy_arg, *listed]])[0])
            figures["bpf_busy_oneshot"].append(run.measure([[run.BIN, *bpf, *busy_arg]])[0])
            figures["bpf_all_oneshot"].append(run.measure([[run.BIN, *bpf, *busy_arg, *listed]])[0])
            print(f"run {r}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in figures.items()), flush=True)
        loop_busy = run.execd_per_gather(GATHERS, [*bpf, *busy_arg], 1)
        loop_all = run.execd_per_gather(GATHERS, [*bpf, *busy_arg, *listed], 1 + len(empties))
        loop_netlink_busy = run.execd_per_gather(GATHERS, ["--source", "netlink", *busy_arg], 1)
        native_busy, native_all = [*bpf, *busy_arg, *NATIVE], [*bpf, *busy_arg, *listed, *NATIVE]
        loop_busy_native = run.execd_per_gather(GATHERS, native_busy, lines_of(native_busy))
        loop_all_native = run.execd_per_gather(GATHERS, native_all, lines_of(native_all))
        for k, v in figures.items():
            print(f"{k}: min {min(v):.4f} median {statistics.median(v):.4f} max {max(v):.4f}")
        b = statistics.median(figures["busy_alone"])
        f = statistics.median(figures["floor_busy"])
        for k in ("all_netlink", "bpf_busy_oneshot", "bpf_all_oneshot", "floor_busy"):
            print(f"{k} / busy_alone: {statistics.median(figures[k]) / b:.2f}")
        print(f"execd per gather, netlink, the busy namespace: {loop_netlink_busy['cpu_s']:.4f} s")
        print(f"execd per gather, bpf, the busy namespace: {loop_busy['cpu_s']:.4f} s "
              f"({loop_busy['cpu_s'] / f:.2f} x the floor), peak RSS {loop_busy['peak_rss_kib']} KiB")
        print(f"execd per gather, bpf, it and the {len(empties)} empty ones: {loop_all['cpu_s']:.4f} s "
              f"({loop_all['cpu_s'] / b:.2f} x busy_alone), peak RSS {loop_all['peak_rss_kib']} KiB")
        print(f"execd per gather, bpf, native names (bytes queued read), the busy namespace: "
              f"{loop_busy_native['cpu_s']:.4f} s ({loop_busy_native['cpu_s'] / f:.2f} x the floor)")
        print(f"execd per gather, bpf, native names, it and the {len(empties)} empty ones: "
              f"{loop_all_native['cpu_s']:.4f} s ({loop_all_native['cpu_s'] / b:.2f} x busy_alone)")


if __name__ == "__main__":
    main()
