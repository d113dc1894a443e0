"""The signed directory end to end: keys and certificates made with mmctl,
users provisioned with mmctl (user add, import csv, import popmap) and
routed by a running mmnode to real Dovecot back ends; changes that take
effect on the next login without a restart; deleted, frozen and remote
users; show/list/JSON output; export/import round trip; verify; the checks
a node makes on its key before it starts; the control socket; bad and large
imports."""

import json
import os
import re
import stat
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
ALICE = "alice@a.test"
BOB = "bob@a.test"
CAROL = "carol@b.test"
DAVE = "dave@be1.test"
ERIN = "erin@be2.test"
ZED = "zed@z.test"
WRONG = "not-the-password"
BULK_USERS = 10000


def setUpModule():
    global ENV
    ENV = mf.env()


def tearDownModule():
    mf.shutdown()


def pw(u):
    return mf.USERS[u]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def imap_subject(node, user, password=None):
    """Log in through NODE; the Subject of message 1, or the error text."""
    m = mf.IMAP4From(mf.HOST, node.port["imap"], source=mf.source_addr())
    try:
        m.login(user, password or pw(user))
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


def pop_subject(node, user):
    p = mf.poplib.POP3(mf.HOST, node.port["pop3"], timeout=mf.IO_TIMEOUT)
    try:
        p.user(user)
        p.pass_(pw(user))
        s = mf.pop_subject(p, 1)[0]
        p.quit()
        return s
    except (mf.poplib.error_proto, OSError) as e:
        return "error: %s" % e


def imap_login_reply(node, user, password):
    """The tagged LOGIN reply without its tag, from a fresh address."""
    with mf.Conv(node.port["imap"], source=mf.source_addr()) as c:
        c.cmd("a LOGIN %s %s" % (mf.imap_quote(user), mf.imap_quote(password)))
        _, t = c.tagged("a")
        return t.split(" ", 1)[1]


def pop_login_reply(node, user, password):
    """(reply to USER, reply to PASS or None when USER was refused)."""
    with mf.Conv(node.port["pop3"], source=mf.source_addr()) as c:
        c.cmd("USER " + user)
        r1 = c.line()
        if not r1.startswith("+OK"):
            return r1, None
        c.cmd("PASS " + password)
        return r1, c.line()


def starts(subject, user, backend):
    return subject.startswith(mf.hello_subject(user, backend))


