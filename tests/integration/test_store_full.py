"""A full disk under the directory store: the import fails with a clear
error, nothing is half-written, and the store still opens and verifies."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
USERS = 40000          # far more than the small file system holds


def setUpModule():
    global ENV
    ENV = mf.env()


def tearDownModule():
    mf.shutdown()


class DiskFullTest(unittest.TestCase):
    def setUp(self):
        if not mf.is_root():
            self.skipTest("mounting a small file system needs root")
        self.node = ENV.directory_node("full", site="a", start=False)
        self.mnt = self.node.store
        os.makedirs(self.mnt, exist_ok=True)
        # Whatever the key set-up wrote moves onto the small file system.
        saved = {}
        for name in os.listdir(self.mnt):
            with open(os.path.join(self.mnt, name), "rb") as f:
                saved[name] = f.read()
            os.unlink(os.path.join(self.mnt, name))
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700",
                            "mmfull", self.mnt], capture_output=True)
        if r.returncode != 0:
            self.skipTest("cannot mount tmpfs: %s" % r.stderr.decode())
        for name, data in saved.items():
            with open(os.path.join(self.mnt, name), "wb") as f:
                f.write(data)

    def tearDown(self):
        if getattr(self, "mnt", None):
            subprocess.run(["umount", "-l", self.mnt], capture_output=True)

    def test_import_on_full_disk(self):
        r = self.node.ctl("verify")
        self.assertEqual(r.rc, 0, r)
        path = os.path.join(ENV.dir, "full.csv")
        with open(path, "w") as f:
            for i in range(USERS):
                f.write("user%06d@full.test,be1\n" % i)
        r = self.node.ctl("import", "csv", path, timeout=300)
        self.assertNotEqual(r.rc, 0, r)
        # The reason names the system error, not just "store error".
        self.assertIn("no space left on device", (r.out + r.err).lower(), r)
        # The store opens, every record verifies, and no batch is half
        # stored.
        v = self.node.ctl("verify")
        self.assertEqual(v.rc, 0, v)
        st = self.node.ctl("stats", json=True)
        self.assertEqual(st.rc, 0, st)
        users = st.json()["users"]
        print("  import on a full disk: %d users stored" % users,
              file=sys.stderr)
        self.assertLess(users, USERS)
        # Room again: a single change still works afterwards.
        r = self.node.ctl("user", "add", "after@full.test", "be1")
        if r.rc != 0:
            self.assertTrue("space" in (r.out + r.err).lower(), r)


if __name__ == "__main__":
    mf.main()
