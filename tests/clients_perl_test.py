"""Perl's Net::POP3 (core Perl) against the real posthaste server.

Runs tests/clients_net_pop3.pl: login, CAPA, STAT, LIST, UIDL, get every message, TOP, DELE,
QUIT. Shows every message arrives intact (Net::POP3 hands lines over with LF endings and the
dot-stuffing undone), the UIDLs are the ones `deliver` printed, and the DELE was committed at
QUIT (a second run sees one message fewer, with the same UIDLs for the rest).
"""

import json
import os
import subprocess
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, wire_form, wire_lines

USER = "perl@example.test"
PASSWORD = "net pop3 secret"
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients_net_pop3.pl")


class NetPop3Test(unittest.TestCase):

  def run_client(self, server, delete):
    outdir = make_temp_dir("net-pop3-")
    result = subprocess.run(
        ["/usr/bin/perl", SCRIPT, "127.0.0.1", str(server.pop3_port), USER, PASSWORD, outdir,
         str(delete)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=False)
    if result.returncode != 0:
      self.fail("Net::POP3 client exited %d: %s" % (result.returncode,
                                                    result.stderr.decode("utf-8", "replace")))
    return json.loads(result.stdout), outdir

  def check_messages(self, seen, outdir, mail, uidls):
    self.assertEqual(seen["stat"], [len(mail), sum(len(wire_form(raw)) for _, raw in mail)])
    self.assertEqual(seen["login_count"], len(mail))
    self.assertEqual(seen["list"], {str(i + 1): len(wire_form(raw))
                                    for i, (_, raw) in enumerate(mail)})
    self.assertEqual(seen["uidl"], {str(i + 1): u for i, u in enumerate(uidls)})
    for number, (name, raw) in enumerate(mail, start=1):
      with self.subTest(message=name):
        with open(os.path.join(outdir, str(number)), "rb") as f:
          got = f.read()
        want = wire_form(raw).replace(b"\r\n", b"\n")
        self.assertTrue(got == want, "message %d (%s) differs:\n%r\n%r" %
                        (number, name, got[:300], want[:300]))
        lines = wire_lines(raw)
        header_end = lines.index(b"")
        with open(os.path.join(outdir, "%d.top" % number), "rb") as f:
          top = f.read()
        self.assertEqual(top, b"".join(line + b"\n" for line in lines[:header_end + 3]))

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


if __name__ == "__main__":
  unittest.main()
