"""The last words before a close reach the client, on every listener kind.

For IMAP, POP3 and SMTP, on a plain connection, one that did STARTTLS (or
STLS) and an implicit-TLS one, every way the node ends a session (the
client's goodbye, too many failed logins or commands, a line too long, an
idle or overlong session, a shutdown, the back end's goodbye after login)
must deliver the node's last reply, then end the stream cleanly: a TLS
client sees a close_notify, not a bare end of the TCP stream. A refused
TLS handshake delivers its alert."""

import os
import signal
import socket
import ssl
import sys
import threading
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = NODE = TIMERS = DEADLINE = None
ALICE = "alice@a.test"
KINDS = ("plain", "starttls", "implicit")
LISTENERS = [("imap", "imap", {"tls": True}), ("imaps", "imaps", {}),
             ("pop3", "pop3", {"tls": True}), ("pop3s", "pop3s", {}),
             ("smtp", "smtp", {"tls": True}),
             ("smtps", "smtps", {"tls": True})]


def setUpModule():
    global ENV, NODE, TIMERS, DEADLINE
    ENV = mf.env()
    NODE = ENV.mmnode(name="close", listeners=LISTENERS, limits={
        "commands-before-login": "8", "auth-failures": "2",
        "auth-failures-per-ip": "1000", "line-length": "512",
        "smtp-errors": "2"})
    TIMERS = ENV.mmnode(name="closeidle", listeners=LISTENERS,
                        timeouts={"idle-before-login": "1s",
                                  "smtp-idle": "1s"})
    DEADLINE = ENV.mmnode(name="closedeadline", listeners=LISTENERS,
                          timeouts={"before-login": "2s",
                                    "smtp-commands": "2s"})


def tearDownModule():
    mf.shutdown()