class DirectoryRoutingTest(unittest.TestCase):
    """One node of site a; users provisioned before it starts (mmctl works
    on the store directly) and changed while it runs (over the socket)."""

    @classmethod
    def setUpClass(cls):
        # Logins of a frozen user wait this long (test_hold.py has the
        # rest), then get a temporary failure.
        node = cls.node = ENV.directory_node(
            "dira", site="a", start=False, timeouts={"login-hold": "1s"})
        # No node runs: mmctl writes the store itself.
        assert not os.path.exists(node.control_socket)
        cls.direct_add = node.ctl("user", "add", ALICE, "be1").check()
        csv = write(os.path.join(node.dir, "users.csv"),
                    "user,backend,state\n%s,be2,active\n%s,be2\n"
                    % (BOB, ERIN))
        cls.csv_import = node.ctl("import", "csv", csv).check()
        pm = write(os.path.join(node.dir, "users.popmap"),
                   "# a Perdition popmap\n%s: be1\n" % DAVE)
        cls.popmap_import = node.ctl("import", "popmap", pm).check()
        # carol belongs to site b: a site-b node key, certified by the same
        # root, signs her record into this store.
        other = cls.other = mf.Mmnode(ENV, name="dirb", site="b",
                                      root=ENV.root_key())
        other.store = node.store
        other.write_config()
        other.make_key()
        cls.remote_add = other.ctl("user", "add", CAROL, "be2",
                                   direct=True).check()
        node.start()

    def test_a_provisioned_users_routed(self):
        for user, be in ((ALICE, "be1"), (BOB, "be2"), (ERIN, "be2"),
                         (DAVE, "be1")):
            with self.subTest(user=user):
                s = imap_subject(self.node, user)
                self.assertTrue(starts(s, user, be), "%s: %s\n%s" % (
                    user, s, self.node.log_text()[-2000:]))
                s = pop_subject(self.node, user)
                self.assertTrue(starts(s, user, be), "%s: %s" % (user, s))
        self.assertIn("stored=2", self.csv_import.out, self.csv_import)
        self.assertIn("stored=1", self.popmap_import.out, self.popmap_import)

    def test_b_change_takes_effect_without_restart(self):
        node = self.node
        pid = node.proc.pid
        kids = sorted(mf.wait_for(lambda: len(node.children()) >= 2 and
                                  node.children(), 3) or [])
        self.assertTrue(kids)
        self.assertTrue(starts(imap_subject(node, ALICE), ALICE, "be1"))
        try:
            t0 = time.monotonic()
            r = node.ctl("user", "set", ALICE, "be2")
            self.assertEqual(r.rc, 0, r)
            # The very next login goes to be2.
            s = imap_subject(node, ALICE)
            secs = time.monotonic() - t0
            self.assertTrue(starts(s, ALICE, "be2"), s)
            self.assertTrue(starts(pop_subject(node, ALICE), ALICE, "be2"))
            print("\n  user set -> next login on be2 in %.3f s" % secs,
                  file=sys.stderr)
            self.assertEqual(node.proc.pid, pid)
            self.assertTrue(node.alive())
            self.assertEqual(sorted(node.children()), kids,
                             "workers changed: " + node.log_text()[-2000:])
            rec = mf.parse_record(node.ctl("user", "show", ALICE).check().out)
            self.assertEqual(rec.get("backend"), "be2", rec)
            self.assertEqual(rec.get("seq"), "2", rec)
        finally:
            node.ctl("user", "set", ALICE, "be1")
        self.assertTrue(starts(imap_subject(node, ALICE), ALICE, "be1"))
        self.assertEqual(sorted(node.children()), kids)

    def test_deleted_user_refused_like_wrong_password(self):
        node = self.node
        node.ctl("user", "add", ZED, "be2").check()
        self.assertTrue(starts(imap_subject(node, ZED), ZED, "be2"))
        r = node.ctl("user", "del", ZED)
        self.assertEqual(r.rc, 0, r)
        deleted = imap_login_reply(node, ZED, pw(ZED))
        wrong = imap_login_reply(node, ALICE, WRONG)
        self.assertTrue(wrong.startswith("NO [AUTHENTICATIONFAILED]"), wrong)
        self.assertEqual(deleted, wrong)
        self.assertEqual(pop_login_reply(node, ZED, pw(ZED)),
                         pop_login_reply(node, ALICE, WRONG))
        r = node.ctl("user", "show", ZED)
        self.assertEqual(r.rc, 1, r)
        # A name never seen is refused the same way.
        self.assertEqual(imap_login_reply(node, "nobody@nowhere.test", WRONG),
                         wrong)

    def test_user_changes_refused_with_reason(self):
        node = self.node
        cases = [
            (("user", "add", ALICE, "be1"), 1, "exists"),
            (("user", "add", "new@a.test", "nosuch"), 1,
             "is not a back end of site a"),
            (("user", "add", "bad name@a.test", "be1"), 1,
             "is not a valid user name"),
            (("user", "set", "ghost@a.test", "be1"), 1,
             "no such user (create it with user add)"),
            (("user", "set", ALICE, "be1", "--state", "sleepy"), 2,
             "active, moving or frozen"),
            (("user", "del", "ghost@a.test"), 1, "no such user"),
        ]
        for args, rc, why in cases:
            r = node.ctl(*args)
            self.assertEqual(r.rc, rc, (args, r))
            self.assertIn(why, r.err, (args, r))
        # None of them touched the store: alice is where she was.
        rec = mf.parse_record(node.ctl("user", "show", ALICE).out)
        self.assertEqual(rec.get("state"), "active", rec)
        r = node.ctl("user", "show", "ghost@a.test")
        self.assertEqual(r.rc, 1, r)

    def assert_tempfail(self, user):
        r = imap_login_reply(self.node, user, pw(user))
        self.assertTrue(r.startswith("NO [UNAVAILABLE]"), r)
        u, p = pop_login_reply(self.node, user, pw(user))
        got = p if p is not None else u
        self.assertTrue(got.startswith("-ERR [SYS/TEMP]") or
                        got.startswith("-ERR [IN-USE]"), (u, p))

    def test_frozen_user_tempfail(self):
        node = self.node
        try:
            # Frozen is a step of a move: it names the site moved to.
            r = node.ctl("user", "set", DAVE, "be1", "--state", "frozen")
            self.assertEqual(r.rc, 2, r)
            self.assertIn("--target", r.err, r)
            r = node.ctl("user", "set", DAVE, "be1", "--state", "frozen",
                         "--target", "b")
            self.assertEqual(r.rc, 0, r)
            rec = mf.parse_record(node.ctl("user", "show", DAVE).out)
            self.assertEqual(rec.get("state"), "frozen", rec)
            self.assertEqual(rec.get("target_site"), "b", rec)
            self.assertEqual(rec.get("site"), "a", rec)
            t0 = time.monotonic()
            self.assertTrue(imap_subject(node, DAVE).startswith("error"))
            self.assertGreaterEqual(time.monotonic() - t0, 0.9)
            self.assert_tempfail(DAVE)
        finally:
            r = node.ctl("user", "set", DAVE, "be1", "--state", "active")
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(starts(imap_subject(node, DAVE), DAVE, "be1"))

    def test_other_site_tempfail(self):
        self.assertEqual(self.remote_add.rc, 0, self.remote_add)
        rec = mf.parse_record(self.node.ctl("user", "show", CAROL).out)
        self.assertEqual(rec.get("site"), "b", rec)
        self.assert_tempfail(CAROL)
        # Site a may not sign for a user site b owns.
        r = self.node.ctl("user", "set", CAROL, "be1")
        self.assertNotEqual(r.rc, 0, r)
        rec = mf.parse_record(self.node.ctl("user", "show", CAROL).out)
        self.assertEqual(rec.get("backend"), "be2", rec)
        self.assertEqual(rec.get("site"), "b", rec)

    def test_show_list_json(self):
        node = self.node
        r = node.ctl("user", "show", ALICE)
        self.assertEqual(r.rc, 0, r)
        rec = mf.parse_record(r.out)
        for k in ("user", "site", "backend", "state", "epoch", "seq"):
            self.assertIn(k, rec, r)
        self.assertEqual(rec["user"], ALICE)
        self.assertEqual(rec["site"], "a")
        self.assertEqual(rec["state"], "active")
        self.assertEqual(rec["epoch"], "1")
        self.assertGreaterEqual(int(rec["seq"]), 1)
        # Case does not matter in a user name.
        r2 = node.ctl("user", "show", ALICE.upper())
        self.assertEqual(r2.rc, 0, r2)
        self.assertEqual(mf.parse_record(r2.out).get("user"), ALICE)

        j = node.ctl("user", "show", ALICE, json=True)
        self.assertEqual(j.rc, 0, j)
        obj = j.json()
        self.assertEqual(obj["user"], ALICE)
        self.assertEqual(obj["site"], "a")
        self.assertEqual(obj["backend"], rec["backend"])
        self.assertEqual(obj["state"], "active")
        self.assertIsInstance(obj["epoch"], int)
        self.assertIsInstance(obj["seq"], int)

        r = node.ctl("user", "list")
        self.assertEqual(r.rc, 0, r)
        for u in (ALICE, BOB, CAROL, DAVE, ERIN):
            self.assertIn(u, r.out)
        j = node.ctl("user", "list", json=True)
        self.assertEqual(j.rc, 0, j)
        rows = j.json()
        self.assertIsInstance(rows, list)
        by_user = {x["user"]: x for x in rows}
        self.assertEqual(by_user[BOB]["backend"], "be2")
        self.assertEqual(by_user[CAROL]["site"], "b")
        self.assertNotIn(ZED, by_user)        # deleted: no tombstones
        j = node.ctl("user", "list", "--site", "b", json=True)
        self.assertEqual(j.rc, 0, j)
        self.assertEqual([x["user"] for x in j.json()], [CAROL])

        j = node.ctl("user", "show", "nobody@nowhere.test", json=True)
        self.assertEqual(j.rc, 1, j)
        self.assertIn("error", j.json())
        for args in (("stats",), ("keys", "list")):
            j = node.ctl(*args, json=True)
            self.assertEqual(j.rc, 0, j)
            j.json()

    def test_lookup(self):
        r = self.node.ctl("lookup", BOB, "imap")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("be2", r.out)
        r = self.node.ctl("lookup", "nobody@nowhere.test", "imap")
        self.assertEqual(r.rc, 1, r)

    def test_both_paths(self):
        # Direct: the users added before the node started were written by
        # mmctl itself (no socket existed then).
        self.assertEqual(self.direct_add.rc, 0, self.direct_add)
        # Socket: a config whose store path is useless but whose control
        # socket is the node's still answers, so the answer came from the
        # node.
        text = open(self.node.conf).read()
        text = re.sub(r"(?m)^directory .*$",
                      "directory " + os.path.join(self.node.dir, "no-store"),
                      text)
        conf = write(os.path.join(self.node.dir, "via-socket.conf"), text)
        r = mf.mmctl(["user", "show", BOB], conf=conf)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(mf.parse_record(r.out).get("backend"), "be2")
        r = mf.mmctl(["user", "show", BOB], conf=conf, direct=True)
        self.assertNotEqual(r.rc, 0, r)
        self.assertNotEqual(r.err.strip(), "", r)

    def test_control_socket_mode(self):
        st = os.stat(self.node.control_socket)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        mode = stat.S_IMODE(st.st_mode)
        self.assertEqual(mode & 0o007, 0, "control socket mode %o" % mode)
        self.assertEqual(mode & ~0o660, 0, "control socket mode %o" % mode)

    def test_verify_good_store(self):
        r = self.node.ctl("verify")
        self.assertEqual(r.rc, 0, r)
        j = self.node.ctl("verify", json=True)
        self.assertEqual(j.rc, 0, j)
        self.assertEqual(j.json()["bad"], 0, j)

    def test_z_node_still_healthy(self):
        self.assertTrue(self.node.alive(), self.node.log_text()[-2000:])
        self.assertTrue(starts(imap_subject(self.node, BOB), BOB, "be2"))


