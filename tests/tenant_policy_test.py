"""Per-tenant service policy against the real posthaste binary (2 shards), with poplib, curl and
fetchmail.

Shows, with every setting changed through the admin socket while the server runs (so the test
also shows that new logins see a change at once, on both shards):
- CAPA before login announces the least LOGIN-DELAY and EXPIRE of all tenants with "USER"
  (RFC 2449: the value varies per user), and after login the user's own values.
- LOGIN-DELAY: a second login sooner than the tenant's delay, on either shard, gets
  -ERR [LOGIN-DELAY] (poplib and curl) and is counted; after the delay it succeeds; a user of a
  tenant without a delay logs in back to back.
- EXPIRE 0: what RETR sent is deleted at QUIT (poplib), and fetchmail told to keep its mail
  cannot leave it on the server; TOP alone deletes nothing.
- Login mechanisms: a tenant that allows only PLAIN refuses USER/PASS with the right password
  (-ERR [AUTH], counted, no failure penalty) and lets curl's AUTH=PLAIN in.
- Connections per user: the second concurrent login of a user limited to one is refused.
- Idle timeout: a tenant's shorter idle limit closes its idle sessions, not another tenant's.
"""

import os
import poplib
import shutil
import socket
import subprocess
import time
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import (PosthasteServer, make_temp_dir, metric_sum,
                                            read_mbox, wait_for, write_mbox_mda)

TIMEOUT_S = 60
PASSWORD = "policy password"
DELAY_S = 3

DELAYED = "dee@delay.test"
FREE = "fred@free.test"
EXPIRING = "eve@expire0.test"
FETCHED = "fetch@expire0.test"
PLAIN_ONLY = "pam@plainonly.test"
SINGLE = "sol@single.test"
IDLE = "ida@idle.test"


class TenantPolicyTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer(shards=2)
    for user in (DELAYED, FREE, EXPIRING, FETCHED, PLAIN_ONLY, SINGLE, IDLE):
      cls.server.add_user(user, PASSWORD)
    cls.mail = [raw for _, raw in messages.everyday_messages()[:3]]
    for user in (EXPIRING, FETCHED, FREE):
      for raw in cls.mail:
        cls.server.deliver(user, raw)
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def policy(self, domain, *flags):
    """`tenant policy` through the running server's admin socket."""
    result = subprocess.run(
        [self.server.binary, "tenant", "policy", "--data_dir=" + self.server.data_dir, domain,
         *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=False)
    self.assertEqual(result.returncode, 0, result.stderr.decode())
    return result.stdout.decode()

  def connect(self):
    return poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)

  def login(self, user):
    pop = self.connect()
    pop.user(user)
    pop.pass_(PASSWORD)
    return pop

  def capa_lines(self, pop):
    resp, lines, _ = pop._longcmd("CAPA")
    self.assertTrue(resp.startswith(b"+OK"), resp)
    return [line.decode() for line in lines]

  def refused(self, pop_call):
    with self.assertRaises(poplib.error_proto) as refusal:
      pop_call()
    return refusal.exception.args[0]

  def counter(self, name, **labels):
    return metric_sum(self.server.metrics(), name, **labels)

  def curl(self, user, *options):
    argv = [shutil.which("curl") or "/usr/bin/curl", "--silent", "--show-error", "--max-time",
            str(TIMEOUT_S), "--user", "%s:%s" % (user, PASSWORD), *options,
            "pop3://127.0.0.1:%d/" % self.server.pop3_port]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=TIMEOUT_S + 10, check=False)

  def test_capa_before_and_after_login(self):
    self.policy("delay.test", "--login_delay_s=%d" % DELAY_S)
    self.policy("expire0.test", "--expire_days=0")
    self.policy("free.test", "--expire_days=never")
    pop = self.connect()
    before = self.capa_lines(pop)
    # The least of all tenants: one without a delay counts as 0, EXPIRE 0 is expire0.test's.
    self.assertIn("LOGIN-DELAY 0 USER", before)
    self.assertIn("EXPIRE 0 USER", before)
    pop.user(FREE)
    pop.pass_(PASSWORD)
    after = self.capa_lines(pop)
    self.assertIn("EXPIRE NEVER", after)
    self.assertFalse([line for line in after if line.startswith("LOGIN-DELAY")], after)
    pop.quit()

  def test_login_delay(self):
    self.policy("delay.test", "--login_delay_s=%d" % DELAY_S)
    refusals_before = self.counter("posthaste_pop3_logins_refused_total", reason="login_delay")
    pop = self.login(DELAYED)
    self.assertIn("LOGIN-DELAY %d" % DELAY_S, self.capa_lines(pop))
    pop.quit()
    first_login = time.monotonic()
    # Several tries, so that both shards answer some: the delay is kept by the user's owner
    # shard whichever shard the connection lands on.
    tries = 0
    while time.monotonic() - first_login < DELAY_S - 1.5 and tries < 6:
      pop = self.connect()
      pop.user(DELAYED)
      answer = self.refused(lambda: pop.pass_(PASSWORD))
      self.assertTrue(answer.startswith(b"-ERR [LOGIN-DELAY]"), answer)
      # The session goes on in AUTHORIZATION: QUIT is answered.
      pop.quit()
      tries += 1
    self.assertGreater(tries, 0)
    # curl too fails the transfer while the delay runs.
    if time.monotonic() - first_login < DELAY_S - 1:
      result = self.curl(DELAYED, "--verbose")
      self.assertNotEqual(result.returncode, 0)
      self.assertIn(b"[LOGIN-DELAY]", result.stderr)
      tries += 1
    # A tenant without a delay: back to back.
    for _ in range(3):
      self.login(FREE).quit()
    time.sleep(max(0.0, first_login + DELAY_S + 0.2 - time.monotonic()))
    self.login(DELAYED).quit()
    wait_for(lambda: self.counter("posthaste_pop3_logins_refused_total", reason="login_delay")
             >= refusals_before + tries, what="LOGIN-DELAY refusals counted")
    # Back to no delay: at once.
    self.policy("delay.test", "--login_delay_s=default")
    self.login(DELAYED).quit()

  def test_expire_zero_deletes_what_was_retrieved_at_quit(self):
    self.policy("expire0.test", "--expire_days=0")
    pop = self.login(EXPIRING)
    self.assertIn("EXPIRE 0", self.capa_lines(pop))
    uidls = [line.split()[1] for line in pop.uidl()[1]]
    pop.top(2, 0)
    pop.retr(1)
    pop.retr(3)
    self.assertIn(b"1 message left", pop.quit())
    pop = self.login(EXPIRING)
    self.assertEqual([line.split()[1] for line in pop.uidl()[1]], [uidls[1]])
    pop.quit()
    # A connection that drops without QUIT deletes nothing (RFC 1939: no UPDATE state).
    pop = self.login(EXPIRING)
    pop.retr(1)
    pop.sock.shutdown(socket.SHUT_RDWR)
    pop.close()
    wait_for(lambda: self._message_count(EXPIRING) == 1, what="nothing deleted")

  def _message_count(self, user):
    try:
      pop = self.login(user)
    except poplib.error_proto:  # [IN-USE] until the dropped session has ended
      return None
    count = pop.stat()[0]
    pop.quit()
    return count

  def test_fetchmail_keep_cannot_leave_mail_under_expire_zero(self):
    self.policy("expire0.test", "--expire_days=0")
    home = make_temp_dir("fetchmail-")
    os.chmod(home, 0o700)
    mda, mbox = write_mbox_mda(home)
    rc = os.path.join(home, "fetchmailrc")
    with open(rc, "w") as f:
      f.write("set no syslog\nset no bouncemail\nset invisible\n"
              "poll 127.0.0.1 with proto POP3 service %d auth password timeout 60 uidl\n"
              '  user "%s" there with password "%s" is "root" here\n'
              '  sslproto "" keep no rewrite mda "%s"\n' % (self.server.pop3_port, FETCHED, PASSWORD, mda))
    os.chmod(rc, 0o600)
    env = dict(os.environ, FETCHMAILHOME=home, HOME=home, FETCHMAILUSER="root")
    result = subprocess.run(
        [shutil.which("fetchmail") or "/usr/bin/fetchmail", "--fetchmailrc", rc, "--idfile",
         os.path.join(home, "fetchids"), "--pidfile", os.path.join(home, "fetchmail.pid"),
         "--verbose", "--nodetach"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=180, check=False)
    log = result.stdout.decode("utf-8", "replace")
    self.assertEqual(result.returncode, 0, log)
    self.assertEqual(len(read_mbox(mbox)), len(self.mail), log)
    self.assertEqual(self._message_count(FETCHED), 0, log)

  def test_login_mechanisms(self):
    self.policy("plainonly.test", "--login_mechanisms=PLAIN")
    before = self.counter("posthaste_pop3_logins_refused_total", reason="mechanism")
    pop = self.connect()
    pop.user(PLAIN_ONLY)
    answer = self.refused(lambda: pop.pass_(PASSWORD))
    self.assertTrue(answer.startswith(b"-ERR [AUTH] This login mechanism is not allowed"), answer)
    pop.quit()
    result = self.curl(PLAIN_ONLY, "--login-options", "AUTH=PLAIN")
    self.assertEqual(result.returncode, 0, result.stderr.decode())
    result = self.curl(PLAIN_ONLY, "--login-options", "AUTH=LOGIN")
    self.assertNotEqual(result.returncode, 0)
    wait_for(lambda: self.counter("posthaste_pop3_logins_refused_total", reason="mechanism") >=
             before + 2, what="mechanism refusals counted")
    self.policy("plainonly.test", "--login_mechanisms=default")
    self.login(PLAIN_ONLY).quit()

  def test_connections_per_user(self):
    self.policy("single.test", "--connections_per_user=1")
    first = self.login(SINGLE)
    second = self.connect()
    second.user(SINGLE)
    answer = self.refused(lambda: second.pass_(PASSWORD))
    self.assertTrue(answer.startswith(b"-ERR [SYS/TEMP]"), answer)
    first.quit()
    wait_for(lambda: self._can_login(SINGLE), what="login once the first session ended")

  def _can_login(self, user):
    try:
      self.login(user).quit()
      return True
    except poplib.error_proto:
      return False

  def test_idle_timeout(self):
    self.policy("idle.test", "--idle_timeout_s=2")
    idle = self.login(IDLE)
    busy = self.login(FREE)
    time.sleep(3.5)
    with self.assertRaises((poplib.error_proto, OSError, EOFError)):
      idle.noop()
      idle.noop()
    busy.noop()
    busy.quit()


if __name__ == "__main__":
  unittest.main()
