"""Gossip between sites: three nodes of sites a, b and c, each on its own
loopback address with its own store and a node key certified by one root.
A user added at one site reaches the others; `mmctl sites` lists every
node alive with a round-trip time; a node killed with SIGKILL is declared
dead, rejoins after a restart and catches up; records written on both sides
of a partition converge after it heals; a node whose key the root did not
certify is refused at the handshake."""

import functools
import os
import socket
import subprocess
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmfixture as mf  # noqa: E402

ENV = None
BACKENDS = ["be1 127.0.0.1 imap=9"]	# never connected to here
LISTENERS = [("imap", "imap", {})]
SITES = ("a", "b", "c")
ADDR = {"a": "127.0.0.2", "b": "127.0.0.3", "c": "127.0.0.4"}


# Polled twice as often as the fixture does by default.
wait = functools.partial(mf.wait_or_fail, step=0.1)


def setUpModule():
    global ENV
    # No back end is used: records only name back ends.
    ENV = mf.Env(backends=())


def tearDownModule():
    global ENV
    if ENV is not None:
        ENV.close()
        ENV = None


def node(name, site, listen, peers=(), **kw):
    return ENV.gossip_node(name, site, listen, peers=list(peers),
                           backends=BACKENDS, listeners=LISTENERS, **kw)


def shows_site(n, user, site):
    r = n.ctl("user", "show", user, json=True)
    return r.rc == 0 and r.json().get("site") == site


def state_of(n, name):
    return n.members().get(name, {}).get("state")


