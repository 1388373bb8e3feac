"""EXPIRE n (RFC 2449) kept by the retention job, against the real server with poplib and curl.

Shows: messages a client retrieved with RETR (poplib, curl) and then QUIT are deleted once n days
have passed since that retrieval, on a clock the test controls (`posthaste store expire
--now=...` through the running server's admin socket), while messages never retrieved, messages
of a tenant with EXPIRE NEVER and a pass one day early delete nothing; STAT and UIDL show it. A
mailbox that a POP3 session holds is skipped (and counted in posthaste_retention_*), and cleaned
on the next pass after that session's QUIT.
"""

import poplib
import shutil
import subprocess
import time
import unittest

from tests.testing.posthaste_server import PosthasteServer

TIMEOUT_S = 60
DAY_S = 86400
PASSWORD = "expire password"
ANN = "ann@keep.test"
BOB = "bob@keep.test"
CAT = "cat@never.test"


def message(subject):
  return ("From: sender@example.org\r\nSubject: %s\r\n\r\nbody of %s\r\n" %
          (subject, subject)).encode()


class RetentionExpireTest(unittest.TestCase):

  def setUp(self):
    # No background pass: the test's own passes are the only ones (and no login meets a lock).
    self.server = PosthasteServer(extra_args=["--retention_period_s=0"])
    self.addCleanup(self.server.stop)
    for user in (ANN, BOB, CAT):
      self.server.add_user(user, PASSWORD)
    self.server.run_cli(["tenant", "policy"], ["keep.test", "--expire_days=3"])
    self.server.run_cli(["tenant", "policy"], ["never.test", "--expire_days=never"])
    self.uidls = {}
    for user, count in ((ANN, 3), (BOB, 2), (CAT, 2)):
      self.uidls[user] = [self.server.deliver(user, message("%s %d" % (user, i)))
                          for i in range(count)]
    self.server.start()

  def pop(self, user):
    client = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    client.user(user)
    client.pass_(PASSWORD)
    return client

  def uidl_list(self, user):
    client = self.pop(user)
    try:
      return [line.split()[1].decode() for line in client.uidl()[1]]
    finally:
      client.quit()

  def expire(self, now):
    """One pass at unix time `now`, through the running server's admin socket."""
    result = subprocess.run([self.server.binary, "store", "expire",
                             "--data_dir=" + self.server.data_dir, "--now=%d" % now],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S,
                            check=False)
    self.assertEqual(result.returncode, 0, result.stderr)
    return result.stdout.decode()

  def metric(self, name, **labels):
    for sample_name, sample_labels, value in self.server.metrics():
      if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()):
        return value
    return None

  def test_retrieved_messages_expire_n_days_after_retrieval(self):
    # ann retrieves messages 1 and 2 with poplib; bob message 1 with curl; cat everything.
    client = self.pop(ANN)
    client.retr(1)
    client.retr(2)
    client.retr(2)
    client.quit()
    curl = shutil.which("curl") or "/usr/bin/curl"
    fetched = subprocess.run(
        [curl, "--silent", "--show-error", "--max-time", str(TIMEOUT_S), "--user",
         BOB + ":" + PASSWORD, "pop3://127.0.0.1:%d/1" % self.server.pop3_port],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=False)
    self.assertEqual(fetched.returncode, 0, fetched.stderr)
    self.assertIn(b"body of " + BOB.encode() + b" 0", fetched.stdout)
    client = self.pop(CAT)
    for number in (1, 2):
      client.retr(number)
    client.quit()
    retrieved_at = int(time.time())

    # Two days later: nothing has been kept for three days yet.
    out = self.expire(retrieved_at + 2 * DAY_S)
    self.assertIn("expired 0 messages", out)
    self.assertEqual(self.uidl_list(ANN), self.uidls[ANN])

    out = self.expire(retrieved_at + 3 * DAY_S + 60)
    self.assertIn("expired 3 messages", out)
    self.assertEqual(self.uidl_list(ANN), self.uidls[ANN][2:])  # never retrieved: kept
    self.assertEqual(self.uidl_list(BOB), self.uidls[BOB][1:])
    self.assertEqual(self.uidl_list(CAT), self.uidls[CAT])  # EXPIRE NEVER
    client = self.pop(ANN)
    self.assertEqual(client.stat()[0], 1)
    client.quit()
    self.assertEqual(self.metric("posthaste_retention_messages_deleted_total"), 3)
    self.assertGreater(self.metric("posthaste_retention_deleted_bytes_total"), 0)
    # Idempotent: the same pass again deletes nothing.
    self.assertIn("expired 0 messages", self.expire(retrieved_at + 3 * DAY_S + 60))

  def test_a_mailbox_held_by_a_session_is_skipped_then_cleaned_after_quit(self):
    client = self.pop(ANN)
    for number in (1, 2, 3):
      client.retr(number)
    client.quit()
    later = int(time.time()) + 4 * DAY_S

    holder = self.pop(ANN)  # logged in: holds the maildrop (and a snapshot of it)
    try:
      self.assertEqual(holder.stat()[0], 3)
      out = self.expire(later)
      self.assertIn("expired 0 messages", out)
      self.assertIn("skipped 1 accounts in use", out)
      self.assertEqual(
          self.metric("posthaste_retention_accounts_skipped_total", reason="in_use"), 1)
      # The session's view is intact: every message it listed can still be read.
      self.assertEqual(len(holder.retr(3)[1]) > 0, True)
    finally:
      holder.quit()

    out = self.expire(later)
    self.assertIn("expired 3 messages", out)
    self.assertIn("skipped 0 accounts in use", out)
    self.assertEqual(self.uidl_list(ANN), [])


if __name__ == "__main__":
  unittest.main()
