"""Process life cycle: popmap reload on SIGHUP (good and broken maps),
draining on SIGTERM, worker restart, and config checking with -t."""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
ALICE = "alice@a.test"


def setUpModule():
    global ENV
    ENV = mf.env()


def tearDownModule():
    mf.shutdown()


def pw(u):
    return mf.USERS[u]


def imap_subject(node, user, key="imap"):
    """Log in through NODE; the Subject of message 1, or the error text."""
    m = mf.IMAP4From(mf.HOST, node.port[key])
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


def accepts_sessions(port):
    """True if a new connection gets a greeting."""
    try:
        with mf.Conv(port, timeout=2) as c:
            return c.greeting.startswith("* OK")
    except (mf.Closed, OSError):
        return False


class PopmapReloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = ENV.mmnode(name="reload")

    def tearDown(self):
        self.node.write_popmap(mf.POPMAP)
        self.node.reload()
        mf.wait_for(lambda: imap_subject(self.node, ALICE).startswith(
            mf.hello_subject(ALICE, "be1")), 5, step=0.2)

    def test_reload_moves_user(self):
        self.assertTrue(imap_subject(self.node, ALICE).startswith(
            mf.hello_subject(ALICE, "be1")))
        moved = ["alice@a.test: be2"] + mf.POPMAP[1:]
        self.node.write_popmap(moved)
        self.node.reload()
        want = mf.hello_subject(ALICE, "be2")
        got = mf.wait_for(
            lambda: imap_subject(self.node, ALICE).startswith(want), 5,
            step=0.2)
        self.assertTrue(got, "alice still not on be2 after SIGHUP:\n"
                        + self.node.log_text()[-2000:])
        # POP3 follows the same map.
        p = mf.poplib.POP3(mf.HOST, self.node.port["pop3"],
                           timeout=mf.IO_TIMEOUT)
        p.user(ALICE)
        p.pass_(pw(ALICE))
        self.assertTrue(mf.pop_subject(p, 1)[0].startswith(want))
        p.quit()
        self.assertTrue(self.node.alive())

    def test_broken_popmap_keeps_old_map(self):
        pos = self.node.log_size()
        with open(self.node.popmap_file, "w") as f:
            f.write("alice@a.test: be2\n"
                    "^(unclosed@a\\.test$: be2\n"
                    "this line has no separator\n")
        self.node.reload()
        time.sleep(1.0)
        self.assertTrue(self.node.alive(), self.node.log_text()[-2000:])
        self.assertTrue(imap_subject(self.node, ALICE).startswith(
            mf.hello_subject(ALICE, "be1")))
        self.assertTrue(imap_subject(self.node, "bob@a.test").startswith(
            mf.hello_subject("bob@a.test", "be2")))
        log = mf.wait_for(lambda: "popmap" in self.node.log_since(pos).lower()
                          and self.node.log_since(pos), 3)
        self.assertTrue(log, "no popmap error logged:\n"
                        + self.node.log_since(pos))

    def test_session_survives_reload(self):
        with mf.Conv(self.node.port["imap"]) as c:
            c.cmd("a LOGIN %s %s" % (ALICE, pw(ALICE)))
            _, t = c.tagged("a")
            self.assertTrue(t.startswith("a OK"), t)
            self.node.reload()
            time.sleep(0.5)
            c.cmd("b SELECT INBOX")
            _, t = c.tagged("b")
            self.assertTrue(t.startswith("b OK"), t)
        self.assertTrue(accepts_sessions(self.node.port["imap"]))


class DrainTest(unittest.TestCase):
    def logged_in(self, node):
        c = mf.Conv(node.port["imap"])
        self.addCleanup(c.close)
        c.cmd("a LOGIN %s %s" % (ALICE, pw(ALICE)))
        _, t = c.tagged("a")
        self.assertTrue(t.startswith("a OK"), t)
        return c

    def assert_stops_accepting(self, node):
        t0 = time.monotonic()
        stopped = mf.wait_for(
            lambda: not accepts_sessions(node.port["imap"])
            and not accepts_sessions(node.port["pop3"]), 1.5, step=0.1)
        self.assertTrue(stopped, "still accepting %.1fs after SIGTERM"
                        % (time.monotonic() - t0))

    def test_exit_when_session_ends(self):
        node = ENV.mmnode(name="drain1", timeouts={"drain": "8s"})
        c = self.logged_in(node)
        node.proc.send_signal(signal.SIGTERM)
        self.assert_stops_accepting(node)
        self.assertTrue(node.alive())
        c.cmd("b SELECT INBOX")
        _, t = c.tagged("b")
        self.assertTrue(t.startswith("b OK"), t)
        c.cmd("c LOGOUT")
        c.tagged("c")
        t0 = time.monotonic()
        try:
            rc = node.proc.wait(timeout=4)
        except mf.subprocess.TimeoutExpired:
            self.fail("mmnode did not exit after the last session ended")
        self.assertLess(time.monotonic() - t0, 3)
        self.assertEqual(rc, 0, node.log_text()[-2000:])
        node.stop()

    def test_exit_after_drain_timeout(self):
        node = ENV.mmnode(name="drain2", timeouts={"drain": "3s"})
        c = self.logged_in(node)
        t0 = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        self.assert_stops_accepting(node)
        try:
            node.proc.wait(timeout=8)
        except mf.subprocess.TimeoutExpired:
            self.fail("mmnode still running 8s after SIGTERM (drain 3s)")
        secs = time.monotonic() - t0
        self.assertGreater(secs, 2.5)
        self.assertLess(secs, 6)
        # The idle session was closed.
        c.wait_closed(3)
        node.stop()


