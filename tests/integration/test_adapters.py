"""Real Postfix and real nginx driven by mmnode's lookups, delivering to
real Dovecot back ends.

Postfix: transport_maps and relay_recipient_maps point at mmnode's
socketmap listener; Postfix's lmtp client delivers to the back end mmnode
names. Unknown users are refused at RCPT time (550 5.1.1). A frozen
user's mail is refused at RCPT with 450 4.2.1 (smtpd resolves the retry:
transport there), and mail already queued is deferred; once the user is
active both arrive exactly once. Mail sent while mmnode is down is
refused with 451 or deferred in the queue, never lost.

nginx: the mail proxy asks mmnode's auth_http listener where a session
goes (IMAP, POP3) or where a recipient's mail goes (SMTP: this node's own
SMTP listener, as the back ends take mail by LMTP). One lookup line per
attempt, never a password in mmnode's log."""

import imaplib
import os
import poplib
import re
import smtplib
import subprocess
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
POPNODE = PF = None          # popmap node + its Postfix
DIRNODE = PFDIR = None       # directory node (frozen user) + its Postfix
AUTHNODE = NGINX = None      # auth_http + smtp node + nginx

ALICE = "alice@a.test"       # be1
BOB = mf.QUOTE_USER          # be2 (password with a space and quotes)
CAROL = "carol@b.test"       # be2
DAVE = "dave@be1.test"       # be1; frozen on the directory node
ERIN = "erin@be2.test"       # be2
ZED = "zed@z.test"           # on the back ends, unknown to mmnode
SENDER = "sender@example.net"

SENDMAIL = "/usr/sbin/sendmail"


def be(user):
    return ENV.dovecots[mf.EXPECT_BACKEND[user]]


def other_be(user):
    return ENV.dovecots["be2" if mf.EXPECT_BACKEND[user] == "be1" else "be1"]


def lmtp_backends():
    return [ENV.backend_line(n, lmtp=ENV.dovecots[n].lmtp)
            for n in ("be1", "be2")]


def socketmap_maps(node):
    base = "socketmap:inet:%s:%d:" % (mf.HOST, node.port["socketmap"])
    return base + "transport", base + "recipient"


def postfix_for(node, name):
    """A Postfix relay routed by NODE's socketmap. Every known user has a
    transport answer and relay_recipient_maps refuses the others, so the
    relay transport (an LMTP port nothing listens on) is never used. (The
    fixture's default relay, a retry: transport, would make smtpd refuse
    every recipient without a transport answer with 450 before it asks
    the recipient map.)

    max_use 1: smtpd keeps every address it resolved (a failed lookup and
    a retry: route too) for as long as the process lives, across
    sessions; a sender retrying after the route changed would meet the
    old answer until that process ends. One session per process makes
    each retry ask mmnode again."""
    transport, recipient = socketmap_maps(node)
    return ENV.postfix(name, transport_maps=transport,
                       relay="lmtp:inet:%s:%d" % (mf.HOST, mf.free_port()),
                       main={"relay_recipient_maps": recipient,
                             "max_use": "1"})


def setUpModule():
    global ENV, POPNODE, PF, DIRNODE, PFDIR, AUTHNODE, NGINX
    ENV = mf.env()
    # Seeded messages get their UIDs first: the newest is the last one.
    for d in ENV.dovecots.values():
        d.sync_mailboxes()

    POPNODE = ENV.mmnode(name="pfpop",
                         listeners=[("socketmap", "socketmap", {})],
                         backends=lmtp_backends())
    PF = postfix_for(POPNODE, "pfpop")

    DIRNODE = ENV.directory_node(
        "pfdir", site="a", start=False,
        listeners=[("socketmap", "socketmap", {})],
        backends=lmtp_backends())
    for user in (ALICE, BOB, DAVE):
        DIRNODE.ctl("user", "add", user, mf.EXPECT_BACKEND[user],
                    direct=True).check()
    DIRNODE.start()
    PFDIR = postfix_for(DIRNODE, "pfdir")

    AUTHNODE = ENV.mmnode(name="nxnode",
                          listeners=[("auth", "auth-http", {}),
                                     ("smtp", "smtp", {}),
                                     ("imap", "imap", {}),
                                     ("pop3", "pop3", {})],
                          backends=lmtp_backends())
    NGINX = ENV.nginx("%s:%d/auth" % (mf.HOST, AUTHNODE.port["auth"]),
                      protocols=("imap", "pop3", "smtp"), smtp_auth="none")


