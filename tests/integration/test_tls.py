"""TLS: STARTTLS/STLS command injection, require-tls listeners, TLS to the
back ends with certificate verification, and no TLS below 1.2."""

import os
import ssl
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = NODE = None
ALICE = "alice@a.test"


def setUpModule():
    global ENV, NODE
    ENV = mf.env()
    NODE = ENV.mmnode(name="tlsnode", listeners=mf.Mmnode.DEFAULT_LISTENERS + [
        ("imapreq", "imap", {"tls": True, "require_tls": True}),
        ("pop3req", "pop3", {"tls": True, "require_tls": True}),
        ("imapplain", "imap", {}),
        ("pop3plain", "pop3", {}),
    ])


def tearDownModule():
    mf.shutdown()


def pw(u):
    return mf.USERS[u]


def capability(c, tag="k"):
    c.cmd(tag + " CAPABILITY")
    lines, t = c.tagged(tag)
    if not t.startswith(tag + " OK"):
        raise AssertionError(t)
    return [w for ln in lines if ln.startswith("* CAPABILITY ")
            for w in ln.split()[2:]]


class InjectionTest(unittest.TestCase):
    def test_imap_starttls_injection(self):
        with mf.Conv(NODE.port["imap"]) as c:
            c.send("a STARTTLS\r\nb CAPABILITY\r\n")
            t = c.line()
            self.assertTrue(t.startswith("a OK"), t)
            c.starttls(ENV.tls.client_ctx())
            c.cmd("c NOOP")
            lines, t = c.tagged("c")
            self.assertTrue(t.startswith("c OK"), t)
            self.assertFalse([ln for ln in lines if ln.startswith("b ")
                              or ln.startswith("* CAPABILITY")],
                             "injected command answered: %r" % lines)
            # The session goes on normally inside TLS.
            c.cmd("d LOGIN %s %s" % (ALICE, pw(ALICE)))
            _, t = c.tagged("d")
            self.assertTrue(t.startswith("d OK"), t)

    def test_pop3_stls_injection(self):
        with mf.Conv(NODE.port["pop3"]) as c:
            c.send("STLS\r\nCAPA\r\n")
            c.expect("+OK")
            c.starttls(ENV.tls.client_ctx())
            c.cmd("XYZZY")
            ln = c.line()
            self.assertTrue(ln.startswith("-ERR"),
                            "injected CAPA answered: %r" % ln)
            c.cmd("USER " + ALICE)
            c.expect("+OK")
            c.cmd("PASS " + pw(ALICE))
            c.expect("+OK")
            c.cmd("STAT")
            c.expect("+OK 3 ")

    def test_imap_second_starttls_refused(self):
        with mf.Conv(NODE.port["imap"]) as c:
            c.cmd("a STARTTLS")
            c.expect("a OK")
            c.starttls(ENV.tls.client_ctx())
            c.cmd("b STARTTLS")
            _, t = c.tagged("b")
            self.assertTrue(t.startswith("b BAD") or t.startswith("b NO"), t)


