#!/usr/bin/env python3
"""Writes deploy/image/seccomp.json: the container runtime's default seccomp profile plus io_uring.

posthaste's reactor is io_uring (io_uring_setup, io_uring_enter, io_uring_register), which the
default profiles of podman, Docker 25+ and containerd 2.0+ deny. This takes the default profile
shipped by Debian's containers-common and allows exactly those three calls, nothing else, so
the difference from the runtime's default stays reviewable. Regenerate it after a
containers-common upgrade:

    deploy/image/make_seccomp_profile.py > deploy/image/seccomp.json

The result is in the runtime's own format (podman, CRI-O, Docker and containerd read it), the
same file a Kubernetes `seccompProfile: {type: Localhost}` points at.
"""

import argparse
import json
import sys

IO_URING_SYSCALLS = ["io_uring_enter", "io_uring_register", "io_uring_setup"]
DEFAULT_BASE = "/usr/share/containers/seccomp.json"


def with_io_uring(profile):
    """Returns `profile` with io_uring allowed; rules that deny it by name lose those names."""
    rules = []
    for rule in profile.get("syscalls", []):
        names = rule.get("names", [])
        if rule.get("action") != "SCMP_ACT_ALLOW" and any(n in IO_URING_SYSCALLS for n in names):
            rule = dict(rule, names=[n for n in names if n not in IO_URING_SYSCALLS])
            if not rule["names"]:
                continue
        rules.append(rule)
    rules.append({
        "names": IO_URING_SYSCALLS,
        "action": "SCMP_ACT_ALLOW",
        "args": [],
        "comment": "posthaste: io_uring (deploy/image/make_seccomp_profile.py)",
        "includes": {},
        "excludes": {},
    })
    return dict(profile, syscalls=rules)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=DEFAULT_BASE,
                        help=f"the runtime's default profile (default {DEFAULT_BASE})")
    args = parser.parse_args()
    with open(args.base) as f:
        profile = json.load(f)
    if not profile.get("defaultAction") or not profile.get("syscalls"):
        sys.exit(f"{args.base}: not a seccomp profile (no defaultAction or syscalls)")
    json.dump(with_io_uring(profile), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
