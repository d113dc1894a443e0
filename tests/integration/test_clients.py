"""Real mail clients through mmnode (fetchmail, mbsync) and the client's
address reaching the back end (IMAP ID, POP3 XCLIENT, PROXY protocol)."""

import glob
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
    be1 = ENV.dovecots["be1"]
    NODE = ENV.mmnode(name="clients", backends=[
        ENV.backend_line("be1"),
        ENV.backend_line("be2"),
        ENV.backend_line("be1", client_addr="none", alias="be1noaddr"),
        "be1proxy 127.0.0.1 imap=%d pop3=%d client-addr=proxy" % (
            be1.imap_proxy, be1.pop3_proxy),
    ], popmap=mf.POPMAP + [
        "zed@z.test: be1noaddr",
    ])


def tearDownModule():
    mf.shutdown()


def pw(u):
    return mf.USERS[u]


class FetchmailTest(unittest.TestCase):
    def fetch(self, proto, port, user, tls_opts):
        home = os.path.join(ENV.dir, "fetchmail-%s-%s" % (proto, user))
        os.makedirs(home, exist_ok=True)
        out = os.path.join(home, "out.mbox")
        rc = os.path.join(home, "fetchmailrc")
        with open(rc, "w") as f:
            f.write('set no syslog\n'
                    'poll 127.0.0.1 with proto %s service %d\n'
                    '  user "%s" there with password "%s"\n'
                    '  options keep fetchall %s\n'
                    '  mda "/bin/sh -c \'cat >> %s\'"\n'
                    % (proto, port, user, pw(user), tls_opts, out))
        os.chmod(rc, 0o600)
        env = dict(os.environ, HOME=home, FETCHMAILHOME=home)
        r = mf.run(["fetchmail", "-f", rc, "--nodetach", "-v"],
                   env=env, timeout=60)
        text = (r.stdout + r.stderr).decode(errors="replace")
        self.assertEqual(r.returncode, 0, text)
        with open(out, "rb") as f:
            return f.read(), text

    def test_pop3_stls(self):
        data, _ = self.fetch("POP3", NODE.port["pop3"], ALICE,
                             "sslproto TLS1.2+ sslcertck sslcertfile %s "
                             "sslcommonname localhost"
                             % ENV.tls.ca)
        subj = mf.subjects_in(data)
        want = mf.hello_subject(ALICE, "be1")
        self.assertEqual(subj, [want + " #1", want + " #2", want + " #3 big"])
        self.assertGreater(len(data), mf.BIG_SIZE)

    def test_imaps(self):
        data, _ = self.fetch("IMAP", NODE.port["imaps"], "carol@b.test",
                             "ssl sslcertck sslcertfile %s "
                             "sslcommonname localhost" % ENV.tls.ca)
        want = mf.hello_subject("carol@b.test", "be2")
        self.assertEqual(sorted(mf.subjects_in(data)),
                         [want + " #%d" % i for i in (1, 2, 3)])

    def test_imap_plain(self):
        data, _ = self.fetch("IMAP", NODE.port["imap"], "dave@be1.test",
                             "sslproto ''")
        want = mf.hello_subject("dave@be1.test", "be1")
        self.assertEqual(len(mf.subjects_in(data)), 3)
        self.assertTrue(all(s.startswith(want)
                            for s in mf.subjects_in(data)))


