#!/usr/bin/env python3
"""Relay benchmark for mmnode, against Dovecot direct, Perdition and nginx.

One Dovecot back end (plaintext IMAP + POP3 on free 127.0.0.1 ports) holds
one user with a ~20 MiB message and a few small ones. mmnode, Perdition and
the nginx mail proxy run in front of that same back end. The program
measures, for every path:

  1. sequential IMAP logins/s (connect, greeting, LOGIN, SELECT, LOGOUT)
  2. sequential POP3 logins/s (connect, USER, PASS, STAT, QUIT)
  3. FETCH BODY[] throughput of the big message (MB/s, 1 MB = 10^6 bytes)
     in two layouts: "split", Dovecot alone on one core and the client
     and proxies on the others, as when the back end is another machine;
     and "shared", every process wherever the scheduler puts it; and the
     CPU time each proxy spent per 100 MB it relayed
  4. proxy memory per idle logged-in IMAP session (plaintext and TLS)

and prints one table with medians. FETCH is also measured through socat,
a plain TCP forwarder ("tcp hop"), when it is installed: what one more
loopback hop costs on the machine, the floor under any proxy's ratio.
It is a measuring program, not a test: it exits 0 whenever it measured,
nonzero only when something could not start. Every process it starts is
stopped on exit, Ctrl-C or error.

Usage:  bench_relay.py [--quick] [--keep]
Environment:
  MM_BUILD_DIR  cmake build directory holding node/mmnode; when unset the
                project is built (Release) into build-bench/ in the repo.
"""

import argparse
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, HERE)

from benchlib import (StartError, child_setup, clean_up,  # noqa: E402
                      exit_on_signals, fmt, log, median, port_open,
                      print_rows, ratio)

from mmfixture import TLS, free_port  # noqa: E402

HOST = "127.0.0.1"
USER = "bench@b.test"
PASSWORD = "bench-Pw-1"
BIG_BODY = 20 * 1024 * 1024          # bytes of text in the big message body
SMALL_MESSAGES = 3
BIG_SEQ = SMALL_MESSAGES + 1          # message number of the big one
IO_TIMEOUT = 20.0
NGINX_MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"
PERDITION_REGEX_DB = "/usr/lib/x86_64-linux-gnu/libperditiondb_posix_regex.so.0"

PATHS = ["direct", "mmnode", "perdition", "nginx"]
HOP = "tcp hop"       # socat forwarding to Dovecot, FETCH only

TARGETS = {
    "imap": "mm >= 0.9x direct, >= 5x perdition",
    "pop3": "mm >= 0.9x direct, >= 5x perdition",
    "fetch": "mm >= 0.9x direct",
    "fetch_shared": "(not a target: see README)",
    "fetchcpu": "(lower is better)",
    "mem": "mm <= 16 KiB",
    "memtls": "mm <= 64 KiB",
}


# --- processes -------------------------------------------------------------

def proc_stat(pid):
    """(comm, state, ppid, pgid) of PID or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    comm = st[st.index("(") + 1:st.rindex(")")]
    fields = st[st.rindex(")") + 2:].split()
    return comm, fields[0], int(fields[1]), int(fields[2])


def group_pids(pgid):
    """Live (non-zombie) processes of process group PGID."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        st = proc_stat(int(p))
        if st and st[3] == pgid and st[1] != "Z":
            out.append((int(p), st[0]))
    return out


def smaps_rollup(pid):
    """Dict of smaps_rollup fields in KiB."""
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for ln in f:
                m = re.match(r"(\w+):\s+(\d+) kB", ln)
                if m:
                    out[m.group(1)] = int(m.group(2))
    except OSError:
        pass
    return out


def group_memory(pgid):
    """(private KiB, pss KiB, rss KiB, nprocs) summed over process group."""
    priv = pss = rss = 0
    pids = group_pids(pgid)
    for pid, _ in pids:
        r = smaps_rollup(pid)
        priv += r.get("Private_Clean", 0) + r.get("Private_Dirty", 0)
        pss += r.get("Pss", 0)
        rss += r.get("Rss", 0)
    return priv, pss, rss, len(pids)


