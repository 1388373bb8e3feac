"""Online administration: the real CLI against a running `posthaste serve` (DIR/admin.sock).

Shows: the socket is created mode 0600 and removed at shutdown; `user add` (password on stdin),
`user list`, `user show`, `deliver` (prints the UIDL that POP3 then reports), `import maildir`
with a relative path, `user quota` and `user disable` (LMTP and POP3 see them at once), `user
passwd`, `user del`, all with the exact command forms used offline; errors keep their one-line
form and exit status; `check` is refused while serving; garbage on the socket gets an error
answer and the server carries on; after the server stops the same commands run offline.
"""

import os
import poplib
import smtplib
import socket
import stat
import struct
import subprocess
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, wire_form

TIMEOUT_S = 60


class AdminOnlineTest(unittest.TestCase):

  def setUp(self):
    self.server = PosthasteServer(shards=2)
    self.server.add_user("first@example.test", "pw1")
    self.server.start()
    self.addCleanup(self.server.stop)
    self.socket_path = os.path.join(self.server.data_dir, "admin.sock")

  def cli(self, *argv, stdin=b"", cwd=None):
    """Runs the real CLI while the server runs; returns (status, stdout, stderr)."""
    result = subprocess.run([self.server.binary, *argv], input=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=TIMEOUT_S, cwd=cwd, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()

  def ok(self, *argv, stdin=b"", cwd=None):
    status, out, err = self.cli(*argv, stdin=stdin, cwd=cwd)
    self.assertEqual(status, 0, err)
    return out

  def dd(self):
    return "--data_dir=" + self.server.data_dir

  def pop_login(self, user, password):
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    pop.user(user)
    pop.pass_(password)
    return pop

  def test_socket_is_owner_only_and_removed_at_stop(self):
    mode = os.stat(self.socket_path).st_mode
    self.assertTrue(stat.S_ISSOCK(mode))
    self.assertEqual(stat.S_IMODE(mode), 0o600)
    self.server.stop()
    self.assertFalse(os.path.exists(self.socket_path))
    # Offline again: the same command opens the store itself.
    self.assertIn("first@example.test\t0\t0", self.ok("user", "list", self.dd()))
    self.server.start()

  def test_user_commands_deliver_and_import_while_serving(self):
    self.assertEqual(self.ok("user", "add", self.dd(), "second@example.test", stdin=b"pw2\n"),
                     "added second@example.test\n")
    self.assertEqual(self.ok("user", "list", self.dd(), "example.test"),
                     "first@example.test\t0\t0\nsecond@example.test\t0\t0\n")
    raw = b"Subject: online\n\nbody\n.dot\n"
    uidl = self.ok("deliver", self.dd(), "second@example.test", stdin=raw).strip()
    pop = self.pop_login("second@example.test", "pw2")
    self.assertEqual(pop.uidl(1).split()[2].decode(), uidl)
    _, lines, _ = pop.retr(1)
    self.assertEqual(b"".join(l + b"\r\n" for l in lines), wire_form(raw))
    pop.quit()

    # import maildir with a path relative to the CLI's working directory.
    work = make_temp_dir("maildir-")
    for sub in ("cur", "new", "tmp"):
      os.makedirs(os.path.join(work, "Maildir", sub))
    with open(os.path.join(work, "Maildir", "cur", "1700000000.a.host:2,S"), "wb") as f:
      f.write(b"Subject: imported\n\nfrom a maildir\n")
    out = self.ok("import", "maildir", self.dd(), "first@example.test", "Maildir", cwd=work)
    self.assertIn("imported 1 messages", out)
    self.assertIn("first@example.test\t1\t", self.ok("user", "list", self.dd()))

    self.ok("user", "passwd", self.dd(), "second@example.test", stdin=b"new password\n")
    self.pop_login("second@example.test", "new password").quit()
    show = self.ok("user", "show", self.dd(), "second@example.test")
    self.assertIn("messages\t1\n", show)
    self.assertEqual(self.ok("user", "del", self.dd(), "second@example.test"),
                     "deleted second@example.test\n")
    self.assertNotIn("second@", self.ok("user", "list", self.dd()))

  def test_quota_and_disable_take_effect_at_once(self):
    self.ok("user", "quota", self.dd(), "first@example.test", "--messages=1")
    lmtp = smtplib.LMTP("127.0.0.1", self.server.lmtp_port, timeout=TIMEOUT_S)
    lmtp.ehlo("mta.test")
    lmtp.mail("s@origin.test")
    self.assertEqual(lmtp.rcpt("first@example.test")[0], 250)
    lmtp.docmd("DATA")
    lmtp.send(b"Subject: one\r\n\r\nx\r\n.\r\n")
    self.assertEqual(lmtp.getreply()[0], 250)
    lmtp.mail("s@origin.test")
    code, text = lmtp.rcpt("first@example.test")
    self.assertEqual((code, text[:5]), (452, b"4.2.2"))
    lmtp.rset()
    self.ok("user", "quota", self.dd(), "first@example.test", "--messages=0")
    self.ok("user", "disable", self.dd(), "first@example.test")
    lmtp.mail("s@origin.test")
    code, text = lmtp.rcpt("first@example.test")
    self.assertEqual((code, text[:5]), (550, b"5.2.1"))
    lmtp.quit()
    with self.assertRaises(poplib.error_proto):
      self.pop_login("first@example.test", "pw1")
    self.ok("user", "enable", self.dd(), "first@example.test")
    self.pop_login("first@example.test", "pw1").quit()

  def test_errors_keep_their_form(self):
    status, out, err = self.cli("user", "del", self.dd(), "nobody@example.test")
    self.assertEqual((status, out), (1, ""))
    self.assertEqual(err, "posthaste: user del: unknown user nobody@example.test\n")
    status, _, err = self.cli("user", "add", self.dd(), "first@example.test", stdin=b"x\n")
    self.assertEqual(status, 1)
    self.assertIn("already exists", err)
    status, _, err = self.cli("user", "add", self.dd(), "x@example.test", stdin=b"\n")
    self.assertEqual(status, 1)
    self.assertIn("empty password", err)
    status, _, err = self.cli("user", "list", self.dd(), "--bogus=1")
    self.assertEqual(status, 2)
    status, _, err = self.cli("check", self.dd())
    self.assertEqual(status, 1)
    self.assertIn("stop the server first", err)

  def connect_socket(self):
    # sun_path is 108 bytes; $TEST_TMPDIR paths are longer: go through a descriptor of DIR.
    dir_fd = os.open(self.server.data_dir, os.O_PATH | os.O_DIRECTORY)
    self.addCleanup(os.close, dir_fd)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT_S)
    s.connect("/proc/self/fd/%d/admin.sock" % dir_fd)
    return s

  def test_garbage_on_the_socket_is_answered_and_harmless(self):
    for junk in (b"GET / HTTP/1.0\r\n\r\n", b"PHADMIN1" + struct.pack("<I", 100000),
                 b"PHADMIN1" + struct.pack("<I", 1) + struct.pack("<I", 1 << 30)):
      with self.connect_socket() as s:
        s.sendall(junk)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
          chunk = s.recv(4096)
          if not chunk:
            break
          answer += chunk
      self.assertTrue(answer.startswith(b"PHADMIN1"), answer)
      self.assertIn(b"admin protocol", answer)
    # A client that connects and sends half a request, then goes away.
    with self.connect_socket() as s:
      s.sendall(b"PHADMIN1\x02\x00")
    self.assertIn("first@example.test", self.ok("user", "list", self.dd()))


if __name__ == "__main__":
  unittest.main()
