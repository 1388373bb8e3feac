"""A login check still queued at its connection's login deadline is skipped, against the real
binary: Pop3ShardBackend::VerifyOffReactor wraps each check in reactor::UnlessExpired.

The server runs one shard with one CPU-pool thread (--offload_threads=1) and a 1 s login time
(--auth_timeout_s=1). Five users have sha512-crypt hashes at the server's maximum cost
(5,000,000 rounds: one check keeps the thread busy for about 1.6 s on the machines here; it
would take a core three times as fast to get under the 0.34 s this test needs). Five clients
connect and log in at once, so the checks queue behind each other on the one thread: the
fourth and fifth have waited at least three checks' time, past their 1 s deadline, when the
thread takes them.

Shows:
  - the first login succeeds (its check ran);
  - the fourth and fifth are answered -ERR [SYS/TEMP] without a hash (a clock read), the
    second and third either way;
  - posthaste_pop3_auth_checks_expired_total counts exactly the [SYS/TEMP] answers;
  - a skipped user logs in on a fresh connection afterwards (the refusal was temporary).
Without the wrapping, all five would wait for their hashes and log in. About 5 s.
"""

import socket
import threading
import time
import unittest

from tests.testing.posthaste_server import PosthasteServer, metric_sum

# sha512-crypt of "slow-password", salt "expirytestsalt", 5,000,000 rounds (the server's
# sha_crypt_rounds_max): made once with Python's crypt module.
SLOW_HASH = ("$6$rounds=5000000$expirytestsalt$W844KqlGRLUB9cLCJ85v3f0Wvbegzs4HEEyWEAONZz"
             "sncx9uk.uK7pTd6JOmCNiB0x8GMuz5GUwWrPmQsnYPJ0")
PASSWORD = "slow-password"
USERS = ["slow%d@example.test" % i for i in range(5)]
IO_TIMEOUT_S = 120


def read_line(sock, buffer):
  while b"\r\n" not in buffer[0]:
    chunk = sock.recv(4096)
    if not chunk:
      raise AssertionError("connection closed; got %r" % buffer[0])
    buffer[0] += chunk
  line, buffer[0] = buffer[0].split(b"\r\n", 1)
  return line


class Login:
  """One connection: greeting read at construction, then USER and PASS on request."""

  def __init__(self, port, user):
    self.user = user
    self.sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S)
    self.buffer = [b""]
    self.greeting = read_line(self.sock, self.buffer)
    self.reply = None

  def run(self):
    self.sock.sendall(b"USER %s\r\nPASS %s\r\n" % (self.user.encode(), PASSWORD.encode()))
    user_reply = read_line(self.sock, self.buffer)
    if not user_reply.startswith(b"+OK"):
      self.reply = b"USER: " + user_reply
      return
    self.reply = read_line(self.sock, self.buffer)

  def close(self):
    self.sock.close()


class AuthCheckExpiryTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer(
        shards=1,
        extra_args=[
            "--offload_threads=1",
            "--auth_timeout_s=1",
            "--lmtp_listen=off",
        ])
    for user in USERS:
      cls.server.run_cli(["user", "add"], ["--hash=" + SLOW_HASH, user])
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def expired_total(self):
    return metric_sum(self.server.metrics(), "posthaste_pop3_auth_checks_expired_total")

  def test_checks_queued_past_the_login_deadline_are_skipped(self):
    before = self.expired_total()
    # Connect all five first, so their deadlines (connect + 1 s) start together.
    logins = [Login(self.server.pop3_port, user) for user in USERS]
    for login in logins:
      self.assertTrue(login.greeting.startswith(b"+OK"), login.greeting)
    threads = []
    for login in logins:
      thread = threading.Thread(target=login.run)
      thread.start()
      threads.append(thread)
      time.sleep(0.05)  # queue in order: the first check starts before the others arrive
    for thread in threads:
      thread.join(IO_TIMEOUT_S)
    for login in logins:
      login.close()
    replies = [login.reply for login in logins]

    self.assertTrue(replies[0].startswith(b"+OK"), replies)
    for reply in replies[1:3]:
      self.assertTrue(reply.startswith((b"+OK", b"-ERR [SYS/TEMP]")), replies)
    for reply in replies[3:]:
      self.assertTrue(reply.startswith(b"-ERR [SYS/TEMP]"), replies)
    temporary = sum(1 for reply in replies if reply.startswith(b"-ERR [SYS/TEMP]"))
    self.assertEqual(self.expired_total() - before, temporary)

    # Temporary: the last user logs in now that the thread is free.
    again = Login(self.server.pop3_port, USERS[-1])
    again.run()
    again.close()
    self.assertTrue(again.reply.startswith(b"+OK"), again.reply)


if __name__ == "__main__":
  unittest.main()
