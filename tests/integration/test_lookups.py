"""The directory's answers for Postfix and nginx, asked over raw sockets
of a running mmnode: the socketmap (transport and recipient maps) and
auth_http (IMAP, POP3 and SMTP), for a popmap-only node and a directory
node with a frozen user and a user of another site; pipelined socketmap
requests; malformed netstrings and HTTP requests (an error answer, the
node and other connections unaffected); no password in the log."""

import os
import re
import socket
import sys
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = POPNODE = DIRNODE = None
RELAY_SMTP = None	# lookup-relay smtp port; nothing listens there
ALICE = "alice@a.test"	# be1: LMTP
BOB = "bob@a.test"	# be2: SMTP
CAROL = "carol@b.test"	# directory: owned by site b
DAVE = "dave@be1.test"	# directory: frozen mid-move
ZED = "zed@z.test"	# unknown to mmnode
TINA = "tina@t.test"	# a back end mmnode reaches with TLS
NORA = "nora@n.test"	# a back end named by a DNS name
PETE = "pete@p.test"	# a popmap value that is a host:port
SECRET = "pw-Never-Logged-7%"

LOOKUP_LISTENERS = [
    ("imap", "imap", {}),
    ("socketmap", "socketmap", {}),
    ("auth", "auth-http", {}),
]


def be_port(name, proto):
    d = ENV.dovecots[name]
    return {"imap": d.imap, "pop3": d.pop3, "lmtp": d.lmtp}[proto]


def backends():
    """be1 takes mail by LMTP, be2 by SMTP (the port is Dovecot's LMTP
    one: nothing connects, the lookups only name it)."""
    return [
        ENV.backend_line("be1", lmtp=be_port("be1", "lmtp")),
        ENV.backend_line("be2", smtp=be_port("be2", "lmtp")),
        ENV.backend_line("be1", alias="betls", tls="implicit",
                         ca=ENV.tls.ca, tls_name="localhost"),
        "bename localhost imap=%d pop3=%d lmtp=%d" % (
            be_port("be2", "imap"), be_port("be2", "pop3"),
            be_port("be2", "lmtp")),
    ]


def setUpModule():
    global ENV, POPNODE, DIRNODE, RELAY_SMTP
    ENV = mf.env()
    RELAY_SMTP = mf.free_port()
    POPNODE = ENV.mmnode(
        name="lkpop", listeners=LOOKUP_LISTENERS, backends=backends(),
        popmap=mf.POPMAP + ["%s: betls" % TINA, "%s: bename" % NORA,
                            "%s: 127.0.0.1:2424" % PETE],
        extra=["lookup-relay smtp 127.0.0.1:%d" % RELAY_SMTP])

    node = DIRNODE = ENV.directory_node(
        "lkdir", site="a", start=False, listeners=LOOKUP_LISTENERS,
        backends=backends(),
        extra=["lookup-relay smtp 127.0.0.1:%d" % RELAY_SMTP])
    node.ctl("user", "add", ALICE, "be1").check()
    node.ctl("user", "add", BOB, "be2").check()
    node.ctl("user", "add", DAVE, "be1").check()
    node.ctl("user", "set", DAVE, "be1", "--state", "frozen",
             "--target", "b").check()
    # carol belongs to site b: a site-b key signs her record into this
    # node's store (as in test_directory).
    other = mf.Mmnode(ENV, name="lkdirb", site="b", root=ENV.root_key(),
                      listeners=LOOKUP_LISTENERS, backends=backends())
    other.store = node.store
    other.write_config()
    other.make_key()
    other.ctl("user", "add", CAROL, "be2", direct=True).check()
    node.start()


def tearDownModule():
    mf.shutdown()


# --- clients -----------------------------------------------------------------

def netstring(data):
    if isinstance(data, str):
        data = data.encode()
    return b"%d:%s," % (len(data), data)


