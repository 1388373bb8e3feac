"""SASL EXTERNAL with TLS client certificates (RFC 4422 appendix A) against the real server.

A tenant's client CA is `--tls_cert_dir/NAME.client_ca.pem` beside its certificate. Shows, over
pop3s with SNI: a client whose certificate that CA signed (subjectAltName email
ann@ext.test) sees EXTERNAL in CAPA's SASL line and logs in with `AUTH EXTERNAL =`
(raw TLS socket), with curl's `--login-options AUTH=EXTERNAL` and with `openssl s_client -cert`,
into ann's own maildrop;
without a client certificate, with one from another CA, or on another tenant's name that trusts
the same CA (a CA speaks for its own tenant only) EXTERNAL is neither offered nor accepted; an
authorisation id naming another user is refused unless the certificate's owner is a master
user of that tenant, whose login is then audited and counted.
"""

import base64
import os
import shutil
import socket
import ssl
import subprocess
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, metric_sum, wire_form
from tests.testing.tls_certs import TestPki

TIMEOUT_S = 60
PASSWORD = "unused password"
TENANT = "ext.test"
OTHER = "other.test"  # trusts the same client CA, so only the tenant rule keeps ann out
ANN = "ann@ext.test"
BOB = "bob@ext.test"
BOSS = "boss@ext.test"


def read(path):
  with open(path, "rb") as f:
    return f.read()


class SaslExternalTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server_pki = TestPki(make_temp_dir("server-pki-"))
    cls.client_pki = TestPki(make_temp_dir("client-pki-"))
    cls.stranger_pki = TestPki(make_temp_dir("stranger-pki-"))
    default_cert, default_key = cls.server_pki.issue("default", ["mail.default.test"])
    cert_dir = make_temp_dir("certs-")
    for name in (TENANT, OTHER):
      cls.server_pki.cert_dir_pair(cert_dir, name, [name])
      shutil.copy(cls.client_pki.ca_cert, os.path.join(cert_dir, name + ".client_ca.pem"))
    cls.ann = cls.client_pki.issue_client("ann", ANN)
    cls.boss = cls.client_pki.issue_client("boss", BOSS)
    cls.forged_ann = cls.stranger_pki.issue_client("forged-ann", ANN)
    cls.server = PosthasteServer(extra_args=[
        "--tls_cert=" + default_cert, "--tls_key=" + default_key, "--tls_cert_dir=" + cert_dir,
        "--pop3s_listen=127.0.0.1:0"])
    for user in (ANN, BOB, BOSS, "carl@" + OTHER):
      cls.server.add_user(user, PASSWORD)
    mail = messages.everyday_messages()
    cls.ann_mail = [raw for _, raw in mail[:2]]
    for raw in cls.ann_mail:
      cls.server.deliver(ANN, raw)
    cls.server.deliver(BOB, mail[2][1])
    cls.server.run_cli(["tenant", "policy"], [TENANT, "--master_users=" + BOSS])
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def session(self, server_name, certificate=None):
    """A pop3s connection with SNI `server_name`, presenting `certificate` ((crt, key))."""
    ctx = ssl.create_default_context(cafile=self.server_pki.ca_cert)
    if certificate is not None:
      ctx.load_cert_chain(*certificate)
    raw = socket.create_connection(("127.0.0.1", self.server.pop3s_port), TIMEOUT_S)
    tls = ctx.wrap_socket(raw, server_hostname=server_name)
    reader = tls.makefile("rb")
    greeting = reader.readline()
    self.assertTrue(greeting.startswith(b"+OK"), greeting)
    return tls, reader

  def command(self, tls, reader, line, multiline=False):
    tls.sendall(line.encode() + b"\r\n")
    first = reader.readline()
    if not multiline or not first.startswith(b"+OK"):
      return first, []
    lines = []
    while True:
      line = reader.readline()
      self.assertTrue(line, "connection closed mid-response")
      if line == b".\r\n":
        return first, lines
      lines.append(line.rstrip(b"\r\n"))

  def sasl_line(self, tls, reader):
    _, capa = self.command(tls, reader, "CAPA", multiline=True)
    for line in capa:
      if line.startswith(b"SASL"):
        return line.split()[1:]
    return []

  def test_certificate_of_the_tenants_ca_logs_in(self):
    tls, reader = self.session(TENANT, self.ann)
    with tls:
      self.assertIn(b"EXTERNAL", self.sasl_line(tls, reader))
      before = self.server.metrics()
      reply, _ = self.command(tls, reader, "AUTH EXTERNAL =")
      self.assertTrue(reply.startswith(b"+OK"), reply)
      reply, _ = self.command(tls, reader, "STAT")
      self.assertEqual(reply, b"+OK 2 %d\r\n" % sum(len(wire_form(m)) for m in self.ann_mail))
      self.command(tls, reader, "QUIT")
    after = self.server.metrics()
    name = "posthaste_auth_successes_total"
    self.assertEqual(metric_sum(after, name, mechanism="EXTERNAL") -
                     metric_sum(before, name, mechanism="EXTERNAL"), 1)

  def test_curl_logs_in_with_external(self):
    argv = ["curl", "-sS", "--max-time", str(TIMEOUT_S), "--cacert", self.server_pki.ca_cert,
            "--cert", self.ann[0], "--key", self.ann[1], "--login-options", "AUTH=EXTERNAL",
            "-u", ANN + ":", "--resolve", "%s:%d:127.0.0.1" % (TENANT, self.server.pop3s_port),
            "pop3s://%s:%d/1" % (TENANT, self.server.pop3s_port)]
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=TIMEOUT_S + 10, check=False)
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertEqual(result.stdout, wire_form(self.ann_mail[0]))

  def test_openssl_s_client_with_a_client_certificate(self):
    result = subprocess.run(
        ["openssl", "s_client", "-quiet", "-crlf", "-ign_eof", "-verify_return_error",
         "-CAfile", self.server_pki.ca_cert, "-cert", self.ann[0], "-key", self.ann[1],
         "-servername", TENANT, "-connect", "127.0.0.1:%d" % self.server.pop3s_port],
        input=b"AUTH EXTERNAL =\nSTAT\nQUIT\n", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        timeout=TIMEOUT_S, check=False)
    lines = result.stdout.split(b"\r\n")
    self.assertTrue(lines[0].startswith(b"+OK"), result.stdout)
    self.assertTrue(lines[1].startswith(b"+OK"), result.stdout)  # logged in as ann
    self.assertEqual(lines[2], b"+OK 2 %d" % sum(len(wire_form(m)) for m in self.ann_mail))

  def test_not_offered_without_a_fitting_certificate(self):
    cases = [
        ("no certificate", TENANT, None),
        ("another CA's certificate", TENANT, self.forged_ann),
        ("another tenant's name trusting the same CA", OTHER, self.ann),
    ]
    for what, server_name, certificate in cases:
      with self.subTest(what):
        tls, reader = self.session(server_name, certificate)
        with tls:
          self.assertNotIn(b"EXTERNAL", self.sasl_line(tls, reader))
          reply, _ = self.command(tls, reader, "AUTH EXTERNAL =")
          self.assertTrue(reply.startswith(b"-ERR"), reply)
          self.command(tls, reader, "QUIT")

  def test_authorisation_id_only_for_a_master_user(self):
    as_bob = base64.b64encode(BOB.encode()).decode()
    tls, reader = self.session(TENANT, self.ann)  # ann is no master
    with tls:
      reply, _ = self.command(tls, reader, "AUTH EXTERNAL " + as_bob)
      self.assertTrue(reply.startswith(b"-ERR [AUTH]"), reply)
      self.command(tls, reader, "QUIT")
    tls, reader = self.session(TENANT, self.boss)
    with tls:
      reply, _ = self.command(tls, reader, "AUTH EXTERNAL " + as_bob)
      self.assertTrue(reply.startswith(b"+OK"), reply)
      reply, _ = self.command(tls, reader, "STAT")
      self.assertTrue(reply.startswith(b"+OK 1 "), reply)  # bob's one message
      self.command(tls, reader, "QUIT")
    log = self.server.stderr_text()
    self.assertTrue(any("master user login" in line and BOSS in line and BOB in line
                        for line in log.splitlines()), log)
    self.assertTrue(any("authorisation id refused" in line and ANN in line
                        for line in log.splitlines()), log)


if __name__ == "__main__":
  unittest.main()
