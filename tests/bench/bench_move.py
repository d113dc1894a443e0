#!/usr/bin/env python3
"""Moves measured: `mmctl move` of live mailboxes between two sites.

The two sites of tests/integration/movefix.py (a node and a Dovecot back
end each, dsync carried by the nodes). For each mailbox size (20 MB,
200 MB and 1 GB by default) a user with that much mail moves from a to b
and back, several times, while a sender delivers to it every 50 ms and a
client logs in every 100 ms, both through a1. Printed per size:

- copy MB/s: the first move's first pass (the whole mailbox), beside the
  direct path, a `doveadm backup` of a same-sized mailbox straight from
  one back end to the other (no node in between: this machine's limit
  for the copy), and their ratio;
- the freeze (FROZEN signed to TRANSFER signed at the owner's node, the
  instant the owner's nodes route the user to the new site) p50 and p99;
- the last pass inside the freeze (the final delta) p50;
- logins held during the freezes: p99 and the longest;
- messages sent, lost and duplicated (a census at the final back end).

--soak N then runs N moves of small mailboxes back and forth between the
sites, with a kill -9 of a random node at a random instant in some of
them (--kill-rate), mail arriving all along, and prints moves done,
aborted and resumed, and messages lost and duplicated.

A measuring program, not a pass/fail test. Run as root (Dovecot's mail
processes run as nobody); needs what tests/run.sh installs.

    tests/bench/bench_move.py                    # 20, 200 and 1000 MB
    tests/bench/bench_move.py --sizes 20 --moves 4 --soak 100

The binaries come from $MM_BUILD_DIR (else build-bench/, configured
Release and built on first use).
"""

import argparse
import os
import random
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import benchlib as bl  # noqa: E402


bl.build_dir()
import mmfixture as mf  # noqa: E402
import movefix as mv  # noqa: E402


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


class Prober(threading.Thread):
    """Logs USER in at NODE every 100 ms (LOGIN, LOGOUT)."""

    def __init__(self, node, user):
        super().__init__(daemon=True)
        self.node, self.user = node, user
        self.stop = threading.Event()
        self.failed = []

    def run(self):
        while not self.stop.is_set():
            try:
                m = mf.imaplib.IMAP4(self.node.host, self.node.port["imap"],
                                     timeout=30)
                m.login(self.user, mf.USERS[self.user])
                m.logout()
            except Exception as e:  # noqa: BLE001 (counted, not fatal)
                self.failed.append(str(e))
            time.sleep(0.1)


def held_ms(nodes, user, since):
    """Every held login of USER logged by NODES after positions SINCE."""
    out = []
    for n in nodes:
        for ln in n.log_since(since[n.name]).splitlines():
            m = re.search(r" proxy held user=(\S+) ms=(\d+)", ln)
            if m and m.group(1) == user:
                out.append(int(m.group(2)))
    return out


def direct_copy(s, user, mb):
    """Seconds of a doveadm backup of USER straight from ma to mb."""
    ma, mbk = s.dv["ma"], s.dv["mb"]
    t0 = time.monotonic()
    r = subprocess.run(["doveadm", "-c", ma.conf, "backup", "-u", user,
                        "tcp:127.0.0.1:%d" % mbk.doveadm],
                       capture_output=True, text=True)
    took = time.monotonic() - t0
    if r.returncode != 0:
        bl.log("direct backup failed: %s" % r.stderr.strip()[:300])
        return None
    return mb / took


def move_once(s, user, src, dst):
    """Moves USER from node SRC to node DST; its `moves` row."""
    a = s.n[src]
    r = a.ctl("move", user, mv.SITE[dst], "--wait", timeout=3600)
    if r.rc != 0:
        bl.log("move of %s %s->%s failed: %s" % (user, src, dst, r))
    return mv.move_row(a, user)


