#!/usr/bin/env python3
"""telegraf-netstat benchmark: CPU seconds and peak RSS per gather.

For each scale, a fresh private network namespace is filled by
examples/populate (ESTABLISHED sockets, a few thousand TIME_WAIT, listeners,
UDP sockets); then each approach gathers RUNS times inside that namespace and
the median CPU (user + system, from wait4) and the largest peak RSS are kept.
Ratios are taken within one run, so a noisy shared machine affects all
approaches alike. Writes bench/out/results.json and docs/cpu-per-gather.svg.

Run as root (namespaces, fd limits): bench/run
"""
import base64
import ctypes
import json
import socket
import ssl
import tempfile
import time
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
BIN = os.path.join(REL, "telegraf-netstat")
FLOOR = os.path.join(REL, "examples", "floor")
POPULATE = os.path.join(REL, "examples", "populate")
SCAN = os.path.join(REL, "examples", "scan")
SPAWN = os.path.join(ROOT, "bench", "out", "spawn")
CLONE_NEWNET = 0x40000000
RUNS = int(os.environ.get("RUNS", "7"))
SCALES = [int(s) for s in os.environ.get("SCALES", "10000,50000,200000").split(",")]
TIME_WAIT, LISTENERS, UDP = 3000, 70, 200

libc = ctypes.CDLL(None, use_errno=True)

# Every measurement that breaks sockets down, for --health's cost beside them.
EVERY_BREAKDOWN = ["--local-port", "80,443,8080,8443,9000", "--remote-port", "80,443,5432,6379,9000",
                   "--listening-ports", "--listen-queues", "--destinations", "10", "--ephemeral-ports",
                   "--by-cgroup"]

APPROACHES = {
    "floor": [[FLOOR]],
    "telegraf-netstat (netlink)": [[BIN, "--source", "netlink"]],
    "telegraf-netstat, 10 ports": [[BIN, "--source", "netlink", "--local-port", "80,443,8080,8443,9000",
                                    "--remote-port", "80,443,5432,6379,9000"]],
    "telegraf-netstat --listening-ports": [[BIN, "--source", "netlink", "--listening-ports"]],
    "telegraf-netstat --listen-queues": [[BIN, "--source", "netlink", "--listen-queues"]],
    "telegraf-netstat --listen-queues --only listen": [[BIN, "--source", "netlink", "--listen-queues", "--only", "listen"]],
    "telegraf-netstat --destinations 10 --ephemeral-ports": [[BIN, "--source", "netlink", "--destinations", "10", "--ephemeral-ports"]],
    "telegraf-netstat --by-cgroup": [[BIN, "--source", "netlink", "--by-cgroup"]],
    "telegraf-netstat --counters": [[BIN, "--source", "netlink", "--counters"]],
    "telegraf-netstat, every breakdown": [[BIN, "--source", "netlink", *EVERY_BREAKDOWN]],
    "telegraf-netstat, every breakdown --health": [[BIN, "--source", "netlink", *EVERY_BREAKDOWN, "--health"]],
    "telegraf-netstat --source proc": [[BIN, "--source", "proc"]],
    "ss -tan + ss -uan": [["ss", "-tan"], ["ss", "-uan"]],
}


def unshare_net():
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


UNSEEN = "E! cannot look at the network namespace of "


def partial_ok(cmd, code, stderr):
    """Exit 3 from --all-netns is expected where even root cannot look at some
    process (a sandbox's PID 1): the program says so in one E! line and counts
    the rest. Any other non-zero exit fails the benchmark."""
    lines = [l for l in stderr.splitlines() if l.startswith("E! ")]
    return code == 3 and "--all-netns" in cmd and len(lines) == 1 and lines[0].startswith(UNSEEN)