def tearDownModule():
    mf.shutdown()


# --- helpers -------------------------------------------------------------------

def message(subject, to, body="Hello.\n"):
    """A complete message (From, To, Date, Message-ID: nothing for Postfix's
    cleanup to add or rewrite), CRLF line ends."""
    tag = re.sub(r"[^A-Za-z0-9]+", ".", subject)
    return mf.crlf_message(
        "From: Sender <%s>\nTo: %s\nSubject: %s\n"
        "Date: Tue, 2 Jan 2024 10:00:00 +0000\n"
        "Message-ID: <%s.%d@mailmesh.test>\n\n%s" % (
            SENDER, ", ".join(to), subject, tag, os.getpid(), body))


def unique(what):
    return "%s %d %.6f" % (what, os.getpid(), time.time())


def with_marker(dovecot, user, marker):
    """The messages in USER's INBOX on DOVECOT that contain MARKER."""
    m = marker.encode()
    return [raw for raw in mf.fetch_all(dovecot, user) if m in raw]


def wait_marker(dovecot, user, marker, timeout=15.0):
    mf.wait_for(lambda: with_marker(dovecot, user, marker), timeout,
                step=0.1)
    return with_marker(dovecot, user, marker)


def strip_postfix_received(raw):
    """RAW without Dovecot's delivery fields and then the Received field
    Postfix put on top: smtpd's ("from HELO ... (Postfix) with ESMTP id")
    or pickup's for a local submission ("by HOST (Postfix, from userid")."""
    rest = mf.strip_delivery_headers(raw)
    fields, _ = mf.split_header_fields(rest)
    assert fields and (
        (fields[0].startswith(b"Received: from ") and
         b"(Postfix) with ESMTP id " in fields[0]) or
        (fields[0].startswith(b"Received: by ") and
         b"(Postfix, from userid " in fields[0])), rest[:600]
    return rest[len(fields[0]):]


def strip_mmnode_received(raw):
    """RAW without Dovecot's delivery fields and mmnode's Received field."""
    rest = mf.strip_delivery_headers(raw)
    fields, _ = mf.split_header_fields(rest)
    assert fields and fields[0].startswith(b"Received: from ") and \
        b"(MailMesh)" in fields[0], rest[:600]
    return rest[len(fields[0]):]


def log_lines(pf, pattern, pos=0):
    rx = re.compile(pattern)
    return [ln for ln in pf.log_since(pos).splitlines() if rx.search(ln)]


