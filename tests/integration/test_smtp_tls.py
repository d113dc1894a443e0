"""SMTP over TLS through mmnode, ended the way real senders end it: the
last reply of the session (the 250 for the message, then QUIT's 221) has
to reach the client after STARTTLS and after implicit TLS.

Postfix relays to mmnode's smtp listener with STARTTLS required
(smtp_tls_security_level=encrypt), opportunistic (may) and in clear: it
sends the end of data with QUIT right behind it, and a 250 it never reads
makes it defer the message and send it again ("lost connection ... message
may be sent more than once"). Every message must arrive exactly once, also
seconds after Postfix's queue is empty (its retries come about every
second), and each copy must carry mmnode's "with ESMTPS" trace field when
TLS was asked for. swaks (--tls, --tlsc) must exit 0 and deliver once."""

import collections
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = NODE = None
ALICE = "alice@a.test"      # be1 (popmap)
CAROL = "carol@b.test"      # be2
DAVE = "dave@be1.test"      # be1
ERIN = "erin@be2.test"      # be2
SENDER = "sender@example.net"
SMTP_LISTENERS = [("smtp", "smtp", {"tls": True}),
                  ("smtps", "smtps", {"tls": True})]

MESSAGES = 5
# Postfix retries deferred mail about every second (the fixture's
# queue_run_delay and backoff times): duplicates show within this.
SETTLE = 3.0
# Postfix's client side (smtp, error, qmgr; not smtpd, whose "lost
# connection after CONNECT" is the fixture's port probe) not getting a
# message through.
TROUBLE = (r"/(?!smtpd\[)\w+\[\d+\]: .*(lost connection|may be sent more "
           r"than once|status=deferred|status=bounced|TLS is required|"
           r"Cannot start TLS)")


def lmtp_backend(name):
    return ENV.backend_line(name, lmtp=ENV.dovecots[name].lmtp)


def setUpModule():
    global ENV, NODE
    ENV = mf.env()
    NODE = ENV.mmnode(name="tlsnode", listeners=SMTP_LISTENERS,
                      backends=[lmtp_backend("be1"), lmtp_backend("be2")])
    for d in ENV.dovecots.values():
        d.sync_mailboxes()


def tearDownModule():
    mf.shutdown()


def be(user):
    return ENV.dovecots[mf.EXPECT_BACKEND[user]]


def unique(what):
    return "%s %d %.6f" % (what, os.getpid(), time.time())


def message(subject, to):
    """A complete message (nothing for Postfix's cleanup to add)."""
    tag = re.sub(r"[^A-Za-z0-9]+", ".", subject)
    return mf.crlf_message(
        "From: Sender <%s>\nTo: %s\nSubject: %s\n"
        "Date: Tue, 2 Jan 2024 10:00:00 +0000\n"
        "Message-ID: <%s@mailmesh.test>\n\nOver TLS, once.\n" % (
            SENDER, to, subject, tag))


def stored(user, subjects):
    """{subject: [raw message, ...]} of USER's INBOX on its back end, for
    the SUBJECTS asked about (an absent one maps to [])."""
    out = collections.OrderedDict((s, []) for s in subjects)
    for raw in mf.fetch_all(be(user), user):
        for s in mf.subjects_in(raw):
            if s in out:
                out[s].append(raw)
    return out


def mmnode_received(raw):
    """mmnode's Received field: the first below Dovecot's delivery fields."""
    fields, _ = mf.split_header_fields(mf.strip_delivery_headers(raw))
    if not fields or b"(MailMesh)" not in fields[0]:
        raise AssertionError("no MailMesh Received field on top:\n%s" %
                             raw[:800].decode(errors="replace"))
    return re.sub(rb"\s+", b" ", fields[0]).decode(errors="replace")


def report(got, extra):
    """What a relay test saw: the copies of each message (GOT, as from
    stored) with how each reached mmnode, then the EXTRA lines."""
    lines = ["copies stored per message (want 1 each):"]
    for s, raws in got.items():
        how = [re.search(r" with (\S+) id ", mmnode_received(r)).group(1)
               for r in raws]
        lines.append("  %d x %s (%s)" % (len(raws), s, ", ".join(how)))
    return "\n".join(lines + [""] + extra)