def pass_ms(node, user, phase, since):
    """The ms of each pass of USER in PHASE that NODE logged after SINCE."""
    out = []
    for ln in node.log_since(since).splitlines():
        m = re.search(r" move pass user=(\S+) phase=(\S+) pass=\d+ ms=(\d+)",
                      ln)
        if m and m.group(1) == user and m.group(2) == phase:
            out.append(int(m.group(3)))
    return out


def sizes_part(s, sizes, moves):
    rows = []
    for mb in sizes:
        user, direct_user = "big%d@a.test" % mb, "big%dd@a.test" % mb
        bl.log("%d MB: direct copy" % mb)
        direct = direct_copy(s, direct_user, mb)
        a1, b1 = s.n["a1"], s.n["b1"]
        since = {n.name: n.log_size() for n in (a1, b1)}
        before = mv.mailbox_state(s.dv["ma"], user)
        snd, prb = mv.Sender(a1, user), Prober(a1, user)
        snd.start()
        prb.start()
        freezes, finals, copy = [], [], None
        where = "a1"
        for i in range(moves):
            dst = "b1" if where == "a1" else "a1"
            pos = s.n[where].log_size()
            bl.log("%d MB: move %d of %d, %s -> %s" % (mb, i + 1, moves,
                                                       where, dst))
            row = move_once(s, user, where, dst)
            if row.get("phase") != "done":
                bl.log("  not done: %s" % row)
                break
            freezes.append(int(row["freeze_ms"]))
            finals += pass_ms(s.n[where], user, "freeze", pos)
            if i == 0:
                first = pass_ms(s.n[where], user, "copy", pos)
                if first:
                    copy = mb / (first[0] / 1000.0)
            where = dst
        n = len(snd.sent)
        mf.wait_for(lambda: len(snd.sent) >= n + 3, 30)
        snd.stop.set()
        prb.stop.set()
        snd.join(30)
        prb.join(30)
        home = s.dv["mb"] if where == "b1" else s.dv["ma"]
        after = mv.mailbox_state(home, user)
        mids = mv.message_ids(after)
        lost = sum(1 for m in snd.sent if m not in mids)
        dup = sum(1 for m in set(mids) if mids.count(m) > 1)
        lost += sum(1 for name, (uv, msgs) in before["folders"].items()
                    for uid in msgs
                    if uid not in after["folders"].get(name, (0, {}))[1])
        held = held_ms((a1, b1), user, since)
        if prb.failed:
            bl.log("%d MB: logins that failed: %s" % (
                mb, "; ".join(sorted(set(prb.failed))[:3])))
        rows.append([
            "%d MB" % mb, bl.fmt(direct), bl.fmt(copy),
            bl.ratio(copy, direct), str(pct(freezes, 50)),
            str(pct(freezes, 99)), str(pct(finals, 50)),
            str(pct(held, 99)), str(max(held) if held else None),
            str(len(snd.sent)), str(lost), str(dup),
            "%d moves, %d logins failed" % (len(freezes),
                                           len(prb.failed))])
    print()
    print("Moves, mail every 50 ms and a login every 100 ms through a1:")
    bl.print_rows(["size", "direct MB/s", "copy MB/s", "ratio",
                   "freeze p50", "freeze p99", "final p50",
                   "held p99", "held max", "sent", "lost", "dup", "note"],
                  rows)
    print("(ms unless said; targets: freeze <= 150 p99, held <= 250 p99, "
          "copy >= 30 MB/s, 0 lost, 0 duplicated)")


