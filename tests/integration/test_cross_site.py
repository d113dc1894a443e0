"""Cross-site sessions: a client that logs in at site b for a user owned by
site a is carried over the inter-node channel to a node of a, which checks
its own record and connects to its own back end. Two sites on two loopback
addresses, each with its own Dovecot back end (a: be1, b: be2) and its own
store, one cluster root; each node has a node key and a transport key.

There is no gossip between the nodes here: site b's store gets a's record
for alice the way gossip would deliver it, signed by a's node key. mmctl
run against b's store with a site-a config and a's node key (certified into
b's store by the root) signs that record; b's own node key could not."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
ALICE = "alice@a.test"     # owned by site a, on be1
CAROL = "carol@b.test"     # owned by site b, on be2
BOB = "bob@a.test"         # each site believes the other owns him
ERIN = "erin@be2.test"     # the rogue node believes site b owns her
HOST_A, HOST_B, HOST_R = "127.0.0.2", "127.0.0.3", "127.0.0.4"
CLIENT = "127.0.0.5"


def setUpModule():
    global ENV
    ENV = mf.env()


def tearDownModule():
    mf.shutdown()


def pw(u):
    return mf.USERS[u]


def transport_key(node, root=None):
    """A transport key beside NODE's node key, certified for its site."""
    key = os.path.join(node.dir, "transport.key")
    for f in (key, key + ".pub"):
        if os.path.exists(f):
            os.unlink(f)
    mf.mmctl(["keys", "new", key]).check("keys new")
    node.certify(role="transport", pub=key + ".pub",
                 name=node.name + "-transport")
    return key


def site_node(name, site, host, backend, session_port, routes, root=None):
    key = os.path.join(ENV.dir, name, "transport.key")
    extra = ["transport-key %s" % key,
             "session-listen %s:%d" % (host, session_port)]
    extra += ["site-route %s %s" % (s, " ".join(eps)) for s, eps in routes]
    n = mf.Mmnode(ENV, name=name, site=site, root=root or ENV.root_key(),
                  host=host, listeners=mf.Mmnode.DEFAULT_LISTENERS +
                  [("smtp", "smtp", {})],
                  backends=[ENV.backend_line(
                      backend, lmtp=ENV.dovecots[backend].lmtp)],
                  extra=extra, timeouts={"drain": "2s", "backend": "3s"})
    ENV.nodes.append(n)
    n.make_key()
    transport_key(n)
    return n


def sign_into(store_of, site, key_of, user, backend, root=None):
    """Signs USER's record for SITE with KEY_OF's node key into the store
    of STORE_OF, as gossip would carry it there."""
    w = mf.Mmnode(ENV, name="%s-into-%s-%s" % (site, store_of.name,
                                              user.split("@")[0]),
                  site=site, root=root or ENV.root_key())
    w.store = store_of.store
    w.node_key, w.node_pub = key_of.node_key, key_of.node_pub
    w.node_name = key_of.name     # records carry their signer's name
    w.write_config()
    r = w.ctl("keys", "certify", "--root", w.root.key, "--pub", w.node_pub,
              "--role", "node", "--site", site, "--name", key_of.name)
    if r.rc != 0 and "stale" not in r.err:   # certified there already
        r.check("keys certify")
    w.ctl("user", "add", user, backend, direct=True).check("user add")


def imap_subject(node, user, source=None):
    m = mf.IMAP4From(node.host, node.port["imap"],
                     source=source or mf.source_addr())
    try:
        m.login(user, pw(user))
        s = mf.imap_subjects(m)[0]
        m.logout()
        return s
    except (mf.imaplib.IMAP4.error, OSError) as e:
        return "error: %s" % e
    finally:
        if m.state != "LOGOUT":
            try:
                m.shutdown()
            except OSError:
                pass


def pop_subject(node, user, source=None):
    p = mf.poplib.POP3(node.host, node.port["pop3"], timeout=mf.IO_TIMEOUT)
    try:
        p.user(user)
        p.pass_(pw(user))
        s = mf.pop_subject(p, 1)[0]
        p.quit()
        return s
    except (mf.poplib.error_proto, OSError) as e:
        return "error: %s" % e


def imap_login_reply(node, user):
    with mf.Conv(node.port["imap"], host=node.host,
                 source=mf.source_addr()) as c:
        c.cmd("a LOGIN %s %s" % (mf.imap_quote(user),
                                 mf.imap_quote(pw(user))))
        _, t = c.tagged("a")
        return t.split(" ", 1)[1]


def pop_pass_reply(node, user):
    with mf.Conv(node.port["pop3"], host=node.host,
                 source=mf.source_addr()) as c:
        c.cmd("USER " + user)
        c.line()
        c.cmd("PASS " + pw(user))
        return c.line()


def starts(subject, user, backend):
    return subject.startswith(mf.hello_subject(user, backend))


class CrossSiteTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.sport_a, cls.sport_b = mf.free_port(), mf.free_port()
        ep_a = "%s:%d" % (HOST_A, cls.sport_a)
        ep_b = "%s:%d" % (HOST_B, cls.sport_b)
        # Site b lists a dead endpoint first: the next one is tried.
        dead = "%s:%d" % (HOST_A, mf.free_port())
        a = cls.a = site_node("sitea", "a", HOST_A, "be1", cls.sport_a,
                              [("b", [ep_b])])
        b = cls.b = site_node("siteb", "b", HOST_B, "be2", cls.sport_b,
                              [("a", [dead, ep_a])])
        a.ctl("user", "add", ALICE, "be1").check()
        b.ctl("user", "add", CAROL, "be2").check()
        sign_into(b, "a", a, ALICE, "be1")
        sign_into(a, "b", b, CAROL, "be2")
        # bob: each store holds a record of the other site.
        sign_into(a, "b", b, BOB, "be2")
        sign_into(b, "a", a, BOB, "be1")
        a.start()
        b.start()

    def test_a_imap_at_b_reaches_site_a(self):
        pos = ENV.dovecots["be1"].log_size()
        s = imap_subject(self.b, ALICE, source=CLIENT)
        self.assertTrue(starts(s, ALICE, "be1"), "%s\n%s\n%s" % (
            s, self.b.log_text()[-3000:], self.a.log_text()[-3000:]))
        ln = ENV.dovecots["be1"].wait_login_line(pos, ALICE, proto="imap")
        self.assertIsNotNone(ln, ENV.dovecots["be1"].log_text()[-2000:])
        # The client's own address reached site a's back end.
        self.assertIn("rip=%s," % CLIENT, ln)
        # One line per cross-site session on both sides.
        ok = mf.wait_for(lambda: "xsite close dir=in site=b" in
                         self.a.log_text() and "xsite close dir=out site=a"
                         in self.b.log_text(), 3)
        self.assertTrue(ok, self.a.log_text()[-2000:] +
                        self.b.log_text()[-2000:])

    def test_b_pop3_at_b_reaches_site_a(self):
        pos = ENV.dovecots["be1"].log_size()
        s = pop_subject(self.b, ALICE, source=CLIENT)
        self.assertTrue(starts(s, ALICE, "be1"), "%s\n%s" % (
            s, self.b.log_text()[-3000:]))
        ln = ENV.dovecots["be1"].wait_login_line(pos, ALICE, proto="pop3")
        self.assertIsNotNone(ln)

    def test_c_other_direction_and_local(self):
        self.assertTrue(starts(imap_subject(self.a, CAROL), CAROL, "be2"))
        self.assertTrue(starts(imap_subject(self.a, ALICE), ALICE, "be1"))
        self.assertTrue(starts(imap_subject(self.b, CAROL), CAROL, "be2"))

    def test_d_wrong_password_at_far_site(self):
        with mf.Conv(self.b.port["imap"], host=self.b.host,
                     source=mf.source_addr()) as c:
            c.cmd("a LOGIN %s %s" % (mf.imap_quote(ALICE),
                                     mf.imap_quote("wrong")))
            _, t = c.tagged("a")
            self.assertIn("NO [AUTHENTICATIONFAILED]", t)
            # The same connection may try again and get in.
            c.cmd("b LOGIN %s %s" % (mf.imap_quote(ALICE),
                                     mf.imap_quote(pw(ALICE))))
            _, t = c.tagged("b")
            self.assertTrue(t.startswith("b OK"), t)

    def test_e_large_fetch_through_channel(self):
        m = mf.IMAP4From(self.b.host, self.b.port["imap"],
                         source=mf.source_addr())
        m.login(ALICE, pw(ALICE))
        m.select("INBOX")
        typ, data = m.search(None, "ALL")
        sizes = []
        for num in data[0].split():
            typ, d = m.fetch(num, "(RFC822)")
            sizes.append(len(d[0][1]))
        m.logout()
        self.assertTrue(max(sizes) >= mf.BIG_SIZE, sizes)

    def test_f_hop_limit_stops_a_loop(self):
        t0 = time.monotonic()
        r = imap_login_reply(self.b, BOB)
        self.assertTrue(r.startswith("NO [UNAVAILABLE]"), r)
        r = pop_pass_reply(self.b, BOB)
        self.assertTrue(r.startswith("-ERR [SYS/TEMP]"), r)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIn("hop-limit", self.a.log_text() + self.b.log_text())

    def test_f2_smtp_at_b_delivers_at_site_a(self):
        # Mail for alice reaches site b; it travels the channel to a node
        # of site a, which delivers it to its own back end.
        d = ENV.dovecots["be1"]
        n = mf.inbox_count(d, ALICE)
        msg = mf.crlf_message("Subject: across sites\n\nHello from b.\n")
        with mf.MailClient(self.b.host, self.b.port["smtp"],
                           source=CLIENT) as c:
            r = c.send("sender@example.net", [ALICE], msg)
            self.assertEqual(r[ALICE][0], 250, "%s\n%s\n%s" % (
                r, self.b.log_text()[-2000:], self.a.log_text()[-2000:]))
            # carol lives at b: another back end, so another transaction.
            self.assertEqual(c.cmd("MAIL FROM:<sender@example.net>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
            code, text = c.cmd("RCPT TO:<%s>" % CAROL)
            self.assertEqual(code, 452, text)
            c.cmd("RSET")
            # bob's record points each site at the other: the hop limit
            # ends the loop with a temporary failure.
            c.cmd("MAIL FROM:<sender@example.net>")
            code, text = c.cmd("RCPT TO:<%s>" % BOB)
            self.assertEqual(code // 100, 4, text)
            c.quit()
        self.assertEqual(mf.inbox_count(d, ALICE), n + 1)
        raw = mf.fetch_all(d, ALICE)[-1]
        self.assertTrue(raw.endswith(msg), raw[-300:])
        # Both nodes put their trace field on; site a's names the client.
        self.assertEqual(raw.count(b"(MailMesh)"), 2, raw[:1500])
        self.assertIn(("([%s])" % CLIENT).encode(), raw)

    def test_g_peer_of_another_root_refused(self):
        # A node whose keys come from another root: its own store trusts
        # it, site b does not, and it does not trust site b either.
        root2 = mf.RootKey(os.path.join(ENV.dir, "root2"))
        r = site_node("rogue", "a", HOST_R, "be1", mf.free_port(),
                      [("b", ["%s:%d" % (HOST_B, self.sport_b)])],
                      root=root2)
        forged = mf.Mmnode(ENV, name="rogue-b", site="b", root=root2)
        forged.store = r.store
        forged.write_config()
        forged.make_key()
        forged.ctl("user", "add", ERIN, "be2", direct=True).check()
        r.start()
        try:
            reply = imap_login_reply(r, ERIN)
            self.assertTrue(reply.startswith("NO [UNAVAILABLE]"), reply)
            self.assertIn("not signed by the root", r.log_text())
        finally:
            r.stop()

    def test_h_revoked_transport_key_refused_by_listener(self):
        # A node of site a with a transport key b no longer trusts: b's
        # session listener refuses it in the handshake.
        r = site_node("revoked", "a", HOST_R, "be1", mf.free_port(),
                      [("b", ["%s:%d" % (HOST_B, self.sport_b)])])
        sign_into(r, "b", self.b, ERIN, "be2")
        self.b.ctl("keys", "revoke", "--root", ENV.root_key().key, "--pub",
                   os.path.join(r.dir, "transport.key.pub")).check()
        r.start()
        try:
            pos = self.b.log_size()
            reply = imap_login_reply(r, ERIN)
            self.assertTrue(reply.startswith("NO [UNAVAILABLE]"), reply)
            ok = mf.wait_for(lambda: "xsite refuse" in
                             self.b.log_since(pos), 3)
            self.assertTrue(ok, self.b.log_since(pos))
            self.assertIn('key revoked"', self.b.log_since(pos))
        finally:
            r.stop()

    def test_y_site_hung_tempfail_then_back(self):
        # Site a's node hangs (stopped: the kernel still completes the TCP
        # handshake, nothing answers on the channel). b must give a
        # temporary error within its back-end timeout, hold no session,
        # and carry sessions again once a runs.
        os.killpg(self.a.proc.pid, 19)          # SIGSTOP, whole tree
        try:
            t0 = time.monotonic()
            r = imap_login_reply(self.b, ALICE)
            took = time.monotonic() - t0
            self.assertTrue(r.startswith("NO [UNAVAILABLE]"), r)
            self.assertLess(took, 5 + 3)        # timeout backend 5s
            r = pop_pass_reply(self.b, ALICE)
            self.assertTrue(r.startswith("-ERR [SYS/TEMP]"), r)
            # Users of b itself are not held up by a's trouble.
            self.assertTrue(starts(imap_subject(self.b, CAROL), CAROL,
                                   "be2"))
        finally:
            os.killpg(self.a.proc.pid, 18)      # SIGCONT
        ok = mf.wait_for(lambda: starts(imap_subject(self.b, ALICE), ALICE,
                                        "be1"), 10, step=0.5)
        self.assertTrue(ok, self.b.log_text()[-2000:])

    def test_z_site_unreachable_tempfail(self):
        self.a.stop()
        t0 = time.monotonic()
        r = imap_login_reply(self.b, ALICE)
        self.assertTrue(r.startswith("NO [UNAVAILABLE]"), r)
        r = pop_pass_reply(self.b, ALICE)
        self.assertTrue(r.startswith("-ERR [SYS/TEMP]"), r)
        self.assertLess(time.monotonic() - t0, 3 * 2)
        self.assertIn("xsite-unreachable", self.b.log_text())


if __name__ == "__main__":
    mf.main()
