"""Who may use a node's control socket. Anyone who can connect may read the
directory (user show, user list, stats, lookup); only root and the members
of admin-group may change it (user add/set/del, imports, keys-accept). The
nodes here run as nobody, as the example config once did, so that every
process of that user can connect: mmctl then runs as nobody, as root, and
as members of a temporary admin group made for the test."""

import grp
import os
import pwd
import socket
import stat
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
ALICE = "alice@a.test"
BOB = "bob@a.test"
CAROL = "carol@b.test"
EXIT_PERM = 4           # mmctl's exit code (and ctl status) "permission"
DENIED = "permission denied"


def setUpModule():
    global ENV
    if mf.is_root():
        ENV = mf.env()


def tearDownModule():
    mf.shutdown()


def mmctl_as(node, uid, gid, groups, *args, user=None):
    """mmctl -c CONF ARGS run with uid, gid and supplementary groups set
    (with USER: the groups /etc/group gives that user, plus gid)."""
    cmd = [mf.mmctl_bin(), "-c", node.conf] + [str(a) for a in args]

    def drop():
        if user is not None:
            os.initgroups(user, gid)
        else:
            os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)

    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL, preexec_fn=drop)
    return mf.CtlResult(cmd, r.returncode, r.stdout.decode(errors="replace"),
                        r.stderr.decode(errors="replace"),
                        time.monotonic() - t0)


def mp_str(s):
    """S as a msgpack string (fixstr or str 16), as directory/ctl.c reads
    it."""
    b = s.encode()
    if len(b) < 32:
        return bytes([0xa0 | len(b)]) + b
    return b"\xda" + struct.pack(">H", len(b)) + b


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise EOFError("the node closed the control socket")
        buf += b
    return buf


