"""One mailbox per address whatever its case, and admin API paths decoded once and strictly.

Runs the real binary (`posthaste serve` on 127.0.0.1, two shards, with the HTTP admin API) and
real clients. Shows:
  - an account created as "Alice@T.Test" is one mailbox for every spelling: the offline and
    online CLI (user add refuses a case variant, deliver, passwd, quota, disable/enable, show,
    list, del, import maildir), LMTP RCPT (smtplib.LMTP), POP3 USER/PASS, AUTH PLAIN and AUTH
    LOGIN (poplib; one maildrop lock and one auth cache entry across spellings), the admin API
    (GET/PATCH/DELETE in any case, POST of a case variant 409); output keeps "Alice@t.test";
  - admin API targets with %00, /../, %2e%2e, //, %2F and the like are answered 400 with a JSON
    error, and nothing is deleted.
"""

import base64
import http.client
import json
import os
import poplib
import re
import smtplib
import subprocess
import time
import unittest

from tests.testing.posthaste_server import (PosthasteServer, make_temp_dir, metric_sum)

TOKEN = "case-test-admin-token-0123456789"
TIMEOUT_S = 60
DOMAIN = "t.test"


class AddressCaseTest(unittest.TestCase):

  def setUp(self):
    token_file = os.path.join(make_temp_dir("token-"), "token")
    with open(token_file, "w") as f:
      f.write(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    self.server = PosthasteServer(shards=2, extra_args=[
        "--admin_listen=127.0.0.1:0", "--admin_token_file=" + token_file,
        "--in_use_policy=refuse"
    ])
    self.addCleanup(self.server.stop)

  def start(self):
    self.server.start()
    match = re.search(r"\badmin_api=127\.0\.0\.1:(\d+)", self.server.stderr_text())
    self.assertTrue(match, self.server.stderr_text())
    self.api_port = int(match.group(1))

  # --- clients ---

  def cli(self, *argv, stdin=b""):
    """The real CLI (offline, or online through the admin socket): (status, out, err)."""
    result = subprocess.run([self.server.binary, *argv, "--data_dir=" + self.server.data_dir],
                            input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=TIMEOUT_S, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()

  def ok(self, *argv, stdin=b""):
    status, out, err = self.cli(*argv, stdin=stdin)
    self.assertEqual(status, 0, (argv, err))
    return out

  def api(self, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=TIMEOUT_S)
    try:
      headers = {"Authorization": "Bearer " + TOKEN, "Content-Type": "application/json"}
      conn.request(method, path, body=json.dumps(body) if body is not None else None,
                   headers=headers)
      response = conn.getresponse()
      text = response.read()
      return response.status, json.loads(text) if text else None
    finally:
      conn.close()

  def pop(self):
    return poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)

  def login_user_pass(self, user, password):
    pop = self.pop()
    pop.user(user)
    pop.pass_(password)
    return pop

  def login_plain(self, user, password):
    pop = self.pop()
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    pop._shortcmd("AUTH PLAIN " + token)
    return pop

  def login_login(self, user, password):
    pop = self.pop()
    reply = pop._shortcmd("AUTH LOGIN")
    self.assertTrue(reply.startswith(b"+ "), reply)
    reply = pop._shortcmd(base64.b64encode(user.encode()).decode())
    self.assertTrue(reply.startswith(b"+ "), reply)
    pop._shortcmd(base64.b64encode(password.encode()).decode())
    return pop

  def login_when_free(self, login, user, password):
    """login(user, password), retried while the previous session's lock is still being released
    (the owner shard learns of a QUIT asynchronously). Returns (session, attempts)."""
    deadline = time.monotonic() + 20
    attempts = 0
    while True:
      attempts += 1
      try:
        return login(user, password), attempts
      except poplib.error_proto as error:
        if b"[IN-USE]" not in error.args[0] or time.monotonic() > deadline:
          raise
        time.sleep(0.1)

  def lmtp_deliver(self, recipient, subject):
    lmtp = smtplib.LMTP("127.0.0.1", self.server.lmtp_port, timeout=TIMEOUT_S)
    try:
      lmtp.ehlo("mta.test")
      self.assertEqual(lmtp.mail("s@origin.test")[0], 250)
      code, text = lmtp.rcpt(recipient)
      self.assertEqual(code, 250, (recipient, text))
      lmtp.docmd("DATA")
      lmtp.send(("Subject: %s\r\n\r\nbody\r\n.\r\n" % subject).encode())
      self.assertEqual(lmtp.getreply()[0], 250)
    finally:
      lmtp.quit()

  def user_list(self):
    return self.ok("user", "list", DOMAIN)

  # --- tests ---

  def test_every_spelling_reaches_one_mailbox(self):
    # Offline CLI.
    self.assertEqual(self.ok("user", "add", "Alice@T.Test", stdin=b"pw1\n"), "added Alice@t.test\n")
    for variant in ("alice@t.test", "ALICE@T.TEST"):
      status, _, err = self.cli("user", "add", variant, stdin=b"other\n")
      self.assertNotEqual(status, 0, variant)
      self.assertIn("already exists", err)
    self.ok("deliver", "aLiCe@t.test", stdin=b"Subject: cli\r\n\r\nfrom the CLI\r\n")
    self.ok("user", "passwd", "ALICE@T.TEST", stdin=b"pw2\n")
    self.ok("user", "quota", "alice@t.test", "--messages=100")
    self.ok("user", "disable", "ALICE@t.test")
    self.assertIn("state\tdisabled", self.ok("user", "show", "alice@T.TEST"))
    self.ok("user", "enable", "Alice@t.test")
    maildir = make_temp_dir("maildir-")
    for sub in ("cur", "new", "tmp"):
      os.mkdir(os.path.join(maildir, sub))
    with open(os.path.join(maildir, "new", "1700000000.M1P1.host"), "wb") as f:
      f.write(b"Subject: imported\r\n\r\nfrom a maildir\r\n")
    self.ok("import", "maildir", "ALICE@t.test", maildir)
    self.ok("user", "add", "Carol@t.test", stdin=b"pw\n")
    self.assertEqual(self.ok("user", "del", "CAROL@T.TEST"), "deleted CAROL@t.test\n")
    show = self.ok("user", "show", "ALICE@T.TEST")
    self.assertIn("address\tAlice@t.test\n", show)  # the case given at creation
    self.assertIn("messages\t2\n", show)
    self.assertIn("quota_messages\t100\n", show)
    self.assertEqual(self.user_list().splitlines(), ["Alice@t.test\t2\t%d" % (
        len(b"Subject: cli\r\n\r\nfrom the CLI\r\n") +
        len(b"Subject: imported\r\n\r\nfrom a maildir\r\n"))])

    self.start()
    # LMTP: every spelling is the one recipient.
    self.lmtp_deliver("Alice@T.TEST", "lmtp 1")
    self.lmtp_deliver("ALICE@t.test", "lmtp 2")
    # Online CLI, through the admin socket.
    self.ok("deliver", "alice@T.test", stdin=b"Subject: online\r\n\r\nx\r\n")
    status, _, err = self.cli("user", "add", "aLICE@t.test", stdin=b"x\n")
    self.assertNotEqual(status, 0)
    self.assertIn("already exists", err)

    # POP3: every mechanism and spelling logs into the same maildrop.
    hits_before = metric_sum(self.server.metrics(), "posthaste_pop3_auth_cache_hits_total")
    logins = 0
    for login, user in ((self.login_user_pass, "alice@t.test"),
                        (self.login_user_pass, "ALICE@T.TEST"),
                        (self.login_plain, "Alice@T.Test"),
                        (self.login_login, "aLiCe@t.TeSt")):
      pop, attempts = self.login_when_free(login, user, "pw2")
      logins += attempts
      self.assertEqual(pop.stat()[0], 5, user)
      pop.quit()
    hits = metric_sum(self.server.metrics(), "posthaste_pop3_auth_cache_hits_total") - hits_before
    self.assertEqual(hits, logins - 1, "one cache entry for every spelling")
    # One maildrop lock, whatever the spelling (and whichever shard each connection lands on).
    holder, _ = self.login_when_free(self.login_user_pass, "alice@t.test", "pw2")
    for variant in ("ALICE@T.TEST", "Alice@t.test"):
      other = self.pop()
      other.user(variant)
      with self.assertRaises(poplib.error_proto) as refused:
        other.pass_("pw2")
      self.assertIn(b"IN-USE", refused.exception.args[0])
      other.close()
    holder.quit()

    # Admin API.
    status, body = self.api("GET", "/api/v1/accounts/aLiCe@T.test")
    self.assertEqual((status, body["address"], body["messages"]), (200, "Alice@t.test", 5))
    status, body = self.api("POST", "/api/v1/accounts", {"address": "ALICE@t.test",
                                                         "password": "x"})
    self.assertEqual(status, 409, body)
    self.assertIn("error", body)
    status, body = self.api("PATCH", "/api/v1/accounts/ALICE%40T.TEST", {"quota_messages": 50})
    self.assertEqual((status, body["quota_messages"], body["address"]), (200, 50, "Alice@t.test"))
    status, body = self.api("GET", "/api/v1/accounts?domain=T.TEST")
    self.assertEqual(status, 200)
    self.assertEqual([a["address"] for a in body["accounts"]], ["Alice@t.test"])
    self.assertIn("quota_messages\t50", self.ok("user", "show", "alice@t.test"))
    status, _ = self.api("DELETE", "/api/v1/accounts/ALICE@T.TEST")
    self.assertEqual(status, 204)
    for variant in ("alice@t.test", "Alice@t.test"):
      status, body = self.api("GET", "/api/v1/accounts/" + variant)
      self.assertEqual(status, 404, variant)
    self.assertEqual(self.user_list(), "")

  def test_admin_paths_are_decoded_once_and_strictly(self):
    for user in ("alice@t.test", "bob@t.test", "ALICE@other.test"):
      self.server.add_user(user, "pw")
    self.start()
    bad_paths = [
        "/api/v1/accounts/alice@t.test%00whatever",
        "/api/v1/accounts/ALICE@t.test%00whatever",
        "/api/v1/accounts/alice@t.test%00",
        "/api/v1/accounts/alice@t.test/../bob@t.test",
        "/api/v1/accounts/x@t.test/..",
        "/api/v1/accounts/../accounts/bob@t.test",
        "/api/v1/x/../accounts/bob@t.test",
        "/api/v1/accounts/./bob@t.test",
        "/api/v1/accounts/%2e%2e/bob@t.test",
        "/api/v1/accounts/alice@t.test/%2E%2E/bob@t.test",
        "/api/v1/accounts//bob@t.test",
        "/api/v1//accounts/bob@t.test",
        "/api/v1/accounts/bob@t.test/",
        "/api/v1/accounts/alice%2Fbob@t.test",
        "/api/v1/accounts/alice@t.test/bob@t.test",
        "/api/v1/accounts/bob%0a@t.test",
        "/api/v1/accounts/bob%C3%A9@t.test",
        "/api/v1/accounts/bob",
        "/api/v1/accounts/bob@t.test?x=1",
        "/api/v1/accounts/bob%2540t.test",
    ]
    for path in bad_paths:
      for method in ("DELETE", "GET"):
        status, body = self.api(method, path)
        self.assertEqual(status, 400, (method, path, body))
        self.assertIsInstance(body, dict, path)
        self.assertIn("error", body, path)
    status, body = self.api("GET", "/api/v1/accounts?domain=t.test%00x")
    self.assertEqual(status, 400, body)
    # Nothing was deleted.
    for address in ("alice@t.test", "bob@t.test", "alice@other.test"):
      status, body = self.api("GET", "/api/v1/accounts/" + address)
      self.assertEqual(status, 200, (address, body))
    status, body = self.api("GET", "/api/v1/accounts")
    self.assertEqual(len(body["accounts"]), 3)
    # A percent-encoded '@' is an ordinary spelling of the address.
    status, _ = self.api("DELETE", "/api/v1/accounts/bob%40t.test")
    self.assertEqual(status, 204)
    status, _ = self.api("GET", "/api/v1/accounts/bob@t.test")
    self.assertEqual(status, 404)


if __name__ == "__main__":
  unittest.main()
