"""mmnode behind a load balancer: real HAProxy in front of listeners with
proxy-protocol=, sending PROXY protocol v1 or v2 headers.

The client's own address (not the balancer's) must reach the back end
(IMAP ID, POP3 XCLIENT, the SMTP Received field), the logs, and the
per-address connection limit. A TLS handshake right behind the header
must work. Connections from outside the listed networks, without a
header, or with a bad one are closed before any greeting; a LOCAL header
(a balancer's health check) keeps the balancer's address."""

import os
import socket
import struct
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = NODE = LB = None
ALICE = "alice@a.test"      # be1
CAROL = "carol@b.test"      # be2
SENDER = "sender@example.net"
BALANCER = "127.0.0.1/32"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
NODE_MAX = 8                # limit connections


def pw(u):
    return mf.USERS[u]


def setUpModule():
    global ENV, NODE, LB
    ENV = mf.env()
    pp = {"proxy_protocol": BALANCER}
    NODE = ENV.mmnode(name="balanced", listeners=[
        ("imap", "imap", dict(pp, tls=True)),
        ("imaps", "imaps", dict(pp, tls=True)),
        ("pop3", "pop3", dict(pp)),
        ("smtp", "smtp", dict(pp)),
        ("imap_direct", "imap", {}),
        ("metrics", "metrics", {}),
    ], backends=[
        ENV.backend_line("be1", lmtp=ENV.dovecots["be1"].lmtp),
        ENV.backend_line("be2", lmtp=ENV.dovecots["be2"].lmtp),
    ], limits={"connections-per-ip": 2, "auth-failures-per-ip": 1000,
               "connections": NODE_MAX},
        timeouts={"idle-before-login": "2s"})
    LB = ENV.haproxy({
        "imap": (NODE.port["imap"], "v2"),
        "imaps": (NODE.port["imaps"], "v2"),
        "pop3": (NODE.port["pop3"], "v1"),
        "smtp": (NODE.port["smtp"], "v2"),
        "imap_v1": (NODE.port["imap"], "v1"),
    })
    for d in ENV.dovecots.values():
        d.sync_mailboxes()


def tearDownModule():
    mf.shutdown()


def wait_node_log(pattern, pos, timeout=5.0):
    found = []

    def seen():
        found[:] = [ln for ln in NODE.log_text()[pos:].splitlines()
                    if pattern in ln]
        return bool(found)
    mf.wait_for(seen, timeout, step=0.05)
    return found


def sessions_active():
    with urllib.request.urlopen("http://%s:%d/metrics" % (
            mf.HOST, NODE.port["metrics"]), timeout=10) as r:
        text = r.read().decode()
    return sum(float(ln.split()[-1]) for ln in text.splitlines()
               if ln.startswith("mailmesh_sessions_active"))


def assert_closed_silently(test, conv):
    """The node closes without a greeting or any other byte."""
    conv.sock.settimeout(5)
    try:
        data = conv.sock.recv(1024)
    except ConnectionResetError:
        data = b""
    test.assertEqual(data, b"")


