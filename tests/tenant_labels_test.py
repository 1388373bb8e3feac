"""Tenant metric labels follow tenants, on a real `posthaste serve` scraped over HTTP.

With --metrics_max_tenants=2 and --metrics_tenants_recompute_s=1: a tenant created while the
server runs gets its own `tenant` label after its first sessions, without a restart; the
"other" series it counted in before never goes down; and once more tenants log in, only the
two largest by sessions count under their own labels (the rest, including the tenant labelled
at start-up by accounts, count as "other", while its old series keeps its value).
"""

import poplib
import subprocess
import unittest

from tests.testing.posthaste_server import PosthasteServer, metric_sum, wait_for

PASSWORD = "labels password"
TIMEOUT_S = 30
SESSIONS = "posthaste_pop3_sessions_total"


class TenantLabelsTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer(shards=2, extra_args=[
        "--metrics_max_tenants=2", "--metrics_tenants_recompute_s=1"])
    for user in ("a@big.test", "b@big.test"):
      cls.server.add_user(user, PASSWORD)
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def add_user_online(self, user):
    """`posthaste user add` while serving (through DIR/admin.sock)."""
    subprocess.run([self.server.binary, "user", "add", "--data_dir=" + self.server.data_dir, user],
                   input=PASSWORD.encode() + b"\n", check=True, stdout=subprocess.DEVNULL,
                   timeout=TIMEOUT_S)

  def session(self, user):
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    pop.user(user)
    pop.pass_(PASSWORD)
    pop.stat()
    pop.quit()

  def logouts(self):
    """{tenant label: logout sessions} on a fresh scrape."""
    counts = {}
    for name, labels, value in self.server.metrics():
      if name == SESSIONS and labels.get("outcome") == "logout":
        counts[labels["tenant"]] = counts.get(labels["tenant"], 0) + value
    return counts

  def wait_for_label(self, tenant):
    wait_for(lambda: tenant in self.logouts(), timeout_s=20, what="label %s" % tenant,
             poll_s=0.2)

  def test_labels_follow_tenants_within_the_bound(self):
    # At start-up: the tenant with accounts has its label, nothing else.
    self.assertEqual(set(self.logouts()), {"other", "none", "big.test"})

    # A tenant created while serving: its first session counts as "other", then it gets its
    # own label without a restart.
    self.add_user_online("u@fresh.test")
    self.session("u@fresh.test")
    self.assertEqual(self.logouts()["other"], 1)
    self.wait_for_label("fresh.test")
    labelled = self.logouts()
    self.assertEqual(labelled["other"], 1)  # kept, never down
    self.assertEqual(labelled["fresh.test"], 0)  # a new series, starting at 0
    self.session("u@fresh.test")
    after = self.logouts()
    self.assertEqual(after["fresh.test"], 1)
    self.assertEqual(after["other"], 1)

    # Two more tenants: one.test becomes the largest (3 sessions), two.test the smallest with
    # sessions (1); big.test has none, so with a bound of 2 the labels are one.test and
    # fresh.test.
    for user in ("u@one.test", "u@two.test"):
      self.add_user_online(user)
    for user in ("u@one.test", "u@one.test", "u@one.test", "u@two.test"):
      self.session(user)
    self.wait_for_label("one.test")
    before = self.logouts()
    self.assertNotIn("two.test", before)
    for user in ("u@one.test", "u@fresh.test", "u@two.test", "a@big.test"):
      self.session(user)
    now = self.logouts()
    self.assertEqual(now["one.test"], before["one.test"] + 1)
    self.assertEqual(now["fresh.test"], before["fresh.test"] + 1)
    # two.test and big.test are outside the bound: both count as "other", and big.test's own
    # series (from start-up) stays where it was.
    self.assertNotIn("two.test", now)
    self.assertEqual(now["big.test"], before["big.test"])
    self.assertEqual(now["other"], before["other"] + 2)
    for tenant, value in before.items():
      self.assertGreaterEqual(now[tenant], value, tenant)
    self.assertIn("tenant metric labels changed", self.server.stderr_text())


if __name__ == "__main__":
  unittest.main()
