"""The re-download alarm on a real `posthaste serve`, with poplib as the client.

With --redownload_alarm_percent=50 and --redownload_alarm_messages_min=20: a session that
retrieves more than half of a 40-message mailbox is logged once ("redownload alarm", with
tenant, user, messages retrieved of the total and bytes) and counted once in
posthaste_pop3_redownload_sessions_total for its tenant, even when it retrieves more after the
threshold; a session that retrieves a quarter of it, and one that retrieves all of a
10-message mailbox (below the minimum), raise nothing.
"""

import json
import mailbox
import os
import poplib
import subprocess
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, metric_sum

PASSWORD = "redownload password"
TIMEOUT_S = 60
LARGE = "large@big.test"
SMALL = "small@big.test"
COUNTER = "posthaste_pop3_redownload_sessions_total"


def write_mbox(path, count):
  box = mailbox.mbox(path)
  for n in range(count):
    box.add("From: s@example.org\nSubject: m%d\n\n%s" % (n, "body line %d\n" % n * 20))
  box.flush()
  box.close()


class RedownloadAlarmTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer(shards=2, extra_args=[
        "--log_format=json", "--redownload_alarm_percent=50",
        "--redownload_alarm_messages_min=20"])
    directory = make_temp_dir("redownload-")
    for user, count in ((LARGE, 40), (SMALL, 10)):
      cls.server.add_user(user, PASSWORD)
      path = os.path.join(directory, user + ".mbox")
      write_mbox(path, count)
      subprocess.run([cls.server.binary, "import", "mbox", "--data_dir=" + cls.server.data_dir,
                      user, path], check=True, stdout=subprocess.DEVNULL, timeout=TIMEOUT_S)
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def retrieve(self, user, numbers):
    """RETRs `numbers` in one session; returns the octets of the messages retrieved."""
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    pop.user(user)
    pop.pass_(PASSWORD)
    octets = sum(pop.retr(n)[2] for n in numbers)
    pop.quit()
    return octets

  def alarms(self):
    lines = []
    for line in self.server.stderr_text().splitlines():
      if line.startswith("{"):
        entry = json.loads(line)
        if entry["msg"] == "redownload alarm":
          lines.append(entry)
    return lines

  def counter(self):
    return metric_sum(self.server.metrics(), COUNTER, tenant="big.test")

  def test_alarm_once_per_session_and_only_past_the_share_of_a_large_mailbox(self):
    self.assertEqual(self.counter(), 0)
    # A quarter of the large mailbox, and all of the small one: nothing.
    self.retrieve(LARGE, range(1, 11))
    self.retrieve(SMALL, range(1, 11))
    self.assertEqual(self.counter(), 0)
    self.assertEqual(self.alarms(), [])
    # Most of the large mailbox, some messages twice: one alarm, at the 21st distinct message.
    self.retrieve(LARGE, list(range(1, 6)) + list(range(1, 36)))
    self.assertEqual(self.counter(), 1)
    alarms = self.alarms()
    self.assertEqual(len(alarms), 1, alarms)
    alarm = alarms[0]
    self.assertEqual(alarm["tenant"], "big.test")
    self.assertEqual(alarm["user"], LARGE)
    self.assertEqual(alarm["retrieved"], "21")
    self.assertEqual(alarm["messages"], "40")
    self.assertGreater(int(alarm["retrieved_bytes"]), 0)
    self.assertGreater(int(alarm["mailbox_bytes"]), int(alarm["retrieved_bytes"]))
    self.assertRegex(alarm["session"], r"^\d+-\d+$")
    # Another session past the share counts again.
    self.retrieve(LARGE, range(1, 41))
    self.assertEqual(self.counter(), 2)
    self.assertEqual(len(self.alarms()), 2)


if __name__ == "__main__":
  unittest.main()
