"""`mmctl check` on a directory of 50,000 users at two sites.

Site a's node holds 50,000 users, imported on its store before it starts;
b's node starts on a copy of that store (the two then gossip with nothing
to catch up; test_gossip covers catch-up). Checked: the check answers
"agree" within a few seconds from either node; logins at both sites, for
a user of each site, all succeed while checks run, and neither node
suspects the other (the check's long reads run off the agents' loops); a
byte flipped in one user's record in b's LMDB file, b stopped, is found by
b's scrub when a check runs at a: the check names b and that user, and
shows b's damaged record beside a's."""

import os
import re
import shutil
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
USERS = 50000
ALICE = "alice@a.test"     # owned by site a, on be1
CAROL = "carol@b.test"     # owned by site b, on be2
VICTIM = "u%05d@big.test" % 31337
HOST = {"a1": "127.0.0.2", "b1": "127.0.0.3"}
SITE = {"a1": "a", "b1": "b"}
BACKEND = {"a": "be1", "b": "be2"}
CHECK_FAST = 10.0	# seconds: "a few"


def setUpModule():
    global ENV
    ENV = mf.env()


def tearDownModule():
    mf.shutdown()


def both_alive(nodes):
    return all(len([m for m in n.members().values()
                    if m["state"] == "alive"]) == len(nodes)
               for n in nodes)


def login(node, user):
    """IMAP LOGIN and LOGOUT through node: "ok" or what went wrong."""
    try:
        m = mf.IMAP4From(node.host, node.port["imap"],
                         source=mf.source_addr())
    except OSError as e:
        return "connect: %s" % e
    try:
        m.login(user, mf.USERS[user])
        m.logout()
        return "ok"
    except (mf.imaplib.IMAP4.error, OSError) as e:
        return "%s: %s" % (user, e)
    finally:
        if m.state != "LOGOUT":
            try:
                m.shutdown()
            except OSError:
                pass


class Logins(threading.Thread):
    """Logs in through node as each of users in turn until stopped."""

    def __init__(self, node, users):
        super().__init__(daemon=True)
        self.node, self.users = node, users
        self.results = []
        self.stop = threading.Event()

    def run(self):
        i = 0
        while not self.stop.is_set():
            t0 = time.monotonic()
            out = login(self.node, self.users[i % len(self.users)])
            self.results.append((time.monotonic() - t0, out))
            i += 1
            self.stop.wait(0.05)


def make_node(name, peer_port, seeds):
    host = HOST[name]
    key = os.path.join(ENV.dir, name, "transport.key")
    n = ENV.gossip_node(
        name, SITE[name], "%s:%d" % (host, peer_port), peers=seeds,
        start=False, host=host,
        listeners=[("imap", "imap", {}), ("metrics", "metrics", {})],
        backends=[ENV.backend_line(BACKEND[SITE[name]])],
        limits={"auth-failures-per-ip": "1000000",
                "connections-per-ip": "10000"},
        timeouts={"drain": "2s", "backend": "5s"},
        extra=["transport-key %s" % key,
               "session-listen %s:%d" % (host, mf.free_port())])
    mf.mmctl(["keys", "new", key]).check("keys new")
    n.certify(role="transport", pub=key + ".pub", name=name + "-transport")
    return n


class LargeCheckTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        peer = {n: mf.free_port() for n in HOST}
        seed = "%s:%d" % (HOST["a1"], peer["a1"])
        a1 = make_node("a1", peer["a1"], [])
        b1 = make_node("b1", peer["b1"], [seed])
        # b's certificates in a's store too: b runs on a copy of it.
        a1.certify(pub=b1.node_pub, site="b", name="b1")
        a1.certify(role="transport", pub=os.path.join(
            ENV.dir, "b1", "transport.key.pub"), site="b",
            name="b1-transport")
        csv = os.path.join(ENV.dir, "users.csv")
        with open(csv, "w") as f:
            for i in range(USERS):
                f.write("u%05d@big.test,be1\n" % i)
            f.write("%s,be1\n" % ALICE)
        t0 = time.monotonic()
        a1.ctl("import", "csv", csv, direct=True,
               timeout=600).check("import")
        sys.stderr.write("\n  import of %d users: %.1f s\n" % (
            USERS + 1, time.monotonic() - t0))
        shutil.rmtree(b1.store)
        shutil.copytree(a1.store, b1.store)
        a1.start()
        b1.start()
        cls.n = {"a1": a1, "b1": b1}
        mf.wait_or_fail(lambda: both_alive([a1, b1]), 20, "a1 and b1 alive at both")
        b1.ctl("user", "add", CAROL, "be2").check()
        mf.wait_or_fail(lambda: a1.ctl("user", "show", CAROL).rc == 0, 15,
             "carol's record at a")
        # The workers learn the other site's session endpoint from the
        # membership the agent publishes about once a second.
        mf.wait_or_fail(lambda: login(a1, CAROL) == "ok" and login(b1, ALICE) == "ok",
             15, "logins across the sites")
        cls.total = USERS + 2

    def check(self, node):
        t0 = time.monotonic()
        r = node.ctl("check", json=True, timeout=60)
        return r, time.monotonic() - t0

    def test_1_two_sites_agree(self):
        for name in ("a1", "b1"):
            r, secs = self.check(self.n[name])
            sys.stderr.write("  check at %s: %.2f s\n" % (name, secs))
            self.assertEqual(r.rc, 0, r)
            obj = r.json()
            self.assertEqual(obj["findings"], [], r.out)
            self.assertIn("OK: 2 sites agree on %d users" % self.total,
                          obj["summary"])
            self.assertLess(secs, CHECK_FAST)
            # Every node scrubbed its own store.
            for nd in obj["nodes"]:
                self.assertIn("scrubbed=%d" % self.total, nd["detail"],
                              nd)

    def test_2_logins_during_check(self):
        a1, b1 = self.n["a1"], self.n["b1"]
        susp0 = [mf.metric(n, "mailmesh_gossip_suspicions_total")
                 for n in (a1, b1)]
        threads = [Logins(a1, [ALICE, CAROL]), Logins(b1, [CAROL, ALICE])]
        for t in threads:
            t.start()
        try:
            time.sleep(0.5)
            t0 = time.monotonic()
            checks = 0
            while time.monotonic() - t0 < 6 or checks < 2:
                r, _ = self.check(a1 if checks % 2 == 0 else b1)
                self.assertEqual(r.rc, 0, r)
                checks += 1
            time.sleep(0.5)
        finally:
            for t in threads:
                t.stop.set()
            for t in threads:
                t.join(30)
        for t in threads:
            bad = [o for _, o in t.results if o != "ok"]
            self.assertGreater(len(t.results), 10)
            self.assertEqual(bad, [], "%s: %d of %d logins failed" % (
                t.node.name, len(bad), len(t.results)))
            slow = max(s for s, _ in t.results)
            sys.stderr.write("  %d logins at %s during %d checks, the "
                             "slowest %.2f s\n" % (len(t.results),
                                                   t.node.name, checks,
                                                   slow))
        self.assertEqual([mf.metric(n, "mailmesh_gossip_suspicions_total")
                          for n in (a1, b1)], susp0)
        self.assertTrue(both_alive([a1, b1]))

    def test_3_flipped_byte_at_b_is_named(self):
        a1, b1 = self.n["a1"], self.n["b1"]
        b1.stop()
        victim = VICTIM.encode()
        # The user's name, site and back end, as the record holds them.
        pattern = bytes([0xa0 | len(victim)]) + victim + b"\xa1a\xa3be1"
        path = os.path.join(b1.store, "data.mdb")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        hits = [m.start() for m in re.finditer(re.escape(pattern), data)]
        self.assertTrue(hits, "record bytes not found in data.mdb")
        for h in hits:
            data[h + len(pattern) - 1] ^= 0x08	# "be1" -> "be9"
        with open(path, "r+b") as f:
            f.write(data)
        b1.logf.close()
        b1.proc = None
        b1.start()
        mf.wait_or_fail(lambda: both_alive([a1, b1]), 20, "b1 alive again")
        for node in (a1, b1):
            r, secs = self.check(node)
            sys.stderr.write("  check at %s with b damaged: %.2f s\n" % (
                node.name, secs))
            self.assertEqual(r.rc, 1, r)
            found = r.json()["findings"]
            bad = [f for f in found if f["kind"] == "invalid"]
            self.assertEqual([(f["site"], f["node"], f["user"])
                              for f in bad], [("b", "b1", VICTIM)], r.out)
            self.assertIn("record damaged", bad[0]["detail"])
            dis = {f["site"]: f["backend"] for f in found
                   if f["kind"] == "disagree" and f["user"] == VICTIM}
            self.assertEqual(dis, {"a": "be1", "b": "be9"}, r.out)
            self.assertEqual({f["user"] for f in found
                              if f["kind"] == "disagree"}, {VICTIM})
        t = a1.ctl("check")
        self.assertEqual(t.rc, 1, t)
        self.assertIn("b/b1: %s: record damaged" % VICTIM, t.out)


if __name__ == "__main__":
    mf.main()
