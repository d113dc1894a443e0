"""IMAP through mmnode: curl, imaplib and raw sessions against two Dovecot
back ends; literals, SASL, capabilities, pipelining, routing."""

import imaplib
import os
import sys
import socket
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = NODE = None


def setUpModule():
    global ENV, NODE
    ENV = mf.env()
    NODE = ENV.mmnode(name="imapnode")


def tearDownModule():
    mf.shutdown()


def pw(u):
    return mf.USERS[u]


def create_mailbox(dovecot, user, name):
    """Makes mailbox NAME for USER directly on DOVECOT (once)."""
    m = imaplib.IMAP4(mf.HOST, dovecot.imap, timeout=mf.IO_TIMEOUT)
    try:
        m.login(user, dovecot.users[user])
        typ, data = m.create(name)
        if typ != "OK" and b"ALREADYEXISTS" not in b" ".join(data):
            raise AssertionError("CREATE %s on %s: %r" % (
                name, dovecot.name, data))
    finally:
        m.logout()


ALICE = "alice@a.test"
BOB = mf.QUOTE_USER


class CurlTest(unittest.TestCase):
    def url(self, scheme, port, path, user=ALICE):
        return "%s://%s:%s@127.0.0.1:%d/%s" % (
            scheme, mf.url_user(user), pw(user), port, path)

    def test_fetch_uid1(self):
        rc, out, err = mf.curl([self.url("imap", NODE.port["imap"],
                                         "INBOX;UID=1")])
        self.assertEqual(rc, 0, err)
        self.assertIn(mf.hello_subject(ALICE, "be1") + " #1",
                      mf.subjects_in(out))

    def test_list(self):
        # Every back end has an INBOX for every user: a mailbox made on
        # one back end only shows which one the session reached.
        for user in (ALICE, "carol@b.test"):
            with self.subTest(user=user):
                marks = {}
                for name, d in ENV.dovecots.items():
                    marks[name] = "Only-on-%s" % name
                    create_mailbox(d, user, marks[name])
                rc, out, err = mf.curl([self.url("imap", NODE.port["imap"],
                                                 "", user=user)])
                self.assertEqual(rc, 0, err)
                self.assertTrue(out.startswith(b"* LIST"), out[:200])
                self.assertIn(b"INBOX", out)
                why = "LIST must come from %s" % mf.EXPECT_BACKEND[user]
                for name, mark in marks.items():
                    if name == mf.EXPECT_BACKEND[user]:
                        self.assertIn(mark.encode(), out, why)
                    else:
                        self.assertNotIn(mark.encode(), out, why)

    def test_imaps(self):
        rc, out, err = mf.curl(["--cacert", ENV.tls.ca,
                                self.url("imaps", NODE.port["imaps"],
                                         "INBOX;UID=2", user="carol@b.test")])
        self.assertEqual(rc, 0, err)
        self.assertIn(mf.hello_subject("carol@b.test", "be2") + " #2",
                      mf.subjects_in(out))

    def test_starttls_required(self):
        rc, out, err = mf.curl(["--ssl-reqd", "--cacert", ENV.tls.ca,
                                self.url("imap", NODE.port["imap"],
                                         "INBOX;UID=1", user="dave@be1.test")])
        self.assertEqual(rc, 0, err)
        self.assertIn(mf.hello_subject("dave@be1.test", "be1") + " #1",
                      mf.subjects_in(out))

    def test_imaps_untrusted_ca_fails(self):
        # Proves the TLS checks above are real: without the CA curl fails.
        rc, _, _ = mf.curl([self.url("imaps", NODE.port["imaps"],
                                     "INBOX;UID=1")])
        self.assertNotEqual(rc, 0)


