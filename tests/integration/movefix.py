"""What the move tests share: two sites whose nodes drive real Dovecot
back ends through their doveadm servers, a census of a mailbox as clients
see it, and the load a move must survive (a sender, an IMAP client in
IDLE).

Site a: node a1 on 127.0.0.2 in front of back end ma; site b: node b1 on
127.0.0.3 in front of mb. The back ends never reach each other: dsync
goes ma -> a1's dsync-listen -> the cross-site channel -> b1 -> mb."""

import hashlib
import os
import re
import shutil
import smtplib
import threading
import time

import mmfixture as mf

SECRET = "doveadm-Secret-7"
HOST = {"a1": "127.0.0.2", "b1": "127.0.0.3"}
SITE = {"a1": "a", "b1": "b"}
BACKEND = {"a": "ma", "b": "mb"}


class Sites:
    """The two sites in ENV. USERS are added at a; mb has no mailbox for
    them (they have never lived at b) unless listed in KEEP_AT_B. BIG:
    {user: megabytes} of extra mail written at ma before it starts."""

    def __init__(self, env, users, keep_at_b=(), big=None):
        self.env = env
        self.dv, self.n = {}, {}
        secret = os.path.join(env.dir, "doveadm.secret")
        with open(secret, "w") as f:
            f.write(SECRET + "\n")
        os.chmod(secret, 0o600)
        for site, name in BACKEND.items():
            port = mf.free_port()
            d = mf.Dovecot(name, os.path.join(env.dir, name), env.tls.cert,
                           env.tls.key, big=False, extra_conf=[
                               "doveadm_password = " + SECRET,
                               # Warm doveadm processes: a pass in the
                               # freeze does not wait for one to start.
                               "service doveadm {\n inet_listener {\n"
                               "  address = 127.0.0.1\n  port = %d\n }\n"
                               " process_min_avail = 2\n}" % port])
            d.doveadm = port
            if name == "mb":
                for u in users:
                    if u not in keep_at_b:
                        shutil.rmtree(os.path.join(d.dir, "mail", u))
            else:
                for u, mb in (big or {}).items():
                    write_bulk(d, u, mb)
            env.others.append(d)
            d.start()
            self.dv[name] = d
        peer = {n: mf.free_port() for n in HOST}
        seed = "%s:%d" % (HOST["a1"], peer["a1"])
        for name in ("a1", "b1"):
            self.n[name] = self.make_node(
                name, peer[name], [] if name == "a1" else [seed], secret)
        for n in self.n.values():
            n.start()
        for u in users:
            self.n["a1"].ctl("user", "add", u, "ma").check()
        mf.wait_or_fail(lambda: all(
            record(self.n["b1"], u).get("site") == "a" for u in users)
            and len(self.n["a1"].members()) == 2 and
            len(self.n["b1"].members()) == 2, 30, "gossip between the sites")

    def make_node(self, name, peer_port, seeds, secret):
        host, site = HOST[name], SITE[name]
        be = BACKEND[site]
        d = self.dv[be]
        key = os.path.join(self.env.dir, name, "transport.key")
        n = self.env.gossip_node(
            name, site, "%s:%d" % (host, peer_port), peers=seeds,
            start=False, host=host,
            listeners=[("imap", "imap", {}), ("pop3", "pop3", {}),
                       ("smtp", "smtp", {}), ("metrics", "metrics", {})],
            backends=["%s 127.0.0.1 imap=%d pop3=%d lmtp=%d client-addr=id "
                      "doveadm=%d doveadm-secret=%s move=dsync" % (
                          be, d.imap, d.pop3, d.lmtp, d.doveadm, secret)],
            timeouts={"drain": "2s", "backend": "5s", "move-freeze": "10s"},
            limits={"auth-failure-delay": "0", "auth-failure-delay-max": "0",
                    "auth-failures-per-ip": "100000",
                    "connections-per-ip": "1000"},
            extra=["transport-key %s" % key,
                   "session-listen %s:%d" % (host, mf.free_port()),
                   "dsync-listen %s:%d" % (host, mf.free_port())])
        mf.mmctl(["keys", "new", key]).check("keys new")
        n.certify(role="transport", pub=key + ".pub",
                  name=name + "-transport")
        return n