class GossipTest(unittest.TestCase):
    """Nodes ga, gb, gc of sites a, b, c; b and c join through a (star)."""

    @classmethod
    def setUpClass(cls):
        cls.addr = {s: "%s:%d" % (ADDR[s], mf.free_port()) for s in SITES}
        cls.n = {}
        for s in SITES:
            seeds = [] if s == "a" else [cls.addr["a"]]
            cls.n[s] = node("g" + s, s, cls.addr[s], seeds)
        wait(lambda: all(len([m for m in cls.n[s].members().values()
                              if m["state"] == "alive"]) == 3
                         for s in SITES), 10, "three nodes alive everywhere")

    def test_1_record_reaches_other_sites(self):
        a, b, c = (self.n[s] for s in SITES)
        t0 = time.monotonic()
        a.ctl("user", "add", "alice@a.test", "be1").check()
        wait(lambda: shows_site(b, "alice@a.test", "a") and
             shows_site(c, "alice@a.test", "a"), 5, "alice at b and c")
        sys.stderr.write("  alice at b and c after %.2fs\n"
                         % (time.monotonic() - t0))
        # A change travels the same way, and so does one made at c.
        a.ctl("user", "set", "alice@a.test", "be1", "--state", "frozen",
              "--target", "b").check()
        c.ctl("user", "add", "carol@c.test", "be1").check()
        wait(lambda: c.ctl("user", "show", "alice@a.test", json=True)
             .json().get("state") == "frozen", 5, "alice frozen at c")
        wait(lambda: shows_site(a, "carol@c.test", "c") and
             shows_site(b, "carol@c.test", "c"), 5, "carol at a and b")
        # The other sites' records are in every store, verified.
        for s in SITES:
            self.n[s].ctl("verify").check("verify at " + s)

    def test_2_sites_lists_every_node(self):
        # Every member is probed within a few rounds.
        wait(lambda: all(isinstance(m["rtt_ms"], int)
                         for s in SITES for m in self.n[s].members().values()
                         if m["self"] == "no"), 10, "an RTT for every peer")
        for s in SITES:
            r = self.n[s].ctl("sites", json=True)
            r.check("sites")
            rows = r.json()
            self.assertEqual(len(rows), 3, r.out)
            self.assertEqual(rows[0]["name"], "g" + s)	# itself first
            self.assertEqual(rows[0]["self"], "yes")
            by = {m["name"]: m for m in rows}
            for t in SITES:
                m = by["g" + t]
                self.assertEqual(m["site"], t)
                self.assertEqual(m["address"], self.addr[t])
                self.assertEqual(m["state"], "alive")
                if t != s:
                    self.assertIsInstance(m["rtt_ms"], int, r.out)
                    self.assertIsInstance(m["last_contact_s"], int, r.out)
        table = self.n["a"].ctl("sites").check()
        self.assertIn("rtt_ms", table.out)
        self.assertIn("alive", table.out)

    def test_3_killed_node_dies_and_rejoins(self):
        a, b, c = (self.n[s] for s in SITES)
        pid = c.proc.pid
        mf.kill_group(pid)		# SIGKILL to mmnode and all its children
        c.proc.wait(timeout=5)
        t0 = time.monotonic()
        wait(lambda: state_of(a, "gc") == "dead" and
             state_of(b, "gc") == "dead", 15, "gc dead at a and b")
        sys.stderr.write("  gc dead after %.1fs\n" % (time.monotonic() - t0))
        self.assertIn("gossip member-dead site=c name=gc", a.log_text())
        # Written while c is down.
        a.ctl("user", "add", "dora@a.test", "be1").check()
        b.ctl("user", "add", "bert@b.test", "be1").check()
        c.logf.close()
        c.proc = None
        c.start()
        t0 = time.monotonic()
        wait(lambda: shows_site(c, "dora@a.test", "a") and
             shows_site(c, "bert@b.test", "b"), 15, "c caught up")
        wait(lambda: state_of(a, "gc") == "alive" and
             state_of(b, "gc") == "alive", 15, "gc alive again")
        sys.stderr.write("  gc back after %.1fs\n" % (time.monotonic() - t0))

    def test_4_uncertified_node_is_refused(self):
        a = self.n["a"]
        pos = a.log_size()
        # A node whose key a foreign root certified: it starts (its own
        # store trusts that root) but the cluster's nodes refuse it.
        rogue_root = mf.RootKey(os.path.join(ENV.dir, "rogue-root"))
        r = mf.Mmnode(ENV, name="rogue", site="a", root=rogue_root,
                      backends=BACKENDS, listeners=LISTENERS,
                      peer_listen="127.0.0.5:%d" % mf.free_port(),
                      peers=[self.addr["a"]])
        ENV.nodes.append(r)
        r.make_key()
        r.start()
        r.ctl("user", "add", "mallory@a.test", "be1").check()
        wait(lambda: "gossip handshake-failed" in a.log_since(pos), 10,
             "a logs the refused handshake")
        time.sleep(1)
        self.assertNotIn("rogue", a.members())
        self.assertNotEqual(a.ctl("user", "show", "mallory@a.test").rc, 0)
        self.assertIn("gossip handshake-failed", a.log_since(pos))
        r.stop()
        # Garbage on the peer port: refused, and the node carries on.
        host, port = self.addr["a"].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=3) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n" * 4)
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
        self.assertEqual(state_of(a, "gb"), "alive")


# --- partition and heal ----------------------------------------------------

