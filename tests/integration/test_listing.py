"""Listings stream, and control requests never stop the agent's loop.

Site a's node holds 70,000 users (more than the 65,535 rows one control
frame may carry), imported on its store before it starts; b's node starts
on a copy of that store, so that the two gossip from the start with
nothing to catch up. Checked: `mmctl user list` (table and --json) and
`mmctl export csv|popmap` give every user, through the running node and
with --direct, and `keys list` every key; the agent's peak memory grows by
a fraction of the answer's size during a listing, also while a client
reads one slowly or goes away in the middle; while a long request runs
(verify, or a listing whose client pauses) `user show` and `sites` answer
within a fraction of a second; an import of more than one request through
the node reaches the other node; and neither node ever suspects the
other."""

import os
import shutil
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
USERS = 70000
BACKENDS = ["be1 127.0.0.1 imap=9"]	# never connected to here
LISTENERS = [("imap", "imap", {}), ("metrics", "metrics", {})]
ADDR = {"a": "127.0.0.2", "b": "127.0.0.3"}
KIB = 1024


def sanitized():
    """Whether the binaries are built with ASan, whose quarantine keeps
    freed memory resident and whose checks slow everything down."""
    try:
        with open(os.path.join(mf.build_dir(), "CMakeCache.txt")) as f:
            return "MM_SANITIZE:BOOL=ON" in f.read()
    except OSError:
        return False


SANITIZED = sanitized()
FAST = 1.0 if SANITIZED else 0.5	# seconds: "answers at once"


def setUpModule():
    global ENV
    ENV = mf.Env(backends=())


def tearDownModule():
    global ENV
    if ENV is not None:
        ENV.close()
        ENV = None


def user(i):
    return "u%06d@list.test" % i


# --- the agent process -------------------------------------------------------

def agent_pid(node):
    """The child of NODE holding its control socket: the directory
    agent."""
    return node.agent_pid()


def status_kib(pid, field):
    """A size from /proc/PID/status: VmHWM (the peak resident size),
    RssAnon (the heap's share now), RssFile (the store's pages mapped)."""
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith(field + ":"):
                return int(ln.split()[1])
    return 0


