"""POP3 through mmnode: curl, poplib and raw sessions; USER/PASS, AUTH PLAIN
with and without an initial response, CAPA, STLS, pop3s, routing."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = NODE = None
ALICE = "alice@a.test"


def setUpModule():
    global ENV, NODE
    ENV = mf.env()
    NODE = ENV.mmnode(name="pop3node")


def tearDownModule():
    mf.shutdown()


def pw(u):
    return mf.USERS[u]


def want(user, n=1):
    user = user.lower()
    return "%s #%d" % (mf.hello_subject(user, mf.EXPECT_BACKEND[user]), n)


class CurlTest(unittest.TestCase):
    def url(self, scheme, port, path, user=ALICE):
        return "%s://%s:%s@127.0.0.1:%d/%s" % (
            scheme, mf.url_user(user), pw(user), port, path)

    def test_retr1(self):
        rc, out, err = mf.curl([self.url("pop3", NODE.port["pop3"], "1")])
        self.assertEqual(rc, 0, err)
        self.assertIn(want(ALICE), mf.subjects_in(out))

    def test_list(self):
        rc, out, err = mf.curl([self.url("pop3", NODE.port["pop3"], "",
                                         user="carol@b.test")])
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.splitlines()), 3, out)

    def test_pop3s(self):
        rc, out, err = mf.curl(["--cacert", ENV.tls.ca,
                                self.url("pop3s", NODE.port["pop3s"], "2",
                                         user="erin@be2.test")])
        self.assertEqual(rc, 0, err)
        self.assertIn(want("erin@be2.test", 2), mf.subjects_in(out))

    def test_stls_required(self):
        rc, out, err = mf.curl(["--ssl-reqd", "--cacert", ENV.tls.ca,
                                self.url("pop3", NODE.port["pop3"], "1",
                                         user="dave@be1.test")])
        self.assertEqual(rc, 0, err)
        self.assertIn(want("dave@be1.test"), mf.subjects_in(out))


class PoplibTest(unittest.TestCase):
    def login(self, user, password=None, port=None):
        p = mf.poplib.POP3(mf.HOST, port or NODE.port["pop3"],
                           timeout=mf.IO_TIMEOUT)
        self.addCleanup(p.close)
        self.assertTrue(p.getwelcome().startswith(b"+OK MailMesh ready."),
                        p.getwelcome())
        p.user(user)
        r = p.pass_(password if password is not None else pw(user.lower()))
        self.assertTrue(r.startswith(b"+OK"), r)
        return p

    def test_each_user_reaches_its_backend(self):
        for user in mf.EXPECT_BACKEND:
            with self.subTest(user=user):
                p = self.login(user)
                count, _ = p.stat()
                self.assertEqual(count, 3)
                self.assertIn(want(user), mf.pop_subject(p, 1))
                p.quit()

    def test_password_with_space_and_quote(self):
        p = self.login(mf.QUOTE_USER)
        self.assertIn(want(mf.QUOTE_USER), mf.pop_subject(p, 1))
        p.quit()

    def test_uppercase_user(self):
        p = self.login("ALICE@A.TEST")
        self.assertIn(want(ALICE), mf.pop_subject(p, 1))
        p.quit()

    def test_capa_before_login(self):
        p = mf.poplib.POP3(mf.HOST, NODE.port["pop3"], timeout=mf.IO_TIMEOUT)
        self.addCleanup(p.close)
        caps = p.capa()
        self.assertIn("USER", caps)
        self.assertIn("STLS", caps)
        self.assertIn("SASL", caps)
        self.assertIn("PLAIN", caps["SASL"])
        p.quit()

    def test_stls(self):
        p = mf.poplib.POP3(mf.HOST, NODE.port["pop3"], timeout=mf.IO_TIMEOUT)
        self.addCleanup(p.close)
        p.stls(context=ENV.tls.client_ctx())
        caps = p.capa()
        self.assertNotIn("STLS", caps)
        p.user("carol@b.test")
        p.pass_(pw("carol@b.test"))
        self.assertIn(want("carol@b.test"), mf.pop_subject(p, 1))
        p.quit()

    def test_pop3s(self):
        p = mf.poplib.POP3_SSL(mf.HOST, NODE.port["pop3s"],
                               context=ENV.tls.client_ctx(),
                               timeout=mf.IO_TIMEOUT)
        self.addCleanup(p.close)
        self.assertTrue(p.getwelcome().startswith(b"+OK"))
        self.assertNotIn("STLS", p.capa())
        p.user("bob@a.test")
        p.pass_(pw("bob@a.test"))
        self.assertIn(want("bob@a.test"), mf.pop_subject(p, 1))
        p.quit()

    def test_large_retr_matches_direct(self):
        def big(port):
            p = mf.poplib.POP3(mf.HOST, port, timeout=mf.IO_TIMEOUT)
            p.user(ALICE)
            p.pass_(pw(ALICE))
            _, lines, octets = p.retr(3)
            p.quit()
            return lines, octets
        via = big(NODE.port["pop3"])
        direct = big(ENV.dovecots["be1"].pop3)
        self.assertGreater(direct[1], mf.BIG_SIZE)
        self.assertTrue(via == direct)

    def test_uidl_and_top(self):
        p = self.login("erin@be2.test")
        resp, lines, _ = p.uidl()
        self.assertEqual(len(lines), 3)
        _, lines, _ = p.top(2, 0)
        self.assertIn(want("erin@be2.test", 2), mf.subjects_in(b"\n".join(lines)))
        p.quit()


class RawPop3Test(unittest.TestCase):
    def conv(self, **kw):
        c = mf.Conv(NODE.port["pop3"], **kw)
        self.addCleanup(c.close)
        self.assertTrue(c.greeting.startswith("+OK"), c.greeting)
        return c

    def check_logged_in(self, c, user):
        c.cmd("STAT")
        c.expect("+OK 3 ")
        c.cmd("TOP 1 0")
        c.expect("+OK")
        lines = c.pop_multi()
        self.assertIn("Subject: " + want(user), lines)
        c.cmd("QUIT")
        c.expect("+OK")
        c.wait_closed()

    def test_auth_plain_initial_response(self):
        c = self.conv()
        u = "carol@b.test"
        c.cmd("AUTH PLAIN " + mf.sasl_plain(u, pw(u)))
        c.expect("+OK")
        self.check_logged_in(c, u)

    def test_auth_plain_continuation(self):
        c = self.conv()
        u = mf.QUOTE_USER
        c.cmd("AUTH PLAIN")
        c.expect("+")
        c.cmd(mf.sasl_plain(u, pw(u)))
        c.expect("+OK")
        self.check_logged_in(c, u)

    def test_auth_cancel(self):
        c = self.conv()
        c.cmd("AUTH PLAIN")
        c.expect("+")
        c.cmd("*")
        c.expect("-ERR")
        c.cmd("USER " + ALICE)
        c.expect("+OK")
        c.cmd("PASS " + pw(ALICE))
        c.expect("+OK")
        self.check_logged_in(c, ALICE)

    def test_user_pass_raw(self):
        c = self.conv()
        c.cmd("USER " + mf.QUOTE_USER)
        c.expect("+OK")
        c.cmd("PASS " + pw(mf.QUOTE_USER))
        c.expect("+OK")
        self.check_logged_in(c, mf.QUOTE_USER)

    def test_pass_without_user(self):
        c = self.conv()
        c.cmd("PASS whatever")
        c.expect("-ERR")
        c.cmd("CAPA")
        c.expect("+OK")
        c.pop_multi()

    def test_quit_before_login(self):
        c = self.conv()
        c.cmd("QUIT")
        c.expect("+OK")
        c.wait_closed()

    def test_pipelined_user_pass(self):
        c = self.conv()
        c.send("USER %s\r\nPASS %s\r\nSTAT\r\n" % (ALICE, pw(ALICE)))
        c.expect("+OK")
        c.expect("+OK")
        c.expect("+OK 3 ")


if __name__ == "__main__":
    mf.main()
