"""The JSON HTTP admin API of the real `posthaste serve` (--admin_listen, --admin_token_file).

Shows: off by default; every request without the bearer token, or with a wrong one, gets 401
with WWW-Authenticate; with it: create (201; 409 when it exists), list, read usage, set quota,
disable, set password (POP3 login with the new one), delete (204, then 404); the changes are
seen at once by LMTP and POP3; /api/v1/auth/verify answers as a POP3 login would (ok, or
bad_credentials with the failure delay for a wrong password and an unknown user alike); bad JSON, unknown members, wrong types and over-long bodies get
400/413 with a JSON error and change nothing.
"""

import http.client
import json
import os
import poplib
import re
import smtplib
import socket
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir

TOKEN = "s3cret-admin-token-0123456789"
TIMEOUT_S = 60


class AdminApiTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    token_file = os.path.join(make_temp_dir("token-"), "token")
    with open(token_file, "w") as f:
      f.write(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    cls.server = PosthasteServer(
        shards=1, extra_args=["--admin_listen=127.0.0.1:0", "--admin_token_file=" + token_file])
    cls.server.add_user("existing@example.test", "pw")
    cls.server.start()
    match = re.search(r"\badmin_api=127\.0\.0\.1:(\d+)", cls.server.stderr_text())
    assert match, cls.server.stderr_text()
    cls.port = int(match.group(1))

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def request(self, method, path, body=None, token=TOKEN, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
    try:
      headers = {"Content-Type": "application/json"}
      if token is not None:
        headers["Authorization"] = "Bearer " + token
      data = raw if raw is not None else (json.dumps(body) if body is not None else None)
      conn.request(method, path, body=data, headers=headers)
      response = conn.getresponse()
      text = response.read()
      parsed = json.loads(text) if text else None
      return response.status, parsed, response
    finally:
      conn.close()

  def test_token_is_required(self):
    for token in (None, "wrong-token-wrong-token", TOKEN + "x", TOKEN[:-1], ""):
      for method, path in (("GET", "/api/v1/accounts"), ("DELETE",
                                                          "/api/v1/accounts/existing@example.test")):
        status, body, response = self.request(method, path, token=token)
        self.assertEqual(status, 401, (token, method))
        self.assertIn("Bearer", response.getheader("WWW-Authenticate"))
        self.assertIn("error", body)
    status, body, _ = self.request("GET", "/api/v1/accounts/existing@example.test")
    self.assertEqual(status, 200)  # still there

  def test_hold_and_mailbox_pages_for_moves(self):
    status, body, _ = self.request("POST", "/api/v1/accounts",
                                   {"address": "mover@example.test", "password": "pw"})
    self.assertEqual(status, 201, body)
    for method, path in (("GET", "/api/v1/accounts/mover@example.test/mailbox"),
                         ("PUT", "/api/v1/accounts/mover@example.test/hold")):
      status, _, _ = self.request(method, path, token=None, raw=b"{}")
      self.assertEqual(status, 401, path)
    status, body, _ = self.request("PUT", "/api/v1/accounts/mover@example.test/hold",
                                   {"held": True})
    self.assertEqual((status, body), (200, {"held": True}))
    lmtp = smtplib.LMTP("127.0.0.1", self.server.lmtp_port, timeout=TIMEOUT_S)
    lmtp.ehlo("mta.test")
    lmtp.mail("s@origin.test")
    code, text = lmtp.rcpt("mover@example.test")
    self.assertEqual((code, text[:5]), (451, b"4.2.0"))
    lmtp.rset()
    status, body, _ = self.request("PUT", "/api/v1/accounts/mover@example.test/hold",
                                   {"held": False})
    self.assertEqual(status, 200, body)
    lmtp.mail("s@origin.test")
    self.assertEqual(lmtp.rcpt("mover@example.test")[0], 250)
    lmtp.docmd("DATA")
    lmtp.send(b"Subject: page\r\n\r\nbody\r\n.\r\n")
    self.assertEqual(lmtp.getreply()[0], 250)
    lmtp.quit()
    # One page holds the account and its message; a damaged page is refused (400).
    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
    conn.request("GET", "/api/v1/accounts/mover@example.test/mailbox",
                 headers={"Authorization": "Bearer " + TOKEN})
    response = conn.getresponse()
    page = response.read()
    conn.close()
    self.assertEqual(response.status, 200)
    self.assertTrue(page.startswith(b"PHMOVE1\n"))
    self.assertIn(b"Subject: page", page)
    damaged = page[:-3] + bytes([page[-3] ^ 1]) + page[-2:]
    status, body, _ = self.request("PUT", "/api/v1/accounts/mover@example.test/mailbox",
                                   raw=damaged)
    self.assertEqual(status, 400, body)
    # The same page again changes nothing.
    status, body, _ = self.request("PUT", "/api/v1/accounts/mover@example.test/mailbox", raw=page)
    self.assertEqual((status, body["imported"], body["skipped"], body["complete"]),
                     (200, 0, 1, True))

  def test_account_lifecycle(self):
    status, body, _ = self.request("POST", "/api/v1/accounts", {
        "address": "panel@example.test", "password": "first pass", "quota_messages": 1})
    self.assertEqual(status, 201, body)
    self.assertEqual(body["address"], "panel@example.test")
    self.assertEqual(body["quota_messages"], 1)
    self.assertEqual(body["messages"], 0)
    status, body, _ = self.request("POST", "/api/v1/accounts",
                                   {"address": "panel@example.test", "password": "x"})
    self.assertEqual(status, 409)

    status, body, _ = self.request("GET", "/api/v1/accounts?domain=example.test")
    self.assertEqual(status, 200)
    self.assertIn({"address": "panel@example.test", "disabled": False, "messages": 0,
                   "octets": 0}, body["accounts"])

    # Usage after an LMTP delivery; the quota of 1 then refuses the next one.
    lmtp = smtplib.LMTP("127.0.0.1", self.server.lmtp_port, timeout=TIMEOUT_S)
    lmtp.ehlo("mta.test")
    lmtp.mail("s@origin.test")
    self.assertEqual(lmtp.rcpt("panel@example.test")[0], 250)
    lmtp.docmd("DATA")
    lmtp.send(b"Subject: q\r\n\r\nbody\r\n.\r\n")
    self.assertEqual(lmtp.getreply()[0], 250)
    status, body, _ = self.request("GET", "/api/v1/accounts/panel@example.test")
    self.assertEqual((status, body["messages"], body["octets"]), (200, 1, len(b"Return-Path: <s@origin.test>\r\nSubject: q\r\n\r\nbody\r\n")))
    lmtp.mail("s@origin.test")
    self.assertEqual(lmtp.rcpt("panel@example.test")[0], 452)
    lmtp.rset()

    status, body, _ = self.request("PATCH", "/api/v1/accounts/panel@example.test",
                                   {"quota_messages": 0, "quota_octets": 1000,
                                    "password": "second pass"})
    self.assertEqual(status, 200, body)
    self.assertEqual((body["quota_messages"], body["quota_octets"]), (0, 1000))
    self.assertEqual(body["effective_quota_octets"], 1000)
    self.assertEqual(lmtp.mail("s@origin.test")[0], 250)
    self.assertEqual(lmtp.rcpt("panel@example.test")[0], 250)
    lmtp.rset()
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    pop.user("panel@example.test")
    pop.pass_("second pass")
    self.assertEqual(pop.stat()[0], 1)
    pop.quit()

    status, body, _ = self.request("PATCH", "/api/v1/accounts/panel@example.test",
                                   {"disabled": True})
    self.assertEqual((status, body["disabled"]), (200, True))
    lmtp.mail("s@origin.test")
    self.assertEqual(lmtp.rcpt("panel@example.test")[0], 550)
    lmtp.quit()

    status, body, _ = self.request("DELETE", "/api/v1/accounts/panel@example.test")
    self.assertEqual((status, body), (204, None))
    status, body, _ = self.request("GET", "/api/v1/accounts/panel@example.test")
    self.assertEqual(status, 404)
    self.assertIn("error", body)

  def test_bad_requests_change_nothing(self):
    path = "/api/v1/accounts/existing@example.test"
    for raw in ("not json", "{\"quota_messages\": -1}", "{\"quota_messages\": \"10\"}",
                "{\"disabled\": \"yes\"}", "{\"unknown\": 1}", "[1]",
                "{\"quota_messages\": 1, \"quota_messages\": 2}"):
      status, body, _ = self.request("PATCH", path, raw=raw)
      self.assertEqual(status, 400, raw)
      self.assertIn("error", body)
    status, body, _ = self.request("PATCH", path, raw="{\"password\": \"" + "x" * 70000 + "\"}")
    self.assertEqual(status, 413)
    status, body, _ = self.request("POST", "/api/v1/accounts", {"address": "no-at-sign",
                                                                "password": "x"})
    self.assertEqual(status, 400)
    status, body, _ = self.request("POST", "/api/v1/accounts", {"address": "a@example.test"})
    self.assertEqual(status, 400)
    status, body, _ = self.request("PUT", path, {})
    self.assertEqual(status, 405)
    status, body, _ = self.request("GET", path)
    self.assertEqual((status, body["quota_messages"], body["disabled"]), (200, 0, False))

  def test_auth_verify_uses_the_servers_login_check(self):
    # POST /api/v1/auth/verify: what `posthaste route` asks before letting nginx proxy a login.
    path = "/api/v1/auth/verify"
    status, body, _ = self.request("POST", path, {"user": "existing@example.test",
                                                  "password": "pw"})
    self.assertEqual((status, body["result"], body["address"]),
                     (200, "ok", "existing@example.test"))
    status, body, _ = self.request("POST", path, {"user": "EXISTING@Example.Test",
                                                  "password": "pw"})
    self.assertEqual((status, body["result"]), (200, "ok"))
    for user, password in (("existing@example.test", "wrong"), ("nobody@example.test", "pw")):
      status, body, _ = self.request("POST", path, {"user": user, "password": password})
      self.assertEqual((status, body["result"]), (200, "bad_credentials"), user)
      self.assertEqual(body["failure_delay_ms"], 2000)  # serve's --auth_failure_delay_ms
    status, _, _ = self.request("POST", path, {"user": "existing@example.test", "password": "pw"},
                                token=None)
    self.assertEqual(status, 401)
    status, _, _ = self.request("POST", path, {"user": "existing@example.test"})
    self.assertEqual(status, 400)
    status, _, _ = self.request("POST", path, {"user": "x", "password": "y", "extra": 1})
    self.assertEqual(status, 400)
    status, _, _ = self.request("GET", path)
    self.assertEqual(status, 405)

  def raw_head(self, head):
    """Sends only a request head and reads the answer until the server closes; returns it."""
    with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT_S) as sock:
      sock.sendall(head.encode())
      reply = b""
      while True:
        chunk = sock.recv(65536)
        if not chunk:
          return reply.decode("utf-8", "replace")
        reply += chunk

  def test_refused_from_the_head_before_any_body(self):
    # A request announcing a body of tens of MiB (under the listener's limit for mailbox pages)
    # but sending none: refused from its head, so the answer comes although no body byte does
    # (a listener that read the body first would wait for it, then answer 408).
    big = 40 * 1024 * 1024
    cases = (
        ("PUT", "/api/v1/accounts/existing@example.test/mailbox", None, 401),
        ("PUT", "/api/v1/accounts/existing@example.test/mailbox", "wrong-token-wrong-token", 401),
        ("PATCH", "/api/v1/accounts/existing@example.test", TOKEN, 413),  # JSON: 64 KiB at most
        ("POST", "/api/v1/auth/verify", TOKEN, 413),
        ("PUT", "/api/v1/accounts/existing@example.test", TOKEN, 405),
        ("PUT", "/api/v1/nothing", TOKEN, 404),
        ("PUT", "/api/v1/accounts/no-at-sign/mailbox", TOKEN, 400),
    )
    for method, path, token, expected in cases:
      head = "%s %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n" % (method, path, big)
      if token is not None:
        head += "Authorization: Bearer %s\r\n" % token
      reply = self.raw_head(head + "\r\n")
      self.assertTrue(reply.startswith("HTTP/1.1 %d " % expected), (method, path, reply[:200]))
      self.assertIn("error", reply)

  def test_off_by_default(self):
    server = PosthasteServer(shards=1)
    server.start()
    try:
      self.assertIn("admin_api=off", server.stderr_text())
    finally:
      server.stop()


if __name__ == "__main__":
  unittest.main()