class ImaplibTest(unittest.TestCase):
    def check_user(self, m, user):
        user = user.lower()
        subj = mf.imap_subjects(m)
        want = mf.hello_subject(user, mf.EXPECT_BACKEND[user])
        self.assertEqual(len(subj), 3, subj)
        for s in subj:
            self.assertTrue(s.startswith(want), (user, subj))

    def test_each_user_reaches_its_backend(self):
        for user, be in mf.EXPECT_BACKEND.items():
            with self.subTest(user=user):
                m = mf.IMAP4From(mf.HOST, NODE.port["imap"])
                typ, _ = m.login(user, pw(user))
                self.assertEqual(typ, "OK")
                self.check_user(m, user)
                m.logout()

    def test_quoted_password(self):
        # imaplib sends the password as a quoted string with \" escapes.
        m = mf.IMAP4From(mf.HOST, NODE.port["imap"])
        m.login(BOB, pw(BOB))
        self.check_user(m, BOB)
        m.logout()

    def test_uppercase_user(self):
        m = mf.IMAP4From(mf.HOST, NODE.port["imap"])
        m.login("ALICE@A.TEST", pw(ALICE))
        self.check_user(m, "ALICE@A.TEST")
        m.logout()

    def test_authenticate_plain_continuation(self):
        m = mf.IMAP4From(mf.HOST, NODE.port["imap"])
        user = "carol@b.test"
        typ, _ = m.authenticate(
            "PLAIN", lambda _: ("\0%s\0%s" % (user, pw(user))).encode())
        self.assertEqual(typ, "OK")
        self.check_user(m, user)
        m.logout()

    def test_imaps(self):
        m = mf.imaplib.IMAP4_SSL(mf.HOST, NODE.port["imaps"],
                                 ssl_context=ENV.tls.client_ctx(),
                                 timeout=mf.IO_TIMEOUT)
        m.login(BOB, pw(BOB))
        self.check_user(m, BOB)
        m.logout()

    def test_starttls(self):
        m = mf.IMAP4From(mf.HOST, NODE.port["imap"])
        self.assertIn("STARTTLS", m.capabilities)
        m.starttls(ssl_context=ENV.tls.client_ctx())
        self.assertNotIn("STARTTLS", m.capabilities)
        self.assertIn("AUTH=PLAIN", m.capabilities)
        m.login("erin@be2.test", pw("erin@be2.test"))
        self.check_user(m, "erin@be2.test")
        m.logout()

    def test_large_fetch_matches_direct(self):
        def big(port):
            m = mf.IMAP4From(mf.HOST, port)
            m.login(ALICE, pw(ALICE))
            m.select("INBOX", readonly=True)
            typ, data = m.fetch("3", "(BODY.PEEK[])")
            m.logout()
            self.assertEqual(typ, "OK")
            return data[0][1]
        via = big(NODE.port["imap"])
        direct = big(ENV.dovecots["be1"].imap)
        self.assertGreater(len(direct), mf.BIG_SIZE)
        self.assertEqual(len(via), len(direct))
        self.assertTrue(via == direct)

    def test_slow_reader_gets_every_byte(self):
        """A client that reads slowly fills the relay's buffers: the back
        end must be held back (backpressure) and no byte lost or reordered,
        in both the spliced (plaintext) and the TLS relay."""
        def slow_fetch(key, tls):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(mf.IO_TIMEOUT)
            sock.connect((mf.HOST, NODE.port[key]))
            if tls:
                sock = ENV.tls.client_ctx().wrap_socket(
                    sock, server_hostname="localhost")
            f = sock.makefile("rb")
            f.readline()
            sock.sendall(b"a LOGIN %s \"%s\"\r\nb SELECT INBOX\r\n"
                         b"c FETCH 3 (BODY.PEEK[])\r\nd LOGOUT\r\n" % (
                             ALICE.encode(), pw(ALICE).encode()))
            time.sleep(0.5)     # let the relay's buffers fill up
            data = b""
            while True:
                chunk = f.read(8192)
                if not chunk:
                    break
                data += chunk
                time.sleep(0.0005)
            sock.close()
            return data
        direct = mf.IMAP4From(mf.HOST, ENV.dovecots["be1"].imap)
        direct.login(ALICE, pw(ALICE))
        direct.select("INBOX", readonly=True)
        body = direct.fetch("3", "(BODY.PEEK[])")[1][0][1]
        direct.logout()
        for key, tls in (("imap", False), ("imaps", True)):
            data = slow_fetch(key, tls)
            self.assertIn(body, data, key)
            self.assertIn(b"\r\nd OK", data, key)

    def test_concurrent_sessions(self):
        errors = []
        users = list(mf.EXPECT_BACKEND) * 3

        def one(u):
            try:
                m = mf.IMAP4From(mf.HOST, NODE.port["imap"])
                m.login(u, pw(u))
                self.check_user(m, u)
                m.logout()
            except Exception as e:     # collected for the main thread
                errors.append("%s: %r" % (u, e))
        ts = [threading.Thread(target=one, args=(u,)) for u in users]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        self.assertEqual(errors, [])


