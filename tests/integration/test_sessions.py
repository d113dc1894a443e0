"""`mmctl sessions`: the agent asks every worker (through the parent, over
the socketpairs each child gets when it is forked) for its open sessions.

Real clients hold sessions open through a directory node with two
workers: IMAP (imaplib, logged in), POP3 (poplib, logged in) and one
connection that has not logged in. The listing names each with its user,
client address, protocol, state and back end, filters by user, and
follows the sessions as they end. A worker killed with -9 is restarted
with a new channel and answers again."""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = NODE = None
ALICE = "alice@a.test"
ERIN = "erin@be2.test"


def setUpModule():
    global ENV, NODE
    ENV = mf.env()
    NODE = ENV.directory_node("sess", site="a", start=False)
    NODE.ctl("user", "add", ALICE, "be1").check()
    NODE.ctl("user", "add", ERIN, "be2").check()
    NODE.start()


def tearDownModule():
    mf.shutdown()


def quietly(f):
    try:
        f()
    except Exception:
        pass


def sessions(*args):
    r = NODE.ctl("sessions", *args, json=True)
    assert r.rc == 0, r
    return r.json()


class SessionsTest(unittest.TestCase):
    def open_sessions(self):
        m = mf.IMAP4From(mf.HOST, NODE.port["imap"],
                         source=mf.source_addr())
        self.addCleanup(lambda: quietly(m.logout))
        m.login(ALICE, mf.USERS[ALICE])
        m.noop()
        p = mf.poplib.POP3(mf.HOST, NODE.port["pop3"], timeout=mf.IO_TIMEOUT)
        self.addCleanup(p.close)
        p.user(ERIN)
        p.pass_(mf.USERS[ERIN])
        p.stat()
        raw = mf.Conv(NODE.port["imap"])
        self.addCleanup(raw.close)
        return m, p, raw

    def test_1_listed_with_their_fields(self):
        m, p, raw = self.open_sessions()
        rows = sessions()
        by = {(r["user"], r["proto"]): r for r in rows}
        self.assertIn((ALICE, "imap"), by, rows)
        self.assertIn((ERIN, "pop3"), by, rows)
        a, e = by[(ALICE, "imap")], by[(ERIN, "pop3")]
        self.assertEqual((a["state"], a["backend"]), ("relay", "be1"))
        self.assertEqual((e["state"], e["backend"]), ("relay", "be2"))
        self.assertEqual(a["client"].rsplit(":", 1)[0],
                         m.sock.getsockname()[0])
        self.assertEqual(int(a["client"].rsplit(":", 1)[1]),
                         m.sock.getsockname()[1])
        self.assertLessEqual(abs(int(a["since"]) - time.time()), 30)
        self.assertGreater(int(a["bytes_in"]), 0)
        self.assertGreater(int(a["bytes_out"]), 0)
        pre = [r for r in rows if r["state"] == "prelogin"]
        self.assertEqual(len(pre), 1, rows)
        self.assertEqual(pre[0]["user"], "")
        self.assertEqual(len(rows), 3, rows)
        self.assertEqual({r["worker"] for r in rows} <= {"0", "1"}, True)

        # By user, whatever its case.
        only = sessions("--user", "ALICE@a.test")
        self.assertEqual([(r["user"], r["proto"]) for r in only],
                         [(ALICE, "imap")])
        # The table for people.
        t = NODE.ctl("sessions")
        self.assertEqual(t.rc, 0, t)
        self.assertIn(ALICE, t.out)
        self.assertIn("be2", t.out)

        # As they end, they go.
        m.logout()
        p.quit()
        self.assertTrue(mf.wait_for(lambda: [
            r for r in sessions() if r["state"] != "prelogin"] == [], 10))

    def test_2_worker_killed_comes_back(self):
        pids = NODE.worker_pids()
        self.assertEqual(len(pids), 2, pids)
        os.kill(pids[0], signal.SIGKILL)
        self.assertTrue(mf.wait_for(
            lambda: len(NODE.worker_pids()) == 2 and
            pids[0] not in NODE.worker_pids(), 15))
        m, p, raw = self.open_sessions()
        rows = sessions()
        self.assertEqual(len(rows), 3, rows)
        # Every worker answered (else the status is a temporary failure).
        r = NODE.ctl("sessions")
        self.assertEqual(r.rc, 0, r)

    def test_3_tls_sessions(self):
        # Implicit TLS, STARTTLS and STLS sessions are listed the same way.
        ctx = ENV.tls.client_ctx()
        i = mf.imaplib.IMAP4_SSL(mf.HOST, NODE.port["imaps"],
                                 ssl_context=ctx, timeout=mf.IO_TIMEOUT)
        self.addCleanup(lambda: quietly(i.logout))
        i.login(ALICE, mf.USERS[ALICE])
        s = mf.IMAP4From(mf.HOST, NODE.port["imap"])
        self.addCleanup(lambda: quietly(s.logout))
        s.starttls(ssl_context=ctx)
        s.login(ERIN, mf.USERS[ERIN])
        p = mf.poplib.POP3(mf.HOST, NODE.port["pop3"], timeout=mf.IO_TIMEOUT)
        self.addCleanup(p.close)
        p.stls(context=ctx)
        p.user(ALICE)
        p.pass_(mf.USERS[ALICE])
        want = sorted([(ALICE, "imap", "relay", "be1"),
                       (ERIN, "imap", "relay", "be2"),
                       (ALICE, "pop3", "relay", "be1")])
        rows = []

        def listed():
            # The earlier tests' sessions may still be closing.
            rows[:] = sessions()
            return sorted((r["user"], r["proto"], r["state"], r["backend"])
                          for r in rows) == want
        self.assertTrue(mf.wait_for(listed, 10), rows)
        ports = {int(r["client"].rsplit(":", 1)[1]) for r in rows}
        self.assertIn(i.sock.getsockname()[1], ports)
        self.assertIn(s.sock.getsockname()[1], ports)

    def test_4_direct_needs_the_node(self):
        r = NODE.ctl("sessions", direct=True)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("running node", r.err)


if __name__ == "__main__":
    mf.main()
