#!/usr/bin/env python3
"""Issue 35 Part 2 prototype check: `bpfwalk dump` against ss (sock_diag)
in every namespace it reports, per family (IPv4, IPv6) and state, on a population of NETNS private namespaces
each holding TCP sockets in every state over IPv4 and IPv6 (the tricks of
tests/support/sockets.rs), optionally with CHURN connections opened and
closed in a loop in one more namespace while the walk runs (its counts are
not compared: its pairs pass through every state).

  python3 compare.py [NETNS=20] [ROUNDS=5] [CHURN=0|1]

Each namespace is compared with ss (or with VS=program, telegraf-netstat's
netlink source) taken before and after the walk; one whose
sockets changed between the two (a TIME_WAIT expiring) is counted as moved,
not compared. Namespaces not made here (another process's) are compared too
unless OTHERS=0."""
import ctypes, json, os, socket, subprocess, sys, time, threading

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "target", "release", "bpfwalk")
STATES = {"ESTAB": 1, "SYN-SENT": 2, "SYN-RECV": 3, "FIN-WAIT-1": 4, "FIN-WAIT-2": 5, "TIME-WAIT": 6,
          "CLOSE-WAIT": 8, "LAST-ACK": 9, "LISTEN": 10, "CLOSING": 11}
libc = ctypes.CDLL(None, use_errno=True)
OTHERS = os.environ.get("OTHERS", "1") == "1"  # also compare namespaces not made here
# VS=program: compare with telegraf-netstat's netlink source (one run over
# every namespace, --by-family --format json) instead of ss.
PROGRAM = os.path.join(HERE, "..", "..", "target", "release", "telegraf-netstat") \
    if os.environ.get("VS") == "program" else None
FIELDS = {"tcp_established": 1, "tcp_syn_sent": 2, "tcp_syn_recv": 3, "tcp_fin_wait1": 4, "tcp_fin_wait2": 5,
          "tcp_time_wait": 6, "tcp_close": 7, "tcp_close_wait": 8, "tcp_last_ack": 9, "tcp_listen": 10,
          "tcp_closing": 11}


def unshare_net():
    if libc.unshare(0x40000000) != 0:
        raise OSError(ctypes.get_errno(), "unshare")


def fill(s):
    s.setblocking(False)
    try:
        while True:
            s.send(b"Z" * 16384)
    except BlockingIOError:
        pass


def drain(s):
    s.setblocking(True)
    s.settimeout(5)
    while s.recv(65536):
        pass


def listener(fam, backlog=128, rcv=None, snd=None, defer=False):
    l = socket.socket(fam, socket.SOCK_STREAM)
    if rcv:
        l.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcv)
    if snd:
        l.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, snd)
    if defer:
        l.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 30)
    l.bind(("127.0.0.1" if fam == socket.AF_INET else "::1", 0))
    l.listen(backlog)
    return l


def pair(l, rcv=None, snd=None):
    c = socket.socket(l.family, socket.SOCK_STREAM)
    if rcv:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcv)
    if snd:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, snd)
    c.connect(l.getsockname()[:2])
    s, _ = l.accept()
    return c, s


