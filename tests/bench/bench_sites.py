#!/usr/bin/env python3
"""Two sites and a directory of a million users, measured end to end.

Site a's node holds N users (a million by default) before it starts; a
fresh node of site b then joins it and catches up by gossip. Throughout
the run a client logs in at a and another at b (IMAP LOGIN + LOGOUT, in
a loop) for a user of a whose record is the LAST one a signed, so that b
learns it only at the end of its catch-up. Printed: catch-up seconds and
records/s, bytes per record on the wire, each node's peak RSS, logins
timed in every phase (p50/p99 and every answer that was not OK), `mmctl
check` over both sites with logins timed meanwhile, suspicions and deaths
seen by either node, and an update storm (10,000 changes at a, seconds
until b holds them all). Beside the absolute figures: this machine's own
limit, raw Ed25519 verifies/s on one core, measured in the same run.

A measuring program, not a pass/fail test. Run as root (Dovecot's mail
processes run as nobody); needs what tests/run.sh installs.

    tests/bench/bench_sites.py              # 1,000,000 users
    tests/bench/bench_sites.py -n 100000    # a smaller directory
    tests/bench/bench_sites.py --catchup-cap 600   # stop waiting after 10 min

The binaries come from $MM_BUILD_DIR (else build-bench/, configured
Release and built on first use).
"""

import argparse
import ctypes
import imaplib
import json
import os
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import benchlib as bl  # noqa: E402

HOSTS = {"a": "127.0.0.2", "b": "127.0.0.3"}
USER = "alice@a.test"          # a real mailbox of be1, signed last at a
STORM = 10000


def verifies_per_second(seconds=2.0):
    """Raw libsodium Ed25519 verifies/s on one core: this machine's own
    limit for a node that verifies every record it receives."""
    na = ctypes.CDLL("libsodium.so.23")
    if na.sodium_init() < 0:
        return None
    pk = ctypes.create_string_buffer(32)
    sk = ctypes.create_string_buffer(64)
    na.crypto_sign_keypair(pk, sk)
    msg = b"x" * 160
    sig = ctypes.create_string_buffer(64)
    na.crypto_sign_detached(sig, None, msg, ctypes.c_ulonglong(len(msg)), sk)
    verify = na.crypto_sign_verify_detached
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        for _ in range(200):
            verify(sig, msg, ctypes.c_ulonglong(len(msg)), pk)
        n += 200
    return n / (time.monotonic() - t0)


def metrics(node):
    """The node's counters as {name: value} (labels dropped, summed)."""
    out = {}
    try:
        with urllib.request.urlopen("http://%s:%d/metrics" % (
                node.host, node.port["metrics"]), timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return out
    for ln in text.splitlines():
        if not ln or ln[0] == "#":
            continue
        name, _, value = ln.rpartition(" ")
        name = name.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0) + float(value)
        except ValueError:
            pass
    return out


def peak_rss_kib(node):
    """The largest VmHWM among the node's processes (the agent, mostly)."""
    best = 0
    for pid in [node.proc.pid] + node.children():
        try:
            with open("/proc/%d/status" % pid) as f:
                for ln in f:
                    if ln.startswith("VmHWM:"):
                        best = max(best, int(ln.split()[1]))
        except OSError:
            pass
    return best


