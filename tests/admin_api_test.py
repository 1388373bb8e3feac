"""The JSON HTTP admin API of the real `posthaste serve` (--admin_listen, --admin_token_file).

Shows: off by default; every request without the bearer token, or with a wrong one, gets 401
with WWW-Authenticate; with it: create (201; 409 when it exists), list, read usage, set quota,
disable, set password (POP3 login with the new one), delete (204, then 404); the changes are
seen at once by LMTP and POP3; /api/v1/auth/verify answers as a POP3 login would (ok, or
bad_credentials with the failure delay for a wrong password and an unknown user alike); bad JSON, unknown members, wrong types and over-long bodies get
400/413 with a JSON error and change nothing.

Tenants: create (201, Location, ETag; 409 again), list, show with usage, PATCH of limits and
policy fields (only those change; If-Match on the policy revision, 412 when stale), a policy
change seen by the very next POP3 login (the API re-reads policies before it answers), delete
(409 while accounts exist, then 204 and 404). Live sessions on two shards: listed per tenant and
per user, one ended (its connection closes, its DELE is not committed). Store: usage per
tenant, check and compaction as jobs (202, then polled to done). Every route refuses malformed
JSON, wrong types, unknown members, oversize bodies and a wrong token with a 4xx and JSON, and
the store is unchanged afterwards.
"""

