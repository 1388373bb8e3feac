#!/usr/bin/env python3
"""The client half of deploy/image/test: checks a posthaste container from the host.

    check_pop3.py --host=127.0.0.1 --pop3_port=P --pop3s_port=P --lmtp_port=P --metrics_port=P
                  --cafile=CERT --user=ADDRESS --password=PASSWORD

1. /readyz answers 200 (polled for at most --ready_timeout_s), /metrics has posthaste_ series;
2. a message goes in by LMTP (smtplib.LMTP) and is accepted for the user;
3. POP3 on the plain port with STLS (certificate verified against --cafile for --host), USER/PASS,
   STAT shows one message, and RETR returns it byte for byte (with the Return-Path line LMTP
   adds); a message over 64 KiB with a dot-led line, a long line and UTF-8;
4. POP3S (implicit TLS) logs in and sees the same message.
Exit status 0 when all hold, 1 with the first failure on stderr. Every socket has a timeout.
"""

import argparse
import hashlib
import poplib
import smtplib
import ssl
import sys
import time
import urllib.error
import urllib.request

SOCKET_TIMEOUT_S = 20
SENDER = "sender@example.org"


def fail(message):
    print(f"check_pop3: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def test_message():
    """A deterministic message past the copy threshold (64 KiB) with the awkward lines."""
    lines = [b"From: Sender <sender@example.org>", b"To: demo", b"Subject: image test",
             b"Content-Type: text/plain; charset=utf-8", b"Content-Transfer-Encoding: 8bit",
             b"", b"Gr\xc3\xbc\xc3\x9fe aus dem Container.", b".a line that starts with a dot",
             b"..two dots", b"x" * 990]
    seed = b"posthaste"
    while sum(len(line) + 2 for line in lines) < 300_000:
        seed = hashlib.sha256(seed).digest()
        lines.append(seed.hex().encode() * 2)
    return b"\r\n".join(lines) + b"\r\n"


def wait_ready(base_url, timeout_s):
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
                last = f"status {response.status}"
        except urllib.error.HTTPError as e:
            last = f"status {e.code}"
        except OSError as e:
            last = str(e)
        time.sleep(0.25)
    fail(f"/readyz did not answer 200 within {timeout_s}s (last: {last})")


def retr_bytes(pop, number):
    response, lines, octets = pop.retr(number)
    if not response.startswith(b"+OK"):
        fail(f"RETR {number}: {response!r}")
    return b"".join(line + b"\r\n" for line in lines), octets


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("pop3_port", "pop3s_port", "lmtp_port", "metrics_port"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--ready_timeout_s", type=int, default=30)
    args = parser.parse_args()

    base_url = f"http://{args.host}:{args.metrics_port}"
    wait_ready(base_url, args.ready_timeout_s)
    with urllib.request.urlopen(base_url + "/metrics", timeout=SOCKET_TIMEOUT_S) as response:
        if b"posthaste_" not in response.read():
            fail("/metrics has no posthaste_ series")
    print("readyz: 200; metrics: ok")

    message = test_message()
    with smtplib.LMTP(args.host, args.lmtp_port, timeout=SOCKET_TIMEOUT_S) as lmtp:
        refused = lmtp.sendmail(SENDER, [args.user], message)
        if refused:
            fail(f"LMTP refused the recipient: {refused}")
    expected = f"Return-Path: <{SENDER}>\r\n".encode() + message
    print(f"lmtp: delivered {len(message)} bytes")

    context = ssl.create_default_context(cafile=args.cafile)
    pop = poplib.POP3(args.host, args.pop3_port, timeout=SOCKET_TIMEOUT_S)
    try:
        pop.stls(context=context)  # verifies the chain and that the certificate names --host
        pop.user(args.user)
        pop.pass_(args.password)
        count, size = pop.stat()
        if count != 1:
            fail(f"STAT: {count} messages, expected 1")
        got, octets = retr_bytes(pop, 1)
        if got != expected:
            fail(f"RETR differs: {len(got)} bytes (sha256 {hashlib.sha256(got).hexdigest()}), "
                 f"expected {len(expected)} (sha256 {hashlib.sha256(expected).hexdigest()})")
        if size != len(expected):
            fail(f"STAT size {size}, expected {len(expected)}")
        pop.quit()
    finally:
        pop.close()
    print(f"pop3+stls: login, RETR byte-exact ({len(expected)} bytes, {octets} octets on the wire)")

    pop = poplib.POP3_SSL(args.host, args.pop3s_port, context=context, timeout=SOCKET_TIMEOUT_S)
    try:
        pop.user(args.user)
        pop.pass_(args.password)
        if pop.stat()[0] != 1:
            fail("POP3S: STAT does not show the message")
        pop.quit()
    finally:
        pop.close()
    print("pop3s: login, STAT 1")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, poplib.error_proto, smtplib.SMTPException, ssl.SSLError) as e:
        fail(f"{type(e).__name__}: {e}")
