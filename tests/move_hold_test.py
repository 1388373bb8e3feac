"""The hold a live move puts on its source backend (PUT /api/v1/accounts/ADDRESS/hold), against the
real `posthaste serve` with two shards.

Shows: holding answers only once the user's POP3 session has been ended without committing (its
DELE is not carried out; the session is closed without a reply); logins of the held user get
-ERR [SYS/TEMP] and deliveries LMTP 451 4.2.0, while other users are served; the hold survives a
restart of the backend (it is stored with the account); releasing it serves the user again.
A QUIT racing the hold: a +OK means the deletion is in the store before the hold answer, an -ERR
means it is not, and nothing changes in the store after the hold answer (what the move's final
copy reads is final).
"""

import http.client
import json
import os
import poplib
import re
import smtplib
import threading
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, metric_sum

TOKEN = "hold-admin-token-0123456789"
USER = "held@example.test"
OTHER = "free@example.test"
PASSWORD = "held password"
TIMEOUT_S = 30
RACE_ROUNDS = 12


def message(tag):
  return ("From: t@example.test\r\nSubject: %s\r\n\r\nbody %s\r\n" % (tag, tag)).encode()


class MoveHoldTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    token_file = os.path.join(make_temp_dir("token-"), "token")
    with open(token_file, "w") as f:
      f.write(TOKEN + "\n")
    os.chmod(token_file, 0o600)
    cls.server = PosthasteServer(
        shards=2,
        extra_args=["--admin_listen=127.0.0.1:0", "--admin_token_file=" + token_file])
    cls.server.add_user(USER, PASSWORD)
    cls.server.add_user(OTHER, PASSWORD)
    cls.start_server()

  @classmethod
  def start_server(cls):
    cls.server.start()
    matches = re.findall(r"\badmin_api=127\.0\.0\.1:(\d+)", cls.server.stderr_text())
    assert matches, cls.server.stderr_text()
    cls.admin_port = int(matches[-1])

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def setUp(self):
    self.hold(False)

  # --- helpers ---
  def admin(self, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=TIMEOUT_S)
    try:
      conn.request(method, path, body=json.dumps(body) if body is not None else None,
                   headers={"Authorization": "Bearer " + TOKEN,
                            "Content-Type": "application/json"})
      response = conn.getresponse()
      text = response.read()
      return response.status, (json.loads(text) if text else None)
    finally:
      conn.close()

  def hold(self, held, user=USER):
    status, body = self.admin("PUT", "/api/v1/accounts/%s/hold" % user, {"held": held})
    self.assertEqual(status, 200, body)

  def account(self, user=USER):
    status, body = self.admin("GET", "/api/v1/accounts/" + user)
    self.assertEqual(status, 200, body)
    return body

  def messages(self, user=USER):
    return self.account(user)["messages"]

  def deliver(self, user, tag):
    """The LMTP reply code and text for one message to `user`."""
    with smtplib.LMTP("127.0.0.1", self.server.lmtp_port, timeout=TIMEOUT_S) as lmtp:
      try:
        lmtp.sendmail("t@example.test", [user], message(tag))
        return 250, ""
      except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients[user]
        return code, text.decode()
      except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error.decode()

  def login(self, user=USER):
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    pop.user(user)
    pop.pass_(PASSWORD)
    return pop

  def login_refusal(self, user=USER):
    """The -ERR line a login of `user` gets, or None when it succeeds."""
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    try:
      pop.user(user)
      try:
        pop.pass_(PASSWORD)
      except poplib.error_proto as e:
        return e.args[0].decode()
      pop.quit()
      return None
    finally:
      pop.close()

  def metric(self, name):
    return metric_sum(self.server.metrics(), name)

  def fill(self, count):
    while self.messages() < count:
      self.assertEqual(self.deliver(USER, "fill")[0], 250)

  # --- tests ---
  def test_hold_ends_the_session_without_commit_and_refuses_logins(self):
    self.fill(3)
    ended_before = self.metric("posthaste_pop3_sessions_ended_for_move_total")
    refused_before = self.metric("posthaste_pop3_held_refusals_total")
    pop = self.login()
    self.assertEqual(pop.stat()[0], 3)
    pop.dele(1)
    other = self.login(OTHER)  # another user's session is left alone

    self.hold(True)  # answered once the session has ended
    self.assertEqual(self.metric("posthaste_pop3_sessions_ended_for_move_total"),
                     ended_before + 1)
    # Closed (reset, as a takeover does) without a reply and without UPDATE: the client finds
    # the connection gone before it sends anything more.
    pop.sock.settimeout(TIMEOUT_S)
    try:
      self.assertEqual(pop.sock.recv(100), b"")
    except ConnectionResetError:
      pass
    pop.close()
    self.assertEqual(self.messages(), 3)

    refusal = self.login_refusal()
    self.assertIsNotNone(refusal)
    self.assertTrue(refusal.startswith("-ERR [SYS/TEMP]"), refusal)
    self.assertEqual(self.metric("posthaste_pop3_held_refusals_total"), refused_before + 1)
    code, text = self.deliver(USER, "during")
    self.assertEqual(code, 451, text)
    self.assertIn("4.2.0", text)
    self.assertEqual(self.deliver(OTHER, "other")[0], 250)
    other.stat()
    other.quit()

    self.hold(False)
    self.assertIsNone(self.login_refusal())
    self.assertEqual(self.deliver(USER, "after")[0], 250)
    self.assertEqual(self.messages(), 4)

  def test_hold_survives_a_restart(self):
    self.fill(1)
    self.hold(True)
    self.server.stop()
    self.start_server()
    try:
      self.assertTrue(self.account()["held"])
      self.assertFalse(self.account(OTHER)["held"])
      code, text = self.deliver(USER, "after-restart")
      self.assertEqual(code, 451, text)
      self.assertIn("4.2.0", text)
      refusal = self.login_refusal()
      self.assertIsNotNone(refusal)
      self.assertTrue(refusal.startswith("-ERR [SYS/TEMP]"), refusal)
      self.assertEqual(self.deliver(OTHER, "other")[0], 250)
      self.assertIsNone(self.login_refusal(OTHER))
    finally:
      self.hold(False)
    self.assertFalse(self.account()["held"])
    self.assertEqual(self.deliver(USER, "released")[0], 250)
    self.assertIsNone(self.login_refusal())

  def test_quit_racing_the_hold(self):
    outcomes = {"+OK": 0, "-ERR": 0, "closed": 0}
    for round_number in range(RACE_ROUNDS):
      self.hold(False)
      self.fill(1)
      pop = self.login()
      count = pop.stat()[0]
      sock = pop.sock
      # DELE every message and QUIT in one write, then hold at once: the commit may be done
      # before the hold, be refused by it, or not have started when the session is ended.
      sock.sendall(b"".join(b"DELE %d\r\n" % i for i in range(1, count + 1)) + b"QUIT\r\n")
      held = threading.Thread(target=self.hold, args=(True,))
      held.start()
      held.join(TIMEOUT_S)
      self.assertFalse(held.is_alive())
      after_hold = self.messages()
      sock.settimeout(TIMEOUT_S)
      reply = b""
      try:
        while True:
          chunk = sock.recv(4096)
          if not chunk:
            break
          reply += chunk
      except OSError:
        pass
      pop.close()
      quit_reply = reply.split(b"\r\n")[count] if reply.count(b"\r\n") > count else b""
      if quit_reply.startswith(b"+OK"):
        outcomes["+OK"] += 1
        self.assertEqual(after_hold, 0, (round_number, reply))
      elif quit_reply.startswith(b"-ERR"):
        outcomes["-ERR"] += 1
        self.assertTrue(quit_reply.startswith(b"-ERR [SYS/TEMP]"), quit_reply)
        self.assertEqual(after_hold, count, (round_number, reply))
      else:
        outcomes["closed"] += 1
        self.assertIn(after_hold, (0, count), (round_number, reply))
      # Nothing commits after the hold answer.
      self.assertEqual(self.messages(), after_hold)
    print("QUIT racing the hold, %d rounds: %s" % (RACE_ROUNDS, outcomes))


if __name__ == "__main__":
  unittest.main()
