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

import hashlib
import os
import re
import shutil
import smtplib
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
ALICE = "alice@a.test"
BOB = "bob@a.test"
DAVE = "dave@be1.test"
ERIN = "erin@be2.test"
HOST = {"a1": "127.0.0.2", "b1": "127.0.0.3"}
SITE = {"a1": "a", "b1": "b"}
BACKEND = {"a": "ma", "b": "mb"}
SECRET = "doveadm-Secret-7"
N = {}
DV = {}


def setUpModule():
    global ENV
    ENV = mf.env()
    secret = os.path.join(ENV.dir, "doveadm.secret")
    with open(secret, "w") as f:
        f.write(SECRET + "\n")
    os.chmod(secret, 0o600)
    for site, name in BACKEND.items():
        port = mf.free_port()
        d = mf.Dovecot(name, os.path.join(ENV.dir, name), ENV.tls.cert,
                       ENV.tls.key, big=False, extra_conf=[
                           "doveadm_password = " + SECRET,
                           # Warm doveadm processes: a pass in the
                           # freeze does not wait for one to start.
                           "service doveadm {\n inet_listener {\n"
                           "  address = 127.0.0.1\n  port = %d\n }\n"
                           " process_min_avail = 2\n}" % port])
        d.doveadm = port
        if name == "mb":
            # Users that have never lived at b have no mailbox there.
            for u in (ALICE, BOB, DAVE):
                shutil.rmtree(os.path.join(d.dir, "mail", u))
        ENV.others.append(d)
        d.start()
        DV[name] = d
    peer = {n: mf.free_port() for n in HOST}
    seed = "%s:%d" % (HOST["a1"], peer["a1"])
    for name in ("a1", "b1"):
        N[name] = make_node(name, peer[name], [] if name == "a1" else [seed],
                            secret)
    for n in N.values():
        n.start()
    for u in (ALICE, BOB, DAVE, ERIN):
        N["a1"].ctl("user", "add", u, "ma").check()
    mf.wait_or_fail(lambda: all(
        record(N["b1"], u).get("site") == "a"
        for u in (ALICE, BOB, DAVE, ERIN))
        and
        len(N["a1"].members()) == 2 and len(N["b1"].members()) == 2,
        30, "gossip between the sites")


def tearDownModule():
    mf.shutdown()


def make_node(name, peer_port, seeds, secret):
    host = HOST[name]
    site = SITE[name]
    be = BACKEND[site]
    d = DV[be]
    key = os.path.join(ENV.dir, name, "transport.key")
    n = ENV.gossip_node(
        name, site, "%s:%d" % (host, peer_port), peers=seeds, start=False,
        host=host,
        listeners=[("imap", "imap", {}), ("pop3", "pop3", {}),
                   ("smtp", "smtp", {}), ("metrics", "metrics", {})],
        backends=["%s 127.0.0.1 imap=%d pop3=%d lmtp=%d client-addr=id "
                  "doveadm=%d doveadm-secret=%s move=dsync" % (
                      be, d.imap, d.pop3, d.lmtp, d.doveadm, secret)],
        timeouts={"drain": "2s", "backend": "5s", "move-freeze": "10s"},
        limits={"auth-failure-delay": "0", "auth-failure-delay-max": "0",
                "auth-failures-per-ip": "100000",
                "connections-per-ip": "1000"},
        extra=["transport-key %s" % key,
               "session-listen %s:%d" % (host, mf.free_port()),
               "dsync-listen %s:%d" % (host, mf.free_port())])
    mf.mmctl(["keys", "new", key]).check("keys new")
    n.certify(role="transport", pub=key + ".pub", name=name + "-transport")
    return n


def record(node, user):
    r = node.ctl("user", "show", user, json=True)
    if r.rc != 0:
        return {}
    return r.json()


def imap_direct(dv, user):
    m = mf.imaplib.IMAP4("127.0.0.1", dv.imap, timeout=mf.IO_TIMEOUT)
    m.login(user, mf.USERS[user])
    return m


def mailbox_state(dv, user):
    """Everything clients can tell of USER's mailbox on DV: per folder
    UIDVALIDITY and, per message, UID, flags (without \\Recent), Message-ID
    and a digest of the body; and the subscriptions."""
    m = imap_direct(dv, user)
    try:
        state = {"folders": {}, "subscribed": set()}
        typ, data = m.list()
        names = []
        for ln in data:
            mm = re.match(rb'\(([^)]*)\) "(.)" (.*)$', ln)
            name = mm.group(3).decode()
            names.append(name.strip('"'))
        typ, data = m.lsub()
        for ln in data or []:
            if ln:
                mm = re.match(rb'\(([^)]*)\) "(.)" (.*)$', ln)
                state["subscribed"].add(mm.group(3).decode().strip('"'))
        for name in names:
            typ, data = m.select('"%s"' % name, readonly=True)
            typ, uv = m.response("UIDVALIDITY")
            msgs = {}
            typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head = item[0].decode()
                uid = int(re.search(r"UID (\d+)", head).group(1))
                flags = set(re.search(r"FLAGS \(([^)]*)\)", head)
                            .group(1).split()) - {"\\Recent"}
                body = item[1]
                mid = re.search(rb"(?im)^Message-ID:\s*(\S+)", body)
                msgs[uid] = (frozenset(flags),
                             mid.group(1).decode() if mid else None,
                             hashlib.sha256(body).hexdigest())
            state["folders"][name] = (uv[0].decode() if uv and uv[0]
                                      else None, msgs)
        return state
    finally:
        m.logout()