def pin_group(pgid, cpus):
    """Restricts every thread of process group PGID to CPUS; processes
    the group forks later inherit it."""
    for pid, _ in group_pids(pgid):
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(int(tid), cpus)
            except OSError:
                pass


def group_cpu(pgid):
    """CPU seconds used so far by process group PGID, children its
    processes have reaped included."""
    ticks = 0
    for pid, _ in group_pids(pgid):
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(x) for x in fields[11:15])  # u/s time, reaped too
    return ticks / os.sysconf("SC_CLK_TCK")


class Daemon:
    """A process started in its own process group; stop() kills the
    group (Perdition's children survive SIGTERM to their parent)."""

    def __init__(self, name, argv, logfile, ports, cwd=None, grace=3.0):
        self.name = name
        self.argv = argv
        self.logfile = logfile
        self.ports = ports
        self.cwd = cwd
        self.grace = grace
        self.proc = None
        self.logf = None

    def start(self, timeout=15.0):
        self.logf = open(self.logfile, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                stderr=subprocess.STDOUT, preexec_fn=child_setup,
                cwd=self.cwd)
        except OSError as e:
            raise StartError("%s: %s" % (self.name, e))
        deadline = time.monotonic() + timeout
        pending = list(self.ports)
        while pending:
            if self.proc.poll() is not None:
                raise StartError("%s exited with %s before listening:\n%s" % (
                    self.name, self.proc.returncode, self.log_tail()))
            pending = [p for p in pending if not port_open(p)]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise StartError("%s: ports %s not open after %.0fs:\n%s" % (
                    self.name, pending, timeout, self.log_tail()))
            time.sleep(0.05)
        return self

    def log_tail(self, n=30):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    @property
    def pgid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop_begin(self):
        if self.alive():
            try:
                self.proc.send_signal(signal.SIGTERM)
            except OSError:
                pass

    def stop_wait(self):
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=self.grace)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        # Stragglers that left the group are not ours to hunt; the group
        # kill covers Perdition's children, Dovecot's and nginx's workers.
        self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None


# --- Dovecot ---------------------------------------------------------------

DOVECOT_CONF = """\
# Private benchmark instance
instance_name = {instance}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
first_valid_uid = 1
mail_location = maildir:~/Maildir
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
ssl = no
default_process_limit = 2500
default_client_limit = 4000
{privs}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {dir}/passwd
}}
userdb {{
  driver = static
  args = {userdb_args} home={dir}/mail/%Lu allow_all_users=yes
}}
protocol imap {{
  mail_max_userip_connections = 5000
}}
protocol pop3 {{
  mail_max_userip_connections = 5000
}}
service anvil {{
{chroot}
  client_limit = 5000
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap {{
  process_limit = 2500
}}
service pop3 {{
  process_limit = 2500
}}
service imap-login {{
{chroot}
  service_count = 0
  process_min_avail = 2
  client_limit = 4000
  inet_listener imap {{
    port = {imap}
  }}
}}
service pop3-login {{
{chroot}
  service_count = 0
  process_min_avail = 2
  client_limit = 4000
  inet_listener pop3 {{
    port = {pop3}
  }}
}}
"""


