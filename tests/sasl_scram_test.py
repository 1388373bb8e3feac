"""SCRAM-SHA-256, SCRAM-SHA-1 and SCRAM-SHA-256-PLUS against the real posthaste server.

Debian 12's curl has no SCRAM (it is built without libgsasl: `curl -V` lists no gsasl, and
with `--login-options AUTH=SCRAM-SHA-256` it reads CAPA and gives up without sending AUTH), and Debian packages no
Python SCRAM client, so the client side is written here with hashlib and hmac (RFC 5802). For
-PLUS the TLS client is `openssl s_client`, which prints the RFC 9266 tls-exporter value
(-keymatexport EXPORTER-Channel-Binding) of its own TLS 1.3 session.

Shows: a user made by `posthaste user add` logs in at once with SCRAM-SHA-256 over pop3s and
with SCRAM-SHA-1 over plain loopback, the server's signature verifies; CAPA lists SCRAM without
TLS, adds the -PLUS forms over TLS 1.3 only (not over TLS 1.2); SCRAM-SHA-256-PLUS logs in with
the session's binding and fails with another session's; a client claiming "y" over TLS 1.3 is
refused (downgrade); a wrong password and an unknown user fail at the proof with -ERR [AUTH],
the unknown user with the same plausible salt each time; "*" cancels; each outcome is counted
in posthaste_auth_{successes,failures}_total by mechanism and reason.
"""

import base64
import hashlib
import hmac
import os
import re
import socket
import ssl
import subprocess
import threading
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, metric_sum
from tests.testing.tls_certs import TestPki

USER = "sam@example.test"
PASSWORD = "scram secret"
TIMEOUT_S = 30