def populate(k):
    """Every TCP state, scaled by k; returns the objects to keep."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    open("/proc/sys/net/ipv4/tcp_tw_reuse", "w").write("0")
    keep = []
    v4, v6 = socket.AF_INET, socket.AF_INET6
    for fam in (v4, v6):
        l = listener(fam); keep.append(l)
        for _ in range(k + 1):
            keep += pair(l)                                  # ESTABLISHED
        for _ in range(k):                                   # TIME_WAIT
            c, s = pair(l); c.close(); drain(s); s.close()
        for _ in range(k):                                   # FIN_WAIT2 / CLOSE_WAIT
            c, s = pair(l); c.shutdown(socket.SHUT_WR); keep += [c, s]
        l0 = listener(fam, backlog=0); keep.append(l0)       # SYN_SENT
        keep.append(socket.create_connection(l0.getsockname()[:2]))
        for _ in range(k):
            c = socket.socket(fam, socket.SOCK_STREAM); c.setblocking(False)
            try:
                c.connect(l0.getsockname()[:2])
            except BlockingIOError:
                pass
            keep.append(c)
        ld = listener(fam, defer=True); keep.append(ld)      # SYN_RECV (request sockets)
        for _ in range(k):
            keep.append(socket.create_connection(ld.getsockname()[:2]))
        lf = listener(fam, rcv=4096); keep.append(lf)        # FIN_WAIT1
        for _ in range(k):
            c, s = pair(lf, snd=262144); fill(c); c.shutdown(socket.SHUT_WR); keep += [c, s]
        la = listener(fam, snd=262144); keep.append(la)      # LAST_ACK
        for _ in range(k):
            c, s = pair(la, rcv=4096); fill(s); c.shutdown(socket.SHUT_WR)
            s.setblocking(True); assert s.recv(1) == b""; s.shutdown(socket.SHUT_WR); keep += [c, s]
        lc = listener(fam, rcv=4096, snd=262144); keep.append(lc)  # CLOSING
        for _ in range(k):
            c, s = pair(lc, rcv=4096, snd=262144); fill(c); fill(s)
            c.shutdown(socket.SHUT_WR); s.shutdown(socket.SHUT_WR); drain(c); keep += [c, s]
        u = socket.socket(fam, socket.SOCK_DGRAM); u.bind(("127.0.0.1" if fam == v4 else "::1", 0)); keep.append(u)
    return keep


def child(k, churn):
    keep = populate(k)
    if churn:
        l = listener(socket.AF_INET, backlog=1024); keep.append(l)
        def loop():
            while True:
                c, s = pair(l); c.close(); s.close()
        threading.Thread(target=loop, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()


def ss_counts(pid):
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ss", "-tanH"], capture_output=True, text=True,
                         check=True).stdout
    c = {}
    for line in out.splitlines():
        w = line.split()
        key = (6 if w[3].startswith("[") else 4, STATES[w[0]])
        c[key] = c.get(key, 0) + 1
    return c


def program_counts(every):
    """{inode: {(family, state): count}} from one run of the program."""
    by_pid = {pid: ino for ino, pid in every.items()}
    args = [a for pid in every.values() for a in ("--netns", f"/proc/{pid}/ns/net")]
    out = subprocess.run([PROGRAM, "--source", "netlink", "--by-family", "--format", "json", *args],
                         capture_output=True, text=True, check=True).stdout
    got = {ino: {} for ino in every}
    for line in out.splitlines():
        m = json.loads(line)
        ino = by_pid[int(m["tags"]["netns"].removeprefix("pid:"))]
        fam = 4 if m["tags"]["family"] == "ipv4" else 6
        for name, st in FIELDS.items():
            if m["fields"][name]:
                got[ino][(fam, st)] = m["fields"][name]
    return got


def inode_pids():
    m = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                m.setdefault(os.stat(f"/proc/{p}/ns/net").st_ino, int(p))
            except OSError:
                pass
    return m


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    churn = len(sys.argv) > 3 and sys.argv[3] == "1"
    kids = []
    for i in range(n + churn):
        p = subprocess.Popen([sys.executable, __file__, "child", str(1 + i % 3), "1" if churn and i == 0 else "0"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=unshare_net)
        kids.append(p)
    try:
        for p in kids:
            assert p.stdout.readline().strip() == "ready"
        ours = {os.stat(f"/proc/{p.pid}/ns/net").st_ino: p.pid for p in kids}
        churner = os.stat(f"/proc/{kids[0].pid}/ns/net").st_ino if churn else None
        bad = moved = compared = 0
        for r in range(rounds):
            # ss before and after the walk: a namespace whose sockets moved
            # meanwhile (a TIME_WAIT expiring, 60 s after the population)
            # has no one truth to compare with and is counted as moved.
            pids = inode_pids()
            others = {ino: pid for ino, pid in pids.items() if ino not in ours} if OTHERS else {}
            every = {**others, **ours}
            every = {ino: pid for ino, pid in every.items() if ino != churner}
            if PROGRAM:
                before = program_counts(every)
                d = subprocess.run([BIN, "dump"], capture_output=True, text=True, check=True)
                after = program_counts(every)
            else:
                before = {ino: ss_counts(pid) for ino, pid in every.items()}
                d = subprocess.run([BIN, "dump"], capture_output=True, text=True, check=True)
                after = {ino: ss_counts(pid) for ino, pid in every.items()}
            got = {}
            for line in d.stdout.splitlines():
                ino, fam, st, cnt = line.split()
                got.setdefault(int(ino), {})[(int(fam) if fam != "other" else 0, int(st))] = int(cnt)
            for ino in set(got) | set(before):
                if ino == churner or ino not in before:
                    # The churner's pairs pass through every state: the
                    # other namespaces, walked meanwhile, must be exact.
                    continue
                g = got.get(ino, {})
                if before[ino] != after[ino]:
                    moved += 1
                    continue
                compared += 1
                if g != before[ino]:
                    tag = "MISMATCH" if ino in ours else "MISMATCH (not ours)"
                    print(f"round {r} netns {ino}: {tag}: bpf {sorted(g.items())} ss {sorted(before[ino].items())}")
                    bad += 1
            print(f"round {r}: {len(got)} namespaces in the walk, {sum(len(v) for v in got.values())} (ns, family, state) counts; {d.stderr.strip()}")
        print(f"{compared} namespace comparisons, {moved} skipped (sockets moved between the ss before and after)")
        print("exact" if not bad and compared else f"{bad} mismatches")
        sys.exit(1 if bad else 0)
    finally:
        for p in kids:
            p.stdin.close()
            p.wait()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(int(sys.argv[2]), sys.argv[3] == "1")
    else:
        main()
