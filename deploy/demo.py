#!/usr/bin/env python3
"""Three-site MailMesh demo: sites fra, ams and lon on 127.0.0.2, .3 and .4,
each with its own Dovecot back end and one mmnode, left running in the
background. Driven by demo.sh.

One cluster root key (root/) certifies each node's node key and transport
key. The nodes gossip (the signed records, membership and round-trip
times) and carry a session for a user of another site over the inter-node
channel to that site. Each user is added with mmctl at their own site.

  demo.py start --state DIR --build DIR --env-file FILE
  demo.py stop --state DIR
"""

import argparse
import os
import secrets
import shutil
import signal
import string
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import mmfixture as mf  # noqa: E402

BACKEND = "ms1"
# Three sites on one machine, each on its own loopback address.
SITES = [("fra", "127.0.0.2"), ("ams", "127.0.0.3"), ("lon", "127.0.0.4")]
# Who lives where: each user is added at their own site; gossip carries
# the signed records to the others.
HOME = {"demo@example.com": "fra", "alice@example.com": "ams",
        "bob@example.com": "lon"}


def pidfile(state):
    return os.path.join(state, "pids")


def ours(pid, state):
    """True if PID still runs a program we started from STATE (pids get
    reused; never signal a stranger)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().decode(errors="replace")
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    if st[st.rindex(")") + 2] == "Z":
        return False
    return state in cmd


def stop(state):
    try:
        with open(pidfile(state)) as f:
            pids = [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        pids = []
    live = [p for p in pids if ours(p, state)]
    for p in live:
        os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and any(ours(p, state) for p in live):
        time.sleep(0.1)
    for p in live:
        # Each daemon leads its own process group; take its children too.
        try:
            os.killpg(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.unlink(pidfile(state))
    except OSError:
        pass
    if live:
        print("stopped demo processes %s" % " ".join(map(str, live)))
    else:
        print("no demo running")


class NodeTLS:
    """The demo's certificates: one for all three nodes' addresses."""

    def __init__(self, tls):
        self.ca = tls.ca
        self.cert, self.key = tls.issue(
            "nodes", "localhost", "IP:127.0.0.1,%s,DNS:localhost" %
            ",".join("IP:" + ip for _, ip in SITES))


class DemoEnv:
    """What mmfixture.Mmnode needs from its environment: one site's."""

    def __init__(self, d, tls, dovecot):
        self.dir = d
        self.tls = tls
        self.dovecots = {BACKEND: dovecot}

    def backend_line(self, name, secret, client_addr="id"):
        d = self.dovecots[name]
        return ("%s %s imap=%d pop3=%d lmtp=%d client-addr=%s doveadm=%d "
                "doveadm-secret=%s move=dsync" % (
                    name, mf.HOST, d.imap, d.pop3, d.lmtp, client_addr,
                    d.doveadm, secret))


def wait_for(pred, timeout, what):
    if not mf.wait_for(pred, timeout, step=0.2):
        raise RuntimeError("not within %ds: %s" % (timeout, what))


def sites_alive(node):
    r = node.ctl("sites", json=True)
    return r.rc == 0 and len([m for m in r.json()
                              if m["state"] == "alive" and
                              m.get("session_address")]) == len(SITES)


