"""Failures and limits: wrong passwords, unknown users, failure delays and
limits, back ends that are down, hang or talk garbage, oversized input,
idle clients, per-address limits, and passwords kept out of the log."""

import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
ALICE = "alice@a.test"
WRONG = "Wr0ng-Passw0rd-77"
WRONG2 = "An0ther wrong \"pw\""
UNKNOWN = "nobody@nowhere.test"


def setUpModule():
    global ENV
    ENV = mf.env()


def tearDownModule():
    mf.shutdown()


def pw(u):
    return mf.USERS[u]


def imap_conv(node, key="imap", **kw):
    c = mf.Conv(node.port[key], **kw)
    if not c.greeting.startswith("* OK"):
        raise AssertionError("greeting: %r" % c.greeting)
    return c


def imap_login(c, tag, user, password):
    """LOGIN; returns (reply line, seconds)."""
    t0 = time.monotonic()
    c.cmd("%s LOGIN %s %s" % (tag, mf.imap_quote(user), mf.imap_quote(password)))
    _, t = c.tagged(tag)
    return t, time.monotonic() - t0


def pop_conv(node, key="pop3", **kw):
    c = mf.Conv(node.port[key], **kw)
    if not c.greeting.startswith("+OK"):
        raise AssertionError("greeting: %r" % c.greeting)
    return c


def pop_login(c, user, password):
    c.cmd("USER " + user)
    r1 = c.line()
    c.cmd("PASS " + password)
    return r1, c.line()


def after_tag(line):
    return line.split(" ", 1)[1]


def assert_bye_and_close(tc, c, lines=None, prefix="* BYE", timeout=5):
    got = list(lines or [])
    try:
        got += c.wait_closed(timeout)
    except mf.Closed:
        pass
    tc.assertTrue(any(ln.startswith(prefix) for ln in got),
                  "no %r before close: %r" % (prefix, got))
    return got


class AuthFailureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = ENV.mmnode(name="authfail", limits={
            "auth-failures": 3, "auth-failure-delay": "100ms",
            "auth-failure-delay-max": "2s", "auth-failures-per-ip": 1000})

    def test_wrong_password_then_correct(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            t, _ = imap_login(c, "a", ALICE, WRONG)
            self.assertTrue(t.startswith("a NO [AUTHENTICATIONFAILED]"), t)
            t, _ = imap_login(c, "b", ALICE, pw(ALICE))
            self.assertTrue(t.startswith("b OK"), t)
            c.cmd("c SELECT INBOX")
            lines, t = c.tagged("c")
            self.assertTrue(t.startswith("c OK"), t)

    def test_unknown_user_same_reply(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            wrong, _ = imap_login(c, "a", ALICE, WRONG)
            unmapped, _ = imap_login(c, "b", "zed@z.test", pw("zed@z.test"))
        with imap_conv(self.node, source=mf.source_addr()) as c:
            unknown, _ = imap_login(c, "a", UNKNOWN, WRONG)
        self.assertTrue(wrong.startswith("a NO [AUTHENTICATIONFAILED]"), wrong)
        self.assertEqual(after_tag(wrong), after_tag(unmapped))
        self.assertEqual(after_tag(wrong), after_tag(unknown))

    def test_authenticate_failure_same_reply(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            c.cmd("a AUTHENTICATE PLAIN " + mf.sasl_plain(ALICE, WRONG))
            _, t = c.tagged("a")
            self.assertTrue(t.startswith("a NO [AUTHENTICATIONFAILED]"), t)
            c.cmd("b AUTHENTICATE PLAIN " + mf.sasl_plain(UNKNOWN, WRONG))
            _, t2 = c.tagged("b")
            self.assertEqual(after_tag(t), after_tag(t2))

    def test_too_many_failures_bye(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            for tag in ("a", "b"):
                t, _ = imap_login(c, tag, ALICE, WRONG)
                self.assertTrue(t.startswith(tag + " NO"), t)
            c.cmd("c LOGIN %s %s" % (ALICE, WRONG))
            assert_bye_and_close(self, c)

    def test_pop3_wrong_password_then_correct(self):
        with pop_conv(self.node, source=mf.source_addr()) as c:
            _, r = pop_login(c, ALICE, WRONG)
            self.assertTrue(r.startswith("-ERR [AUTH]"), r)
            _, r = pop_login(c, ALICE, pw(ALICE))
            self.assertTrue(r.startswith("+OK"), r)
            c.cmd("STAT")
            c.expect("+OK 3 ")

    def test_pop3_unknown_user_same_reply(self):
        with pop_conv(self.node, source=mf.source_addr()) as c:
            u1, wrong = pop_login(c, ALICE, WRONG)
        with pop_conv(self.node, source=mf.source_addr()) as c:
            u2, unknown = pop_login(c, UNKNOWN, WRONG)
        self.assertTrue(wrong.startswith("-ERR [AUTH]"), wrong)
        self.assertEqual(u1, u2)
        self.assertEqual(wrong, unknown)

    def test_pop3_too_many_failures(self):
        with pop_conv(self.node, source=mf.source_addr()) as c:
            for _ in range(2):
                _, r = pop_login(c, ALICE, WRONG)
                self.assertTrue(r.startswith("-ERR"), r)
            c.cmd("USER " + ALICE)
            c.expect("+OK")
            c.cmd("PASS " + WRONG)
            got = assert_bye_and_close(self, c, prefix="-ERR")
            self.assertFalse(any(ln.startswith("+OK") for ln in got), got)


class FailureDelayTest(unittest.TestCase):
    # Dovecot answers failed logins from a timer (up to ~0.5 s late), so
    # the delays are large enough to show through that jitter, and exact
    # measurements use users mmnode refuses itself.
    @classmethod
    def setUpClass(cls):
        cls.node = ENV.mmnode(name="delay", limits={
            "auth-failures": 10, "auth-failure-delay": "300ms",
            "auth-failure-delay-max": "4s", "auth-failures-per-ip": 1000})

    def test_delay_grows(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            times = []
            for tag in ("a", "b", "c"):
                t, secs = imap_login(c, tag, ALICE, WRONG)
                self.assertTrue(t.startswith(tag + " NO [AUTHENTICATIONFAILED]"),
                                t)
                times.append(secs)
            # 300, 600, 1200 ms on top of the back end's 0..0.5 s.
            self.assertGreaterEqual(times[0], 0.27, times)
            self.assertGreater(times[2], times[0] + 0.3, times)
            t, _ = imap_login(c, "d", ALICE, pw(ALICE))
            self.assertTrue(t.startswith("d OK"), t)

    def test_delay_doubles_each_failure(self):
        # "delay of the first failure; doubles each time"
        with imap_conv(self.node, source=mf.source_addr()) as c:
            times = []
            for tag in ("a", "b", "c"):
                t, secs = imap_login(c, tag, UNKNOWN, WRONG)
                self.assertTrue(t.startswith(tag + " NO [AUTHENTICATIONFAILED]"),
                                t)
                times.append(secs)
        self.assertGreaterEqual(times[0], 0.27, times)
        self.assertLess(times[0], 0.5, times)
        self.assertGreater(times[1], times[0] + 0.2, times)
        self.assertGreater(times[2], times[1] + 0.45, times)

    def test_pop3_delay(self):
        with pop_conv(self.node, source=mf.source_addr()) as c:
            t0 = time.monotonic()
            _, r = pop_login(c, UNKNOWN, WRONG)
            self.assertTrue(r.startswith("-ERR [AUTH]"), r)
            self.assertGreaterEqual(time.monotonic() - t0, 0.27)


class BackendTroubleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fakes = {m: ENV.fake(m)
                     for m in ("hang", "greet-hang", "garbage", "close")}
        dead = mf.free_port()
        backends = [ENV.backend_line("be1"), ENV.backend_line("be2"),
                    "dead 127.0.0.1 imap=%d pop3=%d" % (dead, dead)]
        popmap = list(mf.POPMAP) + ["x@dead.test: dead"]
        for m, f in cls.fakes.items():
            name = m.replace("-", "")
            backends.append("%s 127.0.0.1 imap=%d pop3=%d" % (
                name, f.port, f.port))
            popmap.append("x@%s.test: %s" % (name, name))
        cls.node = ENV.mmnode(name="betrouble", backends=backends,
                              popmap=popmap, timeouts={"backend": "2s"},
                              limits={"auth-failures-per-ip": 1000})

    def imap_temp(self, user, low, high, source=None):
        with imap_conv(self.node, source=source or mf.source_addr()) as c:
            t, secs = imap_login(c, "a", user, "any-pw-1")
            self.assertTrue(t.startswith("a NO [UNAVAILABLE]"), t)
            self.assertGreaterEqual(secs, low)
            self.assertLess(secs, high)
        return secs

    def test_backend_down_imap(self):
        self.imap_temp("x@dead.test", 0, 2)

    def test_backend_down_pop3(self):
        with pop_conv(self.node, source=mf.source_addr()) as c:
            t0 = time.monotonic()
            _, r = pop_login(c, "x@dead.test", "any-pw-1")
            self.assertTrue(r.startswith("-ERR [SYS/TEMP]"), r)
            self.assertLess(time.monotonic() - t0, 2)

    def test_backend_hangs(self):
        self.imap_temp("x@hang.test", 1.5, 4.5)

    def test_backend_greets_then_hangs(self):
        self.imap_temp("x@greethang.test", 1.5, 4.5)

    def test_backend_sends_garbage(self):
        # Every temporary failure looks the same to the client; the log
        # says the back end's bytes were taken for garbage, not for a
        # timeout, a closed connection or a greeting other than OK.
        src = mf.source_addr()
        pos = self.node.log_size()
        self.imap_temp("x@garbage.test", 0, 4.5, source=src)
        rx = re.compile(r"proxy login proto=imap user=x@garbage\.test "
                        r"client=%s:\d+ .*result=" % re.escape(src))
        lines = mf.wait_for(lambda: [ln for ln in self.node.log_since(
            pos).splitlines() if rx.search(ln)], 3)
        self.assertEqual(len(lines or []), 1, self.node.log_since(pos))
        self.assertRegex(lines[0], r" backend=garbage addr=127\.0\.0\.1:%d "
                         r"result=tempfail reason=backend-garbage$"
                         % self.fakes["garbage"].port)

    def test_backend_closes(self):
        self.imap_temp("x@close.test", 0, 2)

    def test_pop3_backend_hangs(self):
        with pop_conv(self.node, source=mf.source_addr()) as c:
            t0 = time.monotonic()
            _, r = pop_login(c, "x@hang.test", "any-pw-1")
            self.assertTrue(r.startswith("-ERR [SYS/TEMP]"), r)
            self.assertLess(time.monotonic() - t0, 4.5)

    def test_session_usable_after_backend_trouble(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            t, _ = imap_login(c, "a", "x@dead.test", "any-pw-1")
            self.assertTrue(t.startswith("a NO [UNAVAILABLE]"), t)
            t, _ = imap_login(c, "b", ALICE, pw(ALICE))
            self.assertTrue(t.startswith("b OK"), t)

    def test_other_users_unaffected(self):
        m = mf.IMAP4From(mf.HOST, self.node.port["imap"],
                         source=mf.source_addr())
        m.login("bob@a.test", pw("bob@a.test"))
        self.assertTrue(mf.imap_subjects(m)[0].startswith(
            mf.hello_subject("bob@a.test", "be2")))
        m.logout()


class InputLimitTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = ENV.mmnode(name="inputlimits", limits={
            "line-length": 1024, "literal-size": 1024,
            "commands-before-login": 8, "auth-failures-per-ip": 1000},
            timeouts={"idle-before-login": "2s"})

    def tearDown(self):
        # Whatever a test did, the listener still serves everybody else.
        m = mf.IMAP4From(mf.HOST, self.node.port["imap"],
                         source=mf.source_addr())
        m.login(ALICE, pw(ALICE))
        m.logout()

    def test_line_too_long(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            c.send("a LOGIN " + "x" * 4000)      # no end of line yet
            got = assert_bye_and_close(self, c)
            self.assertTrue(any("Line too long" in ln for ln in got), got)

    def test_line_too_long_with_crlf(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            c.send("a NOOP " + "y" * 3000 + "\r\n")
            assert_bye_and_close(self, c)

    def test_literal_too_big(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            c.send("a LOGIN {100000}\r\n")
            got = assert_bye_and_close(self, c)
            self.assertFalse(any(ln.startswith("+") for ln in got), got)

    def test_nonsync_literal_too_big(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            c.send("a LOGIN {100000+}\r\n" + "z" * 2000)
            assert_bye_and_close(self, c)

    def test_literal_within_limit(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            p = pw(ALICE)
            c.send("a LOGIN alice@a.test {%d+}\r\n%s\r\n" % (len(p), p))
            _, t = c.tagged("a")
            self.assertTrue(t.startswith("a OK"), t)

    def test_too_many_commands_before_login(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            oks = 0
            got = []
            for i in range(12):
                try:
                    c.cmd("n%d NOOP" % i)
                    ln = c.line()
                except (mf.Closed, OSError):
                    break
                got.append(ln)
                if ln.startswith("* BYE"):
                    break
                if ln.startswith("n%d OK" % i):
                    oks += 1
            self.assertTrue(any(ln.startswith("* BYE") for ln in got), got)
            self.assertLessEqual(oks, 8, got)
            self.assertGreaterEqual(oks, 7, got)
            c.wait_closed()

    def test_idle_before_login(self):
        with imap_conv(self.node, source=mf.source_addr()) as c:
            t0 = time.monotonic()
            got = assert_bye_and_close(self, c, timeout=5)
            secs = time.monotonic() - t0
            self.assertGreater(secs, 1.5)
            self.assertLess(secs, 4.0)
            self.assertTrue(any("Idle" in ln for ln in got), got)

    def test_pop3_line_too_long(self):
        with pop_conv(self.node, source=mf.source_addr()) as c:
            c.send("USER " + "x" * 4000)
            assert_bye_and_close(self, c, prefix="-ERR")

    def test_pop3_idle_before_login(self):
        with pop_conv(self.node, source=mf.source_addr()) as c:
            t0 = time.monotonic()
            c.wait_closed(5)
            self.assertLess(time.monotonic() - t0, 4.0)


class ConnectionLimitTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = ENV.mmnode(name="connlimit", limits={
            "connections-per-ip": 3, "auth-failures-per-ip": 1000})

    def check_limit(self, key, ok_prefix, refuse_prefix, login):
        src = mf.source_addr()
        first = [mf.Conv(self.node.port[key], source=src) for _ in range(3)]
        try:
            for c in first:
                self.assertTrue(c.greeting.startswith(ok_prefix), c.greeting)
            with mf.Conv(self.node.port[key], source=src,
                         greeting=False) as c4:
                assert_bye_and_close(self, c4, prefix=refuse_prefix)
            # Another address is not affected.
            with mf.Conv(self.node.port[key],
                         source=mf.source_addr()) as other:
                self.assertTrue(other.greeting.startswith(ok_prefix))
            # The first three still work.
            for c in first:
                login(c)
        finally:
            for c in first:
                c.close()
        # Slots are given back when connections end (the node sees the
        # closes a moment later): a connection is admitted again, and
        # that one logs in.
        admitted = []

        def fresh():
            try:
                c = mf.Conv(self.node.port[key], source=src)
            except (mf.Closed, OSError):
                return False
            if c.greeting.startswith(ok_prefix):
                admitted.append(c)
                return True
            c.close()
            return False
        self.assertTrue(mf.wait_for(fresh, 3, step=0.2))
        with admitted[0] as c:
            login(c)

    def test_imap_connections_per_ip(self):
        def login(c):
            t, _ = imap_login(c, "L", ALICE, pw(ALICE))
            self.assertTrue(t.startswith("L OK"), t)
        self.check_limit("imap", "* OK", "* BYE", login)

    def test_pop3_connections_per_ip(self):
        def login(c):
            _, r = pop_login(c, "carol@b.test", pw("carol@b.test"))
            self.assertTrue(r.startswith("+OK"), r)
            c.cmd("QUIT")
            c.expect("+OK")
        self.check_limit("pop3", "+OK", "-ERR", login)

    def test_limit_spans_protocols_and_tls(self):
        # imaps connections count against the same address.
        src = mf.source_addr()
        ctx = ENV.tls.client_ctx()
        conns = [mf.Conv(self.node.port["imaps"], source=src, tls=ctx)
                 for _ in range(3)]
        try:
            for c in conns:
                self.assertTrue(c.greeting.startswith("* OK"), c.greeting)
            with mf.Conv(self.node.port["imap"], source=src,
                         greeting=False) as c4:
                assert_bye_and_close(self, c4)
        finally:
            for c in conns:
                c.close()


class PerIpFailureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = ENV.mmnode(name="ipfail", limits={
            "auth-failures-per-ip": 3, "auth-failure-window": "5m",
            "auth-failures": 10, "auth-failure-delay": "10ms",
            "auth-failure-delay-max": "10ms"})

    def test_failures_per_ip_block_address(self):
        src = mf.source_addr()
        with imap_conv(self.node, source=src) as c:
            for tag in ("a", "b"):
                t, _ = imap_login(c, tag, ALICE, WRONG)
                self.assertTrue(t.startswith(tag + " NO"), t)
        with pop_conv(self.node, source=src) as c:
            _, r = pop_login(c, ALICE, WRONG)
            self.assertTrue(r.startswith("-ERR"), r)
        # Three failures from src: even the right password is refused now.
        ok = False
        try:
            with mf.Conv(self.node.port["imap"], source=src) as c:
                if c.greeting.startswith("* OK"):
                    t, _ = imap_login(c, "c", ALICE, pw(ALICE))
                    ok = t.startswith("c OK")
        except (mf.Closed, OSError):
            pass
        self.assertFalse(ok, "login from a blocked address succeeded")
        # Another address still logs in.
        with imap_conv(self.node, source=mf.source_addr()) as c:
            t, _ = imap_login(c, "d", ALICE, pw(ALICE))
            self.assertTrue(t.startswith("d OK"), t)


class ZzLogTest(unittest.TestCase):
    """Runs last: logs in every way with every password, then checks the logs
    of all nodes of this file."""

    @classmethod
    def setUpClass(cls):
        cls.node = ENV.mmnode(name="logcheck", limits={
            "auth-failures-per-ip": 1000, "auth-failures": 10})

    def test_no_password_in_log(self):
        src = mf.source_addr()
        for u, p in mf.USERS.items():
            with imap_conv(self.node, source=src) as c:
                imap_login(c, "a", u, p)
            with imap_conv(self.node, source=src) as c:
                c.cmd("a AUTHENTICATE PLAIN " + mf.sasl_plain(u, p))
                c.tagged("a")
            with imap_conv(self.node, source=src) as c:
                c.send("a LOGIN {%d+}\r\n%s {%d+}\r\n%s\r\n" % (
                    len(u), u, len(p.encode()), p))
                c.tagged("a")
            with pop_conv(self.node, source=src) as c:
                pop_login(c, u, p)
            with pop_conv(self.node, source=src) as c:
                c.cmd("AUTH PLAIN " + mf.sasl_plain(u, p))
                c.line()
        for bad in (WRONG, WRONG2):
            with imap_conv(self.node, source=src) as c:
                imap_login(c, "a", ALICE, bad)
            with pop_conv(self.node, source=src) as c:
                pop_login(c, ALICE, bad)
        secrets = list(mf.USERS.values()) + [WRONG, WRONG2, "b0b pass"]
        secrets += [mf.sasl_plain(u, p) for u, p in mf.USERS.items()]
        secrets += [mf.sasl_plain(ALICE, WRONG), mf.sasl_plain(UNKNOWN, WRONG)]
        time.sleep(0.3)     # let workers flush their log lines
        for n in ENV.nodes:
            log = n.log_text()
            for s in secrets:
                self.assertNotIn(s, log, "secret %r in log of %s" % (s, n.name))
        log = self.node.log_text()
        lines = [ln for ln in log.splitlines()
                 if "alice@a.test" in ln and "be1" in ln]
        self.assertTrue(lines, "no login line naming user and back end:\n"
                        + log[-3000:])
        lines = [ln for ln in log.splitlines()
                 if "bob@a.test" in ln and "be2" in ln]
        self.assertTrue(lines, log[-3000:])


if __name__ == "__main__":
    mf.main()
