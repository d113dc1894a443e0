"""Records one node refuses do not hold up the rest of their origin's log.

Sites a and b, apart at first, both create one user; when they meet, each
refuses the other's record of that user (another site owns it here). The
3,000 users b creates after it must still reach a at once, not crawl behind
re-pulls of the refused record and throttles of the peer that relays it."""

import os
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
TWIN = "twin@x.test"
LATER = 3000
HOST = {"a": "127.0.0.2", "b": "127.0.0.3"}


def setUpModule():
    global ENV
    ENV = mf.env()


def tearDownModule():
    mf.shutdown()


def metric(node, name):
    with urllib.request.urlopen("http://%s:%d/metrics" % (
            node.host, node.port["metrics"]), timeout=5) as r:
        text = r.read().decode()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith(name + " ") or ln.startswith(name + "{"))


def node(site, peer_port, seeds):
    return ENV.gossip_node(
        site + "1", site, "%s:%d" % (HOST[site], peer_port), peers=seeds,
        start=False, host=HOST[site],
        listeners=[("imap", "imap", {}), ("metrics", "metrics", {})],
        backends=[ENV.backend_line("be1" if site == "a" else "be2")])


class HoleTest(unittest.TestCase):
    def test_refused_record_leaves_no_hole(self):
        ports = {s: mf.free_port() for s in HOST}
        a = node("a", ports["a"], [])
        b = node("b", ports["b"], [])
        a.start()
        b.start()
        a.ctl("user", "add", TWIN, "be1").check("twin at a")
        b.ctl("user", "add", TWIN, "be2").check("twin at b")
        path = os.path.join(ENV.dir, "later.csv")
        with open(path, "w") as f:
            for i in range(LATER):
                f.write("later%05d@b.test,be2\n" % i)
        b.ctl("import", "csv", path).check("later users at b")
        # Now they meet.
        b.stop()
        b.peers = ["%s:%d" % (HOST["a"], ports["a"])]
        b.write_config()
        t0 = time.monotonic()
        b.start()
        ok = mf.wait_for(lambda: a.ctl(
            "user", "show", "later%05d@b.test" % (LATER - 1)).rc == 0, 30)
        secs = time.monotonic() - t0
        self.assertTrue(ok, "b's later users did not reach a in 30 s:\n" +
                        a.log_text()[-3000:])
        sys.stderr.write("b's %d later users reached a in %.1f s\n" % (
            LATER, secs))
        self.assertLess(secs, 15)
        # Each site still holds its own twin (the conflict is for mmctl
        # check to report); nobody was throttled for relaying the other's.
        for n, site in ((a, "a"), (b, "b")):
            r = n.ctl("user", "show", TWIN, json=True)
            self.assertEqual(r.rc, 0, r)
            self.assertEqual(r.json()["site"], site, r.out)
        for n in (a, b):
            self.assertEqual(metric(n, "mailmesh_gossip_throttles_total"), 0,
                             n.name)
        # a holds b's log without a hole: it is not behind b for ever, so
        # a user nobody has is unknown there, not a temporary error; and
        # nothing is pulled again and again meanwhile.
        dup0 = metric(a, "mailmesh_gossip_records_duplicate_total")

        def unknown_at_a():
            with mf.Conv(a.port["imap"], host=a.host) as c:
                c.cmd("x LOGIN nobody@b.test pw")
                return "AUTHENTICATIONFAILED" in c.tagged("x")[1]
        self.assertTrue(mf.wait_for(unknown_at_a, 10),
                        a.log_text()[-2000:])
        time.sleep(5)
        self.assertLess(metric(a, "mailmesh_gossip_records_duplicate_total")
                        - dup0, 100)

if __name__ == "__main__":
    mf.main()
