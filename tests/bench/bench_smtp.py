#!/usr/bin/env python3
"""SMTP relay benchmark for mmnode, against Dovecot LMTP direct and Postfix.

One Dovecot back end (LMTP on a free 127.0.0.1 port) receives messages of
10 KB and 1 MB on three paths:

  direct   the client speaks LMTP (LHLO) to Dovecot
  tcp hop  the same LMTP through socat, a plain TCP forwarder (a process
           per connection): what one more loopback hop costs on this
           machine, with no protocol work at all
  mmnode   the client speaks SMTP to mmnode's smtp listener, which
           delivers to the same Dovecot LMTP
  postfix  the client speaks SMTP to a Postfix relay whose transport_maps
           (texthash) route the domain to the same Dovecot LMTP; Postfix
           queues, so both its acceptance rate (every client got its 250)
           and its delivery rate (its queue is empty again) are reported

Several client threads (4) send at once; each message goes on a new
connection, or (the "1 conn/thread" rows) each thread sends all its
messages on one connection. Every batch goes to four fresh users; after it,
the delivered files are counted in their Maildirs and the mailboxes are
removed. Paths are interleaved round by round (direct, mmnode, postfix,
direct, ...) and the table shows medians. It is a measuring program, not a
test: it exits 0 whenever it measured, nonzero only when Dovecot could not
start or deliver. Every process it starts is stopped on exit, Ctrl-C or
error.

Usage:  bench_smtp.py [--quick] [--keep] [--threads N] [--no-fsync]
Environment:
  MM_BUILD_DIR  cmake build directory holding node/mmnode (default: build/
                at the top of the repository). Nothing is built; without a
                binary, or when mmnode -t rejects the smtp listener, the
                mmnode column says n/a.

Self-check (by hand, as root, after changing this program or the fixture):

  python3 tests/bench/bench_smtp.py --quick --keep
    - the log shows "warm-up: direct ok, ... postfix ok" and, for each
      path, "content intact" (the message read back over IMAP, without the
      header fields Dovecot's LMTP adds, ends with the bytes sent);
    - every round line says "delivered N/N" for every path;
    - the direct and postfix columns hold numbers, not "n/a";
    - afterwards no process of the run is left (ps -ef | grep
      mmbench-smtp finds nothing; Postfix children of a stopped master
      show up only briefly as <defunct>) and, without --keep, the temp
      directory is gone.
"""

import argparse
import os
import shutil
import signal
import socket
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

from mmfixture import (Dovecot, Postfix, free_port, postfix_map,  # noqa: E402
                       end_group, fetch_all, strip_delivery_headers)

HOST = "127.0.0.1"
IO_TIMEOUT = 30.0
DOMAIN = "bench.test"
USERS_PER_BATCH = 4
SENDER = "sender@example.net"

PATHS = ["direct", "tcp hop", "mmnode", "postfix"]
COLS = ["direct", "tcp hop", "mmnode", "postfix accept", "postfix deliver"]
LMTP_PATHS = ("direct", "tcp hop")
MM_NA = "n/a (mmnode has no smtp listener)"
TARGET = "mm >= 0.9x direct"


class SendError(Exception):
    pass


# --- messages --------------------------------------------------------------

def make_message(size):
    """(message, wire): a SIZE-byte message with CRLF line ends and no
    line starting with a dot, and the same followed by the end-of-data
    line, ready to send after DATA."""
    head = ("From: Bench Sender <%s>\r\n"
            "To: bench users <users@%s>\r\n"
            "Subject: bench message of %d bytes\r\n"
            "Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
            "Message-ID: <bench.%d@mailmesh.test>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n" % (SENDER, DOMAIN, size, size)).encode()
    body = bytearray()
    n = 0
    while len(head) + len(body) < size:
        body += b"%08d the quick brown fox jumps over the lazy dog, " \
                b"payload line\r\n" % n
        n += 1
    msg = (head + bytes(body))[:size - 2] + b"\r\n"
    return msg, msg + b".\r\n"


# --- a minimal SMTP/LMTP client --------------------------------------------

