"""What program.py and shared.py share: bench/run.py loaded as a module
(`run`), its shared_hash population, and the floor measured inside it."""
import contextlib, importlib.util, os, subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("run", os.path.join(HERE, "..", "run.py"))
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)


@contextlib.contextmanager
def population():
    """bench/run's shared_hash scenario: a namespace of SHARED_BUSY
    established sockets (its populate process) and SHARED_NETNS empty ones
    (a sleeping process each), all sharing the host's TCP hash; gone after."""
    busy = subprocess.Popen([run.POPULATE, str(run.SHARED_BUSY), "0", "1", "0"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, preexec_fn=run.unshare_net, text=True)
    assert busy.stdout.readline().strip() == "ready"
    empties = [subprocess.Popen(["sleep", "3600"], preexec_fn=run.unshare_net) for _ in range(run.SHARED_NETNS)]
    try:
        yield busy, empties
    finally:
        for e in empties:
            e.kill()
            e.wait()
        busy.stdin.close()
        busy.wait()


def floor_in(pid):
    """The floor program's CPU (s) in the network namespace of `pid`."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    run.setns(f"/proc/{pid}/ns/net")
    try:
        return run.measure([[run.FLOOR]])[0]
    finally:
        run.libc.setns(home, run.CLONE_NEWNET)
        os.close(home)
