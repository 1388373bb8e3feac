"""The tenant's daily download limit and listing cap against the real binary (2 shards), with
Python's poplib and curl.

Shows:
- `tenant policy --daily_download_bytes=N`: RETR is counted across two sessions that land on
  different shards (each connection's shard is read from the server's "auth failed" log line of
  a wrong password sent on it first); over the limit RETR and TOP answer `-ERR [SYS/TEMP]` and
  the session goes on (STAT, LIST, QUIT); the count survives a restart (poplib and curl refused
  after it); another tenant's user is not limited.
- `tenant policy --list_newest=N`: STAT, LIST and UIDL show only the newest N messages numbered
  from 1 (curl's LIST too); RETR 1 is the (N-1)th newest; DELE 1 + QUIT deletes exactly that
  message, and the older one comes into view.
"""

import poplib
import re
import shutil
import subprocess
import unittest

from tests.testing.posthaste_server import PosthasteServer, wait_for

PASSWORD = "download password"
LIMITED = "dl@limited.test"
FREE = "free@free.test"
CAPPED = "cap@capped.test"
TIMEOUT_S = 20
BODY_LINES = 20  # each message: a subject line and this many 60-octet body lines


def message(n):
  body = "".join("line %02d of message %d %s\r\n" % (i, n, "x" * 40) for i in range(BODY_LINES))
  return ("Subject: message %d\r\n\r\n%s" % (n, body)).encode("ascii")


def open_connections(server, count):
  """`count` poplib connections, each with the shard that accepted it (from the log line of a
  wrong password sent on it; the connection stays in AUTHORIZATION)."""
  connections = []
  for i in range(count):
    client = poplib.POP3("127.0.0.1", server.pop3_port, timeout=TIMEOUT_S)
    probe = "probe-%d@limited.test" % i
    client.user(probe)
    try:
      client.pass_("wrong")
    except poplib.error_proto:
      pass
    else:
      raise AssertionError("a wrong password was accepted")
    pattern = re.compile(r'"auth failed".* user=%s .*shard=(\d+)' % re.escape(probe))

    def shard_logged():
      return pattern.search(server.stderr_text())

    wait_for(shard_logged, timeout_s=10, what="the auth failed line of " + probe)
    connections.append((client, int(shard_logged().group(1))))
  return connections


def login(client, user):
  client.user(user)
  client.pass_(PASSWORD)


class TenantDownloadLimitTest(unittest.TestCase):

  def setUp(self):
    self.server = PosthasteServer(
        shards=2,
        extra_args=["--auth_failure_delay_ms=1", "--auth_penalty_delay_max_ms=20"])
    for user in (LIMITED, FREE, CAPPED):
      self.server.add_user(user, PASSWORD)
    self.uidls = {user: [] for user in (LIMITED, FREE, CAPPED)}
    for n in range(1, 6):
      for user in (LIMITED, FREE, CAPPED):
        self.uidls[user].append(self.server.deliver(user, message(n)))

  def tearDown(self):
    self.server.stop()

  def message_octets(self):
    client = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    login(client, FREE)
    octets = int(client.list(1).split()[2])
    client.quit()
    return octets

  def test_daily_limit_across_shards_and_a_restart(self):
    self.server.start()
    size = self.message_octets()
    self.server.stop()
    # Two messages and a half: the third RETR of the day is refused.
    self.server.run_cli(["tenant", "policy"],
                        ["limited.test", "--daily_download_bytes=%d" % (2 * size + size // 2)])
    self.server.start()

    connections = open_connections(self.server, 12)
    shards = {}
    for client, shard in connections:
      shards.setdefault(shard, client)
    print("probe connections by shard: %s" % sorted(s for _, s in connections))
    self.assertEqual(set(shards), {0, 1}, "no connection landed on one of the shards")

    # Session 1, on shard 0: one message.
    first = shards[0]
    login(first, LIMITED)
    self.assertEqual(len(b"\r\n".join(first.retr(1)[1])) + 2, size)
    first.quit()

    # Session 2, on shard 1: the second message fits, the third does not; the session goes on.
    second = shards[1]
    login(second, LIMITED)
    second.retr(2)
    with self.assertRaises(poplib.error_proto) as refused:
      second.retr(3)
    print("over the limit: %r" % refused.exception.args[0])
    self.assertTrue(refused.exception.args[0].startswith(b"-ERR [SYS/TEMP] Daily download limit"))
    with self.assertRaises(poplib.error_proto):
      second.top(3, 0)
    self.assertEqual(second.stat()[0], 5)
    self.assertTrue(second.quit().startswith(b"+OK"))
    for client, _ in connections:
      if client is not first and client is not second:
        client.close()

    refusals = sum(v for name, labels, v in self.server.metrics()
                   if name == "posthaste_pop3_download_refusals_total")
    self.assertEqual(refusals, 2)

    # Another tenant's user downloads as much as it likes.
    free = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    login(free, FREE)
    for n in range(1, 6):
      free.retr(n)
    free.quit()

    # After a restart the day's count is still there: poplib and curl are refused.
    self.server.stop()
    self.server.start()
    again = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    login(again, LIMITED)
    with self.assertRaises(poplib.error_proto) as after_restart:
      again.retr(4)
    self.assertTrue(after_restart.exception.args[0].startswith(b"-ERR [SYS/TEMP]"))
    again.quit()
    curl = self.curl("/1", LIMITED)
    print("curl after the restart: exit %d, %s" %
          (curl.returncode, curl.stderr.decode("utf-8", "replace").strip()))
    self.assertNotEqual(curl.returncode, 0)
    self.assertEqual(curl.stdout, b"")
    self.assertEqual(self.curl("/1", FREE).returncode, 0)

  def test_listing_cap_shows_the_newest_and_deletes_what_was_shown(self):
    self.server.run_cli(["tenant", "policy"], ["capped.test", "--list_newest=2"])
    self.server.start()
    uidls = self.uidls[CAPPED]
    client = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    login(client, CAPPED)
    size = int(client.list(1).split()[2])
    self.assertEqual(client.stat(), (2, 2 * size))
    self.assertEqual(len(client.list()[1]), 2)
    self.assertEqual(client.uidl()[1],
                     [b"1 " + uidls[3].encode(), b"2 " + uidls[4].encode()])
    self.assertIn(b"Subject: message 4", client.retr(1)[1])
    self.assertIn(b"Subject: message 5", client.top(2, 0)[1])
    with self.assertRaises(poplib.error_proto):
      client.retr(3)
    client.dele(1)
    client.quit()

    curl = self.curl("/", CAPPED)
    self.assertEqual(curl.returncode, 0, curl.stderr)
    self.assertEqual(curl.stdout, b"1 %d\r\n2 %d\r\n" % (size, size))
    after = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    login(after, CAPPED)
    self.assertEqual(after.uidl()[1], [b"1 " + uidls[2].encode(), b"2 " + uidls[4].encode()])
    after.quit()
    self.server.stop()
    self.assertEqual(self.server.mailbox_stats(CAPPED)[0], 4)

  def curl(self, path, user):
    curl = shutil.which("curl") or "/usr/bin/curl"
    return subprocess.run(
        [curl, "--silent", "--show-error", "--max-time", str(TIMEOUT_S), "--user",
         "%s:%s" % (user, PASSWORD), "pop3://127.0.0.1:%d%s" % (self.server.pop3_port, path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S + 10, check=False)


if __name__ == "__main__":
  unittest.main()