def sendmail_inject(pf, rcpt, data):
    """Local submission (sendmail -> postdrop -> pickup): queued without
    smtpd's recipient checks, routed when the queue manager takes it."""
    r = subprocess.run([SENDMAIL, "-C", pf.etc, "-f", SENDER, "-i", "--",
                        rcpt], input=data.replace(b"\r\n", b"\n"),
                       capture_output=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("sendmail failed: %s" % (
            (r.stdout + r.stderr).decode(errors="replace")))


def queue_recipients(pf):
    """{address: delay_reason} of every queued recipient."""
    out = {}
    for m in pf.queue():
        for r in m.get("recipients", []):
            out[r["address"]] = r.get("delay_reason", "")
    return out


# --- Postfix ---------------------------------------------------------------------

class PostfixDeliveryTest(unittest.TestCase):
    """Postfix with transport_maps and relay_recipient_maps on a popmap
    node's socketmap."""

    def test_routed_by_socketmap_byte_for_byte(self):
        subj = unique("postfix two back ends")
        body = ("Line one.\n.leading dot\n..two dots\n" + "x" * 900 +
                "\n\tTabbed line\n\n.\nend\n")
        data = message(subj, [ALICE, BOB], body)
        users = (ALICE, BOB)
        before = {u: (mf.inbox_count(be(u), u),
                      mf.inbox_count(other_be(u), u)) for u in users}
        pos = PF.log_size()
        with smtplib.SMTP(mf.HOST, PF.smtp, timeout=mf.IO_TIMEOUT) as s:
            refused = s.sendmail(SENDER, list(users), data)
        self.assertEqual(refused, {})
        for u in users:
            got = wait_marker(be(u), u, subj)
            self.assertEqual(len(got), 1, (u, PF.log_since(pos)))
        self.assertTrue(PF.wait_queue_empty(10), PF.queue())
        for u in users:
            with self.subTest(user=u):
                d = be(u)
                raw = with_marker(d, u, subj)
                self.assertEqual(len(raw), 1)
                self.assertEqual(strip_postfix_received(raw[0]), data)
                hdr = mf.delivery_headers(raw[0])
                self.assertEqual(hdr["return-path"], "<%s>" % SENDER)
                self.assertEqual(hdr["delivered-to"], u)
                self.assertEqual(
                    (mf.inbox_count(d, u), mf.inbox_count(other_be(u), u)),
                    (before[u][0] + 1, before[u][1]))
                self.assertEqual(with_marker(other_be(u), u, subj), [])
                # Postfix's lmtp client, to that back end's LMTP port.
                sent = log_lines(PF, r"/lmtp\[\d+\]: \w+: to=<%s>, "
                                 r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, "
                                 r".*status=sent" % (re.escape(u), d.lmtp),
                                 pos)
                self.assertEqual(len(sent), 1, PF.log_since(pos))
        self.assertEqual(log_lines(PF, r"status=(bounced|deferred)", pos),
                         [])
        # mmnode answered both maps for both users.
        log = POPNODE.log_text()
        for u in users:
            self.assertRegex(log, r"lookup socketmap map=transport user=%s "
                             r"result=found answer=lmtp:inet:127\.0\.0\.1:%d"
                             % (re.escape(u), be(u).lmtp))
            self.assertRegex(log, r"lookup socketmap map=recipient user=%s "
                             r"result=found" % re.escape(u))

    def test_unknown_user_refused_at_rcpt(self):
        subj = unique("postfix unknown")
        n_zed = [mf.inbox_count(d, ZED) for d in ENV.dovecots.values()]
        pos = PF.log_size()
        with mf.MailClient(mf.HOST, PF.smtp) as c:
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % SENDER)[0], 250)
            code, text = c.cmd("RCPT TO:<%s>" % ZED)
            self.assertEqual(code, 550, text)
            self.assertTrue(text.startswith("5.1.1 <%s>" % ZED), text)
            self.assertIn("User unknown", text)
            code, text = c.cmd("DATA")
            self.assertEqual(code // 100, 5, text)
            c.cmd("QUIT")
        # With a known recipient next to it, only the unknown one is
        # refused.
        with smtplib.SMTP(mf.HOST, PF.smtp, timeout=mf.IO_TIMEOUT) as s:
            refused = s.sendmail(SENDER, [ZED, ALICE],
                                 message(subj, [ZED, ALICE]))
        self.assertEqual(list(refused), [ZED])
        self.assertEqual(refused[ZED][0], 550)
        self.assertEqual(len(wait_marker(be(ALICE), ALICE, subj)), 1)
        self.assertTrue(PF.wait_queue_empty(10), PF.queue())
        self.assertEqual(
            [mf.inbox_count(d, ZED) for d in ENV.dovecots.values()], n_zed)
        self.assertEqual(len(log_lines(
            PF, r"NOQUEUE: reject: RCPT from .*: 550 5\.1\.1 <%s>"
            % re.escape(ZED), pos)), 2, PF.log_since(pos))
        # No queue file ever named zed: no delivery attempt either.
        self.assertEqual(log_lines(PF, r": [0-9A-F]+: to=<%s>"
                                   % re.escape(ZED), pos), [])

    def test_z_mmnode_down_nothing_lost(self):
        """Last of the class: mmnode stops, Postfix's lookups fail."""
        subj_smtp = unique("postfix mmnode down smtp")
        subj_local = unique("postfix mmnode down local")
        subj_other = unique("postfix mmnode back")
        data = message(subj_smtp, [ERIN])
        n = mf.inbox_count(be(ERIN), ERIN)
        pos = PF.log_size()
        POPNODE.stop()
        try:
            self.assertFalse(mf.port_open(POPNODE.port["socketmap"]))
            # At the door: a temporary refusal, the sender keeps the mail.
            with mf.MailClient(mf.HOST, PF.smtp) as c:
                self.assertEqual(c.cmd("MAIL FROM:<%s>" % SENDER)[0], 250)
                code, text = c.cmd("RCPT TO:<%s>" % ERIN)
                self.assertEqual(code // 100, 4, text)
                self.assertTrue(text.startswith("4.3.0"), text)
                c.cmd("QUIT")
            # Mail already inside Postfix waits in the deferred queue.
            sendmail_inject(PF, ERIN, message(subj_local, [ERIN]))
            line = PF.wait_log(r"to=<%s>.*status=deferred" % re.escape(ERIN),
                               pos, timeout=10)
            self.assertTrue(line, PF.log_since(pos))
            self.assertIn("dsn=4.", line)
            time.sleep(2.5)     # retries meanwhile: deferred again
            self.assertIn(ERIN, queue_recipients(PF), PF.queue())
            self.assertEqual(log_lines(PF, r"status=(sent|bounced)", pos), [])
            self.assertEqual(mf.inbox_count(be(ERIN), ERIN), n)
        finally:
            if not POPNODE.alive():
                POPNODE.start()
        # Postfix keeps its last address resolution (a failure too) for
        # up to 30 s per process; mail for another user replaces it, as
        # any traffic would. Then the sender tries again.
        with mf.MailClient(mf.HOST, PF.smtp) as c:
            r = c.send(SENDER, [ALICE], message(subj_other, [ALICE]))
            self.assertEqual(r[ALICE][0], 250, r)
            r = c.send(SENDER, [ERIN], data)
            self.assertEqual(r[ERIN][0], 250, r)
            c.quit()
        self.assertEqual(len(wait_marker(be(ALICE), ALICE, subj_other)), 1,
                         PF.log_since(pos))
        PF.flush()
        for subj in (subj_local, subj_smtp):
            self.assertEqual(len(wait_marker(be(ERIN), ERIN, subj)), 1,
                             PF.log_since(pos))
        self.assertTrue(PF.wait_queue_empty(10), PF.queue())
        time.sleep(0.3)
        for subj in (subj_local, subj_smtp):
            self.assertEqual(len(with_marker(be(ERIN), ERIN, subj)), 1)
            self.assertEqual(with_marker(other_be(ERIN), ERIN, subj), [])
        self.assertEqual(mf.inbox_count(be(ERIN), ERIN), n + 2)
        self.assertEqual(len(log_lines(
            PF, r"/lmtp\[\d+\]: \w+: to=<%s>, relay=127\.0\.0\.1\[127\.0\.0"
            r"\.1\]:%d, .*status=sent" % (re.escape(ERIN), be(ERIN).lmtp),
            pos)), 2, PF.log_since(pos))
        self.assertEqual(log_lines(PF, r"status=bounced", pos), [])


class PostfixFrozenTest(unittest.TestCase):
    """Postfix on a directory node's socketmap; dave is frozen mid-move:
    the transport answer is Postfix's retry: transport."""

    def test_frozen_deferred_then_delivered_once(self):
        subj_smtp = unique("postfix frozen smtp")
        subj_local = unique("postfix frozen local")
        subj_other = unique("postfix frozen other")
        data_smtp = message(subj_smtp, [DAVE])
        data_local = message(subj_local, [DAVE])
        n = mf.inbox_count(be(DAVE), DAVE)
        DIRNODE.ctl("user", "set", DAVE, "be1", "--state", "frozen",
                    "--target", "b").check()
        pos = PFDIR.log_size()
        activated = False
        try:
            # smtpd resolves the recipient at RCPT: the retry: transport
            # refuses it there, temporarily; the sender keeps the mail.
            with mf.MailClient(mf.HOST, PFDIR.smtp) as c:
                r = c.send(SENDER, [DAVE], data_smtp)
                c.quit()
            self.assertEqual(r[DAVE][0], 450, r)
            self.assertTrue(r[DAVE][1].startswith("4.2.1 "), r)
            self.assertIn("Mailbox is being moved", r[DAVE][1])
            # Mail already in Postfix's queue (a local submission here) is
            # deferred by the retry transport, never bounced.
            sendmail_inject(PFDIR, DAVE, data_local)
            line = PFDIR.wait_log(r"to=<%s>.*status=deferred"
                                  % re.escape(DAVE), pos, timeout=10)
            self.assertTrue(line, PFDIR.log_since(pos))
            self.assertIn("dsn=4.2.1", line)
            self.assertIn("Mailbox is being moved", line)
            time.sleep(2.5)     # retries meanwhile: deferred again
            q = queue_recipients(PFDIR)
            self.assertIn(DAVE, q, PFDIR.queue())
            self.assertIn("Mailbox is being moved", q[DAVE])
            self.assertEqual(log_lines(PFDIR, r"status=(sent|bounced)", pos),
                             [])
            self.assertEqual(mf.inbox_count(be(DAVE), DAVE), n)

            DIRNODE.ctl("user", "set", DAVE, "be1", "--state",
                        "active").check()
            activated = True
            # Other traffic replaces Postfix's cached resolution (see
            # test_z_mmnode_down_nothing_lost); the sender retries.
            with mf.MailClient(mf.HOST, PFDIR.smtp) as c:
                r = c.send(SENDER, [ALICE], message(subj_other, [ALICE]))
                self.assertEqual(r[ALICE][0], 250, r)
                r = c.send(SENDER, [DAVE], data_smtp)
                self.assertEqual(r[DAVE][0], 250, r)
                c.quit()
            self.assertEqual(len(wait_marker(be(ALICE), ALICE, subj_other)),
                             1, PFDIR.log_since(pos))
            PFDIR.flush()
            for subj in (subj_local, subj_smtp):
                self.assertEqual(len(wait_marker(be(DAVE), DAVE, subj)), 1,
                                 PFDIR.log_since(pos))
            self.assertTrue(PFDIR.wait_queue_empty(10), PFDIR.queue())
            time.sleep(0.3)
            for subj, data in ((subj_local, data_local),
                               (subj_smtp, data_smtp)):
                got = with_marker(be(DAVE), DAVE, subj)
                self.assertEqual(len(got), 1)
                self.assertEqual(strip_postfix_received(got[0]), data)
                self.assertEqual(with_marker(other_be(DAVE), DAVE, subj), [])
            self.assertEqual(mf.inbox_count(be(DAVE), DAVE), n + 2)
            sent = log_lines(PFDIR, r"/lmtp\[\d+\]: \w+: to=<%s>, "
                             r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, "
                             r".*status=sent" % (re.escape(DAVE),
                                                 be(DAVE).lmtp), pos)
            self.assertEqual(len(sent), 2, PFDIR.log_since(pos))
            self.assertEqual(log_lines(PFDIR, r"status=bounced", pos), [])
        finally:
            if not activated:
                DIRNODE.ctl("user", "set", DAVE, "be1", "--state", "active")
            PFDIR.delete_all()


# --- nginx -----------------------------------------------------------------------

def nginx_imap(user, password):
    m = imaplib.IMAP4(mf.HOST, NGINX.imap, timeout=mf.IO_TIMEOUT)
    try:
        m.login(user, password)
    except BaseException:
        try:
            m.shutdown()
        except OSError:
            pass
        raise
    return m


def auth_lines(pos):
    return [ln for ln in AUTHNODE.log_since(pos).splitlines()
            if " lookup auth-http " in ln]


def wait_auth_lines(pos, n, timeout=3.0):
    mf.wait_for(lambda: len(auth_lines(pos)) >= n, timeout)
    time.sleep(0.1)         # and not more
    return auth_lines(pos)


def given_passwords():
    """Every password the tests give nginx, raw and as nginx escapes it."""
    out = set()
    for pw in list(mf.USERS.values()) + [WRONG_PW]:
        out.add(pw)
        out.add(urllib.parse.quote(pw, safe="!#$&'()*+,-./:;<=>?@[]^_`{|}~"))
    return out


WRONG_PW = "not-the-Password-9"


class NginxImapPop3Test(unittest.TestCase):

    def test_imap_each_user_reaches_own_backend(self):
        for user in (ALICE, BOB, DAVE, ERIN):
            with self.subTest(user=user):
                pos = AUTHNODE.log_size()
                m = nginx_imap(user, mf.USERS[user])
                try:
                    subj = mf.imap_subjects(m)
                finally:
                    m.logout()
                want = mf.hello_subject(user, mf.EXPECT_BACKEND[user])
                self.assertEqual(subj[0], want + " #1", subj)
                lines = wait_auth_lines(pos, 1)
                self.assertEqual(len(lines), 1, lines)
                self.assertRegex(
                    lines[0], r"proto=imap user=%s result=found backend=%s "
                    r"server=127\.0\.0\.1:%d answer=ok" % (
                        re.escape(user), be(user).name, be(user).imap))

    def test_pop3_each_user_reaches_own_backend(self):
        for user in (ALICE, BOB, CAROL):
            with self.subTest(user=user):
                pos = AUTHNODE.log_size()
                p = poplib.POP3(mf.HOST, NGINX.pop3, timeout=mf.IO_TIMEOUT)
                try:
                    p.user(user)
                    p.pass_(mf.USERS[user])
                    subj = mf.pop_subject(p, 1)
                finally:
                    p.quit()
                want = mf.hello_subject(user, mf.EXPECT_BACKEND[user])
                self.assertEqual(subj, [want + " #1"])
                lines = wait_auth_lines(pos, 1)
                self.assertEqual(len(lines), 1, lines)
                self.assertRegex(
                    lines[0], r"proto=pop3 user=%s result=found backend=%s "
                    r"server=127\.0\.0\.1:%d answer=ok" % (
                        re.escape(user), be(user).name, be(user).pop3))

    def imap_failure(self, user, password):
        """(error text, seconds, still usable?) of a failed LOGIN."""
        m = imaplib.IMAP4(mf.HOST, NGINX.imap, timeout=mf.IO_TIMEOUT)
        t0 = time.monotonic()
        try:
            m.login(user, password)
        except imaplib.IMAP4.error as e:
            err = str(e)
        else:
            m.logout()
            self.fail("login of %s succeeded" % user)
        took = time.monotonic() - t0
        try:
            typ, _ = m.noop()
            usable = typ == "OK"
        except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError):
            usable = False
        try:
            m.shutdown()
        except OSError:
            pass
        return err, took, usable

    def pop3_failure(self, user, password):
        p = poplib.POP3(mf.HOST, NGINX.pop3, timeout=mf.IO_TIMEOUT)
        t0 = time.monotonic()
        try:
            p.user(user)
            p.pass_(password)
        except poplib.error_proto as e:
            err = str(e)
        else:
            p.quit()
            self.fail("login of %s succeeded" % user)
        took = time.monotonic() - t0
        try:
            usable = p.noop().startswith(b"+OK")
        except (poplib.error_proto, OSError, EOFError):
            usable = False
        try:
            p.close()
        except OSError:
            pass
        return err, took, usable

    failures = {}

    def both_failures(self, proto):
        """(wrong password, unknown user, auth-http log lines) for PROTO,
        measured once for the tests below (an unknown user costs nginx's
        Auth-Wait)."""
        if proto not in self.failures:
            fail = self.imap_failure if proto == "imap" else \
                self.pop3_failure
            pos = AUTHNODE.log_size()
            bad_pw = fail(ALICE, WRONG_PW)
            unknown = fail(ZED, mf.USERS[ZED])
            self.failures[proto] = (bad_pw, unknown, wait_auth_lines(pos, 2))
        return self.failures[proto]

    def check_refused(self, proto):
        bad_pw, unknown, lines = self.both_failures(proto)
        # One lookup per attempt: alice is routed (her back end refuses
        # the password), zed to mmnode's own listener, which refuses him.
        self.assertEqual(len(lines), 2, lines)
        self.assertRegex(lines[0], r"proto=%s user=%s result=found "
                         r"backend=be1 .*answer=ok" % (proto, ALICE))
        self.assertRegex(lines[1], r"proto=%s user=%s result=notfound "
                         r".*answer=ok" % (proto, ZED))
        self.assertTrue(mf.wait_for(
            lambda: "proxy login proto=%s user=%s" % (proto, ZED) in
            AUTHNODE.log_text() and "reason=unknown-user" in
            AUTHNODE.log_text(), 5), AUTHNODE.log_text()[-2000:])

    def check_indistinguishable(self, proto):
        bad_pw, unknown, _ = self.both_failures(proto)
        # Same words, same connection state, timing within a second.
        self.assertEqual(bad_pw[0], unknown[0], (bad_pw, unknown))
        self.assertEqual(bad_pw[2], unknown[2], (bad_pw, unknown))
        self.assertLess(abs(bad_pw[1] - unknown[1]), 1.0, (bad_pw, unknown))

    def test_imap_wrong_password_and_unknown_user_refused(self):
        self.check_refused("imap")

    def test_pop3_wrong_password_and_unknown_user_refused(self):
        self.check_refused("pop3")

    # A wrong password is refused by the back end (its words relayed by
    # nginx, which then closes); an unknown user is sent to mmnode's own
    # listener, which refuses it the same way: a client cannot tell
    # whether a user exists.
    def test_imap_failures_indistinguishable(self):
        self.check_indistinguishable("imap")

    def test_pop3_failures_indistinguishable(self):
        self.check_indistinguishable("pop3")


class NginxSmtpTest(unittest.TestCase):

    def test_smtp_to_lmtp_backend_via_node(self):
        subj = unique("nginx smtp")
        data = message(subj, [ALICE], "Through nginx.\n.dot\n")
        n, n_other = (mf.inbox_count(be(ALICE), ALICE),
                      mf.inbox_count(other_be(ALICE), ALICE))
        pos = AUTHNODE.log_size()
        with smtplib.SMTP(mf.HOST, NGINX.smtp, timeout=mf.IO_TIMEOUT) as s:
            refused = s.sendmail(SENDER, [ALICE], data)
        self.assertEqual(refused, {})
        got = with_marker(be(ALICE), ALICE, subj)
        self.assertEqual(len(got), 1)
        self.assertEqual(strip_mmnode_received(got[0]), data)
        self.assertEqual(mf.delivery_headers(got[0])["delivered-to"], ALICE)
        self.assertEqual((mf.inbox_count(be(ALICE), ALICE),
                          mf.inbox_count(other_be(ALICE), ALICE)),
                         (n + 1, n_other))
        lines = wait_auth_lines(pos, 1)
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], r"proto=smtp user=%s result=found "
                         r"reason=lmtp-via-relay backend=be1 "
                         r"server=127\.0\.0\.1:%d answer=ok"
                         % (re.escape(ALICE), AUTHNODE.port["smtp"]))

    def test_smtp_unknown_recipient_5xx(self):
        pos = AUTHNODE.log_size()
        with mf.MailClient(mf.HOST, NGINX.smtp) as c:
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % SENDER)[0], 250)
            code, text = c.cmd("RCPT TO:<%s>" % ZED)
            self.assertEqual(code, 550, text)
            self.assertTrue(text.startswith("5.1.1"), text)
            c.cmd("QUIT")
        lines = wait_auth_lines(pos, 1)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("proto=smtp user=%s result=notfound" % ZED, lines[0])


