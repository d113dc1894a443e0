"""Fixtures for MailMesh integration tests (Python 3.11 standard library only).

One Env per test file: a temp directory, a private CA with server
certificates, two real Dovecot back ends (be1, be2) holding the same users
with different mail, and any number of mmnode processes in front of them.
Every port is picked free on 127.0.0.1; nothing uses a default port.

Environment:
  MM_BUILD_DIR  cmake build directory (binaries in node/); default: build
  MM_KEEP=1     keep the temp directory (configs, logs, mail) after the run
"""

import atexit
import base64
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

HOST = "127.0.0.1"
IO_TIMEOUT = 10.0

# Every user exists on both back ends with the same password; the popmap
# decides which one a session reaches. zed is on the back ends but not in the
# popmap (an unknown user for mmnode).
USERS = {
    "alice@a.test": "alice-Secret1",
    "bob@a.test": 'b0b pass "q"',
    "carol@b.test": "carol-Pw-3",
    "dave@be1.test": "dave-Pw-4",
    "erin@be2.test": "erin-Pw-5",
    "zed@z.test": "zed-Pw-6",
}
QUOTE_USER = "bob@a.test"

# Exact entries and regex entries (one with $1 naming the back end).
POPMAP = [
    "alice@a.test: be1",
    "bob@a.test: be2",
    r"^(.*)@b\.test$: be2",
    r"^[a-z]+@(be[0-9])\.test$: $1",
]
EXPECT_BACKEND = {
    "alice@a.test": "be1",
    "bob@a.test": "be2",
    "carol@b.test": "be2",
    "dave@be1.test": "be1",
    "erin@be2.test": "be2",
}

BIG_SIZE = 600 * 1024


def hello_subject(user, backend):
    """The Subject every message of USER on BACKEND carries."""
    return "hello %s from %s" % (user.split("@")[0], backend)


def build_dir():
    return os.environ.get("MM_BUILD_DIR") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")


def mmnode_bin():
    return os.path.join(build_dir(), "node", "mmnode")


def mmctl_bin():
    return os.path.join(build_dir(), "node", "mmctl")


def mail_owner():
    """The uid and gid the test Dovecots' mail belongs to."""
    if is_root():
        import pwd
        import grp
        return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    return os.getuid(), os.getgid()


def chown_tree(path, recurse=True):
    """Gives PATH (and what is under it) to mail_owner()."""
    uid, gid = mail_owner()
    os.chown(path, uid, gid)
    if not recurse:
        return
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.chown(os.path.join(root, n), uid, gid)


def is_root():
    return os.geteuid() == 0


# --- ports, addresses, waiting ----------------------------------------------

_given_ports = set()
_ports_lock = threading.Lock()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago and that this
    process has not handed out before. Port 0 binds never give well-known
    ports, so no default service port is ever used."""
    with _ports_lock:
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((HOST, 0))
                port = s.getsockname()[1]
            finally:
                s.close()
            if port not in _given_ports and port >= 1024:
                _given_ports.add(port)
                return port
    raise RuntimeError("no free port")


_next_source = [20]


def source_addr():
    """A fresh loopback client address (127.0.0.20, .21, ...), so per-address
    limits of one test do not leak into another."""
    with _ports_lock:
        n = _next_source[0]
        _next_source[0] += 1
    return "127.0.%d.%d" % (n // 250, n % 250 + 1)


def port_open(port, host=HOST, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_ports(ports, timeout=10.0, proc=None, what="process", log=None,
               host=HOST):
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited with %s before listening:\n%s" % (
                what, proc.returncode, log() if log else ""))
        pending = [p for p in pending if not port_open(p, host=host)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("%s: ports %s not accepting after %.0fs\n%s" % (
                what, pending, timeout, log() if log else ""))
        time.sleep(0.05)


def wait_for(pred, timeout, step=0.05):
    """Poll PRED until it returns a true value or TIMEOUT passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def wait_or_fail(pred, timeout, what, step=0.2):
    """wait_for, failing the test with WHAT when TIMEOUT passes."""
    if not wait_for(pred, timeout, step=step):
        raise AssertionError("not within %.0fs: %s" % (timeout, what))