class RequireTlsTest(unittest.TestCase):
    def test_imap_logindisabled(self):
        with mf.Conv(NODE.port["imapreq"]) as c:
            words = capability(c)
            self.assertIn("LOGINDISABLED", words)
            self.assertIn("STARTTLS", words)
            self.assertFalse([w for w in words if w.startswith("AUTH=")],
                             words)
            c.cmd("a LOGIN %s %s" % (ALICE, pw(ALICE)))
            _, t = c.tagged("a")
            self.assertTrue(t.startswith("a NO") or t.startswith("a BAD"), t)
            c.cmd("b AUTHENTICATE PLAIN " + mf.sasl_plain(ALICE, pw(ALICE)))
            _, t = c.tagged("b")
            self.assertTrue(t.startswith("b NO") or t.startswith("b BAD"), t)
            c.cmd("c STARTTLS")
            c.expect("c OK")
            c.starttls(ENV.tls.client_ctx())
            words = capability(c)
            self.assertNotIn("LOGINDISABLED", words)
            self.assertNotIn("STARTTLS", words)
            self.assertIn("AUTH=PLAIN", words)
            c.cmd("d LOGIN %s %s" % (ALICE, pw(ALICE)))
            _, t = c.tagged("d")
            self.assertTrue(t.startswith("d OK"), t)

    def test_imap_greeting_shows_logindisabled(self):
        with mf.Conv(NODE.port["imapreq"]) as c:
            self.assertIn("LOGINDISABLED", c.greeting)

    def test_pop3_require_tls(self):
        with mf.Conv(NODE.port["pop3req"]) as c:
            c.cmd("CAPA")
            c.expect("+OK")
            caps = c.pop_multi()
            self.assertIn("STLS", caps)
            c.cmd("USER " + ALICE)
            c.line()
            c.cmd("PASS " + pw(ALICE))
            r = c.line()
            self.assertTrue(r.startswith("-ERR"), r)
            c.cmd("AUTH PLAIN " + mf.sasl_plain(ALICE, pw(ALICE)))
            r = c.line()
            self.assertTrue(r.startswith("-ERR"), r)
            c.cmd("STLS")
            c.expect("+OK")
            c.starttls(ENV.tls.client_ctx())
            c.cmd("USER " + ALICE)
            c.expect("+OK")
            c.cmd("PASS " + pw(ALICE))
            c.expect("+OK")

    def test_no_starttls_without_cert(self):
        with mf.Conv(NODE.port["imapplain"]) as c:
            words = capability(c)
            self.assertNotIn("STARTTLS", words)
            self.assertIn("AUTH=PLAIN", words)
            c.cmd("a STARTTLS")
            _, t = c.tagged("a")
            self.assertTrue(t.startswith("a BAD") or t.startswith("a NO"), t)
            c.cmd("b LOGIN %s %s" % (ALICE, pw(ALICE)))
            _, t = c.tagged("b")
            self.assertTrue(t.startswith("b OK"), t)
        with mf.Conv(NODE.port["pop3plain"]) as c:
            c.cmd("CAPA")
            c.expect("+OK")
            self.assertNotIn("STLS", c.pop_multi())


class TlsBackendTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        be1, be2 = ENV.dovecots["be1"], ENV.dovecots["be2"]
        ca = ENV.tls.ca
        cls.node = ENV.mmnode(name="tlsbe", backends=[
            "tlsimpl 127.0.0.1 imap=%d pop3=%d tls=implicit ca=%s "
            "tls-name=localhost client-addr=id" % (be1.imaps, be1.pop3s, ca),
            "tlsstart 127.0.0.1 imap=%d pop3=%d tls=starttls ca=%s "
            "tls-name=localhost client-addr=id" % (be1.imap, be1.pop3, ca),
            "tlsname 127.0.0.1 imap=%d pop3=%d tls=implicit ca=%s "
            "tls-name=backend.test" % (be2.imaps, be2.pop3s, ca),
            "tlsip 127.0.0.1 imap=%d tls=implicit ca=%s" % (be1.imaps, ca),
            "tlswrong 127.0.0.1 imap=%d pop3=%d tls=implicit ca=%s "
            "tls-name=wrong.test" % (be1.imaps, be1.pop3s, ca),
            "tlswrong2 127.0.0.1 imap=%d tls=implicit ca=%s "
            "tls-name=localhost" % (be2.imaps, ca),
        ], popmap=[
            "alice@a.test: tlsimpl",
            "bob@a.test: tlsstart",
            "carol@b.test: tlsname",
            "dave@be1.test: tlsip",
            "erin@be2.test: tlswrong",
            "zed@z.test: tlswrong2",
        ], timeouts={"backend": "3s"})
        cls.node2 = ENV.mmnode(name="tlsbe2", backends=[
            "tlsnoca 127.0.0.1 imap=%d tls=implicit tls-name=localhost"
            % be1.imaps,
            "tlsstartwrong 127.0.0.1 imap=%d pop3=%d tls=starttls ca=%s "
            "tls-name=wrong.test" % (be1.imap, be1.pop3, ca),
        ], popmap=[
            "alice@a.test: tlsnoca",
            "bob@a.test: tlsstartwrong",
        ], timeouts={"backend": "3s"})

    def imap_ok(self, node, user, backend):
        m = mf.IMAP4From(mf.HOST, node.port["imap"])
        try:
            typ, _ = m.login(user, pw(user))
            self.assertEqual(typ, "OK")
            subj = mf.imap_subjects(m)
            self.assertTrue(
                subj[0].startswith(mf.hello_subject(user, backend)), subj)
            m.logout()
        finally:
            if m.state != "LOGOUT":
                m.shutdown()

    def imap_temp(self, node, user):
        with mf.Conv(node.port["imap"]) as c:
            c.cmd("a LOGIN %s %s" % (mf.imap_quote(user),
                                      mf.imap_quote(pw(user))))
            _, t = c.tagged("a")
            self.assertTrue(t.startswith("a NO [UNAVAILABLE]"), t)

    def test_implicit_tls(self):
        be1 = ENV.dovecots["be1"]
        pos = be1.log_size()
        self.imap_ok(self.node, "alice@a.test", "be1")
        ln = be1.wait_login_line(pos, "alice@a.test", proto="imap")
        self.assertTrue(ln and "TLS" in ln, be1.log_since(pos))

    def test_starttls(self):
        be1 = ENV.dovecots["be1"]
        pos = be1.log_size()
        self.imap_ok(self.node, "bob@a.test", "be1")
        ln = be1.wait_login_line(pos, "bob@a.test", proto="imap")
        self.assertTrue(ln and "TLS" in ln,
                        "back-end session not TLS:\n" + be1.log_since(pos))

    def test_tls_name(self):
        self.imap_ok(self.node, "carol@b.test", "be2")

    def test_default_tls_name_is_host(self):
        self.imap_ok(self.node, "dave@be1.test", "be1")

    def test_pop3_over_tls_backends(self):
        for user, be in (("alice@a.test", "be1"), ("bob@a.test", "be1"),
                         ("carol@b.test", "be2")):
            with self.subTest(user=user):
                p = mf.poplib.POP3(mf.HOST, self.node.port["pop3"],
                                   timeout=mf.IO_TIMEOUT)
                p.user(user)
                p.pass_(pw(user))
                self.assertTrue(mf.pop_subject(p, 1)[0].startswith(
                    mf.hello_subject(user, be)))
                p.quit()

    def test_name_mismatch_refused(self):
        self.imap_temp(self.node, "erin@be2.test")
        self.imap_temp(self.node, "zed@z.test")

    def test_pop3_name_mismatch_refused(self):
        with mf.Conv(self.node.port["pop3"]) as c:
            c.cmd("USER erin@be2.test")
            c.expect("+OK")
            c.cmd("PASS " + pw("erin@be2.test"))
            c.expect("-ERR [SYS/TEMP]")

    def test_untrusted_ca_refused(self):
        self.imap_temp(self.node2, "alice@a.test")

    def test_starttls_name_mismatch_refused(self):
        be1 = ENV.dovecots["be1"]
        pos = be1.log_size()
        self.imap_temp(self.node2, "bob@a.test")
        # The password never reached the back end in the clear.
        self.assertIsNone(be1.wait_login_line(pos, "bob@a.test", timeout=0.5))


