"""SMTP through mmnode to real Dovecot LMTP back ends: smtplib, swaks and raw
sessions. Every message is checked over IMAP: it arrives once, byte for
byte (below the trace fields Dovecot and mmnode put on top), in the right
mailbox; refused messages never arrive, not even in part."""

import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = NODE = None
ALICE = "alice@a.test"      # be1 (popmap)
BOB = "bob@a.test"          # be2
DAVE = "dave@be1.test"      # be1
ERIN = "erin@be2.test"      # be2
SENDER = "sender@example.net"
SMTP_LISTENERS = [("smtp", "smtp", {"tls": True}),
                  ("smtps", "smtps", {"tls": True})]


def lmtp_backend(name, **kw):
    return ENV.backend_line(name, lmtp=ENV.dovecots[name].lmtp, **kw)


def setUpModule():
    global ENV, NODE
    ENV = mf.env()
    NODE = ENV.mmnode(name="smtpnode", listeners=SMTP_LISTENERS,
                      backends=[lmtp_backend("be1"), lmtp_backend("be2")],
                      limits={"message-size": "256k", "recipients": "5"})
    # Seeded messages get their UIDs before anything is delivered, so the
    # newest message is always the last one.
    for d in ENV.dovecots.values():
        d.sync_mailboxes()


def tearDownModule():
    mf.shutdown()


def be(user):
    return ENV.dovecots[mf.EXPECT_BACKEND[user]]


def count(user):
    return mf.inbox_count(be(user), user)


def strip_trace(raw):
    """RAW without Dovecot's delivery fields and mmnode's Received field
    (which must be there, first of the message's own)."""
    rest = mf.strip_delivery_headers(raw)
    fields, _ = mf.split_header_fields(rest)
    assert fields and fields[0].startswith(b"Received: from ") and \
        b"(MailMesh)" in fields[0], rest[:400]
    return rest[len(fields[0]):]


def message(subject, body="Hello.\n"):
    return mf.crlf_message("From: Sender <%s>\nTo: someone\nSubject: %s\n"
                           "Message-ID: <%s@mailmesh.test>\n\n%s" % (
                               SENDER, subject, subject.replace(" ", "."),
                               body))


def newest(user):
    return mf.fetch_all(be(user), user)[-1]


def client(**kw):
    return mf.MailClient(mf.HOST, NODE.port["smtp"], **kw)


