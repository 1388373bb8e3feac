"""getmail6 (Debian's `getmail`) against the real posthaste server.

Shows: SimplePOP3Retriever retrieves every message into an mbox (through an MDA) intact, leaves
them on the server, and a second run retrieves nothing: getmail remembers messages by UIDL, so
this needs UIDLs stable across sessions. A message delivered later (server restarted on the same
port, since getmail keys its memory by server and port) is the only one the third run fetches.
"""

import os
import shutil
import subprocess
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import (PosthasteServer, make_temp_dir, read_mbox,
                                            wire_form, write_mbox_mda)

USER = "getmail@example.test"
PASSWORD = "getmail secret"
RETURN_PATH = b"Return-Path: <unknown>\n"


class GetmailTest(unittest.TestCase):

  def setUp(self):
    self.getmaildir = make_temp_dir("getmail-")
    self.mda, self.mbox = write_mbox_mda(self.getmaildir, linger_s=0.2)

  def getmail(self, port):
    rc = os.path.join(self.getmaildir, "getmailrc")
    with open(rc, "w") as f:
      f.write("[retriever]\n"
              "type = SimplePOP3Retriever\n"
              "server = 127.0.0.1\n"
              "port = %d\n"
              "username = %s\n"
              "password = %s\n"
              "timeout = 60\n"
              "\n"
              "[destination]\n"
              "type = MDA_external\n"
              "path = %s\n"
              "allow_root_commands = true\n"
              "\n"
              "[options]\n"
              "verbose = 2\n"
              "read_all = false\n"
              "delete = false\n"
              "delivered_to = false\n"
              "received = false\n" % (port, USER, PASSWORD, self.mda))
    argv = [shutil.which("getmail") or "/usr/bin/getmail", "--getmaildir", self.getmaildir,
            "--rcfile", rc]
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            timeout=180, check=False)
    log = result.stdout.decode("utf-8", "replace")
    self.assertEqual(result.returncode, 0, log)
    return log

  def check_mbox(self, mail):
    got = read_mbox(self.mbox)
    self.assertEqual(len(got), len(mail))
    for (name, raw), message in zip(mail, got):
      with self.subTest(message=name):
        # getmail's MDA_external destination adds a Return-Path header (no envelope sender
        # on POP3); the rest is the message with LF line ends.
        self.assertTrue(message.startswith(RETURN_PATH), message[:100])
        message = message[len(RETURN_PATH):]
        want = wire_form(raw).replace(b"\r\n", b"\n")
        self.assertTrue(message == want, "%s differs:\n%r\n%r" % (name, message[:400],
                                                                  want[:400]))

  def test_second_run_retrieves_nothing(self):
    server = PosthasteServer()
    mail = messages.everyday_messages()
    server.add_user(USER, PASSWORD)
    for _, raw in mail:
      server.deliver(USER, raw)
    with server:
      port = server.pop3_port
      log = self.getmail(port)
      self.assertIn("%d messages" % len(mail), log)
      self.check_mbox(mail)
      log = self.getmail(port)
      self.assertIn("0 messages", log)
      self.check_mbox(mail)
    late = ("late", b"Message-ID: <late@itest.example.test>\r\nSubject: later\r\n\r\nnew\r\n")
    server.deliver(USER, late[1])
    with server.start(pop3_port=port):
      log = self.getmail(port)
      self.assertIn("1 messages", log)
      self.check_mbox(mail + [late])
    self.assertEqual(server.mailbox_stats(USER)[0], len(mail) + 1)


if __name__ == "__main__":
  unittest.main()
