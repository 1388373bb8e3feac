"""Hostile input against the real `posthaste serve`: LMTP and POP3 line handling.

Shows (issue 12): only <CRLF>.<CRLF> ends DATA and only CRLF ends a command line. Each
SMTP-smuggling end-of-data variant is sent after a real transaction to alice, followed by a
"smuggled" MAIL/RCPT/DATA to bob; what was delivered to whom is then read back over POP3: alice
gets exactly one message holding the smuggled text as content, bob gets nothing. A command line
ending in a bare LF gets one error and the connection closes, over LMTP and POP3. The POP3
argument grammar is the same for every command (single spaces, printable octets, numbers as
digits within range).
"""

import poplib
import socket
import time
import unittest

from tests.testing.posthaste_server import PosthasteServer

PASSWORD = "hostile test password"
TIMEOUT_S = 30

# End-of-data look-alikes that lenient servers honour (SMTP smuggling, 2023).
FAKE_ENDS = [
    b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r\n\x00.\r\n", b"\r.\r",
    b"\n.\r", b"\r\n.\x00\r\n", b"\n\r.\r\n", b"\r\n .\r\n",
]


class LineReader:
  """Reads CRLF lines from a socket, with a deadline."""

  def __init__(self, sock):
    self.sock = sock
    self.buf = b""

  def line(self):
    deadline = time.monotonic() + TIMEOUT_S
    while b"\r\n" not in self.buf:
      if time.monotonic() > deadline:
        raise AssertionError("no reply line within %d s; have %r" % (TIMEOUT_S, self.buf))
      chunk = self.sock.recv(65536)
      if not chunk:
        raise EOFError("connection closed; have %r" % self.buf)
      self.buf += chunk
    line, self.buf = self.buf.split(b"\r\n", 1)
    return line

  def reply(self):
    """An SMTP/LMTP reply (all its lines); returns the last line."""
    while True:
      line = self.line()
      if len(line) < 4 or line[3:4] != b"-":
        return line

  def at_eof(self):
    """True when the peer closes (after any buffered bytes) within the deadline."""
    self.sock.settimeout(TIMEOUT_S)
    try:
      while True:
        chunk = self.sock.recv(65536)
        if not chunk:
          return True
    except (ConnectionResetError, socket.timeout):
      return False


class HostileLmtpPop3Test(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer(shards=2)
    for user in ("alice", "bob", "carol"):
      cls.server.add_user(user + "@t.test", PASSWORD)
    cls.server.deliver("carol@t.test", b"Subject: one\r\n\r\nbody\r\n")
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def connect(self, port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    self.addCleanup(sock.close)
    return sock, LineReader(sock)

  def lmtp_command(self, sock, reader, command, expect):
    sock.sendall(command + b"\r\n")
    reply = reader.reply()
    self.assertTrue(reply.startswith(expect), (command, reply))
    return reply

  def messages(self, user):
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    try:
      pop.user(user)
      pop.pass_(PASSWORD)
      count, _ = pop.stat()
      return [b"\r\n".join(pop.retr(i)[1]) for i in range(1, count + 1)]
    finally:
      pop.quit()

  def test_smuggled_end_of_data_delivers_only_to_the_real_recipient(self):
    for fake_end in FAKE_ENDS:
      with self.subTest(fake_end=fake_end):
        alice_before = len(self.messages("alice@t.test"))
        sock, reader = self.connect(self.server.lmtp_port)
        self.assertTrue(reader.line().startswith(b"220 "))
        self.lmtp_command(sock, reader, b"LHLO mta.test", b"250")
        self.lmtp_command(sock, reader, b"MAIL FROM:<a@b.test>", b"250")
        self.lmtp_command(sock, reader, b"RCPT TO:<alice@t.test>", b"250")
        self.lmtp_command(sock, reader, b"DATA", b"354")
        sock.sendall(b"Subject: outer\r\n\r\nhello" + fake_end +
                     b"MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<bob@t.test>\r\nDATA\r\n"
                     b"Subject: SMUGGLED\r\n\r\nevil\r\n.\r\n")
        # Exactly one reply: alice's copy. A smuggled transaction would add 250, 250, 354.
        self.assertTrue(reader.reply().startswith(b"250 2.1.5"))
        self.lmtp_command(sock, reader, b"NOOP", b"250")
        self.lmtp_command(sock, reader, b"QUIT", b"221")
        alice = self.messages("alice@t.test")
        self.assertEqual(len(alice), alice_before + 1)
        self.assertIn(b"MAIL FROM:<ceo@bank.test>", alice[-1])
        self.assertIn(b"Subject: SMUGGLED", alice[-1])
        self.assertTrue(alice[-1].startswith(b"Return-Path: <a@b.test>"))
    self.assertEqual(self.messages("bob@t.test"), [])

  def test_lmtp_command_ending_in_bare_lf_is_refused_and_closed(self):
    sock, reader = self.connect(self.server.lmtp_port)
    reader.line()
    self.lmtp_command(sock, reader, b"LHLO mta.test", b"250")
    sock.sendall(b"MAIL FROM:<ceo@bank.test>\nRCPT TO:<bob@t.test>\r\nDATA\r\nevil\r\n.\r\n")
    reply = reader.reply()
    self.assertTrue(reply.startswith(b"500 5.5.2"), reply)
    self.assertIn(b"Bare LF", reply)
    self.assertTrue(reader.at_eof())
    self.assertEqual(self.messages("bob@t.test"), [])

  def pop3_login(self):
    sock, reader = self.connect(self.server.pop3_port)
    self.assertTrue(reader.line().startswith(b"+OK"))
    sock.sendall(b"USER carol@t.test\r\nPASS " + PASSWORD.encode() + b"\r\n")
    self.assertTrue(reader.line().startswith(b"+OK"))
    self.assertTrue(reader.line().startswith(b"+OK"))
    return sock, reader

  def test_pop3_bare_lf_closes_without_running_later_commands(self):
    sock, reader = self.pop3_login()
    sock.sendall(b"DELE 1\nQUIT\r\n")
    self.assertEqual(reader.line(), b"-ERR Lines must end with CRLF, closing connection")
    self.assertTrue(reader.at_eof())
    self.assertEqual(len(self.messages("carol@t.test")), 1)  # neither DELE nor QUIT ran

  def test_pop3_one_argument_grammar(self):
    sock, reader = self.pop3_login()
    cases = [
        (b"NOOP\t", b"-ERR Syntax error: control character"),
        (b"RETR 1\t", b"-ERR Syntax error: control character"),
        (b"STAT \xc3\xa9", b"-ERR Syntax: STAT takes no arguments"),
        (b"TOP 1 99999999999999999999999", b"-ERR Invalid number of lines"),
        (b"RETR  1", b"-ERR Syntax error: arguments are separated by a single space"),
        (b"LIST 1 ", b"-ERR Syntax error: arguments are separated by a single space"),
        (b"DELE 1 2", b"-ERR Syntax: DELE msg"),
        (b"RETR -1", b"-ERR Invalid message number"),
        (b"UIDL 99999999999999999999999", b"-ERR Invalid message number"),
        (b"LIST 2", b"-ERR no such message"),
        (b"NOOP\rRSET", b"-ERR Syntax error: control character"),
        (b"STAT", b"+OK 1 "),
    ]
    for command, expect in cases:
      with self.subTest(command=command):
        sock.sendall(command + b"\r\n")
        self.assertTrue(reader.line().startswith(expect), command)
    sock.sendall(b"QUIT\r\n")
    self.assertTrue(reader.line().startswith(b"+OK"))


if __name__ == "__main__":
  unittest.main()