class ScramClient:
  """The client side of RFC 5802 for one exchange."""

  def __init__(self, hash_name, user, password, gs2_header="n,,", binding=b""):
    self.hash_name = hash_name
    self.password = password.encode("utf-8")
    self.gs2_header = gs2_header
    self.binding = binding
    self.nonce = base64.b64encode(os.urandom(18)).decode()
    self.first_bare = "n=%s,r=%s" % (user.replace("=", "=3D").replace(",", "=2C"), self.nonce)
    self.server_signature = None

  def first(self):
    return (self.gs2_header + self.first_bare).encode()

  def final(self, server_first):
    attrs = dict(part.split("=", 1) for part in server_first.decode().split(","))
    assert attrs["r"].startswith(self.nonce)
    salt = base64.b64decode(attrs["s"])
    salted = hashlib.pbkdf2_hmac(self.hash_name, self.password, salt, int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", self.hash_name).digest()
    stored_key = hashlib.new(self.hash_name, client_key).digest()
    server_key = hmac.new(salted, b"Server Key", self.hash_name).digest()
    channel = base64.b64encode(self.gs2_header.encode() + self.binding).decode()
    without_proof = "c=%s,r=%s" % (channel, attrs["r"])
    auth_message = ",".join([self.first_bare, server_first.decode(), without_proof]).encode()
    signature = hmac.new(stored_key, auth_message, self.hash_name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    self.server_signature = hmac.new(server_key, auth_message, self.hash_name).digest()
    return ("%s,p=%s" % (without_proof, base64.b64encode(proof).decode())).encode()


class LineConnection:
  """CRLF lines over a socket (plain or TLS)."""

  def __init__(self, sock):
    self.sock = sock
    self.file = sock.makefile("rb")

  def send(self, line):
    self.sock.sendall(line + b"\r\n")

  def read(self):
    line = self.file.readline()
    if not line.endswith(b"\r\n"):
      raise AssertionError("connection ended: %r" % line)
    return line[:-2]

  def capa(self):
    self.send(b"CAPA")
    lines = [self.read()]
    while lines[-1] != b".":
      lines.append(self.read())
    return [l.decode() for l in lines[1:-1]]

  def close(self):
    self.file.close()
    self.sock.close()


def sasl_line(line):
  """The decoded challenge of a "+ " line."""
  assert line.startswith(b"+ "), line
  return base64.b64decode(line[2:])


def scram_login(conn, mechanism, client, initial_response=True):
  """Runs AUTH `mechanism` with `client`; returns the status line that ends it."""
  b64 = lambda data: base64.b64encode(data)
  if initial_response:
    conn.send(b"AUTH " + mechanism.encode() + b" " + b64(client.first()))
  else:
    conn.send(b"AUTH " + mechanism.encode())
    assert conn.read() == b"+ "
    conn.send(b64(client.first()))
  line = conn.read()
  if not line.startswith(b"+ "):
    return line
  conn.send(b64(client.final(sasl_line(line))))
  line = conn.read()
  if not line.startswith(b"+ "):
    return line
  assert sasl_line(line) == b"v=" + base64.b64encode(client.server_signature), line
  conn.send(b"")
  return conn.read()


class SaslScramTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.pki = TestPki(make_temp_dir("pki-"))
    cls.cert, cls.key = cls.pki.issue("default", ["localhost"], ip_addresses=["127.0.0.1"])
    cls.server = PosthasteServer(shards=2, extra_args=[
        "--tls_cert=" + cls.cert, "--tls_key=" + cls.key, "--pop3s_listen=127.0.0.1:0",
        "--auth_failure_delay_ms=50"])
    cls.server.add_user(USER, PASSWORD)
    cls.server.deliver(USER, b"Subject: hi\r\n\r\nscram\r\n")
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def plain(self):
    conn = LineConnection(socket.create_connection(("127.0.0.1", self.server.pop3_port),
                                                   timeout=TIMEOUT_S))
    self.assertTrue(conn.read().startswith(b"+OK"))
    return conn

  def tls(self, maximum=None):
    ctx = ssl.create_default_context(cafile=self.pki.ca_cert)
    if maximum is not None:
      ctx.maximum_version = maximum
    raw = socket.create_connection(("127.0.0.1", self.server.pop3s_port), timeout=TIMEOUT_S)
    conn = LineConnection(ctx.wrap_socket(raw, server_hostname="127.0.0.1"))
    self.assertTrue(conn.read().startswith(b"+OK"))
    return conn

  def metric(self, name, **labels):
    return metric_sum(self.server.metrics(), name, **labels)

  def test_capa_offers_scram_everywhere_and_plus_over_tls13_only(self):
    conn = self.plain()
    sasl = [l for l in conn.capa() if l.startswith("SASL ")]
    self.assertEqual(sasl, ["SASL PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-1"])
    conn.close()
    conn = self.tls()
    self.assertIn("SASL PLAIN LOGIN SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-1",
                  conn.capa())
    conn.close()
    conn = self.tls(maximum=ssl.TLSVersion.TLSv1_2)
    self.assertIn("SASL PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-1", conn.capa())
    conn.send(b"AUTH SCRAM-SHA-256-PLUS")
    self.assertEqual(conn.read(), b"-ERR Unsupported authentication mechanism")
    conn.close()

  def test_user_add_then_scram_sha256_over_tls(self):
    before = self.metric("posthaste_auth_successes_total", mechanism="SCRAM-SHA-256")
    for initial_response in (True, False):
      conn = self.tls()
      status = scram_login(conn, "SCRAM-SHA-256", ScramClient("sha256", USER, PASSWORD),
                           initial_response)
      self.assertTrue(status.startswith(b"+OK"), status)
      conn.send(b"STAT")
      self.assertTrue(conn.read().startswith(b"+OK 1 "))
      conn.send(b"QUIT")
      self.assertTrue(conn.read().startswith(b"+OK"))
      conn.close()
    self.assertEqual(self.metric("posthaste_auth_successes_total", mechanism="SCRAM-SHA-256"),
                     before + 2)

  def test_scram_sha1_over_plain_loopback_with_another_case(self):
    conn = self.plain()
    status = scram_login(conn, "scram-sha-1", ScramClient("sha1", "SAM@example.test", PASSWORD))
    self.assertTrue(status.startswith(b"+OK"), status)
    conn.close()

  def test_perl_authen_scram_client(self):
    # A SCRAM client that is not ours: Perl's Authen::SCRAM (Debian libauthen-scram-perl),
    # which also SASLprep-normalises the user name and password it sends.
    script = r"""
use strict; use warnings;
use IO::Socket::INET; use MIME::Base64; use Authen::SCRAM::Client;
my ($port, $user, $pass, $digest, $mechanism) = @ARGV;
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1", PeerPort => $port, Timeout => 30)
    or die "connect: $!";
sub line { my $l = <$s>; die "connection closed\n" unless defined $l; $l =~ s/\r?\n$//; $l }
line() =~ /^\+OK/ or die "no greeting\n";
my $client = Authen::SCRAM::Client->new(username => $user, password => $pass, digest => $digest);
print $s "AUTH $mechanism ", encode_base64($client->first_msg(), ""), "\r\n";
my $l = line(); $l =~ /^\+ (.*)$/ or die "no server-first: $l\n";
print $s encode_base64($client->final_msg(decode_base64($1)), ""), "\r\n";
$l = line(); $l =~ /^\+ (.*)$/ or die "no server-final: $l\n";
$client->validate(decode_base64($1)) or die "bad server signature\n";
print $s "\r\n";
$l = line(); $l =~ /^\+OK/ or die "login refused: $l\n";
print $s "STAT\r\n"; print line(), "\n";
print $s "QUIT\r\n"; line();
"""
    for digest, mechanism in (("SHA-256", "SCRAM-SHA-256"), ("SHA-1", "SCRAM-SHA-1")):
      with self.subTest(mechanism):
        result = subprocess.run(
            ["perl", "-e", script, str(self.server.pop3_port), USER, PASSWORD, digest,
             mechanism], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S,
            check=False)
        self.assertEqual(result.returncode, 0, result.stderr.decode())
        self.assertTrue(result.stdout.startswith(b"+OK 1 "), result.stdout)
    wrong = subprocess.run(
        ["perl", "-e", script, str(self.server.pop3_port), USER, PASSWORD + "x", "SHA-256",
         "SCRAM-SHA-256"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S,
        check=False)
    self.assertNotEqual(wrong.returncode, 0)

  def test_wrong_password_unknown_user_and_cancel_fail(self):
    failures = lambda reason: self.metric("posthaste_auth_failures_total",
                                          mechanism="SCRAM-SHA-256", reason=reason)
    bad, unknown, cancelled = (failures("bad_credentials"), failures("unknown_user"),
                               failures("cancelled"))
    conn = self.tls()
    status = scram_login(conn, "SCRAM-SHA-256", ScramClient("sha256", USER, "wrong"))
    self.assertEqual(status, b"-ERR [AUTH] Authentication failed")
    salts = []
    for _ in range(2):
      client = ScramClient("sha256", "nobody@example.test", PASSWORD)
      conn.send(b"AUTH SCRAM-SHA-256 " + base64.b64encode(client.first()))
      server_first = sasl_line(conn.read()).decode()
      salt = re.search(r",s=([^,]+),i=4096$", server_first)
      self.assertIsNotNone(salt, server_first)
      self.assertEqual(len(base64.b64decode(salt.group(1))), 16)
      salts.append(salt.group(1))
      conn.send(base64.b64encode(client.final(server_first.encode())))
      self.assertEqual(conn.read(), b"-ERR [AUTH] Authentication failed")
    self.assertEqual(salts[0], salts[1])
    conn.close()  # three failures: the connection closes (auth_failures_max)
    conn = self.tls()
    conn.send(b"AUTH SCRAM-SHA-256")
    self.assertEqual(conn.read(), b"+ ")
    conn.send(b"*")
    self.assertEqual(conn.read(), b"-ERR Authentication cancelled")
    conn.close()
    self.assertEqual(failures("bad_credentials"), bad + 1)
    self.assertEqual(failures("unknown_user"), unknown + 2)
    self.assertEqual(failures("cancelled"), cancelled + 1)

  def test_client_saying_y_over_tls13_is_refused(self):
    before = self.metric("posthaste_auth_failures_total", mechanism="SCRAM-SHA-256",
                         reason="channel_binding")
    conn = self.tls()
    status = scram_login(conn, "SCRAM-SHA-256",
                         ScramClient("sha256", USER, PASSWORD, gs2_header="y,,"))
    self.assertEqual(status, b"-ERR [AUTH] Authentication failed")
    conn.close()
    self.assertEqual(self.metric("posthaste_auth_failures_total", mechanism="SCRAM-SHA-256",
                                 reason="channel_binding"), before + 1)

  def openssl_session(self):
    """An `openssl s_client` TLS 1.3 session on pop3s: (process, tls-exporter bytes)."""
    proc = subprocess.Popen(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.server.pop3s_port,
         "-CAfile", self.pki.ca_cert, "-tls1_3", "-crlf", "-nocommands", "-ign_eof",
         "-keymatexport", "EXPORTER-Channel-Binding", "-keymatexportlen", "32"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    watchdog = threading.Timer(TIMEOUT_S, proc.kill)
    watchdog.start()
    self.addCleanup(watchdog.cancel)
    self.addCleanup(proc.stdout.close)
    self.addCleanup(proc.wait)
    self.addCleanup(proc.kill)
    exporter = None
    for _ in range(200):
      line = proc.stdout.readline()
      self.assertTrue(line, "s_client ended before the greeting")
      found = re.search(rb"Keying material: ([0-9A-Fa-f]+)", line)
      if found:
        exporter = bytes.fromhex(found.group(1).decode())
      if line.startswith(b"+OK"):
        break
    self.assertIsNotNone(exporter)
    self.assertEqual(len(exporter), 32)
    return proc, exporter

  def plus_login(self, binding):
    proc, exporter = self.openssl_session()

    class Pipe:
      def send(self, line):
        proc.stdin.write(line + b"\n")
        proc.stdin.flush()

      def read(self):
        return proc.stdout.readline().rstrip(b"\r\n")

    client = ScramClient("sha256", USER, PASSWORD, gs2_header="p=tls-exporter,,",
                         binding=exporter if binding is None else binding)
    status = scram_login(Pipe(), "SCRAM-SHA-256-PLUS", client)
    proc.stdin.close()
    return status

  def test_scram_sha256_plus_with_tls_exporter(self):
    before = self.metric("posthaste_auth_successes_total", mechanism="SCRAM-SHA-256-PLUS")
    status = self.plus_login(binding=None)
    self.assertTrue(status.startswith(b"+OK"), status)
    self.assertEqual(self.metric("posthaste_auth_successes_total",
                                 mechanism="SCRAM-SHA-256-PLUS"), before + 1)
    mismatched = self.metric("posthaste_auth_failures_total", mechanism="SCRAM-SHA-256-PLUS",
                             reason="channel_binding")
    # Another session's binding (a relayed exchange) is refused.
    status = self.plus_login(binding=os.urandom(32))
    self.assertEqual(status, b"-ERR [AUTH] Authentication failed")
    self.assertEqual(self.metric("posthaste_auth_failures_total", mechanism="SCRAM-SHA-256-PLUS",
                                 reason="channel_binding"), mismatched + 1)


if __name__ == "__main__":
  unittest.main()