class MbsyncTest(unittest.TestCase):
    def test_sync_inbox(self):
        user = "bob@a.test"
        d = os.path.join(ENV.dir, "mbsync")
        local = os.path.join(d, "local")
        os.makedirs(local, exist_ok=True)
        rc = os.path.join(d, "mbsyncrc")
        passfile = os.path.join(d, "pass")
        with open(passfile, "w") as f:
            f.write(pw(user))
        with open(rc, "w") as f:
            f.write("IMAPAccount mm\n"
                    "Host localhost\n"
                    "Port %d\n"
                    "User %s\n"
                    "PassCmd \"cat %s\"\n"
                    "SSLType STARTTLS\n"
                    "SSLVersions TLSv1.2 TLSv1.3\n"
                    "CertificateFile %s\n"
                    "\n"
                    "IMAPStore remote\n"
                    "Account mm\n"
                    "\n"
                    "MaildirStore near\n"
                    "Path %s/\n"
                    "Inbox %s/INBOX\n"
                    "\n"
                    "Channel ch\n"
                    "Far :remote:\n"
                    "Near :near:\n"
                    "Patterns INBOX\n"
                    "Create Near\n"
                    "Sync Pull\n"
                    "SyncState *\n"
                    % (NODE.port["imap"], user, passfile, ENV.tls.ca,
                       local, local))
        env = dict(os.environ, HOME=d)
        r = mf.run(["mbsync", "-c", rc, "-a"], env=env, timeout=60)
        text = (r.stdout + r.stderr).decode(errors="replace")
        self.assertEqual(r.returncode, 0, text)
        files = glob.glob(os.path.join(local, "INBOX", "*", "*"))
        subj = []
        for fn in files:
            with open(fn, "rb") as f:
                subj += mf.subjects_in(f.read())
        want = mf.hello_subject(user, "be2")
        self.assertEqual(sorted(subj), [want + " #%d" % i for i in (1, 2, 3)])


class ClientAddressTest(unittest.TestCase):
    def login_from(self, src, key, user):
        if key == "imap":
            m = mf.IMAP4From(mf.HOST, NODE.port["imap"], source=src)
            m.login(user, pw(user))
            m.logout()
        else:
            with mf.Conv(NODE.port["pop3"], source=src) as c:
                c.cmd("USER " + user)
                c.expect("+OK")
                c.cmd("PASS " + pw(user))
                c.expect("+OK")
                c.cmd("QUIT")
                c.expect("+OK")

    def check(self, be, key, user, src, want_rip):
        d = ENV.dovecots[be]
        pos = d.log_size()
        self.login_from(src, key, user)
        ln = d.wait_login_line(pos, user, proto=key)
        self.assertIsNotNone(ln, "no login line on %s:\n%s"
                             % (be, d.log_since(pos)))
        self.assertIn("rip=%s," % want_rip, ln)

    def test_imap_id_originating_ip(self):
        self.check("be1", "imap", ALICE, "127.0.0.5", "127.0.0.5")

    def test_pop3_xclient(self):
        self.check("be2", "pop3", "carol@b.test", "127.0.0.6", "127.0.0.6")

    def test_imap_client_addr_none(self):
        self.check("be1", "imap", "zed@z.test", "127.0.0.7", "127.0.0.1")

    def test_pop3_client_addr_none(self):
        self.check("be1", "pop3", "zed@z.test", "127.0.0.8", "127.0.0.1")


class ProxyProtocolTest(unittest.TestCase):
    """client-addr=proxy: a PROXY v2 header in front of the session."""

    @classmethod
    def setUpClass(cls):
        be1 = ENV.dovecots["be1"]
        cls.node = ENV.mmnode(name="proxyproto", backends=[
            "be1proxy 127.0.0.1 imap=%d pop3=%d client-addr=proxy" % (
                be1.imap_proxy, be1.pop3_proxy)],
            popmap=["alice@a.test: be1proxy", "bob@a.test: be1proxy"])

    def test_imap(self):
        d = ENV.dovecots["be1"]
        pos = d.log_size()
        m = mf.IMAP4From(mf.HOST, self.node.port["imap"], source="127.0.0.9")
        m.login(ALICE, pw(ALICE))
        self.assertTrue(mf.imap_subjects(m)[0].startswith(
            mf.hello_subject(ALICE, "be1")))
        m.logout()
        ln = d.wait_login_line(pos, ALICE, proto="imap")
        self.assertIsNotNone(ln, d.log_since(pos))
        self.assertIn("rip=127.0.0.9,", ln)

    def test_pop3(self):
        d = ENV.dovecots["be1"]
        pos = d.log_size()
        with mf.Conv(self.node.port["pop3"], source="127.0.0.10") as c:
            c.cmd("USER bob@a.test")
            c.expect("+OK")
            c.cmd("PASS " + pw("bob@a.test"))
            c.expect("+OK")
            c.cmd("QUIT")
            c.expect("+OK")
        ln = d.wait_login_line(pos, "bob@a.test", proto="pop3")
        self.assertIsNotNone(ln, d.log_since(pos))
        self.assertIn("rip=127.0.0.10,", ln)


if __name__ == "__main__":
    mf.main()
