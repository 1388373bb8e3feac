"""fetchmail (Debian's) against the real posthaste server, over TLS.

Shows: fetchmail connects with implicit TLS (pop3s) and with STLS, checking the chain against a
throwaway CA made at test time, logs in (USER/PASS), retrieves every message into an mbox through an MDA, each
intact (fetchmail strips CRs for an MDA and the mbox quotes `From ` lines; both are undone
before comparing), keeps them on the server (`keep`), and with `uidl` a second run finds no
new mail (exit code 1) and delivers nothing twice. A third run without `keep` deletes them: the
maildrop is then empty.
"""

import os
import shutil
import subprocess
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import (PosthasteServer, make_temp_dir, read_mbox,
                                            wire_form, write_mbox_mda)
from tests.testing.tls_certs import TestPki

USER = "fetch@example.test"
CERT_NAME = "mail.default.test"
PASSWORD = "fetchmail pw"


class FetchmailTest(unittest.TestCase):

  def setUp(self):
    self.home = make_temp_dir("fetchmail-")
    os.chmod(self.home, 0o700)
    self.mda, self.mbox = write_mbox_mda(self.home)
    self.pki = TestPki(make_temp_dir("pki-"))
    self.cert, self.key = self.pki.issue("default", [CERT_NAME])

  def write_rc(self, port, keep, implicit_tls):
    """A fetchmailrc over TLS, the chain checked against the test CA: implicit TLS (`ssl`) on
    the pop3s port, or STLS (`sslproto TLS1.2+`, which fetchmail requires) on the plain port."""
    rc = os.path.join(self.home, "fetchmailrc")
    tls = "ssl" if implicit_tls else "sslproto 'TLS1.2+'"
    with open(rc, "w") as f:
      f.write("set no syslog\n"
              "set no bouncemail\n"
              "set invisible\n"
              "poll 127.0.0.1 with proto POP3 service %d auth password timeout 60 uidl\n"
              '  user "%s" there with password "%s" is "root" here\n'
              "  %s sslcertck sslcertfile \"%s\" sslcommonname \"%s\"\n"
              "  %s no rewrite mda \"%s\"\n" %
              (port, USER, PASSWORD, tls, self.pki.ca_cert, CERT_NAME,
               "keep" if keep else "nokeep", self.mda))
    os.chmod(rc, 0o600)
    return rc

  def fetchmail(self, rc, *options):
    env = dict(os.environ, FETCHMAILHOME=self.home, HOME=self.home, FETCHMAILUSER="root")
    argv = [shutil.which("fetchmail") or "/usr/bin/fetchmail", "--fetchmailrc", rc,
            "--idfile", os.path.join(self.home, "fetchids"),
            "--pidfile", os.path.join(self.home, "fetchmail.pid"), "--verbose", "--nodetach",
            *options]
    result = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            timeout=180, check=False)
    return result.returncode, result.stdout.decode("utf-8", "replace")

  def test_retrieve_everything_into_an_mbox(self):
    server = PosthasteServer(extra_args=["--tls_cert=" + self.cert, "--tls_key=" + self.key,
                                         "--pop3s_listen=127.0.0.1:0"])
    mail = messages.everyday_messages() + [messages.big_message(size=2 * 1024 * 1024)]
    server.add_user(USER, PASSWORD)
    for _, raw in mail:
      server.deliver(USER, raw)
    with server:
      code, log = self.fetchmail(self.write_rc(server.pop3s_port, keep=True, implicit_tls=True))
      self.assertEqual(code, 0, log)
      self.assertRegex(log, r"SSL/TLS: using protocol TLSv1\.[23]", log)
      got = read_mbox(self.mbox)
      self.assertEqual(len(got), len(mail), log)
      for (name, raw), message in zip(mail, got):
        with self.subTest(message=name):
          want = wire_form(raw).replace(b"\r\n", b"\n")
          self.assertTrue(message == want, "%s differs:\n%r\n%r" %
                          (name, message[:400], want[:400]))

      # uidl + keep: nothing new the second time (exit code 1: no mail), nothing delivered.
      code, log = self.fetchmail(self.write_rc(server.pop3_port, keep=True, implicit_tls=False))
      self.assertEqual(code, 1, log)
      self.assertIn("STLS", log)
      self.assertEqual(len(read_mbox(self.mbox)), len(mail))

    # Without keep, and with --all (messages already seen are fetched too), fetchmail fetches
    # and deletes everything: the maildrop is empty afterwards.
    with server.start():
      code, log = self.fetchmail(self.write_rc(server.pop3s_port, keep=False, implicit_tls=True),
                                 "--all")
      self.assertEqual(code, 0, log)
      self.assertEqual(len(read_mbox(self.mbox)), 2 * len(mail))
    self.assertEqual(server.mailbox_stats(USER), (0, 0))


if __name__ == "__main__":
  unittest.main()
