"""Bodies around the TLS record size, byte-exact through `openssl s_client` on pop3s.

The server seals records itself, in place, into one send buffer (TlsEngine::SealInto, see
tls/tls_engine.h), with its own sequence numbers, TLS 1.2 and 1.3 record formats and ciphers.
Here a real OpenSSL client reads, over TLS 1.3 and over TLS 1.2 with each cipher the server
offers (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305), messages whose transfer ends just before,
at and just after a 16 KiB record boundary, a mebibyte and 7 octets (several sends of many
records), and the empty message (two octets on the wire, the smallest POP3 transfers; a body of
0 or 1 byte is covered by //tls:tls_seal_in_place_test), all RETRed in one pipelined session
before QUIT, so every reply and body must arrive byte-exact and in order, with QUIT's reply
last. TLS 1.3 also runs with AES-256-GCM and ChaCha20-Poly1305 as the only suites offered.
"""

import subprocess
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, wire_form
from tests.testing.tls_certs import TestPki

USER = "rita@example.test"
PASSWORD = "record secret"
TIMEOUT_S = 60
SIZES = (2, 16383, 16384, 16385, (1 << 20) + 7)


def message_of_wire_size(size):
  """A message whose wire form is exactly `size` octets, with no line starting with a dot (so
  the transfer is the wire form and the terminator)."""
  if size == 2:
    return b""  # The empty message: one empty line.
  header = b"Subject: %d octets\r\n\r\n" % size
  remaining = size - len(header)
  lines = []
  while remaining > 0:
    take = min(78, remaining)
    if remaining - take == 1:  # Never leave a single octet: a line needs its CRLF.
      take -= 1
    lines.append(b"y" * (take - 2) + b"\r\n")
    remaining -= take
  raw = header + b"".join(lines)
  assert len(wire_form(raw)) == size
  return raw


class TlsRecordBoundariesTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.pki = TestPki(make_temp_dir("pki-"))
    cert, key = cls.pki.issue("default", ["localhost"], ip_addresses=["127.0.0.1"])
    cls.server = PosthasteServer(shards=1, extra_args=[
        "--tls_cert=" + cert, "--tls_key=" + key, "--pop3s_listen=127.0.0.1:0"])
    cls.server.add_user(USER, PASSWORD)
    cls.mail = [message_of_wire_size(size) for size in SIZES]
    for raw in cls.mail:
      cls.server.deliver(USER, raw)
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def retr_all(self, *tls_options):
    script = "USER %s\nPASS %s\n" % (USER, PASSWORD)
    script += "".join("RETR %d\n" % n for n in range(1, len(self.mail) + 1)) + "QUIT\n"
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.server.pop3s_port,
            "-CAfile", self.pki.ca_cert, "-verify_return_error", "-verify_ip", "127.0.0.1",
            "-quiet", "-crlf", *tls_options]
    result = subprocess.run(argv, input=script.encode(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=False)
    self.assertEqual(result.returncode, 0, result.stderr.decode("utf-8", "replace"))
    return result.stdout

  def check_transcript(self, out):
    pos = 0

    def line():
      nonlocal pos
      end = out.index(b"\r\n", pos)
      text = out[pos:end]
      pos = end + 2
      return text

    for what in ("greeting", "USER", "PASS"):
      self.assertTrue(line().startswith(b"+OK"), what)
    for size, raw in zip(SIZES, self.mail):
      with self.subTest(size=size):
        self.assertEqual(line(), b"+OK %d octets" % size)
        expected = wire_form(raw) + b".\r\n"
        got = out[pos:pos + len(expected)]
        self.assertEqual(len(got), len(expected))
        self.assertTrue(got == expected, "body of %d octets differs" % size)
        pos += len(expected)
    self.assertTrue(line().startswith(b"+OK"), "QUIT")
    self.assertEqual(out[pos:], b"")

  def test_tls13(self):
    self.check_transcript(self.retr_all("-tls1_3"))

  def test_tls12_aes128_gcm(self):
    self.check_transcript(self.retr_all("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"))

  def test_tls12_aes256_gcm(self):
    self.check_transcript(self.retr_all("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"))

  def test_tls12_chacha20_poly1305(self):
    self.check_transcript(self.retr_all("-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"))

  def test_tls13_each_cipher(self):
    for suite in ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"):
      with self.subTest(suite=suite):
        self.check_transcript(self.retr_all("-tls1_3", "-ciphersuites", suite))


if __name__ == "__main__":
  unittest.main()