# Set by long-running users (the demo) whose daemons must outlive Python.
DETACH = False


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM when the test process dies, even by
    SIGKILL (ctest timeout), so no daemon outlives its test."""
    if DETACH:
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)      # PR_SET_PDEATHSIG
    except Exception:
        pass


def run(cmd, timeout=30, **kw):
    return subprocess.run(cmd, capture_output=True, timeout=timeout, **kw)


# --- TLS material -------------------------------------------------------------

class TLS:
    """A private CA and server certificates made with the openssl CLI.

    server: SAN IP:127.0.0.1 and DNS:localhost (mmnode listeners, be1)
    backend: SAN DNS:backend.test only (be2's TLS listeners)
    """

    def __init__(self, d):
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.ca = os.path.join(d, "ca.crt")
        self.ca_key = os.path.join(d, "ca.key")
        self._openssl(["req", "-x509", "-newkey", "ec",
                       "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                       "-keyout", self.ca_key, "-out", self.ca, "-days", "30",
                       "-subj", "/CN=MailMesh Test CA",
                       "-addext", "basicConstraints=critical,CA:TRUE",
                       "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        os.chmod(self.ca_key, 0o600)
        self.cert, self.key = self.issue(
            "server", "localhost", "IP:127.0.0.1,DNS:localhost")
        self.be_cert, self.be_key = self.issue(
            "backend", "backend.test", "DNS:backend.test")

    def _openssl(self, args):
        r = run(["openssl"] + args)
        if r.returncode != 0:
            raise RuntimeError("openssl %s failed: %s" % (
                args[0], r.stderr.decode(errors="replace")))

    def issue(self, name, cn, san):
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        crt = os.path.join(self.dir, name + ".crt")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\n"
                    "basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid\n" % san)
        self._openssl(["req", "-new", "-newkey", "ec",
                       "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                       "-keyout", key, "-out", csr, "-subj", "/CN=" + cn])
        os.chmod(key, 0o600)
        self._openssl(["x509", "-req", "-in", csr, "-CA", self.ca,
                       "-CAkey", self.ca_key, "-CAcreateserial",
                       "-out", crt, "-days", "30", "-extfile", ext])
        return crt, key

    def client_ctx(self, verify=True):
        ctx = ssl.create_default_context(cafile=self.ca)
        if not verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


# --- Dovecot ---------------------------------------------------------------

DOVECOT_CONF = """\
# Private test instance {name}
instance_name = {instance}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap pop3 lmtp
listen = 127.0.0.1
{privs}
first_valid_uid = 1
mail_location = maildir:~/Maildir
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
haproxy_trusted_networks = 127.0.0.0/8
ssl = {ssl}
{ssl_settings}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {dir}/passwd
}}
# Without allow_all_users the static userdb asks the passdb whether a user
# exists when there was no login: LMTP refuses unknown recipients (550).
userdb {{
  driver = static
  args = {userdb_args} home={dir}/mail/%Lu
}}
service anvil {{
{chroot}
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
{chroot}
  service_count = 0
  process_min_avail = 2
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = {imaps_ssl}
  }}
  inet_listener imap_haproxy {{
    port = {imap_proxy}
    haproxy = yes
  }}
}}
service pop3-login {{
{chroot}
  service_count = 0
  process_min_avail = 2
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = {imaps_ssl}
  }}
  inet_listener pop3_haproxy {{
    port = {pop3_proxy}
    haproxy = yes
  }}
}}
# LMTP delivers into the Maildir IMAP and POP3 read. The recipient address
# is the user name as given (no +detail split, no detail mailbox); clients
# in login_trusted_networks may send XCLIENT.
recipient_delimiter =
lmtp_save_to_detail_mailbox = no
postmaster_address = postmaster@mailmesh.test
service lmtp {{
  inet_listener lmtp {{
    port = {lmtp}
  }}
  inet_listener lmtp_haproxy {{
    port = {lmtp_proxy}
    haproxy = yes
  }}
}}
"""


class LogFile:
    """log_text, log_size and log_since over the file self.logfile, read
    as it grows; a file not there yet reads as empty."""

    def log_text(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.logfile)
        except OSError:
            return 0

    def log_since(self, pos):
        try:
            with open(self.logfile, "rb") as f:
                f.seek(pos)
                return f.read().decode(errors="replace")
        except OSError:
            return ""


class Dovecot(LogFile):
    """One Dovecot 2.3 instance in DIR with the USERS and a few messages each.

    Ports: imap, pop3 (STARTTLS/STLS offered when cert is given), imaps,
    pop3s (implicit TLS; only when cert is given, otherwise plaintext),
    imap_proxy, pop3_proxy (PROXY protocol header required), lmtp (LMTP
    delivery to the users' INBOX; XCLIENT allowed from 127.0.0.0/8) and
    lmtp_proxy (LMTP after a PROXY header). See strip_delivery_headers for
    what LMTP adds to a message.
    """

    def __init__(self, name, d, cert=None, key=None, users=None, big=True,
                 extra_conf=None):
        self.name = name
        self.dir = d
        # Lines appended to dovecot.conf (later settings win).
        self.extra_conf = list(extra_conf or [])
        self.cert, self.key = cert, key
        self.users = dict(users or USERS)
        self.big = big
        self.imap, self.imaps = free_port(), free_port()
        self.pop3, self.pop3s = free_port(), free_port()
        # Listeners that expect a PROXY protocol header first.
        self.imap_proxy, self.pop3_proxy = free_port(), free_port()
        # LMTP on TCP: plain, and one expecting a PROXY header first.
        self.lmtp, self.lmtp_proxy = free_port(), free_port()
        self.proc = None
        self.logfile = os.path.join(d, "dovecot.log")
        self.messages = {}   # user -> list of raw message bytes written
        os.makedirs(d, exist_ok=True)
        for sub in ("run", "state", "mail"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(d, 0o755)
        self._write_config()
        self._write_mail()

    def _write_config(self):
        d = self.dir
        with open(os.path.join(d, "passwd"), "w") as f:
            for u, pw in self.users.items():
                f.write("%s:{PLAIN}%s::::::\n" % (u, pw))
        if is_root():
            privs = ""
            userdb_args = "uid=nobody gid=nogroup"
            chroot = ""
        else:
            me = os.environ.get("USER") or subprocess.run(
                ["id", "-un"], capture_output=True, text=True).stdout.strip()
            privs = ("default_internal_user = %s\n"
                     "default_login_user = %s\n" % (me, me))
            userdb_args = "uid=%d gid=%d" % (os.getuid(), os.getgid())
            chroot = "  chroot ="
        if self.cert:
            ssl_on = "yes"
            ssl_settings = ("ssl_cert = <%s\nssl_key = <%s\n"
                            "ssl_min_protocol = TLSv1.2\n"
                            % (self.cert, self.key))
            if os.path.exists("/usr/share/dovecot/dh.pem"):
                ssl_settings += "ssl_dh = </usr/share/dovecot/dh.pem\n"
            imaps_ssl = "yes"
        else:
            ssl_on, ssl_settings, imaps_ssl = "no", "", "no"
        self.conf = os.path.join(d, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(DOVECOT_CONF.format(
                name=self.name,
                instance="mmtest-%s-%d" % (self.name, os.getpid()),
                dir=d, privs=privs, ssl=ssl_on, ssl_settings=ssl_settings,
                userdb_args=userdb_args, chroot=chroot,
                imap=self.imap, imaps=self.imaps, pop3=self.pop3,
                pop3s=self.pop3s, imaps_ssl=imaps_ssl,
                imap_proxy=self.imap_proxy, pop3_proxy=self.pop3_proxy,
                lmtp=self.lmtp, lmtp_proxy=self.lmtp_proxy))
            for ln in self.extra_conf:
                f.write(ln + "\n")

    def _write_mail(self):
        for u in self.users:
            home = os.path.join(self.dir, "mail", u)
            md = os.path.join(home, "Maildir")
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(md, sub), exist_ok=True)
            subj = hello_subject(u, self.name)
            msgs = []
            for i in range(1, 4):
                body = "Message %d for %s on back end %s.\n" % (i, u, self.name)
                if i == 3 and self.big and u == "alice@a.test":
                    line = ("big " + "x" * 70 + "\n")
                    body += line * (BIG_SIZE // len(line))
                    s = "%s #%d big" % (subj, i)
                else:
                    s = "%s #%d" % (subj, i)
                raw = ("Return-Path: <sender@example.net>\n"
                       "From: Sender <sender@example.net>\n"
                       "To: %s\n"
                       "Subject: %s\n"
                       "Date: Mon, 1 Jan 2024 10:0%d:00 +0000\n"
                       "Message-ID: <%s.%d.%s@mailmesh.test>\n"
                       "\n%s" % (u, s, i, self.name, i, u.replace("@", "."),
                                 body)).encode()
                msgs.append(raw)
                # Distinct, increasing file names: Dovecot assigns UIDs in
                # the order it finds them.
                fn = os.path.join(md, "new", "17040672%02d.M%dP1.mmtest" % (i, i))
                with open(fn, "wb") as f:
                    f.write(raw)
                t = 1704067200 + i
                os.utime(fn, (t, t))
            self.messages[u] = msgs
            chown_tree(home)
        chown_tree(os.path.join(self.dir, "mail"), recurse=False)

    def spawn(self):
        # Spawned from the main thread: the death signal follows the
        # thread that forked.
        with open(os.path.join(self.dir, "dovecot.out"), "wb") as out:
            self.proc = subprocess.Popen(
                ["dovecot", "-F", "-c", self.conf],
                stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent)

    def wait_ready(self):
        wait_ports([self.imap, self.pop3, self.imaps, self.pop3s,
                    self.imap_proxy, self.pop3_proxy,
                    self.lmtp, self.lmtp_proxy],
                   timeout=15, proc=self.proc, what="dovecot " + self.name,
                   log=self.startup_text)
        return self

    def start(self):
        self.spawn()
        return self.wait_ready()

    def startup_text(self):
        out = ""
        for n in ("dovecot.out", "dovecot.log"):
            p = os.path.join(self.dir, n)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out += f.read()
        return out

    def wait_login_line(self, pos, user, timeout=3.0, proto=None):
        """The first "Login: user=<USER>" line logged after POS (Dovecot's
        log process writes asynchronously), or None."""
        def find():
            for ln in self.log_since(pos).splitlines():
                if "Login: user=<%s>" % user in ln and (
                        proto is None or ("%s-login:" % proto) in ln):
                    return ln
            return None
        return wait_for(find, timeout)

    def sync_mailboxes(self, users=None):
        """Has Dovecot number the messages the fixture wrote (STATUS INBOX
        over IMAP for each of USERS, default all). LMTP saves without
        looking at the rest of the Maildir: mail delivered before a
        mailbox was first opened gets lower UIDs than those messages."""
        for u in users or self.users:
            inbox_count(self, u)

    def stop_begin(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop_wait(self, timeout=10):
        if not self.proc:
            return
        end_group(self.proc, timeout)
        self.proc = None

    def stop(self):
        self.stop_begin()
        self.stop_wait()


# --- the signed directory: keys and mmctl -----------------------------------

class CtlResult:
    """What one mmctl run gave: rc, out (stdout) and err (stderr) as text."""

    def __init__(self, cmd, rc, out, err, seconds):
        self.cmd, self.rc, self.out, self.err = cmd, rc, out, err
        self.seconds = seconds

    def json(self):
        import json
        return json.loads(self.out)

    def __str__(self):
        return "%s -> exit %s\nstdout:\n%s\nstderr:\n%s" % (
            " ".join(self.cmd), self.rc, self.out[-3000:], self.err[-3000:])

    def check(self, what="mmctl"):
        if self.rc != 0:
            raise RuntimeError("%s failed: %s" % (what, self))
        return self


def mmctl(args, conf=None, json=False, direct=False, timeout=120):
    """Runs mmctl [-c CONF] [--json] [--direct] ARGS."""
    cmd = [mmctl_bin()]
    if conf:
        cmd += ["-c", conf]
    if json:
        cmd.append("--json")
    if direct:
        cmd.append("--direct")
    cmd += [str(a) for a in args]
    t0 = time.monotonic()
    r = run(cmd, timeout=timeout, stdin=subprocess.DEVNULL)
    return CtlResult(cmd, r.returncode, r.stdout.decode(errors="replace"),
                     r.stderr.decode(errors="replace"),
                     time.monotonic() - t0)


def metric(node, name):
    """The sum of NODE's samples of counter or gauge NAME (every label),
    read from its metrics listener."""
    with urllib.request.urlopen("http://%s:%d/metrics" % (
            node.host, node.port["metrics"]), timeout=5) as r:
        text = r.read().decode()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith(name + " ") or ln.startswith(name + "{"))


class RootKey:
    """A cluster root key pair in DIR (root.key, root.pub), made with
    mmctl keys root-init."""

    def __init__(self, d):
        os.makedirs(d, mode=0o700, exist_ok=True)
        self.dir = d
        self.key = os.path.join(d, "root.key")
        self.pub = os.path.join(d, "root.pub")
        if not os.path.exists(self.key):
            mmctl(["keys", "root-init", d]).check("keys root-init")


def parse_record(text):
    """The "name value" lines of mmctl user show as a dict."""
    out = {}
    for ln in text.splitlines():
        parts = ln.split(None, 1)
        if parts:
            out[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    return out


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def end_group(proc, timeout):
    """Waits up to TIMEOUT for PROC to exit, then kills its process group
    (what it left behind too) and reaps it."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    kill_group(proc.pid)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def stop_all(things, timeout=6):
    """Stop Dovecots/mmnodes in parallel (each takes ~1 s to stop); whatever
    still runs after TIMEOUT is killed."""
    for t in things:
        t.stop_begin()
    deadline = time.monotonic() + timeout
    for t in things:
        t.stop_wait(max(0.1, deadline - time.monotonic()))


# --- mmnode --------------------------------------------------------------------

class Mmnode(LogFile):
    """An mmnode process with a generated config.

    listeners: list of (key, proto, opts). opts: tls (cert/key given),
    require_tls, proxy_protocol (the networks of proxy-protocol=). key names the port in self.port. Default: imap and pop3
    with a certificate (STARTTLS/STLS offered), imaps and pop3s.
    backends: list of config lines after "backend "; default be1 and be2.
    """

    DEFAULT_LISTENERS = [
        ("imap", "imap", {"tls": True}),
        ("imaps", "imaps", {"tls": True}),
        ("pop3", "pop3", {"tls": True}),
        ("pop3s", "pop3s", {"tls": True}),
    ]

    def __init__(self, env, name="node", listeners=None, backends=None,
                 popmap=None, limits=None, timeouts=None, extra=None,
                 workers=2, user=None, site=None, root=None,
                 peer_listen=None, peers=None, peer_address=None,
                 netns=None, host=HOST):
        self.env = env
        # The origin name of the records this node signs; it must be the
        # name in its key's certificate (default: the node's name).
        self.node_name = None
        # The address the client listeners bind (a site per loopback
        # address in cross-site tests).
        self.host = host
        # Gossip: PEER_LISTEN "HOST:PORT" of the inter-node listener, PEERS
        # the seed nodes; NETNS runs the node in that network namespace.
        self.peer_listen = peer_listen
        self.peers = list(peers or [])
        self.peer_address = peer_address
        self.netns = netns
        self.name = name
        self.dir = os.path.join(env.dir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "mmnode.conf")
        # The signed directory: on when SITE is given (ROOT: a RootKey).
        self.site = site
        self.root = root
        self.root_pub = root.pub if root is not None else None
        self.store = os.path.join(self.dir, "store")
        self.node_key = os.path.join(self.dir, "node.key")
        self.node_pub = self.node_key + ".pub"
        self.control_socket = os.path.join(self.dir, "control.sock")
        # A directory node has no popmap unless one is given.
        self.use_popmap = site is None or popmap is not None
        self.popmap_file = os.path.join(self.dir, "popmap")
        self.logfile = os.path.join(self.dir, "mmnode.log")
        self.proc = None
        self.port = {}
        self.listeners = listeners if listeners is not None else \
            self.DEFAULT_LISTENERS
        for key, _, _ in self.listeners:
            self.port[key] = free_port()
        if backends is None:
            backends = [env.backend_line(n) for n in sorted(env.dovecots)]
        self.backends = backends
        self.limits = {"auth-failure-delay": "100ms",
                       "auth-failure-delay-max": "400ms"}
        self.limits.update(limits or {})
        self.timeouts = {"drain": "2s", "backend": "5s"}
        self.timeouts.update(timeouts or {})
        self.extra = extra or []
        self.workers = workers
        self.user = user
        self.write_popmap(POPMAP if popmap is None else popmap)
        self.write_config()

    def config_text(self):
        t = self.env.tls
        lines = ["# generated by mmfixture for %s" % self.name,
                 "workers %d" % self.workers,
                 "log stderr"]
        if self.use_popmap:
            lines.append("popmap %s" % self.popmap_file)
        if self.user:
            lines.append("user %s" % self.user)
        if self.site is not None:
            lines += ["directory %s" % self.store,
                      "site %s" % self.site,
                      "node-name %s" % (self.node_name or self.name),
                      "node-key %s" % self.node_key,
                      "root-key %s" % self.root_pub,
                      "control-socket %s" % self.control_socket]
            if self.peer_listen:
                lines.append("peer-listen %s" % self.peer_listen)
            if self.peer_address:
                lines.append("peer-address %s" % self.peer_address)
            for p in self.peers:
                lines.append("peer %s" % p)
        for key, proto, opts in self.listeners:
            ln = "listen %s %s:%d" % (proto, self.host, self.port[key])
            if opts.get("tls") or proto in ("imaps", "pop3s"):
                ln += " cert=%s key=%s" % (t.cert, t.key)
            if opts.get("require_tls"):
                ln += " require-tls"
            if opts.get("proxy_protocol"):
                ln += " proxy-protocol=%s" % opts["proxy_protocol"]
            lines.append(ln)
        for b in self.backends:
            lines.append("backend " + b)
        for k, v in self.limits.items():
            lines.append("limit %s %s" % (k, v))
        for k, v in self.timeouts.items():
            lines.append("timeout %s %s" % (k, v))
        lines += self.extra
        return "\n".join(lines) + "\n"

    def write_config(self, text=None):
        with open(self.conf, "w") as f:
            f.write(text if text is not None else self.config_text())

    def write_popmap(self, lines):
        tmp = self.popmap_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.rename(tmp, self.popmap_file)

    def start(self):
        binary = mmnode_bin()
        if not os.access(binary, os.X_OK):
            raise RuntimeError("mmnode binary not found at %s (set MM_BUILD_DIR)"
                               % binary)
        self.logf = open(self.logfile, "ab")
        cmd = [binary, "-c", self.conf]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL,
            stdout=self.logf, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent)
        if self.netns is None:
            # Inside a namespace the listeners are not reachable from here;
            # the control socket (a file) is.
            wait_ports(list(self.port.values()), timeout=10, proc=self.proc,
                       what="mmnode " + self.name, log=self.log_text,
                       host=self.host)
        if self.site is not None:
            self.wait_control_socket()
        return self

    # --- the signed directory ---

    def make_key(self, certify=True, role="node", site=None):
        """A fresh node key pair, certified by the root for SITE (default:
        this node's site) unless CERTIFY is false."""
        for f in (self.node_key, self.node_pub):
            if os.path.exists(f):
                os.unlink(f)
        r = mmctl(["keys", "new", self.node_key])
        r.check("keys new")
        if certify:
            self.certify(role=role, site=site)
        return self

    def certify(self, role="node", site=None, pub=None, name=None):
        r = self.ctl("keys", "certify", "--root", self.root.key,
                     "--pub", pub or self.node_pub, "--role", role,
                     "--site", site or self.site, "--name", name or self.name)
        r.check("keys certify")
        return r

    def ctl(self, *args, json=False, direct=False, timeout=120):
        """mmctl -c CONF ARGS (through the control socket when the node
        runs, on the store otherwise; DIRECT forces the store)."""
        return mmctl(list(args), conf=self.conf, json=json, direct=direct,
                     timeout=timeout)

    def control_socket_ready(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(1)
            s.connect(self.control_socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def wait_control_socket(self, timeout=10):
        ok = wait_for(lambda: self.control_socket_ready()
                      or (self.proc is not None and
                          self.proc.poll() is not None), timeout)
        if not ok or not self.control_socket_ready():
            raise RuntimeError("mmnode %s: control socket %s not answering "
                               "after %.0fs\n%s" % (
                                   self.name, self.control_socket, timeout,
                                   self.log_text()[-3000:]))

    def run_once(self, timeout=10):
        """Runs mmnode -c CONF in the foreground, expecting it to give up.
        Returns (exit code or None if it still ran after TIMEOUT, output).
        Whatever it started is killed."""
        p = subprocess.Popen([mmnode_bin(), "-c", self.conf],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             preexec_fn=_die_with_parent)
        try:
            out, _ = p.communicate(timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            rc = None
            kill_group(p.pid)
            out, _ = p.communicate(timeout=5)
        kill_group(p.pid)
        return rc, out.decode(errors="replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def children(self):
        """Pids whose parent is the mmnode main process."""
        out = []
        if not self.proc:
            return out
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % p) as f:
                    st = f.read()
            except OSError:
                continue
            fields = st[st.rindex(")") + 2:].split()
            if int(fields[1]) == self.proc.pid and fields[0] != "Z":
                out.append(int(p))
        return out

    def members(self):
        """What `mmctl sites` says, as {name: member}; {} when it fails."""
        r = self.ctl("sites", json=True)
        if r.rc != 0:
            return {}
        return {m["name"]: m for m in r.json()}

    def agent_pid(self):
        """The child holding the control socket: the directory agent."""
        inode = None
        with open("/proc/net/unix") as f:
            for ln in f:
                parts = ln.split()
                if len(parts) >= 8 and parts[7] == self.control_socket:
                    inode = parts[6]
        assert inode is not None, "no control socket in /proc/net/unix"
        want = "socket:[%s]" % inode
        for pid in self.children():
            try:
                fds = os.listdir("/proc/%d/fd" % pid)
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == want:
                        return pid
                except OSError:
                    pass
        raise AssertionError("no child of %s holds the control socket"
                             % self.name)

    def worker_pids(self):
        """The children but the directory agent: the proxy workers."""
        agent = (self.agent_pid() if os.path.exists(self.control_socket)
                 else None)
        return [pid for pid in self.children() if pid != agent]

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop_begin(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop_wait(self, timeout=6):
        if not self.proc:
            return None
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        # Workers left behind by a crashed parent die with the group.
        kill_group(self.proc.pid)
        if rc is None:
            try:
                rc = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None
        self.logf.close()
        return rc

    def stop(self, timeout=6):
        self.stop_begin()
        return self.stop_wait(timeout)


# --- raw protocol conversations ------------------------------------------------

class Closed(Exception):
    pass


class Conv:
    """A line-level conversation over one TCP (optionally TLS) connection."""

    def __init__(self, port, host=HOST, source=None, tls=None,
                 server_hostname="localhost", timeout=IO_TIMEOUT,
                 greeting=True):
        self.timeout = timeout
        src = (source, 0) if source else None
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=src)
        self.buf = b""
        self.transcript = []
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock,
                                        server_hostname=server_hostname)
        self.greeting = self.line() if greeting else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.transcript.append(">> " + data.decode("latin-1"))
        self.sock.sendall(data)

    def cmd(self, text):
        self.send(text + "\r\n")

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError,
                BrokenPipeError):
            data = b""
        except ssl.SSLError as e:
            if "UNEXPECTED_EOF" in str(e) or "EOF" in str(e):
                data = b""
            else:
                raise
        if not data:
            raise Closed("connection closed; transcript:\n" + self.dump())
        self.buf += data

    def line(self, timeout=None):
        """The next line without CRLF; raises Closed on EOF and
        socket.timeout when nothing arrives in TIMEOUT."""
        t = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + t
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no line within %.1fs; transcript:\n%s"
                                     % (t, self.dump()))
            self._fill(left)
        ln, self.buf = self.buf.split(b"\n", 1)
        s = ln.rstrip(b"\r").decode("latin-1")
        self.transcript.append("<< " + s)
        return s

    def read_bytes(self, n, timeout=None):
        t = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + t
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("short read")
            self._fill(left)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def expect(self, prefix, timeout=None):
        ln = self.line(timeout)
        if not ln.startswith(prefix):
            raise AssertionError("expected %r, got %r; transcript:\n%s" % (
                prefix, ln, self.dump()))
        return ln

    def tagged(self, tag, timeout=None):
        """IMAP: lines up to and including the one tagged TAG. Returns
        (untagged_lines, tagged_line)."""
        lines = []
        while True:
            ln = self.line(timeout)
            if ln.startswith(tag + " "):
                return lines, ln
            lines.append(ln)

    def pop_multi(self, timeout=None):
        """POP3: the lines of a multi-line answer up to '.'."""
        lines = []
        while True:
            ln = self.line(timeout)
            if ln == ".":
                return lines
            lines.append(ln[1:] if ln.startswith("..") else ln)

    def starttls(self, ctx, server_hostname="localhost"):
        if self.buf:
            raise AssertionError("plaintext bytes after the TLS go-ahead: %r"
                                 % self.buf)
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def wait_closed(self, timeout=5.0):
        """Read (and record) lines until EOF. Returns the lines read; raises
        socket.timeout if the peer keeps the connection open."""
        lines = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("connection still open; transcript:\n"
                                     + self.dump())
            try:
                lines.append(self.line(left))
            except Closed:
                if self.buf:
                    lines.append(self.buf.decode("latin-1"))
                    self.buf = b""
                return lines
            except OSError as e:
                if isinstance(e, socket.timeout):
                    raise
                return lines

    def dump(self):
        return "\n".join(self.transcript[-40:])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def sasl_plain(user, pw, authz=""):
    return b64("%s\0%s\0%s" % (authz, user, pw))


