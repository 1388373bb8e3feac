"""APOP, CRAM-MD5 and master users against the real posthaste binary, with poplib and curl.

Shows, for APOP (RFC 1939 section 7): with no tenant allowing it the greeting has no timestamp
and APOP is refused; once `tenant policy apop.test --apop=allow` is set (through the admin
socket, server running) the greeting carries a fresh `<...>` timestamp per connection and
poplib's apop() logs in a user whose `user apop-secret` is set and sees its mail; a wrong
secret, a user without a secret and a user of a tenant that does not allow APOP (whose secret
is set) are all refused with -ERR [AUTH].

CRAM-MD5 (RFC 2195, one of the server's SASL exchanges) follows the same switch and secret:
CAPA lists it, curl's `--login-options AUTH=CRAM-MD5` logs in with the secret, and the same
three cases are refused, counted by reason.

For master users (SASL PLAIN with an authorisation id, `tenant policy --master_users`): curl
with --sasl-authzid logs the master in as another user of its tenant with the master's own
password, and sees (and retrieves) that user's mail; the session log names both and
posthaste_pop3_master_logins_total counts it; the same master naming a user of another tenant,
a non-master naming a user of its own tenant and the master with a wrong password all fail.
"""

import poplib
import re
import shutil
import subprocess
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import PosthasteServer, metric_sum, wire_form

TIMEOUT_S = 60
PASSWORD = "login password"

MROSE = "mrose@apop.test"  # APOP secret set; tenant allows APOP
NOSECRET = "nosecret@apop.test"  # tenant allows APOP, no secret
PAT = "pat@plain.test"  # secret set; tenant does not allow APOP
BOSS = "boss@apop.test"  # master user of apop.test
ANN = "ann@apop.test"
BOB = "bob@other.test"
TED = "ted@other.test"  # not a master

APOP_REFUSED = b"-ERR [AUTH]"


class ApopAndMasterUsersTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer()
    for user in (MROSE, NOSECRET, PAT, BOSS, ANN, BOB, TED):
      cls.server.add_user(user, PASSWORD)
    for user in (MROSE, PAT):
      cls.server.run_cli(["user", "apop-secret"], [user], stdin=b"tanstaaf\n")
    mail = messages.everyday_messages()
    cls.ann_mail = [raw for _, raw in mail[:2]]
    for raw in cls.ann_mail:
      cls.server.deliver(ANN, raw)
    cls.server.deliver(MROSE, mail[2][1])
    for _, raw in mail[:3]:
      cls.server.deliver(BOB, raw)
    out = cls.server.run_cli(["tenant", "policy"], ["apop.test", "--master_users=" + BOSS])
    assert out == b"apop.test\tplaintext_auth=default\tmaster_users=boss@apop.test\n", out
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def cli_online(self, *args):
    result = subprocess.run([self.server.binary, *args, "--data_dir=" + self.server.data_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S,
                            check=False)
    self.assertEqual(result.returncode, 0, result.stderr.decode())
    return result.stdout.decode()

  def connect(self):
    return poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)

  def assert_apop_refused(self, user, secret):
    pop = self.connect()
    with self.assertRaises(poplib.error_proto) as refused:
      pop.apop(user, secret)
    self.assertTrue(refused.exception.args[0].startswith(APOP_REFUSED), refused.exception.args)
    pop.quit()

  def test_apop(self):
    # Off by default: no timestamp, and poplib has nothing to compute a digest over.
    self.cli_online("tenant", "policy", "apop.test", "--apop=deny")
    pop = self.connect()
    self.assertIsNone(pop.timestamp.search(pop.getwelcome()), pop.getwelcome())
    self.assertTrue(pop._shortcmd("CAPA").startswith(b"+OK"))
    pop.close()
    pop = self.connect()
    with self.assertRaises(poplib.error_proto):
      pop._shortcmd("APOP %s c4c9334bac560ecc979e58001b3e22fb" % MROSE)
    pop.quit()

    out = self.cli_online("tenant", "policy", "apop.test", "--apop=allow")
    self.assertIn("\tapop=allow", out)
    greetings = set()
    for _ in range(3):
      pop = self.connect()
      stamp = pop.timestamp.search(pop.getwelcome())
      self.assertIsNotNone(stamp, pop.getwelcome())
      self.assertRegex(stamp.group(1), rb"^<\d+\.\d+@[^>]+>$")
      greetings.add(stamp.group(1))
      self.assertTrue(pop.apop(MROSE, "tanstaaf").startswith(b"+OK"))
      self.assertEqual(pop.stat()[0], 1)
      pop.quit()
    self.assertEqual(len(greetings), 3, "every connection gets its own timestamp")

    self.assert_apop_refused(MROSE, "tanstaaF")
    self.assert_apop_refused(MROSE, PASSWORD)  # the password is not the APOP secret
    self.assert_apop_refused(NOSECRET, PASSWORD)
    self.assert_apop_refused(PAT, "tanstaaf")  # plain.test does not allow APOP
    self.assert_apop_refused("nobody@apop.test", "tanstaaf")

  def curl(self, user, password, authzid, path="/", mechanism="PLAIN"):
    curl = shutil.which("curl") or "/usr/bin/curl"
    argv = [curl, "--silent", "--show-error", "--max-time", str(TIMEOUT_S),
            "--user", "%s:%s" % (user, password), "--login-options", "AUTH=" + mechanism,
            *(["--sasl-authzid", authzid] if authzid else []),
            "pop3://127.0.0.1:%d%s" % (self.server.pop3_port, path)]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=TIMEOUT_S + 10, check=False)

  def test_cram_md5(self):
    # CRAM-MD5 follows APOP's switch and secret; curl computes the HMAC-MD5 over our challenge.
    self.cli_online("tenant", "policy", "apop.test", "--apop=allow")
    pop = self.connect()
    self.assertEqual(pop.capa().get("SASL"),
                     ["PLAIN", "LOGIN", "SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5"])
    pop.quit()
    ok = self.curl(MROSE, "tanstaaf", None, mechanism="CRAM-MD5")
    self.assertEqual(ok.returncode, 0, ok.stderr)
    self.assertEqual(ok.stdout.count(b"\r\n"), 1)  # LIST of mrose's one message
    for user, secret in ((MROSE, "tanstaaF"), (NOSECRET, PASSWORD), (PAT, "tanstaaf")):
      refused = self.curl(user, secret, None, mechanism="CRAM-MD5")
      self.assertNotEqual(refused.returncode, 0, (user, refused.stdout))
    samples = self.server.metrics()
    self.assertGreaterEqual(
        metric_sum(samples, "posthaste_auth_successes_total", mechanism="CRAM-MD5"), 1)
    self.assertGreaterEqual(
        metric_sum(samples, "posthaste_auth_failures_total", mechanism="CRAM-MD5",
                   reason="bad_credentials"), 1)
    self.assertGreaterEqual(
        metric_sum(samples, "posthaste_auth_failures_total", mechanism="CRAM-MD5",
                   reason="not_allowed"), 2)

  def test_master_users(self):
    before = self.server.metrics()
    listing = self.curl(BOSS, PASSWORD, ANN)
    self.assertEqual(listing.returncode, 0, listing.stderr)
    want = b"".join(b"%d %d\r\n" % (i + 1, len(wire_form(raw)))
                    for i, raw in enumerate(self.ann_mail))
    self.assertEqual(listing.stdout, want)  # ann's maildrop, not boss's (empty)
    first = self.curl(BOSS, PASSWORD, ANN, "/1")
    self.assertEqual(first.returncode, 0, first.stderr)
    self.assertEqual(first.stdout, wire_form(self.ann_mail[0]))
    # The authorisation id in another case names the same user.
    self.assertEqual(self.curl(BOSS, PASSWORD, "Ann@APOP.test").returncode, 0)

    refusals = [
        self.curl(BOSS, PASSWORD, BOB),  # another tenant's user
        self.curl(TED, PASSWORD, BOB),  # not a master
        self.curl(BOSS, "wrong", ANN),  # the master's own password is checked
        self.curl(BOSS, PASSWORD, "nobody@apop.test"),  # no such user
    ]
    for refused in refusals:
      self.assertNotEqual(refused.returncode, 0, refused.stdout)

    after = self.server.metrics()
    name = "posthaste_pop3_master_logins_total"
    self.assertEqual(metric_sum(after, name, result="ok") - metric_sum(before, name, result="ok"),
                     3)
    self.assertEqual(
        metric_sum(after, name, result="refused") - metric_sum(before, name, result="refused"), 2)
    audit = [line for line in self.server.stderr_text().splitlines()
             if "master user login" in line]
    self.assertEqual(len(audit), 3, self.server.stderr_text())
    for line in audit:
      self.assertIn(BOSS, line)
      self.assertIn(ANN, line)
    refused_lines = [line for line in self.server.stderr_text().splitlines()
                     if "authorisation id refused" in line]
    self.assertTrue(any(TED in line and BOB in line for line in refused_lines), refused_lines)


if __name__ == "__main__":
  unittest.main()