def soak_part(s, users, n_moves, kill_rate, seed):
    rnd = random.Random(seed)
    owner = {u: "a1" for u in users}
    senders = [mv.Sender(s.n["a1"], u) for u in users]
    for snd in senders:
        snd.start()
    done = aborted = kills = 0
    resumed0 = sum(n.log_text().count("move resume") for n in s.n.values())
    t0 = time.monotonic()
    for i in range(n_moves):
        u = rnd.choice(users)
        src = owner[u]
        dst = "b1" if src == "a1" else "a1"
        a = s.n[src]
        r = a.ctl("move", u, mv.SITE[dst])
        if r.rc != 0:
            bl.log("soak %d: %s refused: %s" % (i, u, r.err.strip()))
            time.sleep(1)
            continue
        if rnd.random() < kill_rate:
            time.sleep(rnd.random() * 0.4)
            victim = s.n[rnd.choice(("a1", "b1"))]
            mv.crash(victim)
            time.sleep(0.2)
            victim.start()
            kills += 1
        if not mf.wait_for(lambda: mv.move_row(a, u).get("phase") in (
                "done", "aborted"), 300):
            bl.log("soak %d: %s did not end: %s" % (i, u,
                                                     mv.move_row(a, u)))
            continue
        row = mv.move_row(a, u)
        if row["phase"] == "done":
            done += 1
            owner[u] = dst
        else:
            aborted += 1
        if (i + 1) % 50 == 0:
            bl.log("soak: %d moves (%d done, %d aborted, %d kills), %.0fs"
                   % (i + 1, done, aborted, kills, time.monotonic() - t0))
    for snd in senders:
        snd.stop.set()
    for snd in senders:
        snd.join(30)
    resumed = sum(n.log_text().count("move resume")
                  for n in s.n.values()) - resumed0
    lost = dup = unsure = sent = 0
    for u, snd in zip(users, senders):
        home = s.dv["mb"] if owner[u] == "b1" else s.dv["ma"]
        mids = mv.message_ids(mv.mailbox_state(home, u))
        sent += len(snd.sent)
        lost += sum(1 for m in snd.sent if m not in mids)
        twice = [m for m in set(mids) if mids.count(m) > 1]
        # A message sent again after its first reply was lost may be
        # there twice: SMTP's own (RFC 1047), not the move's.
        dup += sum(1 for m in twice if m not in snd.unsure)
        unsure += sum(1 for m in twice if m in snd.unsure)
    print()
    print("Soak: moves of small mailboxes back and forth, kill -9 of a "
          "random node in %.0f%% of them:" % (kill_rate * 100))
    bl.print_rows(["moves", "done", "aborted", "kills", "resumed",
                   "sent", "lost", "dup", "dup (reply lost)", "seconds"],
                  [[str(n_moves), str(done), str(aborted), str(kills),
                    str(resumed), str(sent), str(lost), str(dup),
                    str(unsure), "%.0f" % (time.monotonic() - t0)]])
    print("(target: 0 lost and 0 duplicated over >= 1,000 moves; \"dup "
          "(reply lost)\": sent again after the node died between the "
          "message's data and its reply)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="20,200,1000",
                    help="mailbox sizes in MB (comma-separated)")
    ap.add_argument("--moves", type=int, default=6,
                    help="moves per size (back and forth)")
    ap.add_argument("--soak", type=int, default=0,
                    help="soak moves of small mailboxes (0: none)")
    ap.add_argument("--kill-rate", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    bl.exit_on_signals()
    sizes = [int(x) for x in args.sizes.split(",") if x]
    soak_users = ["soak%d@a.test" % i for i in range(8)] if args.soak else []
    users = []
    big = {}
    for mb in sizes:
        for u in ("big%d@a.test" % mb, "big%dd@a.test" % mb):
            mf.USERS[u] = "pw-%s" % u.split("@")[0]
            users.append(u)
            big[u] = mb
    for u in soak_users:
        mf.USERS[u] = "pw-%s" % u.split("@")[0]
        users.append(u)
    env = mf.env()
    try:
        bl.log("writing %d MB of mail and starting the sites"
               % (2 * sum(sizes)))
        s = mv.Sites(env, users, big=big)
        if sizes:
            sizes_part(s, sizes, args.moves)
        if args.soak:
            soak_part(s, soak_users, args.soak, args.kill_rate, args.seed)
    finally:
        mf.shutdown()


if __name__ == "__main__":
    main()
