"""Per-tenant plaintext logins against the real posthaste binary, from a non-loopback address.

Shows: with the server-wide rule (--plaintext_requires_tls, the default) a client on a
non-loopback address gets USER refused before it sends a password unless its tenant has
`posthaste tenant policy DOMAIN --plaintext_auth=allow`: a user of the allowed tenant logs in
with plaintext USER/PASS (and AUTH LOGIN) while a user of a default tenant is refused with the
same `-ERR [AUTH]` line as the server-wide rule; CAPA stays the server-wide one (no USER before
STLS). Then, with the server running, `tenant policy` through the admin socket changes the
behaviour at once, without a restart: the default tenant is allowed, the allowed one set to
require_tls is refused in plaintext and still logs in after STLS. `tenant list` shows both.
"""

import base64
import poplib
import re
import ssl
import subprocess
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, non_loopback_address
from tests.testing.tls_certs import TestPki

ALPHA = "ann@alpha.test"  # tenant set to allow before start
BETA = "bob@beta.test"  # tenant left at default
PASSWORD = "plain secret"
TIMEOUT_S = 60
REFUSED = b"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections"


class TenantPlaintextTest(unittest.TestCase):

  def setUp(self):
    self.address = non_loopback_address()
    if self.address is None:
      self.skipTest("no non-loopback IPv4 address on this machine")
    self.pki = TestPki(make_temp_dir("pki-"))
    cert, key = self.pki.issue("default", ["mail.default.test"], ip_addresses=[self.address])
    # The plain listener on that one address only: every client below is non-loopback.
    self.server = PosthasteServer(extra_args=["--tls_cert=" + cert, "--tls_key=" + key,
                                              "--pop3s_listen=127.0.0.1:0",
                                              "--pop3_listen=%s:0" % self.address])
    self.server.add_user(ALPHA, PASSWORD)
    self.server.add_user(BETA, PASSWORD)
    out = self.server.run_cli(["tenant", "policy"], ["alpha.test", "--plaintext_auth=allow"])
    self.assertEqual(out, b"alpha.test\tplaintext_auth=allow\n")

  def cli_online(self, *args):
    """The real CLI while the server runs (it goes through DIR/admin.sock)."""
    result = subprocess.run([self.server.binary, *args, "--data_dir=" + self.server.data_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S,
                            check=False)
    self.assertEqual(result.returncode, 0, result.stderr.decode())
    return result.stdout.decode()

  def connect(self):
    return poplib.POP3(self.address, self.server.pop3_port, timeout=TIMEOUT_S)

  def assert_plaintext_login(self, user):
    pop = self.connect()
    self.assertEqual(pop.user(user), b"+OK")
    self.assertTrue(pop.pass_(PASSWORD).startswith(b"+OK"))
    self.assertEqual(pop.stat(), (0, 0))
    pop.quit()

  def assert_refused_at_user(self, user):
    pop = self.connect()
    with self.assertRaises(poplib.error_proto) as refused:
      pop.user(user)
    self.assertTrue(refused.exception.args[0].startswith(REFUSED), refused.exception.args[0])
    # PASS without an accepted USER gets the same answer; nothing was authenticated.
    with self.assertRaises(poplib.error_proto) as again:
      pop.pass_(PASSWORD)
    self.assertTrue(again.exception.args[0].startswith(REFUSED))
    pop.quit()

  def test_per_tenant_policy_and_online_change(self):
    with self.server:
      # CAPA follows the server-wide rule: no USER, PLAIN or LOGIN before STLS (SCRAM sends
      # no password, so it stays).
      pop = self.connect()
      capa = pop.capa()
      self.assertIn("STLS", capa)
      self.assertNotIn("USER", capa)
      self.assertEqual(capa.get("SASL"), ["SCRAM-SHA-256", "SCRAM-SHA-1"])
      pop.quit()

      self.assert_plaintext_login(ALPHA)
      self.assert_refused_at_user(BETA)

      # AUTH LOGIN: the allowed tenant gets the password prompt; the default one is refused
      # after the user name, before any password.
      pop = self.connect()
      self.assertEqual(pop._shortcmd("AUTH LOGIN"), b"+ VXNlcm5hbWU6")
      self.assertEqual(pop._shortcmd(base64.b64encode(ALPHA.encode()).decode()),
                       b"+ UGFzc3dvcmQ6")
      self.assertTrue(
          pop._shortcmd(base64.b64encode(PASSWORD.encode()).decode()).startswith(b"+OK"))
      pop.quit()
      pop = self.connect()
      self.assertEqual(pop._shortcmd("AUTH LOGIN"), b"+ VXNlcm5hbWU6")
      with self.assertRaises(poplib.error_proto) as refused:
        pop._shortcmd(base64.b64encode(BETA.encode()).decode())
      self.assertTrue(refused.exception.args[0].startswith(REFUSED))
      pop.quit()

      # Online, no restart: beta allowed, alpha requires TLS.
      self.assertEqual(self.cli_online("tenant", "policy", "beta.test", "--plaintext_auth=allow"),
                       "beta.test\tplaintext_auth=allow\n")
      self.assertEqual(
          self.cli_online("tenant", "policy", "alpha.test", "--plaintext_auth=require_tls"),
          "alpha.test\tplaintext_auth=require_tls\n")
      self.assert_plaintext_login(BETA)
      self.assert_refused_at_user(ALPHA)
      # ... and alpha still logs in over TLS.
      pop = self.connect()
      pop.stls(context=ssl.create_default_context(cafile=self.pki.ca_cert))
      self.assertEqual(pop.user(ALPHA), b"+OK")
      self.assertTrue(pop.pass_(PASSWORD).startswith(b"+OK"))
      pop.quit()

      listing = self.cli_online("tenant", "list")
      self.assertIn("alpha.test\t", listing)
      self.assertIn("\tplaintext_auth=require_tls\n", listing)
      self.assertIn("beta.test\t", listing)
      self.assertIn("\tplaintext_auth=allow\n", listing)
      self.assertIn("tenant policies loaded", self.server.stderr_text())
      self.assertIn("trigger=\"admin socket\"", self.server.stderr_text())

      # Back to default: beta refused again.
      self.cli_online("tenant", "policy", "beta.test", "--plaintext_auth=default")
      self.assert_refused_at_user(BETA)


if __name__ == "__main__":
  unittest.main()