class PostfixRelayTest(unittest.TestCase):
    """A Postfix relay in front of mmnode's smtp listener (STARTTLS
    offered), one Postfix per smtp_tls_security_level."""

    def relay(self, level, user):
        pf = ENV.postfix("pf" + level, smtp_tls=level,
                         relay="smtp:[%s]:%d" % (mf.HOST, NODE.port["smtp"]))
        # Stopped at once: a Postfix that never saw its 250 would go on
        # sending its copies.
        self.addCleanup(pf.stop)
        pos = pf.log_size()
        subjects = [unique("relay %s #%d" % (level, i))
                    for i in range(MESSAGES)]
        for s in subjects:
            r = mf.smtp_send(mf.HOST, pf.smtp, SENDER, [user],
                             message(s, user))
            self.assertEqual(r[user][0], 250, r)
        # Empty queue, or the first sign of a lost reply; then time for
        # the retries a lost reply causes.
        mf.wait_for(lambda: pf.queue_empty() or pf.log_lines(TROUBLE, pos),
                    20)
        time.sleep(SETTLE)
        got = stored(user, subjects)
        trouble = pf.log_lines(TROUBLE, pos)
        tls = pf.tls_lines(pos)
        queue = pf.queue_files()
        why = report(got, [
            "Postfix log, lines that show a lost reply (%d):" % len(trouble)]
            + trouble[:12] + [
            "Postfix TLS sessions: %d" % len(tls),
            "queued still: %s" % {q: ids for q, ids in queue.items() if ids}])
        self.assertEqual([len(v) for v in got.values()], [1] * MESSAGES,
                         why)
        self.assertEqual(trouble, [], why)
        self.assertTrue(pf.queue_empty(), why)
        sent = pf.log_lines(r"status=sent \(250 ", pos)
        self.assertEqual(len(sent), MESSAGES, why + "\n" + "\n".join(sent))
        received = [mmnode_received(raws[0]) for raws in got.values()]
        return pf, tls, received

    def test_encrypt(self):
        pf, tls, received = self.relay("encrypt", ALICE)
        self.assertTrue(tls, pf.log_text()[-3000:])
        for ln in tls:
            # The test CA signed the node's certificate.
            self.assertRegex(ln, r"\b(Trusted|Verified) TLS connection "
                             r"established to 127\.0\.0\.1\[127\.0\.0\.1\]"
                             r":%d: " % NODE.port["smtp"])
        for r in received:
            self.assertIn(" with ESMTPS id ", r)

    def test_may(self):
        # After a TLS session that lost its reply, opportunistic TLS sends
        # the message again in clear: every copy must have come over TLS.
        pf, tls, received = self.relay("may", CAROL)
        self.assertTrue(tls, pf.log_text()[-3000:])
        for r in received:
            self.assertIn(" with ESMTPS id ", r)

    def test_clear(self):
        pf, tls, received = self.relay("none", DAVE)
        self.assertEqual(tls, [])
        for r in received:
            self.assertIn(" with ESMTP id ", r)


class SwaksTest(unittest.TestCase):
    """swaks over STARTTLS and over implicit TLS, the certificate checked
    against the test CA."""

    def swaks(self, port, user, tls_arg):
        subj = unique("swaks %s" % tls_arg)
        p = subprocess.run(
            ["swaks", "--server", "%s:%d" % (mf.HOST, port), "--to", user,
             "--from", SENDER, "--header", "Subject: " + subj,
             "--body", "From swaks over TLS.", "--timeout", "20",
             tls_arg, "--tls-verify", "--tls-ca-path", ENV.tls.ca],
            capture_output=True, text=True, timeout=60)
        out = "swaks exit %d (6: connection closed unexpectedly)\n%s%s" % (
            p.returncode, p.stdout[-3000:], p.stderr[-1000:])
        got = stored(user, [subj])[subj]
        self.assertEqual(p.returncode, 0, out)
        self.assertRegex(p.stdout, r"(?m)^<~ +221 ", out)
        self.assertEqual(len(got), 1, out)
        self.assertIn(" with ESMTPS id ", mmnode_received(got[0]))

    def test_starttls(self):
        self.swaks(NODE.port["smtp"], ERIN, "--tls")

    def test_implicit_tls(self):
        self.swaks(NODE.port["smtps"], ALICE, "--tlsc")


if __name__ == "__main__":
    mf.main()