class Client:
    """One connection of PROTO to NODE on listener kind KIND, read line by
    line, that can tell how the stream ended."""

    def __init__(self, node, proto, kind, source=None):
        self.proto = proto
        self.kind = kind
        key = proto + ("s" if kind == "implicit" else "")
        self.sock = socket.create_connection(
            (mf.HOST, node.port[key]), timeout=mf.IO_TIMEOUT,
            source_address=(source, 0) if source else None)
        self.buf = b""
        self.lines = []
        if kind == "implicit":
            self.wrap()
        self.greeting = self.line()
        if kind == "starttls":
            self.starttls()
        elif proto == "smtp":
            self.ehlo()

    def wrap(self, ctx=None):
        # Without suppress_ragged_eofs a missing close_notify raises.
        self.sock = (ctx or ENV.tls.client_ctx()).wrap_socket(
            self.sock, server_hostname="localhost",
            suppress_ragged_eofs=False)

    def send(self, text):
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def line(self, timeout=mf.IO_TIMEOUT):
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise mf.Closed("closed after %r" % self.lines[-5:])
            self.buf += data
        ln, self.buf = self.buf.split(b"\n", 1)
        s = ln.rstrip(b"\r").decode("latin-1")
        self.lines.append(s)
        return s

    def until(self, prefix):
        while True:
            ln = self.line()
            if ln.startswith(prefix):
                return ln

    def ehlo(self):
        self.send("EHLO client.test\r\n")
        self.until("250 ")

    def starttls(self):
        if self.proto == "imap":
            self.send("s STARTTLS\r\n")
            self.until("s OK")
        elif self.proto == "pop3":
            self.send("STLS\r\n")
            self.until("+OK")
        else:
            self.ehlo()
            self.send("STARTTLS\r\n")
            self.until("220 ")
        self.wrap()
        if self.proto == "smtp":
            self.ehlo()

    def finish(self, timeout=8.0):
        """Reads to the end of the stream. Returns how it ended: "fin"
        (plain), "close_notify" (TLS, clean), "no close_notify", "reset" or
        "open" (nothing ended it in TIMEOUT)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "open"
                self.sock.settimeout(left)
                data = self.sock.recv(65536)
                if not data:
                    return "close_notify" if self.kind != "plain" else "fin"
                self.buf += data
        except ssl.SSLEOFError:
            return "no close_notify"
        except ssl.SSLError as e:
            return "tls error: %s" % e
        except ConnectionResetError:
            return "reset"
        except socket.timeout:
            return "open"
        finally:
            for ln in self.buf.split(b"\n"):
                if ln:
                    self.lines.append(ln.rstrip(b"\r").decode("latin-1"))
            self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def pw(user):
    return mf.USERS[user]


def assert_last_words(test, c, expect, how=None):
    """C ends with the lines of EXPECT (prefixes, in order) and then a
    clean end of the stream."""
    how = how or c.finish()
    clean = "fin" if c.kind == "plain" else "close_notify"
    tail = c.lines[-len(expect):]
    ok = len(tail) == len(expect) and all(
        ln.startswith(p) for ln, p in zip(tail, expect))
    test.assertTrue(ok, "%s %s: last lines %r, wanted %r" % (
        c.proto, c.kind, c.lines[-6:], expect))
    test.assertEqual(how, clean, "%s %s: after %r" % (
        c.proto, c.kind, c.lines[-3:]))


# What each close reason sends, per protocol: a function that drives the
# client there and returns the expected last lines.

def imap_logout(c):
    c.send("a LOGOUT\r\n")
    return ["* BYE", "a OK"]


def imap_auth_limit(c):
    c.send("a LOGIN %s wrong\r\n" % ALICE)
    c.until("a NO")
    c.send("b LOGIN %s wrong\r\n" % ALICE)
    return ["b NO [AUTHENTICATIONFAILED]", "* BYE Too many failed logins."]


def imap_command_limit(c):
    # STARTTLS was one command on that kind.
    n = 8 - (1 if c.kind == "starttls" else 0)
    c.send("".join("n%d NOOP\r\n" % i for i in range(n + 1)))
    return ["n%d OK" % (n - 1), "* BYE Too many commands before login."]


def imap_line_limit(c):
    c.send("a " + "x" * 600 + "\r\n")
    return ["* BYE Line too long."]


def imap_relay_logout(c):
    c.send("a LOGIN %s %s\r\n" % (ALICE, pw(ALICE)))
    c.until("a OK")
    c.send("b LOGOUT\r\n")
    return ["* BYE", "b OK"]


def pop3_quit(c):
    c.send("QUIT\r\n")
    return ["+OK Bye."]


def pop3_auth_limit(c):
    c.send("USER %s\r\nPASS wrong\r\n" % ALICE)
    c.until("-ERR [AUTH]")
    c.send("USER %s\r\nPASS wrong\r\n" % ALICE)
    return ["-ERR [AUTH]", "-ERR Too many failed logins."]


def pop3_command_limit(c):
    n = 8 - (1 if c.kind == "starttls" else 0)
    c.send("NOOP\r\n" * (n + 1))
    return ["-ERR Unknown command", "-ERR Too many commands before login."]


def pop3_line_limit(c):
    c.send("x" * 600 + "\r\n")
    return ["-ERR Line too long."]


def pop3_relay_quit(c):
    c.send("USER %s\r\nPASS %s\r\n" % (ALICE, pw(ALICE)))
    c.until("+OK")
    c.until("+OK")
    c.send("QUIT\r\n")
    return ["+OK"]


def smtp_quit(c):
    c.send("QUIT\r\n")
    return ["221 "]


def smtp_pipelined_quit(c):
    c.send("MAIL FROM:<sender@example.net>\r\nQUIT\r\n")
    return ["250 2.1.0", "221 "]


def smtp_error_limit(c):
    c.send("BOGUS\r\n" * 3)
    return ["500 ", "421 4.7.0"]


CASES = {
    "imap": [imap_logout, imap_auth_limit, imap_command_limit,
             imap_line_limit, imap_relay_logout],
    "pop3": [pop3_quit, pop3_auth_limit, pop3_command_limit,
             pop3_line_limit, pop3_relay_quit],
    "smtp": [smtp_quit, smtp_pipelined_quit, smtp_error_limit],
}

BYE = {"imap": "* BYE ", "pop3": "-ERR ", "smtp": "421 4.7.0 "}


class LastWordsTest(unittest.TestCase):
    def run_cases(self, proto):
        for case in CASES[proto]:
            for kind in KINDS:
                with self.subTest(case=case.__name__, kind=kind):
                    c = Client(NODE, proto, kind, source=mf.source_addr())
                    try:
                        assert_last_words(self, c, case(c))
                    finally:
                        c.close()

    def test_imap(self):
        self.run_cases("imap")

    def test_pop3(self):
        self.run_cases("pop3")

    def test_smtp(self):
        self.run_cases("smtp")


def all_kinds(node):
    return [Client(node, proto, kind) for proto in ("imap", "pop3", "smtp")
            for kind in KINDS]


class TimeLimitTest(unittest.TestCase):
    def test_idle(self):
        clients = all_kinds(TIMERS)
        try:
            for c in clients:
                assert_last_words(self, c, [BYE[c.proto]])
                self.assertIn("Idle for too long", c.lines[-1])
        finally:
            for c in clients:
                c.close()

    def test_whole_time_before_login(self):
        # A command every 0.4 s keeps the clients from idling; the whole
        # time bound (2 s here) still ends them.
        clients = all_kinds(DEADLINE)
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3:
                for c in clients:
                    try:
                        c.send("n NOOP\r\n" if c.proto == "imap" else
                               "NOOP\r\n")
                    except (OSError, ssl.SSLError):
                        pass
                time.sleep(0.4)
            for c in clients:
                want = ("Too long without a message." if c.proto == "smtp"
                        else "Too long without logging in.")
                assert_last_words(self, c, [BYE[c.proto]])
                self.assertIn(want, c.lines[-1])
        finally:
            for c in clients:
                c.close()


class ShutdownTest(unittest.TestCase):
    def test_sigterm(self):
        node = ENV.mmnode(name="closedrain", listeners=LISTENERS)
        clients = all_kinds(node)
        try:
            node.proc.send_signal(signal.SIGTERM)
            for c in clients:
                assert_last_words(self, c, [BYE[c.proto]])
                self.assertIn("Server shutting down", c.lines[-1])
        finally:
            for c in clients:
                c.close()
            node.stop()


class DirtyCloseTest(unittest.TestCase):
    def test_close_without_close_notify_is_a_close(self):
        # Many clients close a TLS connection without close_notify: that
        # is a client that closed, not a TLS error.
        for proto in ("imap", "pop3", "smtp"):
            for kind in ("starttls", "implicit"):
                for login in ((False, True) if proto != "smtp" else
                              (False,)):
                    with self.subTest(proto=proto, kind=kind, login=login):
                        src = mf.source_addr()
                        c = Client(NODE, proto, kind, source=src)
                        if login and proto == "imap":
                            c.send("a LOGIN %s %s\r\n" % (ALICE, pw(ALICE)))
                            c.until("a OK")
                        elif login:
                            c.send("USER %s\r\nPASS %s\r\n" % (
                                ALICE, pw(ALICE)))
                            c.until("+OK")
                            c.until("+OK")
                        # Python's close() sends no close_notify.
                        c.close()

                        def closed():
                            return [ln for ln in NODE.log_text().splitlines()
                                    if " proxy close " in ln and
                                    " client=%s:" % src in ln]
                        lines = mf.wait_for(closed, 5)
                        self.assertTrue(lines, "no close logged")
                        # A reset when it left TLS 1.3's session
                        # tickets unread.
                        self.assertRegex(
                            lines[0], r" result=client-(closed|reset) ")


class HandshakeAlertTest(unittest.TestCase):
    def test_protocol_version_alert(self):
        # A client that speaks only TLS 1.1 hears why it is refused.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        for proto, plain_cmd in (("imap", b"s STARTTLS\r\n"),
                                 ("pop3", b"STLS\r\n"),
                                 ("smtp", b"EHLO c\r\nSTARTTLS\r\n")):
            for kind in ("starttls", "implicit"):
                with self.subTest(proto=proto, kind=kind):
                    key = proto + ("s" if kind == "implicit" else "")
                    s = socket.create_connection(
                        (mf.HOST, NODE.port[key]), timeout=mf.IO_TIMEOUT)
                    try:
                        if kind == "starttls":
                            f = s.makefile("rb")
                            f.readline()
                            s.sendall(plain_cmd)
                            while True:
                                ln = f.readline()
                                if not ln or ln[:4] in (
                                        b"s OK", b"+OK ", b"220 "):
                                    break
                        with self.assertRaises(ssl.SSLError) as cm:
                            ctx.wrap_socket(s, server_hostname="localhost")
                        self.assertIn("PROTOCOL_VERSION", str(cm.exception))
                    finally:
                        s.close()


if __name__ == "__main__":
    mf.main()