class DeliveryTest(unittest.TestCase):

    def test_smtplib_byte_for_byte(self):
        body = ("Line one.\n.leading dot\n..two dots\n" + "x" * 990 +
                "\n\tTabbed \u00e9t\u00e9 8-bit\n\n.\nend\n")
        data = message("byte for byte", body)
        n = count(ALICE)
        with smtplib.SMTP(mf.HOST, NODE.port["smtp"],
                             timeout=mf.IO_TIMEOUT) as s:
            s.ehlo("client.example")
            self.assertTrue(s.has_extn("pipelining"))
            self.assertTrue(s.has_extn("8bitmime"))
            self.assertEqual(s.esmtp_features["size"], str(256 * 1024))
            refused = s.sendmail(SENDER, [ALICE], data,
                                 mail_options=["BODY=8BITMIME"])
            self.assertEqual(refused, {})
        self.assertEqual(count(ALICE), n + 1)
        raw = newest(ALICE)
        self.assertEqual(strip_trace(raw), data)
        hdr = mf.delivery_headers(raw)
        self.assertEqual(hdr["return-path"], "<%s>" % SENDER)
        self.assertEqual(hdr["delivered-to"], ALICE)

    def test_each_user_reaches_its_backend(self):
        for user in (ALICE, BOB, DAVE, ERIN):
            with self.subTest(user=user):
                other = ENV.dovecots["be2" if be(user).name == "be1"
                                     else "be1"]
                n, n_other = count(user), mf.inbox_count(other, user)
                subj = "routing %s %f" % (user, time.time())
                r = mf.smtp_send(mf.HOST, NODE.port["smtp"], SENDER, [user],
                                 message(subj))
                self.assertEqual(r[user][0], 250, r)
                self.assertEqual(count(user), n + 1)
                self.assertEqual(mf.inbox_count(other, user), n_other)
                self.assertIn(subj.encode(), newest(user))

    def test_swaks(self):
        n = count(DAVE)
        p = subprocess.run(
            ["swaks", "--server", "%s:%d" % (mf.HOST, NODE.port["smtp"]),
             "--to", DAVE, "--from", SENDER, "--header",
             "Subject: swaks says hi", "--body", "From swaks.",
             "--timeout", "20"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(count(DAVE), n + 1)
        self.assertIn(b"Subject: swaks says hi", newest(DAVE))

    def test_starttls_verified(self):
        ctx = ssl.create_default_context(cafile=ENV.tls.ca)
        n = count(ERIN)
        with smtplib.SMTP(mf.HOST, NODE.port["smtp"],
                             timeout=mf.IO_TIMEOUT) as s:
            s.ehlo()
            self.assertTrue(s.has_extn("starttls"))
            s.starttls(context=ctx)
            s.ehlo()
            self.assertFalse(s.has_extn("starttls"))
            s.sendmail(SENDER, [ERIN], message("over starttls"))
        self.assertEqual(count(ERIN), n + 1)
        self.assertIn(b"with ESMTPS id", newest(ERIN))

    def test_smtps(self):
        ctx = ssl.create_default_context(cafile=ENV.tls.ca)
        n = count(BOB)
        with smtplib.SMTP_SSL(mf.HOST, NODE.port["smtps"], context=ctx,
                                 timeout=mf.IO_TIMEOUT) as s:
            s.sendmail(SENDER, [BOB], message("over smtps"))
        self.assertEqual(count(BOB), n + 1)

    def test_two_recipients_one_backend(self):
        na, nd = count(ALICE), count(DAVE)
        with client() as c:
            r = c.send(SENDER, [ALICE, DAVE], message("two on be1"))
            c.quit()
        self.assertEqual(r[ALICE][0], 250, r)
        self.assertIn("delivered to 2 recipients", r[ALICE][1])
        self.assertEqual((count(ALICE), count(DAVE)), (na + 1, nd + 1))

    def test_452_splits_backends(self):
        na, nb, nd = count(ALICE), count(BOB), count(DAVE)
        with client() as c:
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % SENDER)[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
            code, text = c.cmd("RCPT TO:<%s>" % BOB)
            self.assertEqual(code, 452, text)
            self.assertTrue(text.startswith("4.5.3"), text)
            self.assertEqual(c.cmd("RCPT TO:<%s>" % DAVE)[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.sock.sendall(message("split one") + b".\r\n")
            self.assertEqual(c.reply()[0], 250)
            # The sender retries the refused one in a new transaction.
            r = c.send(SENDER, [BOB], message("split two"))
            self.assertEqual(r[BOB][0], 250, r)
            c.quit()
        self.assertEqual((count(ALICE), count(BOB), count(DAVE)),
                         (na + 1, nb + 1, nd + 1))
        self.assertIn(b"split two", newest(BOB))

    def test_many_messages_one_connection(self):
        n = count(ERIN)
        with client() as c:
            for i in range(5):
                r = c.send(SENDER, [ERIN], message("series %d" % i))
                self.assertEqual(r[ERIN][0], 250, r)
            c.quit()
        self.assertEqual(count(ERIN), n + 5)

    def test_pipelined_transaction(self):
        n = count(DAVE)
        with client() as c:
            c.sock.sendall(("MAIL FROM:<%s>\r\nRCPT TO:<nobody@a.test>\r\n"
                            "RCPT TO:<%s>\r\nDATA\r\n" % (SENDER, DAVE))
                           .encode())
            codes = [c.reply()[0] for _ in range(4)]
            self.assertEqual(codes, [250, 550, 250, 354])
            c.sock.sendall(message("pipelined") + b".\r\nNOOP\r\n")
            self.assertEqual(c.reply()[0], 250)
            self.assertEqual(c.reply()[0], 250)
            c.quit()
        self.assertEqual(count(DAVE), n + 1)

    def test_client_address_by_proxy_header(self):
        # client-addr=proxy: a PROXY v2 header on Dovecot's haproxy port.
        d = ENV.dovecots["be1"]
        node = ENV.mmnode(
            name="smtpproxy2", listeners=[("smtp", "smtp", {})],
            backends=["be1 %s imap=%d lmtp=%d client-addr=proxy" % (
                mf.HOST, d.imap, d.lmtp_proxy), lmtp_backend("be2")])
        self.addCleanup(node.stop)
        src = "127.0.0.8"
        with mf.MailClient(mf.HOST, node.port["smtp"], source=src) as c:
            r = c.send(SENDER, [ALICE], message("proxy header"))
            self.assertEqual(r[ALICE][0], 250, r)
            c.quit()
        hdr = mf.delivery_headers(newest(ALICE))
        self.assertIn("[%s]" % src, hdr["received"])

    def test_reused_backend_connection(self):
        # An idle back-end connection is kept for the next session, and
        # the back end learns each session's client anew (XCLIENT).
        d = be(ALICE)
        pos = d.log_size()
        for src in ("127.0.0.11", "127.0.0.12", "127.0.0.13"):
            with client(source=src) as c:
                r = c.send(SENDER, [ALICE], message("reuse " + src))
                self.assertEqual(r[ALICE][0], 250, r)
                c.quit()
            hdr = mf.delivery_headers(newest(ALICE))
            self.assertIn("[%s]" % src, hdr["received"])
        # Three sessions, at most one new LMTP connection per worker (of
        # two), and the back end saw a second transaction on one.
        log = d.log_since(pos)
        connects = [ln for ln in log.splitlines()
                    if "lmtp(" in ln and "Connect from" in ln]
        self.assertLessEqual(len(connects), 2, log[-3000:])
        self.assertRegex(log, r"lmtp\(alice@a\.test\)<\d+><[^>]*:T\d+>", log)

    def test_lmtp_starttls_verified(self):
        # STARTTLS to the back end, its certificate checked: the right
        # name delivers, a wrong one is a back end not reachable.
        d = ENV.dovecots["be1"]
        ca = ENV.tls.ca
        node = ENV.mmnode(
            name="smtpbetls", listeners=[("smtp", "smtp", {})],
            backends=["be1 %s imap=%d lmtp=%d tls=starttls ca=%s "
                      "tls-name=localhost client-addr=id" % (
                          mf.HOST, d.imap, d.lmtp, ca),
                      "be2 %s imap=%d lmtp=%d tls=starttls ca=%s "
                      "tls-name=wrong.test" % (
                          mf.HOST, d.imap, d.lmtp, ca)])
        self.addCleanup(node.stop)
        n = count(ALICE)
        with mf.MailClient(mf.HOST, node.port["smtp"]) as c:
            r = c.send(SENDER, [ALICE], message("lmtp over tls"))
            self.assertEqual(r[ALICE][0], 250, r)
            c.cmd("MAIL FROM:<%s>" % SENDER)
            code, text = c.cmd("RCPT TO:<%s>" % BOB)
            self.assertEqual(code, 451, text)
            c.quit()
        self.assertEqual(count(ALICE), n + 1)
        self.assertIn("backend-tls-error", node.log_text())

    def test_client_address_reaches_backend(self):
        # client-addr=id: XCLIENT; Dovecot's trace field names the client.
        src = "127.0.0.9"
        with client(source=src) as c:
            r = c.send(SENDER, [ALICE], message("xclient"))
            self.assertEqual(r[ALICE][0], 250, r)
            c.quit()
        hdr = mf.delivery_headers(newest(ALICE))
        self.assertIn("[%s]" % src, hdr["received"])


class RefusalTest(unittest.TestCase):

    def test_unknown_user(self):
        with client() as c:
            c.cmd("MAIL FROM:<%s>" % SENDER)
            code, text = c.cmd("RCPT TO:<nobody@a.test>")
            self.assertEqual(code, 550)
            self.assertTrue(text.startswith("5.1.1"), text)
            code, text = c.cmd("DATA")
            self.assertEqual(code, 554, text)

    def test_command_errors(self):
        with client(helo=None) as c:
            self.assertEqual(c.cmd("MAIL FROM:<%s>" % SENDER)[0], 503)
            self.assertEqual(c.cmd("EHLO x")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<%s>" % ALICE)[0], 503)
            self.assertEqual(c.cmd("DATA")[0], 503)
            self.assertEqual(c.cmd("MAIL FROM:<bad address>")[0], 501)
            self.assertEqual(c.cmd("MAIL FROM:<%s> AUTH=<>" % SENDER)[0],
                             555)
            self.assertEqual(c.cmd("FROB")[0], 500)
            self.assertEqual(c.cmd("BDAT 10 LAST")[0], 502)
            self.assertEqual(c.cmd("VRFY alice")[0], 252)
            self.assertEqual(c.cmd("MAIL FROM:<>")[0], 250)
            self.assertEqual(c.cmd("MAIL FROM:<>")[0], 503)
            self.assertEqual(c.cmd("RSET")[0], 250)
            self.assertEqual(c.cmd("NOOP")[0], 250)
            code, text = c.cmd("QUIT")
            self.assertEqual(code, 221)

    def test_announced_size_too_big(self):
        with client() as c:
            code, text = c.cmd("MAIL FROM:<%s> SIZE=%d" % (SENDER,
                                                           300 * 1024))
            self.assertEqual(code, 552, text)
            self.assertTrue(text.startswith("5.3.4"), text)

    def refused_data(self, data, want_code, user=DAVE):
        """Sends DATA bytes (already CRLF, dot-stuffed and terminated)
        and expects WANT_CODE; the message must not arrive, and the
        session must still deliver the next one."""
        n = count(user)
        with client() as c:
            c.cmd("MAIL FROM:<%s>" % SENDER)
            self.assertEqual(c.cmd("RCPT TO:<%s>" % user)[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.sock.sendall(data)
            code, text = c.reply()
            self.assertEqual(code, want_code, text)
            r = c.send(SENDER, [user], message("after refusal"))
            self.assertEqual(r[user][0], 250, r)
            c.quit()
        self.assertEqual(count(user), n + 1)
        self.assertIn(b"after refusal", newest(user))

    def test_message_too_big_while_streaming(self):
        line = b"y" * 998 + b"\r\n"
        self.refused_data(message("too big") + line * 300 + b".\r\n", 552)

    def test_bare_lf_smuggling_refused(self):
        # A "." line ended by bare LFs is not the end here; a back end
        # that read it as one would take the rest as a second message.
        data = (message("smuggle") + b"x\n.\nMAIL FROM:<evil@example.net>\n"
                b"RCPT TO:<%s>\nDATA\nforged\n.\n" % ALICE.encode() +
                b"\r\n.\r\n")
        na = count(ALICE)
        self.refused_data(data, 554)
        self.assertEqual(count(ALICE), na)

    def test_nul_refused(self):
        self.refused_data(message("nul") + b"bad \x00 byte\r\n.\r\n", 554)

    def test_too_many_recipients(self):
        with client() as c:
            c.cmd("MAIL FROM:<%s>" % SENDER)
            for _ in range(5):
                self.assertEqual(c.cmd("RCPT TO:<%s>" % DAVE)[0], 250)
            code, text = c.cmd("RCPT TO:<%s>" % DAVE)
            self.assertEqual(code, 452, text)
            c.cmd("RSET")

    def test_line_too_long(self):
        with client() as c:
            c.sock.sendall(b"NOOP " + b"z" * 20000 + b"\r\n")
            code, text = c.reply()
            self.assertEqual(code, 500, text)
            self.assertEqual(c.cmd("NOOP")[0], 250)

    def test_unterminated_data_is_not_delivered(self):
        n = count(DAVE)
        c = client()
        c.cmd("MAIL FROM:<%s>" % SENDER)
        c.cmd("RCPT TO:<%s>" % DAVE)
        self.assertEqual(c.cmd("DATA")[0], 354)
        c.sock.sendall(message("never finished") + b"half a line")
        time.sleep(0.3)
        c.close()
        time.sleep(0.5)
        self.assertEqual(count(DAVE), n)
        ok = mf.wait_for(lambda: "result=client-closed" in NODE.log_text(), 3)
        self.assertTrue(ok)

    def test_pipelining_flood_costs_only_that_client(self):
        # Thousands of bad commands without reading a reply: that client
        # is cut off at the error limit, others are served meanwhile.
        s = socket.create_connection((mf.HOST, NODE.port["smtp"]))
        s.setblocking(False)
        sent = 0
        try:
            for _ in range(2000):
                try:
                    sent += s.send(b"XYZZY\r\n" * 100)
                except (BlockingIOError, ConnectionError):
                    break
            r = mf.smtp_send(mf.HOST, NODE.port["smtp"], SENDER, [DAVE],
                             message("while flooded"))
            self.assertEqual(r[DAVE][0], 250, r)
            s.setblocking(True)
            s.settimeout(mf.IO_TIMEOUT)
            got = b""
            try:
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    got += b
            except ConnectionError:
                pass
            self.assertIn(b"421 4.7.0", got)
            self.assertIn(b"Too many errors", got)
            # 20 errors allowed (the default), the 21st ends it.
            self.assertEqual(got.count(b"500 5.5.2"), 21, got[-300:])
        finally:
            s.close()
        self.assertGreater(sent, 0)
        self.assertIn("result=error-limit", NODE.log_text())

    def test_deferred_recipients_keep_the_transaction(self):
        # Recipients past the limit get 452 and are not errors: a client
        # that pipelined many more still sends its message to the ones
        # accepted. Each recipient reaches the node alone here, on its
        # own transaction's back end, so the node with recipients 5 is
        # used: 5 accepted, 40 deferred, then DATA.
        before = count(DAVE)
        with client() as c:
            code, text = c.cmd("MAIL FROM:<%s>" % SENDER)
            self.assertEqual(code, 250, text)
            codes = [c.cmd("RCPT TO:<%s>" % DAVE)[0] for _ in range(45)]
            self.assertEqual(codes[:5], [250] * 5)
            self.assertEqual(set(codes[5:]), {452}, codes)
            code, text = c.cmd("DATA")
            self.assertEqual(code, 354, text)
            c.sock.sendall(message("deferred ok") + b".\r\n")
            code, text = c.reply()
            self.assertEqual(code, 250, text)
            code, text = c.cmd("QUIT")
            self.assertEqual(code, 221, text)
        mf.wait_inbox_count(be(DAVE), DAVE, before + 5)


class LimitsTest(unittest.TestCase):
    """A node of its own with tight limits."""

    @classmethod
    def setUpClass(cls):
        cls.node = ENV.mmnode(
            name="smtplimits", listeners=[("smtp", "smtp", {})],
            backends=[lmtp_backend("be1"), lmtp_backend("be2")],
            limits={"smtp-errors": "5", "recipients": "1",
                    "connections-per-ip": "2"},
            timeouts={"smtp-idle": "1s"})

    def c(self):
        # The slots of the last test's connections free up as the node
        # sees them close.
        deadline = time.monotonic() + 3
        while True:
            try:
                return mf.MailClient(mf.HOST, self.node.port["smtp"])
            except mf.MailReplyError as e:
                if e.code != 421 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def test_only_failed_commands_count(self):
        # Any number of good commands; the sixth failed one (smtp-errors
        # 5 here) ends the session, with "too many errors".
        with self.c() as c:
            codes = [c.cmd("NOOP")[0] for _ in range(60)]
            self.assertEqual(set(codes), {250})
            for _ in range(5):
                code, text = c.cmd("BOGUS")
                self.assertEqual(code, 500, text)
            code, text = c.cmd("BOGUS")
            self.assertEqual(code, 500, text)
            code, text = c.reply()
            self.assertEqual(code, 421, text)
            self.assertIn("Too many errors", text)
            self.assertNotIn("before login", text)

    def test_idle_timeout(self):
        with self.c() as c:
            t0 = time.monotonic()
            code, text = c.reply()
            self.assertEqual(code, 421, text)
            self.assertLess(time.monotonic() - t0, 5)

    def test_connections_per_ip(self):
        a, b = self.c(), self.c()
        try:
            s = socket.create_connection((mf.HOST, self.node.port["smtp"]),
                                         timeout=mf.IO_TIMEOUT)
            line = s.makefile("rb").readline()
            s.close()
            self.assertTrue(line.startswith(b"421 4.7.0"), line)
        finally:
            a.close()
            b.close()


def lmtp_children(dovecot):
    """PIDs of the lmtp processes of one Dovecot instance."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read()
            with open("/proc/%s/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        # "dovecot-INSTANCE/lmtp"
        if cmd.split(b"\0")[0].endswith(b"/lmtp") and \
                ppid == dovecot.proc.pid:
            out.append(int(pid))
    return out


class BackendFailureTest(unittest.TestCase):

    def test_backend_unreachable(self):
        dead = mf.free_port()
        node = ENV.mmnode(
            name="smtpdead", listeners=[("smtp", "smtp", {})],
            backends=["be1 %s imap=1 lmtp=%d" % (mf.HOST, dead),
                      lmtp_backend("be2")])
        try:
            with mf.MailClient(mf.HOST, node.port["smtp"]) as c:
                c.cmd("MAIL FROM:<%s>" % SENDER)
                code, text = c.cmd("RCPT TO:<%s>" % ALICE)
                self.assertEqual(code, 451, text)
                self.assertTrue(text.startswith("4.4.1"), text)
                # The transaction goes on for a back end that is up.
                self.assertEqual(c.cmd("RCPT TO:<%s>" % BOB)[0], 250)
                c.cmd("QUIT")
        finally:
            node.stop()

    def fake_node(self, mode, **kw):
        fake = ENV.fake(mode)
        node = ENV.mmnode(
            name="smtpfake-" + mode, listeners=[("smtp", "smtp", {})],
            backends=["be1 %s imap=1 lmtp=%d" % (mf.HOST, fake.port),
                      lmtp_backend("be2")], **kw)
        self.addCleanup(node.stop)
        return node

    def test_backend_refuses_data(self):
        # The client hears 354 at once; the back end's refusal is its
        # answer once the message is in, and no byte of the message ever
        # reached the back end as a command.
        node = self.fake_node("lmtp-refuse-data")
        with mf.MailClient(mf.HOST, node.port["smtp"]) as c:
            c.cmd("MAIL FROM:<%s>" % SENDER)
            self.assertEqual(c.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.sock.sendall(message("refused") + b"RCPT TO:<x@y>\r\n.\r\n")
            code, text = c.reply()
            self.assertEqual(code, 554, text)
            self.assertIn("fake refuses data", text)
            # The next transaction goes elsewhere, on the same session.
            r = c.send(SENDER, [BOB], message("after a refused DATA"))
            self.assertEqual(r[BOB][0], 250, r)
            c.quit()

    def test_backend_silent_after_data(self):
        node = self.fake_node("lmtp-silent-data",
                              timeouts={"smtp-data": "1s"})
        with mf.MailClient(mf.HOST, node.port["smtp"]) as c:
            c.cmd("MAIL FROM:<%s>" % SENDER)
            self.assertEqual(c.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            t0 = time.monotonic()
            c.sock.sendall(message("unanswered") + b".\r\n")
            code, text = c.reply()
            self.assertEqual(code, 451, text)
            self.assertTrue(text.startswith("4.4.2"), text)
            self.assertLess(time.monotonic() - t0, 5)
            self.assertEqual(c.cmd("NOOP")[0], 250)
            c.quit()

    def test_lmtp_verdicts_differ(self):
        # One recipient saved, one mailbox full: SMTP has one answer, and
        # the temporary failure wins, so the sender retries (the first
        # recipient may see the message twice; nobody loses it).
        node = self.fake_node("lmtp-mixed")
        with mf.MailClient(mf.HOST, node.port["smtp"]) as c:
            r = c.send(SENDER, [ALICE, DAVE], message("mixed"))
            c.quit()
        self.assertEqual(r[ALICE][0], 452, r)
        self.assertIn("mailbox full", r[ALICE][1])
        self.assertTrue(mf.wait_for(
            lambda: "result=partial-tempfail" in node.log_text(), 3),
            node.log_text()[-2000:])

    def test_backend_garbage(self):
        node = self.fake_node("garbage")
        with mf.MailClient(mf.HOST, node.port["smtp"]) as c:
            c.cmd("MAIL FROM:<%s>" % SENDER)
            code, text = c.cmd("RCPT TO:<%s>" % ALICE)
            self.assertEqual(code, 451, text)
            self.assertEqual(c.cmd("RCPT TO:<%s>" % BOB)[0], 250)
            c.cmd("QUIT")

    def test_backend_killed_during_data(self):
        user = ERIN
        d = be(user)
        n = count(user)
        with client() as c:
            c.cmd("MAIL FROM:<%s>" % SENDER)
            self.assertEqual(c.cmd("RCPT TO:<%s>" % user)[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.sock.sendall(message("killed midway") + b"first half\r\n")
            time.sleep(0.3)
            pids = lmtp_children(d)
            self.assertTrue(pids, "no lmtp process of %s" % d.name)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
            c.sock.sendall(b"second half\r\n.\r\n")
            code, text = c.reply()
            self.assertEqual(code // 100, 4, text)
            # The sender keeps the message and retries; this time it goes.
            r = c.send(SENDER, [user], message("retried"))
            self.assertEqual(r[user][0], 250, r)
            c.quit()
        msgs = mf.fetch_all(d, user)
        self.assertEqual(len(msgs), n + 1)
        self.assertFalse(any(b"killed midway" in m for m in msgs))


class DrainTest(unittest.TestCase):

    def test_sigterm_lets_the_message_finish(self):
        # A message under way when the node is told to stop is delivered;
        # an idle session is told to go.
        node = ENV.mmnode(name="smtpdrain", listeners=[("smtp", "smtp", {})],
                          backends=[lmtp_backend("be1"), lmtp_backend("be2")],
                          timeouts={"drain": "5s"})
        self.addCleanup(node.stop)
        n = count(DAVE)
        busy = mf.MailClient(mf.HOST, node.port["smtp"])
        idle = mf.MailClient(mf.HOST, node.port["smtp"])
        try:
            busy.cmd("MAIL FROM:<%s>" % SENDER)
            self.assertEqual(busy.cmd("RCPT TO:<%s>" % DAVE)[0], 250)
            self.assertEqual(busy.cmd("DATA")[0], 354)
            busy.sock.sendall(message("during drain") + b"first part\r\n")
            node.stop_begin()
            code, text = idle.reply()
            self.assertEqual(code, 421, text)
            time.sleep(0.3)
            busy.sock.sendall(b"second part\r\n.\r\n")
            code, text = busy.reply()
            self.assertEqual(code, 250, text)
            code, text = busy.reply()
            self.assertEqual(code, 421, text)
        finally:
            busy.close()
            idle.close()
        self.assertEqual(count(DAVE), n + 1)
        self.assertIn(b"second part", newest(DAVE))


class FrozenTest(unittest.TestCase):

    def test_frozen_user_gets_450(self):
        node = ENV.directory_node(
            "smtpdir", site="a", start=False,
            listeners=[("smtp", "smtp", {})],
            backends=[lmtp_backend("be1")])
        node.ctl("user", "add", ALICE, "be1", direct=True).check()
        node.ctl("user", "add", DAVE, "be1", direct=True).check()
        node.ctl("user", "set", DAVE, "be1", "--state", "frozen",
                 "--target", "b", direct=True).check()
        node.start()
        try:
            n = count(ALICE)
            with mf.MailClient(mf.HOST, node.port["smtp"]) as c:
                c.cmd("MAIL FROM:<%s>" % SENDER)
                code, text = c.cmd("RCPT TO:<%s>" % DAVE)
                self.assertEqual(code, 450, text)
                self.assertTrue(text.startswith("4.2.1"), text)
                self.assertEqual(c.cmd("RCPT TO:<%s>" % ALICE)[0], 250)
                self.assertEqual(c.cmd("DATA")[0], 354)
                c.sock.sendall(message("while dave frozen") + b".\r\n")
                self.assertEqual(c.reply()[0], 250)
                c.cmd("QUIT")
            self.assertEqual(count(ALICE), n + 1)
        finally:
            node.stop()


if __name__ == "__main__":
    mf.main()
