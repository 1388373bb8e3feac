"""The password verification cache survives a restart without touching a disk.

The test plays systemd's part: a notify socket ($NOTIFY_SOCKET) that receives the sealed
memfd the server stores at exit (sd_notify FDSTORE=1), and the next start with that descriptor
at fd 3 (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), as systemd's file descriptor store does.
Shows: after SIGUSR2 the server drains and exits 75 (the unit restarts it), handing the cache
over; the next process takes it over and every user it had verified logs in from the cache
(posthaste_pop3_auth_cache_hits_total, no cold verification), while a changed password is not
answered from it; the blob was never a file (the descriptor is a sealed memfd); without the
hand-over every login after a restart is a cold one; a process that finds a malformed blob
starts cold and says so. The figures (wall time of the logins after each restart) are printed.
"""

import array
import fcntl
import os
import poplib
import signal
import socket
import time
import unittest

from tests.testing.posthaste_server import PosthasteServer, metric_sum

TIMEOUT_S = 60
USERS = ["user%02d@handoff.test" % i for i in range(20)]
F_GET_SEALS = 1034


def receive_fd(sock):
  """One notification: (text, descriptor or None)."""
  fds = array.array("i")
  message, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
  for level, kind, data in ancillary:
    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
      fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
  return message.decode(), (fds[0] if fds else None)


class AuthCacheHandoffTest(unittest.TestCase):

  def setUp(self):
    self.notify_path = "/tmp/posthaste-handoff-test-%d" % os.getpid()
    if os.path.exists(self.notify_path):
      os.unlink(self.notify_path)
    self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    self.notify.bind(self.notify_path)
    self.notify.settimeout(TIMEOUT_S)
    self.addCleanup(self.notify.close)
    self.addCleanup(os.unlink, self.notify_path)
    self.server = PosthasteServer(extra_args=["--auth_cache_ttl_s=3600",
                                              "--auth_failure_delay_ms=10"])
    for user in USERS:
      self.server.add_user(user, "password of " + user)
    self.env = {"NOTIFY_SOCKET": self.notify_path}

  def tearDown(self):
    if self.server.running():
      self.server.stop()

  def login_all(self, password_of=lambda user: "password of " + user):
    started = time.monotonic()
    for user in USERS:
      pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
      pop.user(user)
      pop.pass_(password_of(user))
      pop.quit()
    return time.monotonic() - started

  def cache_hits(self):
    return metric_sum(self.server.metrics(), "posthaste_pop3_auth_cache_hits_total")

  def restart_with_handoff(self):
    """SIGUSR2, exit 75, the stored descriptor back at the next start; returns the memfd."""
    self.server.send_signal(signal.SIGUSR2)
    text, fd = receive_fd(self.notify)
    self.server.wait_exit(expected_status=75)
    self.assertEqual(text, "FDSTORE=1\nFDNAME=posthaste-auth-cache")
    self.assertIsNotNone(fd)
    self.addCleanup(os.close, fd)
    return fd

  def test_verified_users_log_in_from_the_cache_after_a_restart(self):
    self.server.start(env=self.env)
    cold = self.login_all()
    self.assertEqual(self.cache_hits(), 0)
    fd = self.restart_with_handoff()
    # A sealed memfd, not a file on any disk.
    self.assertTrue(os.readlink("/proc/self/fd/%d" % fd).startswith("/memfd:posthaste-auth-cache"))
    self.assertNotEqual(fcntl.fcntl(fd, F_GET_SEALS), 0)

    self.server.start(env=self.env, listen_fd=(fd, "posthaste-auth-cache"))
    self.assertIn('"auth cache taken over" entries=%d' % len(USERS), self.server.stderr_text())
    text, _ = receive_fd(self.notify)  # the new process tells systemd to drop its copy
    self.assertEqual(text, "FDSTOREREMOVE=1\nFDNAME=posthaste-auth-cache")
    warm = self.login_all()
    self.assertEqual(self.cache_hits(), len(USERS))
    print("\n%d logins: %.3f s cold before the restart, %.3f s after it with the hand-over" %
          (len(USERS), cold, warm))

    # A password changed meanwhile is never answered from the handed-over entry.
    self.server.stop()
    self.server.run_cli(["user", "passwd"], [USERS[0]], stdin=b"a new password\n")
    self.server.start(env=self.env)
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    pop.user(USERS[0])
    with self.assertRaises(poplib.error_proto):
      pop.pass_("password of " + USERS[0])
    pop.close()

  def test_without_the_handoff_every_login_is_cold_and_bad_blobs_start_cold(self):
    self.server.start(env=self.env)
    self.login_all()
    self.server.stop()  # SIGTERM: still handed over (systemd drops it on a plain stop)
    receive_fd(self.notify)
    self.server.start()
    elapsed = self.login_all()
    self.assertEqual(self.cache_hits(), 0)
    print("\n%d logins after a restart without the hand-over: %.3f s" % (len(USERS), elapsed))
    self.server.stop()

    bad = os.memfd_create("posthaste-auth-cache")
    self.addCleanup(os.close, bad)
    os.write(bad, b"PHAUTHCACHE1\nnot a cache")
    self.server.start(listen_fd=(bad, "posthaste-auth-cache"))
    self.assertIn("auth cache hand-over refused, starting cold", self.server.stderr_text())
    self.login_all()
    self.assertEqual(self.cache_hits(), 0)


if __name__ == "__main__":
  unittest.main()
