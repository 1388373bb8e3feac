"""Failed-login penalties against the real binary (2 shards), with real sockets from two
loopback addresses and the fail2ban filter of deploy/fail2ban run by Debian's fail2ban-regex.

The server runs with --auth_failure_delay_ms=500 (the base; production default 2000) and the
production cap, --auth_penalty_delay_max_ms=15000, and with --trusted_networks moved off
loopback so that 127.0.0.2 and 127.0.0.3 are ordinary clients.

Shows:
  - 127.0.0.2's first failures wait base, 2 x base, 4 x base (each on a fresh connection,
    whichever shard takes it: the shards share failures by message);
  - 46 more failures whose clients hang up before the answer still count;
  - the 50th failure from 127.0.0.2 waits the cap (>= 10 s, <= cap + slack);
  - meanwhile 127.0.0.3 logs in at once (not delayed by penalties), and its own failure waits
    about the base, not the cap;
  - a successful login from 127.0.0.2 clears its penalty: its next failure waits the base;
  - the counters move on /metrics; every failure wrote one log line, and the fail2ban filter
    matches exactly those lines, with the right address.
Bounds are generous (correctness, not speed). About 25 s.
"""

import os
import socket
import subprocess
import threading
import time
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, metric_sum, wait_for

BASE_MS = 500
CAP_MS = 15_000
IO_TIMEOUT_S = 40
USER = "good@example.test"
PASSWORD = "penalty test secret"
ATTACKER = "127.0.0.2"
BYSTANDER = "127.0.0.3"
FAILURES = 50
MEASURED_FIRST = 3  # measured one by one before the hang-ups


def filter_path():
  for root in (os.environ.get("TEST_SRCDIR"), os.environ.get("RUNFILES_DIR")):
    if root:
      path = os.path.join(root, "posthaste", "deploy", "fail2ban", "filter.d", "posthaste.conf")
      if os.path.exists(path):
        return path
  raise AssertionError("deploy/fail2ban/filter.d/posthaste.conf not in the runfiles")


class Pop3Client:
  """A bare POP3 client on a socket bound to `source` (a loopback address)."""

  def __init__(self, port, source):
    self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    self.sock.settimeout(IO_TIMEOUT_S)
    self.sock.bind((source, 0))
    self.sock.connect(("127.0.0.1", port))
    self.buffer = b""
    greeting = self.line()
    if not greeting.startswith(b"+OK"):
      raise AssertionError("greeting %r" % greeting)

  def line(self):
    while b"\r\n" not in self.buffer:
      chunk = self.sock.recv(4096)
      if not chunk:
        raise AssertionError("connection closed; had %r" % self.buffer)
      self.buffer += chunk
    line, self.buffer = self.buffer.split(b"\r\n", 1)
    return line

  def command(self, text):
    self.sock.sendall(text.encode() + b"\r\n")
    return self.line()

  def timed_login(self, user, password):
    """(reply to PASS, seconds from sending PASS to the reply)."""
    reply = self.command("USER " + user)
    if not reply.startswith(b"+OK"):
      raise AssertionError("USER answered %r" % reply)
    started = time.monotonic()
    reply = self.command("PASS " + password)
    return reply, time.monotonic() - started

  def close(self):
    self.sock.close()


def timed_failure(port, source, user):
  client = Pop3Client(port, source)
  try:
    reply, waited = client.timed_login(user, "wrong password")
  finally:
    client.close()
  if not reply.startswith(b"-ERR [AUTH]"):
    raise AssertionError("a wrong password answered %r" % reply)
  return waited


def local_failures(server):
  return metric_sum(server.metrics(), "posthaste_auth_penalty_failures_total", origin="local")


