"""The drain delay (--drain_delay_s, D) of `posthaste serve` against the real binary.

Kubernetes removes a terminating pod from its Services' endpoints at about the time it sends
SIGTERM, and load balancers notice some seconds later. So on SIGTERM /readyz must turn 503 at
once while the listeners keep accepting for D seconds; only then do they close and the drain
(--drain_timeout_s) begins.

Shows: after SIGTERM /readyz answers 503 (long before D has passed) while a new POP3 connection
is still greeted, logs in, retrieves byte-exact and deletes, and LMTP still greets; the POP3
listener refuses connections only after D (with a 10% tolerance); the session opened during the
delay then QUITs and commits within the drain, and the server exits 0. A second SIGTERM ends a
long delay early.
"""

import poplib
import socket
import time
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import PosthasteServer, wait_for, wire_lines

DRAIN_DELAY_S = 4
TOLERANCE = 0.10
IO_TIMEOUT_S = 10
PASSWORD = "drain delay secret"
USER = "late@example.test"


def listener_refuses(port):
  """True when a TCP connection to 127.0.0.1:`port` is refused (the listener is closed)."""
  try:
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S):
      return False
  except ConnectionRefusedError:
    return True


def wait_ready_503(server, timeout_s):
  wait_for(lambda: server.http_get("/readyz")[0] == 503, timeout_s=timeout_s,
           what="/readyz to answer 503 after SIGTERM")


class DrainDelayTest(unittest.TestCase):

  def test_readyz_turns_503_while_listeners_still_accept(self):
    server = PosthasteServer(
        shards=2, extra_args=["--drain_delay_s=%d" % DRAIN_DELAY_S, "--drain_timeout_s=20"])
    _, raw = messages.everyday_messages()[0]
    server.add_user(USER, PASSWORD)
    server.deliver(USER, raw)
    with server:
      pop3_port, lmtp_port = server.pop3_port, server.lmtp_port
      self.assertEqual(server.http_get("/readyz")[0], 200)
      signalled = time.monotonic()
      server.terminate()
      wait_ready_503(server, timeout_s=DRAIN_DELAY_S / 2)
      # Not ready, yet still serving newcomers: a client the load balancer sent just before it
      # noticed is greeted and served.
      late = poplib.POP3("127.0.0.1", pop3_port, timeout=IO_TIMEOUT_S)
      late.user(USER)
      late.pass_(PASSWORD)
      self.assertEqual(late.retr(1)[1], wire_lines(raw))
      self.assertTrue(late.dele(1).startswith(b"+OK"))
      with socket.create_connection(("127.0.0.1", lmtp_port), timeout=IO_TIMEOUT_S) as lmtp:
        self.assertTrue(lmtp.recv(512).startswith(b"220 "), "LMTP not greeted during the delay")
      accepting_until = time.monotonic()
      self.assertLess(accepting_until - signalled, DRAIN_DELAY_S,
                      "the checks above ran past the delay: they prove nothing")
      # After the delay the listeners close.
      wait_for(lambda: listener_refuses(pop3_port), timeout_s=DRAIN_DELAY_S + 20, poll_s=0.1,
               what="the POP3 listener to close after the drain delay")
      closed_after_s = time.monotonic() - signalled
      print("listeners closed %.2f s after SIGTERM (--drain_delay_s=%d)" %
            (closed_after_s, DRAIN_DELAY_S))
      self.assertGreaterEqual(closed_after_s, DRAIN_DELAY_S * (1 - TOLERANCE))
      self.assertEqual(server.http_get("/healthz")[0], 200)
      # The session that arrived during the delay finishes within the drain: its QUIT commits.
      self.assertTrue(late.quit().startswith(b"+OK"))
      server.wait_exit()
    log = server.stderr_text()
    self.assertIn("drain delay over, closing listeners", log)
    self.assertEqual(server.mailbox_stats(USER)[0], 0)

  def test_second_sigterm_ends_the_delay(self):
    long_delay_s = 600
    server = PosthasteServer(extra_args=["--drain_delay_s=%d" % long_delay_s])
    with server:
      pop3_port = server.pop3_port
      server.terminate()
      wait_ready_503(server, timeout_s=10)
      with socket.create_connection(("127.0.0.1", pop3_port), timeout=IO_TIMEOUT_S) as client:
        self.assertTrue(client.recv(512).startswith(b"+OK"), "not greeted during the delay")
      server.terminate()
      server.wait_exit(timeout_s=30)  # far below the 600 s delay
    self.assertIn("drain delay cut short by a second signal", server.stderr_text())


if __name__ == "__main__":
  unittest.main()
