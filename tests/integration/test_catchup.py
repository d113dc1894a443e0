"""A new node of another site catches up on a directory of 50,000 users by
gossip: quickly, each record sent about once, without anybody suspecting
anybody, and answering the users it has not received yet with temporary
errors (IMAP NO [UNAVAILABLE], SMTP 451), never as unknown. Then an update
storm of 5,000 changes reaches it without a suspicion either."""

import imaplib
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
USERS = 50000
STORM = 5000
ALICE = "alice@a.test"      # a real mailbox on be1, signed last at a
HOST = {"a": "127.0.0.2", "b": "127.0.0.3"}


def setUpModule():
    global ENV
    ENV = mf.env()


def tearDownModule():
    mf.shutdown()


def make_node(site, peer_port, seeds):
    host = HOST[site]
    name = site + "1"
    key = os.path.join(ENV.dir, name, "transport.key")
    backends = ([ENV.backend_line("be1", lmtp=ENV.dovecots["be1"].lmtp),
                 ENV.backend_line("be1", alias="be1b")] if site == "a" else
                [ENV.backend_line("be2", lmtp=ENV.dovecots["be2"].lmtp)])
    n = ENV.gossip_node(
        name, site, "%s:%d" % (host, peer_port), peers=seeds, start=False,
        host=host, backends=backends,
        listeners=[("imap", "imap", {}), ("smtp", "smtp", {}),
                   ("metrics", "metrics", {})],
        limits={"auth-failure-delay": "0", "auth-failure-delay-max": "0",
                "auth-failures-per-ip": "1000000",
                "connections-per-ip": "1000"},
        extra=["transport-key %s" % key,
               "session-listen %s:%d" % (host, mf.free_port())])
    mf.mmctl(["keys", "new", key]).check("keys new")
    n.certify(role="transport", pub=key + ".pub", name=name + "-transport")
    return n


def login(node):
    """'ok', 'temp', 'auth' or 'error: ...' for one IMAP login."""
    try:
        m = imaplib.IMAP4(node.host, node.port["imap"], timeout=10)
    except OSError as e:
        return "error: %s" % e
    try:
        m.login(ALICE, mf.USERS[ALICE])
        m.logout()
        return "ok"
    except imaplib.IMAP4.error as e:
        text = str(e)
        return ("auth" if "AUTHENTICATIONFAILED" in text else
                "temp" if "UNAVAILABLE" in text else "other: " + text)
    finally:
        try:
            m.shutdown()
        except OSError:
            pass


def rcpt(node):
    """The reply code to RCPT TO alice at NODE."""
    try:
        with mf.MailClient(node.host, node.port["smtp"]) as c:
            code, text = c.cmd("MAIL FROM:<s@example.net>")
            if code != 250:
                return code
            return c.cmd("RCPT TO:<%s>" % ALICE)[0]
    except (OSError, mf.MailReplyError) as e:
        return "error: %s" % e


class CatchUpTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        ports = {s: mf.free_port() for s in HOST}
        cls.a = make_node("a", ports["a"], [])
        cls.b = make_node("b", ports["b"],
                          ["%s:%d" % (HOST["a"], ports["a"])])
        path = os.path.join(ENV.dir, "users.csv")
        with open(path, "w") as f:
            for i in range(USERS - 1):
                f.write("u%06d@bench.test,be1\n" % i)
            f.write("%s,be1\n" % ALICE)
        mf.mmctl(["import", "csv", path], conf=cls.a.conf, direct=True,
                 timeout=600).check("import")
        cls.a.start()

    def test_1_catch_up(self):
        a, b = self.a, self.b
        seen = {"login": [], "rcpt": []}
        done = threading.Event()

        def watch():
            while not done.is_set():
                seen["login"].append(login(b))
                seen["rcpt"].append(rcpt(b))
                time.sleep(0.05)

        t0 = time.monotonic()
        b.start()
        th = threading.Thread(target=watch, daemon=True)
        th.start()
        held = 0
        while time.monotonic() - t0 < 240:
            held = mf.metric(b, "mailmesh_directory_records")
            if held >= USERS and seen["login"] and \
                    seen["login"][-1] == "ok":
                break
            time.sleep(0.2)
        secs = time.monotonic() - t0
        done.set()
        th.join(30)
        sys.stderr.write("caught up on %d users in %.1f s\n" % (held, secs))
        self.assertGreaterEqual(held, USERS, "b holds %d of %d after %.0f "
                                "s" % (held, USERS, secs))
        # Never "no such user" while b lacked the record; at least one
        # temporary answer seen, then the user logs in at b.
        logins, rcpts = seen["login"], seen["rcpt"]
        self.assertNotIn("auth", logins, logins)
        self.assertIn("temp", logins, logins[:20])
        self.assertEqual(logins[-1], "ok", logins[-20:])
        self.assertNotIn(550, rcpts, rcpts)
        self.assertIn(451, rcpts, rcpts[:20])
        self.assertEqual(rcpts[-1], 250, rcpts[-20:])
        # Each record about once on the wire.
        new = mf.metric(b, "mailmesh_gossip_records_new_total")
        dup = mf.metric(b, "mailmesh_gossip_records_duplicate_total")
        self.assertGreaterEqual(new, USERS)
        self.assertLess(dup, USERS * 0.1, "%d duplicates" % dup)
        for n in (a, b):
            self.assertEqual(mf.metric(n, "mailmesh_gossip_suspicions_total"),
                             0, n.name)

    def test_2_update_storm(self):
        a, b = self.a, self.b
        path = os.path.join(ENV.dir, "storm.csv")
        with open(path, "w") as f:
            for i in range(STORM):
                f.write("u%06d@bench.test,be1b\n" % (i * 7))
        new0 = mf.metric(b, "mailmesh_gossip_records_new_total")
        t0 = time.monotonic()
        mf.mmctl(["import", "csv", path], conf=a.conf,
                 timeout=300).check("storm")
        self.assertTrue(mf.wait_for(lambda: mf.metric(
            b, "mailmesh_gossip_records_new_total") - new0 >= STORM, 60))
        sys.stderr.write("storm of %d agreed in %.1f s\n" % (
            STORM, time.monotonic() - t0))
        r = b.ctl("user", "show", "u%06d@bench.test" % ((STORM - 1) * 7),
                  json=True)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("be1b", r.out)
        for n in (a, b):
            self.assertEqual(mf.metric(n, "mailmesh_gossip_suspicions_total"),
                             0, n.name)
            self.assertEqual(mf.metric(n, "mailmesh_gossip_deaths_total"), 0,
                             n.name)

    def test_3_revoked_node_is_cut_off(self):
        # b's node key revoked at a: the channel between them closes at
        # once (not after its idle timers), b learns why, stops gossiping
        # and dialling, and a refuses it from then on.
        a, b = self.a, self.b
        apos, bpos = len(a.log_text()), len(b.log_text())
        t0 = time.monotonic()
        a.ctl("keys", "revoke", "--root", ENV.root_key().key, "--pub",
              b.node_pub, "--reason", "test").check("revoke")
        self.assertTrue(mf.wait_for(
            lambda: "peer-revoked name=b1" in a.log_text()[apos:], 5),
            a.log_text()[apos:])
        self.assertTrue(mf.wait_for(
            lambda: "own-key-revoked" in b.log_text()[bpos:], 5),
            b.log_text()[bpos:])
        self.assertLess(time.monotonic() - t0, 5)

        def down():
            ms = {m["name"]: m for m in a.ctl("sites", json=True).json()}
            return ms.get("b1", {}).get("state") in ("suspect", "dead")
        self.assertTrue(mf.wait_for(down, 15))
        # Neither dials the other any more.
        apos, bpos = len(a.log_text()), len(b.log_text())
        time.sleep(6)
        self.assertNotIn("want=b1", a.log_text()[apos:])
        self.assertNotIn("peer-up", a.log_text()[apos:])
        self.assertNotIn("dial", b.log_text()[bpos:])
        self.assertNotIn("peer-up", b.log_text()[bpos:])


if __name__ == "__main__":
    mf.main()
