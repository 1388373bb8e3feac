"""--pin_shards against the real binary: each shard thread pins itself to one CPU by default;
with --pin_shards=false every thread keeps the process's CPU set (what a pod in Kubernetes'
shared CPU pool needs: pinning there would put every pod's shards on the node's first CPUs).

Read from /proc/PID/task/*/status (Cpus_allowed_list). Needs at least two allowed CPUs to tell
the two apart; on one CPU the test says so and is skipped.
"""

import os
import unittest

from tests.testing.posthaste_server import PosthasteServer


def thread_cpu_lists(pid):
  """Cpus_allowed_list of every thread of `pid`."""
  lists = []
  for tid in os.listdir("/proc/%d/task" % pid):
    try:
      with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
        for line in f:
          if line.startswith("Cpus_allowed_list:"):
            lists.append(line.split(":", 1)[1].strip())
    except FileNotFoundError:  # a thread that ended meanwhile
      pass
  return lists


def single_cpu(cpu_list):
  return cpu_list.isdigit()


class PinShardsTest(unittest.TestCase):

  def setUp(self):
    if len(os.sched_getaffinity(0)) < 2:
      self.skipTest("skip: one allowed CPU, pinned and unpinned threads look the same")

  def cpu_lists_while_serving(self, extra_args):
    with PosthasteServer(shards=2, extra_args=extra_args) as server:
      return thread_cpu_lists(server._proc.pid)

  def test_pinned_by_default(self):
    lists = self.cpu_lists_while_serving([])
    self.assertEqual(sum(1 for cpus in lists if single_cpu(cpus)), 2, lists)

  def test_not_pinned_when_asked(self):
    lists = self.cpu_lists_while_serving(["--pin_shards=false"])
    self.assertFalse(any(single_cpu(cpus) for cpus in lists), lists)


if __name__ == "__main__":
  unittest.main()
