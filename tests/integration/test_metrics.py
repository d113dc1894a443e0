"""The node's counters for Prometheus: `listen metrics` answers GET /metrics
in the text exposition format, summed over the workers.

Real sessions (imaplib, poplib, SMTP to Dovecot's LMTP) must move exactly
the counters they should; the gauge of open sessions follows connections
as they open and close; a worker killed with -9 is counted as restarted
and the counters carry on; a directory node adds its store's sizes and
gossip's counters, which follow a user added at another site; other paths
get 404, garbage 400."""

import imaplib
import os
import poplib
import re
import signal
import socket
import sys
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = NODE = None
ALICE = "alice@a.test"      # be1
CAROL = "carol@b.test"      # be2
SENDER = "sender@example.net"
GHOST = "ghost@dead.test"    # on a back end that is down

SAMPLE = re.compile(r'^([a-z_]+)(?:\{([^}]*)\})? (\d+(?:\.\d+)?)$')
LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def pw(u):
    return mf.USERS[u]


def setUpModule():
    global ENV, NODE
    ENV = mf.env()
    NODE = ENV.mmnode(name="metrics", listeners=[
        ("imap", "imap", {}),
        ("pop3", "pop3", {}),
        ("smtp", "smtp", {}),
        ("metrics", "metrics", {}),
    ], backends=[
        ENV.backend_line("be1", lmtp=ENV.dovecots["be1"].lmtp),
        ENV.backend_line("be2", lmtp=ENV.dovecots["be2"].lmtp),
        # Nothing listens there: every session to it fails.
        "bedead 127.0.0.1 imap=%d pop3=%d" % (mf.free_port(),
                                             mf.free_port()),
    ], popmap=mf.POPMAP + ["%s: bedead" % GHOST],
        limits={"auth-failures-per-ip": 1000}, workers=2)
    for d in ENV.dovecots.values():
        d.sync_mailboxes()


def tearDownModule():
    mf.shutdown()


def url(path="/metrics"):
    return "http://%s:%d%s" % (mf.HOST, NODE.port["metrics"], path)


def scrape():
    """{(name, ((label, value), ...)): value}, the format checked on the
    way: HELP and TYPE before a family's samples, every sample well formed
    and given once."""
    with urllib.request.urlopen(url(), timeout=10) as r:
        assert r.status == 200, r.status
        ctype = r.headers.get("Content-Type")
        assert ctype == "text/plain; version=0.0.4", ctype
        text = r.read().decode()
    assert text.endswith("\n"), text[-100:]
    typed, out = set(), {}
    for ln in text.splitlines():
        if ln.startswith("# HELP "):
            continue
        if ln.startswith("# TYPE "):
            name, kind = ln[7:].split(" ")
            assert kind in ("counter", "gauge", "histogram"), ln
            assert name not in typed, "TYPE twice: " + ln
            typed.add(name)
            continue
        m = SAMPLE.match(ln)
        assert m, "bad sample line %r" % ln
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        value = float(value) if "." in value else int(value)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, \
            "sample before its TYPE: " + ln
        key = (name, tuple(sorted(LABEL.findall(labels))))
        assert key not in out, "sample twice: " + ln
        out[key] = value
    return out


def val(s, name, **labels):
    return s.get((name, tuple(sorted(labels.items()))), 0)


def wait_scrape(pred, timeout=5.0):
    """The first scrape for which pred holds (closes are counted when the
    node has seen them), or the last one."""
    last = [None]

    def ok():
        last[0] = scrape()
        return pred(last[0])
    mf.wait_for(ok, timeout, step=0.1)
    return last[0]