class AuthPenaltyTest(unittest.TestCase):

  def test_one_address_is_slowed_to_the_cap_while_another_logs_in_at_once(self):
    server = PosthasteServer(
        shards=2,
        extra_args=["--auth_failure_delay_ms=%d" % BASE_MS,
                    "--auth_penalty_delay_max_ms=%d" % CAP_MS,
                    "--trusted_networks=192.0.2.0/24"])
    server.add_user(USER, PASSWORD)
    with server:
      port = server.pop3_port
      # 1. The first failures, one by one: each waits twice the one before.
      first = [timed_failure(port, ATTACKER, "guess%d@example.test" % i)
               for i in range(MEASURED_FIRST)]
      print("127.0.0.2 failures 1-%d waited %s s" %
            (MEASURED_FIRST, ", ".join("%.2f" % d for d in first)))
      for i, waited in enumerate(first):
        expected = BASE_MS / 1000 * 2**i
        self.assertGreaterEqual(waited, expected * 0.9, "failure %d" % (i + 1))
        self.assertLess(waited, expected + 5, "failure %d" % (i + 1))

      # 2. Failures whose clients do not wait for the answer count all the same.
      for i in range(MEASURED_FIRST, FAILURES - 1):
        client = Pop3Client(port, ATTACKER)
        self.assertTrue(client.command("USER hangup%d@example.test" % i).startswith(b"+OK"))
        client.sock.sendall(b"PASS wrong password\r\n")
        client.close()
      wait_for(lambda: local_failures(server) >= FAILURES - 1, timeout_s=60,
               what="the hung-up failures to be counted")

      # 3. The 50th failure, while 127.0.0.3 logs in.
      fiftieth = {}

      def attack():
        fiftieth["waited"] = timed_failure(port, ATTACKER, "guess-last@example.test")

      attacker = threading.Thread(target=attack)
      attacker.start()
      time.sleep(0.5)  # the attacker's PASS is out
      client = Pop3Client(port, BYSTANDER)
      reply, login_s = client.timed_login(USER, PASSWORD)
      self.assertTrue(reply.startswith(b"+OK"), reply)
      self.assertTrue(client.command("STAT").startswith(b"+OK"))
      self.assertTrue(client.command("QUIT").startswith(b"+OK"))
      client.close()
      bystander_failure_s = timed_failure(port, BYSTANDER, "typo@example.test")
      self.assertTrue(attacker.is_alive(), "127.0.0.3's logins should end while 127.0.0.2 waits")
      attacker.join(timeout=CAP_MS / 1000 + 30)
      self.assertFalse(attacker.is_alive())
      print("127.0.0.2 failure %d waited %.2f s (cap %.1f s)" %
            (FAILURES, fiftieth["waited"], CAP_MS / 1000))
      print("127.0.0.3 meanwhile: login %.3f s, a failure %.2f s" % (login_s, bystander_failure_s))
      self.assertGreaterEqual(fiftieth["waited"], 10)
      self.assertLess(fiftieth["waited"], CAP_MS / 1000 + 10)
      self.assertLess(login_s, 5, "127.0.0.3's login was delayed")
      self.assertLess(bystander_failure_s, 5, "127.0.0.3's failure got 127.0.0.2's penalty")

      # 4. A success from 127.0.0.2 clears its penalty (on every shard).
      client = Pop3Client(port, ATTACKER)
      reply, _ = client.timed_login(USER, PASSWORD)
      self.assertTrue(reply.startswith(b"+OK"), reply)
      client.command("QUIT")
      client.close()
      after_reset_s = timed_failure(port, ATTACKER, "after-reset@example.test")
      print("127.0.0.2 failure after its successful login waited %.2f s" % after_reset_s)
      self.assertLess(after_reset_s, 5)

      samples = server.metrics()
      penalised = metric_sum(samples, "posthaste_auth_penalised_failures_total")
      peer = metric_sum(samples, "posthaste_auth_penalty_failures_total", origin="peer")
      resets = metric_sum(samples, "posthaste_auth_penalty_resets_total")
      tracked = [v for name, labels, v in samples
                 if name == "posthaste_auth_penalty_entries" and labels.get("table") == "address"]
      print("metrics: penalised %d, peer failures %d, resets %d, addresses tracked per shard %s"
            % (penalised, peer, resets, tracked))
      self.assertGreaterEqual(penalised, FAILURES - 1)
      self.assertGreaterEqual(peer, FAILURES)  # each failure reached the other shard
      self.assertGreaterEqual(resets, 1)
      self.assertEqual(len(tracked), 2)
      self.assertTrue(all(v >= 1 for v in tracked), tracked)
    self.check_log_and_fail2ban(server)

  def check_log_and_fail2ban(self, server):
    lines = [l for l in server.stderr_text().splitlines() if '"auth failed"' in l]
    by_host = {}
    shards = set()
    for line in lines:
      host = line.split(" rhost=", 1)[1].split(" ", 1)[0]
      by_host[host] = by_host.get(host, 0) + 1
      if host == ATTACKER:
        shards.add(line.split(" shard=", 1)[1].split(" ", 1)[0])
    print("log: %d failure lines %s; 127.0.0.2's on shards %s" %
          (len(lines), by_host, sorted(shards)))
    self.assertEqual(by_host, {ATTACKER: FAILURES + 1, BYSTANDER: 1})
    self.assertEqual(shards, {"0", "1"})  # both shards served the attacker
    log = os.path.join(make_temp_dir("penalty-log-"), "posthaste.log")
    with open(log, "w") as f:
      f.write(server.stderr_text())
    result = subprocess.run(["fail2ban-regex", "-o", "ip", log, filter_path()],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                            check=False)
    output = result.stdout.decode("utf-8", "replace")
    self.assertEqual(result.returncode, 0, output)
    matched = output.split()
    self.assertEqual(sorted(matched), sorted([ATTACKER] * (FAILURES + 1) + [BYSTANDER]), output)
    print("fail2ban-regex matched %d lines: %d x %s, %d x %s" %
          (len(matched), matched.count(ATTACKER), ATTACKER, matched.count(BYSTANDER), BYSTANDER))


if __name__ == "__main__":
  unittest.main()
