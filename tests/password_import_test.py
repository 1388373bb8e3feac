"""Dovecot's own hashes log in to posthaste: import, --hash, and rehash at login.

Runs Dovecot's `doveadm pw` (Debian dovecot-core, the real peer) to hash fresh random passwords
in every scheme posthaste imports, loads them through the real CLI (`import passwd-file` with
bare users and --domain, `user add --hash`, `user passwd --hash`), then logs each user in with
poplib against `posthaste serve` on 127.0.0.1. Shows:
  - every imported scheme verifies the right password and refuses a wrong one;
  - rehash at login (on by default) replaces each hash not at --password_scheme once, counted
    by posthaste_pop3_auth_rehashes_total, except {CRAM-MD5}, which is kept;
  - after a restart (empty auth cache) every user still logs in with the same password and
    nothing is rehashed again;
  - a tenant's own scheme (`tenant policy --password_scheme`): `user add` hashes at it, rehash
    at login moves imported hashes to it, and a change (through the running server's admin
    socket) moves the tenant's users at their next cold login, while other tenants keep the
    server's default.
"""

import os
import poplib
import secrets
import subprocess
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, metric_sum

DOMAIN = "import.test"
TIMEOUT_S = 60
# Dovecot scheme names; CRYPT is what `doveadm pw` writes without -s.
SCHEMES = ["SSHA512", "SSHA256", "SSHA", "PBKDF2", "CRAM-MD5", "SHA512-CRYPT", "SHA256-CRYPT",
           "BLF-CRYPT", "ARGON2ID", "MD5-CRYPT", "CRYPT"]
KEPT = {"CRAM-MD5"}  # challenge-response secrets are never rehashed


def doveadm_pw(scheme, password):
  result = subprocess.run(["doveadm", "pw", "-s", scheme, "-p", password], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=True)
  return result.stdout.decode().strip()


class PasswordImportTest(unittest.TestCase):

  def setUp(self):
    self.server = PosthasteServer(extra_args=["--auth_failure_delay_ms=10"])
    self.addCleanup(self.server.stop)

  def login(self, user, password):
    client = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    try:
      client.user(user)
      client.pass_(password)
      client.quit()
      return True
    except poplib.error_proto:
      client.close()
      return False

  def rehashes(self):
    return metric_sum(self.server.metrics(), "posthaste_pop3_auth_rehashes_total")

  def test_dovecot_hashes_import_log_in_and_rehash(self):
    users = {}  # address -> (scheme, password)
    lines = ["# made by doveadm pw", ""]
    for scheme in SCHEMES:
      local = "u-" + scheme.lower()
      password = "pw " + secrets.token_hex(8)
      lines.append("%s:%s:1000:1000::/home/%s::" % (local, doveadm_pw(scheme, password), local))
      users["%s@%s" % (local, DOMAIN)] = (scheme, password)
    passwd_file = os.path.join(make_temp_dir("passwd-"), "passwd")
    with open(passwd_file, "w") as f:
      f.write("\n".join(lines) + "\n")
    out = self.server.run_cli(["import", "passwd-file"], ["--domain=" + DOMAIN, passwd_file])
    self.assertIn(b"%d added" % len(SCHEMES), out)

    # --hash on user add and user passwd.
    added = "hash-add@" + DOMAIN
    password = "pw " + secrets.token_hex(8)
    self.server.run_cli(["user", "add"], ["--hash=" + doveadm_pw("SSHA512", password), added])
    users[added] = ("SSHA512", password)
    changed = "hash-passwd@" + DOMAIN
    self.server.add_user(changed, "first password")
    password = "pw " + secrets.token_hex(8)
    self.server.run_cli(["user", "passwd"], ["--hash=" + doveadm_pw("PBKDF2", password), changed])
    users[changed] = ("PBKDF2", password)

    self.server.start()
    for address, (scheme, password) in users.items():
      self.assertFalse(self.login(address, password + "x"), scheme)
      self.assertTrue(self.login(address, password), "%s (%s)" % (address, scheme))
    expected = len([u for u in users.values() if u[0] not in KEPT])
    self.assertEqual(self.rehashes(), expected)
    self.assertFalse(self.login(changed, "first password"))

    # Restart: no cache; the rehashed (and kept) hashes verify, and none is rehashed again.
    self.server.stop()
    self.server.start()
    for address, (scheme, password) in users.items():
      self.assertTrue(self.login(address, password), "%s (%s) after restart" % (address, scheme))
    self.assertEqual(self.rehashes(), 0)

  def rehash_lines(self, to):
    return [line for line in self.server.stderr_text().splitlines()
            if "password rehashed at login" in line and "to=" + to in line]

  def test_tenant_password_scheme(self):
    fast, default = "fast.test", "plain.test"
    out = self.server.run_cli(["tenant", "policy"], [fast, "--password_scheme=sha512-crypt"])
    self.assertIn(b"password_scheme=sha512-crypt", out)
    self.server.add_user("added@" + fast, "added password")  # hashed at the tenant's scheme
    self.server.add_user("other@" + default, "other password")  # at the server's default
    self.server.run_cli(["user", "add"],
                        ["--hash=" + doveadm_pw("SSHA512", "imported pw"), "imported@" + fast])
    self.server.start()
    self.assertTrue(self.login("added@" + fast, "added password"))
    self.assertTrue(self.login("other@" + default, "other password"))
    self.assertTrue(self.login("imported@" + fast, "imported pw"))
    self.assertEqual(self.rehashes(), 1)  # only the imported {SSHA512}, to the tenant's scheme
    self.assertEqual(len(self.rehash_lines("sha512-crypt")), 1, self.server.stderr_text())

    # Changed online; the users move at their next cold login (after a restart here).
    result = subprocess.run(
        [self.server.binary, "tenant", "policy", "--data_dir=" + self.server.data_dir, fast,
         "--password_scheme=bcrypt:5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        timeout=TIMEOUT_S, check=False)
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn(b"password_scheme=bcrypt:5", result.stdout)
    self.server.stop()
    self.server.start()
    for user, password in (("added@" + fast, "added password"),
                           ("imported@" + fast, "imported pw"),
                           ("other@" + default, "other password")):
      self.assertTrue(self.login(user, password), user)
    self.assertEqual(self.rehashes(), 2)  # the two fast.test users; plain.test keeps its hash
    self.assertEqual(len(self.rehash_lines("bcrypt:5")), 2, self.server.stderr_text())
    # Back to the server's default for new hashes.
    self.server.stop()
    out = self.server.run_cli(["tenant", "policy"], [fast, "--password_scheme=default"])
    self.assertNotIn(b"password_scheme", out)


if __name__ == "__main__":
  unittest.main()