def users_of_csv(text):
    out = {}
    for ln in text.splitlines()[1:]:
        if ln.strip():
            u, b, s = ln.split(",")
            out[u] = (b, s)
    return out


class ImportExportTest(unittest.TestCase):
    """Stores of their own; nothing here needs a back end."""

    def test_export_import_round_trip(self):
        src = ENV.directory_node("exp", site="a", start=False)
        csv = write(os.path.join(src.dir, "in.csv"),
                    "".join("u%03d@rt.test,%s\n" % (i, "be%d" % (i % 2 + 1))
                            for i in range(50)))
        src.ctl("import", "csv", csv).check()
        src.ctl("user", "add", "extra@rt.test", "be2").check()
        src.ctl("user", "set", "u007@rt.test", "be2").check()
        src.ctl("user", "add", "gone@rt.test", "be1").check()
        src.ctl("user", "del", "gone@rt.test").check()
        exported = src.ctl("export", "csv")
        self.assertEqual(exported.rc, 0, exported)
        first = users_of_csv(exported.out)
        self.assertEqual(len(first), 51, exported.out)
        self.assertEqual(first["u007@rt.test"], ("be2", "active"))
        self.assertNotIn("gone@rt.test", first)
        dump = write(os.path.join(src.dir, "export.csv"), exported.out)

        dst = ENV.directory_node("imp", site="a", start=False)
        r = dst.ctl("import", "csv", dump)
        self.assertEqual(r.rc, 0, r)
        again = dst.ctl("export", "csv")
        self.assertEqual(again.rc, 0, again)
        self.assertEqual(users_of_csv(again.out), first)
        # The popmap export says the same.
        pm = dst.ctl("export", "popmap").check().out
        got = dict(ln.split(": ", 1) for ln in pm.splitlines() if ln)
        self.assertEqual(got, {u: b for u, (b, _) in first.items()})
        # Importing the same again changes nothing.
        r = dst.ctl("import", "csv", dump)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("stored=0", r.out, r)
        v = dst.ctl("verify")
        self.assertEqual(v.rc, 0, v)

    def test_bad_csv_line(self):
        node = ENV.directory_node("badcsv", site="a", start=False)
        f = write(os.path.join(node.dir, "bad.csv"),
                  "user,backend\n"
                  "good1@bad.test,be1\n"
                  "this line has no comma\n"
                  "good2@bad.test,be2\n"
                  "x@bad.test,no-such-backend\n")
        r = node.ctl("import", "csv", f)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("%s:3:" % f, r.err, r)
        self.assertIn("%s:5:" % f, r.err, r)
        self.assertNotIn("%s:2:" % f, r.err, r)
        # A file with errors imports nothing.
        r = node.ctl("user", "show", "good1@bad.test")
        self.assertEqual(r.rc, 1, r)
        r = node.ctl("import", "csv", os.path.join(node.dir, "missing.csv"))
        self.assertEqual(r.rc, 1, r)
        self.assertIn("missing.csv", r.err)
        r = node.ctl("user", "add", ALICE, "no-such-backend")
        self.assertEqual(r.rc, 1, r)
        r = node.ctl("user", "frobnicate")
        self.assertEqual(r.rc, 2, r)

    def test_bulk_import(self):
        node = ENV.directory_node("bulk", site="a")
        f = os.path.join(node.dir, "bulk.csv")
        with open(f, "w") as out:
            out.write("user,backend,state\n")
            for i in range(BULK_USERS):
                out.write("user%05d@bulk.test,be%d,active\n" % (i, i % 2 + 1))
        r = node.ctl("import", "csv", f, timeout=300)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("stored=%d" % BULK_USERS, r.out, r)
        print("\n  import of %d users through the node: %.2f s, %.0f users/s"
              % (BULK_USERS, r.seconds, BULK_USERS / r.seconds),
              file=sys.stderr)
        st = node.ctl("stats", json=True)
        self.assertEqual(st.rc, 0, st)
        self.assertEqual(st.json()["users"], BULK_USERS, st)
        rec = mf.parse_record(node.ctl("user", "show",
                                       "user09999@bulk.test").check().out)
        self.assertEqual(rec.get("backend"), "be2", rec)
        ex = node.ctl("export", "csv", timeout=120)
        self.assertEqual(ex.rc, 0, ex)
        self.assertEqual(len(users_of_csv(ex.out)), BULK_USERS)
        t0 = time.monotonic()
        v = node.ctl("verify", timeout=300)
        print("  verify of %d records: %.2f s" % (
            BULK_USERS, time.monotonic() - t0), file=sys.stderr)
        self.assertEqual(v.rc, 0, v)
        self.assertTrue(node.alive())
        # Direct mode, no node: the same file again into a fresh store.
        node2 = ENV.directory_node("bulk2", site="a", start=False)
        r = node2.ctl("import", "csv", f, timeout=300)
        self.assertEqual(r.rc, 0, r)
        print("  import of %d users on the store directly: %.2f s, "
              "%.0f users/s" % (BULK_USERS, r.seconds,
                                BULK_USERS / r.seconds), file=sys.stderr)


