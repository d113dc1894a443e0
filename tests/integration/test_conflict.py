"""A user two sites own: no hole in the logs, reported, resolved.

Sites a and b, apart at first, both create one user; when they meet, each
refuses the other's record of that user (another site owns it here). The
3,000 users b creates after it must still reach a at once, not crawl behind
re-pulls of the refused record and throttles of the peer that relays it.
`mmctl check` at either site names the user with both records, and
`mmctl user resolve` (at the site that gives the user up, then at the one
that keeps it) ends the conflict: every node holds the same record and the
check is clean again."""

import os
import sys
import time
import unittest

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
            self.assertEqual(mf.metric(n, "mailmesh_gossip_throttles_total"), 0,
                             n.name)
        # a holds b's log without a hole: it is not behind b for ever, so
        # a user nobody has is unknown there, not a temporary error; and
        # nothing is pulled again and again meanwhile.
        dup0 = mf.metric(a, "mailmesh_gossip_records_duplicate_total")

        def unknown_at_a():
            with mf.Conv(a.port["imap"], host=a.host) as c:
                c.cmd("x LOGIN nobody@b.test pw")
                return "AUTHENTICATIONFAILED" in c.tagged("x")[1]
        self.assertTrue(mf.wait_for(unknown_at_a, 10),
                        a.log_text()[-2000:])
        time.sleep(5)
        self.assertLess(mf.metric(a, "mailmesh_gossip_records_duplicate_total")
                        - dup0, 100)
        self.report_and_resolve(a, b)

    def report_and_resolve(self, a, b):
        # Each node's check names the twin, and both records: its own
        # and the other site's it refused and kept.
        for n in (a, b):
            r = n.ctl("check")
            self.assertNotEqual(r.rc, 0, r)
            self.assertIn("Users two sites claim", r.out, r)
            for mine, other in (("a", "b"), ("b", "a")):
                line = [ln for ln in r.out.splitlines()
                        if TWIN in ln and "refused here" in ln and
                        "at %s/%s1:" % (mine, mine) in ln]
                self.assertEqual(len(line), 1, r.out)
                self.assertIn("%s holds it here" % mine, line[0])
                self.assertIn("site %s's record" % other, line[0])
                self.assertIn("back end %s" % (
                    "be1" if other == "a" else "be2"), line[0])
        # Wrong ways are refused with a reason, and change nothing.
        r = b.ctl("user", "resolve", TWIN, "c")
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("no claim to %s by site c" % TWIN, r.err)
        r = a.ctl("user", "resolve", TWIN, "a")
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("no release of %s" % TWIN, r.err)
        r = b.ctl("user", "resolve", "later00001@b.test", "a")
        self.assertNotEqual(r.rc, 0, r)
        # b gives the twin up to a: b routes it to a at once ...
        r = b.ctl("user", "resolve", TWIN, "a")
        r.check("release at b")
        self.assertIn("released to site a", r.out)
        self.assertIn("be2", r.out)
        self.assertEqual(b.ctl("user", "show", TWIN, json=True).json()[
            "site"], "a")
        # ... and a, once the release has reached it, takes it back.
        res = []

        def taken():
            res.append(a.ctl("user", "resolve", TWIN, "a"))
            return res[-1].rc == 0
        self.assertTrue(mf.wait_for(taken, 20), res[-1])
        self.assertIn("kept by site a", res[-1].out)

        def same():
            ra = a.ctl("user", "show", TWIN, json=True)
            rb = b.ctl("user", "show", TWIN, json=True)
            return (ra.rc == 0 and rb.rc == 0 and ra.json() == rb.json())
        self.assertTrue(mf.wait_for(same, 20))
        rec = a.ctl("user", "show", TWIN, json=True).json()
        self.assertEqual((rec["site"], rec["backend"], rec["state"]),
                         ("a", "be1", "active"), rec)
        for n in (a, b):
            r = n.ctl("check")
            self.assertEqual(r.rc, 0, r)
            self.assertNotIn(TWIN, r.out)
        # A second resolve has nothing left to do.
        r = b.ctl("user", "resolve", TWIN, "a")
        self.assertNotEqual(r.rc, 0, r)

if __name__ == "__main__":
    mf.main()
