"""`mmctl kick USER`: the agent tells every worker (through the parent) to
end the user's sessions; each answers how many it ended.

Real clients (imaplib, poplib, raw conversations) hold sessions through a
directory node with two workers, on every listener kind: IMAP plain in
IDLE, IMAP over implicit TLS, IMAP after STARTTLS, POP3 plain and after
STLS. A kick of one user ends exactly that user's sessions, each with its
protocol's temporary farewell (IMAP "* BYE [UNAVAILABLE]", POP3
"-ERR [SYS/TEMP]") and then the close; another user's session and a
connection that has not logged in go on, and the kicked user may log in
again at once."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = NODE = None
ALICE = "alice@a.test"
ERIN = "erin@be2.test"


def setUpModule():
    global ENV, NODE
    ENV = mf.env()
    NODE = ENV.directory_node("kick", site="a", start=False)
    NODE.ctl("user", "add", ALICE, "be1").check()
    NODE.ctl("user", "add", ERIN, "be2").check()
    NODE.start()


def tearDownModule():
    mf.shutdown()


def tagged(conv, tag, cmd):
    """Sends tag + cmd and reads to its tagged answer, which must be OK."""
    conv.cmd(tag + " " + cmd)
    ln = conv.line()
    while ln.startswith("* "):
        ln = conv.line()
    if not ln.startswith(tag + " OK"):
        raise AssertionError("got %r; transcript:\n%s" % (ln, conv.dump()))


def imap_login(conv, user, tag="a1"):
    tagged(conv, tag, 'LOGIN "%s" "%s"' % (user, mf.USERS[user]))


def pop3_login(conv, user):
    conv.cmd("USER " + user)
    conv.expect("+OK")
    conv.cmd("PASS " + mf.USERS[user])
    conv.expect("+OK")


def closed_after(conv, prefix):
    """The next line starts with prefix, then the connection ends."""
    ln = conv.line()
    while ln.startswith("* ") and not ln.startswith("* BYE"):
        ln = conv.line()        # untagged news that came before
    if not ln.startswith(prefix):
        raise AssertionError("got %r, want %r; transcript:\n%s"
                             % (ln, prefix, conv.dump()))
    try:
        extra = conv.line()
    except mf.Closed:
        return ln
    raise AssertionError("still open after the farewell: %r" % extra)


class KickTest(unittest.TestCase):
    def test_1_every_listener_kind(self):
        ctx = ENV.tls.client_ctx()
        idle = mf.Conv(NODE.port["imap"])
        self.addCleanup(idle.close)
        imap_login(idle, ALICE)
        tagged(idle, "a2", "SELECT INBOX")
        idle.cmd("a3 IDLE")
        idle.expect("+")
        imaps = mf.Conv(NODE.port["imaps"], tls=ctx)
        self.addCleanup(imaps.close)
        imap_login(imaps, ALICE)
        stls = mf.Conv(NODE.port["imap"])
        self.addCleanup(stls.close)
        stls.cmd("s1 STARTTLS")
        stls.expect("s1 OK")
        stls.sock = ctx.wrap_socket(stls.sock, server_hostname="localhost")
        imap_login(stls, ALICE)
        pop = mf.Conv(NODE.port["pop3"])
        self.addCleanup(pop.close)
        pop3_login(pop, ALICE)
        pops = mf.Conv(NODE.port["pop3"])
        self.addCleanup(pops.close)
        pops.cmd("STLS")
        pops.expect("+OK")
        pops.sock = ctx.wrap_socket(pops.sock, server_hostname="localhost")
        pop3_login(pops, ALICE)
        # Not hers: another user's session, and one not logged in.
        other = mf.Conv(NODE.port["imap"])
        self.addCleanup(other.close)
        imap_login(other, ERIN)
        pre = mf.Conv(NODE.port["imap"])
        self.addCleanup(pre.close)

        r = NODE.ctl("kick", "ALICE@a.test")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("5 sessions ended on 2 workers", r.out, r)

        for conv in (idle, imaps, stls):
            ln = closed_after(conv, "* BYE [UNAVAILABLE] ")
            self.assertIn("administrator", ln)
        for conv in (pop, pops):
            closed_after(conv, "-ERR [SYS/TEMP] ")
        # The others go on.
        tagged(other, "b1", "NOOP")
        tagged(pre, "c1", "CAPABILITY")
        # She may come back at once.
        again = mf.Conv(NODE.port["imap"])
        self.addCleanup(again.close)
        imap_login(again, ALICE)
        again.cmd("a2 LOGOUT")
        self.assertIn("kick user=alice@a.test sessions=5",
                      NODE.log_text())
        # The sessions that were ended are no longer listed.
        self.assertTrue(mf.wait_for(lambda: not [
            r for r in NODE.ctl("sessions", "--user", ALICE,
                                json=True).json()
            if r["state"] == "relay"], 10))

    def test_2_nobody_to_kick(self):
        r = NODE.ctl("kick", "nobody@a.test")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("0 sessions ended on 2 workers", r.out, r)
        r = NODE.ctl("kick", "nobody@a.test", json=True)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("0 sessions ended", r.json()["result"])

    def test_3_needs_the_node_and_a_user(self):
        r = NODE.ctl("kick", ALICE, direct=True)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("running node", r.err)
        r = NODE.ctl("kick")
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("usage", r.err)


if __name__ == "__main__":
    mf.main()