class WorkerRestartTest(unittest.TestCase):
    def test_killed_children_are_restarted(self):
        node = ENV.mmnode(name="workers")
        first = mf.wait_for(lambda: len(node.children()) >= 2 and
                            node.children(), 3)
        self.assertTrue(first, "expected at least 2 child processes")
        for pid in first:
            before = set(node.children())
            os.kill(pid, signal.SIGKILL)
            new = mf.wait_for(
                lambda: (set(node.children()) - before) and
                len(node.children()) >= len(before), 5, step=0.1)
            self.assertTrue(new, "child %d not replaced:\n%s"
                            % (pid, node.log_text()[-2000:]))
            self.assertTrue(node.alive())
        self.assertFalse(set(first) & set(node.children()))
        for i in range(12):
            self.assertTrue(imap_subject(node, ALICE).startswith(
                mf.hello_subject(ALICE, "be1")), i)
        for _ in range(4):
            p = mf.poplib.POP3(mf.HOST, node.port["pop3"],
                               timeout=mf.IO_TIMEOUT)
            p.user("bob@a.test")
            p.pass_(pw("bob@a.test"))
            p.quit()
        node.stop()


class PrivilegeDropTest(unittest.TestCase):
    def test_runs_as_configured_user(self):
        if not mf.is_root():
            self.skipTest("needs root")
        import pwd
        nobody = pwd.getpwnam("nobody").pw_uid
        node = ENV.mmnode(name="dropped", user="nobody")
        kids = mf.wait_for(lambda: len(node.children()) >= 2 and
                           node.children(), 3)
        self.assertTrue(kids, "expected at least 2 workers")
        for pid in [node.proc.pid] + kids:
            with open("/proc/%d/status" % pid) as f:
                uids = [ln.split()[1:] for ln in f if ln.startswith("Uid:")]
            # real, effective, saved and filesystem uid: no way back to root
            self.assertEqual(set(int(u) for u in uids[0]), {nobody}, pid)
        # The key is readable by root only and was loaded before the drop.
        key = ENV.tls.key
        self.assertEqual(os.stat(key).st_mode & 0o077, 0)
        with mf.Conv(node.port["imaps"], tls=ENV.tls.client_ctx()) as c:
            self.assertTrue(c.greeting.startswith("* OK"), c.greeting)
        self.assertTrue(imap_subject(node, ALICE).startswith(
            mf.hello_subject(ALICE, "be1")))
        # SIGHUP re-reads the popmap as the unprivileged user.
        node.reload()
        time.sleep(0.3)
        self.assertNotIn("reload-failed", node.log_text())
        node.stop()


class SignalRaceTest(unittest.TestCase):
    def test_reload_while_workers_restart(self):
        """SIGHUP right while workers are being forked must reach only the
        new workers' own handlers: never kill them, never bounce back to
        the parent as another reload."""
        node = ENV.mmnode(name="sigrace")
        mf.wait_for(lambda: len(node.children()) >= 2, 3)
        pos = node.log_size()
        sent = 0
        for _ in range(6):
            for pid in node.children():
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                node.reload()
                sent += 1
                time.sleep(0.0005)
            mf.wait_for(lambda: len(node.children()) >= 2, 5)
        time.sleep(1.5)
        log = node.log_since(pos)
        self.assertNotIn("signal=1 ", log, log[-3000:])
        # Every reload the parent logs is one this test sent.
        self.assertLessEqual(log.count("node reload"), sent, log[-3000:])
        self.assertTrue(imap_subject(node, ALICE).startswith(
            mf.hello_subject(ALICE, "be1")))
        node.stop()


class ConfigCheckTest(unittest.TestCase):
    def check(self, text):
        d = os.path.join(ENV.dir, "confcheck")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "c%d.conf" % len(os.listdir(d)))
        with open(path, "w") as f:
            f.write(text)
        r = mf.run([mf.mmnode_bin(), "-t", "-c", path], timeout=10)
        return path, r.returncode, (r.stdout + r.stderr).decode(
            errors="replace")

    def good_text(self):
        node = mf.Mmnode(ENV, name="confgood")
        return node.config_text()

    def test_good_config(self):
        path, rc, out = self.check(self.good_text())
        self.assertEqual(rc, 0, out)

    def test_bad_configs_name_file_and_line(self):
        good = self.good_text().splitlines()
        cases = {
            "unknown directive": "frobnicate yes",
            "bad listen address": "listen imap 999.1.2.3:143",
            "bad protocol": "listen smtpx 127.0.0.1:2525",
            "bad size": "limit line-length lots",
            "bad duration": "timeout idle forever",
            "unknown backend option": "backend bx 127.0.0.1 imap=1 colour=red",
            "implicit TLS without cert": "listen imaps 127.0.0.1:1993",
        }
        for name, bad in cases.items():
            with self.subTest(case=name):
                lines = good[:3] + [bad] + good[3:]
                path, rc, out = self.check("\n".join(lines) + "\n")
                self.assertNotEqual(rc, 0, out)
                self.assertIn("%s:4:" % path, out)

    def test_missing_file(self):
        r = mf.run([mf.mmnode_bin(), "-t", "-c",
                    os.path.join(ENV.dir, "does-not-exist.conf")], timeout=10)
        self.assertNotEqual(r.returncode, 0)


if __name__ == "__main__":
    mf.main()