class CorruptionTest(unittest.TestCase):
    def test_flipped_byte_found_by_verify(self):
        node = ENV.directory_node("corrupt", site="a", start=False)
        victim = b"victim@corrupt.test"
        node.ctl("user", "add", "first@corrupt.test", "be1").check()
        node.ctl("user", "add", victim.decode(), "be1").check()
        node.ctl("user", "add", "last@corrupt.test", "be2").check()
        v = node.ctl("verify")
        good_ok = v.rc == 0
        # In the record body the user name is followed by the site and the
        # back end, each a msgpack fixstr.
        pattern = (bytes([0xa0 | len(victim)]) + victim + b"\xa1a\xa3be1")
        path = os.path.join(node.store, "data.mdb")
        with open(path, "rb") as f:
            data = bytearray(f.read())
        hits = [m.start() for m in re.finditer(re.escape(pattern), data)]
        self.assertTrue(hits, "record bytes not found in data.mdb")
        for h in hits:
            data[h + len(pattern) - 1] ^= 0x08       # "be1" -> "be9"
        with open(path, "r+b") as f:
            f.write(data)
        v = node.ctl("verify")
        self.assertEqual(v.rc, 1, v)
        self.assertIn(victim.decode(), v.out + v.err, v)
        j = node.ctl("verify", json=True)
        self.assertEqual(j.rc, 1, j)
        obj = j.json()
        self.assertGreaterEqual(obj["bad"], 1, j)
        self.assertTrue(any(victim.decode() in json.dumps(x)
                            for x in obj["faults"]), j)
        self.assertTrue(good_ok, "verify failed on the good store already")