class SmtpBackendTest(unittest.TestCase):
    """mmnode delivering by SMTP (not LMTP) to a real Postfix back end,
    with the client's address passed by XCLIENT."""

    def test_mmnode_to_postfix_by_smtp(self):
        pf = PF
        node = ENV.mmnode(
            name="tosmtp", listeners=[("smtp", "smtp", {})],
            backends=["be1 %s imap=%d smtp=%d client-addr=id" % (
                mf.HOST, ENV.dovecots["be1"].imap, pf.smtp)])
        self.addCleanup(node.stop)
        subj = unique("smtp backend")
        data = message(subj, [ALICE, DAVE], "By SMTP to Postfix.\n")
        na, nd = (mf.inbox_count(be(ALICE), ALICE),
                  mf.inbox_count(be(DAVE), DAVE))
        pos = pf.log_size()
        with mf.MailClient(mf.HOST, node.port["smtp"],
                           source="127.0.0.7") as c:
            r = c.send(SENDER, [ALICE, DAVE], data)
            c.quit()
        # SMTP has one verdict for the message: Postfix queued it.
        self.assertEqual(r[ALICE][0], 250, r)
        self.assertEqual(r[DAVE][0], 250, r)
        mf.wait_inbox_count(be(ALICE), ALICE, na + 1)
        mf.wait_inbox_count(be(DAVE), DAVE, nd + 1)
        got = with_marker(be(ALICE), ALICE, subj)
        self.assertEqual(len(got), 1)
        # Postfix saw the real client, not mmnode, thanks to XCLIENT.
        self.assertTrue(pf.wait_log(r"client=\S*\[127\.0\.0\.7\]", pos),
                        pf.log_text()[-2000:])


class ZNoPasswordLoggedTest(unittest.TestCase):
    """Last: nothing any test gave nginx as a password is in mmnode's log."""

    def test_no_password_in_log(self):
        log = AUTHNODE.log_text()
        self.assertIn("lookup auth-http proto=imap", log)
        for pw in given_passwords():
            self.assertNotIn(pw, log)


if __name__ == "__main__":
    mf.main()