def write_bulk(dv, user, megabytes):
    """MEGABYTES of 50 KB messages in USER's Maildir on DV (not started)."""
    md = os.path.join(dv.dir, "mail", user, "Maildir", "cur")
    line = ("bulk " + "y" * 70 + "\n").encode()
    body = line * (50 * 1024 // len(line))
    for i in range(megabytes * 20):
        raw = (b"From: bulk@bulk.test\nTo: %s\nSubject: bulk %d\n"
               b"Message-ID: <bulk-%d.%s>\n\n" % (
                   user.encode(), i, i, user.encode())) + body
        with open(os.path.join(md, "17050000%05d.M%dP2.bulk:2,S" % (i, i)),
                  "wb") as f:
            f.write(raw)
    mf.chown_tree(os.path.join(dv.dir, "mail", user))


def record(node, user):
    """NODE's record of USER as a dict ({} when it has none)."""
    r = node.ctl("user", "show", user, json=True)
    if r.rc != 0:
        return {}
    return r.json()


def move_row(node, user):
    """NODE's `mmctl moves` row of USER, or {}."""
    r = node.ctl("moves", "--user", user, json=True)
    if r.rc != 0:
        return {}
    rows = r.json()
    return rows[0] if rows else {}


def imap_direct(dv, user):
    m = mf.imaplib.IMAP4("127.0.0.1", dv.imap, timeout=mf.IO_TIMEOUT)
    m.login(user, mf.USERS[user])
    return m


LIST_LINE = re.compile(rb'\(([^)]*)\) "(.)" (.*)$')


def mailbox_state(dv, user):
    """Everything clients can tell of USER's mailbox on DV: per folder
    UIDVALIDITY and, per message UID, flags (without \\Recent), Message-ID
    and a digest of the whole message; and the subscriptions."""
    m = imap_direct(dv, user)
    try:
        state = {"folders": {}, "subscribed": set()}
        typ, data = m.list()
        names = [LIST_LINE.match(ln).group(3).decode().strip('"')
                 for ln in data]
        typ, data = m.lsub()
        for ln in data or []:
            if ln:
                state["subscribed"].add(
                    LIST_LINE.match(ln).group(3).decode().strip('"'))
        for name in names:
            m.select('"%s"' % name, readonly=True)
            typ, uv = m.response("UIDVALIDITY")
            msgs = {}
            typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head = item[0].decode()
                uid = int(re.search(r"UID (\d+)", head).group(1))
                flags = set(re.search(r"FLAGS \(([^)]*)\)", head)
                            .group(1).split()) - {"\\Recent"}
                body = item[1]
                mid = re.search(rb"(?im)^Message-ID:\s*(\S+)", body)
                msgs[uid] = (frozenset(flags),
                             mid.group(1).decode() if mid else None,
                             hashlib.sha256(body).hexdigest())
            state["folders"][name] = (uv[0].decode() if uv and uv[0]
                                      else None, msgs)
        return state
    finally:
        m.logout()


def message_ids(state):
    return [mid for _, msgs in state["folders"].values()
            for _, mid, _ in msgs.values()]


def census(test, before, after, sent=(), unsure=()):
    """TEST fails unless AFTER (the target) holds every message of BEFORE
    (the source before the move) with its UID, flags and bytes in a folder
    of the same UIDVALIDITY, the same subscriptions, and every Message-ID
    in SENT exactly once (or, for one in UNSURE, sent again after a reply
    that was lost, at least once), and no other message twice."""
    mids = message_ids(after)
    for mid in sent:
        if mid in unsure:
            test.assertGreaterEqual(mids.count(mid), 1, mid)
        else:
            test.assertEqual(mids.count(mid), 1, mid)
    test.assertEqual(len([m for m in mids if m not in unsure]),
                     len(set(m for m in mids if m not in unsure)),
                     "a message twice")
    for name, (uv, msgs) in before["folders"].items():
        test.assertIn(name, after["folders"])
        auv, amsgs = after["folders"][name]
        test.assertEqual(auv, uv, name)
        for uid, (flags, mid, digest) in msgs.items():
            test.assertIn(uid, amsgs, (name, uid))
            test.assertEqual(amsgs[uid][1:], (mid, digest), (name, uid))
            test.assertEqual(amsgs[uid][0], flags, (name, uid))
    test.assertEqual(after["subscribed"], before["subscribed"])


class Sender(threading.Thread):
    """Sends USER a message through NODE's SMTP every 50 ms; a message
    refused with 4xx, or not taken because the node is down, is sent
    again, as a real sender would; it counts as sent once the node
    accepted it (250). A connection lost after the message's data went
    out, or a 4xx to the data (a relay that lost the next hop before its
    reply), leaves the sender not knowing whether it was delivered: it
    sends it again, and the Message-ID is kept in `unsure` (SMTP may then
    deliver it twice, whatever the node does: RFC 1047)."""

    def __init__(self, node, user):
        super().__init__(daemon=True)
        self.node, self.user = node, user
        self.sent, self.deferred, self.errors = [], 0, []
        self.unsure = set()
        self.stop = threading.Event()

    def run(self):
        i = 0
        while not self.stop.is_set():
            mid = "<move-%d-%s-%d@sender.test>" % (
                os.getpid(), self.user.split("@")[0], i)
            msg = ("From: sender@sender.test\r\nTo: %s\r\nSubject: live %d"
                   "\r\nMessage-ID: %s\r\n\r\nbody %d\r\n"
                   % (self.user, i, mid, i))
            in_data = accepted = False
            try:
                with smtplib.SMTP(self.node.host, self.node.port["smtp"],
                                  timeout=20) as s:
                    s.ehlo()
                    code, resp = s.mail("sender@sender.test")
                    if code != 250:
                        raise smtplib.SMTPResponseException(code, resp)
                    code, resp = s.rcpt(self.user)
                    if code not in (250, 251):
                        raise smtplib.SMTPResponseException(code, resp)
                    in_data = True
                    code, resp = s.data(msg)
                    in_data = False
                    if code != 250:
                        raise smtplib.SMTPResponseException(code, resp)
                    accepted = True
                self.sent.append(mid)
                i += 1
            except smtplib.SMTPResponseException as e:
                if 400 <= e.smtp_code < 500:
                    self.deferred += 1
                    # A 4xx to the data: a relay that lost the hop after
                    # it says so, though the back end may have the mail.
                    if in_data:
                        self.unsure.add(mid)
                else:
                    self.errors.append(str(e))
            except (OSError, smtplib.SMTPServerDisconnected):
                if accepted:
                    # Taken (250); only the QUIT after it failed.
                    self.sent.append(mid)
                    i += 1
                    continue
                self.deferred += 1      # the node is down: later
                if in_data:
                    self.unsure.add(mid)
            time.sleep(0.05)


class Idler(threading.Thread):
    """An IMAP client in IDLE at NODE that logs in again when told BYE."""

    def __init__(self, node, user):
        super().__init__(daemon=True)
        self.node, self.user = node, user
        self.byes, self.logins, self.errors = 0, 0, []
        self.stop = threading.Event()

    def tagged(self, c, tag):
        ln = c.line()
        while not ln.startswith(tag + " "):
            ln = c.line()
        return ln

    def run(self):
        while not self.stop.is_set():
            try:
                c = mf.Conv(self.node.port["imap"], host=self.node.host,
                            timeout=20)
                c.cmd('a1 LOGIN "%s" "%s"' % (self.user,
                                              mf.USERS[self.user]))
                ln = self.tagged(c, "a1")
                if not ln.startswith("a1 OK"):
                    self.errors.append(ln)
                    c.close()
                    time.sleep(0.2)
                    continue
                self.logins += 1
                c.cmd("a2 SELECT INBOX")
                self.tagged(c, "a2")
                c.cmd("a3 IDLE")
                while not self.stop.is_set():
                    try:
                        ln = c.line(timeout=0.5)
                    except mf.socket.timeout:
                        continue
                    if ln.startswith("* BYE"):
                        self.byes += 1
                        break
                c.close()
            except mf.Closed:
                time.sleep(0.02)
            except OSError as e:
                self.errors.append(str(e))
                time.sleep(0.1)


def crash(node):
    """kill -9 of NODE's whole process group (parent, agent, workers)."""
    mf.kill_group(node.proc.pid)
    node.proc.wait(10)
    node.proc = None
    node.logf.close()