class Logins(threading.Thread):
    """Logs in at one node in a loop; every attempt is kept with the
    phase it ran in."""

    def __init__(self, mf, node, user, password, phase):
        super().__init__(daemon=True)
        self.mf, self.node = mf, node
        self.user, self.password = user, password
        self.phase = phase          # a one-item list, set by the run
        self.results = []           # (phase, seconds, outcome)
        self.stop = threading.Event()

    def once(self):
        t0 = time.monotonic()
        try:
            m = imaplib.IMAP4(self.node.host, self.node.port["imap"],
                              timeout=30)
            try:
                m.login(self.user, self.password)
                outcome = "ok"
                m.logout()
            except imaplib.IMAP4.error as e:
                text = str(e)
                outcome = ("authfail" if "AUTHENTICATIONFAILED" in text
                           else "tempfail" if "UNAVAILABLE" in text
                           else "no: " + text[:60])
                try:
                    m.logout()
                except (imaplib.IMAP4.error, OSError):
                    pass
        except OSError as e:
            outcome = "error: %s" % e.__class__.__name__
        return time.monotonic() - t0, outcome

    def run(self):
        while not self.stop.is_set():
            secs, outcome = self.once()
            self.results.append((self.phase[0], secs, outcome))
            self.stop.wait(0.2)


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def login_rows(name, logins, phases):
    rows = []
    for ph in phases:
        got = [(s, o) for p, s, o in logins.results if p == ph]
        if not got:
            continue
        ok = [s * 1000 for s, o in got if o == "ok"]
        bad = {}
        for _, o in got:
            if o != "ok":
                bad[o] = bad.get(o, 0) + 1
        rows.append(["logins at %s, %s" % (name, ph), len(got),
                     bl.fmt(pct(ok, 50)), bl.fmt(pct(ok, 99)),
                     ", ".join("%s %d" % kv for kv in sorted(bad.items()))
                     or "none"])
    return rows


def make_node(mf, env, site, seeds, peer_port):
    host = HOSTS[site]
    name = site + "1"
    key = os.path.join(env.dir, name, "transport.key")
    n = env.gossip_node(
        name, site, "%s:%d" % (host, peer_port), peers=seeds, start=False,
        host=host, workers=2,
        listeners=[("imap", "imap", {}), ("metrics", "metrics", {})],
        # Site a's second back end (the same Dovecot) takes the storm.
        backends=[env.backend_line("be1"), env.backend_line(
            "be1", alias="be1b")] if site == "a" else
        [env.backend_line("be2")],
        limits={"auth-failure-delay": "0", "auth-failure-delay-max": "0",
                "auth-failures-per-ip": "1000000",
                "connections-per-ip": "10000"},
        timeouts={"drain": "1s", "backend": "10s"},
        extra=["transport-key %s" % key,
               "session-listen %s:%d" % (host, mf.free_port())])
    mf.mmctl(["keys", "new", key]).check("keys new")
    n.certify(role="transport", pub=key + ".pub", name=name + "-transport")
    return n


