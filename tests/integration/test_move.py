"""`mmctl move USER SITE`: a live mailbox handed to another site.

Two sites, each with one gossiping node and its own Dovecot back end whose
doveadm server the node drives (move=dsync): site a (node a1 on 127.0.0.2,
back end ma) and site b (node b1 on 127.0.0.3, back end mb). The back ends
never reach each other: the dsync stream goes ma -> a1's dsync-listen ->
the cross-site channel -> b1 -> mb's doveadm. mb has no mailbox yet for
the users that move; it holds another mailbox of erin's, so her move is
refused with the reason.

While alice moves, a sender delivers a message every 50 ms through a1's
SMTP (retrying on 4xx, as a real sender does) and an IMAP client sits in
IDLE at a1, logging in again whenever it is told BYE. Afterwards, a census
at mb: every message the sender had accepted is there exactly once (by
Message-ID), and the messages, folders, flags, keywords, UIDs,
UIDVALIDITY and subscriptions that were at ma before the move are at mb
unchanged. Logins at either site reach mb. Also: an abort before the
commit leaves the user at a, untouched; the refusals name their reason.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402
import movefix as mv  # noqa: E402

ENV = S = None
ALICE = "alice@a.test"
BOB = "bob@a.test"
DAVE = "dave@be1.test"
ERIN = "erin@be2.test"


def setUpModule():
    global ENV, S
    ENV = mf.env()
    S = mv.Sites(ENV, (ALICE, BOB, DAVE, ERIN), keep_at_b=(ERIN,))


def tearDownModule():
    mf.shutdown()


record = mv.record


class MoveTest(unittest.TestCase):
    def test_1_live_move_loses_nothing(self):
        a1, b1 = S.n["a1"], S.n["b1"]
        # Flags, keywords, a folder and a subscription to keep.
        m = mv.imap_direct(S.dv["ma"], ALICE)
        m.select("INBOX")
        m.store("1", "+FLAGS", "(\\Seen $Label1)")
        m.store("2", "+FLAGS", "(\\Flagged Custom_kw)")
        m.create("Archive")
        m.subscribe("Archive")
        m.append("Archive", "(\\Seen)", None,
                 b"From: x@y.test\r\nSubject: kept\r\nMessage-ID: "
                 b"<kept@x.test>\r\n\r\nkept\r\n")
        m.logout()
        before = mv.mailbox_state(S.dv["ma"], ALICE)
        sender = mv.Sender(a1, ALICE)
        idler = mv.Idler(a1, ALICE)
        sender.start()
        idler.start()
        mf.wait_or_fail(lambda: len(sender.sent) >= 5 and idler.logins,
                        20, "the sender and the idler started")
        t0 = time.monotonic()
        r = a1.ctl("move", ALICE, "b", "--wait", timeout=300)
        took = time.monotonic() - t0
        self.assertEqual(r.rc, 0, r)
        self.assertIn("done", r.out)
        # Mail keeps flowing after the commit, now to site b.
        n = len(sender.sent)
        mf.wait_or_fail(lambda: len(sender.sent) >= n + 5, 30,
                        "mail after the move")
        sender.stop.set()
        idler.stop.set()
        sender.join(30)
        idler.join(30)
        self.assertEqual(sender.errors, [])
        self.assertLess(took, 120)

        # The directory: site b owns alice, on mb, at both sites.
        mf.wait_or_fail(lambda: record(a1, ALICE).get("site") == "b" and
                        record(b1, ALICE).get("site") == "b" and
                        record(b1, ALICE).get("state") == "active", 20,
                        "the directory at both sites")
        self.assertEqual(record(b1, ALICE).get("backend"), "mb")

        # The census at mb.
        after = mv.mailbox_state(S.dv["mb"], ALICE)
        mv.census(self, before, after, sender.sent)

        # Logins at either site reach the mailbox at mb.
        count = sum(len(msgs) for name, (_, msgs) in after["folders"].items()
                    if name == "INBOX")
        for node in (a1, b1):
            c = mf.imaplib.IMAP4(node.host, node.port["imap"],
                                 timeout=mf.IO_TIMEOUT)
            c.login(ALICE, mf.USERS[ALICE])
            typ, data = c.select("INBOX", readonly=True)
            self.assertGreaterEqual(int(data[0]), count)
            c.logout()

        # The move as listed, and its log.
        r = a1.ctl("moves", json=True)
        self.assertEqual(r.rc, 0, r)
        rows = [x for x in r.json() if x["user"] == ALICE]
        self.assertEqual(rows[0]["phase"], "done", rows)
        self.assertGreaterEqual(int(rows[0]["passes"]), 2)
        self.assertGreater(int(rows[0]["freeze_ms"]), 0)
        log = a1.log_text()
        self.assertIn("move committed user=%s" % ALICE, log)
        self.assertNotIn(mv.SECRET, log + b1.log_text())
        self.assertGreaterEqual(idler.byes, 1, idler.errors)
        # The metrics: the outcome, the phases, the bytes at both ends.
        self.assertGreaterEqual(mf.metric(a1, "mailmesh_moves_total"), 1)
        self.assertGreaterEqual(mf.metric(
            a1, "mailmesh_move_phase_seconds_count"), 3)
        for node in (a1, b1):
            self.assertGreater(mf.metric(node, "mailmesh_move_bytes_total"),
                               0)
        sys.stderr.write("\n  move took %.1fs, freeze %s ms, %d sent, %d "
                         "deferred, idler %d logins %d byes\n" % (
                             took, rows[0]["freeze_ms"], len(sender.sent),
                             sender.deferred, idler.logins, idler.byes))

    def test_2_abort_before_commit(self):
        a1 = S.n["a1"]
        before = mv.mailbox_state(S.dv["ma"], BOB)
        r = a1.ctl("move", BOB, "b")
        self.assertEqual(r.rc, 0, r)
        r = a1.ctl("move", "--abort", BOB)
        self.assertEqual(r.rc, 0, r)
        mf.wait_or_fail(lambda: [x for x in a1.ctl("moves", json=True)
                                 .json() if x["user"] == BOB and
                                 x["phase"] == "aborted"], 60, "the abort")
        rec = record(a1, BOB)
        self.assertEqual((rec.get("site"), rec.get("state")), ("a", "active"))
        self.assertEqual(mv.mailbox_state(S.dv["ma"], BOB), before)
        # Bob still logs in at a.
        c = mf.imaplib.IMAP4(a1.host, a1.port["imap"], timeout=mf.IO_TIMEOUT)
        c.login(BOB, mf.USERS[BOB])
        c.logout()

    def test_3_refusals(self):
        a1, b1 = S.n["a1"], S.n["b1"]
        cases = [
            (a1, ["move", "nobody@a.test", "b"], "no such user"),
            (a1, ["move", DAVE, "zz"], "cannot be reached"),
            (a1, ["move", DAVE, "a"], "already at site a"),
            (b1, ["move", DAVE, "b"], "owned by site a"),
            (a1, ["move", "--abort", DAVE], "no move"),
        ]
        for node, args, want in cases:
            with self.subTest(args=args):
                r = node.ctl(*args)
                self.assertNotEqual(r.rc, 0, r)
                self.assertIn(want, r.err)
        # mb holds a mailbox of erin's of its own: not overwritten.
        r = a1.ctl("move", ERIN, "b", "--wait", timeout=120)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("holds another mailbox of the user", r.out)
        rec = record(a1, ERIN)
        self.assertEqual((rec.get("site"), rec.get("state")), ("a", "active"))
        self.assertEqual(mf.inbox_count(S.dv["mb"], ERIN),
                         3)
        # A back end site b does not define (or that does not move).
        r = a1.ctl("move", DAVE, "b", "--backend", "nope", "--wait",
                   timeout=120)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("site b has no back end nope that moves by dsync",
                      r.out)
        self.assertEqual(record(a1, DAVE).get("state"), "active")
        r = a1.ctl("move", DAVE, "b", "--dry-run")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("would move %s from site a (back end ma, engine dsync)"
                      % DAVE, r.out)
        self.assertEqual(record(a1, DAVE).get("state"), "active")


if __name__ == "__main__":
    mf.main()