class PrivilegeDropTest(unittest.TestCase):
    """A node that drops root: the store must belong to its user; the
    control socket is then owned by that user and group."""

    def test_directory_as_nobody(self):
        if not mf.is_root():
            self.skipTest("needs root")
        import grp
        import pwd
        nobody = pwd.getpwnam("nobody").pw_uid
        nogroup = grp.getgrnam("nogroup").gr_gid
        node = ENV.directory_node("dirnobody", site="a", start=False,
                                  user="nobody")
        # The root's public key, where a node keeps it (the root's own
        # directory is private).
        node.root_pub = os.path.join(node.dir, "root.pub")
        with open(ENV.root_key().pub) as src, open(node.root_pub, "w") as dst:
            dst.write(src.read())
        node.write_config()
        node.ctl("user", "add", ALICE, "be1").check()
        # Made by root: the node refuses, and says how to fix it.
        rc, out = node.run_once(timeout=10)
        self.assertIsNotNone(rc, out)
        self.assertNotEqual(rc, 0, out)
        self.assertIn(node.store, out)
        self.assertIn("nobody", out)
        for dirpath, _, files in os.walk(node.store):
            os.chown(dirpath, nobody, nogroup)
            for f in files:
                os.chown(os.path.join(dirpath, f), nobody, nogroup)
        node.start()
        kids = mf.wait_for(lambda: len(node.children()) >= 2 and
                           node.children(), 3)
        self.assertTrue(kids)
        for pid in kids:
            with open("/proc/%d/status" % pid) as f:
                uid = [ln.split()[1] for ln in f if ln.startswith("Uid:")]
            self.assertEqual(int(uid[0]), nobody, pid)
        st = os.stat(node.control_socket)
        self.assertEqual((st.st_uid, st.st_gid), (nobody, nogroup))
        self.assertEqual(stat.S_IMODE(st.st_mode) & 0o007, 0)
        self.assertTrue(starts(imap_subject(node, ALICE), ALICE, "be1"))
        r = node.ctl("user", "add", BOB, "be2")
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(starts(imap_subject(node, BOB), BOB, "be2"))
        r = node.ctl("user", "set", ALICE, "be2")
        self.assertEqual(r.rc, 0, r)
        self.assertTrue(starts(imap_subject(node, ALICE), ALICE, "be2"))
        node.stop()


