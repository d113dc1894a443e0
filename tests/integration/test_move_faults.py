"""Moves survive kill -9 of the nodes taking part, at every phase boundary
and in the middle of a copy.

The two sites of movefix; users that move have 5 or 20 MB of mail at ma
besides the fixture's. For each case a move starts and a node's whole
process group (parent, directory agent, workers) dies by SIGKILL at a
chosen point, then the node is started again:

- mid-copy: a1 (the owner and coordinator) while the first pass streams,
  with a sender delivering to the user through a1 every 50 ms (which
  finds a1 down for a while and sends again later); b1 (the target)
  likewise;
- at a boundary: the node kills itself there (MM_FAILPOINT, see
  migrate/move.c), so that the point is exact: a1 entering the freeze,
  a1 once every node confirmed the freeze, a1 entering the commit before
  TRANSFER, a1 right after TRANSFER; and, moving a user back from b to a,
  a1 as the target when the COMMIT comes, before its ACTIVE.

Every move then finishes (`mmctl moves` at its coordinator says done):
the user is owned by the target site at both nodes, with one epoch more,
and the census at the target back end finds every message the source
had, with its UID, flags and bytes, and every message the sender had
delivered, each exactly once."""

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
CAROL = "carol@b.test"
DAVE = "dave@be1.test"
ERIN = "erin@be2.test"
ZED = "zed@z.test"
USERS = (ALICE, BOB, CAROL, DAVE, ERIN, ZED)


def setUpModule():
    global ENV, S
    ENV = mf.env()
    S = mv.Sites(ENV, USERS, big={u: 20 if u in (ALICE, BOB) else 5
                                  for u in USERS})


def tearDownModule():
    mf.shutdown()


def with_failpoint(node, name):
    """Starts NODE again with MM_FAILPOINT=NAME (it kills itself there)."""
    node.stop()
    os.environ["MM_FAILPOINT"] = name
    try:
        node.start()
    finally:
        del os.environ["MM_FAILPOINT"]


class FaultTest(unittest.TestCase):
    def move_through(self, user, victim, when=None, failpoint=None,
                     sender=False, src="a1", dst="b1"):
        """Moves USER from SRC's site to DST's; VICTIM (a node) dies by
        SIGKILL once WHEN(SRC's log since the start) holds, or by itself
        at FAILPOINT; then it starts again and the move must finish."""
        a1, b1 = S.n[src], S.n[dst]
        to = mv.SITE[dst]
        src_dv = S.dv[mv.BACKEND[mv.SITE[src]]]
        dst_dv = S.dv[mv.BACKEND[to]]
        epoch = int(mv.record(a1, user)["epoch"])
        if failpoint:
            with_failpoint(victim, failpoint)
            mf.wait_or_fail(lambda: len(a1.members()) == 2 and
                            len(b1.members()) == 2, 30, "gossip again")
        before = mv.mailbox_state(src_dv, user)
        snd = mv.Sender(a1, user) if sender else None
        if snd:
            snd.start()
            mf.wait_or_fail(lambda: len(snd.sent) >= 3, 20, "the sender")
        pos = a1.log_size()
        r = a1.ctl("move", user, to)
        self.assertEqual(r.rc, 0, r)
        if failpoint:
            mf.wait_or_fail(lambda: victim.proc.poll() is not None, 60,
                            "%s to reach %s" % (victim.name, failpoint))
            mv.crash(victim)
            self.assertIn("failpoint name=%s" % failpoint,
                          victim.log_text())
        else:
            mf.wait_or_fail(lambda: when(a1.log_since(pos)), 60,
                            "the point to kill %s at" % victim.name)
            mv.crash(victim)
        time.sleep(0.3)
        victim.start()
        mf.wait_or_fail(lambda: mv.move_row(a1, user).get("phase") in (
            "done", "aborted"), 120, "the move's end")
        row = mv.move_row(a1, user)
        self.assertEqual(row["phase"], "done", row)
        if snd:
            n = len(snd.sent)
            mf.wait_or_fail(lambda: len(snd.sent) >= n + 3, 30,
                            "mail after the move")
            snd.stop.set()
            snd.join(30)
        # One owner, one hand-over.
        for node in (a1, b1):
            mf.wait_or_fail(lambda: mv.record(node, user).get("site") ==
                            to and mv.record(node, user).get("state") ==
                            "active", 30, "site %s owns %s at %s" % (
                                to, user, node.name))
            self.assertEqual(int(mv.record(node, user)["epoch"]), epoch + 1)
        after = mv.mailbox_state(dst_dv, user)
        mv.census(self, before, after, snd.sent if snd else (),
                  snd.unsure if snd else ())
        return row

    def test_1_owner_killed_mid_copy(self):
        self.move_through(ALICE, S.n["a1"], lambda log: (
            "dtun relay user=%s" % ALICE) in log, sender=True)

    def test_2_target_killed_mid_copy(self):
        row = self.move_through(BOB, S.n["b1"], lambda log: (
            "dtun relay user=%s" % BOB) in log)
        self.assertGreaterEqual(int(row["passes"]), 2)

    def test_3_owner_killed_entering_the_freeze(self):
        self.move_through(CAROL, S.n["a1"], failpoint="move-freeze")

    def test_4_owner_killed_once_frozen(self):
        row = self.move_through(DAVE, S.n["a1"], failpoint="move-frozen")
        self.assertGreaterEqual(int(row["freezes"]), 2)

    def test_5_owner_killed_entering_the_commit(self):
        self.move_through(ZED, S.n["a1"], failpoint="move-commit")

    def test_6_owner_killed_after_transfer(self):
        row = self.move_through(ERIN, S.n["a1"], failpoint="move-committed")
        self.assertEqual(int(row["freezes"]), 1)

    def test_7_target_killed_at_its_commit(self):
        # Carol moved to b in test 3; back to a, with a1 the target.
        self.move_through(CAROL, S.n["a1"], src="b1", dst="a1",
                          failpoint="move-target-commit")


if __name__ == "__main__":
    mf.main()
