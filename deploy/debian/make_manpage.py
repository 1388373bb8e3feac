#!/usr/bin/env python3
"""Writes posthaste(1) in roff to stdout, generated from `posthaste --help` and
`posthaste serve --help` so the page lists exactly the commands and flags of the binary it ships
with. The prose around them (signals, files, the service) describes the Debian package and the
systemd unit in deploy/. Used by deploy/debian/build and deploy/systemd/test.

    make_manpage.py BINARY VERSION > posthaste.1

The date is SOURCE_DATE_EPOCH's (reproducible builds), or today's.
"""

import datetime
import os
import re
import subprocess
import sys


def help_text(binary, *args):
    # --help prints to stderr and exits 2 (the usage status): take stderr, accept 2.
    run = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, check=False)
    if run.returncode not in (0, 2) or "usage" not in run.stderr + run.stdout:
        sys.exit(f"make_manpage: {binary} {' '.join(args)} --help failed ({run.returncode})")
    return run.stdout + run.stderr


def roff(text):
    """Escapes plain text for roff: backslashes, option dashes, a leading control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def parse_commands(top_help):
    """[(usage, summary)] from the `  posthaste ...   summary` lines, and the other lines."""
    commands, notes = [], []
    for line in top_help.splitlines():
        if line.strip() == "usage:" or not line.strip():
            continue
        if line.startswith("  posthaste "):
            usage, _, summary = line.strip().partition("  ")
            commands.append((usage.strip(), summary.strip()))
        else:
            notes.append(line.strip())
    if not commands:
        sys.exit("make_manpage: no commands found in `posthaste --help`")
    return commands, notes


def parse_serve_flags(serve_help):
    """The bracketed flag groups of `posthaste serve --help`, in order."""
    groups = re.findall(r"\[(--[^\[\]]+)\]", serve_help)
    if not groups:
        sys.exit("make_manpage: no flags found in `posthaste serve --help`")
    return groups


def flag_line(group):
    """One line of the flag list: each flag name bold, its value italic."""
    parts = []
    for flag in group.split():
        name, eq, value = flag.partition("=")
        parts.append(f"\\fB{roff(name)}\\fR" + (f"=\\fI{roff(value)}\\fR" if eq else ""))
    return " ".join(parts)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: make_manpage.py BINARY VERSION")
    binary, version = sys.argv[1], sys.argv[2]
    commands, notes = parse_commands(help_text(binary))
    serve_groups = parse_serve_flags(help_text(binary, "serve"))
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or None
    date = (datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
            if epoch else datetime.datetime.now(datetime.timezone.utc)).strftime("%Y-%m-%d")

    out = [
        f'.TH POSTHASTE 1 "{date}" "posthaste {roff(version)}" "User Commands"',
        ".SH NAME",
        "posthaste \\- multi\\-tenant POP3 and LMTP server for hosting providers",
        ".SH SYNOPSIS",
        ".B posthaste",
        ".I command",
        ".RI [ flags ]",
        ".br",
        ".B posthaste serve",
        ".BI \\-\\-data_dir= DIR",
        ".RI [ flags ]",
        ".SH DESCRIPTION",
        "posthaste serves mailboxes over POP3 (STLS on port 110, implicit TLS on 995) and takes",
        "deliveries over LMTP. Logins are \\fIuser@domain\\fR; each domain is a tenant.",
        "Messages live in one data directory (a RocksDB index and segment files).",
        ".PP",
        "While \\fBposthaste serve\\fR runs, every other command given the same",
        "\\fB\\-\\-data_dir\\fR is carried out by the running server through its admin socket",
        "\\fIDIR\\fR/admin.sock, which accepts root and the server's own user only.",
        "Otherwise the command opens the data directory itself.",
        ".SH COMMANDS",
    ]
    for usage, summary in commands:
        out += [".TP", f"\\fB{roff(usage)}\\fR", roff(summary)]
    out += [".SH SERVE FLAGS",
            "The flags of \\fBposthaste serve\\fR as \\fBposthaste serve \\-\\-help\\fR lists",
            "them. A value shown is the default; \\fIa\\fR|\\fIb\\fR lists the accepted",
            "values, the first being the default; an upper\\-case value (N, DIR, FILE, PEM,",
            "HOST:PORT, NAME) stands for one of your own. Flags may also be given as",
            "\\fB\\-\\-flag\\fR \\fIvalue\\fR.",
            ".RS"]
    for group in serve_groups:
        out += [".br", flag_line(group)]
    out += [".RE"]
    out += [
        ".SH SIGNALS",
        ".TP",
        ".B SIGHUP",
        "Reloads the TLS certificates; sessions in progress keep the ones they started with.",
        "A file that does not load keeps the previous certificate.",
        ".TP",
        ".BR SIGTERM \", \" SIGINT",
        "Drain: the listeners close, /readyz answers 503, sessions get",
        "\\fB\\-\\-drain_timeout_s\\fR to finish, then the server exits with status 0.",
        ".SH EXIT STATUS",
    ]
    exit_status = re.search(r"Exit status: (.*)", " ".join(notes))
    if not exit_status:
        sys.exit("make_manpage: no \"Exit status:\" in `posthaste --help`")
    out += [roff(exit_status.group(1))]
    out += [
        ".SH FILES",
        ".TP",
        ".I /etc/default/posthaste",
        "POSTHASTE_OPTS: the flags posthaste.service passes to \\fBposthaste serve\\fR.",
        ".TP",
        ".I /var/lib/posthaste",
        "The data directory of the service, owned by the \\fBposthaste\\fR user.",
        ".TP",
        ".I /lib/systemd/system/posthaste.service",
        "The unit: \\fBsystemctl reload posthaste\\fR sends SIGHUP, \\fBsystemctl stop",
        "posthaste\\fR drains; logs go to the journal (\\fBjournalctl \\-u posthaste\\fR).",
        ".SH SEE ALSO",
        ".BR systemctl (1),",
        ".BR journalctl (1),",
        ".BR systemd.exec (5)",
    ]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