class Sockmap:
    """A Postfix-like socketmap client: many requests on one connection."""

    def __init__(self, node):
        self.sock = socket.create_connection(
            (mf.HOST, node.port["socketmap"]), timeout=mf.IO_TIMEOUT)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def reply(self):
        while True:
            m = re.match(rb"(\d+):", self.buf)
            if m:
                n = int(m.group(1))
                end = m.end() + n
                if len(self.buf) > end:
                    assert self.buf[end:end + 1] == b",", self.buf
                    data, self.buf = self.buf[m.end():end], self.buf[end + 1:]
                    return data.decode()
            chunk = self.sock.recv(65536)
            if not chunk:
                raise mf.Closed("socketmap closed; buffered %r" % self.buf)
            self.buf += chunk

    def query(self, name, key):
        self.send(netstring("%s %s" % (name, key)))
        return self.reply()

    def closed(self, timeout=5.0):
        """True once the server has closed the connection."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def nginx_quote(s):
    # nginx escapes what could break the header: space, '%', controls.
    return urllib.parse.quote(s, safe="!#$&'()*+,-./:;<=>?@[]^_`{|}~")


def auth_request(proto, user="", password=SECRET, method="plain",
                 attempt=1, rcpt=None):
    """The head nginx 1.22 sends (ngx_mail_auth_http_create_request)."""
    if proto == "smtp":
        method = "none" if method == "plain" else method
        user = password = ""
    lines = ["GET /auth HTTP/1.0",
             "Host: localhost",
             "Auth-Method: %s" % method,
             "Auth-User: %s" % nginx_quote(user),
             "Auth-Pass: %s" % nginx_quote(password),
             "Auth-Protocol: %s" % proto,
             "Auth-Login-Attempt: %d" % attempt,
             "Client-IP: 192.0.2.9"]
    if rcpt is not None:
        lines += ["Auth-SMTP-Helo: client.example.net",
                  "Auth-SMTP-From: MAIL FROM:<joe@example.net> SIZE=100",
                  "Auth-SMTP-To: %s" % rcpt]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_exchange(node, data, timeout=mf.IO_TIMEOUT):
    """Sends DATA, reads to EOF. (status line, {header: value}, raw)."""
    with socket.create_connection((mf.HOST, node.port["auth"]),
                                  timeout=timeout) as s:
        s.sendall(data)
        raw = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    text = raw.decode("latin-1")
    head = text.split("\r\n\r\n", 1)[0]
    lines = head.split("\r\n")
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip()] = v.strip()
    return lines[0], headers, raw


def auth(node, proto, user=None, **kw):
    status, headers, raw = http_exchange(node, auth_request(
        proto, user or "", **kw))
    assert status == "HTTP/1.0 200 OK", raw
    assert raw.endswith(b"\r\n\r\n"), raw
    return headers


def ok_at(headers, host, port):
    return headers == {"Auth-Status": "OK", "Auth-Server": host,
                       "Auth-Port": str(port)}


TEMP = "Temporary server problem, try again later"


# --- socketmap ---------------------------------------------------------------

class SocketmapPopmapTest(unittest.TestCase):
    """A node with a popmap only: no sites, no directory."""

    def test_transport_lmtp_and_smtp(self):
        with Sockmap(POPNODE) as sm:
            self.assertEqual(sm.query("transport", ALICE),
                             "OK lmtp:inet:127.0.0.1:%d"
                             % be_port("be1", "lmtp"))
            self.assertEqual(sm.query("transport", BOB),
                             "OK smtp:[127.0.0.1]:%d"
                             % be_port("be2", "lmtp"))
            # regex popmap entries; a host:port value gets LMTP.
            self.assertEqual(sm.query("transport", "dave@be1.test"),
                             "OK lmtp:inet:127.0.0.1:%d"
                             % be_port("be1", "lmtp"))
            self.assertEqual(sm.query("transport", PETE),
                             "OK lmtp:inet:127.0.0.1:2424")
            # Postfix asks with the address extension; the user without
            # it is found.
            self.assertEqual(sm.query("transport", "alice+lists@a.test"),
                             "OK lmtp:inet:127.0.0.1:%d"
                             % be_port("be1", "lmtp"))

    def test_transport_notfound(self):
        with Sockmap(POPNODE) as sm:
            self.assertEqual(sm.query("transport", ZED), "NOTFOUND ")
            for key in ("a.test", ".a.test", "@a.test", "alice"):
                self.assertEqual(sm.query("transport", key), "NOTFOUND ",
                                 key)

    def test_recipient(self):
        with Sockmap(POPNODE) as sm:
            self.assertEqual(sm.query("recipient", ALICE), "OK local")
            self.assertEqual(sm.query("recipient", NORA), "OK local")
            # betls takes no mail: a broken route, not an unknown user.
            self.assertEqual(sm.query("recipient", TINA),
                             "TEMP directory unavailable")
            self.assertEqual(sm.query("recipient", ZED), "NOTFOUND ")

    def test_unknown_map_and_bad_request(self):
        with Sockmap(POPNODE) as sm:
            self.assertEqual(sm.query("virtual", ALICE),
                             "PERM unknown map virtual")
            sm.send(netstring("transport"))
            self.assertTrue(sm.reply().startswith("PERM "))
            # The connection goes on after both.
            self.assertTrue(sm.query("transport", ALICE).startswith("OK "))

    def test_pipelined(self):
        keys = [ALICE, ZED, BOB, "x.test", ALICE] * 40
        want = {ALICE: "OK lmtp:inet:127.0.0.1:%d" % be_port("be1", "lmtp"),
                BOB: "OK smtp:[127.0.0.1]:%d" % be_port("be2", "lmtp"),
                ZED: "NOTFOUND ", "x.test": "NOTFOUND "}
        with Sockmap(POPNODE) as sm:
            sm.send(b"".join(netstring("transport " + k) for k in keys))
            got = [sm.reply() for _ in keys]
        self.assertEqual(got, [want[k] for k in keys])

    def test_split_request(self):
        with Sockmap(POPNODE) as sm:
            data = netstring("transport " + ALICE)
            for i in range(len(data)):
                sm.send(data[i:i + 1])
                time.sleep(0.002)
            self.assertTrue(sm.reply().startswith("OK lmtp:"))

    def test_malformed_netstrings(self):
        """An invalid netstring gets PERM and a close; other connections
        and the node carry on."""
        bad = [b"abc", b"12x", b"5:hello;", b"012:transport a,",
               b"99999999999:", b"%d:" % 5000, b":,"]
        with Sockmap(POPNODE) as other:
            self.assertTrue(other.query("transport", ALICE).startswith("OK"))
            for data in bad:
                with Sockmap(POPNODE) as sm:
                    sm.send(data)
                    self.assertEqual(sm.reply(), "PERM invalid netstring",
                                     data)
                    self.assertTrue(sm.closed(), data)
            self.assertTrue(other.query("transport", BOB).startswith("OK"))
        self.assertTrue(POPNODE.alive())

    def test_log_lines(self):
        pos = POPNODE.log_size()
        with Sockmap(POPNODE) as sm:
            sm.query("transport", ALICE)
            sm.query("recipient", ZED)
        log = mf.wait_for(lambda: "map=recipient" in POPNODE.log_since(pos)
                          and POPNODE.log_since(pos), 3)
        self.assertTrue(log)
        self.assertRegex(log, r"lookup socketmap map=transport "
                         r"user=alice@a\.test result=found "
                         r"answer=lmtp:inet:127\.0\.0\.1:\d+ client=")
        self.assertRegex(log, r"lookup socketmap map=recipient "
                         r"user=zed@z\.test result=notfound")


class SocketmapDirectoryTest(unittest.TestCase):
    """A directory node of site a: a frozen user and one of site b."""

    def test_found(self):
        with Sockmap(DIRNODE) as sm:
            self.assertEqual(sm.query("transport", ALICE),
                             "OK lmtp:inet:127.0.0.1:%d"
                             % be_port("be1", "lmtp"))
            self.assertEqual(sm.query("transport", BOB),
                             "OK smtp:[127.0.0.1]:%d"
                             % be_port("be2", "lmtp"))
            self.assertEqual(sm.query("recipient", ALICE), "OK a")

    def test_frozen_defers(self):
        with Sockmap(DIRNODE) as sm:
            self.assertEqual(
                sm.query("transport", DAVE),
                "OK retry:4.2.1 Mailbox is being moved, try again later")
            # Still a known recipient: Postfix takes the mail and defers.
            self.assertEqual(sm.query("recipient", DAVE), "OK a")

    def test_remote_goes_to_relay(self):
        with Sockmap(DIRNODE) as sm:
            self.assertEqual(sm.query("transport", CAROL),
                             "OK smtp:[127.0.0.1]:%d" % RELAY_SMTP)
            self.assertEqual(sm.query("recipient", CAROL), "OK b")

    def test_unknown(self):
        with Sockmap(DIRNODE) as sm:
            self.assertEqual(sm.query("transport", ZED), "NOTFOUND ")
            self.assertEqual(sm.query("recipient", ZED), "NOTFOUND ")


# --- auth_http ---------------------------------------------------------------

class AuthHttpPopmapTest(unittest.TestCase):

    def test_imap_pop3_found(self):
        self.assertTrue(ok_at(auth(POPNODE, "imap", ALICE), "127.0.0.1",
                              be_port("be1", "imap")))
        self.assertTrue(ok_at(auth(POPNODE, "pop3", BOB), "127.0.0.1",
                              be_port("be2", "pop3")))
        self.assertTrue(ok_at(auth(POPNODE, "imap", "Alice@A.test"),
                              "127.0.0.1", be_port("be1", "imap")))
        # Escapes are decoded before the lookup.
        status, headers, raw = http_exchange(POPNODE, auth_request(
            "imap", ALICE).replace(b"Auth-User: alice@a.test",
                                   b"Auth-User: alice%40a%2etest"))
        self.assertTrue(ok_at(headers, "127.0.0.1", be_port("be1", "imap")),
                        raw)

    def test_unknown_like_bad_password(self):
        # To this node's own IMAP listener, which refuses the login the
        # way a back end refuses a wrong password.
        self.assertTrue(ok_at(auth(POPNODE, "imap", ZED), "127.0.0.1",
                              POPNODE.port["imap"]))
        # No POP3 listener to send it to: the words and the wait of a
        # wrong password at nginx.
        h = auth(POPNODE, "pop3", "nobody@nowhere.test")
        self.assertEqual(h, {"Auth-Status": "Invalid login or password",
                             "Auth-Wait": "3"})
        # Past the attempt limit there is no wait: nginx closes.
        self.assertEqual(auth(POPNODE, "pop3", ZED, attempt=20),
                         {"Auth-Status": "Invalid login or password"})

    def test_tls_backend_tempfail(self):
        self.assertEqual(auth(POPNODE, "imap", TINA),
                         {"Auth-Status": TEMP, "Auth-Wait": "1"})

    def test_dns_name_resolved(self):
        h = auth(POPNODE, "imap", NORA)
        self.assertEqual(h.get("Auth-Status"), "OK", h)
        self.assertIn(h.get("Auth-Server"), ("127.0.0.1", "::1"), h)
        self.assertEqual(h.get("Auth-Port"), str(be_port("be2", "imap")))

    def test_apop_cannot_be_answered(self):
        self.assertEqual(auth(POPNODE, "pop3", ALICE, method="apop"),
                         {"Auth-Status": TEMP, "Auth-Wait": "1"})

    def test_smtp(self):
        # An LMTP back end: nginx speaks SMTP, so the node's own listener.
        self.assertTrue(ok_at(auth(POPNODE, "smtp",
                                   rcpt="RCPT TO:<%s>" % ALICE),
                              "127.0.0.1", RELAY_SMTP))
        self.assertTrue(ok_at(auth(POPNODE, "smtp",
                                   rcpt="rcpt to: <%s> NOTIFY=NEVER" % BOB),
                              "127.0.0.1", be_port("be2", "lmtp")))
        unknown = {"Auth-Status": "User unknown",
                   "Auth-Error-Code": "550 5.1.1", "Auth-Wait": "1"}
        self.assertEqual(auth(POPNODE, "smtp", rcpt="RCPT TO:<%s>" % ZED),
                         unknown)
        self.assertEqual(auth(POPNODE, "smtp", rcpt="RCPT TO:<>"), unknown)
        # SMTP AUTH would need the password checked: not answered here.
        h = auth(POPNODE, "smtp", method="login", rcpt=None)
        self.assertEqual(h.get("Auth-Status"), TEMP, h)
        self.assertEqual(h.get("Auth-Error-Code"), "451 4.3.0", h)

    def test_bad_requests(self):
        """400 and a close for each; a slow good request on another
        connection is answered meanwhile; the node carries on."""
        bad = [b"garbage\r\n\r\n",
               b"GET /auth HTTP/1.0\n\n",
               b"POST /auth HTTP/1.0\r\n\r\n",
               auth_request("nntp", ALICE),
               auth_request("imap", "a b@a.test").replace(b"a%20b",
                                                          b"a%zzb"),
               auth_request("imap", ALICE).replace(
                   b"Auth-Login-Attempt: 1", b"Auth-Login-Attempt: x"),
               auth_request("imap", ALICE).replace(
                   b"\r\n\r\n", b"\r\nAuth-User: mallory\r\n\r\n"),
               b"GET /auth HTTP/1.0\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n",
               b"GET /auth HTTP/1.0\r\n" + b"X-H: v\r\n" * 100 + b"\r\n"]
        slow = socket.create_connection((mf.HOST, POPNODE.port["auth"]),
                                        timeout=mf.IO_TIMEOUT)
        good = auth_request("imap", ALICE)
        try:
            slow.sendall(good[:40])
            for data in bad:
                status, headers, raw = http_exchange(POPNODE, data)
                self.assertEqual(status, "HTTP/1.0 400 Bad Request",
                                 (data[:80], raw))
                self.assertNotIn("Auth-Status", headers)
            slow.sendall(good[40:])
            raw = b""
            while True:
                chunk = slow.recv(4096)
                if not chunk:
                    break
                raw += chunk
            self.assertIn(b"Auth-Status: OK\r\n", raw)
        finally:
            slow.close()
        self.assertTrue(POPNODE.alive())
        self.assertTrue(ok_at(auth(POPNODE, "imap", ALICE), "127.0.0.1",
                              be_port("be1", "imap")))

    def test_request_timeout(self):
        """A head that never completes is closed after the read timeout
        (10 s) without an answer."""
        with socket.create_connection((mf.HOST, POPNODE.port["auth"]),
                                      timeout=20) as s:
            s.sendall(b"GET /auth HTTP/1.0\r\nAuth-Method: plain\r\n")
            t0 = time.monotonic()
            self.assertEqual(s.recv(4096), b"")
            self.assertLess(time.monotonic() - t0, 15)

    def test_password_never_logged(self):
        pos = POPNODE.log_size()
        auth(POPNODE, "imap", ALICE, password=SECRET)
        auth(POPNODE, "imap", ZED, password=SECRET)
        log = mf.wait_for(lambda: POPNODE.log_since(pos).count(
            "lookup auth-http") >= 2 and POPNODE.log_since(pos), 3)
        self.assertTrue(log)
        self.assertNotIn(SECRET, log)
        self.assertNotIn(nginx_quote(SECRET), log)
        self.assertRegex(log, r"lookup auth-http proto=imap "
                         r"user=alice@a\.test result=found backend=be1 "
                         r"server=127\.0\.0\.1:\d+ answer=ok client=\S+ "
                         r"origin=192\.0\.2\.9")
        self.assertIn("user=zed@z.test result=notfound "
                      "reason=unknown-via-relay", log)


class AuthHttpDirectoryTest(unittest.TestCase):

    def test_found(self):
        self.assertTrue(ok_at(auth(DIRNODE, "imap", ALICE), "127.0.0.1",
                              be_port("be1", "imap")))

    def test_frozen(self):
        self.assertEqual(auth(DIRNODE, "imap", DAVE),
                         {"Auth-Status": TEMP, "Auth-Wait": "1"})
        self.assertEqual(auth(DIRNODE, "pop3", DAVE),
                         {"Auth-Status": TEMP, "Auth-Wait": "1"})
        self.assertEqual(auth(DIRNODE, "smtp", rcpt="RCPT TO:<%s>" % DAVE),
                         {"Auth-Status":
                          "Mailbox is being moved, try again later",
                          "Auth-Error-Code": "450 4.2.1", "Auth-Wait": "1"})

    def test_remote(self):
        # IMAP: the node's own imap listener (the default lookup relay),
        # which carries the session to site b.
        self.assertTrue(ok_at(auth(DIRNODE, "imap", CAROL), "127.0.0.1",
                              DIRNODE.port["imap"]))
        self.assertTrue(ok_at(auth(DIRNODE, "smtp",
                                   rcpt="RCPT TO:<%s>" % CAROL),
                              "127.0.0.1", RELAY_SMTP))
        # No pop3 listener and no lookup-relay pop3: nowhere to send it.
        self.assertEqual(auth(DIRNODE, "pop3", CAROL),
                         {"Auth-Status": TEMP, "Auth-Wait": "1"})

    def test_unknown(self):
        self.assertTrue(ok_at(auth(DIRNODE, "imap", ZED), "127.0.0.1",
                              DIRNODE.port["imap"]))


class ZDrainTest(unittest.TestCase):
    """Last: SIGTERM closes an idle socketmap connection (Postfix
    reconnects elsewhere)."""

    def test_idle_socketmap_closed_on_sigterm(self):
        node = ENV.mmnode(name="lkdrain", listeners=LOOKUP_LISTENERS,
                          backends=backends())
        with Sockmap(node) as sm:
            self.assertTrue(sm.query("transport", ALICE).startswith("OK"))
            node.stop_begin()
            self.assertTrue(sm.closed(timeout=5), node.log_text()[-2000:])
        node.stop_wait()


if __name__ == "__main__":
    mf.main()