def imap_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- fake back ends --------------------------------------------------------------

class FakeServer:
    """A back end showing behaviour no real server shows.

    mode: "hang"   accept and never send anything
          "greet-hang"  send an IMAP greeting, then never answer
          "garbage" send binary junk and junk lines, then keep the connection
          "close"  accept and close at once
          "lmtp-refuse-data"  an LMTP server that takes LHLO, MAIL and
                   RCPT but refuses DATA with 554
          "lmtp-silent-data"  takes the message and never answers its end
          "lmtp-mixed"  saves the message for the first recipient and
                   answers 452 4.2.2 (mailbox full) for the others
    """

    def __init__(self, mode):
        self.mode = mode
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.conns = []
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.mode == "close":
                c.close()
                continue
            self.conns.append(c)
            try:
                if self.mode == "greet-hang":
                    c.sendall(b"* OK fake ready\r\n")
                elif self.mode == "garbage":
                    c.sendall(b"\x00\xff\xfe garbage \x01\x02\r\n"
                              b"HTTP/1.1 400 Bad Request\r\n\r\n"
                              + bytes(range(256)) + b"\r\n")
                elif self.mode.startswith("lmtp-"):
                    threading.Thread(target=self._lmtp, args=(c,),
                                     daemon=True).start()
            except OSError:
                pass

    def _lmtp(self, c):
        f = c.makefile("rb")
        rcpts = 0
        try:
            c.sendall(b"220 fake LMTP\r\n")
            while True:
                ln = f.readline()
                if not ln:
                    return
                verb = ln[:4].upper()
                if verb == b"LHLO":
                    c.sendall(b"250-fake\r\n250 PIPELINING\r\n")
                elif verb == b"DATA" and self.mode == "lmtp-refuse-data":
                    c.sendall(b"554 5.3.0 fake refuses data\r\n")
                elif verb == b"DATA":
                    c.sendall(b"354 go ahead\r\n")
                    while f.readline() not in (b".\r\n", b""):
                        pass
                    if self.mode == "lmtp-mixed":
                        c.sendall(b"250 2.0.0 saved\r\n" + b"452 4.2.2 "
                                  b"mailbox full\r\n" * (rcpts - 1))
                    rcpts = 0
                elif verb == b"RCPT":
                    rcpts += 1
                    c.sendall(b"250 ok\r\n")
                elif verb == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"250 ok\r\n")
        except OSError:
            pass

    def stop(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass

    stop_begin = stop

    def stop_wait(self, timeout=0):
        pass


# --- per-file environment ----------------------------------------------------------

class Env:
    """Temp dir, TLS material and the Dovecot back ends of one test file."""

    def __init__(self, backends=("be1", "be2")):
        self.keep = os.environ.get("MM_KEEP") == "1"
        self.dir = tempfile.mkdtemp(prefix="mmit-")
        os.chmod(self.dir, 0o755)
        self.tls = TLS(os.path.join(self.dir, "tls"))
        self.dovecots = {}
        self.nodes = []
        self.others = []
        try:
            for name in backends:
                if name == "be2":
                    cert, key = self.tls.be_cert, self.tls.be_key
                else:
                    cert, key = self.tls.cert, self.tls.key
                self.dovecots[name] = Dovecot(
                    name, os.path.join(self.dir, name), cert, key)
            for d in self.dovecots.values():
                d.spawn()
            for d in self.dovecots.values():
                d.wait_ready()
        except BaseException:
            self.close()
            raise

    def backend_line(self, name, client_addr="id", alias=None, **opts):
        d = self.dovecots[name]
        ln = "%s %s imap=%d pop3=%d client-addr=%s" % (
            alias or name, HOST, d.imap, d.pop3, client_addr)
        for k, v in opts.items():
            ln += " %s=%s" % (k.replace("_", "-"), v)
        return ln

    def mmnode(self, start=True, **kw):
        n = Mmnode(self, **kw)
        self.nodes.append(n)
        if start:
            n.start()
        return n

    def root_key(self):
        """The cluster root key of this Env (made on first use)."""
        if getattr(self, "_root", None) is None:
            self._root = RootKey(os.path.join(self.dir, "root"))
        return self._root

    def gossip_node(self, name, site, peer_listen, peers=(), start=True,
                    **kw):
        """A directory node of SITE that gossips: listens for other nodes
        on PEER_LISTEN ("HOST:PORT") and joins through PEERS."""
        return self.directory_node(name, site=site, start=start,
                                   peer_listen=peer_listen, peers=peers,
                                   **kw)

    def directory_node(self, name, site="a", certify=True, start=True,
                       **kw):
        """An mmnode with the signed directory on for SITE: a node key
        certified by this Env's root (unless CERTIFY is false)."""
        n = Mmnode(self, name=name, site=site, root=self.root_key(), **kw)
        self.nodes.append(n)
        n.make_key(certify=certify)
        if start:
            n.start()
        return n

    def fake(self, mode):
        f = FakeServer(mode)
        self.others.append(f)
        return f

    def postfix(self, name="postfix", start=True, **kw):
        """A Postfix relay (see Postfix) in this Env's directory, stopped
        with the Env."""
        kw.setdefault("tls_ca", self.tls.ca)
        p = Postfix(os.path.join(self.dir, name), name=name, **kw)
        self.others.append(p)
        if start:
            p.start()
        return p

    def nginx(self, auth, name="nginx", start=True, **kw):
        """An nginx mail proxy (see Nginx) in this Env's directory, stopped
        with the Env. AUTH: a MailAuth (stopped with the Env too) or an
        auth_http address."""
        if isinstance(auth, MailAuth) and auth not in self.others:
            self.others.append(auth)
        n = Nginx(os.path.join(self.dir, name), auth, **kw)
        self.others.append(n)
        if start:
            n.start()
        return n

    def haproxy(self, routes, name="haproxy", start=True):
        """A HAProxy load balancer (see Haproxy) in this Env's directory,
        stopped with the Env."""
        h = Haproxy(os.path.join(self.dir, name), routes)
        self.others.append(h)
        if start:
            h.start()
        return h

    def close(self):
        stop_all([n for n in self.nodes if n.proc] + self.others
                 + list(self.dovecots.values()))
        for n in self.nodes:
            sanitizer_check(n.log_text())
        if self.keep:
            sys.stderr.write("MM_KEEP=1: kept %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# A sanitizer report in any mmnode log fails the test file, even when the
# worker that hit it was restarted and every test passed.
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:")
sanitizer_reports = []


def sanitizer_check(log):
    for marker in SANITIZER_MARKERS:
        i = log.find(marker)
        if i >= 0:
            sanitizer_reports.append(log[max(0, i - 200):i + 3000])


_env = None


def env():
    """The Env of this test file, started on first use."""
    global _env
    if _env is None:
        _env = Env()
    return _env


def shutdown():
    global _env
    if _env is not None:
        e, _env = _env, None
        e.close()


atexit.register(shutdown)


class _TimedResult(unittest.TextTestResult):
    """Verbose results with each test's duration, so slow tests show."""

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def _done(self, word):
        if self.showAll:
            # A module's set-up fails before any test has started.
            t0 = getattr(self, "_t0", time.monotonic())
            self.stream.writeln("%s (%.2fs)" % (word, time.monotonic() - t0))
            self.stream.flush()

    def addSuccess(self, test):
        unittest.TestResult.addSuccess(self, test)
        self._done("ok")

    def addFailure(self, test, err):
        unittest.TestResult.addFailure(self, test, err)
        self._done("FAIL")

    def addError(self, test, err):
        unittest.TestResult.addError(self, test, err)
        self._done("ERROR")

    def addSkip(self, test, reason):
        unittest.TestResult.addSkip(self, test, reason)
        self._done("skipped %r" % reason)


def main():
    """Run the unittest cases of __main__ verbosely; stop every process and
    exit nonzero when a test fails."""
    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    ok = False
    try:
        runner = unittest.TextTestRunner(verbosity=2,
                                         resultclass=_TimedResult)
        prog = unittest.main(module="__main__", testRunner=runner,
                             exit=False)
        ok = prog.result.wasSuccessful()
    finally:
        shutdown()
    for report in sanitizer_reports:
        sys.stderr.write("sanitizer report in an mmnode log:\n%s\n" % report)
        ok = False
    sys.exit(0 if ok else 1)


# --- client helpers ---------------------------------------------------------------

import imaplib   # noqa: E402  (kept next to their helpers)
import poplib    # noqa: E402


class IMAP4From(imaplib.IMAP4):
    """imaplib.IMAP4 with a chosen source address."""

    def __init__(self, host, port, source=None, timeout=IO_TIMEOUT):
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        src = (self._source, 0) if self._source else None
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=src)


def curl(args, timeout=20):
    """Run curl; returns (returncode, stdout bytes, stderr text)."""
    r = run(["curl", "-sS", "--max-time", "15"] + args, timeout=timeout)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def url_user(u):
    return u.replace("@", "%40")


def subjects_in(data):
    if isinstance(data, bytes):
        data = data.decode(errors="replace")
    return re.findall(r"^Subject: (.*?)\r?$", data, re.M)


def imap_subjects(m):
    """Subjects of all messages in INBOX of a logged-in imaplib client."""
    typ, _ = m.select("INBOX", readonly=True)
    if typ != "OK":
        raise AssertionError("SELECT INBOX failed")
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    if typ != "OK":
        raise AssertionError("FETCH failed")
    out = []
    for item in data:
        if isinstance(item, tuple):
            out += subjects_in(item[1])
    return out


def pop_subject(p, n=1):
    """Subject of message N of a logged-in poplib client."""
    _, lines, _ = p.retr(n)
    return subjects_in(b"\n".join(lines))


# --- mail transfer: LMTP/SMTP clients, reading delivered mail ------------------

# The domains the test relays accept mail for.
MAIL_DOMAINS = ("a.test", "b.test", "be1.test", "be2.test", "z.test",
                "example.com", "example.net")


def proxy_v2_header(src, sport, dst, dport):
    """A PROXY protocol v2 header (PROXY command, TCP over IPv4)."""
    body = (socket.inet_aton(src) + socket.inet_aton(dst)
            + sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))
    return (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11])
            + len(body).to_bytes(2, "big") + body)