def provision(mf, node, n_users, path):
    """N users at site a on be1, USER last (the highest origin_seq)."""
    with open(path, "w") as f:
        for i in range(n_users - 1):
            f.write("u%07d@bench.test,be1\n" % i)
        f.write("%s,be1\n" % USER)
    t0 = time.monotonic()
    r = mf.mmctl(["import", "csv", path], conf=node.conf, direct=True,
                 timeout=3600)
    r.check("import")
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1000000, help="users at a")
    ap.add_argument("--catchup-cap", type=float, default=1800,
                    help="seconds to wait for b's catch-up at most")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.keep:
        os.environ["MM_KEEP"] = "1"
    bl.build_dir()
    import mmfixture as mf
    bl.exit_on_signals()
    limit = verifies_per_second()
    bl.log("raw Ed25519 verifies/s, one core: %.0f" % limit)
    env = mf.Env()
    rows, phase = [], ["a alone"]
    try:
        ports = {s: mf.free_port() for s in HOSTS}
        a = make_node(mf, env, "a", [], ports["a"])
        b = make_node(mf, env, "b", ["%s:%d" % (HOSTS["a"], ports["a"])],
                      ports["b"])
        secs = provision(mf, a, args.n, os.path.join(env.dir, "users.csv"))
        bl.log("provisioned %d users at a in %.1f s" % (args.n, secs))
        a.start()
        la = Logins(mf, a, USER, mf.USERS[USER], phase)
        la.start()
        time.sleep(3)

        # Catch-up.
        phase[0] = "b catching up"
        t0 = time.monotonic()
        b.start()
        lb = Logins(mf, b, USER, mf.USERS[USER], phase)
        lb.start()
        caught = None
        last = 0
        while time.monotonic() - t0 < args.catchup_cap:
            m = metrics(b)
            have = m.get("mailmesh_directory_records", 0)
            if have >= args.n:
                caught = time.monotonic() - t0
                break
            if have != last and int(have) // 100000 != int(last) // 100000:
                bl.log("b holds %d records after %.0f s" % (
                    have, time.monotonic() - t0))
            last = have
            time.sleep(0.5)
        span = caught if caught is not None else time.monotonic() - t0
        mb, ma = metrics(b), metrics(a)
        have = mb.get("mailmesh_directory_records", 0)
        recv = mb.get("mailmesh_gossip_bytes_received_total", 0)
        rows.append(["catch-up, %d users" % args.n,
                     bl.fmt(caught) if caught is not None else
                     "> %.0f (%d held)" % (span, have), "s", "<= 60 s"])
        rows.append(["catch-up rate", bl.fmt(have / span if span else 0, 0),
                     "records/s", ">= 16,700/s"])
        rows.append(["bytes per record on the wire",
                     bl.fmt(recv / have if have else None, 0), "bytes",
                     "each record about once"])
        phase[0] = "after catch-up"
        time.sleep(5)

        # The consistency check, with logins timed meanwhile.
        phase[0] = "during check"
        t1 = time.monotonic()
        r = mf.mmctl(["check"], conf=a.conf, json=True, timeout=600)
        check_secs = time.monotonic() - t1
        phase[0] = "after check"
        rows.append(["mmctl check, both sites", bl.fmt(check_secs), "s",
                     "<= 15 s (exit %d)" % r.rc])
        time.sleep(3)

        # An update storm at a.
        phase[0] = "update storm"
        storm = os.path.join(env.dir, "storm.csv")
        with open(storm, "w") as f:
            for i in range(STORM):
                f.write("u%07d@bench.test,be1b\n" % (
                    i * ((args.n - 1) // STORM)))
        new0 = metrics(b).get("mailmesh_gossip_records_new_total", 0)
        t2 = time.monotonic()
        mf.mmctl(["import", "csv", storm], conf=a.conf,
                 timeout=600).check("storm")
        agreed = None
        while time.monotonic() - t2 < 300:
            got = metrics(b).get("mailmesh_gossip_records_new_total", 0)
            if got - new0 >= STORM:
                agreed = time.monotonic() - t2
                break
            time.sleep(0.2)
        rows.append(["update storm, %d changes at a" % STORM,
                     bl.fmt(agreed) if agreed is not None else "> 300",
                     "s to agreement", ""])
        phase[0] = "after storm"
        time.sleep(3)
        la.stop.set()
        lb.stop.set()
        la.join(40)
        lb.join(40)

        ma, mb = metrics(a), metrics(b)
        for name, node, m in (("a", a, ma), ("b", b, mb)):
            rows.append(["peak RSS of %s" % name,
                         bl.fmt(peak_rss_kib(node) / 1024.0), "MiB", ""])
            rows.append(["suspicions / deaths seen by %s" % name,
                         "%d / %d" % (m.get("mailmesh_gossip_suspicions_total",
                                            0),
                                      m.get("mailmesh_gossip_deaths_total",
                                            0)), "", "0 / 0"])
        rows.append(["raw Ed25519 verifies/s, one core", bl.fmt(limit, 0),
                     "verifies/s", "(this machine's limit)"])
        print()
        bl.print_rows(["figure", "value", "unit", "target"],
                      [r for r in rows if r])
        print()
        phases = ["a alone", "b catching up", "after catch-up",
                  "during check", "after check", "update storm",
                  "after storm"]
        bl.print_rows(["logins", "tries", "p50 ms", "p99 ms", "not ok"],
                      login_rows("a", la, phases) +
                      login_rows("b", lb, phases))
    finally:
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
