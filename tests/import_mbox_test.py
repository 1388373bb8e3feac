"""`posthaste import mbox` with files written by Python's `mailbox` module, read back by poplib.

Shows: an mbox of messages with "From " lines in their bodies (escaped by the writer) imports
offline, and each message retrieved over POP3 is the original with CRLF line endings; running
the import again imports nothing (deterministic UIDLs), and appending to the file imports only
the new message, this time through the running server's admin socket; a file that is not an
mbox is refused with a clear error and nothing stored.
"""

import email.message
import mailbox
import os
import poplib
import subprocess
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir

TIMEOUT_S = 60
USER = "mboxer@import.test"
PASSWORD = "mbox password"


def make_message(subject, body):
  message = email.message.Message()
  message["From"] = "sender@example.org"
  message["To"] = USER
  message["Subject"] = subject
  message.set_payload(body)
  return message


def crlf(text):
  return text.replace("\n", "\r\n").encode()


class ImportMboxTest(unittest.TestCase):

  def setUp(self):
    self.server = PosthasteServer()
    self.addCleanup(self.server.stop)
    self.server.add_user(USER, PASSWORD)
    self.path = os.path.join(make_temp_dir("mbox-"), "inbox.mbox")
    self.messages = [
        make_message("plain", "hello\n"),
        # (No line that already starts with ">From ": Python writes mboxo, which cannot tell
        # it from an escaped "From " line; the splitter reads mboxrd.)
        make_message("from lines", "From the top of the body\n\nFrom a new paragraph\n"),
        make_message("dots", ".leading dot\n..two\n"),
    ]
    box = mailbox.mbox(self.path)
    for message in self.messages:
      box.add(message)
    box.flush()
    box.close()

  def cli(self, *args):
    result = subprocess.run([self.server.binary, *args, "--data_dir=" + self.server.data_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S,
                            check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()

  def retrieve_all(self):
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    pop.user(USER)
    pop.pass_(PASSWORD)
    count, _ = pop.stat()
    messages = [b"\r\n".join(pop.retr(i)[1]) + b"\r\n" for i in range(1, count + 1)]
    pop.quit()
    return messages

  def test_import_then_again_then_appended_online(self):
    code, out, err = self.cli("import", "mbox", USER, self.path)
    self.assertEqual(code, 0, err)
    self.assertIn("imported 3 messages", out)
    code, out, err = self.cli("import", "mbox", USER, self.path)
    self.assertEqual(code, 0, err)
    self.assertIn("imported 0 messages", out)
    self.assertIn("skipped 3 already present", out)

    self.server.start()
    retrieved = self.retrieve_all()
    self.assertEqual(len(retrieved), 3)
    for message, got in zip(self.messages, retrieved):
      self.assertEqual(got, crlf(message.as_string()))

    box = mailbox.mbox(self.path)
    box.add(make_message("appended", "new mail\n"))
    box.flush()
    box.close()
    code, out, err = self.cli("import", "mbox", USER, self.path)  # through the admin socket
    self.assertEqual(code, 0, err)
    self.assertIn("imported 1 messages", out)
    retrieved = self.retrieve_all()
    self.assertEqual(len(retrieved), 4)
    self.assertIn(b"Subject: appended", retrieved[3])

  def test_not_an_mbox_is_refused(self):
    with open(self.path, "w") as f:
      f.write("Subject: no separator\n\nbody\n")
    code, _, err = self.cli("import", "mbox", USER, self.path)
    self.assertNotEqual(code, 0)
    self.assertIn("not an mbox", err)
    self.server.start()
    self.assertEqual(self.retrieve_all(), [])


if __name__ == "__main__":
  unittest.main()
