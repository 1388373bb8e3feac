"""curl (Debian's, pop3:// URLs) against the real posthaste server.

Shows: `curl pop3://HOST:PORT/` lists the maildrop (LIST), `curl pop3://HOST:PORT/N` retrieves
each message byte-exact (curl undoes the dot-stuffing; a 10 MiB message included), `curl -X UIDL`
returns the UIDLs `deliver` printed, curl's default SASL login and an explicit AUTH=PLAIN and
AUTH=LOGIN work, several
messages over one reused connection arrive intact, a DELE through curl is committed, and a wrong password fails the transfer.
"""

import os
import shutil
import subprocess
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, wire_form

USER = "carl@example.test"
PASSWORD = "curl password"
CURL_TIMEOUT_S = 60


def curl_binary():
  path = shutil.which("curl") or "/usr/bin/curl"
  return path


class CurlTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer()
    cls.mail = messages.everyday_messages() + [messages.big_message()]
    cls.server.add_user(USER, PASSWORD)
    cls.uidls = [cls.server.deliver(USER, raw) for _, raw in cls.mail]
    cls.server.add_user("dora@example.test", PASSWORD)
    for _, raw in cls.mail[:2]:
      cls.server.deliver("dora@example.test", raw)
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def curl(self, path="/", *options, user=USER, password=PASSWORD, check=True):
    argv = [
        curl_binary(), "--silent", "--show-error", "--max-time", str(CURL_TIMEOUT_S),
        "--user", "%s:%s" % (user, password), *options,
        "pop3://127.0.0.1:%d%s" % (self.server.pop3_port, path)
    ]
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=CURL_TIMEOUT_S + 10, check=False)
    if check and result.returncode != 0:
      self.fail("%s exited %d: %s" % (" ".join(argv), result.returncode,
                                      result.stderr.decode("utf-8", "replace")))
    return result

  def test_list(self):
    out = self.curl("/").stdout
    want = b"".join(b"%d %d\r\n" % (i + 1, len(wire_form(raw)))
                    for i, (_, raw) in enumerate(self.mail))
    self.assertEqual(out, want)

  def test_retr_every_message_byte_exact(self):
    for number, (name, raw) in enumerate(self.mail, start=1):
      with self.subTest(message=name):
        out = self.curl("/%d" % number).stdout
        self.assertEqual(len(out), len(wire_form(raw)))
        self.assertTrue(out == wire_form(raw), "RETR %d (%s) differs" % (number, name))

  def test_several_messages_over_one_connection(self):
    # curl reuses the connection for URLs of the same server: RETR 1, RETR 2, ... in one
    # session, each body read to its terminator before the next command.
    outdir = make_temp_dir("curl-")
    options = []
    for number in range(1, len(self.mail) + 1):
      options += ["--output", os.path.join(outdir, str(number))]
    urls = ["pop3://127.0.0.1:%d/%d" % (self.server.pop3_port, number)
            for number in range(1, len(self.mail) + 1)]
    result = subprocess.run(
        [curl_binary(), "--silent", "--show-error", "--max-time", str(CURL_TIMEOUT_S),
         "--user", "%s:%s" % (USER, PASSWORD), "--write-out", "%{num_connects}\\n", *options,
         *urls], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CURL_TIMEOUT_S + 10,
        check=False)
    self.assertEqual(result.returncode, 0, result.stderr)
    # num_connects per transfer: 1 for the first, 0 for every reused connection.
    self.assertEqual(result.stdout.split(), [b"1"] + [b"0"] * (len(self.mail) - 1))
    for number, (name, raw) in enumerate(self.mail, start=1):
      with open(os.path.join(outdir, str(number)), "rb") as f:
        self.assertTrue(f.read() == wire_form(raw), "message %d (%s) differs" % (number, name))

  def test_uidl(self):
    out = self.curl("/", "--request", "UIDL").stdout
    want = b"".join(b"%d %s\r\n" % (i + 1, u.encode()) for i, u in enumerate(self.uidls))
    self.assertEqual(out, want)

  def test_explicit_sasl_mechanisms(self):
    want = self.curl("/1").stdout
    self.assertEqual(want, wire_form(self.mail[0][1]))
    for mechanism in ("PLAIN", "LOGIN"):
      with self.subTest(mechanism=mechanism):
        out = self.curl("/1", "--login-options", "AUTH=" + mechanism).stdout
        self.assertEqual(out, want)

  def test_wrong_password_fails(self):
    result = self.curl("/", password="not the password", check=False)
    self.assertNotEqual(result.returncode, 0)
    self.assertEqual(result.stdout, b"")

  def test_dele_is_committed(self):
    # curl sends DELE 1 then QUIT; --head keeps it from expecting a body.
    self.curl("/1", "--request", "DELE", "--head", user="dora@example.test")
    out = self.curl("/", user="dora@example.test").stdout
    self.assertEqual(out, b"1 %d\r\n" % len(wire_form(self.mail[1][1])))
    self.assertEqual(self.curl("/1", user="dora@example.test").stdout, wire_form(self.mail[1][1]))


if __name__ == "__main__":
  unittest.main()