import http.client
import json
import os
import poplib
import re
import smtplib
import socket
import time
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, wait_for

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
        shards=2, extra_args=["--admin_listen=127.0.0.1:0", "--admin_token_file=" + token_file])
    cls.server.add_user("existing@example.test", "pw")
    cls.server.start()
    match = re.search(r"\badmin_api=127\.0\.0\.1:(\d+)", cls.server.stderr_text())
    assert match, cls.server.stderr_text()
    cls.port = int(match.group(1))

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def request(self, method, path, body=None, token=TOKEN, raw=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
    try:
      headers = dict({"Content-Type": "application/json"}, **(headers or {}))
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

  def tenant_snapshot(self, domain):
    status, body, response = self.request("GET", "/api/v1/tenants/" + domain)
    self.assertEqual(status, 200, body)
    return body, response.getheader("ETag")

  def test_tenant_lifecycle(self):
    status, body, response = self.request("POST", "/api/v1/tenants", {
        "domain": "Plans.Test", "quota_messages": 100, "login_delay_s": 300,
        "expire_days": "never", "apop": "allow", "lang": "de"})
    self.assertEqual(status, 201, body)
    self.assertEqual(response.getheader("Location"), "/api/v1/tenants/plans.test")
    self.assertEqual(response.getheader("ETag"), '"1"')
    self.assertEqual((body["domain"], body["revision"], body["quota_messages"]),
                     ("plans.test", 1, 100))
    self.assertEqual((body["login_delay_s"], body["expire_days"], body["apop"], body["lang"]),
                     (300, "never", "allow", "de"))
    self.assertEqual((body["plaintext_auth"], body["daily_download_bytes"], body["accounts"]),
                     ("default", 0, 0))
    status, body, _ = self.request("POST", "/api/v1/tenants", {"domain": "plans.test"})
    self.assertEqual(status, 409, body)
    status, body, _ = self.request("GET", "/api/v1/tenants")
    self.assertEqual(status, 200)
    self.assertIn("plans.test", [t["domain"] for t in body["tenants"]])

    # An account in it: usage counts, and a policy change is seen by the very next login.
    status, body, _ = self.request("POST", "/api/v1/accounts",
                                   {"address": "ann@plans.test", "password": "pw"})
    self.assertEqual(status, 201, body)
    self.server_deliver_lmtp("ann@plans.test")
    tenant, etag = self.tenant_snapshot("plans.test")
    self.assertEqual((tenant["accounts"], tenant["messages"]), (1, 1))
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    pop.user("ann@plans.test")
    pop.pass_("pw")
    pop.quit()

    # If-Match: a stale revision changes nothing (412); the current one does.
    status, body, _ = self.request("PATCH", "/api/v1/tenants/plans.test",
                                   {"plaintext_auth": "require_tls"},
                                   headers={"If-Match": '"0"'})
    self.assertEqual(status, 412, body)
    self.assertIn("revision", body["error"])
    self.assertEqual(self.tenant_snapshot("plans.test")[0], tenant)
    status, body, response = self.request("PATCH", "/api/v1/tenants/plans.test",
                                          {"plaintext_auth": "require_tls"},
                                          headers={"If-Match": etag})
    self.assertEqual(status, 200, body)
    self.assertEqual((body["plaintext_auth"], body["revision"]), ("require_tls", 2))
    self.assertEqual(response.getheader("ETag"), '"2"')
    # Only the given field changed.
    for name in ("quota_messages", "login_delay_s", "expire_days", "apop", "lang"):
      self.assertEqual(body[name], tenant[name], name)
    # No time for the once-a-second policy check: the API refreshed before answering.
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    with self.assertRaises(poplib.error_proto):
      pop.user("ann@plans.test")
      pop.pass_("pw")
    pop.close()

    # Limits alone leave the policy and its revision; "default" resets a setting.
    status, body, _ = self.request("PATCH", "/api/v1/tenants/plans.test",
                                   {"quota_octets": 5000, "login_delay_s": "default",
                                    "plaintext_auth": "default"})
    self.assertEqual(status, 200, body)
    self.assertEqual((body["quota_octets"], body["quota_messages"], body["login_delay_s"]),
                     (5000, 100, "default"))

    # Delete: refused while an account exists, with a message that says so.
    status, body, _ = self.request("DELETE", "/api/v1/tenants/plans.test")
    self.assertEqual(status, 409, body)
    self.assertIn("accounts", body["error"])
    self.assertEqual(self.tenant_snapshot("plans.test")[0]["accounts"], 1)
    self.assertEqual(self.request("DELETE", "/api/v1/accounts/ann@plans.test")[0], 204)
    status, body, _ = self.request("DELETE", "/api/v1/tenants/PLANS.test")
    self.assertEqual((status, body), (204, None))
    self.assertEqual(self.request("GET", "/api/v1/tenants/plans.test")[0], 404)
    self.assertEqual(self.request("DELETE", "/api/v1/tenants/plans.test")[0], 404)
    self.assertEqual(self.request("PATCH", "/api/v1/tenants/plans.test", {"apop": "deny"})[0],
                     404)

  def server_deliver_lmtp(self, address):
    lmtp = smtplib.LMTP("127.0.0.1", self.server.lmtp_port, timeout=TIMEOUT_S)
    lmtp.ehlo("mta.test")
    lmtp.mail("s@origin.test")
    self.assertEqual(lmtp.rcpt(address)[0], 250)
    lmtp.docmd("DATA")
    lmtp.send(b"Subject: t\r\n\r\nbody\r\n.\r\n")
    self.assertEqual(lmtp.getreply()[0], 250)
    lmtp.quit()

  def test_tenant_bad_input_changes_nothing(self):
    status, body, _ = self.request("POST", "/api/v1/tenants",
                                   {"domain": "steady.test", "quota_messages": 7,
                                    "login_delay_s": 60})
    self.assertEqual(status, 201, body)
    before, etag = self.tenant_snapshot("steady.test")
    bodies = (
        "not json", "[1]", "{\"quota_messages\": -1}", "{\"quota_messages\": \"10\"}",
        "{\"quota_messages\": 1.5}", "{\"login_delay_s\": true}", "{\"login_delay_s\": \"300\"}",
        "{\"login_delay_s\": {\"a\": 1}}", "{\"expire_days\": \"soon\"}",
        "{\"plaintext_auth\": 1}", "{\"apop\": \"yes\"}", "{\"lang\": \"xx\"}",
        "{\"login_mechanisms\": \"PLAIN,NOPE\"}", "{\"master_users\": \"boss@other.test\"}",
        "{\"message_bytes_max\": 99999999999}", "{\"unknown\": 1}", "{\"domain\": \"x.test\"}",
        "{\"revision\": 5}", "{\"quota_messages\": 1, \"quota_messages\": 2}",
        "{\"quota_messages\": 1, \"lang\": \"xx\"}")
    for raw in bodies:
      status, body, _ = self.request("PATCH", "/api/v1/tenants/steady.test", raw=raw)
      self.assertEqual(status, 400, raw)
      self.assertIn("error", body)
    for raw in ("not json", "{}", "{\"domain\": 5}", "{\"domain\": \"bad_domain\"}",
                "{\"domain\": \"n.test\", \"quota_octets\": \"1\"}",
                "{\"domain\": \"n.test\", \"extra\": 1}"):
      status, body, _ = self.request("POST", "/api/v1/tenants", raw=raw)
      self.assertEqual(status, 400, raw)
      self.assertIn("error", body)
    self.assertEqual(self.request("GET", "/api/v1/tenants/n.test")[0], 404)
    oversize = "{\"lang\": \"" + "x" * 70000 + "\"}"
    for method, path in (("PATCH", "/api/v1/tenants/steady.test"), ("POST", "/api/v1/tenants")):
      status, body, _ = self.request(method, path, raw=oversize)
      self.assertEqual(status, 413, method)
      self.assertIn("error", body)
    for method, path in (("GET", "/api/v1/tenants"), ("POST", "/api/v1/tenants"),
                         ("GET", "/api/v1/tenants/steady.test"),
                         ("PATCH", "/api/v1/tenants/steady.test"),
                         ("DELETE", "/api/v1/tenants/steady.test"), ("GET", "/api/v1/sessions"),
                         ("DELETE", "/api/v1/sessions/0-1"), ("GET", "/api/v1/store/usage"),
                         ("POST", "/api/v1/store/check"), ("POST", "/api/v1/store/compaction")):
      for token in (None, "wrong-token-wrong-token"):
        status, body, response = self.request(method, path, {"quota_messages": 1}, token=token)
        self.assertEqual(status, 401, (method, path))
        self.assertIn("Bearer", response.getheader("WWW-Authenticate"))
    for method, path in (("PUT", "/api/v1/tenants/steady.test"), ("DELETE", "/api/v1/tenants"),
                         ("POST", "/api/v1/tenants/steady.test")):
      status, body, response = self.request(method, path, {})
      self.assertEqual(status, 405, (method, path))
    for path in ("/api/v1/tenants/bad_domain", "/api/v1/tenants/a%2Fb.test",
                 "/api/v1/tenants/steady.test?x=1", "/api/v1/tenants/%2e%2e"):
      self.assertEqual(self.request("GET", path)[0], 400, path)
    self.assertEqual(self.request("PATCH", "/api/v1/tenants/steady.test", {"apop": "allow"},
                                  headers={"If-Match": "garbage"})[0], 412)
    after, etag_after = self.tenant_snapshot("steady.test")
    self.assertEqual((after, etag_after), (before, etag))

  def test_live_sessions_listed_and_ended(self):
    for user in ("s1@live.test", "s2@live.test", "s3@other-live.test"):
      status, body, _ = self.request("POST", "/api/v1/accounts", {"address": user, "password": "pw"})
      self.assertEqual(status, 201, body)
    self.server_deliver_lmtp("s1@live.test")
    pops = {}
    for user in ("s1@live.test", "s2@live.test", "s3@other-live.test"):
      pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
      pop.user(user)
      pop.pass_("pw")
      pops[user] = pop
    anonymous = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    try:
      status, body, _ = self.request("GET", "/api/v1/sessions?tenant=LIVE.test")
      self.assertEqual(status, 200, body)
      listed = {s["user"]: s for s in body["sessions"]}
      self.assertEqual(sorted(listed), ["s1@live.test", "s2@live.test"])
      self.assertEqual((body["truncated"], body["shards_unanswered"]), (False, 0))
      one = listed["s1@live.test"]
      self.assertEqual((one["tenant"], one["peer"], one["state"], one["tls"]),
                       ("live.test", "127.0.0.1", "transaction", False))
      self.assertGreater(one["bytes_sent"], 0)
      self.assertLess(abs(one["started_unix_ms"] / 1000 - time.time()), 60)
      self.assertRegex(one["id"], r"^\d+-\d+$")
      self.assertEqual(one["id"].split("-")[0], str(one["shard"]))
      status, body, _ = self.request("GET", "/api/v1/sessions?user=S3@Other-Live.test")
      self.assertEqual([s["user"] for s in body["sessions"]], ["s3@other-live.test"])
      status, body, _ = self.request("GET", "/api/v1/sessions")
      states = [s["state"] for s in body["sessions"]]
      self.assertGreaterEqual(len(states), 4)
      self.assertIn("authorization", states)
      self.assertEqual({s["shard"] for s in body["sessions"]} <= {0, 1}, True)

      # Ending s1's session: closed without committing its DELE.
      pops["s1@live.test"].dele(1)
      status, body, _ = self.request("DELETE", "/api/v1/sessions/" + one["id"])
      self.assertEqual((status, body), (204, None))
      with self.assertRaises((poplib.error_proto, OSError, EOFError)):
        pops["s1@live.test"].stat()
        pops["s1@live.test"].stat()
      # The client sees the close first; the shard drops the session from its list as the
      # connection's teardown completes, an instant later (under ASan on a loaded machine,
      # sometimes after the client's next request).
      def listed_users():
        return [s["user"] for s in self.request("GET", "/api/v1/sessions?tenant=live.test")[1]
                ["sessions"]]
      wait_for(lambda: listed_users() == ["s2@live.test"], timeout_s=10,
               what="the ended session to leave the list")
      self.assertEqual(self.request("DELETE", "/api/v1/sessions/" + one["id"])[0], 404)
      self.assertEqual(self.request("DELETE", "/api/v1/sessions/99-1")[0], 404)
      status, body, _ = self.request("GET", "/api/v1/accounts/s1@live.test")
      self.assertEqual(body["messages"], 1)  # the DELE was not committed
      for path in ("/api/v1/sessions/1", "/api/v1/sessions/x-1", "/api/v1/sessions?shard=1",
                   "/api/v1/sessions?tenant=a.test&user=b@a.test", "/api/v1/sessions?user=nobody"):
        status, body, _ = self.request("GET" if "?" in path else "DELETE", path)
        self.assertEqual(status, 400, path)
        self.assertIn("error", body)
      self.assertEqual(self.request("POST", "/api/v1/sessions", {})[0], 405)
      self.assertEqual(self.request("GET", "/api/v1/sessions/0-1")[0], 405)
    finally:
      for user, pop in pops.items():
        try:
          pop.quit()
        except (poplib.error_proto, OSError, EOFError):
          pass
      anonymous.close()

  def wait_for_job(self, job):
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline:
      status, body, _ = self.request("GET", "/api/v1/store/" + job)
      self.assertEqual(status, 200, body)
      if body["state"] in ("done", "failed"):
        return body
      time.sleep(0.05)
    self.fail("the %s job did not finish" % job)

  def test_store_usage_check_and_compaction(self):
    status, body, _ = self.request("POST", "/api/v1/accounts",
                                   {"address": "u1@usage.test", "password": "pw"})
    self.assertEqual(status, 201, body)
    self.server_deliver_lmtp("u1@usage.test")
    status, body, _ = self.request("GET", "/api/v1/store/usage")
    self.assertEqual(status, 200, body)
    tenants = {t["domain"]: t for t in body["tenants"]}
    self.assertEqual((tenants["usage.test"]["accounts"], tenants["usage.test"]["messages"]), (1, 1))
    self.assertEqual(body["accounts"], sum(t["accounts"] for t in body["tenants"]))
    self.assertGreater(body["segment_file_bytes"], 0)

    for job in ("check", "compaction"):
      status, body, response = self.request("POST", "/api/v1/store/" + job)
      self.assertEqual(status, 202, body)
      self.assertEqual(response.getheader("Location"), "/api/v1/store/" + job)
      self.assertIn(body["state"], ("running", "done"))
      done = self.wait_for_job(job)
      self.assertEqual(done["state"], "done", done)
      self.assertGreaterEqual(done["runs"], 1)
      self.assertGreaterEqual(done["finished_unix_ms"], done["started_unix_ms"])
    done = self.wait_for_job("check")
    self.assertEqual(done["result"]["ok"], True, done)
    self.assertEqual(done["result"]["problems"], [])
    self.assertGreaterEqual(done["result"]["accounts"], 1)
    self.assertIn("bytes_reclaimed", self.wait_for_job("compaction")["result"])
    # Bad input: a body with members, malformed JSON, a query, another method; no job starts.
    runs = {job: self.wait_for_job(job)["runs"] for job in ("check", "compaction")}
    for raw in ("{\"now\": true}", "not json", "[]"):
      for job in ("check", "compaction"):
        status, body, _ = self.request("POST", "/api/v1/store/" + job, raw=raw)
        self.assertEqual(status, 400, raw)
        self.assertIn("error", body)
    self.assertEqual(self.request("GET", "/api/v1/store/usage?x=1")[0], 400)
    self.assertEqual(self.request("POST", "/api/v1/store/usage", {})[0], 405)
    self.assertEqual(self.request("DELETE", "/api/v1/store/compaction")[0], 405)
    self.assertEqual(self.request("GET", "/api/v1/store/other")[0], 404)
    self.assertEqual(self.request("POST", "/api/v1/store/compaction",
                                  raw="{\"x\": \"" + "y" * 70000 + "\"}")[0], 413)
    for job in ("check", "compaction"):
      self.assertEqual(self.wait_for_job(job)["runs"], runs[job], job)
    status, body, _ = self.request("GET", "/api/v1/accounts/u1@usage.test")
    self.assertEqual(body["messages"], 1)

  def test_off_by_default(self):
    server = PosthasteServer(shards=1)
    server.start()
    try:
      self.assertIn("admin_api=off", server.stderr_text())
    finally:
      server.stop()


if __name__ == "__main__":
  unittest.main()