def make_dovecot(d):
    for sub in ("run", "state", "mail"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    os.chmod(d, 0o755)
    imap, pop3 = free_port(), free_port()
    with open(os.path.join(d, "passwd"), "w") as f:
        f.write("%s:{PLAIN}%s::::::\n" % (USER, PASSWORD))
    if os.geteuid() == 0:
        import grp
        import pwd
        uid = pwd.getpwnam("nobody").pw_uid
        gid = grp.getgrnam("nogroup").gr_gid
        privs, userdb_args, chroot = "", "uid=nobody gid=nogroup", ""
    else:
        import pwd
        me = pwd.getpwuid(os.getuid()).pw_name
        uid, gid = os.getuid(), os.getgid()
        privs = "default_internal_user = %s\ndefault_login_user = %s\n" % (
            me, me)
        userdb_args = "uid=%d gid=%d" % (uid, gid)
        chroot = "  chroot ="
    conf = os.path.join(d, "dovecot.conf")
    with open(conf, "w") as f:
        f.write(DOVECOT_CONF.format(
            instance="mmbench-%d" % os.getpid(), dir=d, privs=privs,
            userdb_args=userdb_args, chroot=chroot, imap=imap, pop3=pop3))
    home = os.path.join(d, "mail", USER)
    md = os.path.join(home, "Maildir")
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(md, sub), exist_ok=True)
    for i in range(1, BIG_SEQ + 1):
        hdr = ("From: Sender <sender@example.net>\n"
               "To: %s\n"
               "Subject: bench message %d\n"
               "Date: Mon, 1 Jan 2024 10:0%d:00 +0000\n"
               "Message-ID: <bench.%d@mailmesh.test>\n\n" % (USER, i, i, i))
        fn = os.path.join(md, "new", "17040672%02d.M%dP1.bench" % (i, i))
        with open(fn, "wb") as f:
            f.write(hdr.encode())
            if i == BIG_SEQ:
                chunk = bytearray()
                n = 0
                while len(chunk) < BIG_BODY:
                    chunk += b"%08d the quick brown fox jumps over the lazy " \
                             b"dog, payload line\n" % n
                    n += 1
                f.write(bytes(chunk[:BIG_BODY - 1]) + b"\n")
            else:
                f.write(b"Small message %d.\n" % i)
        t = 1704067200 + i
        os.utime(fn, (t, t))
    for root, dirs, files in os.walk(os.path.join(d, "mail")):
        os.chown(root, uid, gid)
        for n in files:
            os.chown(os.path.join(root, n), uid, gid)
    dv = Daemon("dovecot", ["dovecot", "-F", "-c", conf],
                os.path.join(d, "dovecot.out"), [imap, pop3], grace=4.0)
    dv.imap, dv.pop3 = imap, pop3
    return dv


# --- mmnode ----------------------------------------------------------------

def find_mmnode():
    bd = os.environ.get("MM_BUILD_DIR")
    if not bd:
        bd = os.path.join(REPO, "build-bench")
        log("MM_BUILD_DIR not set: building into %s" % bd)
        try:
            if not os.path.exists(os.path.join(bd, "CMakeCache.txt")):
                subprocess.run(["cmake", "-S", REPO, "-B", bd, "-DMM_TESTS=OFF",
                                "-DCMAKE_BUILD_TYPE=Release"], check=True,
                               stdout=subprocess.DEVNULL, timeout=600)
            subprocess.run(["cmake", "--build", bd, "-j2"], check=True,
                           stdout=subprocess.DEVNULL, timeout=1800)
        except (OSError, subprocess.SubprocessError) as e:
            raise StartError("building mmnode failed: %s" % e)
    b = os.path.join(bd, "node", "mmnode")
    if not os.access(b, os.X_OK):
        raise StartError("no mmnode binary at %s" % b)
    return b


def make_mmnode(d, binary, tls, dv):
    os.makedirs(d, exist_ok=True)
    ports = {k: free_port() for k in ("imap", "imaps", "pop3")}
    popmap = os.path.join(d, "popmap")
    with open(popmap, "w") as f:
        f.write("%s: be\n" % USER)
    conf = os.path.join(d, "mmnode.conf")
    with open(conf, "w") as f:
        f.write("workers 2\n"
                "log stderr\n"
                "popmap %s\n"
                "listen imap %s:%d\n"
                "listen imaps %s:%d cert=%s key=%s\n"
                "listen pop3 %s:%d\n"
                "backend be %s imap=%d pop3=%d client-addr=id\n"
                "limit connections 10000\n"
                "limit connections-per-ip 10000\n"
                "timeout drain 1s\n"
                % (popmap, HOST, ports["imap"], HOST, ports["imaps"],
                   tls.cert, tls.key, HOST, ports["pop3"],
                   HOST, dv.imap, dv.pop3))
    mm = Daemon("mmnode", [binary, "-c", conf], os.path.join(d, "mmnode.log"),
                list(ports.values()), grace=3.0)
    mm.port = ports
    return mm


# --- Perdition -------------------------------------------------------------