class CountersTest(unittest.TestCase):
    def test_sessions_move_their_counters(self):
        s0 = scrape()
        m = imaplib.IMAP4(mf.HOST, NODE.port["imap"], timeout=mf.IO_TIMEOUT)
        m.login(ALICE, pw(ALICE))
        m.select("INBOX")
        m.fetch("1", "(BODY.PEEK[])")
        m.logout()
        m = imaplib.IMAP4(mf.HOST, NODE.port["imap"], timeout=mf.IO_TIMEOUT)
        with self.assertRaises(imaplib.IMAP4.error):
            m.login(ALICE, "wrong password")
        m.logout()
        p = poplib.POP3(mf.HOST, NODE.port["pop3"], timeout=mf.IO_TIMEOUT)
        p.user(CAROL)
        p.pass_(pw(CAROL))
        p.quit()
        data = mf.crlf_message("From: <%s>\nSubject: counted\n\nHi.\n"
                               % SENDER)
        r = mf.smtp_send(mf.HOST, NODE.port["smtp"], SENDER, [ALICE], data)
        self.assertEqual(r[ALICE][0], 250, r)

        def closed(s):
            return (sum(v for (n, l), v in s.items()
                        if n == "mailmesh_session_closes_total") -
                    sum(v for (n, l), v in s0.items()
                        if n == "mailmesh_session_closes_total")) >= 4
        s1 = wait_scrape(closed)

        def d(name, **labels):
            return val(s1, name, **labels) - val(s0, name, **labels)
        self.assertEqual(d("mailmesh_connections_total", proto="imap"), 2)
        self.assertEqual(d("mailmesh_connections_total", proto="pop3"), 1)
        self.assertEqual(d("mailmesh_connections_total", proto="smtp"), 1)
        self.assertEqual(d("mailmesh_logins_total", proto="imap",
                           result="ok"), 1)
        self.assertEqual(d("mailmesh_logins_total", proto="imap",
                           result="authfail"), 1)
        self.assertEqual(d("mailmesh_logins_total", proto="pop3",
                           result="ok"), 1)
        self.assertEqual(d("mailmesh_smtp_messages_total", proto="smtp",
                           result="delivered"), 1)
        closes = sum(v for (n, l), v in s1.items()
                     if n == "mailmesh_session_closes_total") - \
            sum(v for (n, l), v in s0.items()
                if n == "mailmesh_session_closes_total")
        self.assertEqual(closes, 4)
        # The message body went in; a whole message came out over IMAP.
        self.assertGreaterEqual(d("mailmesh_relay_bytes_total", proto="smtp",
                                  direction="in"), len(data))
        self.assertGreater(d("mailmesh_relay_bytes_total", proto="imap",
                             direction="out"), 100)
        self.assertGreater(d("mailmesh_relay_bytes_total", proto="imap",
                             direction="in"), 0)
        # No password anywhere near the counters or the log.
        self.assertNotIn("wrong password", NODE.log_text())

    def test_active_sessions_gauge(self):
        base = val(scrape(), "mailmesh_sessions_active", proto="imap")
        conns = [mf.Conv(NODE.port["imap"]) for _ in range(3)]
        try:
            s = wait_scrape(lambda s: val(s, "mailmesh_sessions_active",
                                          proto="imap") == base + 3)
            self.assertEqual(val(s, "mailmesh_sessions_active",
                                 proto="imap"), base + 3)
        finally:
            for c in conns:
                c.close()
        s = wait_scrape(lambda s: val(s, "mailmesh_sessions_active",
                                      proto="imap") == base)
        self.assertEqual(val(s, "mailmesh_sessions_active", proto="imap"),
                         base)

    def test_worker_restart_counted_and_counters_kept(self):
        s0 = scrape()
        kids = NODE.children()
        self.assertEqual(len(kids), 2, kids)
        os.kill(kids[0], signal.SIGKILL)
        s1 = wait_scrape(lambda s: val(s, "mailmesh_worker_restarts_total")
                         == val(s0, "mailmesh_worker_restarts_total") + 1
                         and len(NODE.children()) == 2, timeout=10)
        self.assertEqual(val(s1, "mailmesh_worker_restarts_total"),
                         val(s0, "mailmesh_worker_restarts_total") + 1)
        self.assertEqual(val(s1, "mailmesh_workers"), 2)
        for k, v in s0.items():
            if k[0].endswith("_total"):
                self.assertGreaterEqual(s1.get(k, 0), v, k)


