"""`mmctl check`: three gossiping nodes of sites a, b and c agree, and the
check says so (exit 0); a node that is down is named (exit 3); a byte
flipped in one node's copy of a record (its back end "be1" becomes "be9")
is found by b's scrub of its store against its hash tree: the user, the
sites that disagree, the damaged record and the back end site a does not
define (exit 1)."""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
BACKENDS = ["be1 127.0.0.1 imap=9"]	# never connected to here
LISTENERS = [("imap", "imap", {})]
SITES = ("a", "b", "c")
ADDR = {"a": "127.0.0.2", "b": "127.0.0.3", "c": "127.0.0.4"}
VICTIM = "victim@a.test"


def setUpModule():
    global ENV
    ENV = mf.Env(backends=())


def tearDownModule():
    global ENV
    if ENV is not None:
        ENV.close()
        ENV = None


def all_alive(nodes):
    return all(len([m for m in n.members().values()
                    if m["state"] == "alive"]) == len(nodes)
               for n in nodes)


def restart(n):
    if n.proc is not None:
        n.stop()
    n.logf.close()
    n.proc = None
    n.start()


class CheckTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.addr = {s: "%s:%d" % (ADDR[s], mf.free_port()) for s in SITES}
        cls.n = {}
        for s in SITES:
            seeds = [] if s == "a" else [cls.addr["a"]]
            cls.n[s] = ENV.gossip_node("k" + s, s, cls.addr[s],
                                       peers=seeds, backends=BACKENDS,
                                       listeners=LISTENERS)
        mf.wait_or_fail(lambda: all_alive(list(cls.n.values())), 15,
             "three nodes alive everywhere")

    def converged(self, count):
        def same():
            outs = [self.n[s].ctl("user", "list", json=True) for s in SITES]
            return all(o.rc == 0 and len(o.json()) == count for o in outs)
        mf.wait_or_fail(same, 15, "%d users at every node" % count)

    def test_1_clean_cluster_agrees(self):
        a, b, c = (self.n[s] for s in SITES)
        for i in range(20):
            a.ctl("user", "add", "u%d@a.test" % i, "be1").check()
        a.ctl("user", "add", VICTIM, "be1").check()
        b.ctl("user", "add", "bob@b.test", "be1").check()
        c.ctl("user", "add", "carol@c.test", "be1").check()
        self.converged(23)
        r = a.ctl("check")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("OK: 3 sites agree on 23 users", r.out)
        j = c.ctl("check", json=True)
        self.assertEqual(j.rc, 0, j)
        obj = j.json()
        self.assertEqual(obj["status"], 0)
        self.assertEqual(obj["findings"], [])
        self.assertEqual(sorted(x["node"] for x in obj["nodes"]),
                         ["ka", "kb", "kc"])
        # Without gossip: this store alone.
        d = b.ctl("check", direct=True)
        self.assertEqual(d.rc, 0, d)

    def test_2_unreachable_node_is_named(self):
        a, c = self.n["a"], self.n["c"]
        c.stop()
        t0 = time.monotonic()
        r = a.ctl("check", json=True)
        sys.stderr.write("  check with kc down: %.1fs\n"
                         % (time.monotonic() - t0))
        self.assertEqual(r.rc, 3, r)
        obj = r.json()
        self.assertTrue(any(f["kind"] == "unreachable" and f["node"] == "kc"
                            for f in obj["findings"]), r.out)
        restart(c)
        mf.wait_or_fail(lambda: all_alive(list(self.n.values())), 20,
             "kc alive again")

    def test_3_planted_divergence_is_found(self):
        a, b = self.n["a"], self.n["b"]
        b.stop()
        victim = VICTIM.encode()
        pattern = bytes([0xa0 | len(victim)]) + victim + b"\xa1a\xa3be1"
        path = os.path.join(b.store, "data.mdb")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        hits = [m.start() for m in re.finditer(re.escape(pattern), data)]
        self.assertTrue(hits, "record bytes not found in data.mdb")
        for h in hits:
            data[h + len(pattern) - 1] ^= 0x08	# "be1" -> "be9"
        with open(path, "r+b") as f:
            f.write(data)
        restart(b)
        mf.wait_or_fail(lambda: all_alive(list(self.n.values())), 20, "kb alive again")
        r = a.ctl("check", json=True)
        self.assertEqual(r.rc, 1, r)
        obj = r.json()
        found = obj["findings"]
        dis = [f for f in found if f["kind"] == "disagree"]
        self.assertEqual({f["user"] for f in dis}, {VICTIM}, r.out)
        self.assertEqual({f["site"] for f in dis}, {"a", "b", "c"}, r.out)
        self.assertEqual({f["backend"] for f in dis if f["site"] == "b"},
                         {"be9"}, r.out)
        self.assertEqual({f["backend"] for f in dis if f["site"] != "b"},
                         {"be1"}, r.out)
        self.assertTrue(any(f["kind"] == "invalid" and f["site"] == "b"
                            and f["user"] == VICTIM for f in found), r.out)
        self.assertTrue(any(f["kind"] == "unknown-backend" and
                            f["user"] == VICTIM and "be9" in f["detail"]
                            for f in found), r.out)
        # The readable report names the user and the sites.
        t = b.ctl("check")
        self.assertEqual(t.rc, 1, t)
        self.assertIn("Users on which sites disagree", t.out)
        self.assertIn(VICTIM, t.out)
        self.assertIn("at b/kb", t.out)
        self.assertIn("at a/ka", t.out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
