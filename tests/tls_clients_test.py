"""Real TLS clients against the real posthaste server: implicit TLS (pop3s) and STLS.

Certificates come from a throwaway CA made with openssl at test time (tests/testing/tls_certs.py);
every client verifies the server's chain against that CA.

Shows: Python's poplib.POP3_SSL and POP3.stls() (CAPA offers STLS before and not after, a
second STLS is refused, every message byte-exact incl. 10 MiB over TLS), curl pop3s:// and
pop3:// --ssl-reqd, `openssl s_client -starttls pop3` and plain s_client on the implicit port
(chain verified); a TLS session ticket resumes on a second connection; commands pipelined in
plaintext behind STLS do not run inside the TLS session (CVE-2011-0411); the RETR body was sealed by the userspace engine (body bytes counted under
path="tls_userspace") and every session reports its data path: kernel TLS is missing on these
machines, so the test requires the userspace fallback to be taken and counted (and kTLS if the
server's start-up line says the kernel has it); a handshake of garbage and a record that does
not decrypt each close only their own connection, with a log line and a counter, while a
logged-in TLS session carries on; without a certificate STLS is not offered, there is no pop3s
listener (said in the log) and curl --ssl-reqd fails; bad certificate flags are refused; from a
non-loopback address USER is refused before STLS (CAPA lists STLS, not USER) and works after.
"""

import os
import poplib
import re
import socket
import ssl
import subprocess
import time
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import (PosthasteServer, make_temp_dir, metric_sum,
                                            non_loopback_address, posthaste_binary, wait_for,
                                            wire_form, wire_lines)
from tests.testing.tls_certs import TestPki, peer_subject_cn

USER = "tina@example.test"
PASSWORD = "tls secret"
TIMEOUT_S = 60
DEFAULT_CN = "mail.default.test"


class TlsClientsTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.pki = TestPki(make_temp_dir("pki-"))
    cls.cert, cls.key = cls.pki.issue("default", [DEFAULT_CN, "localhost"],
                                      ip_addresses=["127.0.0.1"])
    cls.server = PosthasteServer(shards=2, extra_args=[
        "--tls_cert=" + cls.cert, "--tls_key=" + cls.key, "--pop3s_listen=127.0.0.1:0"])
    cls.mail = messages.everyday_messages() + [messages.big_message()]
    cls.server.add_user(USER, PASSWORD)
    for _, raw in cls.mail:
      cls.server.deliver(USER, raw)
    cls.server.add_user("other@example.test", PASSWORD)
    cls.server.deliver("other@example.test", cls.mail[0][1])
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def context(self):
    ctx = ssl.create_default_context(cafile=self.pki.ca_cert)
    return ctx  # hostname checked against 127.0.0.1 (an IP SAN of the default certificate)

  def metric(self, name, **labels):
    return metric_sum(self.server.metrics(), name, **labels)

  def check_all_messages(self, pop):
    count, _ = pop.stat()
    self.assertEqual(count, len(self.mail))
    for number, (name, raw) in enumerate(self.mail, start=1):
      with self.subTest(message=name):
        _, lines, octets = pop.retr(number)
        self.assertEqual(octets, len(wire_form(raw)))
        self.assertTrue(lines == wire_lines(raw), "RETR %d (%s) differs" % (number, name))
    _, top_lines, _ = pop.top(1, 0)
    header = wire_lines(self.mail[0][1])
    self.assertEqual(top_lines, header[:header.index(b"") + 1])

  # --- Python poplib ---

  def test_poplib_pop3_ssl(self):
    body_before = self.metric("posthaste_pop3_body_bytes_total", path="tls_userspace")
    pop = poplib.POP3_SSL("127.0.0.1", self.server.pop3s_port, context=self.context(),
                          timeout=TIMEOUT_S)
    self.assertTrue(pop.getwelcome().startswith(b"+OK"))
    self.assertEqual(peer_subject_cn(pop.sock), DEFAULT_CN)
    self.assertIn(pop.sock.version(), ("TLSv1.2", "TLSv1.3"))
    capa = pop.capa()
    self.assertNotIn("STLS", capa)  # already TLS
    self.assertIn("USER", capa)
    with self.assertRaises(poplib.error_proto):
      pop._shortcmd("STLS")
    pop.user(USER)
    pop.pass_(PASSWORD)
    self.check_all_messages(pop)
    pop.quit()
    # The bodies went through the engine, sealed from the mapped segment.
    sent = self.metric("posthaste_pop3_body_bytes_total", path="tls_userspace") - body_before
    self.assertGreaterEqual(sent, sum(len(wire_form(raw)) for _, raw in self.mail))

  def test_poplib_stls(self):
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    self.assertIn("STLS", pop.capa())
    pop.stls(context=self.context())
    self.assertIsInstance(pop.sock, ssl.SSLSocket)
    self.assertEqual(peer_subject_cn(pop.sock), DEFAULT_CN)
    self.assertNotIn("STLS", pop.capa())
    with self.assertRaises(poplib.error_proto):
      pop._shortcmd("STLS")
    pop.user(USER)
    pop.pass_(PASSWORD)
    self.check_all_messages(pop)
    pop.quit()

  def test_data_path_is_counted_and_kernel_tls_fallback_reported(self):
    before = {p: self.metric("posthaste_tls_sessions_total", path=p) for p in ("ktls", "userspace")}
    handshakes_before = self.metric("posthaste_tls_handshakes_total", outcome="ok")
    pop = poplib.POP3_SSL("127.0.0.1", self.server.pop3s_port, context=self.context(),
                          timeout=TIMEOUT_S)
    version = pop.sock.version()
    pop.user(USER)
    pop.pass_(PASSWORD)
    pop.stat()
    pop.quit()
    # The handshake is counted by version and outcome (a fresh context: no ticket to resume).
    self.assertEqual(self.metric("posthaste_tls_handshakes_total", outcome="ok") -
                     handshakes_before, 1)
    self.assertGreaterEqual(self.metric("posthaste_tls_handshakes_total", version=version,
                                        outcome="ok"), 1)
    after = {p: self.metric("posthaste_tls_sessions_total", path=p) for p in ("ktls", "userspace")}
    ready = re.search(r'"tls ready".*kernel_tls="((?:[^"\\]|\\.)*)"', self.server.stderr_text())
    self.assertIsNotNone(ready, "no `tls ready` line with the kernel TLS probe result")
    if ready.group(1) == "available":
      self.assertEqual(after["ktls"] - before["ktls"], 1)
      print("kernel TLS available: the session took the kTLS path")
    else:
      # The machines this runs on lack the tls module: the fallback must be taken and counted.
      self.assertEqual(after["userspace"] - before["userspace"], 1)
      self.assertEqual(after["ktls"], before["ktls"])
      print("kernel TLS unavailable (%s): the session took the userspace fallback, "
            "counted as posthaste_tls_sessions_total{path=\"userspace\"}" % ready.group(1))

  def test_session_ticket_resumes(self):
    resumed_before = self.metric("posthaste_tls_handshakes_total", outcome="resumed")
    ctx = self.context()
    session = None
    for attempt in range(2):
      with socket.create_connection(("127.0.0.1", self.server.pop3s_port), TIMEOUT_S) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls:
          self.assertTrue(tls.recv(512).startswith(b"+OK"))  # (TLS 1.3 tickets come with it)
          self.assertEqual(tls.session_reused, attempt == 1)
          session = tls.session
          tls.sendall(b"QUIT\r\n")
          tls.recv(512)
    wait_for(lambda: self.metric("posthaste_tls_handshakes_total", outcome="resumed") >
             resumed_before, what="the resumed handshake counter")

  # --- curl ---

  def curl(self, url, *options, check=True):
    argv = ["curl", "--silent", "--show-error", "--max-time", str(TIMEOUT_S), "--cacert",
            self.pki.ca_cert, "--user", "%s:%s" % (USER, PASSWORD), *options, url]
    result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=TIMEOUT_S + 10, check=False)
    if check and result.returncode != 0:
      self.fail("%s exited %d: %s" % (" ".join(argv), result.returncode,
                                      result.stderr.decode("utf-8", "replace")))
    return result

  def test_curl_pop3s(self):
    port = self.server.pop3s_port
    listing = self.curl("pop3s://127.0.0.1:%d/" % port).stdout
    self.assertEqual(listing, b"".join(b"%d %d\r\n" % (i + 1, len(wire_form(raw)))
                                       for i, (_, raw) in enumerate(self.mail)))
    for number in (1, len(self.mail)):
      out = self.curl("pop3s://127.0.0.1:%d/%d" % (port, number)).stdout
      self.assertTrue(out == wire_form(self.mail[number - 1][1]), "RETR %d differs" % number)

  def test_curl_pop3_ssl_reqd(self):
    port = self.server.pop3_port
    for number in (1, len(self.mail)):
      out = self.curl("pop3://127.0.0.1:%d/%d" % (port, number), "--ssl-reqd").stdout
      self.assertTrue(out == wire_form(self.mail[number - 1][1]), "RETR %d differs" % number)

  # --- openssl s_client ---

  def s_client(self, port, *options):
    script = "USER %s\nPASS %s\nSTAT\nRETR 1\nQUIT\n" % (USER, PASSWORD)
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile",
            self.pki.ca_cert, "-verify_return_error", "-verify_ip", "127.0.0.1", "-crlf",
            "-ign_eof", *options]
    result = subprocess.run(argv, input=script.encode(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=False)
    out = result.stdout.decode("utf-8", "replace")
    self.assertEqual(result.returncode, 0, out + result.stderr.decode("utf-8", "replace"))
    self.assertIn("Verify return code: 0 (ok)", out)
    self.assertIn("CN = %s" % DEFAULT_CN, out)
    self.assertRegex(out, r"\+OK \d+ \d+")  # STAT
    self.assertIn("Message-ID: <plain@itest.example.test>", out)  # RETR 1
    self.assertIn("signing off", out)  # QUIT answered over TLS
    return out

  def test_openssl_s_client_starttls(self):
    self.s_client(self.server.pop3_port, "-starttls", "pop3")

  def test_openssl_s_client_implicit(self):
    out = self.s_client(self.server.pop3s_port)
    self.assertIn("+OK POP3 server ready", out)

  def test_peer_gone_in_mid_handshake_frees_the_connection(self):
    # Closing after "+OK Begin TLS" without a handshake must not hold the connection until the
    # 60 s login timeout.
    with socket.create_connection(("127.0.0.1", self.server.pop3_port), TIMEOUT_S) as raw:
      reader = raw.makefile("rb")
      self.assertTrue(reader.readline().startswith(b"+OK"))
      raw.sendall(b"STLS\r\n")
      self.assertTrue(reader.readline().startswith(b"+OK"))
      reader.close()
    wait_for(lambda: self.metric("posthaste_pop3_connections_open") == 0, timeout_s=10,
             what="the connection to close after the peer left in mid-STLS")
    # The same on the pop3s port, without a byte of TLS (what a port scan does).
    with socket.create_connection(("127.0.0.1", self.server.pop3s_port), TIMEOUT_S):
      wait_for(lambda: self.metric("posthaste_pop3_connections_open") == 1, timeout_s=10,
               what="the pop3s connection to be open")
    wait_for(lambda: self.metric("posthaste_pop3_connections_open") == 0, timeout_s=10,
             what="the connection to close after the peer left before its handshake")

  def test_plaintext_pipelined_behind_stls_is_dropped(self):
    # CVE-2011-0411: commands sent in plaintext behind STLS must not run inside the TLS session.
    with socket.create_connection(("127.0.0.1", self.server.pop3_port), TIMEOUT_S) as raw:
      reader = raw.makefile("rb")
      self.assertTrue(reader.readline().startswith(b"+OK"))
      raw.sendall(b"STLS\r\nUSER %s\r\nPASS %s\r\nSTAT\r\n" %
                  (USER.encode(), PASSWORD.encode()))
      self.assertTrue(reader.readline().startswith(b"+OK"))  # Begin TLS negotiation
      tls = self.handshake_over(raw)
      # Had USER/PASS run, STAT would answer +OK; the session over TLS is not logged in.
      answer = self.tls_exchange(raw, tls, b"STAT\r\n")
      self.assertTrue(answer.startswith(b"-ERR"), answer)

  def tls_exchange(self, raw, tls, command):
    """Sends `command` over the SSLObject from handshake_over and returns the first reply line."""
    tls.write(command)
    raw.sendall(tls._outgoing.read())
    data = b""
    deadline = time.monotonic() + TIMEOUT_S
    while b"\r\n" not in data and time.monotonic() < deadline:
      try:
        data += tls.read(65536)
      except ssl.SSLWantReadError:
        chunk = raw.recv(65536)
        if not chunk:
          break
        tls._incoming.write(chunk)
    return data

  def test_disconnect_in_mid_retr_frees_the_connection(self):
    pop = poplib.POP3_SSL("127.0.0.1", self.server.pop3s_port, context=self.context(),
                          timeout=TIMEOUT_S)
    pop.user(USER)
    pop.pass_(PASSWORD)
    pop.sock.sendall(b"RETR %d\r\n" % len(self.mail))  # the 10 MiB message
    self.assertTrue(pop.sock.recv(65536))
    raw = pop.sock
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    pop.file.close()  # (poplib's reader holds the socket open too)
    raw.close()  # RST while the server is still sealing the body
    wait_for(lambda: self.metric("posthaste_pop3_connections_open") == 0,
             what="the connection to be freed after a disconnect in mid-RETR")
    # Nothing was committed and the maildrop opens again.
    again = poplib.POP3_SSL("127.0.0.1", self.server.pop3s_port, context=self.context(),
                            timeout=TIMEOUT_S)
    again.user(USER)
    again.pass_(PASSWORD)
    self.assertEqual(again.stat()[0], len(self.mail))
    again.quit()

  # --- errors close only their own connection ---

  def test_handshake_and_record_errors_close_only_that_connection(self):
    bystander = poplib.POP3_SSL("127.0.0.1", self.server.pop3s_port, context=self.context(),
                                timeout=TIMEOUT_S)
    bystander.user("other@example.test")
    bystander.pass_(PASSWORD)
    handshake_before = self.metric("posthaste_tls_errors_total", kind="handshake")
    record_before = self.metric("posthaste_tls_errors_total", kind="record")

    # Not TLS at all on the implicit port: the handshake fails.
    with socket.create_connection(("127.0.0.1", self.server.pop3s_port), TIMEOUT_S) as raw:
      raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
      self.assert_closed_by_server(raw)
    wait_for(lambda: self.metric("posthaste_tls_errors_total", kind="handshake") >
             handshake_before, what="the handshake error counter")
    self.assertGreaterEqual(self.metric("posthaste_tls_handshakes_total", version="other",
                                        outcome="failed"), 1)

    # A finished handshake, then a record that does not decrypt.
    with socket.create_connection(("127.0.0.1", self.server.pop3s_port), TIMEOUT_S) as raw:
      tls = self.handshake_over(raw)
      self.assertIn(tls.version(), ("TLSv1.2", "TLSv1.3"))
      raw.sendall(b"\x17\x03\x03\x00\x40" + os.urandom(0x40))
      self.assert_closed_by_server(raw)
    wait_for(lambda: self.metric("posthaste_tls_errors_total", kind="record") > record_before,
             what="the record error counter")
    log = self.server.stderr_text()
    self.assertRegex(log, r'tls error, closing the connection".*stage=handshake')
    self.assertRegex(log, r'tls error, closing the connection".*stage=record')

    # The bystander's session is untouched.
    self.assertEqual(bystander.stat()[0], 1)
    _, lines, _ = bystander.retr(1)
    self.assertEqual(lines, wire_lines(self.mail[0][1]))
    bystander.quit()

  def handshake_over(self, raw):
    """A TLS client handshake over `raw` through memory BIOs; returns the SSLObject."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = self.context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    tls._incoming, tls._outgoing = incoming, outgoing  # for tls_exchange
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
      try:
        tls.do_handshake()
        break
      except ssl.SSLWantReadError:
        raw.sendall(outgoing.read())
        data = raw.recv(65536)
        if not data:
          self.fail("server closed during the handshake")
        incoming.write(data)
    raw.sendall(outgoing.read())
    return tls

  def assert_closed_by_server(self, raw):
    raw.settimeout(TIMEOUT_S)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
      try:
        data = raw.recv(65536)
      except ConnectionResetError:
        return
      if not data:
        return
    self.fail("the server did not close the connection")


class RemotePlaintextTest(unittest.TestCase):
  """From a non-loopback address, plaintext logins need STLS first (the default policy)."""

  def test_user_refused_before_stls_and_accepted_after(self):
    address = non_loopback_address()
    if address is None:
      self.skipTest("no non-loopback IPv4 address on this machine")
    pki = TestPki(make_temp_dir("pki-"))
    cert, key = pki.issue("default", [DEFAULT_CN], ip_addresses=[address])
    # The plain listener on that one address (not 0.0.0.0); pop3s stays on loopback.
    server = PosthasteServer(extra_args=["--tls_cert=" + cert, "--tls_key=" + key,
                                         "--pop3s_listen=127.0.0.1:0",
                                         "--pop3_listen=%s:0" % address])
    server.add_user(USER, PASSWORD)
    server.deliver(USER, messages.everyday_messages()[0][1])
    with server:
      pop = poplib.POP3(address, server.pop3_port, timeout=TIMEOUT_S)
      capa = pop.capa()
      self.assertIn("STLS", capa)
      self.assertNotIn("USER", capa)
      with self.assertRaises(poplib.error_proto) as refused:
        pop.user(USER)
      self.assertIn(b"STLS", refused.exception.args[0])
      pop.stls(context=ssl.create_default_context(cafile=pki.ca_cert))
      self.assertIn("USER", pop.capa())
      pop.user(USER)
      pop.pass_(PASSWORD)
      self.assertEqual(pop.stat()[0], 1)
      pop.quit()


class NoCertificateTest(unittest.TestCase):
  """Without --tls_cert: no STLS, no pop3s listener, and the log says so."""

  def test_tls_off_without_a_certificate(self):
    server = PosthasteServer()
    server.add_user(USER, PASSWORD)
    server.deliver(USER, messages.everyday_messages()[0][1])
    with server:
      self.assertIsNone(server.pop3s_port)
      log = server.stderr_text()
      self.assertIn("pop3s=off", log)
      self.assertIn("stls=off", log)
      self.assertIn("tls off: no --tls_cert/--tls_key", log)
      pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=TIMEOUT_S)
      self.assertNotIn("STLS", pop.capa())
      with self.assertRaises(poplib.error_proto):
        pop.stls()
      pop.quit()
      result = subprocess.run(
          ["curl", "--silent", "--max-time", str(TIMEOUT_S), "--ssl-reqd", "--user",
           "%s:%s" % (USER, PASSWORD), "pop3://127.0.0.1:%d/1" % server.pop3_port],
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S + 10, check=False)
      self.assertEqual(result.returncode, 64)  # CURLE_USE_SSL_FAILED

  def test_bad_certificate_flags(self):
    data_dir = make_temp_dir("posthaste-data-")
    pki = TestPki(make_temp_dir("pki-"))
    cert, key = pki.issue("default", [DEFAULT_CN])
    _, other_key = pki.issue("other", ["other.test"])
    base = [posthaste_binary(), "serve", "--data_dir=" + data_dir,
            "--pop3_listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
            "--pop3s_listen=127.0.0.1:0", "--shards=1"]
    cases = [
        (["--tls_cert=" + cert], 2, "--tls_cert and --tls_key go together"),
        (["--tls_cert_dir=" + data_dir], 2, "--tls_cert_dir needs --tls_cert"),
        (["--tls_cert=/nonexistent.crt", "--tls_key=" + key], 1, "tls:"),
        (["--tls_cert=" + cert, "--tls_key=" + other_key], 1, "tls:"),
    ]
    for flags, code, message in cases:
      with self.subTest(flags=flags):
        result = subprocess.run(base + flags, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                timeout=TIMEOUT_S, check=False)
        self.assertEqual(result.returncode, code, result.stderr)
        self.assertIn(message, result.stderr.decode("utf-8", "replace"))


if __name__ == "__main__":
  unittest.main()
