"""The backend's entry in the placement directory (--etcd_endpoints) with the real binary and a
real 3-member etcd cluster, read back with the real etcdctl.

Shows: once `posthaste serve` is listening, /posthaste/backends/NAME holds its advertised
address and the ports its listeners got, under a lease that it keeps alive past the TTL; on
SIGTERM the entry is gone at once (the lease revoked, not left to expire); a server killed with
SIGKILL leaves its entry only until the lease's TTL runs out. Without --etcd_endpoints nothing
is written.
"""

import json
import signal
import time
import unittest

from tests.testing.etcd_cluster import EtcdCluster
from tests.testing.posthaste_server import PosthasteServer, wait_for

TTL_S = 2
KEY = "/posthaste/backends/b1"


class EtcdRegistrationTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.etcd = EtcdCluster(members=3).start()

  @classmethod
  def tearDownClass(cls):
    cls.etcd.stop()

  def server(self, *extra):
    return PosthasteServer(extra_args=[
        "--etcd_endpoints=" + self.etcd.endpoints_flag, "--advertise_ip=127.0.0.1",
        "--backend_name=b1", "--etcd_lease_ttl_s=%d" % TTL_S, *extra
    ])

  def test_registered_while_ready_withdrawn_on_drain(self):
    server = self.server("--drain_delay_s=2")
    server.start()
    try:
      wait_for(lambda: self.etcd.get(KEY) is not None, timeout_s=10,
               what="the backend's entry in etcd")
      entry = json.loads(self.etcd.get(KEY))
      self.assertEqual(entry["ip"], "127.0.0.1")
      self.assertEqual(entry["pop3"], server.pop3_port)
      self.assertEqual(entry["lmtp"], server.lmtp_port)
      # Kept alive well past its TTL.
      time.sleep(TTL_S * 2 + 1)
      self.assertIsNotNone(self.etcd.get(KEY))
      # SIGTERM: withdrawn at the start of the drain, while the listeners still accept.
      server.terminate()
      wait_for(lambda: self.etcd.get(KEY) is None, timeout_s=1.5,
               what="the entry to go at once on SIGTERM (before the 2 s drain delay ends)")
      self.assertTrue(server.running())
      server.wait_exit()
    finally:
      if server.running():
        server._kill()

  def test_killed_server_entry_expires_by_the_ttl(self):
    server = self.server()
    server.start()
    wait_for(lambda: self.etcd.get(KEY) is not None, timeout_s=10,
             what="the backend's entry in etcd")
    server.send_signal(signal.SIGKILL)
    server._proc.wait(10)
    server._kill()
    # Nobody revoked it: it lasts until the lease runs out.
    self.assertIsNotNone(self.etcd.get(KEY))
    wait_for(lambda: self.etcd.get(KEY) is None, timeout_s=TTL_S + 10,
             what="the entry to expire with its lease")

  def test_nothing_written_without_etcd_endpoints(self):
    before = self.etcd.etcdctl("get", "/posthaste/", "--prefix", "--keys-only")
    with PosthasteServer() as server:
      self.assertIsNotNone(server.pop3_port)
    self.assertEqual(self.etcd.etcdctl("get", "/posthaste/", "--prefix", "--keys-only"), before)


if __name__ == "__main__":
  unittest.main()