class Conn:
    """One SMTP (EHLO) or LMTP (LHLO) connection, one command at a time
    (no pipelining: not every server on the paths offers it)."""

    def __init__(self, port, lmtp):
        s = socket.create_connection((HOST, port), timeout=IO_TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s = s
        self.buf = bytearray()
        try:
            self.expect(220, "greeting")
            self.cmd(b"LHLO client.bench.test" if lmtp
                     else b"EHLO client.bench.test", 250)
        except BaseException:
            self.close()
            raise

    def reply(self):
        """(code, last line) of one possibly multi-line reply."""
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                d = self.s.recv(65536)
                if not d:
                    raise SendError("connection closed by peer")
                self.buf += d
                continue
            ln = bytes(self.buf[:i + 1])
            del self.buf[:i + 1]
            if len(ln) < 4 or ln[3:4] != b"-":
                try:
                    return int(ln[:3]), ln
                except ValueError:
                    raise SendError("bad reply %r" % ln)

    def expect(self, code, what):
        c, ln = self.reply()
        if c != code:
            raise SendError("%s: %r" % (what, ln))
        return ln

    def cmd(self, line, code):
        self.s.sendall(line + b"\r\n")
        return self.expect(code, line.split(b" ")[0].decode())

    def transaction(self, rcpt, wire):
        self.cmd(b"MAIL FROM:<%s>" % SENDER.encode(), 250)
        self.cmd(b"RCPT TO:<%s>" % rcpt.encode(), 250)
        self.cmd(b"DATA", 354)
        self.s.sendall(wire)
        self.expect(250, "end of DATA")

    def quit(self):
        try:
            self.s.sendall(b"QUIT\r\n")
            self.reply()
        except (OSError, SendError):
            pass
        self.close()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def send_batch(port, lmtp, users, wire, threads, per_thread, reuse,
               deadline_s):
    """THREADS client threads send PER_THREAD messages each to USERS in
    turn (a new connection per message, or one per thread when REUSE).
    Returns (start, seconds, sent, errors, {user: count}); START is the
    perf_counter value when the threads were let go."""
    counts = {u: 0 for u in users}
    errors = []
    sent = [0]
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)
    deadline = [None]

    def worker(t):
        mine = {u: 0 for u in users}
        ok = 0
        conn = None
        try:
            start.wait()
            for k in range(per_thread):
                if time.monotonic() > deadline[0]:
                    break
                rcpt = users[(t + k) % len(users)]
                try:
                    if conn is None:
                        conn = Conn(port, lmtp)
                    conn.transaction(rcpt, wire)
                    mine[rcpt] += 1
                    ok += 1
                except (OSError, SendError) as e:
                    with lock:
                        errors.append(str(e))
                    if conn is not None:
                        conn.close()
                        conn = None
                    continue
                if not reuse:
                    conn.quit()
                    conn = None
        finally:
            if conn is not None:
                conn.quit()
            with lock:
                sent[0] += ok
                for u, n in mine.items():
                    counts[u] += n

    ts = [threading.Thread(target=worker, args=(t,), daemon=True)
          for t in range(threads)]
    for t in ts:
        t.start()
    deadline[0] = time.monotonic() + deadline_s
    t0 = time.perf_counter()
    start.wait()
    for t in ts:
        t.join(deadline_s + 2 * IO_TIMEOUT)
    return t0, time.perf_counter() - t0, sent[0], errors, counts


# --- processes -------------------------------------------------------------