class AnonPeak(threading.Thread):
    """The highest RssAnon of PID while it runs, sampled every few ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak = pid, status_kib(pid, "RssAnon")
        self.base = self.peak
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, status_kib(self.pid, "RssAnon"))
            time.sleep(0.003)

    def grew(self):
        self.stop.set()
        self.join()
        return self.peak - self.base


def suspicions(nodes):
    return [mf.metric(n, "mailmesh_gossip_suspicions_total") for n in nodes]


# --- a raw control client that reads when it wants -------------------------

def mp_str(s):
    b = s.encode()
    assert len(b) < 32
    return bytes([0xa0 | len(b)]) + b


def request_frame(op, args):
    body = bytes([0x92]) + mp_str(op) + bytes([0x90 | len(args)]) + \
        b"".join(mp_str(a) for a in args)
    return b"MMCT" + struct.pack(">HHI", 1, 1, len(body)) + body


class Reader:
    """msgpack, only what control answers hold: arrays, strings, uints."""

    def __init__(self, b):
        self.b, self.i = b, 0

    def take(self, n):
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def obj(self):
        t = self.b[self.i]
        self.i += 1
        if t <= 0x7f:
            return t
        if 0x90 <= t <= 0x9f:
            return [self.obj() for _ in range(t & 0x0f)]
        if 0xa0 <= t <= 0xbf:
            return self.take(t & 0x1f).decode()
        sizes = {0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8}
        if t in sizes:
            return int.from_bytes(self.take(sizes[t]), "big")
        strs = {0xd9: 1, 0xda: 2, 0xdb: 4}
        if t in strs:
            return self.take(int.from_bytes(self.take(strs[t]),
                                            "big")).decode()
        arrs = {0xdc: 2, 0xdd: 4}
        if t in arrs:
            n = int.from_bytes(self.take(arrs[t]), "big")
            return [self.obj() for _ in range(n)]
        raise ValueError("msgpack type 0x%02x" % t)


class SlowClient:
    """Sends one request on the control socket, then reads as told."""

    def __init__(self, node, op, args):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A small receive buffer: the agent meets back-pressure early.
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * KIB)
        self.s.settimeout(30)
        self.s.connect(node.control_socket)
        self.s.sendall(request_frame(op, args))
        self.buf = b""
        self.bytes = 0
        self.rows = []
        self.status = None
        self.frames = 0

    def read_some(self, n):
        """Reads about N bytes (and decodes the frames they complete)."""
        got = 0
        while got < n and self.status is None:
            b = self.s.recv(min(65536, n - got))
            if not b:
                raise AssertionError("the node closed the socket")
            got += len(b)
            self.bytes += len(b)
            self.buf += b
            self._frames()

    def read_all(self):
        while self.status is None:
            self.read_some(1 << 20)

    def _frames(self):
        while len(self.buf) >= 12:
            magic, _, ftype, blen = struct.unpack(">4sHHI", self.buf[:12])
            assert magic == b"MMCT", magic
            if len(self.buf) < 12 + blen:
                return
            body, self.buf = self.buf[12:12 + blen], self.buf[12 + blen:]
            self.frames += 1
            status, message, rows = Reader(body).obj()
            self.rows.extend(rows)
            if ftype == 4:
                self.status, self.message = status, message

    def close(self):
        self.s.close()


# --- the test -----------------------------------------------------------------

class ListingTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        port = {s: mf.free_port() for s in ADDR}
        listen = {s: "%s:%d" % (ADDR[s], port[s]) for s in ADDR}
        cls.a = ENV.gossip_node("la", "a", listen["a"], start=False,
                                backends=BACKENDS, listeners=LISTENERS)
        cls.b = ENV.gossip_node("lb", "b", listen["b"],
                                peers=[listen["a"]], start=False,
                                backends=BACKENDS, listeners=LISTENERS)
        # b's certificate in a's store too: b runs on a copy of it.
        cls.a.certify(pub=cls.b.node_pub, site="b", name="lb")
        csv = os.path.join(ENV.dir, "users.csv")
        with open(csv, "w") as f:
            for i in range(USERS):
                f.write("%s,be1\n" % user(i))
        t0 = time.monotonic()
        cls.a.ctl("import", "csv", csv, direct=True,
                  timeout=600).check("import")
        sys.stderr.write("\n  import of %d users: %.1f s\n" % (
            USERS, time.monotonic() - t0))
        shutil.rmtree(cls.b.store)
        shutil.copytree(cls.a.store, cls.b.store)
        cls.a.start()
        cls.b.start()
        ok = mf.wait_for(lambda: all(
            cls.state(n, m) == "alive" for n, m in ((cls.a, "lb"),
                                                     (cls.b, "la"))), 15)
        assert ok, "the two nodes do not see each other alive"
        cls.agent = agent_pid(cls.a)
        cls.hwm0 = status_kib(cls.agent, "VmHWM")
        cls.file0 = status_kib(cls.agent, "RssFile")
        cls.susp0 = suspicions((cls.a, cls.b))

    @staticmethod
    def state(node, name):
        return node.members().get(name, {}).get("state")

    def check_table(self, out):
        lines = out.splitlines()
        self.assertEqual(len(lines), USERS + 1, lines[:3])
        self.assertTrue(lines[0].startswith("user "), lines[0])
        self.assertEqual(lines[1].split()[0], user(0))
        self.assertEqual(lines[-1].split()[0], user(USERS - 1))

    def check_listings(self, direct):
        n = self.a
        r = n.ctl("user", "list", direct=direct, timeout=120)
        self.assertEqual(r.rc, 0, r)
        self.check_table(r.out)
        j = n.ctl("user", "list", json=True, direct=direct, timeout=120)
        self.assertEqual(j.rc, 0, j)
        rows = j.json()
        self.assertEqual(len(rows), USERS)
        self.assertEqual(len({x["user"] for x in rows}), USERS)
        self.assertEqual(rows[-1]["user"], user(USERS - 1))
        e = n.ctl("export", "csv", direct=direct, timeout=120)
        self.assertEqual(e.rc, 0, e)
        lines = e.out.splitlines()
        self.assertEqual(lines[0], "user,backend,state,target_site")
        self.assertEqual(len(lines), USERS + 1)
        self.assertEqual(len(set(lines[1:])), USERS)
        self.assertEqual(lines[1], "%s,be1,active" % user(0))
        p = n.ctl("export", "popmap", direct=direct, timeout=120)
        self.assertEqual(p.rc, 0, p)
        self.assertEqual(len(p.out.splitlines()), USERS)
        k = n.ctl("keys", "list", json=True, direct=direct)
        self.assertEqual(k.rc, 0, k)
        self.assertEqual({x["name"] for x in k.json()}, {"la", "lb"})
        return r, j

    def test_2_listings_through_the_node(self):
        t0 = time.monotonic()
        self.check_listings(direct=False)
        sys.stderr.write("  listings through the node: %.1f s\n"
                         % (time.monotonic() - t0))

    def test_3_listings_direct(self):
        self.check_listings(direct=True)

    def test_1_agent_memory_bounded(self):
        # The first listings of this agent: its heap has not grown yet.
        peak = AnonPeak(self.agent)
        peak.start()
        j = self.a.ctl("user", "list", json=True, timeout=120).check()
        self.assertEqual(len(j.json()), USERS)
        e = self.a.ctl("export", "csv", timeout=120).check()
        anon = peak.grew()
        answer = len(j.out) // KIB
        # The peak since the start, but for the store's pages the
        # listings mapped (file-backed, shared, not the answer's).
        hwm = status_kib(self.agent, "VmHWM") - self.hwm0 - (
            status_kib(self.agent, "RssFile") - self.file0)
        sys.stderr.write("  listing of %d KiB (export %d KiB): agent heap "
                         "peak +%d KiB, VmHWM +%d KiB beside the store's "
                         "pages\n" % (answer, len(e.out) // KIB, anon, hwm))
        if SANITIZED:
            return		# freed memory stays resident
        self.assertLess(anon, answer // 3, "the agent holds the listing")
        self.assertLess(hwm, answer // 3, "the agent held a listing")

    def test_4_slow_reader(self):
        peak = AnonPeak(self.agent)
        peak.start()
        c = SlowClient(self.a, "user-list", [""])
        try:
            c.read_some(100 * KIB)
            # Paused: the agent stops reading slices, and answers others.
            worst = 0.0
            t_end = time.monotonic() + 3
            while time.monotonic() < t_end:
                for args in (("user", "show", user(12345)), ("sites",)):
                    r = self.a.ctl(*args)
                    self.assertEqual(r.rc, 0, r)
                    worst = max(worst, r.seconds)
                time.sleep(0.05)
            held = peak.grew()
            sys.stderr.write("  paused reader: agent heap peak +%d KiB, "
                             "slowest answer %.3f s\n" % (held, worst))
            self.assertLess(worst, FAST)
            if not SANITIZED:
                self.assertLess(held, 4 * KIB)
            c.read_all()
        finally:
            c.close()
        self.assertEqual(c.status, 0, c.message)
        self.assertEqual(len(c.rows), USERS + 1)
        self.assertEqual(c.rows[0][0], "user")
        self.assertEqual(len({r[0] for r in c.rows[1:]}), USERS)
        self.assertGreater(c.frames, 3)

    def test_5_client_gone_midway(self):
        pos = self.a.log_size()
        for op, args in (("export", []), ("user-list", [""]),
                         ("verify", [])):
            c = SlowClient(self.a, op, args)
            if op != "verify":
                c.read_some(50 * KIB)
            c.close()
            # The walk stops at the next slice.
            self.assertTrue(mf.wait_for(
                lambda: "ctl client-gone request=%s" % op
                in self.a.log_since(pos), 10), op)
        self.assertTrue(self.a.alive())
        r = self.a.ctl("user", "show", user(USERS - 1))
        self.assertEqual(r.rc, 0, r)
        e = self.a.ctl("export", "csv", timeout=120).check()
        self.assertEqual(len(e.out.splitlines()), USERS + 1)

    def test_6_loop_free_during_verify(self):
        result = {}

        def verify():
            result["v"] = self.a.ctl("verify", timeout=300)

        worst = {"user show": 0.0, "sites": 0.0}
        t = threading.Thread(target=verify)
        t0 = time.monotonic()
        t.start()
        time.sleep(0.1)
        n = 0
        while t.is_alive():
            for what, args in (("user show", ("user", "show", user(7))),
                               ("sites", ("sites",))):
                r = self.a.ctl(*args)
                self.assertEqual(r.rc, 0, r)
                worst[what] = max(worst[what], r.seconds)
            n += 1
        t.join()
        v = result["v"]
        self.assertEqual(v.rc, 0, v)
        self.assertIn("%d records checked" % (USERS + 2), v.out)
        sys.stderr.write("  verify %.1f s; meanwhile %d rounds, slowest "
                         "user show %.3f s, sites %.3f s\n" % (
                             time.monotonic() - t0, n, worst["user show"],
                             worst["sites"]))
        self.assertGreater(n, 1, "verify ended before anything was asked")
        for what, secs in worst.items():
            self.assertLess(secs, FAST, what)

    def test_7_import_through_the_node(self):
        # More than one request's rows (CTL_IMPORT_ROWS), written on the
        # writer thread; gossip takes them to b.
        csv = os.path.join(ENV.dir, "more.csv")
        with open(csv, "w") as f:
            f.write("user,backend,state\n")
            for i in range(2500):
                f.write("more%04d@list.test,be1,active\n" % i)
        r = self.a.ctl("import", "csv", csv, timeout=120)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("stored=2500 unchanged=0 failed=0", r.out)
        self.assertTrue(mf.wait_for(lambda: self.b.ctl(
            "stats", json=True).check().json()["users"] == USERS + 2500,
            30), "the imported users at b")
        self.assertEqual(self.b.ctl("user", "show",
                                    "more2499@list.test").rc, 0)

    def test_8_nobody_suspected(self):
        got = suspicions((self.a, self.b))
        if got != self.susp0:
            lines = sorted(ln for n in (self.a, self.b)
                           for ln in n.log_text().splitlines()
                           if "gossip member-" in ln or "gossip peer-" in ln)
            self.fail("suspicions %s (were %s):\n%s" % (
                got, self.susp0, "\n".join(lines)))
        # Nor was their channel dropped: a channel in use was once closed
        # as idle (its last use taken after the tick's clock) and the
        # probe on it lost.
        for n in (self.a, self.b):
            downs = [ln for ln in n.log_text().splitlines()
                     if "gossip peer-down" in ln or "gossip peer-idle" in ln]
            self.assertEqual(downs, [], n.name)
        self.assertEqual(self.state(self.a, "lb"), "alive")
        self.assertEqual(self.state(self.b, "la"), "alive")
        self.assertTrue(self.a.alive() and self.b.alive())


if __name__ == "__main__":
    mf.main()