def raw_request(path, uid, gid, op, args):
    """Sends one control REQUEST as uid/gid (from a child process, so that
    the socket carries those credentials) and returns the status of the
    END frame: for requests mmctl sends only after reading files nobody
    may read."""
    # [op, args]: a fixarray of ARGS (fewer than 16) after the op.
    body = b"\x92" + mp_str(op) + bytes([0x90 | len(args)]) + \
        b"".join(mp_str(a) for a in args)
    frame = b"MMCT" + struct.pack(">HHI", 1, 1, len(body)) + body
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 255
        try:
            os.close(rd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(path)
            s.sendall(frame)
            while True:
                ftype, blen = struct.unpack(">HI", recv_exact(s, 12)[6:])
                body = recv_exact(s, blen)
                if ftype == 4:
                    # END: [status, message, rows], status a fixint.
                    status = body[1]
                    break
        except Exception:
            status = 254
        os.write(wr, bytes([status]))
        os._exit(0)
    os.close(wr)
    try:
        out = os.read(rd, 1)
    finally:
        os.close(rd)
        os.waitpid(pid, 0)
    return out[0] if out else 253


@unittest.skipUnless(mf.is_root(), "needs root: the nodes drop to nobody "
                     "and mmctl runs as other users")
class ControlAuthTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.nobody = pwd.getpwnam("nobody").pw_uid
        cls.nogroup = grp.getgrnam("nogroup").gr_gid
        # A temporary admin group and an operator whose membership in it is
        # supplementary (primary group nogroup).
        tag = os.getpid() % 100000
        cls.group = "mmt-admin-%d" % tag
        cls.oper = "mmt-oper-%d" % tag
        # Left over by a run that was killed: start clean.
        mf.run(["userdel", cls.oper])
        mf.run(["groupdel", cls.group])
        mf.run(["groupadd", "--system", cls.group]).check_returncode()
        cls.addClassCleanup(mf.run, ["groupdel", cls.group])
        mf.run(["useradd", "--system", "--no-create-home", "--shell",
                "/usr/sbin/nologin", "--gid", "nogroup", "--groups",
                cls.group, cls.oper]).check_returncode()
        cls.addClassCleanup(mf.run, ["userdel", cls.oper])
        cls.admin_gid = grp.getgrnam(cls.group).gr_gid
        cls.oper_uid = pwd.getpwnam(cls.oper).pw_uid

    def node_as_nobody(self, name, extra=()):
        """A directory node running as nobody (store chowned to it), with
        alice on be1 and bob on be2."""
        node = ENV.directory_node(name, site="a", start=False,
                                  user="nobody", extra=list(extra))
        # The root's public key where a node keeps it (the root's own
        # directory is private).
        node.root_pub = os.path.join(node.dir, "root.pub")
        with open(ENV.root_key().pub) as src, open(node.root_pub, "w") as dst:
            dst.write(src.read())
        node.write_config()
        node.ctl("user", "add", ALICE, "be1").check()
        node.ctl("user", "add", BOB, "be2").check()
        for dirpath, _, files in os.walk(node.store):
            os.chown(dirpath, self.nobody, self.nogroup)
            for f in files:
                os.chown(os.path.join(dirpath, f), self.nobody, self.nogroup)
        node.start()
        self.addCleanup(node.stop)
        return node

    def as_nobody(self, node, *args):
        return mmctl_as(node, self.nobody, self.nogroup, [], *args)

    def backend_of(self, node, user):
        r = node.ctl("user", "show", user).check("user show as root")
        return mf.parse_record(r.out).get("backend")

    def assert_refused(self, r, node):
        self.assertEqual(r.rc, EXIT_PERM, r)
        self.assertIn("%s: uid %d may not change the directory" % (
            DENIED, self.nobody), r.err, r)
        self.assertIn("admin-group", r.err, r)
        self.assertIn(node.conf, r.err, r)

    def test_default_only_root_writes(self):
        node = self.node_as_nobody("authdef")
        st = os.stat(node.control_socket)
        self.assertEqual((st.st_uid, st.st_gid), (self.nobody, self.nogroup))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        # Root may write.
        r = node.ctl("user", "set", ALICE, "be2")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.backend_of(node, ALICE), "be2")
        # nobody connects (it owns the socket) and may read...
        r = self.as_nobody(node, "user", "show", ALICE)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(mf.parse_record(r.out).get("backend"), "be2")
        r = self.as_nobody(node, "user", "list")
        self.assertEqual(r.rc, 0, r)
        self.assertIn(BOB, r.out)
        r = self.as_nobody(node, "stats")
        self.assertEqual(r.rc, 0, r)
        r = self.as_nobody(node, "lookup", ALICE, "imap")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("backend=be2", r.out)
        # ...but not write: every kind of change is refused.
        pos = node.log_size()
        r = self.as_nobody(node, "user", "set", ALICE, "be1")
        self.assert_refused(r, node)
        self.assertIn("root", r.err, r)
        self.assert_refused(self.as_nobody(node, "user", "del", BOB), node)
        self.assert_refused(self.as_nobody(node, "user", "add", CAROL,
                                           "be1"), node)
        csv = os.path.join(node.dir, "evil.csv")
        with open(csv, "w") as f:
            f.write("%s,be1\n%s,be1\n" % (ALICE, CAROL))
        os.chmod(csv, 0o644)
        r = self.as_nobody(node, "import", "csv", csv)
        self.assertEqual(r.rc, EXIT_PERM, r)
        self.assertIn(DENIED, r.err, r)
        # Requests mmctl would only send with files nobody cannot read.
        for op, args in (("keys-accept", ["00"]),
                         ("import-rows", [CAROL, "be1", ""])):
            with self.subTest(op=op):
                self.assertEqual(raw_request(node.control_socket,
                                             self.nobody, self.nogroup,
                                             op, args), EXIT_PERM)
        # A read sent the raw way is answered.
        self.assertEqual(raw_request(node.control_socket, self.nobody,
                                     self.nogroup, "stats", []), 0)
        # The open sessions name users and their addresses: not for
        # nobody either, though it only reads (root may list them).
        r = self.as_nobody(node, "sessions")
        self.assertEqual(r.rc, EXIT_PERM, r)
        self.assertIn("permission denied", r.err, r)
        self.assertIn("admin-group", r.err, r)
        self.assertEqual(node.ctl("sessions").rc, 0)
        # Nor may nobody end a user's sessions.
        r = self.as_nobody(node, "kick", ALICE)
        self.assertEqual(r.rc, EXIT_PERM, r)
        self.assertIn("permission denied: kick", r.err, r)
        # Nothing changed.
        self.assertEqual(self.backend_of(node, ALICE), "be2")
        self.assertEqual(self.backend_of(node, BOB), "be2")
        r = node.ctl("user", "show", CAROL)
        self.assertEqual(r.rc, 1, r)
        r = self.as_nobody(node, "lookup", ALICE, "imap")
        self.assertIn("backend=be2", r.out)
        # Each refusal is logged with who asked for what.
        mf.wait_for(lambda: "request=import-rows" in node.log_since(pos), 3)
        log = node.log_since(pos)
        refused = [ln for ln in log.splitlines() if "ctl refused" in ln]
        self.assertEqual(len(refused), 8, log)
        for req in ("user-set", "user-del", "user-add", "import-users",
                    "keys-accept", "import-rows", "sessions", "kick"):
            self.assertTrue(any("request=%s" % req in ln and
                                "uid=%d" % self.nobody in ln and
                                "pid=" in ln for ln in refused),
                            "%s not logged:\n%s" % (req, log))
        # Root still may.
        r = node.ctl("user", "set", ALICE, "be1")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.backend_of(node, ALICE), "be1")

    def test_admin_group_writes(self):
        node = self.node_as_nobody("authadm", ["admin-group " + self.group])
        # The admin group owns the socket, so that its members can connect.
        st = os.stat(node.control_socket)
        self.assertEqual((st.st_uid, st.st_gid), (self.nobody,
                                                  self.admin_gid))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
        # nobody still reads and is still refused writes, told which group.
        r = self.as_nobody(node, "user", "show", BOB)
        self.assertEqual(r.rc, 0, r)
        r = self.as_nobody(node, "user", "set", BOB, "be1")
        self.assert_refused(r, node)
        self.assertIn("group %s" % self.group, r.err, r)
        self.assertEqual(self.backend_of(node, BOB), "be2")
        # A member by a supplementary group writes...
        r = mmctl_as(node, self.oper_uid, self.nogroup, None, "user", "set",
                     BOB, "be1", user=self.oper)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.backend_of(node, BOB), "be1")
        # ...and so does one by its primary group.
        r = mmctl_as(node, self.nobody, self.admin_gid, [], "user", "set",
                     BOB, "be2")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(self.backend_of(node, BOB), "be2")
        # Someone neither in the group nor the socket's owner cannot even
        # connect.
        r = mmctl_as(node, self.oper_uid, self.nogroup, [], "user", "show",
                     BOB)
        self.assertEqual(r.rc, EXIT_PERM, r)
        self.assertIn(DENIED, r.err, r)


if __name__ == "__main__":
    mf.main()
