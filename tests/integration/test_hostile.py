"""Hostile but fair clients: slow ones before login and in SMTP, failed
logins told apart by time, parallel guessing from one address, a back
end's "too many sessions", and IMAP ID at its RFC 2971 size."""

import os
import socket
import statistics
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
ALICE = "alice@a.test"       # be1
ERIN = "erin@be2.test"       # be2
DAVE = "dave@be1.test"       # be1
UNKNOWN = "zed@z.test"       # on the back ends, not in the popmap


def setUpModule():
    global ENV
    ENV = mf.env()


def tearDownModule():
    mf.shutdown()


def pw(user):
    return mf.USERS[user]


def timed_login(port, user, password, source):
    """Seconds from a LOGIN on a fresh connection to its tagged reply, and
    that reply."""
    with mf.Conv(port, source=source) as c:
        t0 = time.monotonic()
        c.cmd("a LOGIN %s %s" % (user, mf.imap_quote(password)))
        _, t = c.tagged("a")
        return time.monotonic() - t0, t


class FailureTimingTest(unittest.TestCase):
    """An unknown user and a wrong password take the same time."""

    def test_default_delay_hides_the_back_end(self):
        # The default first delay (1 s) is longer than the back end's own
        # 0.5 s: both answers come 1 s after the LOGIN, not 1 and 1.5.
        node = ENV.mmnode(name="timing", workers=1, limits={
            "auth-failure-delay": "1s", "auth-failure-delay-max": "8s",
            "auth-failures-per-ip": "1000"})
        unknown, wrong = [], []
        for _ in range(5):
            secs, t = timed_login(node.port["imap"], UNKNOWN, "x",
                                  mf.source_addr())
            self.assertIn("NO [AUTHENTICATIONFAILED]", t)
            unknown.append(secs)
            secs, t = timed_login(node.port["imap"], ALICE, "wrong",
                                  mf.source_addr())
            self.assertIn("NO [AUTHENTICATIONFAILED]", t)
            wrong.append(secs)
        for secs in unknown + wrong:
            self.assertGreaterEqual(secs, 0.95, (unknown, wrong))
            self.assertLess(secs, 1.3, (unknown, wrong))
        self.assertLess(abs(statistics.median(unknown) -
                            statistics.median(wrong)), 0.15,
                        (unknown, wrong))
        node.stop()

    def test_slow_back_end_sets_the_floor(self):
        # A first delay (0.1 s) shorter than the back end's 0.5 s: once a
        # wrong password has shown how long the back end takes, unknown
        # users wait as long.
        node = ENV.mmnode(name="floor", workers=1, limits={
            "auth-failure-delay": "100ms", "auth-failures-per-ip": "1000"})
        secs, t = timed_login(node.port["imap"], ALICE, "wrong",
                              mf.source_addr())
        self.assertGreaterEqual(secs, 0.45, t)
        for _ in range(4):
            u, t = timed_login(node.port["imap"], UNKNOWN, "x",
                               mf.source_addr())
            self.assertIn("NO [AUTHENTICATIONFAILED]", t)
            self.assertGreaterEqual(u, 0.45, "unknown user in %.3fs, a "
                                    "wrong password in %.3fs" % (u, secs))
        node.stop()