class ClientAddressTest(unittest.TestCase):
    def check_login(self, be, proto, src, login):
        d = ENV.dovecots[be]
        pos, npos = d.log_size(), len(NODE.log_text())
        login(src)
        ln = d.wait_login_line(pos, login.user, proto=proto)
        self.assertIsNotNone(ln, d.log_since(pos))
        self.assertIn("rip=%s," % src, ln)
        hdr = wait_node_log("proxy header", npos)
        self.assertTrue(hdr, NODE.log_text()[npos:])
        self.assertIn("client=%s:" % src, hdr[0])
        self.assertIn("balancer=127.0.0.1:", hdr[0])

    def test_imap_v2(self):
        def login(src):
            m = mf.IMAP4From(mf.HOST, LB.port["imap"], source=src)
            m.login(ALICE, pw(ALICE))
            self.assertTrue(mf.imap_subjects(m)[0].startswith(
                mf.hello_subject(ALICE, "be1")))
            m.logout()
        login.user = ALICE
        self.check_login("be1", "imap", mf.source_addr(), login)

    def test_imap_v1(self):
        def login(src):
            m = mf.IMAP4From(mf.HOST, LB.port["imap_v1"], source=src)
            m.login(ALICE, pw(ALICE))
            m.logout()
        login.user = ALICE
        self.check_login("be1", "imap", mf.source_addr(), login)

    def test_pop3_v1(self):
        def login(src):
            with mf.Conv(LB.port["pop3"], source=src) as c:
                self.assertTrue(c.greeting.startswith("+OK"), c.greeting)
                c.cmd("USER " + CAROL)
                c.expect("+OK")
                c.cmd("PASS " + pw(CAROL))
                c.expect("+OK")
                c.cmd("QUIT")
                c.expect("+OK")
        login.user = CAROL
        self.check_login("be2", "pop3", mf.source_addr(), login)

    def test_imaps_handshake_behind_header(self):
        # The ClientHello follows the header at once: the node must take
        # the header's bytes and leave the handshake's to TLS.
        def login(src):
            ctx = ENV.tls.client_ctx()
            with mf.Conv(LB.port["imaps"], source=src, tls=ctx) as c:
                self.assertTrue(c.greeting.startswith("* OK"), c.greeting)
                c.cmd('a LOGIN %s "%s"' % (ALICE, pw(ALICE)))
                self.assertTrue(c.tagged("a")[1].startswith("a OK"))
                c.cmd("b LOGOUT")
                self.assertTrue(c.tagged("b")[1].startswith("b OK"))
        login.user = ALICE
        self.check_login("be1", "imap", mf.source_addr(), login)

    def test_smtp_received_names_the_client(self):
        src = mf.source_addr()
        n = mf.inbox_count(ENV.dovecots["be1"], ALICE)
        subj = "balanced %f" % time.time()
        data = mf.crlf_message("From: <%s>\nSubject: %s\n\nHi.\n" % (
            SENDER, subj))
        r = mf.smtp_send(mf.HOST, LB.port["smtp"], SENDER, [ALICE], data,
                         source=src)
        self.assertEqual(r[ALICE][0], 250, r)
        self.assertEqual(mf.inbox_count(ENV.dovecots["be1"], ALICE), n + 1)
        raw = mf.fetch_all(ENV.dovecots["be1"], ALICE)[-1]
        self.assertIn(subj.encode(), raw)
        rest = mf.strip_delivery_headers(raw)
        fields, _ = mf.split_header_fields(rest)
        self.assertTrue(fields[0].startswith(b"Received: from "), fields)
        self.assertIn(("[%s]" % src).encode(), fields[0])
        self.assertNotIn(b"[127.0.0.1]", fields[0])

    def test_connection_limit_counts_the_client(self):
        # connections-per-ip 2: the third from one client is refused even
        # though every connection comes from the same balancer.
        src = mf.source_addr()
        first = [mf.Conv(LB.port["imap"], source=src) for _ in range(2)]
        try:
            for c in first:
                self.assertTrue(c.greeting.startswith("* OK"), c.greeting)
            with mf.Conv(LB.port["imap"], source=src) as third:
                self.assertTrue(third.greeting.startswith("* BYE"),
                                third.greeting)
            with mf.Conv(LB.port["imap"], source=mf.source_addr()) as other:
                self.assertTrue(other.greeting.startswith("* OK"),
                                other.greeting)
        finally:
            for c in first:
                c.close()


class RefusedTest(unittest.TestCase):
    def test_not_from_a_balancer(self):
        pos = len(NODE.log_text())
        src = mf.source_addr()      # not in 127.0.0.1/32
        with mf.Conv(NODE.port["imap"], source=src, greeting=False) as c:
            assert_closed_silently(self, c)
        ln = wait_node_log("reason=not-a-balancer", pos)
        self.assertTrue(ln, NODE.log_text()[pos:])
        self.assertIn("client=%s:" % src, ln[0])

    def test_no_header(self):
        pos = len(NODE.log_text())
        with mf.Conv(NODE.port["imap"], source="127.0.0.1",
                     greeting=False) as c:
            c.cmd('a LOGIN %s "%s"' % (ALICE, pw(ALICE)))
            assert_closed_silently(self, c)
        ln = wait_node_log("reason=proxy-header", pos)
        self.assertTrue(ln, NODE.log_text()[pos:])
        self.assertIn('error="not a PROXY header"', ln[0])
        # Never a password in the log.
        self.assertNotIn(pw(ALICE), NODE.log_text())

    def test_bad_headers(self):
        bad = [
            b"PROXY TCP4 127.0.0.9 127.0.0.1 1234\r\n",         # no dport
            b"PROXY TCP4 ::1 127.0.0.1 1234 143\r\n",          # v6 in TCP4
            b"PROXY TCP4 127.0.0.9 127.0.0.1 1234 143\n",      # bare LF
            b"PROXY " + b"x" * 120 + b"\r\n",                    # too long
            V2_SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12,       # version 3
            V2_SIG + b"\x21\x12\x00\x0c" + b"\x00" * 12,       # UDP
            V2_SIG + b"\x21\x11\x08\x00",                      # 2 KiB long
        ]
        for hdr in bad:
            with self.subTest(hdr=hdr[:40]):
                pos = len(NODE.log_text())
                with mf.Conv(NODE.port["imap"], source="127.0.0.1",
                             greeting=False) as c:
                    c.send(hdr)
                    assert_closed_silently(self, c)
                ln = wait_node_log("reason=proxy-header", pos)
                self.assertTrue(ln, NODE.log_text()[pos:])

    def test_partial_header_times_out(self):
        pos = len(NODE.log_text())
        t0 = time.monotonic()
        with mf.Conv(NODE.port["imap"], source="127.0.0.1",
                     greeting=False) as c:
            c.send(b"PROXY TCP4 127.0.0.9 ")
            assert_closed_silently(self, c)
        self.assertLess(time.monotonic() - t0, 4.5)
        ln = wait_node_log("reason=proxy-header", pos)
        self.assertTrue(ln, NODE.log_text()[pos:])
        self.assertIn("no header in time", ln[0])

    def test_listener_without_option_unchanged(self):
        with mf.Conv(NODE.port["imap_direct"],
                     source=mf.source_addr()) as c:
            self.assertTrue(c.greeting.startswith("* OK"), c.greeting)