def make_perdition(d, proto, backend_port):
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    port = free_port()
    mapf = os.path.join(d, "popmap.re")
    with open(mapf, "w") as f:
        f.write("^%s$: %s:%d\n" % (re.escape(USER).replace("\\-", "-"),
                                  HOST, backend_port))
    os.chmod(mapf, 0o644)
    argv = ["perdition", "-f", "/dev/null", "--no_daemon",
            "-P", proto, "-b", HOST, "-l", str(port), "-n", "-o",
            "-F", "-", "-M", PERDITION_REGEX_DB, "-m", mapf,
            "--pid_file", os.path.join(d, "perdition.pid")]
    if os.geteuid() == 0:
        argv += ["-u", "nobody", "-g", "nogroup"]
    pd = Daemon("perdition-" + proto.lower(), argv,
                os.path.join(d, "perdition.log"), [port], grace=1.0)
    pd.port = port
    return pd


# --- nginx -----------------------------------------------------------------

AUTH_RESPONDER = r"""
import http.server, sys
PORTS = {"imap": sys.argv[1], "pop3": sys.argv[2]}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        proto = (self.headers.get("Auth-Protocol") or "imap").lower()
        self.send_response(200)
        self.send_header("Auth-Status", "OK")
        self.send_header("Auth-Server", "127.0.0.1")
        self.send_header("Auth-Port", PORTS.get(proto, PORTS["imap"]))
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer.allow_reuse_address = True
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[3])), H)
srv.serve_forever()
"""

NGINX_CONF = """\
load_module {module};
worker_processes 2;
worker_rlimit_nofile 10000;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
  worker_connections 8000;
}}
mail {{
  server_name localhost;
  auth_http 127.0.0.1:{auth}/auth;
  proxy_buffer 64k;
  proxy_pass_error_message on;
  server {{
    listen 127.0.0.1:{imap};
    protocol imap;
  }}
  server {{
    listen 127.0.0.1:{imaps} ssl;
    protocol imap;
    ssl_certificate {cert};
    ssl_certificate_key {key};
  }}
  server {{
    listen 127.0.0.1:{pop3};
    protocol pop3;
    pop3_auth plain;
  }}
}}
"""


def make_nginx(d, tls, dv):
    os.makedirs(d, exist_ok=True)
    ports = {k: free_port() for k in ("imap", "imaps", "pop3", "auth")}
    responder = Daemon(
        "auth-responder",
        [sys.executable, "-c", AUTH_RESPONDER, str(dv.imap), str(dv.pop3),
         str(ports["auth"])],
        os.path.join(d, "responder.log"), [ports["auth"]], grace=1.0)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(module=NGINX_MAIL_MODULE, dir=d,
                                  auth=ports["auth"], imap=ports["imap"],
                                  imaps=ports["imaps"], pop3=ports["pop3"],
                                  cert=tls.cert, key=tls.key))
    ngx = Daemon("nginx", ["nginx", "-p", d, "-e", os.path.join(d, "error.log"),
                           "-c", conf],
                 os.path.join(d, "nginx.out"),
                 [ports["imap"], ports["imaps"], ports["pop3"]], grace=3.0)
    ngx.port = ports
    return responder, ngx


# --- protocol client -------------------------------------------------------

class ProtoError(Exception):
    pass