class ParallelGuessTest(unittest.TestCase):
    def test_logins_in_flight_count(self):
        # 15 wrong passwords at once from one address, limit 5: at most 5
        # reach the back end.
        node = ENV.mmnode(name="parallel", limits={
            "auth-failures-per-ip": "5", "connections-per-ip": "100"})
        src = mf.source_addr()
        conns = [mf.Conv(node.port["imap"], source=src) for _ in range(15)]
        replies = [None] * len(conns)
        go = threading.Barrier(len(conns))

        def attempt(i):
            go.wait()
            conns[i].cmd("a LOGIN %s wrong" % ALICE)
            replies[i] = conns[i].tagged("a", timeout=20)[1]

        threads = [threading.Thread(target=attempt, args=(i,))
                   for i in range(len(conns))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        for c in conns:
            c.close()
        self.assertTrue(all(r and "NO [AUTHENTICATIONFAILED]" in r
                            for r in replies), replies)
        log = node.log_text()
        mine = [ln for ln in log.splitlines()
                if " proxy login " in ln and " client=%s:" % src in ln]
        reached = [ln for ln in mine if "reason=backend-refused" in ln]
        refused = [ln for ln in mine if "reason=address-fail-limit" in ln]
        self.assertEqual(len(mine), 15, mine)
        self.assertLessEqual(len(reached), 5, "\n".join(reached))
        self.assertGreaterEqual(len(refused), 10, "\n".join(mine))
        node.stop()


class BackendLimitTest(unittest.TestCase):
    def test_too_many_sessions_is_temporary_and_uncounted(self):
        # Dovecot allows 10 sessions of one user from one address; the
        # 11th gets its NO [LIMIT] as it is, at once, and it costs no
        # failure: five of them, past a per-address limit of 3, and the
        # address may still log in.
        node = ENV.mmnode(name="belimit", limits={
            "auth-failures-per-ip": "3", "auth-failure-delay": "1s",
            "auth-failure-delay-max": "8s"})
        src = mf.source_addr()
        open_ = []
        try:
            for _ in range(10):
                c = mf.Conv(node.port["imap"], source=src)
                c.cmd("a LOGIN %s %s" % (ERIN, mf.imap_quote(pw(ERIN))))
                _, t = c.tagged("a")
                self.assertTrue(t.startswith("a OK"), t)
                open_.append(c)
            for _ in range(5):
                with mf.Conv(node.port["imap"], source=src) as c:
                    t0 = time.monotonic()
                    c.cmd("a LOGIN %s %s" % (ERIN, mf.imap_quote(pw(ERIN))))
                    _, t = c.tagged("a")
                    secs = time.monotonic() - t0
                self.assertTrue(t.startswith("a NO [LIMIT]"), t)
                self.assertIn("Maximum number of connections", t)
                self.assertLess(secs, 0.9, "delayed like a failure")
            self.assertEqual(node.log_text().count("reason=backend-limit"),
                             5)
            open_.pop().close()
            time.sleep(0.3)

            def ok():
                with mf.Conv(node.port["imap"], source=src) as c:
                    c.cmd("a LOGIN %s %s" % (ERIN, mf.imap_quote(pw(ERIN))))
                    return c.tagged("a")[1]
            t = mf.wait_for(lambda: (lambda r: r if r.startswith("a OK")
                                     else None)(ok()), 3)
            self.assertTrue(t and t.startswith("a OK"), t)
        finally:
            for c in open_:
                c.close()
            node.stop()


def id_command(tag, pairs, value_len):
    fields = " ".join('"x-field-%022d" "%s"' % (i, "v" * value_len)
                      for i in range(pairs))
    return "%s ID (%s)" % (tag, fields)


class ImapIdTest(unittest.TestCase):
    def test_id_of_rfc_size(self):
        # 30 pairs, 30-byte fields, 1024-byte values: about 31,800 bytes,
        # beyond the default line-length of 8192.
        node = ENV.mmnode(name="idsize")
        cmd = id_command("a", 30, 1024)
        self.assertGreater(len(cmd), 31000)
        with mf.Conv(node.port["imap"]) as c:
            c.cmd(cmd)
            lines, t = c.tagged("a")
            self.assertTrue(t.startswith("a OK"), t)
            self.assertTrue(lines and lines[0].startswith("* ID "), lines)
            c.cmd("b LOGIN %s %s" % (ALICE, mf.imap_quote(pw(ALICE))))
            _, t = c.tagged("b")
            self.assertTrue(t.startswith("b OK"), t)
        # Still bounded: a longer ID, and any other long command, end the
        # session.
        with mf.Conv(node.port["imap"]) as c:
            c.cmd(id_command("a", 60, 1100))
            self.assertEqual(c.wait_closed(), ["* BYE Line too long."])
        with mf.Conv(node.port["imap"]) as c:
            c.cmd("a NOOP " + "x" * 9000)
            self.assertEqual(c.wait_closed(), ["* BYE Line too long."])
        node.stop()


class SlowClientTest(unittest.TestCase):
    """Whole-time bounds: before login, and SMTP outside a message's data;
    a message's data by its progress."""

    @classmethod
    def setUpClass(cls):
        cls.node = ENV.mmnode(
            name="slow",
            listeners=mf.Mmnode.DEFAULT_LISTENERS + [
                ("smtp", "smtp", {})],
            backends=[ENV.backend_line(n, lmtp=ENV.dovecots[n].lmtp)
                      for n in sorted(ENV.dovecots)],
            timeouts={"before-login": "2s", "smtp-commands": "2s",
                      "smtp-idle": "2s"},
            limits={"smtp-data-rate": "1000"})

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()

    def trickle(self, socks, step, until):
        """Sends STEP to every socket in SOCKS every 0.3 s until UNTIL
        seconds have passed or all are closed; returns the seconds each
        took to close (None: still open)."""
        t0 = time.monotonic()
        closed = [None] * len(socks)
        bufs = [b""] * len(socks)
        while time.monotonic() - t0 < until and None in closed:
            for i, s in enumerate(socks):
                if closed[i] is not None:
                    continue
                try:
                    s.send(step)
                    s.settimeout(0.01)
                    while True:
                        d = s.recv(4096)
                        if not d:
                            closed[i] = time.monotonic() - t0
                            break
                        bufs[i] += d
                except socket.timeout:
                    pass
                except OSError:
                    closed[i] = time.monotonic() - t0
            time.sleep(0.3)
        return closed, bufs

    def connect(self, key, n):
        socks = []
        for _ in range(n):
            s = socket.create_connection((mf.HOST, self.node.port[key]),
                                         timeout=mf.IO_TIMEOUT)
            s.recv(4096)
            socks.append(s)
        return socks

    def assert_cut(self, socks, step, texts, at_least=0):
        """SOCKS, sent STEP every 0.3 s, are all closed within 3.5 s, each
        after saying all of TEXTS."""
        try:
            closed, bufs = self.trickle(socks, step, 6)
        finally:
            for s in socks:
                s.close()
        for secs, buf in zip(closed, bufs):
            self.assertIsNotNone(secs, "still open after 6 s")
            self.assertGreater(secs, at_least)
            self.assertLess(secs, 3.5)
            for text in texts:
                self.assertIn(text, buf)

    def test_slowloris_before_login(self):
        # One byte every 0.3 s never lets a session idle; the whole time
        # before login (2 s) ends it anyway.
        self.assert_cut(self.connect("imap", 10) + self.connect("pop3", 10),
                        b"a", [b"Too long without logging in."],
                        at_least=1.5)

    def test_smtp_slowloris_outside_data(self):
        self.assert_cut(self.connect("smtp", 5), b"N",
                        [b"421 4.7.0 ", b"Too long without a message."])

    def start_message(self, subject):
        c = mf.MailClient(mf.HOST, self.node.port["smtp"])
        for line, want in (("MAIL FROM:<s@example.net>", 250),
                           ("RCPT TO:<%s>" % DAVE, 250), ("DATA", 354)):
            code, text = c.cmd(line)
            self.assertEqual(code, want, text)
        c.sock.sendall(b"Subject: %s\r\n\r\n" % subject.encode())
        return c

    def test_smtp_data_trickle_is_cut(self):
        before = mf.inbox_count(ENV.dovecots["be1"], DAVE)
        c = self.start_message("trickle")
        try:
            closed, bufs = self.trickle([c.sock], b"0123456789", 8)
        finally:
            c.close()
        self.assertIsNotNone(closed[0], "still open after 8 s")
        self.assertLess(closed[0], 3.5)
        self.assertIn(b"Message data too slow.", bufs[0])
        time.sleep(0.5)
        self.assertEqual(mf.inbox_count(ENV.dovecots["be1"], DAVE), before)

    def test_smtp_slow_honest_sender_is_not_cut(self):
        # 2 KB every 0.3 s for 4 s: longer than smtp-idle and
        # smtp-commands, faster than the data rate.
        before = mf.inbox_count(ENV.dovecots["be1"], DAVE)
        c = self.start_message("slow but steady")
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 4:
                c.sock.sendall((b"x" * 78 + b"\r\n") * 25)
                time.sleep(0.3)
            c.sock.sendall(b".\r\n")
            code, text = c.reply()
            self.assertEqual(code, 250, text)
            code, text = c.cmd("NOOP")
            self.assertEqual(code, 250, text)
        finally:
            c.close()
        mf.wait_inbox_count(ENV.dovecots["be1"], DAVE, before + 1)


if __name__ == "__main__":
    mf.main()
