"""Logins held while a user is frozen mid-move.

A user whose record says FROZEN (the last instant of a move) is neither
refused nor let in: the client waits for its LOGIN / PASS answer while
the node reads the directory again, and is answered when the record
changes (here the freeze is lifted, as by an aborted or finished move),
or with a temporary error once `timeout login-hold` has passed. Real
clients (imaplib, poplib) on plain, implicit TLS and STARTTLS listeners,
through a directory node with two workers; the held time is logged and
counted in the mailmesh_login_hold_seconds histogram."""

import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = NODE = SHORT = None
ALICE = "alice@a.test"
ERIN = "erin@be2.test"


def setUpModule():
    global ENV, NODE, SHORT
    ENV = mf.env()
    NODE = ENV.directory_node(
        "hold", site="a", start=False,
        listeners=mf.Mmnode.DEFAULT_LISTENERS + [("metrics", "metrics", {})])
    NODE.ctl("user", "add", ALICE, "be1").check()
    NODE.ctl("user", "add", ERIN, "be2").check()
    NODE.start()
    SHORT = ENV.directory_node("holdshort", site="a", start=False,
                               timeouts={"login-hold": "1s"})
    SHORT.ctl("user", "add", ALICE, "be1").check()
    SHORT.ctl("user", "set", ALICE, "be1", "--state", "frozen",
              "--target", "b").check()
    SHORT.start()


def tearDownModule():
    mf.shutdown()


def freeze(node, user, backend):
    node.ctl("user", "set", user, backend, "--state", "frozen",
             "--target", "b").check()


def thaw(node, user, backend):
    node.ctl("user", "set", user, backend, "--state", "active").check()


def imap_plain(node, user):
    m = mf.imaplib.IMAP4(mf.HOST, node.port["imap"], timeout=mf.IO_TIMEOUT)
    m.login(user, mf.USERS[user])
    return m


def imap_tls(node, user):
    m = mf.imaplib.IMAP4_SSL(mf.HOST, node.port["imaps"],
                             ssl_context=ENV.tls.client_ctx(),
                             timeout=mf.IO_TIMEOUT)
    m.login(user, mf.USERS[user])
    return m


def imap_starttls(node, user):
    m = mf.imaplib.IMAP4(mf.HOST, node.port["imap"], timeout=mf.IO_TIMEOUT)
    m.starttls(ssl_context=ENV.tls.client_ctx())
    m.login(user, mf.USERS[user])
    return m


def pop3_plain(node, user):
    p = mf.poplib.POP3(mf.HOST, node.port["pop3"], timeout=mf.IO_TIMEOUT)
    p.user(user)
    p.pass_(mf.USERS[user])
    return p


KINDS = (("imap", imap_plain), ("imaps", imap_tls),
         ("imap-starttls", imap_starttls), ("pop3", pop3_plain))


class Login(threading.Thread):
    """One login in the background: its outcome and when it came."""

    def __init__(self, fn, node, user):
        super().__init__(daemon=True)
        self.fn, self.node, self.user = fn, node, user
        self.result = self.error = self.conn = None
        self.done_at = None

    def run(self):
        try:
            self.conn = self.fn(self.node, self.user)
            self.result = "ok"
        except Exception as e:  # noqa: BLE001 (the outcome is the test)
            self.error = e
            self.result = "error"
        self.done_at = time.monotonic()

    def close(self):
        c = self.conn
        if c is None:
            return
        try:
            c.logout() if hasattr(c, "logout") else c.quit()
        except Exception:
            pass


class HoldTest(unittest.TestCase):
    def test_1_held_until_the_freeze_ends(self):
        before = mf.metric(NODE, "mailmesh_login_hold_seconds_count")
        for kind, fn in KINDS:
            with self.subTest(kind=kind):
                freeze(NODE, ALICE, "be1")
                t = Login(fn, NODE, ALICE)
                t.start()
                self.addCleanup(t.close)
                time.sleep(0.6)
                # Still waiting: neither refused nor let in.
                self.assertIsNone(t.result, t.error)
                # Other users are not held.
                other = pop3_plain(NODE, ERIN)
                other.quit()
                thawed = time.monotonic()
                thaw(NODE, ALICE, "be1")
                t.join(10)
                self.assertEqual(t.result, "ok", t.error)
                # Let in within a few polls of the change.
                self.assertLess(t.done_at - thawed, 2.0)
        self.assertTrue(mf.wait_for(lambda: mf.metric(
            NODE, "mailmesh_login_hold_seconds_count") >= before + 4, 5))
        log = NODE.log_text()
        held = [ln for ln in log.splitlines() if " proxy held " in ln]
        self.assertGreaterEqual(len(held), 4, log[-3000:])
        for ln in held[-4:]:
            self.assertIn("user=alice@a.test", ln)
            self.assertIn("result=found", ln)
            ms = int(ln.split(" ms=")[1].split()[0])
            self.assertGreaterEqual(ms, 500, ln)
        # The passwords of held logins are not in the log.
        self.assertNotIn(mf.USERS[ALICE], log)

    def test_2_bound_then_temporary_error(self):
        for kind, fn in KINDS:
            with self.subTest(kind=kind):
                t0 = time.monotonic()
                t = Login(fn, SHORT, ALICE)
                t.run()
                took = time.monotonic() - t0
                self.assertEqual(t.result, "error")
                text = str(t.error)
                if kind.startswith("imap"):
                    self.assertIn("UNAVAILABLE", text)
                else:
                    self.assertIn("SYS/TEMP", text)
                # login-hold 1s, and no more than the failure delay on top.
                self.assertGreaterEqual(took, 0.95, kind)
                self.assertLess(took, 4.0, kind)
        log = SHORT.log_text()
        self.assertIn("result=frozen", log)


if __name__ == "__main__":
    mf.main()
