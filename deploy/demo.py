#!/usr/bin/env python3
"""One-site MailMesh demo: a Dovecot back end with demo users and an mmnode
in front of it, both left running in the background. Driven by demo.sh.

The node runs with the signed directory on: a cluster root key (root/), a
node key certified by it for site "demo" (node/node.key), and the users
added with mmctl, which demo.env names as MMCTL.

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

BACKEND = "be1"
SITE = "demo"


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


class DemoEnv:
    """What mmfixture.Mmnode needs from its environment."""

    def __init__(self, d, tls, dovecot):
        self.dir = d
        self.tls = tls
        self.dovecots = {BACKEND: dovecot}

    def backend_line(self, name, client_addr="id"):
        d = self.dovecots[name]
        return "%s %s imap=%d pop3=%d client-addr=%s" % (
            name, mf.HOST, d.imap, d.pop3, client_addr)


def start(state, build, env_file):
    mf.DETACH = True
    os.environ["MM_BUILD_DIR"] = build
    if os.path.exists(state):
        shutil.rmtree(state)
    os.makedirs(state)
    os.chmod(state, 0o755)
    alphabet = string.ascii_letters + string.digits
    demo_pass = "".join(secrets.choice(alphabet) for _ in range(16))
    users = {
        "demo@example.com": demo_pass,
        "alice@example.com": "alice-demo-pw",
        "bob@example.com": "bob-demo-pw",
    }
    tls = mf.TLS(os.path.join(state, "tls"))
    dov = mf.Dovecot(BACKEND, os.path.join(state, "backend"),
                     tls.cert, tls.key, users=users, big=False)
    pids = []
    try:
        dov.start()
        pids.append(dov.proc.pid)
        env = DemoEnv(state, tls, dov)
        root = mf.RootKey(os.path.join(state, "root"))
        node = mf.Mmnode(
            env, name="node", backends=[env.backend_line(BACKEND)],
            site=SITE, root=root,
            limits={"auth-failure-delay": "1s",
                    "auth-failure-delay-max": "8s"},
            timeouts={"drain": "5s", "backend": "10s"})
        # A node key, certified by the root for the demo site (written to
        # the store directly: no node runs yet).
        node.make_key()
        node.start()
        pids.append(node.proc.pid)
        # The users, signed by the running node (over its control socket).
        for u in users:
            node.ctl("user", "add", u, BACKEND).check("mmctl user add " + u)
    finally:
        with open(pidfile(state), "w") as f:
            f.write(" ".join(map(str, pids)) + "\n")
    mmctl_cmd = "%s -c %s" % (mf.mmctl_bin(), node.conf)
    p = node.port
    env_vars = {
        "MM_IMAP": "%s:%d" % (mf.HOST, p["imap"]),
        "MM_IMAPS": "%s:%d" % (mf.HOST, p["imaps"]),
        "MM_POP3": "%s:%d" % (mf.HOST, p["pop3"]),
        "MM_POP3S": "%s:%d" % (mf.HOST, p["pop3s"]),
        "MM_CA": tls.ca,
        "MM_DEMO_USER": "demo@example.com",
        "MM_DEMO_PASS": demo_pass,
        "MMCTL": mmctl_cmd,
    }
    with open(env_file, "w") as f:
        for k, v in env_vars.items():
            f.write("%s='%s'\n" % (k, v))
    u = "demo%40example.com:" + demo_pass
    print("""
MailMesh demo is running (state in %(state)s).
  user:     demo@example.com   password: %(pw)s
  also:     alice@example.com / alice-demo-pw, bob@example.com / bob-demo-pw
  imap:     %(imap)s  (STARTTLS offered)    imaps: %(imaps)s
  pop3:     %(pop3)s  (STLS offered)        pop3s: %(pop3s)s
  CA:       %(ca)s
  logs:     %(state)s/node/mmnode.log  %(state)s/backend/dovecot.log
  directory: signed, site %(site)s; root key in %(state)s/root
  mmctl:    %(mmctl)s

Try:
  curl 'imap://%(u)s@%(imap)s/INBOX;UID=1'
  curl --ssl-reqd --cacert %(ca)s 'imap://%(u)s@%(imap)s/INBOX;UID=1'
  curl --cacert %(ca)s 'imaps://%(u)s@%(imaps)s/INBOX;UID=2'
  curl 'pop3://%(u)s@%(pop3)s/1'
  curl --cacert %(ca)s 'pop3s://%(u)s@%(pop3s)s/'

The directory (users are records signed by the node):
  %(mmctl)s user show demo@example.com
  %(mmctl)s user list
  %(mmctl)s user set bob@example.com %(be)s --state frozen --target fra
      (bob's next login gets a temporary failure; --state active undoes it)

Shell variables for scripts: . %(envf)s   (then: $MMCTL user show "$MM_DEMO_USER")
Stop it with: deploy/demo.sh stop
""" % dict(state=state, pw=demo_pass, imap=env_vars["MM_IMAP"],
           imaps=env_vars["MM_IMAPS"], pop3=env_vars["MM_POP3"],
           pop3s=env_vars["MM_POP3S"], ca=tls.ca, u=u, envf=env_file,
           site=SITE, mmctl=mmctl_cmd, be=BACKEND))


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
