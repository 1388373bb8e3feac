"""Perl's Net::POP3 (core Perl) against the real posthaste server.

Runs tests/clients_net_pop3.pl: login, CAPA, STAT, LIST, UIDL, get every message, TOP, DELE,
QUIT, in plaintext and over TLS (starttls on the plain port with IO::Socket::SSL, and implicit
TLS on the pop3s port, the chain verified against a throwaway CA). Shows every message arrives intact (Net::POP3 hands lines over with LF endings and the
dot-stuffing undone), the UIDLs are the ones `deliver` printed, and the DELE was committed at
QUIT (a second run sees one message fewer, with the same UIDLs for the rest).
"""

import json
import os
import subprocess
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, wire_form, wire_lines
from tests.testing.tls_certs import TestPki

USER = "perl@example.test"
PASSWORD = "net pop3 secret"
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients_net_pop3.pl")


class NetPop3Test(unittest.TestCase):

  def run_client(self, server, delete, tls=None, cafile=None):
    outdir = make_temp_dir("net-pop3-")
    port = server.pop3s_port if tls == "ssl" else server.pop3_port
    tls_args = [tls, cafile] if tls else []
    result = subprocess.run(
        ["/usr/bin/perl", SCRIPT, "127.0.0.1", str(port), USER, PASSWORD, outdir,
         str(delete), *tls_args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
        check=False)
    if result.returncode != 0:
      self.fail("Net::POP3 client exited %d: %s" % (result.returncode,
                                                    result.stderr.decode("utf-8", "replace")))
    return json.loads(result.stdout), outdir

  def check_messages(self, seen, outdir, mail, uidls, eol=b"\n"):
    # eol: Net::POP3 over TLS reads lines with IO::Socket::SSL's getline (first in the ISA of
    # Net::POP3::_SSL), which keeps the CRLF that Net::Cmd's own getline turns into LF.
    self.assertEqual(seen["stat"], [len(mail), sum(len(wire_form(raw)) for _, raw in mail)])
    self.assertEqual(seen["login_count"], len(mail))
    self.assertEqual(seen["list"], {str(i + 1): len(wire_form(raw))
                                    for i, (_, raw) in enumerate(mail)})
    self.assertEqual(seen["uidl"], {str(i + 1): u for i, u in enumerate(uidls)})
    for number, (name, raw) in enumerate(mail, start=1):
      with self.subTest(message=name):
        with open(os.path.join(outdir, str(number)), "rb") as f:
          got = f.read()
        want = wire_form(raw).replace(b"\r\n", eol)
        self.assertTrue(got == want, "message %d (%s) differs:\n%r\n%r" %
                        (number, name, got[:300], want[:300]))
        lines = wire_lines(raw)
        header_end = lines.index(b"")
        with open(os.path.join(outdir, "%d.top" % number), "rb") as f:
          top = f.read()
        self.assertEqual(top, b"".join(line + eol for line in lines[:header_end + 3]))

  def test_session_and_delete(self):
    server = PosthasteServer()
    mail = messages.everyday_messages()
    server.add_user(USER, PASSWORD)
    uidls = [server.deliver(USER, raw) for _, raw in mail]
    with server:
      seen, outdir = self.run_client(server, delete=2)
      for capability in ("TOP", "UIDL", "USER"):
        self.assertIn(capability, seen["capa"])
      self.check_messages(seen, outdir, mail, uidls)
      seen, outdir = self.run_client(server, delete=0)
      self.check_messages(seen, outdir, mail[:1] + mail[2:], uidls[:1] + uidls[2:])

  def test_starttls_and_implicit_tls(self):
    """Net::POP3 with IO::Socket::SSL: starttls on the plain port, SSL => 1 on pop3s."""
    pki = TestPki(make_temp_dir("pki-"))
    cert, key = pki.issue("default", ["mail.default.test"], ip_addresses=["127.0.0.1"])
    server = PosthasteServer(extra_args=["--tls_cert=" + cert, "--tls_key=" + key,
                                         "--pop3s_listen=127.0.0.1:0"])
    mail = messages.everyday_messages()
    server.add_user(USER, PASSWORD)
    uidls = [server.deliver(USER, raw) for _, raw in mail]
    with server:
      seen, outdir = self.run_client(server, delete=0, tls="starttls", cafile=pki.ca_cert)
      self.assertIn("STLS", seen["capa_before_tls"])
      self.assertNotIn("STLS", seen["capa"])
      self.assertIn(seen["tls_version"], ("TLSv1_2", "TLSv1_3"))
      self.assertEqual(seen["peer_cn"], "mail.default.test")
      self.check_messages(seen, outdir, mail, uidls, eol=b"\r\n")
      seen, outdir = self.run_client(server, delete=2, tls="ssl", cafile=pki.ca_cert)
      self.assertIn(seen["tls_version"], ("TLSv1_2", "TLSv1_3"))
      self.assertEqual(seen["peer_cn"], "mail.default.test")
      self.check_messages(seen, outdir, mail, uidls, eol=b"\r\n")
      seen, outdir = self.run_client(server, delete=0, tls="ssl", cafile=pki.ca_cert)
      self.check_messages(seen, outdir, mail[:1] + mail[2:], uidls[:1] + uidls[2:],
                          eol=b"\r\n")


if __name__ == "__main__":
  unittest.main()