NS_NET = "10.231.%d" % (os.getpid() % 200 + 20)


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, timeout=10,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Netns:
    """Two network namespaces joined by a veth pair: X holds two
    addresses, Y one. Only things created here are touched."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.x, self.y = "mmgx" + tag, "mmgy" + tag
        self.vx, self.vy = "vx" + tag, "vy" + tag
        self.made = []
        try:
            for ns in (self.x, self.y):
                ip("netns", "add", ns)
                self.made.append(ns)
                ip("-n", ns, "link", "set", "lo", "up")
            # Both ends are made inside the namespaces, never outside.
            ip("-n", self.x, "link", "add", self.vx, "type", "veth",
               "peer", "name", self.vy, "netns", self.y)
            ip("-n", self.x, "addr", "add", NS_NET + ".1/24", "dev", self.vx)
            ip("-n", self.x, "addr", "add", NS_NET + ".2/24", "dev", self.vx)
            ip("-n", self.y, "addr", "add", NS_NET + ".3/24", "dev", self.vy)
            self.up()
        except BaseException:
            self.close()
            raise

    def down(self):
        ip("-n", self.y, "link", "set", self.vy, "down")
        ip("-n", self.x, "link", "set", self.vx, "down")

    def up(self):
        ip("-n", self.x, "link", "set", self.vx, "up")
        ip("-n", self.y, "link", "set", self.vy, "up")

    def close(self):
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "delete", ns], timeout=10,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        self.made = []


class PartitionTest(unittest.TestCase):
    """Sites a and b on one side, c on the other. As root the sides are
    network namespaces joined by a veth pair whose link goes down; as
    anyone else c's processes are stopped (SIGSTOP) and continued."""

    @classmethod
    def setUpClass(cls):
        cls.ns = None
        if mf.is_root():
            try:
                cls.ns = Netns()
            except (subprocess.CalledProcessError, OSError) as e:
                sys.stderr.write("  no namespaces (%s): SIGSTOP instead\n"
                                 % e)
                cls.ns = None
        try:
            if cls.ns is not None:
                host = {"a": NS_NET + ".1", "b": NS_NET + ".2",
                        "c": NS_NET + ".3"}
                netns = {"a": cls.ns.x, "b": cls.ns.x, "c": cls.ns.y}
            else:
                host = {"a": "127.0.0.6", "b": "127.0.0.7", "c": "127.0.0.8"}
                netns = {"a": None, "b": None, "c": None}
            addr = {s: "%s:%d" % (host[s], mf.free_port()) for s in SITES}
            cls.n = {}
            for s in SITES:
                seeds = [addr[t] for t in SITES if t != s]
                cls.n[s] = node("p" + s, s, addr[s], seeds, netns=netns[s])
            wait(lambda: all(len([m for m in cls.n[s].members().values()
                                  if m["state"] == "alive"]) == 3
                             for s in SITES), 10, "partition cluster up")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for n in getattr(cls, "n", {}).values():
            if n.proc is not None:
                try:
                    os.killpg(n.proc.pid, 18)	# SIGCONT, then stop
                except OSError:
                    pass
                n.stop()
        if cls.ns is not None:
            cls.ns.close()

    def cut(self):
        if self.ns is not None:
            self.ns.down()
        else:
            os.killpg(self.n["c"].proc.pid, 19)	# SIGSTOP

    def heal(self):
        if self.ns is not None:
            self.ns.up()
        else:
            os.killpg(self.n["c"].proc.pid, 18)	# SIGCONT

    def test_partition_heals_and_converges(self):
        a, b, c = (self.n[s] for s in SITES)
        a.ctl("user", "add", "before@a.test", "be1").check()
        wait(lambda: shows_site(c, "before@a.test", "a"), 5,
             "record before the partition")
        self.cut()
        try:
            wait(lambda: state_of(a, "pc") in ("suspect", "dead"), 15,
                 "a notices the partition")
            a.ctl("user", "add", "left@a.test", "be1").check()
            b.ctl("user", "add", "left@b.test", "be1").check()
            if self.ns is not None:
                # c runs on, cut off, and takes writes too.
                c.ctl("user", "add", "right@c.test", "be1").check()
                time.sleep(1)
                self.assertFalse(shows_site(c, "left@a.test", "a"))
                self.assertFalse(shows_site(a, "right@c.test", "c"))
        finally:
            self.heal()
        if self.ns is None:
            c.ctl("user", "add", "right@c.test", "be1").check()
        t0 = time.monotonic()
        wait(lambda: shows_site(c, "left@a.test", "a") and
             shows_site(c, "left@b.test", "b") and
             shows_site(a, "right@c.test", "c") and
             shows_site(b, "right@c.test", "c"), 25, "converged after heal")
        wait(lambda: all(state_of(self.n[s], "p" + t) == "alive"
                         for s in SITES for t in SITES), 20,
             "all alive after heal")
        sys.stderr.write("  converged %.1fs after heal\n"
                         % (time.monotonic() - t0))


if __name__ == "__main__":
    mf.main()
