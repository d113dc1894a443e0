"""Cross-site sessions routed by gossip, without any site-route: every node
advertises its session endpoint on its gossip announcements, the directory
agent writes the membership it sees (with round-trip times) into the store,
and the proxy workers pick the owner site's nearest healthy node from there.

Site a has two nodes (a1 on 127.0.0.2, a2 on 127.0.0.6) in front of back
end be1; site b has one (b1 on 127.0.0.3) in front of be2. Users are added
at their own site and gossip carries the records to the other."""

import functools
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
ALICE = "alice@a.test"     # owned by site a, on be1
CAROL = "carol@b.test"     # owned by site b, on be2
HOST = {"a1": "127.0.0.2", "a2": "127.0.0.6", "b1": "127.0.0.3"}
SITE = {"a1": "a", "a2": "a", "b1": "b"}
BACKEND = {"a": "be1", "b": "be2"}


# Polled twice as often as the fixture does by default.
wait = functools.partial(mf.wait_or_fail, step=0.1)


def setUpModule():
    global ENV
    ENV = mf.env()


def tearDownModule():
    mf.shutdown()


def pw(u):
    return mf.USERS[u]


def starts(subject, user, backend):
    return subject.startswith(mf.hello_subject(user, backend))


def imap_subject(node, user):
    m = mf.IMAP4From(node.host, node.port["imap"], source=mf.source_addr())
    try:
        m.login(user, pw(user))
        s = mf.imap_subjects(m)[0]
        m.logout()
        return s
    except (mf.imaplib.IMAP4.error, OSError) as e:
        return "error: %s" % e
    finally:
        if m.state != "LOGOUT":
            try:
                m.shutdown()
            except OSError:
                pass


def pop_subject(node, user):
    p = mf.poplib.POP3(node.host, node.port["pop3"], timeout=mf.IO_TIMEOUT)
    try:
        p.user(user)
        p.pass_(pw(user))
        s = mf.pop_subject(p, 1)[0]
        p.quit()
        return s
    except (mf.poplib.error_proto, OSError) as e:
        return "error: %s" % e


def make_node(name, peer_port, session_port, seeds):
    host = HOST[name]
    key = os.path.join(ENV.dir, name, "transport.key")
    n = ENV.gossip_node(
        name, SITE[name], "%s:%d" % (host, peer_port), peers=seeds,
        start=False, host=host,
        listeners=[("imap", "imap", {}), ("pop3", "pop3", {})],
        backends=[ENV.backend_line(BACKEND[SITE[name]])],
        timeouts={"drain": "2s", "backend": "5s"},
        extra=["transport-key %s" % key,
               "session-listen %s:%d" % (host, session_port)])
    mf.mmctl(["keys", "new", key]).check("keys new")
    n.certify(role="transport", pub=key + ".pub", name=name + "-transport")
    return n


class GossipRoutedTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.peer = {n: mf.free_port() for n in HOST}
        cls.sess = {n: mf.free_port() for n in HOST}
        seed = "%s:%d" % (HOST["a1"], cls.peer["a1"])
        cls.n = {}
        for name in ("a1", "a2", "b1"):
            cls.n[name] = make_node(name, cls.peer[name], cls.sess[name],
                                    [] if name == "a1" else [seed])
        for n in cls.n.values():
            n.start()
        a1, b1 = cls.n["a1"], cls.n["b1"]
        a1.ctl("user", "add", ALICE, "be1").check()
        b1.ctl("user", "add", CAROL, "be2").check()

        def ready():
            for n in cls.n.values():
                ms = n.members()
                if len(ms) != 3 or any(m["state"] != "alive" or
                                       not m["session_address"]
                                       for m in ms.values()):
                    return False
            return all(n.ctl("user", "show", u).rc == 0
                       for n in cls.n.values() for u in (ALICE, CAROL))
        wait(ready, 15, "three nodes alive with endpoints, users everywhere")

    def node(self, name):
        return self.n[name]

    def test_1_sites_shows_session_endpoints(self):
        ms = self.node("b1").members()
        for name in HOST:
            self.assertEqual(ms[name]["session_address"],
                             "%s:%d" % (HOST[name], self.sess[name]))

    def test_2_login_at_b_reaches_a_by_gossip(self):
        b1 = self.node("b1")
        pos = ENV.dovecots["be1"].log_size()
        # The agent publishes what gossip learnt at most once a second.
        got = []
        mf.wait_for(lambda: got.append(imap_subject(b1, ALICE)) or
                    starts(got[-1], ALICE, "be1"), 5, step=0.2)
        self.assertTrue(starts(got[-1], ALICE, "be1"), "%s\n%s" % (
            got[-1], b1.log_text()[-3000:]))
        self.assertIsNotNone(
            ENV.dovecots["be1"].wait_login_line(pos, ALICE, proto="imap"))
        s = pop_subject(b1, ALICE)
        self.assertTrue(starts(s, ALICE, "be1"), s)
        # And the other way; and a site's own users stay local.
        for a in ("a1", "a2"):
            self.assertTrue(starts(imap_subject(self.node(a), CAROL), CAROL,
                                   "be2"))
            self.assertTrue(starts(imap_subject(self.node(a), ALICE), ALICE,
                                   "be1"))
        # No site-route is configured: the endpoint came from gossip.
        eps = ["addr=%s:%d" % (HOST[n], self.sess[n]) for n in ("a1", "a2")]
        self.assertTrue(any(e in b1.log_text() for e in eps),
                        b1.log_text()[-2000:])

    def test_3_dead_node_is_skipped(self):
        a1, a2, b1 = self.node("a1"), self.node("a2"), self.node("b1")
        a1.stop()
        wait(lambda: b1.members().get("a1", {}).get("state") == "dead", 30,
             "a1 dead at b1")
        # The workers see the agent's view within a second or two.
        for _ in range(3):
            pos = b1.log_size()
            s = imap_subject(b1, ALICE)
            self.assertTrue(starts(s, ALICE, "be1"), "%s\n%s" % (
                s, b1.log_since(pos)))
            ok = mf.wait_for(lambda: "xsite close dir=out site=a "
                             "peer=a2-transport addr=%s:%d" % (
                                 HOST["a2"], self.sess["a2"])
                             in b1.log_since(pos), 5)
            self.assertTrue(ok, b1.log_since(pos))
            # Never even tried: a dead node is not an endpoint.
            self.assertNotIn("addr=%s:%d" % (HOST["a1"], self.sess["a1"]),
                             b1.log_since(pos))
        self.assertIn("xsite close dir=in site=b", a2.log_text())

    def test_4_no_node_of_a_left_is_a_temporary_error(self):
        a2, b1 = self.node("a2"), self.node("b1")
        if self.node("a1").alive():
            self.node("a1").stop()
        a2.stop()
        wait(lambda: b1.members().get("a2", {}).get("state") == "dead", 30,
             "a2 dead at b1")
        with mf.Conv(b1.port["imap"], host=b1.host,
                     source=mf.source_addr()) as c:
            c.cmd("a LOGIN %s %s" % (mf.imap_quote(ALICE),
                                     mf.imap_quote(pw(ALICE))))
            _, t = c.tagged("a")
            self.assertIn("NO [UNAVAILABLE]", t)


if __name__ == "__main__":
    mf.main()
