#!/usr/bin/env python3
"""Generates the benchmark's users and mailboxes, the same for every server.

  benchdata.py maildirs --root DIR --hash HASH --spec PREFIX:USERS:MESSAGES:BYTES ...

writes DIR/home/<user>/Maildir/cur/<file> for every user of every spec (user names are
PREFIX<n>@bench.test, n from 1), and DIR/passwd: a Dovecot passwd-file line per user with the
given password hash (`{SHA512-CRYPT}$6$...`), uid/gid of the `mail` user and the home above.
DIR/users.txt lists "address<TAB>maildir" for posthaste's `import maildir`.

Messages are plain RFC 5322 text with LF line ends, as a local delivery agent writes them
into a Maildir; each file name carries S=<size> and W=<size with CRLF> as Dovecot's own
deliveries do, so Dovecot never has to read a file to learn its size. Content is
deterministic (same bytes on every run), with a dot-leading line in every message so servers
do dot-stuffing work.
"""

import argparse
import os
import random
import sys

DOMAIN = "bench.test"
WORDS = (
    "posthaste dovecot mailbox message session benchmark loopback server client "
    "reactor shard segment index latency throughput account tenant delivery retrieve "
    "uidl stat list quit user pass login memory process thread socket buffer"
).split()


def body_lines(rng, target_bytes):
    """Yields LF-terminated lines of about 72 characters until target_bytes are reached."""
    written = 0
    first = True
    while written < target_bytes:
        remaining = target_bytes - written
        if first:
            line = ".this line starts with a dot and is stuffed on the wire\n"
            first = False
        else:
            words = []
            length = 0
            while length < 70:
                word = rng.choice(WORDS)
                words.append(word)
                length += len(word) + 1
            line = " ".join(words) + "\n"
        if len(line) > remaining:
            line = ("x" * (remaining - 1) + "\n") if remaining > 1 else "\n"
        yield line
        written += len(line)


def make_message(rng, address, n, size_bytes):
    header = (
        f"Return-Path: <sender{n}@example.test>\n"
        f"From: Sender {n} <sender{n}@example.test>\n"
        f"To: <{address}>\n"
        f"Subject: benchmark message {n}\n"
        f"Date: Thu, 01 Jan 2026 00:{n % 60:02d}:00 +0000\n"
        f"Message-ID: <bench-{n}-{address}>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "\n"
    )
    body = "".join(body_lines(rng, max(1, size_bytes - len(header))))
    return (header + body).encode("ascii")


def write_maildir(maildir, address, messages, size_bytes, seed):
    rng = random.Random(seed)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    when = 1767225600  # 2026-01-01
    for n in range(1, messages + 1):
        data = make_message(rng, address, n, size_bytes)
        virtual = len(data) + data.count(b"\n")
        name = f"{when + n}.M{n}P1Q{seed}.bench,S={len(data)},W={virtual}:2,S"
        path = os.path.join(maildir, "cur", name)
        with open(path, "wb") as f:
            f.write(data)
        os.utime(path, (when + n, when + n))


def cmd_maildirs(args):
    root = os.path.abspath(args.root)
    os.makedirs(os.path.join(root, "home"), exist_ok=True)
    uid = gid = 8  # Debian's `mail` user: Dovecot will not serve mail as root
    passwd = []
    users = []
    seed = 0
    for spec in args.spec:
        fields = spec.split(":")
        prefix, count, messages, size = fields[:4]
        count, messages, size = int(count), int(messages), int(size)
        # Optional 5th field: only the first N users get a home and Maildir (the rest are
        # accounts for posthaste alone, e.g. 100,000 idle users where Dovecot holds fewer).
        with_home = int(fields[4]) if len(fields) > 4 else count
        for i in range(1, count + 1):
            seed += 1
            address = f"{prefix}{i}@{DOMAIN}"
            home = os.path.join(root, "home", address)
            maildir = os.path.join(home, "Maildir")
            if i > with_home:
                pass
            elif messages > 0:
                write_maildir(maildir, address, messages, size, seed)
            else:
                for sub in ("cur", "new", "tmp"):
                    os.makedirs(os.path.join(maildir, sub), exist_ok=True)
            passwd.append(f"{address}:{args.hash}:{uid}:{gid}::{home}::")
            users.append(f"{address}\t{maildir}")
        print(f"benchdata: {count} x {prefix}N@{DOMAIN}: {messages} messages of {size} bytes",
              file=sys.stderr)
    with open(os.path.join(root, "passwd"), "w") as f:
        f.write("\n".join(passwd) + "\n")
    with open(os.path.join(root, "users.txt"), "w") as f:
        f.write("\n".join(users) + "\n")
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "home")):
        os.chown(dirpath, uid, gid)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), uid, gid)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("maildirs")
    m.add_argument("--root", required=True)
    m.add_argument("--hash", required=True, help="passwd-file hash, e.g. {SHA512-CRYPT}$6$...")
    m.add_argument("--spec", action="append", required=True,
                   help="PREFIX:USERS:MESSAGES:BYTES[:USERS_WITH_MAILDIR] (repeatable)")
    args = parser.parse_args()
    if args.command == "maildirs":
        cmd_maildirs(args)


if __name__ == "__main__":
    main()