class NodeKeyRefusalTest(unittest.TestCase):
    """mmnode checks its key before it starts anything."""

    def refused(self, node, *words):
        # mmnode -t finds the same fault before anything starts.
        t = mf.run([mf.mmnode_bin(), "-t", "-c", node.conf], timeout=10)
        self.assertNotEqual(t.returncode, 0, t)
        self.assertIn("certif" if "certif" in repr(words) else "",
                      (t.stdout + t.stderr).decode(errors="replace"))
        rc, out = node.run_once(timeout=10)
        self.assertIsNotNone(rc, "mmnode kept running:\n" + out[-2000:])
        self.assertNotEqual(rc, 0, out)
        low = out.lower()
        for w in words:
            if isinstance(w, tuple):
                self.assertTrue(any(x.lower() in low for x in w),
                                "none of %r in:\n%s" % (w, out))
            else:
                self.assertIn(w.lower(), low, out)
        self.assertFalse(node.control_socket_ready())
        first = [ln for ln in out.splitlines() if ln.strip()]
        print("\n  refused: %s" % (first[-1] if first else ""),
              file=sys.stderr)
        return out

    def node(self, name, site="a"):
        n = mf.Mmnode(ENV, name=name, site=site, root=ENV.root_key())
        ENV.nodes.append(n)
        return n

    def test_missing_node_key(self):
        n = self.node("keymissing")
        self.refused(n, n.node_key, ("missing", "no such"))

    def test_node_key_readable_by_others(self):
        n = self.node("keyopen").make_key()
        os.chmod(n.node_key, 0o644)
        self.refused(n, n.node_key, ("mode", "readable", "0600",
                                     "permission"))
        # The same key with mode 0600 is accepted.
        os.chmod(n.node_key, 0o600)
        n.start()
        n.stop()

    def test_node_key_not_certified(self):
        n = self.node("keynocert").make_key(certify=False)
        self.refused(n, ("certif",))

    def test_node_key_certified_for_other_site(self):
        n = self.node("keyothersite").make_key(site="b")
        self.refused(n, ("certif",), ("site",))

    def test_node_key_revoked(self):
        n = self.node("keyrevoked").make_key()
        n.start()
        n.stop()
        r = n.ctl("keys", "revoke", "--root", n.root.key, "--pub", n.node_pub,
                  "--reason", "test-revocation")
        self.assertEqual(r.rc, 0, r)
        kl = n.ctl("keys", "list")
        self.assertIn("revoked", kl.out, kl)
        self.refused(n, ("revoked",))


if __name__ == "__main__":
    mf.main()