class ProtocolVersionTest(unittest.TestCase):
    def s_client(self, port, *args):
        r = mf.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
                    "-CAfile", ENV.tls.ca, "-verify_return_error",
                    "-servername", "localhost"] + list(args),
                   input=b"", timeout=15)
        return r.returncode, r.stdout.decode(errors="replace")

    def test_tls11_refused(self):
        for key in ("imaps", "pop3s"):
            with self.subTest(listener=key):
                rc, out = self.s_client(NODE.port[key], "-tls1_1",
                                        "-cipher", "DEFAULT@SECLEVEL=0")
                self.assertNotEqual(rc, 0, out)
                # s_client prints the attempted protocol even on failure;
                # the cipher shows whether a session was set up.
                self.assertIn("Cipher is (NONE)", out)

    def test_tls12_and_13_accepted(self):
        for ver, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            with self.subTest(version=name):
                rc, out = self.s_client(NODE.port["imaps"], ver)
                self.assertEqual(rc, 0, out)
                self.assertIn(name, out)
                self.assertIn("Verify return code: 0 (ok)", out)

    def test_python_tls11_refused(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ENV.tls.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            ctx.set_ciphers("DEFAULT@SECLEVEL=0")
        except ssl.SSLError:
            pass
        with self.assertRaises((ssl.SSLError, OSError)):
            c = mf.Conv(NODE.port["imaps"], tls=ctx)
            c.close()

    def test_starttls_tls11_refused(self):
        with mf.Conv(NODE.port["imap"]) as c:
            c.cmd("a STARTTLS")
            c.expect("a OK")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(ENV.tls.ca)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            try:
                ctx.set_ciphers("DEFAULT@SECLEVEL=0")
            except ssl.SSLError:
                pass
            with self.assertRaises((ssl.SSLError, OSError)):
                c.starttls(ctx)


if __name__ == "__main__":
    mf.main()