class Mmnode:
    """mmnode with one smtp listener in front of the Dovecot LMTP."""

    def __init__(self, d, binary, dv):
        os.makedirs(d, exist_ok=True)
        self.binary = binary
        self.port = free_port()
        self.logfile = os.path.join(d, "mmnode.log")
        self.proc = None
        self.logf = None
        popmap = os.path.join(d, "popmap")
        with open(popmap, "w") as f:
            f.write("^.*@%s$: ms1\n" % DOMAIN.replace(".", "\\."))
        self.conf = os.path.join(d, "mmnode.conf")
        with open(self.conf, "w") as f:
            f.write("workers 2\n"
                    "log stderr\n"
                    "popmap %s\n"
                    "listen smtp %s:%d\n"
                    "backend ms1 %s imap=%d pop3=%d lmtp=%d\n"
                    "limit connections 10000\n"
                    "limit connections-per-ip 10000\n"
                    "timeout drain 1s\n"
                    % (popmap, HOST, self.port, HOST, dv.imap, dv.pop3,
                       dv.lmtp))

    def check(self):
        """None when mmnode -t accepts the config, else the reason."""
        try:
            r = subprocess.run([self.binary, "-t", "-c", self.conf],
                               capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            return str(e)
        if r.returncode == 0:
            return None
        return (r.stdout + r.stderr).decode(errors="replace").strip()

    def start(self, timeout=15.0):
        self.logf = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-c", self.conf], stdin=subprocess.DEVNULL,
            stdout=self.logf, stderr=subprocess.STDOUT,
            preexec_fn=child_setup)
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise StartError("mmnode exited with %s:\n%s" % (
                    self.proc.returncode, self.log_tail()))
            if time.monotonic() > deadline:
                raise StartError("mmnode: port %d not open:\n%s" % (
                    self.port, self.log_tail()))
            time.sleep(0.05)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=30):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop_begin(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop_wait(self, timeout=3.0):
        if self.proc is None:
            return
        end_group(self.proc, timeout)
        self.proc = None
        self.logf.close()


class Hop:
    """socat forwarding a free port to the Dovecot LMTP."""

    def __init__(self, dv):
        self.port = free_port()
        self.target = dv.lmtp
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["socat", "-b", "262144",
             "TCP-LISTEN:%d,bind=%s,reuseaddr,fork,backlog=256"
             % (self.port, HOST), "TCP:%s:%d,nodelay" % (HOST, self.target)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, preexec_fn=child_setup)
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise StartError("socat did not listen")
            time.sleep(0.05)

    def stop_begin(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop_wait(self, timeout=3.0):
        if self.proc is not None:
            end_group(self.proc, timeout)
            self.proc = None


def find_mmnode():
    """(path, None) or (None, reason)."""
    bd = os.environ.get("MM_BUILD_DIR") or os.path.join(REPO, "build")
    b = os.path.join(bd, "node", "mmnode")
    if os.access(b, os.X_OK):
        return b, None
    return None, "no mmnode binary at %s" % b


# --- users and mailboxes ---------------------------------------------------

class UserPool:
    """Fresh users for every batch, so that no batch delivers into a
    mailbox an earlier one filled; a batch's mailboxes are removed once
    they were counted."""

    def __init__(self, batches):
        self.users = {}
        for b in range(batches):
            for k in range(USERS_PER_BATCH):
                self.users["b%03du%d@%s" % (b, k, DOMAIN)] = \
                    "bench-Pw-%d" % k
        self.order = sorted(self.users)
        self.next = 0

    def take(self):
        if self.next + USERS_PER_BATCH > len(self.order):
            raise RuntimeError("user pool exhausted")
        got = self.order[self.next:self.next + USERS_PER_BATCH]
        self.next += USERS_PER_BATCH
        return got


def delivered(dv, user):
    """Messages delivered to USER: the files in the Maildir, without the
    few the Dovecot fixture wrote there at set-up."""
    md = os.path.join(dv.dir, "mail", user, "Maildir")
    n = 0
    for sub in ("new", "cur"):
        try:
            n += sum(1 for f in os.listdir(os.path.join(md, sub))
                     if ".mmtest" not in f)
        except OSError:
            pass
    return n


def check_delivered(dv, counts, timeout):
    """Waits until every user's Maildir holds what was sent to it; returns
    (delivered, expected)."""
    want = sum(counts.values())
    deadline = time.monotonic() + timeout
    while True:
        got = sum(min(delivered(dv, u), n) for u, n in counts.items())
        if got >= want or time.monotonic() > deadline:
            return got, want
        time.sleep(0.05)


def drop_mailboxes(dv, users):
    for u in users:
        shutil.rmtree(os.path.join(dv.dir, "mail", u), ignore_errors=True)


# --- measuring -------------------------------------------------------------

def wait_queue_empty(pf, timeout):
    """perf_counter value at which Postfix's queue was seen empty, or None
    after TIMEOUT."""
    deadline = time.monotonic() + timeout
    while True:
        if pf.queue_empty():
            return time.perf_counter()
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)


def run_batch(path, port, users, wire, size, threads, per_thread, reuse,
              dv, pf, cap, keep_mail=False):
    """One batch on PATH, checked in the Maildirs, which are removed
    afterwards unless KEEP_MAIL. Returns dict(rate, mbs: accepted per
    second; drate, dmbs: delivered per second (Postfix only); sent, got,
    want, errors) or None when nothing was sent."""
    t0, dt, sent, errors, counts = send_batch(
        port, path in LMTP_PATHS, users, wire, threads, per_thread, reuse,
        cap)
    t_del = None
    if path == "postfix" and sent:
        t_end = wait_queue_empty(pf, 120)
        if t_end is None:
            log("  postfix: queue not empty after 120 s: %s"
                % pf.queue_files())
        else:
            t_del = t_end - t0
    if path != "postfix":
        # Their 250 should come after Dovecot's: all saved by now.
        early, want = check_delivered(dv, counts, 0)
        if early < want:
            log("  %s: %d of %d accepted messages not yet in the Maildirs "
                "when the batch ended" % (path, want - early, want))
    got, want = check_delivered(dv, counts, 30)
    if errors:
        log("  %s: %d error(s), first: %s" % (path, len(errors), errors[0]))
    if not keep_mail:
        drop_mailboxes(dv, users)
    if not sent:
        return None
    res = {"rate": sent / dt, "mbs": sent * size / 1e6 / dt,
           "sent": sent, "got": got, "want": want, "errors": len(errors)}
    if t_del is not None:
        res["drate"] = sent / t_del
        res["dmbs"] = sent * size / 1e6 / t_del
    return res


def warm_up(path, port, users, dv, pf):
    """A few small messages on PATH; the first one is read back over IMAP.
    Returns None when all arrived intact, else what went wrong."""
    msg, wire = make_message(3000)
    r = run_batch(path, port, users, wire, len(msg), 2, 4, False, dv, pf,
                  30, keep_mail=True)
    try:
        if r is None or r["errors"] or r["got"] < r["want"]:
            return "delivery failed: %s" % r
        raws = fetch_all(dv, users[0])
        if not raws:
            return "nothing in %s's INBOX" % users[0]
        stripped = strip_delivery_headers(raws[0])
        if not stripped.endswith(msg):
            return "content changed: %r" % stripped[:600]
        extra = stripped[:len(stripped) - len(msg)]
        log("  %s: content intact%s" % (
            path, "" if not extra else "; %d header bytes added above "
            "Dovecot's: %r" % (len(extra), extra.split(b"\r\n")[0])))
        return None
    finally:
        drop_mailboxes(dv, users)


# --- table -----------------------------------------------------------------

def print_table(rows, notes):
    hdr = ["figure"] + COLS + ["mm/direct", "hop/direct", "mm/postfix",
                               "target"]
    lines = []
    for title, vals, digits in rows:
        mm = vals.get("mmnode")
        lines.append([title] + [fmt(vals.get(c), digits) for c in COLS] + [
            ratio(mm, vals.get("direct")),
            ratio(vals.get("tcp hop"), vals.get("direct")),
            ratio(mm, vals.get("postfix deliver")), TARGET])
    print_rows(hdr, lines)
    for p in PATHS:
        if p in notes:
            print("%s: %s" % (p, notes[p]))
    sys.stdout.flush()


# --- main ------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer messages and rounds (under a minute)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp directory (configs, logs)")
    ap.add_argument("--threads", type=int, default=4,
                    help="concurrent client threads (default 4)")
    ap.add_argument("--no-fsync", action="store_true",
                    help="Dovecot without fsync (mail_fsync = never): "
                    "shows the relays' CPU cost instead of the disk's "
                    "flush latency")
    args = ap.parse_args()

    threads = max(1, args.threads)
    rounds = 3 if args.quick else 5
    # (size label, bytes, messages per thread, one connection per thread)
    if args.quick:
        cases = [("10 KB", 10 * 1000, 150, False),
                 ("10 KB", 10 * 1000, 150, True),
                 ("1 MB", 1000 * 1000, 15, False)]
    else:
        cases = [("10 KB", 10 * 1000, 400, False),
                 ("10 KB", 10 * 1000, 400, True),
                 ("1 MB", 1000 * 1000, 40, False),
                 ("1 MB", 1000 * 1000, 40, True)]
    cap = 20.0 if args.quick else 30.0     # seconds per batch at most

    exit_on_signals()

    tmp = tempfile.mkdtemp(prefix="mmbench-smtp-")
    os.chmod(tmp, 0o755)
    daemons = []
    notes = {}
    measured = False
    t_start = time.monotonic()
    try:
        if not shutil.which("dovecot"):
            raise StartError("dovecot not found in PATH")
        log("temp dir %s" % tmp)
        pool = UserPool(len(PATHS) * (1 + len(cases) * rounds))
        extra = ["mail_fsync = never"] if args.no_fsync else []
        dv = Dovecot("bench", os.path.join(tmp, "dovecot"), users=pool.users,
                     big=False, extra_conf=extra)
        dv.spawn()
        daemons.append(dv)
        try:
            dv.wait_ready()
        except RuntimeError as e:
            raise StartError(str(e))
        ports = {"direct": dv.lmtp}

        if not shutil.which("socat"):
            notes["tcp hop"] = "n/a (socat not installed)"
        else:
            hop = Hop(dv)
            daemons.append(hop)
            hop.start()
            ports["tcp hop"] = hop.port

        pf = None
        if os.geteuid() != 0:
            notes["postfix"] = "n/a (Postfix needs root)"
        elif not os.path.exists("/usr/lib/postfix/sbin/master"):
            notes["postfix"] = "n/a (Postfix not installed)"
        else:
            pdir = os.path.join(tmp, "postfix")
            os.makedirs(pdir, exist_ok=True)
            tmap = postfix_map(os.path.join(pdir, "transport"),
                               {DOMAIN: "lmtp:inet:%s:%d" % (HOST, dv.lmtp)})
            pf = Postfix(pdir, domains=[DOMAIN], transport_maps=tmap)
            daemons.append(pf)
            try:
                pf.start()
                ports["postfix"] = pf.smtp
            except RuntimeError as e:
                log("postfix did not start: %s" % e)
                notes["postfix"] = "n/a (Postfix did not start)"

        binary, why = find_mmnode()
        if binary is None:
            notes["mmnode"] = "n/a (%s)" % why
        else:
            mm = Mmnode(os.path.join(tmp, "mmnode"), binary, dv)
            why = mm.check()
            if why is not None:
                log("mmnode -t rejects the config: %s" % why)
                notes["mmnode"] = MM_NA if ("smtp" in why or "lmtp" in why) \
                    else "n/a (mmnode -t: %s)" % why
            else:
                daemons.append(mm)
                try:
                    mm.start()
                    ports["mmnode"] = mm.port
                except StartError as e:
                    log("mmnode did not start: %s" % e)
                    notes["mmnode"] = "n/a (mmnode did not start)"
        log("started: dovecot lmtp=%d%s; postfix %s; mmnode %s" % (
            dv.lmtp, " (mail_fsync = never)" if args.no_fsync else "",
            ports.get("postfix", notes.get("postfix")),
            ports.get("mmnode", notes.get("mmnode"))))

        # Warm-up: every path delivers, intact; Dovecot's and Postfix's
        # processes are running.
        for p in PATHS:
            if p not in ports:
                continue
            why = warm_up(p, ports[p], pool.take(), dv, pf)
            if why:
                log("warm-up on %s failed: %s" % (p, why))
                notes[p] = "n/a (warm-up failed)"
                del ports[p]
        if "direct" not in ports:
            raise StartError("Dovecot LMTP does not deliver:\n"
                             + dv.log_text()[-3000:])
        log("warm-up: %s" % ", ".join(
            "%s %s" % (p, "ok" if p in ports else "skipped") for p in PATHS))

        res = []
        for label, size, per_thread, reuse in cases:
            msg, wire = make_message(size)
            mode = "1 conn/thread" if reuse else "conn/msg"
            per = {c: [] for c in COLS}
            per_mb = {c: [] for c in COLS}
            log("%s, %s: %d threads x %d messages, %d rounds" % (
                label, mode, threads, per_thread, rounds))
            for r in range(rounds):
                parts = []
                for p in PATHS:
                    if p not in ports:
                        continue
                    x = run_batch(p, ports[p], pool.take(), wire, size,
                                  threads, per_thread, reuse, dv, pf, cap)
                    if x is None:
                        parts.append("%s failed" % p)
                        continue
                    col = "postfix accept" if p == "postfix" else p
                    per[col].append(x["rate"])
                    per_mb[col].append(x["mbs"])
                    s = "%s %.1f/s" % (p, x["rate"])
                    if "drate" in x:
                        per["postfix deliver"].append(x["drate"])
                        per_mb["postfix deliver"].append(x["dmbs"])
                        s += " (%.1f/s delivered)" % x["drate"]
                    parts.append(s + " delivered %d/%d" % (x["got"],
                                                          x["want"]))
                log("  round %d: %s" % (r + 1, "; ".join(parts)))
            title = "%s, %s" % (label, mode)
            res.append(("%s msgs/s" % title,
                        {c: median(v) for c, v in per.items()}, 1))
            res.append(("%s MB/s" % title,
                        {c: median(v) for c, v in per_mb.items()}, 1))
            measured = True

        for d in daemons:
            if d.proc is not None and d.proc.poll() is not None:
                log("warning: %s exited during the run" % type(d).__name__)
        print()
        print("MailMesh SMTP benchmark (%s; %d client threads; medians over "
              "%d rounds; MB = 10^6 bytes; Dovecot mail_fsync %s; postfix "
              "deliver = until its queue is empty; run took %.0f s)" % (
                  "quick" if args.quick else "full", threads, rounds,
                  "never" if args.no_fsync else "optimized (default)",
                  time.monotonic() - t_start))
        print_table(res, notes)
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
