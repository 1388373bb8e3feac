"""Python's smtplib.LMTP against the real `posthaste serve` LMTP listener, read back over POP3.

Shows: LHLO capabilities; a delivered message comes back from RETR byte-exact (with the
Return-Path line LMTP adds, dot-stuffed and bare-LF lines included); after DATA one reply per
accepted recipient, each 250 only for a stored copy; RCPT verdicts from the store: unknown
550 5.1.1, disabled 550 5.2.1, over quota 452 4.2.2 (552 5.2.2 with
--lmtp_over_quota=permanent), declared SIZE over the tenant's limit 552 5.3.4; multi-recipient
DATA with an unknown and an over-quota recipient stores only the good copy; one message to
many recipients lands once in each mailbox (duplicates stored once); pipelined commands; a POP3
session open during deliveries keeps its snapshot and the next session sees them; SIGTERM while
LMTP sessions are idle; an idle session gets 421 4.4.2 and is closed.

smtplib.LMTP.sendmail() reads only one reply after DATA (it is SMTP's sendmail), so the tests
drive MAIL/RCPT/DATA themselves and read the remaining per-recipient replies with getreply().
"""

import poplib
import smtplib
import socket
import time
import unittest

from tests.testing.posthaste_server import PosthasteServer, metric_sum, wire_form

PASSWORD = "lmtp test password"
TIMEOUT_S = 60
SENDER = "sender@origin.test"


def return_path(sender):
  return b"Return-Path: <" + sender.encode() + b">\r\n"


class LmtpSmtplibTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer(shards=2)
    for user in ("alice", "bob", "carol", "dave", "erin", "full", "off", "multi1", "multi2",
                 "pipe", "snap", "gone"):
      cls.server.add_user(user + "@example.test", PASSWORD)
    cls.server.add_user("someone@small.test", PASSWORD)
    # full@ holds one message and may hold one; off@ is disabled; small.test takes 100 octets.
    cls.server.run_cli(["user", "quota"], ["full@example.test", "--messages=1"])
    cls.server.deliver("full@example.test", b"Subject: first\r\n\r\nfills the quota\r\n")
    cls.server.run_cli(["user", "disable"], ["off@example.test"])
    cls.server.run_cli(["tenant", "limits"], ["small.test", "--max_message_bytes=100"])
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def lmtp(self):
    client = smtplib.LMTP("127.0.0.1", self.server.lmtp_port, timeout=TIMEOUT_S)
    code, _ = client.ehlo("mta.test")  # smtplib.LMTP sends LHLO
    self.assertEqual(code, 250)
    return client

  def pop(self, user):
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    pop.user(user)
    pop.pass_(PASSWORD)
    return pop

  def retr_all(self, user):
    pop = self.pop(user)
    try:
      count, _ = pop.stat()
      out = []
      for i in range(1, count + 1):
        _, lines, _ = pop.retr(i)
        out.append(b"".join(line + b"\r\n" for line in lines))
      return out
    finally:
      pop.quit()

  def transaction(self, client, rcpts, message, sender=SENDER):
    """MAIL, RCPTs, DATA; returns (rcpt replies, per-recipient DATA replies)."""
    code, _ = client.mail(sender)
    self.assertEqual(code, 250)
    rcpt_replies = [client.rcpt(r) for r in rcpts]
    accepted = sum(1 for code, _ in rcpt_replies if code == 250)
    if accepted == 0:
      return rcpt_replies, []
    code, _ = client.docmd("DATA")
    self.assertEqual(code, 354)
    client.send(_stuffed(message) + b".\r\n")
    data_replies = [client.getreply() for _ in range(accepted)]
    return rcpt_replies, data_replies

  def test_capabilities(self):
    client = self.lmtp()
    for extension in ("pipelining", "enhancedstatuscodes", "8bitmime", "size"):
      self.assertTrue(client.has_extn(extension), extension)
    client.quit()

  def test_delivery_is_byte_exact_over_pop3(self):
    raw = (b"From: a@origin.test\r\nTo: alice@example.test\r\nSubject: exact\r\n\r\n"
           b"line one\r\n.starts with a dot\r\n..two dots\r\nbare lf\n\xe9 8-bit\r\nlast\r\n")
    delivered_before = metric_sum(self.server.metrics(), "posthaste_lmtp_deliveries_total",
                                  result="delivered")
    client = self.lmtp()
    rcpt, data = self.transaction(client, ["alice@example.test"], raw)
    client.quit()
    # Counted per stored copy on /metrics (before the reply, on the connection's shard).
    self.assertEqual(metric_sum(self.server.metrics(), "posthaste_lmtp_deliveries_total",
                                result="delivered") - delivered_before, 1)
    self.assertEqual(rcpt, [(250, b"2.1.5 OK")])
    self.assertEqual(len(data), 1)
    self.assertEqual(data[0][0], 250)
    self.assertIn(b"2.1.5", data[0][1])
    self.assertEqual(self.retr_all("alice@example.test"), [return_path(SENDER) + wire_form(raw)])

  def test_rcpt_verdicts(self):
    client = self.lmtp()
    client.mail(SENDER, ["SIZE=500"])
    self.assertEqual(client.rcpt("nobody@example.test")[0:1], (550,))
    self.assertIn(b"5.1.1", client.rcpt("nobody@example.test")[1])
    code, text = client.rcpt("off@example.test")
    self.assertEqual((code, text[:5]), (550, b"5.2.1"))
    code, text = client.rcpt("full@example.test")
    self.assertEqual((code, text[:5]), (452, b"4.2.2"))
    code, text = client.rcpt("someone@small.test")  # SIZE=500 over the tenant's 100
    self.assertEqual((code, text[:5]), (552, b"5.3.4"))
    code, text = client.rcpt("not an address")
    self.assertEqual(code // 100, 5)
    code, text = client.rcpt("bob@example.test")
    self.assertEqual((code, text[:5]), (250, b"2.1.5"))
    client.rset()
    client.quit()

  def test_multi_recipient_with_unknown_and_over_quota(self):
    before_full = len(self.retr_all("full@example.test"))
    raw = b"Subject: many\r\n\r\nto several\r\n"
    client = self.lmtp()
    rcpt, data = self.transaction(
        client, ["carol@example.test", "nobody@example.test", "full@example.test"], raw)
    client.quit()
    self.assertEqual([code for code, _ in rcpt], [250, 550, 452])
    self.assertEqual(len(data), 1)  # one reply per accepted RCPT
    self.assertEqual(data[0][0], 250)
    self.assertEqual(self.retr_all("carol@example.test"), [return_path(SENDER) + wire_form(raw)])
    self.assertEqual(len(self.retr_all("full@example.test")), before_full)

  def test_one_message_many_mailboxes_once_each(self):
    raw = b"Subject: fan-out\r\n\r\n" + (b"x" * 998 + b"\r\n") * 70
    client = self.lmtp()
    rcpt, data = self.transaction(client, [
        "multi1@example.test", "multi2@example.test", "multi1@EXAMPLE.TEST",
        "dave@example.test"
    ], raw)
    client.quit()
    self.assertEqual([code for code, _ in rcpt], [250, 250, 250, 250])
    # One reply per RCPT (the duplicate shares its copy's outcome).
    self.assertEqual([code for code, _ in data], [250, 250, 250, 250])
    for user in ("multi1", "multi2", "dave"):
      self.assertEqual(self.retr_all(user + "@example.test"),
                       [return_path(SENDER) + wire_form(raw)], user)

  def test_pipelined_transactions(self):
    raw = b"Subject: piped\r\n\r\nbody\r\n"
    with socket.create_connection(("127.0.0.1", self.server.lmtp_port), TIMEOUT_S) as s:
      f = s.makefile("rb")
      self.assertTrue(f.readline().startswith(b"220 "))
      s.sendall(b"LHLO mta.test\r\n")
      while not f.readline().startswith(b"250 "):
        pass
      one = (b"MAIL FROM:<p@origin.test>\r\nRCPT TO:<pipe@example.test>\r\n"
             b"RCPT TO:<nobody@example.test>\r\nDATA\r\n" + raw + b".\r\n")
      s.sendall(one * 3 + b"QUIT\r\n")
      replies = [f.readline() for _ in range(3 * 5 + 1)]
    codes = [line[:3] for line in replies]
    self.assertEqual(codes, [b"250", b"250", b"550", b"354", b"250"] * 3 + [b"221"], replies)
    self.assertEqual(self.retr_all("pipe@example.test"),
                     [return_path("p@origin.test") + wire_form(raw)] * 3)

  def test_message_over_the_tenant_limit_without_size_is_refused_after_data(self):
    client = self.lmtp()
    rcpt, data = self.transaction(client, ["someone@small.test", "erin@example.test"],
                                  b"Subject: big\r\n\r\n" + b"y" * 200 + b"\r\n")
    client.quit()
    self.assertEqual([code for code, _ in rcpt], [250, 250])  # no SIZE= declared
    self.assertEqual([(code, text[:5]) for code, text in data], [(552, b"5.3.4"),
                                                                 (250, b"2.1.5")])
    self.assertEqual(len(self.retr_all("erin@example.test")), 1)
    self.assertEqual(len(self.retr_all("someone@small.test")), 0)

  def test_client_gone_mid_delivery(self):
    raw = b"Subject: gone\r\n\r\nthe MTA hung up\r\n"
    s = socket.create_connection(("127.0.0.1", self.server.lmtp_port), TIMEOUT_S)
    s.sendall(b"LHLO mta.test\r\nMAIL FROM:<g@origin.test>\r\n"
              b"RCPT TO:<gone@example.test>\r\nDATA\r\n" + raw + b".\r\n")
    s.close()  # gone with the greeting unread: the kernel resets the connection
    # Depending on when the reset lands the server has read the message (the copy completes;
    # the MTA, having no 250, would retry: LMTP's usual duplicate risk) or not (nothing is
    # stored). Either way at most one intact copy, and the server carries on.
    time.sleep(1)
    client = self.lmtp()
    self.assertEqual(client.noop()[0], 250)
    client.quit()
    stored = self.retr_all("gone@example.test")
    self.assertIn(stored, ([], [return_path("g@origin.test") + wire_form(raw)]))

  def test_open_pop3_session_keeps_its_snapshot(self):
    user = "snap@example.test"
    client = self.lmtp()
    self.transaction(client, [user], b"Subject: before\r\n\r\n1\r\n")
    pop = self.pop(user)
    self.assertEqual(pop.stat()[0], 1)
    self.transaction(client, [user], b"Subject: during\r\n\r\n2\r\n")
    self.assertEqual(pop.stat()[0], 1)
    self.assertEqual(len(pop.list()[1]), 1)
    pop.quit()
    client.quit()
    self.assertEqual(len(self.retr_all(user)), 2)

  def test_over_quota_permanent_configuration(self):
    # A second server on a copy of the configuration would need the data directory; instead
    # restart this one with the flag and put it back afterwards.
    self.server.stop()
    self.server.extra_args = ["--lmtp_over_quota=permanent"]
    try:
      self.server.start()
      client = self.lmtp()
      client.mail(SENDER)
      code, text = client.rcpt("full@example.test")
      self.assertEqual((code, text[:5]), (552, b"5.2.2"))
      client.quit()
    finally:
      self.server.stop()
      self.server.extra_args = []
      self.server.start()


class LmtpDrainTest(unittest.TestCase):

  def test_sigterm_closes_idle_lmtp_connections_at_once(self):
    server = PosthasteServer(shards=2, extra_args=["--drain_timeout_s=30"])
    server.add_user("drain@example.test", PASSWORD)
    server.start()
    try:
      clients = []
      for _ in range(4):  # spread over both shards
        client = smtplib.LMTP("127.0.0.1", server.lmtp_port, timeout=TIMEOUT_S)
        client.ehlo("mta.test")
        clients.append(client)
      # One transaction completes first, so that connection is idle between messages.
      clients[0].mail(SENDER)
      clients[0].rcpt("drain@example.test")
      clients[0].docmd("DATA")
      clients[0].send(b"Subject: before stop\r\n\r\nx\r\n.\r\n")
      self.assertEqual(clients[0].getreply()[0], 250)
      started = time.monotonic()
      server.terminate()
      for client in clients:
        code, text = client.getreply()
        self.assertEqual((code, text[:5]), (421, b"4.3.2"))
      server.wait_exit()
      # Well inside --drain_timeout_s: the idle MTA connections did not hold the drain.
      self.assertLess(time.monotonic() - started, 15)
    finally:
      server.stop()


class LmtpIdleTimeoutTest(unittest.TestCase):

  def test_idle_connection_gets_421_then_eof_and_mail_in_flight_is_not_lost(self):
    server = PosthasteServer(shards=1,
                             extra_args=["--lmtp_idle_timeout_s=1", "--hostname=idle.test"])
    server.add_user("idle@example.test", PASSWORD)
    server.start()
    try:
      client = smtplib.LMTP("127.0.0.1", server.lmtp_port, timeout=TIMEOUT_S)
      client.ehlo("mta.test")
      client.mail(SENDER)
      client.rcpt("idle@example.test")
      client.docmd("DATA")
      client.send(b"Subject: in time\r\n\r\nx\r\n.\r\n")
      self.assertEqual(client.getreply()[0], 250)
      started = time.monotonic()
      code, text = client.getreply()  # nothing sent for longer than the timeout
      self.assertEqual((code, text), (421, b"4.4.2 idle.test Idle timeout, closing connection"))
      self.assertLess(time.monotonic() - started, 10)
      self.assertEqual(client.sock.recv(1), b"")  # then the server closed
      client.close()
      pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=TIMEOUT_S)
      pop.user("idle@example.test")
      pop.pass_(PASSWORD)
      self.assertEqual(pop.stat()[0], 1)
      pop.quit()
    finally:
      server.stop()


def _stuffed(message):
  """`message` as DATA sends it: CRLF line ends, leading dots doubled."""
  out = []
  for line in wire_form(message).split(b"\r\n")[:-1]:
    out.append((b"." + line if line.startswith(b".") else line) + b"\r\n")
  return b"".join(out)


if __name__ == "__main__":
  unittest.main()