def start(state, build, env_file):
    mf.DETACH = True
    os.environ["MM_BUILD_DIR"] = build
    if os.path.exists(state):
        shutil.rmtree(state)
    os.makedirs(state)
    os.chmod(state, 0o755)
    alphabet = string.ascii_letters + string.digits
    demo_pass = "".join(secrets.choice(alphabet) for _ in range(16))
    passwords = {
        "demo@example.com": demo_pass,
        "alice@example.com": "alice-demo-pw",
        "bob@example.com": "bob-demo-pw",
    }
    # The back ends' doveadm_password: the nodes drive dsync through
    # their doveadm servers when a mailbox moves.
    doveadm_pass = "".join(secrets.choice(alphabet) for _ in range(24))
    secret = os.path.join(state, "doveadm.secret")
    with open(secret, "w") as f:
        f.write(doveadm_pass + "\n")
    os.chmod(secret, 0o600)
    tls = mf.TLS(os.path.join(state, "tls"))
    ntls = NodeTLS(tls)
    root = mf.RootKey(os.path.join(state, "root"))
    peer_port = {s: mf.free_port() for s, _ in SITES}
    seed = "%s:%d" % (SITES[0][1], peer_port[SITES[0][0]])
    nodes = {}
    pids = []
    try:
        for site, ip in SITES:
            d = os.path.join(state, site)
            os.makedirs(d)
            # Every back end knows every user; a site's back end holds
            # only the mailboxes of its users (a move brings one).
            dport = mf.free_port()
            dov = mf.Dovecot(BACKEND, os.path.join(d, "backend"),
                             tls.cert, tls.key, users=passwords, big=False,
                             extra_conf=[
                                 "doveadm_password = " + doveadm_pass,
                                 "service doveadm {\n inet_listener {\n"
                                 "  address = 127.0.0.1\n  port = %d\n"
                                 " }\n}" % dport])
            dov.doveadm = dport
            for u in passwords:
                if HOME[u] != site:
                    shutil.rmtree(os.path.join(dov.dir, "mail", u))
            dov.start()
            pids.append(dov.proc.pid)
            env = DemoEnv(d, ntls, dov)
            tkey = os.path.join(d, site, "transport.key")
            node = mf.Mmnode(
                env, name=site, host=ip, site=site, root=root,
                listeners=mf.Mmnode.DEFAULT_LISTENERS + [
                    ("smtp", "smtp", {"tls": True}),
                    ("metrics", "metrics", {})],
                backends=[env.backend_line(BACKEND, secret)],
                peer_listen="%s:%d" % (ip, peer_port[site]),
                peers=[] if site == SITES[0][0] else [seed],
                extra=["transport-key %s" % tkey,
                       "session-listen %s:%d" % (ip, mf.free_port()),
                       "dsync-listen %s:%d" % (ip, mf.free_port())],
                limits={"auth-failure-delay": "1s",
                        "auth-failure-delay-max": "8s"},
                timeouts={"drain": "5s", "backend": "10s"})
            # A node key and a transport key (for the workers' channel to
            # other sites), both certified by the root for this site.
            node.make_key()
            mf.mmctl(["keys", "new", tkey]).check("mmctl keys new")
            node.certify(role="transport", pub=tkey + ".pub",
                         name=site + "-transport")
            node.start()
            pids.append(node.proc.pid)
            nodes[site] = node
        # Users are added at their own site, signed by its node.
        for u in passwords:
            nodes[HOME[u]].ctl("user", "add", u, BACKEND).check(
                "mmctl user add " + u)
        for site, node in nodes.items():
            wait_for(lambda: sites_alive(node), 20,
                     "every node alive as seen from " + site)
            wait_for(lambda: all(node.ctl("user", "show", u).rc == 0
                                 for u in passwords), 20,
                     "every user known at " + site)
    finally:
        with open(pidfile(state), "w") as f:
            f.write(" ".join(map(str, pids)) + "\n")
    first = nodes[SITES[0][0]]
    mmctl_cmd = "%s -c %s" % (mf.mmctl_bin(), first.conf)
    env_vars = {
        "MM_SITES": " ".join(s for s, _ in SITES),
    }
    for site, ip in SITES:
        p = nodes[site].port
        env_vars["MM_%s_IMAP" % site.upper()] = "%s:%d" % (ip, p["imap"])
        env_vars["MM_%s_POP3" % site.upper()] = "%s:%d" % (ip, p["pop3"])
        env_vars["MM_%s_SMTP" % site.upper()] = "%s:%d" % (ip, p["smtp"])
        env_vars["MM_%s_METRICS" % site.upper()] = "%s:%d" % (
            ip, p["metrics"])
    fip, fp = SITES[0][1], first.port
    env_vars.update({
        "MM_IMAP": "%s:%d" % (fip, fp["imap"]),
        "MM_IMAPS": "%s:%d" % (fip, fp["imaps"]),
        "MM_POP3": "%s:%d" % (fip, fp["pop3"]),
        "MM_POP3S": "%s:%d" % (fip, fp["pop3s"]),
        "MM_SMTP": "%s:%d" % (fip, fp["smtp"]),
        "MM_METRICS": "%s:%d" % (fip, fp["metrics"]),
        "MM_CA": tls.ca,
        "MM_DEMO_USER": "demo@example.com",
        "MM_DEMO_PASS": demo_pass,
        "MMCTL": mmctl_cmd,
    })
    # A session at every site for a user of another reaches that user's
    # back end before the demo says it runs.
    for site, ip in SITES:
        other = [u for u in passwords if HOME[u] != site][0]
        url = "imap://%s:%s@%s/INBOX;UID=1" % (
            other.replace("@", "%40"), passwords[other],
            env_vars["MM_%s_IMAP" % site.upper()])
        wait_for(lambda: b"Subject:" in mf.curl([url])[1], 20,
                 "%s's mail through %s" % (other, site))
    with open(env_file, "w") as f:
        for k, v in env_vars.items():
            f.write("%s='%s'\n" % (k, v))
    u = "demo%40example.com:" + demo_pass
    lines = []
    for site, ip in SITES:
        lines.append("  %-4s %s   imap %s   pop3 %s   smtp %s" % (
            site, ip, env_vars["MM_%s_IMAP" % site.upper()],
            env_vars["MM_%s_POP3" % site.upper()],
            env_vars["MM_%s_SMTP" % site.upper()]))
    print("""
MailMesh demo is running: three sites (state in %(state)s).
%(sites)s
  users:    demo@example.com / %(pw)s (lives at fra)
            alice@example.com / alice-demo-pw (ams), bob@example.com /
            bob-demo-pw (lon)
  fra also: imaps %(imaps)s   pop3s %(pop3s)s   (STARTTLS/STLS offered)
  CA:       %(ca)s
  logs:     %(state)s/SITE/SITE/mmnode.log  %(state)s/SITE/backend/dovecot.log
  directory: signed records, gossiped between the sites; root key in
            %(state)s/root
  mmctl:    %(mmctl)s   (the fra node)

Log in anywhere: a session for a user of another site is carried to the
nearest healthy node of that site, which connects to its own back end.
  curl 'imap://%(u)s@%(imap)s/INBOX;UID=1'                 # at fra, home
  curl 'imap://%(u)s@%(ams_imap)s/INBOX;UID=1'         # at ams -> fra
  curl 'pop3://%(u)s@%(lon_pop3)s/1'                  # at lon -> fra
  curl 'imap://alice%%40example.com:alice-demo-pw@%(imap)s/INBOX;UID=1'   # ams user at fra
  curl --ssl-reqd --cacert %(ca)s 'imap://%(u)s@%(imap)s/INBOX;UID=1'
  curl --cacert %(ca)s 'imaps://%(u)s@%(imaps)s/INBOX;UID=2'

Send mail to anyone at any site: it is streamed to the back end of the
recipient's site and acknowledged only once that back end has it.
  swaks --server %(lon_smtp)s --to demo@example.com --from you@example.net

The node's counters, as Prometheus reads them:
  curl -s http://%(metrics)s/metrics

Move demo's mailbox from fra to ams while it is live (dsync between the
back ends, carried by the nodes; logins wait a blink, mail gets 4xx
meanwhile), then read it again at fra: the session now goes to ams.
  %(mmctl)s move demo@example.com ams --wait
  curl 'imap://%(u)s@%(imap)s/INBOX;UID=1'
  %(mmctl)s moves

The directory and the sites:
  %(mmctl)s sites
  %(mmctl)s user list
  %(mmctl)s user show alice@example.com

Shell variables for scripts: . %(envf)s   (MM_SITES, MM_FRA_IMAP, ...)
Stop it with: deploy/demo.sh stop
""" % dict(state=state, pw=demo_pass, sites="\n".join(lines),
           imap=env_vars["MM_IMAP"], imaps=env_vars["MM_IMAPS"],
           pop3s=env_vars["MM_POP3S"], ca=tls.ca, u=u, envf=env_file,
           mmctl=mmctl_cmd, ams_imap=env_vars["MM_AMS_IMAP"],
           lon_pop3=env_vars["MM_LON_POP3"],
           lon_smtp=env_vars["MM_LON_SMTP"],
           metrics=env_vars["MM_METRICS"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=("start", "stop"))
    ap.add_argument("--state", required=True)
    ap.add_argument("--build")
    ap.add_argument("--env-file")
    a = ap.parse_args()
    state = os.path.abspath(a.state)
    if a.action == "stop":
        stop(state)
        return 0
    stop(state)
    try:
        start(state, os.path.abspath(a.build), os.path.abspath(a.env_file))
    except Exception as e:
        sys.stderr.write("demo failed to start: %s\n" % e)
        stop(state)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