class PendingHeaderTest(unittest.TestCase):
    def test_waiting_for_headers_counts_against_the_node(self):
        # Connections still owing their header hold the node's slots too:
        # a balancer cannot open more than the node allows. (Sessions of
        # earlier tests hold theirs until their clients have closed.)
        self.assertTrue(mf.wait_for(lambda: sessions_active() == 0, 10))
        pending = [mf.Conv(NODE.port["imap"], source="127.0.0.1",
                           greeting=False) for _ in range(NODE_MAX)]
        try:
            time.sleep(0.3)
            with mf.Conv(LB.port["imap"], source=mf.source_addr(),
                         greeting=False) as c:
                assert_closed_silently(self, c)
        finally:
            for c in pending:
                c.close()

        def fresh():
            try:
                with mf.Conv(LB.port["imap"],
                             source=mf.source_addr()) as c:
                    return c.greeting.startswith("* OK")
            except (mf.Closed, OSError):
                return False
        self.assertTrue(mf.wait_for(fresh, 5, step=0.2))


class HealthCheckTest(unittest.TestCase):
    def test_v2_local_keeps_the_balancer_address(self):
        pos = len(NODE.log_text())
        with mf.Conv(NODE.port["imap"], source="127.0.0.1",
                     greeting=False) as c:
            c.send(V2_SIG + b"\x20\x00\x00\x00")
            self.assertTrue(c.line().startswith("* OK"))
            c.cmd("a LOGOUT")
            self.assertTrue(c.tagged("a")[1].startswith("a OK"))
        ln = wait_node_log("proxy header version=2 local", pos)
        self.assertTrue(ln, NODE.log_text()[pos:])
        self.assertIn("balancer=127.0.0.1:", ln[0])

    def test_v1_unknown(self):
        with mf.Conv(NODE.port["pop3"], source="127.0.0.1",
                     greeting=False) as c:
            c.send(b"PROXY UNKNOWN\r\n")
            self.assertTrue(c.line().startswith("+OK"))

    def test_v2_header_and_command_in_one_write(self):
        # A header with a TLV and the first command in the same segment:
        # the command must survive the header's read.
        src = socket.inet_aton("127.0.0.77")
        dst = socket.inet_aton("127.0.0.1")
        tlv = b"\x04\x00\x03abc"        # type 4 (NOOP), 3 bytes
        addr = src + dst + struct.pack("!HH", 40000, NODE.port["imap"])
        body = addr + tlv
        hdr = V2_SIG + b"\x21\x11" + struct.pack("!H", len(body)) + body
        with mf.Conv(NODE.port["imap"], source="127.0.0.1",
                     greeting=False) as c:
            c.send(hdr + b"a CAPABILITY\r\n")
            self.assertTrue(c.line().startswith("* OK"))
            untagged, done = c.tagged("a")
            self.assertTrue(done.startswith("a OK"), done)
            self.assertTrue(untagged[0].startswith("* CAPABILITY"))
        self.assertTrue(wait_node_log("client=127.0.0.77:40000", 0))


if __name__ == "__main__":
    unittest.main()