class RawImapTest(unittest.TestCase):
    CAPS_BEFORE = ("IMAP4rev1", "AUTH=PLAIN", "SASL-IR", "LITERAL+", "ID")

    def conv(self, key="imap", **kw):
        if key == "imaps":
            kw["tls"] = ENV.tls.client_ctx()
        c = mf.Conv(NODE.port[key], **kw)
        self.addCleanup(c.close)
        self.assertTrue(c.greeting.startswith("* OK [CAPABILITY "),
                        c.greeting)
        self.assertIn("MailMesh ready.", c.greeting)
        return c

    def assert_subject(self, c, user, tag="s"):
        c.cmd("%s1 SELECT INBOX" % tag)
        _, t = c.tagged(tag + "1")
        self.assertTrue(t.startswith(tag + "1 OK"), t)
        c.cmd("%s2 FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])" % tag)
        lines, t = c.tagged(tag + "2")
        self.assertTrue(t.startswith(tag + "2 OK"), t)
        want = mf.hello_subject(user, mf.EXPECT_BACKEND[user]) + " #1"
        self.assertIn("Subject: " + want, lines)

    def test_capability_before_login(self):
        c = self.conv()
        c.cmd("a CAPABILITY")
        lines, t = c.tagged("a")
        self.assertTrue(t.startswith("a OK"), t)
        caps = [ln for ln in lines if ln.startswith("* CAPABILITY ")]
        self.assertEqual(len(caps), 1, lines)
        words = caps[0].split()[2:]
        for w in self.CAPS_BEFORE + ("STARTTLS",):
            self.assertIn(w, words)
        # Greeting advertises the same list.
        self.assertIn("STARTTLS", c.greeting)

    def test_capability_on_imaps_has_no_starttls(self):
        c = self.conv("imaps")
        c.cmd("a CAPABILITY")
        lines, t = c.tagged("a")
        self.assertTrue(t.startswith("a OK"), t)
        words = [w for ln in lines if ln.startswith("* CAPABILITY ")
                 for w in ln.split()[2:]]
        for w in self.CAPS_BEFORE:
            self.assertIn(w, words)
        self.assertNotIn("STARTTLS", words)

    def test_login_ok_carries_backend_capabilities(self):
        c = self.conv()
        c.cmd("a LOGIN %s %s" % (ALICE, pw(ALICE)))
        lines, t = c.tagged("a")
        self.assertTrue(t.startswith("a OK [CAPABILITY "), t)
        # Capabilities only the back end has after login.
        self.assertIn(" IDLE", t)
        self.assertIn(" UIDPLUS", t)
        self.assert_subject(c, ALICE)

    def test_sync_literals(self):
        c = self.conv()
        user, p = BOB, pw(BOB)
        c.send("a LOGIN {%d}\r\n" % len(user.encode()))
        c.expect("+")
        c.send("%s {%d}\r\n" % (user, len(p.encode())))
        c.expect("+")
        c.send(p + "\r\n")
        _, t = c.tagged("a")
        self.assertTrue(t.startswith("a OK"), t)
        self.assert_subject(c, BOB)

    def test_nonsync_literals(self):
        c = self.conv()
        user, p = BOB, pw(BOB)
        c.send("a LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (
            len(user.encode()), user, len(p.encode()), p))
        lines, t = c.tagged("a")
        self.assertTrue(t.startswith("a OK"), t)
        self.assertFalse([ln for ln in lines if ln.startswith("+")], lines)
        self.assert_subject(c, BOB)

    def test_quoted_string_login(self):
        c = self.conv()
        c.cmd("a LOGIN %s %s" % (mf.imap_quote(BOB), mf.imap_quote(pw(BOB))))
        _, t = c.tagged("a")
        self.assertTrue(t.startswith("a OK"), t)
        self.assert_subject(c, BOB)

    def test_authenticate_sasl_ir(self):
        c = self.conv()
        u = "dave@be1.test"
        c.cmd("a AUTHENTICATE PLAIN " + mf.sasl_plain(u, pw(u)))
        _, t = c.tagged("a")
        self.assertTrue(t.startswith("a OK"), t)
        self.assert_subject(c, u)

    def test_authenticate_continuation_raw(self):
        c = self.conv()
        u = "erin@be2.test"
        c.cmd("a AUTHENTICATE PLAIN")
        c.expect("+")
        c.cmd(mf.sasl_plain(u, pw(u)))
        _, t = c.tagged("a")
        self.assertTrue(t.startswith("a OK"), t)
        self.assert_subject(c, u)

    def test_authenticate_cancel(self):
        c = self.conv()
        c.cmd("a AUTHENTICATE PLAIN")
        c.expect("+")
        c.cmd("*")
        _, t = c.tagged("a")
        self.assertTrue(t.startswith("a BAD") or t.startswith("a NO"), t)
        c.cmd("b LOGIN %s %s" % (ALICE, pw(ALICE)))
        _, t = c.tagged("b")
        self.assertTrue(t.startswith("b OK"), t)

    def test_pipelined_after_login(self):
        c = self.conv()
        c.send("a LOGIN %s %s\r\nb SELECT INBOX\r\nc LOGOUT\r\n" % (
            ALICE, pw(ALICE)))
        _, ta = c.tagged("a")
        self.assertTrue(ta.startswith("a OK"), ta)
        lines, tb = c.tagged("b")
        self.assertTrue(tb.startswith("b OK"), tb)
        self.assertIn("* 3 EXISTS", lines)
        lines, tc = c.tagged("c")
        self.assertTrue(tc.startswith("c OK"), tc)
        self.assertTrue(any(ln.startswith("* BYE") for ln in lines), lines)
        c.wait_closed()

    def test_id_before_login(self):
        c = self.conv()
        c.cmd('a ID ("name" "mmtest" "version" "1")')
        lines, t = c.tagged("a")
        self.assertTrue(t.startswith("a OK"), t)
        self.assertTrue(any(ln.startswith("* ID ") for ln in lines), lines)
        c.cmd("b ID NIL")
        lines, t = c.tagged("b")
        self.assertTrue(t.startswith("b OK"), t)
        self.assertTrue(any(ln.startswith("* ID ") for ln in lines), lines)

    def test_noop_before_login(self):
        c = self.conv()
        c.cmd("a NOOP")
        _, t = c.tagged("a")
        self.assertTrue(t.startswith("a OK"), t)

    def test_unknown_command_before_login(self):
        c = self.conv()
        c.cmd("a SELECT INBOX")
        _, t = c.tagged("a")
        self.assertTrue(t.startswith("a BAD") or t.startswith("a NO"), t)
        c.cmd("b XYZZY")
        _, t = c.tagged("b")
        self.assertTrue(t.startswith("b BAD"), t)
        c.cmd("c NOOP")
        _, t = c.tagged("c")
        self.assertTrue(t.startswith("c OK"), t)

    def test_logout_before_login(self):
        c = self.conv()
        c.cmd("a LOGOUT")
        lines, t = c.tagged("a")
        self.assertTrue(t.startswith("a OK"), t)
        self.assertTrue(lines and lines[0].startswith("* BYE"), lines)
        c.wait_closed()

    def test_session_survives_idle_command(self):
        c = self.conv()
        c.cmd("a LOGIN %s %s" % (ALICE, pw(ALICE)))
        c.tagged("a")
        c.cmd("b SELECT INBOX")
        c.tagged("b")
        c.cmd("c IDLE")
        c.expect("+")
        c.cmd("DONE")
        _, t = c.tagged("c")
        self.assertTrue(t.startswith("c OK"), t)

    def test_source_address_bound(self):
        # Sanity check of the fixture used by limit tests elsewhere.
        src = mf.source_addr()
        c = self.conv(source=src)
        self.assertEqual(c.sock.getsockname()[0], src)


if __name__ == "__main__":
    mf.main()
