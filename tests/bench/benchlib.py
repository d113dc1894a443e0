"""What the benchmark programs share: logging, child processes, the
figures' formatting, and the clean-up at the end of a run."""

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys

HOST = "127.0.0.1"


def log(msg):
    sys.stderr.write("[bench] %s\n" % msg)
    sys.stderr.flush()


class StartError(Exception):
    """Something the benchmark needs could not be started."""


def build_dir():
    """Where the binaries are: $MM_BUILD_DIR, else build-bench/ at the top
    of the tree, configured Release and built on first use. Sets
    $MM_BUILD_DIR for the fixture."""
    d = os.environ.get("MM_BUILD_DIR")
    if d:
        return d
    top = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    d = os.path.join(top, "build-bench")
    if not os.path.exists(os.path.join(d, "node", "mmnode")):
        log("building Release into %s" % d)
        subprocess.run(["cmake", "-S", top, "-B", d,
                        "-DCMAKE_BUILD_TYPE=Release"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", d, "-j2"], check=True,
                       stdout=subprocess.DEVNULL)
    os.environ["MM_BUILD_DIR"] = d
    return d


def child_setup():
    """preexec_fn: own process group (killed as a whole at the end) and
    SIGTERM when the benchmark dies, even by SIGKILL."""
    os.setsid()
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)      # PR_SET_PDEATHSIG
    except Exception:
        pass


def exit_on_signals():
    """SIGTERM and SIGHUP end the run through SystemExit, so that the
    clean-up in main's finally still runs."""
    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


def port_open(port, host=HOST):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def median(xs):
    return statistics.median(xs) if xs else None


def fmt(v, digits=1):
    if v is None:
        return "n/a"
    return "%.*f" % (digits, v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return "%.2fx" % (a / b)


def print_rows(hdr, lines):
    """Prints HDR and LINES (lists of cells) as columns: the first and
    last left-aligned, the figures between right-aligned."""
    widths = [max(len(str(x[i])) for x in [hdr] + lines)
              for i in range(len(hdr))]

    def row(cells):
        out = []
        for i, c in enumerate(cells):
            if i == 0 or i == len(cells) - 1:
                out.append(str(c).ljust(widths[i]))
            else:
                out.append(str(c).rjust(widths[i]))
        return "  ".join(out).rstrip()

    print(row(hdr))
    print(row(["-" * w for w in widths]))
    for ln in lines:
        print(row(ln))


def clean_up(daemons, tmp, keep):
    """Stops DAEMONS (all asked first, then each waited for) and removes
    the run's directory TMP unless KEEP."""
    for d in daemons:
        d.stop_begin()
    for d in daemons:
        d.stop_wait()
    if keep:
        log("kept %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