def crlf_message(data):
    """DATA as sent on the wire: bytes, every line ending in CRLF (bare LF
    and bare CR become CRLF), a final CRLF added when missing. Not
    dot-stuffed."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


class MailReplyError(Exception):
    """A transfer step failed: .code and .text hold the server's reply."""

    def __init__(self, step, code, text):
        super().__init__("%s: %s %s" % (step, code, text))
        self.step, self.code, self.text = step, code, text


class MailClient:
    """One SMTP or LMTP conversation over TCP, reply by reply.

    Unlike smtplib.LMTP it reads one DATA reply per accepted recipient, so
    a message may have several recipients. Every reply is (code, text);
    text joins the lines of a multi-line reply with newlines.
    """

    def __init__(self, host, port, lmtp=False, helo="client.mailmesh.test",
                 proxy=None, source=None, timeout=IO_TIMEOUT):
        self.lmtp = lmtp
        src = (source, 0) if source else None
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=src)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb")
        self.capabilities = []
        try:
            if proxy:
                self.sock.sendall(proxy)
            self.greeting = self.reply()
            if self.greeting[0] != 220:
                raise MailReplyError("greeting", *self.greeting)
            if helo:
                self.hello(helo)
        except BaseException:
            self.close()
            raise

    def reply(self):
        lines = []
        while True:
            ln = self.f.readline(65536)
            if not ln:
                raise Closed("connection closed after %r" % lines)
            ln = ln.rstrip(b"\r\n").decode("latin-1")
            lines.append(ln[4:])
            if len(ln) < 4 or ln[3] != "-":
                try:
                    code = int(ln[:3])
                except ValueError:
                    raise MailReplyError("reply", 0, ln)
                return code, "\n".join(lines)

    def cmd(self, line):
        self.sock.sendall(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def hello(self, name):
        code, text = self.cmd(("LHLO " if self.lmtp else "EHLO ") + name)
        if code != 250:
            raise MailReplyError("LHLO" if self.lmtp else "EHLO", code, text)
        self.capabilities = [ln.upper() for ln in text.split("\n")[1:]]
        return code, text

    def xclient(self, **attrs):
        """XCLIENT NAME=VALUE ...; the server greets again (220) and the
        client says hello again, as Postfix and Dovecot expect."""
        args = " ".join("%s=%s" % (k.upper(), v) for k, v in attrs.items())
        code, text = self.cmd("XCLIENT " + args)
        if code != 220:
            raise MailReplyError("XCLIENT", code, text)
        return self.hello("client.mailmesh.test")

    def send(self, mail_from, rcpts, data):
        """One transaction. Returns {rcpt: (code, text)}: the RCPT reply for
        refused recipients, the DATA reply (LMTP: that recipient's) for the
        others. Raises MailReplyError when MAIL FROM is refused."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        code, text = self.cmd("MAIL FROM:<%s>" % mail_from)
        if code != 250:
            raise MailReplyError("MAIL FROM", code, text)
        out = {}
        accepted = []
        for r in rcpts:
            rep = self.cmd("RCPT TO:<%s>" % r)
            if rep[0] in (250, 251):
                accepted.append(r)
            else:
                out[r] = rep
        if not accepted:
            self.cmd("RSET")
            return out
        code, text = self.cmd("DATA")
        if code != 354:
            for r in accepted:
                out[r] = (code, text)
            return out
        body = crlf_message(data)
        body = re.sub(rb"(?m)^\.", b"..", body)
        self.sock.sendall(body + b".\r\n")
        if self.lmtp:
            for r in accepted:
                out[r] = self.reply()
        else:
            rep = self.reply()
            for r in accepted:
                out[r] = rep
        return out

    def quit(self):
        try:
            self.cmd("QUIT")
        except (OSError, Closed, MailReplyError):
            pass
        self.close()

    def close(self):
        for x in (self.f, self.sock):
            try:
                x.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def lmtp_send(host, port, mail_from, rcpts, data, xclient=None, proxy=None,
              lmtp=True, source=None, timeout=IO_TIMEOUT):
    """Delivers DATA to RCPTS over LMTP (or SMTP with lmtp=False) on one
    connection. XCLIENT: dict of XCLIENT attributes sent after LHLO;
    PROXY: a PROXY header sent first (see proxy_v2_header). Returns
    {rcpt: (code, text)}; 250 means saved (LMTP) / queued (SMTP).

    Mail delivered before the mailbox was first opened gets lower UIDs than
    the messages the Dovecot fixture wrote into the Maildir (see
    Dovecot.sync_mailboxes)."""
    c = MailClient(host, port, lmtp=lmtp, proxy=proxy, source=source,
                   timeout=timeout)
    try:
        if xclient:
            c.xclient(**xclient)
        return c.send(mail_from, rcpts, data)
    finally:
        c.quit()


def smtp_send(host, port, mail_from, rcpts, data, **kw):
    """lmtp_send over SMTP (EHLO, one DATA reply for all recipients)."""
    return lmtp_send(host, port, mail_from, rcpts, data, lmtp=False, **kw)


def _imap_target(target, user, password):
    if isinstance(target, tuple):
        host, port = target
    else:
        host, port = HOST, target.imap
        if password is None:
            password = target.users[user]
    if password is None:
        raise ValueError("no password for %s" % user)
    m = imaplib.IMAP4(host, port, timeout=IO_TIMEOUT)
    try:
        m.login(user, password)
    except imaplib.IMAP4.error:
        m.shutdown()
        raise
    return m


def fetch_all(target, user, password=None):
    """The raw bytes (CRLF line ends, as IMAP serves them) of every message
    in USER's INBOX, in UID order (see Dovecot.sync_mailboxes). TARGET is a
    Dovecot (password defaults to the fixture's) or a (host, port) IMAP
    address."""
    m = _imap_target(target, user, password)
    try:
        typ, data = m.select("INBOX", readonly=True)
        if typ != "OK":
            raise AssertionError("SELECT INBOX failed: %r" % data)
        if int(data[0] or 0) == 0:
            return []
        typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
        if typ != "OK":
            raise AssertionError("FETCH failed: %r" % data)
        found = []
        for item in data:
            if isinstance(item, tuple):
                mo = re.search(rb"UID (\d+)", item[0])
                found.append((int(mo.group(1)) if mo else 0, item[1]))
        return [raw for _, raw in sorted(found)]
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def inbox_count(target, user, password=None):
    """Number of messages in USER's INBOX (STATUS MESSAGES)."""
    m = _imap_target(target, user, password)
    try:
        typ, data = m.status("INBOX", "(MESSAGES)")
        if typ != "OK":
            raise AssertionError("STATUS failed: %r" % data)
        return int(re.search(rb"MESSAGES (\d+)", data[0]).group(1))
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def wait_inbox_count(target, user, n, timeout=20.0, password=None):
    """Polls until USER's INBOX holds at least N messages; returns the
    last count seen."""
    last = [0]

    def enough():
        last[0] = inbox_count(target, user, password)
        return last[0] >= n
    wait_for(enough, timeout, step=0.1)
    return last[0]


def empty_inbox(target, user, password=None):
    """Expunges every message in USER's INBOX."""
    m = _imap_target(target, user, password)
    try:
        typ, data = m.select("INBOX")
        if typ == "OK" and int(data[0] or 0) > 0:
            m.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
            m.expunge()
    finally:
        try:
            m.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


# Dovecot's LMTP server (2.3, default settings) writes exactly these header
# fields above the message, in this order:
#   Return-Path: <MAIL FROM address>
#   Delivered-To: <RCPT TO address as the client wrote it>
#   Received: from HELO ([client IP]) by HOSTNAME with LMTP id ID
#       (envelope-from <MAIL FROM>) for <RCPT>; DATE      (folded, 5 lines)
# A Return-Path already in the message is kept below them.
_DELIVERY_FIELDS = (b"return-path", b"delivered-to", b"received")


def split_header_fields(raw):
    """(fields, rest): the leading header fields of RAW, each with its
    continuation lines and line ends, and the bytes after them."""
    fields = []
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end + 1
        line = raw[pos:end]
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        elif b":" in line:
            fields.append(line)
        else:
            break
        pos = end
    return fields, raw[pos:]


def strip_delivery_headers(raw):
    """RAW without the fields Dovecot's LMTP server prepended: a leading
    Return-Path, then Delivered-To, then a Received field "with LMTP", each
    removed only in that position, so the sender's own fields stay."""
    fields, rest = split_header_fields(raw)
    i = 0
    for name in _DELIVERY_FIELDS:
        if i < len(fields) and fields[i].split(b":", 1)[0].strip().lower() \
                == name:
            if name == b"received" and b" with LMTP" not in fields[i]:
                break
            i += 1
    return b"".join(fields[i:]) + rest


def delivery_headers(raw):
    """The fields strip_delivery_headers removes, as {lowercase name:
    unfolded value}."""
    stripped = strip_delivery_headers(raw)
    head = raw[:len(raw) - len(stripped)]
    out = {}
    for f in split_header_fields(head)[0]:
        k, v = f.split(b":", 1)
        out[k.strip().lower().decode()] = re.sub(
            rb"\s+", b" ", v).strip().decode("latin-1")
    return out


# --- Postfix ---------------------------------------------------------------------

POSTFIX_MASTER = "/usr/lib/postfix/sbin/master"

# Every service the relay needs, none chrooted. postlog writes maillog_file.
POSTFIX_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{listen} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
postlog   unix-dgram n  -       n       -       1       postlogd
"""

POSTFIX_QUEUE_DIRS = {
    # name: (owner, group, mode)
    "active": ("postfix", None, 0o700),
    "bounce": ("postfix", None, 0o700),
    "corrupt": ("postfix", None, 0o700),
    "defer": ("postfix", None, 0o700),
    "deferred": ("postfix", None, 0o700),
    "flush": ("postfix", None, 0o700),
    "hold": ("postfix", None, 0o700),
    "incoming": ("postfix", None, 0o700),
    "private": ("postfix", None, 0o700),
    "saved": ("postfix", None, 0o700),
    "trace": ("postfix", None, 0o700),
    "maildrop": ("postfix", "postdrop", 0o1730),
    "public": ("postfix", "postdrop", 0o2710),
    "pid": ("root", "root", 0o755),
}

# The queues a message sits in until it is delivered or bounced.
POSTFIX_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def postfix_map(path, entries, kind="texthash"):
    """Writes a Postfix lookup table to PATH ("key value" per line from the
    dict or pair list ENTRIES) and returns its "KIND:PATH" name; hash and
    other indexed kinds are compiled with postmap. texthash needs no
    compiling; a running Postfix reads it again only after reload()."""
    items = entries.items() if isinstance(entries, dict) else entries
    with open(path, "w") as f:
        for k, v in items:
            f.write("%s %s\n" % (k, v))
    os.chmod(path, 0o644)
    name = "%s:%s" % (kind, path)
    if kind not in ("texthash", "inline", "regexp", "pcre"):
        # postmap wants a main.cf; this machine has no default one.
        conf = path + ".conf.d"
        os.makedirs(conf, exist_ok=True)
        open(os.path.join(conf, "main.cf"), "a").close()
        r = run(["postmap", "-c", conf, name])
        if r.returncode != 0:
            raise RuntimeError("postmap %s failed: %s" % (
                name, r.stderr.decode(errors="replace")))
    return name


def _pids_with_environ(key, value):
    """Live processes whose environment has KEY=VALUE."""
    want = ("%s=%s" % (key, value)).encode()
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % p, "rb") as f:
                env = f.read().split(b"\0")
            with open("/proc/%s/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        if want in env and st[st.rindex(")") + 2:].split()[0] != "Z":
            out.append(int(p))
    return out


class Postfix(LogFile):
    """A real Postfix 3.x relay running from DIR (root only).

    smtpd listens on 127.0.0.1:self.smtp and accepts mail from 127.0.0.0/8
    for recipients in DOMAINS (others get "554 Relay access denied");
    nothing is delivered locally (mydestination is empty). Routing:
    TRANSPORT_MAPS (a map name such as "texthash:/path" from postfix_map,
    "hash:/path" or "socketmap:inet:127.0.0.1:PORT:transport") first, then
    RELAY (a "transport:nexthop", e.g. "lmtp:inet:127.0.0.1:PORT"). Without
    RELAY, smtpd refuses an unrouted recipient at RCPT TO with "450 4.4.0
    ... no route in the test relay"; to get a deferred message, route it to
    a port nobody listens on. Deferred mail is retried about every 1-2 s.
    smtpd accepts XCLIENT and XFORWARD from 127.0.0.0/8.
    SMTP_TLS: the smtp client's smtp_tls_security_level ("encrypt",
    "may", "none"; default: Postfix's, none), with TLS_CA (Env.postfix
    gives the Env's test CA) as smtp_tls_CAfile and smtp_tls_loglevel 1:
    every session logs "... TLS connection established to ..." (see
    tls_lines). MAIN: more main.cf settings (override the defaults here).

    The log (maillog_file via postlogd) is DIR/maillog. The queue lives in
    DIR/spool; queue() lists it as postqueue -j does.
    """

    def __init__(self, d, domains=MAIL_DOMAINS, transport_maps=None,
                 relay=None, port=None, main=None, name="postfix",
                 smtp_tls=None, tls_ca=None):
        if not is_root():
            raise RuntimeError("the Postfix fixture needs root")
        self.name = name
        self.dir = d
        self.etc = os.path.join(d, "etc")
        self.spool = os.path.join(d, "spool")
        self.data = os.path.join(d, "data")
        self.maillog = self.logfile = os.path.join(d, "maillog")
        self.smtp = port or free_port()
        self.domains = list(domains)
        self.transport_maps = transport_maps
        self.relay = relay
        self.smtp_tls = smtp_tls
        self.tls_ca = tls_ca
        self.main = dict(main or {})
        self.proc = None
        self.outfile = os.path.join(d, "master.out")
        os.makedirs(self.etc, exist_ok=True)
        os.chmod(d, 0o755)
        self._make_dirs()
        self.write_config()

    def _make_dirs(self):
        import grp
        import pwd
        for sub in ("", "etc"):
            os.chmod(os.path.join(self.dir, sub), 0o755)
        os.makedirs(self.spool, exist_ok=True)
        os.chown(self.spool, 0, 0)
        os.chmod(self.spool, 0o755)
        for name, (owner, group, mode) in POSTFIX_QUEUE_DIRS.items():
            p = os.path.join(self.spool, name)
            os.makedirs(p, exist_ok=True)
            os.chown(p, pwd.getpwnam(owner).pw_uid,
                     grp.getgrnam(group).gr_gid if group else 0)
            os.chmod(p, mode)
        os.makedirs(self.data, exist_ok=True)
        os.chown(self.data, pwd.getpwnam("postfix").pw_uid, 0)
        os.chmod(self.data, 0o700)

    def main_settings(self):
        relay = self.relay or "retry:4.4.0 no route in the test relay"
        s = {
            "compatibility_level": "3.6",
            "config_directory": self.etc,
            "queue_directory": self.spool,
            "data_directory": self.data,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "syslog_name": "postfix-" + self.name,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.dir,
            "myhostname": "%s.mailmesh.test" % self.name,
            "mydomain": "mailmesh.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_recipient_maps": "",
            "local_transport": "error:5.1.1 no local delivery",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": HOST,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": " ".join(self.domains),
            "relay_recipient_maps": "",
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "relay_transport": relay,
            "default_transport": relay,
            "transport_maps": self.transport_maps or "",
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            "smtpd_authorized_xforward_hosts": "127.0.0.0/8",
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            "lmtp_host_lookup": "native",
            "smtp_host_lookup": "native",
            "smtputf8_enable": "no",
            "biff": "no",
            "append_dot_mydomain": "no",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "delay_warning_time": "0",
            "smtp_connect_timeout": "5s",
            "lmtp_connect_timeout": "5s",
            "notify_classes": "",
            "message_size_limit": str(64 * 1024 * 1024),
        }
        if self.smtp_tls:
            s.update(self.tls_settings())
        s.update(self.main)
        return s

    def tls_settings(self):
        """The smtp client's TLS settings for SMTP_TLS. tlsmgr (in
        master.cf) keeps the session cache in the private data directory;
        without tlsmgr the client disables TLS ("no entropy for TLS key
        generation"): encrypt defers everything, may sends in clear."""
        s = {"smtp_tls_security_level": self.smtp_tls,
             "smtp_tls_loglevel": "1",
             "smtp_tls_session_cache_database":
                 "btree:%s/smtp_scache" % self.data}
        if self.tls_ca:
            s["smtp_tls_CAfile"] = self.tls_ca
        return s

    def write_config(self):
        main = os.path.join(self.etc, "main.cf")
        with open(main, "w") as f:
            f.write("# generated by mmfixture for %s\n" % self.name)
            for k, v in self.main_settings().items():
                f.write("%s = %s\n" % (k, v))
        master = os.path.join(self.etc, "master.cf")
        with open(master, "w") as f:
            f.write(POSTFIX_MASTER_CF.format(
                listen="%s:%d" % (HOST, self.smtp)))
        # Postfix refuses a main.cf changed within the last seconds.
        t = time.time() - 60
        for p in (main, master):
            os.chmod(p, 0o644)
            os.utime(p, (t, t))

    def set_main(self, **settings):
        """Changes main.cf settings; a running Postfix needs reload()."""
        self.main.update(settings)
        self.write_config()

    def postconf(self, *args):
        """postconf -c ETC ARGS; returns the completed process."""
        return run(["postconf", "-c", self.etc] + list(args))

    def check_text(self):
        """What "postfix check" says about this configuration. Its fatal
        errors go to a terminal only, hence script(1)."""
        r = run(["script", "-qec", "postfix -c %s check" % self.etc,
                 "/dev/null"])
        return (r.stdout + r.stderr).decode(errors="replace")

    def start(self, timeout=15):
        if self.alive():
            return self
        self.outf = open(self.outfile, "ab")
        self.proc = subprocess.Popen(
            [POSTFIX_MASTER, "-c", self.etc, "-s"],
            stdin=subprocess.DEVNULL, stdout=self.outf,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent)
        try:
            wait_ports([self.smtp], timeout=timeout, proc=self.proc,
                       what="postfix " + self.name, log=self.startup_text)
            # qmgr is what moves mail; it is up when its fifo answers.
            if not wait_for(lambda: os.path.exists(
                    os.path.join(self.spool, "public", "qmgr")), timeout):
                raise RuntimeError("postfix %s: no qmgr\n%s" % (
                    self.name, self.startup_text()))
        except BaseException:
            self.stop()
            raise
        return self

    def startup_text(self):
        out = ""
        for p in (self.outfile, self.maillog):
            try:
                with open(p, errors="replace") as f:
                    out += f.read()[-4000:]
            except OSError:
                pass
        return out + "\npostfix check:\n" + self.check_text()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def reload(self):
        """Rereads main.cf and master.cf (postfix reload)."""
        self.proc.send_signal(signal.SIGHUP)

    def stop_begin(self):
        # SIGTERM is "postfix abort": master passes it to every child.
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop_wait(self, timeout=10):
        if self.proc is None:
            return
        end_group(self.proc, timeout)
        # Any daemon of this instance that left the group: found by the
        # MAIL_CONFIG master gives every child.
        for _ in range(50):
            left = _pids_with_environ("MAIL_CONFIG", self.etc)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)
        self.proc = None
        self.outf.close()

    def stop(self, timeout=10):
        self.stop_begin()
        self.stop_wait(timeout)

    # --- the queue ---

    def queue_files(self):
        """Queue ids of the files in the queues (maildrop, incoming, active,
        deferred, hold), read from the spool directly: {queue: [ids]}."""
        out = {}
        for q in POSTFIX_QUEUES:
            ids = []
            for root, dirs, files in os.walk(os.path.join(self.spool, q)):
                ids += files
            out[q] = sorted(ids)
        return out

    def queue_size(self):
        return sum(len(v) for v in self.queue_files().values())

    def queue_empty(self):
        return self.queue_size() == 0

    def wait_queue_empty(self, timeout=20.0):
        return wait_for(self.queue_empty, timeout, step=0.05)

    def queue(self):
        """The queue as postqueue -j lists it: one dict per message with
        queue_name, queue_id, sender, recipients [{address,
        delay_reason}], ..."""
        import json
        r = run(["postqueue", "-c", self.etc, "-j"])
        if r.returncode != 0:
            raise RuntimeError("postqueue -j failed: %s" % (
                r.stderr.decode(errors="replace")))
        return [json.loads(ln) for ln in r.stdout.decode().splitlines()
                if ln.strip()]

    def deferred(self):
        """The messages in the deferred queue (postqueue -j entries)."""
        return [m for m in self.queue() if m.get("queue_name") == "deferred"]

    def flush(self):
        """postqueue -f: retry every deferred message now."""
        r = run(["postqueue", "-c", self.etc, "-f"])
        if r.returncode != 0:
            raise RuntimeError("postqueue -f failed: %s" % (
                r.stderr.decode(errors="replace")))

    def delete_all(self):
        """postsuper -d ALL: drop every queued message."""
        run(["postsuper", "-c", self.etc, "-d", "ALL"])

    # --- the log ---

    def log_lines(self, pattern, pos=0):
        """The log lines after POS matching the regex PATTERN."""
        rx = re.compile(pattern)
        return [ln for ln in self.log_since(pos).splitlines()
                if rx.search(ln)]

    def tls_lines(self, pos=0):
        """The smtp client's "<kind> TLS connection established to ..."
        lines after POS (kind: Verified, Trusted, Untrusted, Anonymous)."""
        return self.log_lines(r"\b(Verified|Trusted|Untrusted|Anonymous) "
                              r"TLS connection established to ", pos)

    def wait_log(self, pattern, pos=0, timeout=10.0):
        """The first log line after POS matching the regex PATTERN (e.g.
        r"status=sent"), or None after TIMEOUT."""
        rx = re.compile(pattern)

        def find():
            for ln in self.log_since(pos).splitlines():
                if rx.search(ln):
                    return ln
            return None
        return wait_for(find, timeout)


# --- nginx mail proxy ---------------------------------------------------------------

NGINX_MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"


class MailAuth:
    """An auth_http responder for the nginx mail proxy, served from a
    thread of the test process on 127.0.0.1:self.port.

    ROUTES maps a protocol ("imap", "pop3", "smtp") to the (host, port)
    nginx should connect to. USERS (optional, user -> password) makes it
    check passwords; without it every login is accepted and the back end
    checks. self.requests records the Auth-* headers of every request.
    """

    def __init__(self, routes, users=None):
        import http.server
        self.routes = dict(routes)
        self.users = users
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                h = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append(h)
                status, host, port = outer.decide(h)
                self.send_response(200)
                self.send_header("Auth-Status", status)
                if status == "OK":
                    self.send_header("Auth-Server", host)
                    self.send_header("Auth-Port", str(port))
                else:
                    self.send_header("Auth-Wait", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def decide(self, h):
        """(Auth-Status, host, port) for one request's headers."""
        proto = (h.get("auth-protocol") or "imap").lower()
        route = self.routes.get(proto)
        if route is None:
            return "no route for " + proto, None, None
        if self.users is not None and h.get("auth-method") != "none":
            from urllib.parse import unquote
            user = unquote(h.get("auth-user", ""))
            pw = unquote(h.get("auth-pass", ""))
            if self.users.get(user) != pw:
                return "Invalid login or password", None, None
        return "OK", route[0], route[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    stop_begin = stop

    def stop_wait(self, timeout=0):
        pass


NGINX_CONF = """\
# generated by mmfixture
load_module {module};
worker_processes {workers};
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log {log_level};
events {{
  worker_connections 1024;
}}
mail {{
  server_name mail.mailmesh.test;
  auth_http {auth};
  proxy_pass_error_message on;
  proxy_buffer 64k;
{servers}}}
"""


class PrivateDaemon:
    """A server run from a private config: its own process group, output
    in self.outfile, up once it listens on every port in self.port;
    SIGTERM stops it (the group is killed after TIMEOUT)."""

    proc = None

    def spawn(self, argv, what, timeout):
        self.outf = open(self.outfile, "ab")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self.outf,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent)
        try:
            wait_ports(list(self.port.values()), timeout=timeout,
                       proc=self.proc, what=what, log=self.log_text)
        except BaseException:
            self.stop()
            raise
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop_begin(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop_wait(self, timeout=5):
        if self.proc is None:
            return
        end_group(self.proc, timeout)
        self.proc = None
        self.outf.close()

    def stop(self, timeout=5):
        self.stop_begin()
        self.stop_wait(timeout)


class Nginx(PrivateDaemon):
    """The nginx mail proxy from a private config in DIR.

    AUTH: the auth_http address, "HOST:PORT/path" or a MailAuth. Ports:
    .imap, .pop3, .smtp (a listener only for the protocols in PROTOCOLS).
    SMTP: smtp_auth is SMTP_AUTH (default "none": nginx asks auth_http
    after RCPT TO and then relays the transaction); XCLIENT turns nginx's
    XCLIENT to the SMTP back end on or off. nginx talks SMTP (EHLO) to its
    back end, never LMTP. EXTRA: more lines inside the mail block.
    """

    def __init__(self, d, auth, protocols=("imap", "pop3", "smtp"),
                 smtp_auth="none", xclient=False, workers=1, extra=None,
                 log_level="info"):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        os.chmod(d, 0o755)
        if isinstance(auth, MailAuth):
            auth = "%s:%d/auth" % (HOST, auth.port)
        self.auth = auth
        self.protocols = list(protocols)
        self.smtp_auth = smtp_auth
        self.xclient = xclient
        self.workers = workers
        self.extra = list(extra or [])
        self.log_level = log_level
        self.port = {p: free_port() for p in self.protocols}
        self.imap = self.port.get("imap")
        self.pop3 = self.port.get("pop3")
        self.smtp = self.port.get("smtp")
        self.conf = os.path.join(d, "nginx.conf")
        self.errlog = os.path.join(d, "error.log")
        self.outfile = os.path.join(d, "nginx.out")
        self.proc = None
        self.write_config()

    def config_text(self):
        servers = ""
        for p in self.protocols:
            servers += "  server {\n    listen %s:%d;\n    protocol %s;\n" % (
                HOST, self.port[p], p)
            if p == "pop3":
                servers += "    pop3_auth plain;\n"
            elif p == "smtp":
                servers += "    smtp_auth %s;\n    xclient %s;\n" % (
                    self.smtp_auth, "on" if self.xclient else "off")
            servers += "  }\n"
        for ln in self.extra:
            servers += "  %s\n" % ln
        return NGINX_CONF.format(module=NGINX_MAIL_MODULE, dir=self.dir,
                                 workers=self.workers, auth=self.auth,
                                 log_level=self.log_level, servers=servers)

    def write_config(self):
        with open(self.conf, "w") as f:
            f.write(self.config_text())

    def start(self, timeout=10):
        return self.spawn(["nginx", "-p", self.dir, "-e", self.errlog,
                           "-c", self.conf], "nginx", timeout)

    def log_text(self):
        out = ""
        for p in (self.outfile, self.errlog):
            try:
                with open(p, errors="replace") as f:
                    out += f.read()
            except OSError:
                pass
        return out

    def reload(self):
        self.write_config()
        self.proc.send_signal(signal.SIGHUP)


HAPROXY_CONF = """\
# generated by mmfixture
global
  maxconn 2000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
{sections}"""


class Haproxy(PrivateDaemon):
    """HAProxy in TCP mode from a private config in DIR: a load balancer
    in front of mmnode listeners that sends a PROXY protocol header.

    ROUTES: {key: (target_port, header)} with header "v1" (send-proxy) or
    "v2" (send-proxy-v2); .port[key] is where HAProxy listens for it. It
    connects to its targets from 127.0.0.1."""

    def __init__(self, d, routes):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.routes = dict(routes)
        self.port = {k: free_port() for k in self.routes}
        self.conf = os.path.join(d, "haproxy.cfg")
        self.outfile = os.path.join(d, "haproxy.out")
        self.proc = None
        sections = ""
        for k, (target, header) in sorted(self.routes.items()):
            send = {"v1": "send-proxy", "v2": "send-proxy-v2"}[header]
            sections += ("frontend f_%s\n  bind %s:%d\n  default_backend "
                         "b_%s\nbackend b_%s\n  server s %s:%d source "
                         "127.0.0.1 %s\n" % (k, HOST, self.port[k], k, k,
                                              HOST, target, send))
        with open(self.conf, "w") as f:
            f.write(HAPROXY_CONF.format(sections=sections))

    def start(self, timeout=10):
        return self.spawn(["haproxy", "-db", "-f", self.conf], "haproxy",
                          timeout)

    def log_text(self):
        try:
            with open(self.outfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""