def measure(cmds):
    """One gather: total CPU seconds of its processes, their peak RSS (KiB), wall seconds."""
    cpu, rss, wall = 0.0, 0, 0.0
    for cmd in cmds:
        p = subprocess.run([SPAWN] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0 and not partial_ok(cmd, p.returncode, p.stderr):
            sys.exit(f"{cmd} exited {p.returncode}: {p.stderr}")
        c, r, w = p.stderr.split()[-3:]
        cpu += float(c)
        rss = max(rss, int(r))
        wall += float(w)
    return cpu, rss, wall


def execd_per_gather(gathers, args=(), lines=1):
    """CPU per gather of one long-running --execd process: (CPU of N+1 gathers
    minus CPU of 1 gather) / N, so start-up is not counted. Peak RSS too.
    Each gather prints `lines` lines."""
    def session(n):
        p = subprocess.Popen([SPAWN, BIN, "--execd", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, bufsize=1)
        for _ in range(n + 1):
            p.stdin.write("\n")
            p.stdin.flush()
            for _ in range(lines):
                if not p.stdout.readline():
                    sys.exit(f"execd {args} stopped answering")
        p.stdin.close()
        err = p.stderr.read()
        p.wait()
        c, r, _ = err.split()[-3:]
        return float(c), int(r)
    base = statistics.median(session(0)[0] for _ in range(5))
    runs = [session(gathers) for _ in range(3)]
    return {"cpu_s": max(0.0, statistics.median(r[0] for r in runs) - base) / gathers,
            "peak_rss_kib": max(r[1] for r in runs)}


def proc_cpu_s(pid):
    """CPU seconds of a running process, every thread, from the scheduler's
    nanosecond clock (/proc/PID/task/*/schedstat; /proc/PID/stat counts in
    10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def scrape(port, tls=None):
    """One GET /metrics (over TLS with basic auth if `tls` is a
    (context, header) pair: a new connection and full handshake each time,
    as the exporter closes after every answer); wall seconds."""
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as raw:
        s, auth = (tls[0].wrap_socket(raw, server_hostname="localhost"), tls[1]) if tls else (raw, b"")
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n")
        while s.recv(65536):
            pass
    return time.perf_counter() - t


def tls_setup(d):
    """A CA and a server certificate (P-256, openssl), a bcrypt hash (cost 10,
    htpasswd) and a web config in `d`: the exporter's arguments and the
    client's (context, Authorization header)."""
    def run(*a):
        subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-days", "2", "-subj", "/CN=bench-ca", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=localhost", "-keyout", f"{d}/server.key", "-out", f"{d}/server.csr")
    with open(f"{d}/ext", "w") as f:
        f.write("subjectAltName=DNS:localhost\n")
    run("openssl", "x509", "-req", "-days", "2", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.crt",
        "-CAkey", f"{d}/ca.key", "-CAcreateserial", "-extfile", f"{d}/ext", "-out", f"{d}/server.crt")
    h = subprocess.run(["htpasswd", "-nbB", "-C", "10", "bench", "bench"], check=True,
                       capture_output=True, text=True).stdout.strip().split(":", 1)[1]
    with open(f"{d}/web.yml", "w") as f:
        f.write(f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                f"basic_auth_users:\n  bench: {h}\n")
    ctx = ssl.create_default_context(cafile=f"{d}/ca.crt")
    header = b"Authorization: Basic " + base64.b64encode(b"bench:bench") + b"\r\n"
    return ["--web.config.file", f"{d}/web.yml"], (ctx, header)


def serve_per_scrape(scrapes, args=(), tls=False):
    """CPU per scrape of the --listen exporter (its process's CPU over
    `scrapes` scrapes, after one to warm up), and the median wall time of a
    scrape seen by the client. With `tls`: over TLS with basic auth (the
    warm-up pays the one bcrypt check; the password is then remembered)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = tempfile.mkdtemp()
    web, client = tls_setup(d) if tls else ([], None)
    p = subprocess.Popen([BIN, "--listen", f"127.0.0.1:{port}", *args, *web], stdin=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                scrape(port, client)
                break
            except OSError:
                time.sleep(0.01)
        before = proc_cpu_s(p.pid)
        walls = [scrape(port, client) for _ in range(scrapes)]
        cpu = (proc_cpu_s(p.pid) - before) / scrapes
        return {"cpu_s": cpu, "wall_s": statistics.median(walls)}
    finally:
        p.terminate()
        p.wait()
        subprocess.run(["rm", "-r", d], check=True)


def count_line(out):
    fields = dict(f.split("=") for f in out.split()[1].split(","))
    return {k: int(v[:-1]) for k, v in fields.items() if v.endswith("i")}


def run_scale(established):
    pop = subprocess.Popen(
        [POPULATE, str(established), str(TIME_WAIT), str(LISTENERS), str(UDP)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=unshare_net, text=True,
    )
    if pop.stdout.readline().strip() != "ready":
        sys.exit("populate failed")
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    setns(f"/proc/{pop.pid}/ns/net")
    try:
        counts = count_line(subprocess.run([BIN], capture_output=True, text=True, check=True).stdout)
        total = sum(counts.values())
        eph = count_line(subprocess.run([BIN, "--ephemeral-ports", "--only", "ephemeral"], capture_output=True,
                                        text=True, check=True).stdout)
        cg = subprocess.run([BIN, "--by-cgroup", "--only", "cgroup"], capture_output=True, text=True,
                            check=True).stdout.splitlines()
        res = {"established": established, "counts": counts, "sockets": total, "approaches": {},
               "destinations": eph["destinations"], "outbound_max": eph["max_per_destination"],
               "cgroups": len([l for l in cg if not l.startswith("netstat_cgroup,cgroup=unattributed ")])}
        samples = {name: [] for name in APPROACHES}
        for _ in range(RUNS):  # interleaved, so drifts in machine load hit all alike
            for name, cmds in APPROACHES.items():
                samples[name].append(measure(cmds))
        res["execd"] = execd_per_gather(20)
        res["serve"] = serve_per_scrape(20)
        res["serve_native"] = serve_per_scrape(20, ["--prometheus-names", "native"])
        res["serve_tls"] = serve_per_scrape(20, tls=True)
        for name, s in samples.items():
            res["approaches"][name] = {
                "cpu_s": statistics.median(x[0] for x in s),
                "peak_rss_kib": max(x[1] for x in s),
                "wall_s": statistics.median(x[2] for x in s),
            }
        return res
    finally:
        if libc.setns(home, CLONE_NEWNET) != 0:
            sys.exit("cannot return to the original namespace")
        os.close(home)
        pop.stdin.close()
        pop.wait()


UDP_HEALTH = int(os.environ.get("UDP_HEALTH", "10000"))
TCP_INFO = int(os.environ.get("TCP_INFO", "200000"))


def busiest_port_near(established, share):
    """The local port of a listener whose accepted sockets are nearest to
    `share` of the namespace's sockets, and how many it has."""
    out = subprocess.run(["ss", "-Htan", "state", "established"], capture_output=True, text=True,
                         check=True).stdout
    listening = {int(l.split()[3].rsplit(":", 1)[1]) for l in
                 subprocess.run(["ss", "-Htln"], capture_output=True, text=True, check=True).stdout.splitlines()}
    per_port = {}
    for line in out.splitlines():
        port = int(line.split()[2].rsplit(":", 1)[1])
        if port in listening:
            per_port[port] = per_port.get(port, 0) + 1
    want = established * share
    return min(per_port.items(), key=lambda kv: abs(kv[1] - want))


def top_destinations_near(established, share):
    """How many of the busiest destinations (`netstat_destination`'s order,
    which counts TIME_WAIT too) hold about `share` of the namespace's
    established sockets, and how many they hold."""
    out = subprocess.run([BIN, "--destinations", "1000"], capture_output=True, text=True, check=True).stdout
    want, n, held = established * share, 0, 0
    for line in out.splitlines():
        if held >= want:
            break
        if line.startswith("netstat_destination,") and "address=other" not in line:
            fields = dict(f.split("=", 1) for f in line.split(" ", 1)[1].split(","))
            n, held = n + 1, held + int(fields["tcp_established"].rstrip("i"))
    return n, held


def tcp_info_cost(established):
    """--tcp-info at `established` sockets: the plain run, --tcp-info with
    one listener's accepted sockets selected (about 1 %), and --tcp-info
    with nothing selected (--listening-ports only), beside the floor."""
    pop = subprocess.Popen(
        [POPULATE, str(established), str(TIME_WAIT), str(LISTENERS), str(UDP)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=unshare_net, text=True,
    )
    if pop.stdout.readline().strip() != "ready":
        sys.exit("populate failed")
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    setns(f"/proc/{pop.pid}/ns/net")
    try:
        state_dir = tempfile.TemporaryDirectory(prefix="telegraf-netstat-bench-")
        state = os.path.join(state_dir.name, "netstat.state")
        port, selected = busiest_port_near(established, 0.01)
        dests, dest_selected = top_destinations_near(established, 0.01)
        approaches = {
            "floor": [[FLOOR]],
            "plain": [[BIN, "--source", "netlink"]],
            "port": [[BIN, "--source", "netlink", "--local-port", str(port)]],
            "tcp-info 1 %": [[BIN, "--source", "netlink", "--local-port", str(port), "--tcp-info"]],
            "tcp-info, nothing selected": [[BIN, "--source", "netlink", "--listening-ports", "--tcp-info"]],
            "destinations": [[BIN, "--source", "netlink", "--destinations", str(dests)]],
            "tcp-info 1 % by destination": [[BIN, "--source", "netlink", "--destinations", str(dests),
                                             "--tcp-info"]],
            "tcp-info 1 % by destination, --state-file": [[BIN, "--source", "netlink", "--destinations",
                                                           str(dests), "--tcp-info", "--state-file", state]],
        }
        # The state file as a run before the first measured one left it: each
        # measured run looks up the destinations the last one kept.
        measure(approaches["tcp-info 1 % by destination, --state-file"])
        samples = {name: [] for name in approaches}
        for _ in range(RUNS):
            for name, cmds in approaches.items():
                samples[name].append(measure(cmds))
        # In a loop the destinations selected at the last gather are looked
        # up, not walked for: CPU per gather of --execd, after the first.
        looping = {"execd plain": [], "execd destinations": ["--destinations", str(dests)],
                   "execd tcp-info 1 % by destination": ["--destinations", str(dests), "--tcp-info"]}
        loops = {}
        for name, args in looping.items():
            lines = len(subprocess.run([BIN, *args], capture_output=True, text=True, check=True)
                        .stdout.splitlines())
            loops[name] = execd_per_gather(RUNS, args, lines)["cpu_s"]
        return {"established": established, "selected": selected, "port": port,
                "destinations": dests, "destinations_selected": dest_selected,
                "approaches": {name: {"cpu_s": min(x[0] for x in s), "median_cpu_s": statistics.median(x[0] for x in s)}
                               for name, s in samples.items()},
                "execd_cpu_s": loops}
    finally:
        if libc.setns(home, CLONE_NEWNET) != 0:
            sys.exit("cannot return to the original namespace")
        os.close(home)
        pop.stdin.close()
        pop.wait()


def print_tcp_info(t):
    """--tcp-info's cost at one scale: least and median CPU per gather."""
    a = t["approaches"]
    plain = a["plain"]
    print(f"--tcp-info at {t['established']} ESTABLISHED, {t['selected']} selected (local port {t['port']}); "
          f"by destination: the top {t['destinations']}, {t['destinations_selected']} sockets:")
    for name, x in a.items():
        print(f"  {name}: least {x['cpu_s']:.4f} CPU s/gather ({x['cpu_s']/plain['cpu_s']:.2f} x plain), "
              f"median {x['median_cpu_s']:.4f} ({x['median_cpu_s']/plain['median_cpu_s']:.2f} x); "
              f"least {x['cpu_s']/a['floor']['cpu_s']:.2f} x floor")
    loops = t.get("execd_cpu_s", {})
    for name, cpu in loops.items():
        print(f"  {name}: {cpu:.4f} CPU s/gather ({cpu/loops['execd plain']:.2f} x execd plain)")


def udp_health():
    """UDP_HEALTH UDP sockets (and nothing else but 70 listeners): one gather
    without and with --health, whose UDP dumps ask for INET_DIAG_SKMEMINFO
    (a 9 x u32 attribute per record, and the kernel's sk_meminfo fill), RUNS
    times interleaved; the floor dumps the same sockets without it."""
    pop = subprocess.Popen([POPULATE, "0", "0", str(LISTENERS), str(UDP_HEALTH)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=unshare_net, text=True)
    if pop.stdout.readline().strip() != "ready":
        sys.exit("populate failed")
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    setns(f"/proc/{pop.pid}/ns/net")
    try:
        cmds = {"floor": [[FLOOR]], "plain": [[BIN, "--source", "netlink"]],
                "health": [[BIN, "--source", "netlink", "--health"]]}
        samples = {k: [] for k in cmds}
        for _ in range(RUNS):
            for k, c in cmds.items():
                samples[k].append(measure(c))
        return {k: {"cpu_s": statistics.median(x[0] for x in v), "peak_rss_kib": max(x[1] for x in v)}
                for k, v in samples.items()}
    finally:
        if libc.setns(home, CLONE_NEWNET) != 0:
            sys.exit("cannot return to the original namespace")
        os.close(home)
        pop.stdin.close()
        pop.wait()


def print_health(results, udp):
    """--health's cost: beside every breakdown, per scale; and on UDP dumps."""
    for r in results:
        a = r["approaches"]
        plain, health = a["telegraf-netstat, every breakdown"], a["telegraf-netstat, every breakdown --health"]
        print(f"--health with every breakdown at {r['sockets']} sockets: {health['cpu_s']:.4f} against "
              f"{plain['cpu_s']:.4f} CPU s/gather ({health['cpu_s']/plain['cpu_s']:.3f} x)")
    if udp:
        print(f"{UDP_HEALTH} UDP sockets: floor {udp['floor']['cpu_s']*1e3:.2f} ms, plain "
              f"{udp['plain']['cpu_s']*1e3:.2f} ms, --health (SKMEMINFO on the UDP dumps) "
              f"{udp['health']['cpu_s']*1e3:.2f} ms CPU/gather ({udp['health']['cpu_s']/udp['plain']['cpu_s']:.2f} x plain)")


NETNS, PER_NETNS = int(os.environ.get("NETNS", "50")), 1000


def run_namespaces():
    """--all-netns over NETNS namespaces of PER_NETNS sockets each (900
    ESTABLISHED, 50 listeners, 50 UDP): one-shot and per execd gather, next
    to --netns naming the same namespaces (no re-scan) and to the floor's
    dumps in one of them times NETNS."""
    pops = []
    try:
        for _ in range(NETNS):
            p = subprocess.Popen([POPULATE, str(PER_NETNS - 100), "0", "50", "50"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, preexec_fn=unshare_net, text=True)
            if p.stdout.readline().strip() != "ready":
                sys.exit("populate failed")
            pops.append(p)
        paths = [f"/proc/{p.pid}/ns/net" for p in pops]
        listed = [a for path in paths for a in ("--netns", path)]
        p = subprocess.run([BIN, "--all-netns"], capture_output=True, text=True)
        if p.returncode != 0 and not partial_ok([BIN, "--all-netns"], p.returncode, p.stderr):
            sys.exit(f"--all-netns exited {p.returncode}: {p.stderr}")
        out = p.stdout.splitlines()
        ours = {f"netns=pid:{p.pid}" for p in pops}
        found = [l for l in out if l.split()[0].split(",")[1] in ours]
        if len(found) != NETNS or any(sum(count_line(l).values()) != PER_NETNS for l in found):
            sys.exit(f"--all-netns did not find {NETNS} namespaces of {PER_NETNS} sockets: {out}")
        procs = sum(1 for d in os.listdir("/proc") if d.isdigit())
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        setns(paths[0])
        try:
            floor = statistics.median(measure([[FLOOR]])[0] for _ in range(RUNS)) * NETNS
        finally:
            libc.setns(home, CLONE_NEWNET)
            os.close(home)
        oneshot = {name: [] for name in ("all", "all_nolabels", "listed")}
        for _ in range(RUNS):
            oneshot["all"].append(measure([[BIN, "--all-netns"]]))
            oneshot["all_nolabels"].append(measure([[BIN, "--all-netns", "--no-netns-labels"]]))
            oneshot["listed"].append(measure([[BIN, *listed]]))
        res = {"namespaces": NETNS, "per_namespace": PER_NETNS, "reported": len(out), "processes": procs,
               "floor_x_n_cpu_s": floor}
        for name, s in oneshot.items():
            res[f"oneshot_{name}"] = {"cpu_s": statistics.median(x[0] for x in s),
                                      "peak_rss_kib": max(x[1] for x in s),
                                      "wall_s": statistics.median(x[2] for x in s)}
        found, procs, scan_us = subprocess.run([SCAN, "2000"], capture_output=True, text=True,
                                               check=True).stdout.split()
        res["scan"] = {"namespaces": int(found), "processes": int(procs), "us": float(scan_us)}
        res["execd_all"] = execd_per_gather(20, ["--all-netns"], len(out))
        res["execd_all_nolabels"] = execd_per_gather(20, ["--all-netns", "--no-netns-labels"], len(out))
        res["execd_listed"] = execd_per_gather(20, listed, NETNS)
        return res
    finally:
        for p in pops:
            p.stdin.close()
        for p in pops:
            p.wait()


def idle_wall():
    """Wall time of a one-shot run in an empty namespace, next to /bin/true
    (fork to exit as the launcher sees it)."""
    pid = os.fork()
    if pid == 0:
        unshare_net()
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        out = {}
        out["serve"] = serve_per_scrape(500)
        out["serve_tls"] = serve_per_scrape(200, tls=True)
        for name, cmd in [("telegraf-netstat", [BIN]), ("/bin/true", ["/bin/true"])]:
            walls, cpus, rss = [], [], 0
            for _ in range(100):
                cpu, r, wall = measure([cmd])
                walls.append(wall)
                cpus.append(cpu)
                rss = max(rss, r)
            out[name] = {"wall_ms": statistics.median(walls) * 1e3, "cpu_ms": statistics.median(cpus) * 1e3, "peak_rss_kib": rss}
        out["execd"] = execd_per_gather(5000)
        # The floor's dumps alone, repeated on one socket: the kernel's idle cost.
        one = statistics.median(measure([[FLOOR, "1"]])[0] for _ in range(20))
        many = statistics.median(measure([[FLOOR, "5001"]])[0] for _ in range(3))
        out["floor_repeat"] = {"cpu_s": (many - one) / 5000}
        with open(os.path.join(ROOT, "bench", "out", "idle.json"), "w") as f:
            json.dump(out, f)
        os._exit(0)
    os.waitpid(pid, 0)
    with open(os.path.join(ROOT, "bench", "out", "idle.json")) as f:
        return json.load(f)


COUNTERS_NETNS = int(os.environ.get("COUNTERS_NETNS", "20"))
COUNTERS_FLOOR = os.path.join(ROOT, "bench", "out", "counters-floor")


def sysctl(name, value=None):
    path = "/proc/sys/" + name.replace(".", "/")
    if value is None:
        with open(path) as f:
            return f.read().strip()
    with open(path, "w") as f:
        f.write(str(value))


def counters_per_namespace(gathers=1000):
    """--counters in COUNTERS_NETNS idle namespaces: the CPU per gather of one
    --execd process with --counters (the default set, and all) minus without,
    per namespace; and --only counters. The namespaces get TCP and UDP hash
    tables of their own (tcp_child_ehash_entries, udp_child_hash_entries set
    while they are made, then restored), so their dumps are cheap and the
    difference is not lost in walks of the host's tables. Next to it the
    floor: bench/counters-floor.c reading the three files, nothing else, and
    each file alone."""
    knobs = ["net.ipv4.tcp_child_ehash_entries", "net.ipv4.udp_child_hash_entries"]
    old = {k: sysctl(k) for k in knobs}
    try:
        for k in knobs:
            sysctl(k, 128)
        sleepers = [subprocess.Popen(["sleep", "3600"], preexec_fn=unshare_net) for _ in range(COUNTERS_NETNS)]
    finally:
        for k, v in old.items():
            sysctl(k, v)
    try:
        paths = [f"/proc/{p.pid}/ns/net" for p in sleepers]
        listed = [a for path in paths for a in ("--netns", path)]
        n = COUNTERS_NETNS
        def floor_of(files):
            env = {**os.environ, "COUNTERS_FILES": files}
            return statistics.median(
                float(subprocess.run([COUNTERS_FLOOR, "2000", *paths], capture_output=True, text=True,
                                     check=True, env=env).stdout) for _ in range(3)) / 1e6
        floor = floor_of("snmp netstat snmp6")
        # Each file's share of it: what a default set without one would save.
        each = {f: floor_of(f) for f in ("snmp", "netstat", "snmp6")}
        plain = execd_per_gather(gathers, listed, n)
        out = {"floor_s": floor, "floor_per_file_s": each, "plain_per_namespace_s": plain["cpu_s"] / n}
        for name, args, lines in (("default", ["--counters"], 2 * n), ("all", ["--counters=all"], 2 * n),
                                  ("only", ["--counters", "--only", "counters"], n)):
            r = execd_per_gather(gathers, [*args, *listed], lines)
            out[name] = {"per_namespace_s": r["cpu_s"] / n, "added_s": (r["cpu_s"] - plain["cpu_s"]) / n,
                         "peak_rss_kib": r["peak_rss_kib"]}
        return out
    finally:
        for p in sleepers:
            p.kill()
            p.wait()


SHARED_NETNS = int(os.environ.get("SHARED_NETNS", "100"))
SHARED_BUSY = int(os.environ.get("SHARED_BUSY", "200000"))


def shared_hash():
    """Issue 35's scenario: SHARED_NETNS empty namespaces next to one busy
    namespace of SHARED_BUSY sockets (ESTABLISHED, both ends). One-shot
    gathers of the busy namespace alone, then of it and every empty one
    (`--netns` each, the same dumps `--all-netns` makes, without the
    machine's other namespaces), first with the empty namespaces sharing the
    host's TCP and UDP hash tables (every dump in them walks the busy one's
    sockets), then made again after net.ipv4.tcp_child_ehash_entries and
    udp_child_hash_entries were set to 128, so they get tables of their own.
    Next to it the floor program's dumps in the busy namespace."""
    busy = subprocess.Popen([POPULATE, str(SHARED_BUSY), "0", "1", "0"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, preexec_fn=unshare_net, text=True)
    if busy.stdout.readline().strip() != "ready":
        sys.exit("populate failed")
    knobs = ["net.ipv4.tcp_child_ehash_entries", "net.ipv4.udp_child_hash_entries"]
    old = {k: sysctl(k) for k in knobs}
    out = {"namespaces": SHARED_NETNS, "busy_sockets": SHARED_BUSY}
    try:
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        setns(f"/proc/{busy.pid}/ns/net")
        try:
            out["floor_busy_s"] = statistics.median(measure([[FLOOR]])[0] for _ in range(RUNS))
        finally:
            libc.setns(home, CLONE_NEWNET)
            os.close(home)
        busy_arg = ["--netns", f"/proc/{busy.pid}/ns/net"]
        out["busy_alone_s"] = statistics.median(measure([[BIN, *busy_arg]])[0] for _ in range(RUNS))
        for name, size in (("shared", None), ("own", 128)):
            try:
                if size:
                    for k in knobs:
                        sysctl(k, size)
                empties = [subprocess.Popen(["sleep", "3600"], preexec_fn=unshare_net) for _ in range(SHARED_NETNS)]
            finally:
                for k, v in old.items():
                    sysctl(k, v)
            try:
                listed = [a for e in empties for a in ("--netns", f"/proc/{e.pid}/ns/net")]
                out[name + "_s"] = statistics.median(measure([[BIN, *busy_arg, *listed]])[0] for _ in range(RUNS))
            finally:
                for e in empties:
                    e.kill()
                    e.wait()
        return out
    finally:
        for k, v in old.items():
            sysctl(k, v)
        busy.stdin.close()
        busy.wait()


def print_shared(sh):
    f = sh["busy_alone_s"]
    print(f"{sh['namespaces']} empty namespaces next to one of {sh['busy_sockets']} sockets (one-shot, CPU s per gather):")
    print("| gather | CPU s | vs the busy namespace alone |")
    print("| --- | --- | --- |")
    print(f"| the floor's dumps in the busy namespace | {sh['floor_busy_s']:.3f} | {sh['floor_busy_s']/f:.2f} |")
    print(f"| the busy namespace alone | {f:.3f} | 1.00 |")
    print(f"| it and the empty ones, sharing the host's hash | {sh['shared_s']:.3f} | {sh['shared_s']/f:.2f} |")
    print(f"| it and the empty ones, made after tcp_child_ehash_entries=128 | {sh['own_s']:.3f} | {sh['own_s']/f:.2f} |")


def svg_chart(results, path):
    w, h, ml, mr, mt, mb = 760, 440, 70, 260, 40, 50
    xs = [r["sockets"] for r in results]
    ymax = max(a["cpu_s"] for r in results for a in r["approaches"].values()) * 1.1
    xmax = max(xs) * 1.05
    px = lambda x: ml + (w - ml - mr) * x / xmax
    py = lambda y: h - mb - (h - mt - mb) * y / ymax
    colors = ["#222222", "#1f77b4", "#ff7f0e", "#d62728"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{ml}" y="22" font-size="15">CPU seconds per gather vs sockets in the namespace (median of {RUNS})</text>',
           f'<line x1="{ml}" y1="{h-mb}" x2="{w-mr}" y2="{h-mb}" stroke="black"/>',
           f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{h-mb}" stroke="black"/>']
    for i in range(6):
        y = ymax * i / 5
        out.append(f'<line x1="{ml-4}" y1="{py(y):.1f}" x2="{w-mr}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{ml-8}" y="{py(y)+4:.1f}" text-anchor="end">{y:.2f}</text>')
    for x in xs:
        out.append(f'<text x="{px(x):.1f}" y="{h-mb+18}" text-anchor="middle">{x//1000}k</text>')
    out.append(f'<text x="{(ml + w - mr) / 2}" y="{h-12}" text-anchor="middle">sockets (TCP + UDP)</text>')
    for i, name in enumerate(APPROACHES):
        pts = " ".join(f"{px(r['sockets']):.1f},{py(r['approaches'][name]['cpu_s']):.1f}" for r in results)
        c = colors[i % len(colors)]
        dash = ' stroke-dasharray="5,4"' if name == "floor" else ""
        out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for r in results:
            out.append(f'<circle cx="{px(r["sockets"]):.1f}" cy="{py(r["approaches"][name]["cpu_s"]):.1f}" r="3" fill="{c}"/>')
        ly = mt + 20 + 22 * i
        out.append(f'<line x1="{w-mr+15}" y1="{ly}" x2="{w-mr+40}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{w-mr+46}" y="{ly+4}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates namespaces and raises fd limits")
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    subprocess.run(["cc", "-O2", "-static", "-o", SPAWN, os.path.join(ROOT, "bench", "spawn.c")], check=True)
    subprocess.run(["cc", "-O2", "-o", COUNTERS_FLOOR, os.path.join(ROOT, "bench", "counters-floor.c")], check=True)
    results = []
    for n in SCALES:
        print(f"scale {n} ESTABLISHED ...", file=sys.stderr, flush=True)
        results.append(run_scale(n))
    print(f"{UDP_HEALTH} UDP sockets, --health ...", file=sys.stderr, flush=True)
    udp = udp_health() if UDP_HEALTH else None
    print(f"--tcp-info at {TCP_INFO} ESTABLISHED ...", file=sys.stderr, flush=True)
    tcp_info = tcp_info_cost(TCP_INFO) if TCP_INFO else None
    idle = idle_wall()
    print(f"--counters in {COUNTERS_NETNS} idle namespaces ...", file=sys.stderr, flush=True)
    counters = counters_per_namespace() if COUNTERS_NETNS > 1 else None
    print(f"{NETNS} namespaces of {PER_NETNS} sockets ...", file=sys.stderr, flush=True)
    ns = run_namespaces() if NETNS else None
    print(f"{SHARED_NETNS} empty namespaces next to {SHARED_BUSY} sockets ...", file=sys.stderr, flush=True)
    shared = shared_hash() if SHARED_NETNS else None
    with open(os.path.join(ROOT, "bench", "out", "results.json"), "w") as f:
        json.dump({"scales": results, "idle": idle, "runs": RUNS, "namespaces": ns, "counters": counters,
                   "udp_health": udp, "tcp_info": tcp_info, "shared_hash": shared}, f,
                  indent=1)
    svg_chart(results, os.path.join(ROOT, "docs", "cpu-per-gather.svg"))
    print(f"| sockets | approach | CPU s/gather | vs floor | peak RSS MiB |")
    print(f"|---|---|---|---|---|")
    for r in results:
        floor = r["approaches"]["floor"]["cpu_s"]
        for name, a in r["approaches"].items():
            print(f"| {r['sockets']} | {name} | {a['cpu_s']:.4f} | {a['cpu_s']/floor:.2f} | {a['peak_rss_kib']/1024:.1f} |")
    print()
    for r in results:
        print(f"{r['sockets']} sockets: {r['destinations']} TCP destinations of the outbound ends, "
              f"at most {r['outbound_max']} sockets per (local address, destination); {r['cgroups']} cgroups")
    print_health(results, udp)
    if tcp_info:
        print_tcp_info(tcp_info)
    for r in results:
        e = r["execd"]
        floor = r["approaches"]["floor"]["cpu_s"]
        print(f"execd at {r['sockets']} sockets: {e['cpu_s']:.4f} CPU s/gather ({e['cpu_s']/floor:.2f} x floor), peak RSS {e['peak_rss_kib']/1024:.1f} MiB")
    sv = idle.pop("serve")
    print(f"exporter idle: {sv['cpu_s']*1e6:.1f} us CPU/scrape, {sv['wall_s']*1e3:.3f} ms wall per scrape (median)")
    st = idle.pop("serve_tls")
    print(f"exporter idle over TLS with basic auth: {st['cpu_s']*1e6:.1f} us CPU/scrape (handshake included), "
          f"{st['wall_s']*1e3:.3f} ms wall per scrape (median)")
    for r in results:
        sv2 = r["serve"]
        floor = r["approaches"]["floor"]["cpu_s"]
        print(f"exporter at {r['sockets']} sockets: {sv2['cpu_s']:.4f} CPU s/scrape ({sv2['cpu_s']/floor:.2f} x floor), "
              f"{sv2['wall_s']*1e3:.1f} ms wall per scrape")
        sv3 = r["serve_native"]
        print(f"exporter --prometheus-names native at {r['sockets']} sockets: {sv3['cpu_s']:.4f} CPU s/scrape "
              f"({sv3['cpu_s']/floor:.2f} x floor)")
        sv4 = r["serve_tls"]
        print(f"exporter over TLS with basic auth at {r['sockets']} sockets: {sv4['cpu_s']:.4f} CPU s/scrape "
              f"({sv4['cpu_s']/floor:.2f} x floor, {sv4['cpu_s']/sv2['cpu_s']:.2f} x plain HTTP), "
              f"{sv4['wall_s']*1e3:.1f} ms wall per scrape")
    e = idle.pop("execd")
    f = idle.pop("floor_repeat")
    print(f"execd idle: {e['cpu_s']*1e6:.1f} us CPU/gather, peak RSS {e['peak_rss_kib']/1024:.1f} MiB; "
          f"floor dumps repeated on one socket: {f['cpu_s']*1e6:.1f} us/gather ({e['cpu_s']/f['cpu_s']:.2f} x)")
    for name, a in idle.items():
        print(f"idle one-shot {name}: wall {a['wall_ms']:.2f} ms, CPU {a['cpu_ms']:.2f} ms, peak RSS {a['peak_rss_kib']/1024:.1f} MiB")
    if counters:
        c = counters
        print(f"--counters in {COUNTERS_NETNS} idle namespaces (own hash tables), execd: plain "
              f"{c['plain_per_namespace_s']*1e6:.1f} us per namespace; reading the three files alone "
              f"(counters-floor) {c['floor_s']*1e6:.1f} us ("
              + ", ".join(f"{f} {t*1e6:.1f}" for f, t in c["floor_per_file_s"].items()) + " us alone)")
        for name in ("default", "all", "only"):
            a = c[name]
            print(f"  --counters {name}: {a['per_namespace_s']*1e6:.1f} us per namespace, "
                  f"{a['added_s']*1e6:.1f} us more than plain ({a['added_s']/c['floor_s']:.2f} x the files alone), "
                  f"peak RSS {a['peak_rss_kib']/1024:.1f} MiB")
    if ns:
        print()
        print(f"{ns['namespaces']} namespaces x {ns['per_namespace']} sockets ({ns['reported']} namespaces reported "
              f"with the host's, {ns['processes']} processes in /proc); floor dumps x {ns['namespaces']}: "
              f"{ns['floor_x_n_cpu_s']*1e3:.2f} ms")
        for name in ("oneshot_all", "oneshot_all_nolabels", "oneshot_listed", "execd_all",
                     "execd_all_nolabels", "execd_listed"):
            a = ns[name]
            print(f"{name}: {a['cpu_s']*1e3:.2f} ms CPU/gather ({a['cpu_s']/ns['floor_x_n_cpu_s']:.2f} x floor x n), "
                  f"peak RSS {a['peak_rss_kib']/1024:.1f} MiB")
        sc = ns["scan"]
        print(f"one --all-netns re-scan: {sc['us']:.0f} us ({sc['namespaces']} namespaces, {sc['processes']} processes)")

    if shared:
        print()
        print_shared(shared)


if __name__ == "__main__":
    main()