class DirectoryTest(unittest.TestCase):
    """Two gossiping directory nodes: the agent's figures appear beside
    the workers' and follow the store and the membership."""

    @classmethod
    def setUpClass(cls):
        pa, pb = mf.free_port(), mf.free_port()
        kw = dict(backends=["be1 127.0.0.1 imap=9"],
                  listeners=[("imap", "imap", {}),
                             ("metrics", "metrics", {})])
        cls.a = ENV.gossip_node("dira", "a", "127.0.0.1:%d" % pa, **kw)
        cls.b = ENV.gossip_node("dirb", "b", "127.0.0.1:%d" % pb,
                                peers=["127.0.0.1:%d" % pa], **kw)

    def scrape_of(self, node):
        with urllib.request.urlopen("http://%s:%d/metrics" % (
                mf.HOST, node.port["metrics"]), timeout=10) as r:
            text = r.read().decode()
        return {m.group(1): float(m.group(3)) for m in
                map(SAMPLE.match, text.splitlines()) if m and not
                m.group(2)}

    def wait_value(self, node, name, pred, timeout=15):
        last = {}

        def ok():
            last.update(self.scrape_of(node))
            return name in last and pred(last[name])
        mf.wait_for(ok, timeout, step=0.2)
        return last

    def test_store_and_gossip_figures(self):
        s = self.wait_value(self.a, "mailmesh_gossip_members_alive",
                            lambda v: v == 2)
        self.assertEqual(s.get("mailmesh_gossip_members_alive"), 2, s)
        self.assertEqual(s.get("mailmesh_gossip_members"), 2, s)
        self.assertGreaterEqual(s.get("mailmesh_directory_certificates", 0),
                                2, s)
        self.assertGreater(s.get("mailmesh_directory_store_used_bytes", 0),
                           0, s)
        self.assertGreater(s.get("mailmesh_gossip_messages_sent_total", 0),
                           0, s)
        before_b = self.scrape_of(self.b).get("mailmesh_directory_records", 0)
        before_new = self.scrape_of(self.b).get(
            "mailmesh_gossip_records_new_total", 0)
        self.a.ctl("user", "add", "metered@a.test", "be1").check()
        s = self.wait_value(self.b, "mailmesh_directory_records",
                            lambda v: v == before_b + 1)
        self.assertEqual(s.get("mailmesh_directory_records"), before_b + 1)
        self.assertGreater(s.get("mailmesh_gossip_records_new_total", 0),
                           before_new, s)

    def test_popmap_node_has_no_directory_rows(self):
        text = urllib.request.urlopen(url(), timeout=10).read().decode()
        self.assertNotIn("mailmesh_directory_", text)
        self.assertNotIn("mailmesh_gossip_", text)


class BackendFailureTest(unittest.TestCase):
    def test_down_backend_counted_by_name(self):
        def failures(s):
            return sum(v for (n, l), v in s.items()
                       if n == "mailmesh_backend_failures_total" and
                       dict(l).get("backend") == "bedead" and
                       dict(l).get("proto") == "imap")
        s0 = scrape()
        with mf.Conv(NODE.port["imap"]) as c:
            c.cmd('a LOGIN %s "x"' % GHOST)
            _, t = c.tagged("a")
            self.assertTrue(t.startswith("a NO [UNAVAILABLE]"), t)
        s1 = wait_scrape(lambda s: failures(s) == failures(s0) + 1)
        self.assertEqual(failures(s1), failures(s0) + 1)
        self.assertEqual(val(s1, "mailmesh_logins_total", proto="imap",
                             result="tempfail"),
                         val(s0, "mailmesh_logins_total", proto="imap",
                             result="tempfail") + 1)
        # A wrong password is the client's failure, not the back end's.
        with mf.Conv(NODE.port["imap"]) as c:
            c.cmd('a LOGIN %s "wrong"' % ALICE)
            _, t = c.tagged("a")
            self.assertTrue(t.startswith("a NO"), t)
        s2 = scrape()
        self.assertEqual(sum(v for (n, l), v in s2.items()
                             if n == "mailmesh_backend_failures_total"),
                         sum(v for (n, l), v in s1.items()
                             if n == "mailmesh_backend_failures_total"))


class HttpTest(unittest.TestCase):
    def test_other_path_not_found(self):
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(url("/"), timeout=10)
        self.assertEqual(cm.exception.code, 404)

    def test_query_string_allowed(self):
        with urllib.request.urlopen(url("/metrics?x=1"), timeout=10) as r:
            self.assertEqual(r.status, 200)

    def test_garbage_gets_400(self):
        with socket.create_connection((mf.HOST, NODE.port["metrics"]),
                                      timeout=10) as s:
            s.sendall(b"HELLO\r\n\r\n")
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
        self.assertTrue(data.startswith(b"HTTP/1.0 400"), data)


if __name__ == "__main__":
    unittest.main()