class Client:
    """A minimal line client over TCP (optionally TLS)."""

    def __init__(self, port, tls_ctx=None, timeout=IO_TIMEOUT):
        s = socket.create_connection((HOST, port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_ctx is not None:
            s = tls_ctx.wrap_socket(s, server_hostname="localhost")
        self.s = s
        self.buf = bytearray()

    def _fill(self):
        d = self.s.recv(262144)
        if not d:
            raise ProtoError("connection closed by peer")
        self.buf += d

    def line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                ln = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return ln
            if len(self.buf) > 1 << 20:
                raise ProtoError("line too long")
            self._fill()

    def send(self, data):
        self.s.sendall(data)

    def tagged(self, tag):
        """IMAP: reads to the line tagged TAG; it must be OK."""
        t = tag + b" "
        while True:
            ln = self.line()
            if ln.startswith(t):
                if not ln[len(t):].upper().startswith(b"OK"):
                    raise ProtoError("%r failed: %r" % (tag, ln))
                return ln

    def pop_ok(self):
        ln = self.line()
        if not ln.startswith(b"+OK"):
            raise ProtoError("POP3 error: %r" % ln)
        return ln

    def read_exact(self, n):
        """Reads N bytes and throws them away; returns N."""
        got = min(n, len(self.buf))
        del self.buf[:got]
        if got < n:
            mv = memoryview(bytearray(262144))
            while got < n:
                k = self.s.recv_into(mv, min(len(mv), n - got))
                if k == 0:
                    raise ProtoError("closed inside literal")
                got += k
        return n

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


LOGIN_CMD = ("a LOGIN %s %s\r\n" % (USER, PASSWORD)).encode()


def imap_login_cycle(port):
    c = Client(port)
    try:
        g = c.line()
        if not g.startswith(b"* OK"):
            raise ProtoError("greeting %r" % g)
        c.send(LOGIN_CMD)
        c.tagged(b"a")
        c.send(b"b SELECT INBOX\r\n")
        c.tagged(b"b")
        c.send(b"c LOGOUT\r\n")
        c.tagged(b"c")
    finally:
        c.close()


def pop3_login_cycle(port):
    c = Client(port)
    try:
        c.pop_ok()
        c.send(("USER %s\r\n" % USER).encode())
        c.pop_ok()
        c.send(("PASS %s\r\n" % PASSWORD).encode())
        c.pop_ok()
        c.send(b"STAT\r\n")
        c.pop_ok()
        c.send(b"QUIT\r\n")
        c.pop_ok()
    finally:
        c.close()


def imap_session(port, tls_ctx=None, select=True):
    """A logged-in IMAP client (INBOX selected)."""
    c = Client(port, tls_ctx)
    try:
        g = c.line()
        if not g.startswith(b"* OK"):
            raise ProtoError("greeting %r" % g)
        c.send(LOGIN_CMD)
        c.tagged(b"a")
        if select:
            c.send(b"b SELECT INBOX\r\n")
            c.tagged(b"b")
    except BaseException:
        c.close()
        raise
    return c


def fetch_big(port):
    """(bytes, seconds) of one FETCH BODY[] of the big message."""
    c = imap_session(port)
    try:
        t0 = time.perf_counter()
        c.send(b"f FETCH %d BODY[]\r\n" % BIG_SEQ)
        n = None
        while n is None:
            ln = c.line()
            m = re.search(rb"\{(\d+)\}\r\n$", ln)
            if ln.startswith(b"* ") and m:
                n = int(m.group(1))
            elif ln.startswith(b"f "):
                raise ProtoError("FETCH failed: %r" % ln)
        c.read_exact(n)
        c.tagged(b"f")
        dt = time.perf_counter() - t0
        c.send(b"z LOGOUT\r\n")
        try:
            c.tagged(b"z")
        except (ProtoError, OSError):
            pass
        return n, dt
    finally:
        c.close()


# --- measurements ----------------------------------------------------------

def login_rate(fn, port, n, max_seconds):
    """Sequential FN(port) calls per second; at most N, stops after
    MAX_SECONDS. Returns (rate, done)."""
    t0 = time.perf_counter()
    done = 0
    for _ in range(n):
        fn(port)
        done += 1
        if time.perf_counter() - t0 > max_seconds:
            break
    return done / (time.perf_counter() - t0), done


def wait_until(pred, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def dovecot_sessions(dv):
    return sum(1 for _, comm in group_pids(dv.pgid) if comm == "imap")


def open_sessions(port, tls_ctx, n, max_seconds, threads=8):
    """Opens up to N logged-in IMAP sessions in parallel; returns the list
    of clients (fewer than N when time ran out or errors happened)."""
    out = []
    errors = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds
    todo = [n]

    def worker():
        while time.monotonic() < deadline:
            with lock:
                if todo[0] <= 0 or len(errors) > 20:
                    return
                todo[0] -= 1
            try:
                c = imap_session(port, tls_ctx)
            except (OSError, ProtoError, ssl.SSLError) as e:
                with lock:
                    errors.append(str(e))
                continue
            with lock:
                out.append(c)

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(max_seconds + 30)
    if errors:
        log("  %d session(s) failed to open, first: %s" % (
            len(errors), errors[0]))
    return out


def idle_memory(label, daemon, port, tls_ctx, n, dv, max_seconds):
    """KiB of DAEMON's memory (summed over its process group) per idle
    logged-in session. Returns dict or None."""
    base_sessions = dovecot_sessions(dv)
    time.sleep(0.5)
    before = group_memory(daemon.pgid)
    t0 = time.monotonic()
    conns = open_sessions(port, tls_ctx, n, max_seconds)
    t_open = time.monotonic() - t0
    try:
        if not conns:
            log("  %s: no session opened" % label)
            return None
        time.sleep(1.0)
        after = group_memory(daemon.pgid)
    finally:
        for c in conns:
            c.close()
    k = len(conns)
    res = {
        "n": k,
        "priv": (after[0] - before[0]) / k,
        "pss": (after[1] - before[1]) / k,
        "rss": (after[2] - before[2]) / k,
        "procs": (before[3], after[3]),
        "before": before[0], "after": after[0],
    }
    log("  %-16s %4d sessions opened in %5.1fs; private %d -> %d KiB "
        "(%d -> %d procs): %.1f KiB/session private, %.1f Pss, %.1f Rss"
        % (label, k, t_open, before[0], after[0], before[3], after[3],
           res["priv"], res["pss"], res["rss"]))
    # Let the back end's imap processes go before the next phase.
    wait_until(lambda: dovecot_sessions(dv) <= base_sessions + 2, 60)
    wait_until(lambda: len(group_pids(daemon.pgid)) <= before[3], 20)
    time.sleep(0.5)
    res["closed"] = group_memory(daemon.pgid)[0]
    log("  %-16s after closing them: private %d KiB" % (label,
                                                         res["closed"]))
    return res


# --- table -----------------------------------------------------------------

def print_table(res, info):
    rows = [
        ("IMAP logins/s", "imap", 0),
        ("POP3 logins/s", "pop3", 0),
        ("FETCH MB/s (%s MB), split" % info.get("fetch_mb", "?"), "fetch",
         0),
        ("FETCH MB/s, shared cores", "fetch_shared", 0),
        ("proxy CPU ms per 100 MB", "fetchcpu", 1),
        ("KiB/idle session, plain", "mem", 1),
        ("KiB/idle session, TLS", "memtls", 1),
    ]
    hdr = ["figure", "direct", "mmnode", "perdition", "nginx", HOP,
           "mm/direct", "mm/perdition", "mm/nginx", "hop/direct", "target"]
    lines = []
    for title, key, dig in rows:
        r = res.get(key, {})
        mm = r.get("mmnode")
        lines.append([title] + [fmt(r.get(p), dig) for p in PATHS + [HOP]] + [
            ratio(mm, r.get("direct")), ratio(mm, r.get("perdition")),
            ratio(mm, r.get("nginx")), ratio(r.get(HOP), r.get("direct")),
            TARGETS[key]])
    print_rows(hdr, lines)
    sys.stdout.flush()


# --- main ------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer logins, rounds, fetches and sessions")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp directory (configs and logs)")
    args = ap.parse_args()

    n_logins = 60 if args.quick else 300
    rounds = 3 if args.quick else 5
    n_fetch = 6 if args.quick else 15
    n_idle = 1000
    round_cap = 20.0 if args.quick else 45.0   # seconds per path per round

    exit_on_signals()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 20000 if hard == resource.RLIM_INFINITY else min(hard, 20000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 4 * n_idle + 200:
        log("warning: RLIMIT_NOFILE %d is low for %d sessions"
            % (resource.getrlimit(resource.RLIMIT_NOFILE)[0], n_idle))

    tmp = tempfile.mkdtemp(prefix="mmbench-")
    os.chmod(tmp, 0o755)
    daemons = []
    res = {k: {} for k in TARGETS}
    info = {}
    measured = False
    try:
        binary = find_mmnode()
        for tool in ("dovecot", "perdition", "nginx", "openssl"):
            if not shutil.which(tool):
                raise StartError("%s not found in PATH" % tool)
        log("temp dir %s" % tmp)
        log("generating certificates and a %d MiB message"
            % (BIG_BODY >> 20))
        try:
            tls = TLS(os.path.join(tmp, "tls"))
        except Exception as e:
            raise StartError("certificates: %s" % e)
        dv = make_dovecot(os.path.join(tmp, "dovecot"))
        daemons.append(dv)
        mm = make_mmnode(os.path.join(tmp, "mmnode"), binary, tls, dv)
        daemons.append(mm)
        # A second node only for the TLS memory figure, so that heap the
        # first one kept from the plaintext sessions is not reused there.
        mm_tls = make_mmnode(os.path.join(tmp, "mmnode-tls"), binary, tls, dv)
        daemons.append(mm_tls)
        pd_imap = make_perdition(os.path.join(tmp, "perdition-imap"),
                                 "IMAP4", dv.imap)
        pd_pop3 = make_perdition(os.path.join(tmp, "perdition-pop3"),
                                 "POP3", dv.pop3)
        daemons += [pd_imap, pd_pop3]
        responder, ngx = make_nginx(os.path.join(tmp, "nginx"), tls, dv)
        daemons += [responder, ngx]
        # A plain TCP forwarder: what one more loopback hop costs here
        # with no protocol work at all (FETCH only).
        hop = None
        if shutil.which("socat"):
            hop_port = free_port()
            hop = Daemon("socat", [
                "socat", "-b", "262144",
                "TCP-LISTEN:%d,bind=%s,reuseaddr,fork,backlog=64"
                % (hop_port, HOST), "TCP:%s:%d,nodelay" % (HOST, dv.imap)],
                os.path.join(tmp, "socat.log"), [hop_port])
            hop.port = hop_port
            daemons.append(hop)
        for d in daemons:
            d.start()
        log("started: dovecot imap=%d pop3=%d; mmnode %s; perdition "
            "imap=%d pop3=%d; nginx %s" % (
                dv.imap, dv.pop3, mm.port, pd_imap.port, pd_pop3.port,
                {k: v for k, v in ngx.port.items()}))

        imap_port = {"direct": dv.imap, "mmnode": mm.port["imap"],
                     "perdition": pd_imap.port, "nginx": ngx.port["imap"]}
        pop3_port = {"direct": dv.pop3, "mmnode": mm.port["pop3"],
                     "perdition": pd_pop3.port, "nginx": ngx.port["pop3"]}
        client_tls = tls.client_ctx()

        # Warm-up: every path works, Dovecot has indexed the mailbox (the
        # first FETCH of the big message parses it), lazy initialisation in
        # the proxies is done before memory is measured.
        broken = set()
        for p in PATHS:
            try:
                imap_login_cycle(imap_port[p])
                pop3_login_cycle(pop3_port[p])
                for _ in range(3):
                    imap_login_cycle(imap_port[p])
            except (OSError, ProtoError) as e:
                log("warm-up on %s failed: %s" % (p, e))
                broken.add(p)
        if "direct" in broken:
            raise StartError("Dovecot does not answer logins:\n"
                             + dv.log_tail())
        n, _ = fetch_big(dv.imap)
        info["fetch_mb"] = "%.1f" % (n / 1e6)
        for port in (mm_tls.port["imaps"], ngx.port["imaps"]):
            try:
                imap_session(port, client_tls).close()
            except (OSError, ProtoError, ssl.SSLError) as e:
                log("TLS warm-up on port %d failed: %s" % (port, e))

        # 4. Memory per idle session (first, while the proxies' heaps are
        #    young; the proxies have served a few warm-up sessions).
        log("idle sessions: %d per proxy and listener" % n_idle)
        mem_cases = [
            ("mem", "mmnode", mm, mm.port["imap"], None),
            ("mem", "perdition", pd_imap, pd_imap.port, None),
            ("mem", "nginx", ngx, ngx.port["imap"], None),
            ("memtls", "mmnode", mm_tls, mm_tls.port["imaps"], client_tls),
            ("memtls", "nginx", ngx, ngx.port["imaps"], client_tls),
        ]
        for key, p, daemon, port, ctx in mem_cases:
            if p in broken:
                continue
            r = idle_memory("%s%s" % (p, " TLS" if ctx else ""), daemon, port,
                            ctx, n_idle, dv, 120.0)
            if r:
                res[key][p] = r["priv"]
                info["%s-%s" % (key, p)] = r
        mm_tls.stop_begin()
        mm_tls.stop_wait()
        measured = True

        # 1 + 2. Sequential logins, paths interleaved round by round.
        for key, fn, ports in (("imap", imap_login_cycle, imap_port),
                               ("pop3", pop3_login_cycle, pop3_port)):
            log("%s logins: %d per round, %d rounds" % (
                key.upper(), n_logins, rounds))
            per = {p: [] for p in PATHS}
            for r in range(rounds):
                for p in PATHS:
                    if p in broken:
                        continue
                    try:
                        rate, done = login_rate(fn, ports[p], n_logins,
                                                round_cap)
                    except (OSError, ProtoError) as e:
                        log("  %s round %d on %s failed: %s" % (
                            key, r + 1, p, e))
                        continue
                    per[p].append(rate)
                log("  round %d: %s" % (r + 1, "  ".join(
                    "%s %.0f/s" % (p, per[p][-1]) for p in PATHS
                    if per[p])))
            for p in PATHS:
                res[key][p] = median(per[p])

        # 3. FETCH throughput, in two layouts of the processes on the
        #    cores, interleaved round by round. "split": Dovecot on a core
        #    of its own, the client and every proxy on the others, as when
        #    the back end is another machine (every path alike, direct
        #    included). "shared": wherever the scheduler puts them.
        fetch_paths = list(PATHS)
        if hop is not None:
            fetch_paths.append(HOP)
            imap_port[HOP] = hop.port
        fronts = [d for d in daemons if d is not dv]
        cpus = sorted(os.sched_getaffinity(0))
        layouts = [("fetch_shared", None)]
        if len(cpus) >= 2:
            layouts.insert(0, ("fetch", ({cpus[-1]}, set(cpus[:-1]))))
        else:
            log("one CPU: the split layout is not measured")

        def set_layout(split):
            back, front = split if split else (set(cpus), set(cpus))
            pin_group(dv.pgid, back)
            for d in fronts:
                if d.alive():
                    pin_group(d.pgid, front)
            os.sched_setaffinity(0, front)

        log("FETCH BODY[] of the big message: %d times per path and "
            "layout" % n_fetch)
        proxy_of = {"mmnode": mm, "perdition": pd_imap, "nginx": ngx,
                    HOP: hop}
        cpu0 = {p: group_cpu(d.pgid) for p, d in proxy_of.items()
                if d is not None}
        fetched = {p: 0 for p in fetch_paths}
        per = {(k, p): [] for k, _ in layouts for p in fetch_paths}
        try:
            for r in range(n_fetch):
                for key, split in layouts:
                    set_layout(split)
                    for p in fetch_paths:
                        if p in broken:
                            continue
                        try:
                            n, dt = fetch_big(imap_port[p])
                        except (OSError, ProtoError) as e:
                            log("  fetch %d on %s failed: %s" % (r + 1, p, e))
                            continue
                        per[key, p].append(n / 1e6 / dt)
                        fetched[p] += n
                    log("  fetch %d %s: %s" % (
                        r + 1, "split " if split else "shared", "  ".join(
                            "%s %.0f" % (p, per[key, p][-1])
                            for p in fetch_paths if per[key, p])))
        finally:
            set_layout(None)
        time.sleep(1.0)     # per-connection children reaped
        for key, _ in layouts:
            for p in fetch_paths:
                res[key][p] = median(per[key, p])
        for p, c in cpu0.items():
            if fetched[p]:
                res["fetchcpu"][p] = ((group_cpu(proxy_of[p].pgid) - c)
                                      * 1e3 / (fetched[p] / 1e8))

        for d in daemons:
            if d.proc is not None and not d.alive():
                log("warning: %s exited during the run:\n%s" % (
                    d.name, d.log_tail()))
        print()
        print("MailMesh relay benchmark (%s; medians: logins over %d rounds "
              "of %d, FETCH over %d, idle sessions %d; memory = "
              "Private_Clean+Private_Dirty over the proxy's processes)"
              % ("quick" if args.quick else "full", rounds, n_logins, n_fetch,
                 n_idle))
        print_table(res, info)
        return 0
    except StartError as e:
        log("could not start: %s" % e)
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130 if not measured else 0
    finally:
        clean_up(daemons, tmp, args.keep)


if __name__ == "__main__":
    sys.exit(main())