class Sender(threading.Thread):
    """Sends USER a message through NODE's SMTP every 50 ms; a message
    deferred (4xx) is sent again, as a real sender would; a message is
    counted as sent once the node accepted it (250)."""

    def __init__(self, node, user):
        super().__init__(daemon=True)
        self.node, self.user = node, user
        self.sent, self.deferred = [], 0
        self.stop = threading.Event()
        self.errors = []

    def run(self):
        i = 0
        while not self.stop.is_set():
            mid = "<move-%d-%d@sender.test>" % (os.getpid(), i)
            msg = ("From: sender@sender.test\r\nTo: %s\r\nSubject: live %d"
                   "\r\nMessage-ID: %s\r\n\r\nbody %d\r\n"
                   % (self.user, i, mid, i))
            try:
                with smtplib.SMTP(self.node.host, self.node.port["smtp"],
                                  timeout=20) as s:
                    s.sendmail("sender@sender.test", [self.user], msg)
                self.sent.append(mid)
                i += 1
            except smtplib.SMTPResponseException as e:
                if 400 <= e.smtp_code < 500:
                    self.deferred += 1
                else:
                    self.errors.append(str(e))
            except smtplib.SMTPRecipientsRefused as e:
                codes = [c for c, _ in e.recipients.values()]
                if all(400 <= c < 500 for c in codes):
                    self.deferred += 1
                else:
                    self.errors.append(str(e))
            except OSError as e:
                self.errors.append(str(e))
            time.sleep(0.05)


class Idler(threading.Thread):
    """An IMAP client in IDLE at NODE that logs in again when told BYE."""

    def __init__(self, node, user):
        super().__init__(daemon=True)
        self.node, self.user = node, user
        self.byes, self.logins, self.errors = 0, 0, []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                c = mf.Conv(self.node.port["imap"], host=self.node.host,
                            timeout=20)
                c.cmd('a1 LOGIN "%s" "%s"' % (self.user,
                                              mf.USERS[self.user]))
                ln = c.line()
                while ln.startswith("* "):
                    ln = c.line()
                if not ln.startswith("a1 OK"):
                    self.errors.append(ln)
                    c.close()
                    time.sleep(0.2)
                    continue
                self.logins += 1
                c.cmd("a2 SELECT INBOX")
                ln = c.line()
                while not ln.startswith("a2 "):
                    ln = c.line()
                c.cmd("a3 IDLE")
                while not self.stop.is_set():
                    try:
                        ln = c.line(timeout=0.5)
                    except mf.socket.timeout:
                        continue
                    if ln.startswith("* BYE"):
                        self.byes += 1
                        break
                c.close()
            except mf.Closed:
                time.sleep(0.02)
            except OSError as e:
                self.errors.append(str(e))
                time.sleep(0.1)


class MoveTest(unittest.TestCase):
    def test_1_live_move_loses_nothing(self):
        a1, b1 = N["a1"], N["b1"]
        # Flags, keywords, a folder and a subscription to keep.
        m = imap_direct(DV["ma"], ALICE)
        m.select("INBOX")
        m.store("1", "+FLAGS", "(\\Seen $Label1)")
        m.store("2", "+FLAGS", "(\\Flagged Custom_kw)")
        m.create("Archive")
        m.subscribe("Archive")
        m.append("Archive", "(\\Seen)", None,
                 b"From: x@y.test\r\nSubject: kept\r\nMessage-ID: "
                 b"<kept@x.test>\r\n\r\nkept\r\n")
        m.logout()
        before = mailbox_state(DV["ma"], ALICE)
        sender = Sender(a1, ALICE)
        idler = Idler(a1, ALICE)
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
        after = mailbox_state(DV["mb"], ALICE)
        mids = [mid for _, msgs in after["folders"].values()
                for _, mid, _ in msgs.values()]
        for mid in sender.sent:
            self.assertEqual(mids.count(mid), 1, mid)
        self.assertEqual(len(mids), len(set(mids)), "duplicates")
        for name, (uv, msgs) in before["folders"].items():
            self.assertIn(name, after["folders"])
            auv, amsgs = after["folders"][name]
            self.assertEqual(auv, uv, name)
            for uid, (flags, mid, digest) in msgs.items():
                self.assertIn(uid, amsgs, (name, uid))
                self.assertEqual(amsgs[uid][1:], (mid, digest), (name, uid))
                self.assertEqual(amsgs[uid][0], flags, (name, uid))
        self.assertEqual(after["subscribed"], before["subscribed"])

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
        self.assertNotIn(SECRET, log + b1.log_text())
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
        a1 = N["a1"]
        before = mailbox_state(DV["ma"], BOB)
        r = a1.ctl("move", BOB, "b")
        self.assertEqual(r.rc, 0, r)
        r = a1.ctl("move", "--abort", BOB)
        self.assertEqual(r.rc, 0, r)
        mf.wait_or_fail(lambda: [x for x in a1.ctl("moves", json=True)
                                 .json() if x["user"] == BOB and
                                 x["phase"] == "aborted"], 60, "the abort")
        rec = record(a1, BOB)
        self.assertEqual((rec.get("site"), rec.get("state")), ("a", "active"))
        self.assertEqual(mailbox_state(DV["ma"], BOB), before)
        # Bob still logs in at a.
        c = mf.imaplib.IMAP4(a1.host, a1.port["imap"], timeout=mf.IO_TIMEOUT)
        c.login(BOB, mf.USERS[BOB])
        c.logout()

    def test_3_refusals(self):
        a1, b1 = N["a1"], N["b1"]
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
        self.assertEqual(mf.inbox_count(DV["mb"], ERIN),
                         3)
        r = a1.ctl("move", DAVE, "b", "--dry-run")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("would move %s from site a (back end ma, engine dsync)"
                      % DAVE, r.out)
        self.assertEqual(record(a1, DAVE).get("state"), "active")


if __name__ == "__main__":
    mf.main()
