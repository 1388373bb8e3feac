"""posthaste behind real proxies that send the PROXY protocol: Debian's HAProxy in TCP mode and
nginx's mail proxy.

Shows: HAProxy on 127.0.0.1 forwards POP3 to posthaste with `send-proxy-v2` and with
`send-proxy` (v1), POP3S with `send-proxy-v2` (the header before the ClientHello), and LMTP with
`send-proxy`; clients connect to HAProxy from 127.0.0.2 and 127.0.0.3, log in and RETR, and an
MTA delivers over LMTP. The server sees the clients' own addresses: the session log names them,
and the per-IP connection limit (--max_connections_per_ip=1, nothing exempt) counts them apart,
which it would not if it saw HAProxy's 127.0.0.1. Then the refusals: a PROXY line from an
address outside --proxy_networks is answered -ERR and closed; a connection from the proxy's
address that sends no header within --proxy_header_timeout_ms, or something that is not a
header, is closed before any greeting; each refusal is counted in /metrics. A client on a
non-loopback address logs in with plaintext USER/PASS through the proxy (the proxy holds its
TLS) but not directly. The proxy's session greets with [XCLIENT] and takes XCLIENT, whose
address then names the session in the log and the backend's (user, IP) count; a direct client
gets neither. An LMTP client outside --proxy_networks that sends a PROXY line gets a 554 and is
closed. nginx's mail proxy with `proxy_protocol on`, its auth_http answered by a
fixed answerer in this file, logs a client in at the backend, which sees the client's address.
"""

import os
import poplib
import re
import shutil
import smtplib
import http.server
import threading
import socket
import ssl
import subprocess
import time
import unittest
import urllib.parse

from tests.testing.posthaste_server import (PosthasteServer, make_temp_dir, metric_sum,
                                            non_loopback_address, wait_for)
from tests.testing.tls_certs import TestPki

USER = "pat@proxy.test"
PASSWORD = "through the proxy"
MESSAGE = (b"From: a@example.test\r\nTo: pat@proxy.test\r\nSubject: proxied\r\n\r\n"
           b"Delivered before the proxies started.\r\n")
TIMEOUT_S = 30


def sbin_tool(name):
  """The path of a daemon's binary: /usr/sbin is not on a Bazel test's PATH."""
  return shutil.which(name) or os.path.join("/usr/sbin", name)


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def read_until_closed(sock):
  """Everything `sock` receives until the peer closes it (FIN or reset)."""
  data = b""
  try:
    while True:
      chunk = sock.recv(4096)
      if not chunk:
        return data
      data += chunk
  except ConnectionResetError:
    return data


class Pop3From(poplib.POP3):
  """poplib.POP3 whose connection leaves from `source` (an address of 127/8)."""

  def __init__(self, source, host, port):
    self.source = source
    super().__init__(host, port, timeout=TIMEOUT_S)

  def _create_socket(self, timeout):
    return socket.create_connection((self.host, self.port), timeout, (self.source, 0))


class Pop3SslFrom(poplib.POP3_SSL):
  """poplib.POP3_SSL from `source`."""

  def __init__(self, source, host, port, context):
    self.source = source
    super().__init__(host, port, timeout=TIMEOUT_S, context=context)

  def _create_socket(self, timeout):
    sock = socket.create_connection((self.host, self.port), timeout, (self.source, 0))
    return self.context.wrap_socket(sock, server_hostname="mail.proxy.test")


class HaproxyTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.pki = TestPki(make_temp_dir("pki-"))
    cert, key = cls.pki.issue("default", ["mail.proxy.test"])
    # Only HAProxy's address may send headers; nothing is exempt from the per-IP limit.
    cls.server = PosthasteServer(extra_args=[
        "--tls_cert=" + cert, "--tls_key=" + key, "--pop3s_listen=127.0.0.1:0",
        "--proxy_networks=127.0.0.1/32", "--trusted_networks=", "--max_connections_per_ip=1",
        "--proxy_header_timeout_ms=500"
    ])
    cls.server.add_user(USER, PASSWORD)
    cls.server.deliver(USER, MESSAGE)
    cls.server.start()
    cls.ports = {name: free_port() for name in ("v2", "v1", "tls", "lmtp")}
    directory = make_temp_dir("haproxy-")
    config = os.path.join(directory, "haproxy.cfg")
    with open(config, "w") as f:
      f.write("global\n  maxconn 200\n"
              "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n"
              "  timeout server 60s\n")
      for name, backend_port, option in (("v2", cls.server.pop3_port, "send-proxy-v2"),
                                         ("v1", cls.server.pop3_port, "send-proxy"),
                                         ("tls", cls.server.pop3s_port, "send-proxy-v2"),
                                         ("lmtp", cls.server.lmtp_port, "send-proxy")):
        f.write("listen %s\n  bind 127.0.0.1:%d\n  server posthaste 127.0.0.1:%d %s\n" %
                (name, cls.ports[name], backend_port, option))
    cls.haproxy = subprocess.Popen([sbin_tool("haproxy"), "-db", "-f", config], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def listening():
      try:
        socket.create_connection(("127.0.0.1", cls.ports["lmtp"]), 1).close()
        return True
      except OSError:
        return False

    try:
      wait_for(listening, timeout_s=20, what="haproxy listening")
    except BaseException:
      cls.tearDownClass()
      raise

  @classmethod
  def tearDownClass(cls):
    if getattr(cls, "haproxy", None) is not None:
      cls.haproxy.terminate()
      try:
        cls.haproxy.wait(10)
      except subprocess.TimeoutExpired:
        cls.haproxy.kill()
        cls.haproxy.wait(10)
      cls.haproxy.stderr.close()
    cls.server.stop()

  def tls_context(self):
    return ssl.create_default_context(cafile=self.pki.ca_cert)

  def session_end_clients(self):
    """The client= field of every `session end` log line so far."""
    return re.findall(r"session end.*?\bclient=(\S+)", self.server.stderr_text())

  def wait_session_ends(self, count):
    wait_for(lambda: len(self.session_end_clients()) >= count, timeout_s=TIMEOUT_S,
             what="%d session end lines" % count)

  def retr_and_quit(self, pop):
    self.assertTrue(pop.user(USER).startswith(b"+OK"))
    self.assertTrue(pop.pass_(PASSWORD).startswith(b"+OK"))
    _, lines, _ = pop.retr(1)
    self.assertIn(b"Delivered before the proxies started.", lines)
    pop.quit()

  def test_1_logins_through_each_proxy_kind_carry_the_client_address(self):
    before = len(self.session_end_clients())
    self.retr_and_quit(Pop3From("127.0.0.2", "127.0.0.1", self.ports["v2"]))
    self.retr_and_quit(Pop3From("127.0.0.3", "127.0.0.1", self.ports["v1"]))
    self.retr_and_quit(
        Pop3SslFrom("127.0.0.2", "127.0.0.1", self.ports["tls"], self.tls_context()))
    self.wait_session_ends(before + 3)
    self.assertEqual(self.session_end_clients()[before:], ["127.0.0.2", "127.0.0.3", "127.0.0.2"])
    samples = self.server.metrics()
    self.assertEqual(metric_sum(samples, "posthaste_proxy_headers_total", service="pop3",
                                kind="client"), 3)

  def test_2_the_per_ip_limit_counts_clients_not_the_proxy(self):
    held = Pop3From("127.0.0.2", "127.0.0.1", self.ports["v2"])
    try:
      # Same client again: its one connection is taken.
      with self.assertRaises(poplib.error_proto) as refused:
        Pop3From("127.0.0.2", "127.0.0.1", self.ports["v1"])
      self.assertIn(b"[SYS/TEMP]", refused.exception.args[0])
      # Another client through the same proxy: admitted (HAProxy's own address is one).
      other = Pop3From("127.0.0.3", "127.0.0.1", self.ports["v2"])
      self.assertTrue(other.welcome.startswith(b"+OK"), other.welcome)
      self.retr_and_quit(other)
    finally:
      held.quit()

  def test_3_lmtp_through_the_proxy(self):
    # (setUpClass's readiness probe went through this proxy too.)
    headers_before = metric_sum(self.server.metrics(), "posthaste_proxy_headers_total",
                                service="lmtp", kind="client")
    with smtplib.LMTP("127.0.0.1", self.ports["lmtp"], timeout=TIMEOUT_S) as lmtp:
      lmtp.sendmail("mta@example.test", [USER], MESSAGE.replace(b"before", b"by LMTP"))
    pop = Pop3From("127.0.0.2", "127.0.0.1", self.ports["v2"])
    pop.user(USER)
    pop.pass_(PASSWORD)
    self.assertEqual(pop.stat()[0], 2)
    pop.rset()
    pop.quit()
    samples = self.server.metrics()
    self.assertEqual(metric_sum(samples, "posthaste_proxy_headers_total", service="lmtp",
                                kind="client"), headers_before + 1)

  def test_4_headers_from_elsewhere_and_missing_headers_are_refused(self):
    # From 127.0.0.2, not in --proxy_networks: the header line is refused and the line closed.
    with socket.create_connection(("127.0.0.1", self.server.pop3_port), TIMEOUT_S,
                                  ("127.0.0.2", 0)) as untrusted:
      stream = untrusted.makefile("rb")
      self.assertTrue(stream.readline().startswith(b"+OK"))
      untrusted.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 51000 110\r\n")
      self.assertEqual(stream.readline(),
                       b"-ERR PROXY header not accepted from this address\r\n")
      self.assertEqual(stream.readline(), b"")  # closed
    # From the proxy's address: silence, then a non-header, both closed before any greeting.
    # (Closed with the bytes it sent unread, the socket may end in a reset rather than a FIN.)
    with socket.create_connection(("127.0.0.1", self.server.pop3_port), TIMEOUT_S) as silent:
      self.assertEqual(read_until_closed(silent), b"")
    with socket.create_connection(("127.0.0.1", self.server.pop3_port), TIMEOUT_S) as garbage:
      garbage.sendall(b"USER pat@proxy.test\r\n")
      self.assertEqual(read_until_closed(garbage), b"")

    def counted():
      samples = self.server.metrics()
      return [metric_sum(samples, "posthaste_proxy_header_refusals_total", service="pop3",
                         reason=reason) for reason in ("untrusted", "timeout", "invalid")]

    wait_for(lambda: counted() == [1, 1, 1], timeout_s=TIMEOUT_S, what="refusals counted")


  def test_5_plaintext_logins_through_a_trusted_proxy(self):
    # A client on a non-loopback address: without the proxy, USER needs TLS first
    # (--plaintext_requires_tls); through it, the proxy holds the client's TLS.
    address = non_loopback_address()
    if address is None:
      self.skipTest("no non-loopback IPv4 address on this machine")
    self.retr_and_quit(Pop3From(address, "127.0.0.1", self.ports["v2"]))
    direct = Pop3From(address, "127.0.0.1", self.server.pop3_port)
    with self.assertRaises(poplib.error_proto) as refused:
      direct.user(USER)
    self.assertIn(b"[AUTH] Plaintext", refused.exception.args[0])
    direct.quit()


  def test_6_xclient_from_the_proxy_names_the_client_in_the_log(self):
    before = len(self.session_end_clients())
    pop = Pop3From("127.0.0.2", "127.0.0.1", self.ports["v2"])
    self.assertTrue(pop.welcome.startswith(b"+OK [XCLIENT] "), pop.welcome)
    self.assertTrue(pop._shortcmd("XCLIENT ADDR=192.0.2.9 PORT=40000 TTL=3").startswith(b"+OK"))
    self.retr_and_quit(pop)
    # (Sessions of earlier tests may still be ending: test_5's client can be on any address.)
    wait_for(lambda: "192.0.2.9" in self.session_end_clients()[before:], timeout_s=TIMEOUT_S,
             what="the XCLIENT session's end line")
    # Directly, from an address outside --proxy_networks: no capability, an unknown command.
    direct = Pop3From("127.0.0.3", "127.0.0.1", self.server.pop3_port)
    self.assertNotIn(b"[XCLIENT]", direct.welcome)
    with self.assertRaises(poplib.error_proto) as unknown:
      direct._shortcmd("XCLIENT ADDR=192.0.2.9")
    self.assertEqual(unknown.exception.args[0], b"-ERR Unknown command")
    direct.quit()

  def test_7_lmtp_refuses_a_proxy_header_from_elsewhere(self):
    # An LMTP client outside --proxy_networks that starts with a PROXY line is told why and
    # closed, and counted, as on POP3 (not answered "500 unrecognized" and kept).
    with socket.create_connection(("127.0.0.1", self.server.lmtp_port), TIMEOUT_S,
                                  ("127.0.0.2", 0)) as untrusted:
      stream = untrusted.makefile("rb")
      self.assertTrue(stream.readline().startswith(b"220 "))
      untrusted.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 51000 24\r\nLHLO mta.test\r\n")
      reply = stream.readline()
      self.assertTrue(reply.startswith(b"554 5.7.1 "), reply)
      self.assertIn(b"PROXY header not accepted from this address", reply)
      self.assertEqual(stream.readline(), b"")  # closed: the LHLO got no answer
    wait_for(lambda: metric_sum(self.server.metrics(), "posthaste_proxy_header_refusals_total",
                                service="lmtp", reason="untrusted") == 1,
             timeout_s=TIMEOUT_S, what="the LMTP refusal counted")


class XclientAccountingTest(unittest.TestCase):
  """After a trusted proxy's XCLIENT, the backend counts logins for (user, client IP) under the
  client's address, not the address of the connection (here the PROXY header's 127.0.0.2, the
  same for every session, as with a proxy that sends LOCAL headers or names itself)."""

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer(extra_args=[
        "--proxy_networks=127.0.0.1/32", "--trusted_networks=", "--max_connections_per_user_ip=1",
        "--in_use_policy=refuse", "--auth_failure_delay_ms=0"
    ])
    cls.server.add_user(USER, PASSWORD)
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def login_as(self, client_address):
    """A session through a 'proxy' on 127.0.0.1 (a PROXY v1 header naming 127.0.0.2, then
    XCLIENT naming `client_address`); returns the socket, its reader and PASS's reply."""
    sock = socket.create_connection(("127.0.0.1", self.server.pop3_port), TIMEOUT_S)
    stream = sock.makefile("rb")
    sock.sendall(b"PROXY TCP4 127.0.0.2 127.0.0.1 51000 110\r\n")
    self.assertTrue(stream.readline().startswith(b"+OK [XCLIENT] "))
    sock.sendall(("XCLIENT ADDR=%s PORT=40000\r\nUSER %s\r\nPASS %s\r\n" %
                  (client_address, USER, PASSWORD)).encode())
    self.assertEqual(stream.readline(), b"+OK XCLIENT accepted\r\n")
    self.assertTrue(stream.readline().startswith(b"+OK"))
    return sock, stream, stream.readline()

  def test_the_user_ip_count_uses_the_xclient_address(self):
    held, held_stream, reply = self.login_as("192.0.2.10")
    try:
      self.assertTrue(reply.startswith(b"+OK"), reply)
      # Another client of the same user: its own (user, IP) count is free, so it meets the
      # lock (in use), not the limit that the proxy's shared address would have reached.
      other, _, reply = self.login_as("192.0.2.11")
      other.close()
      self.assertTrue(reply.startswith(b"-ERR [IN-USE]"), reply)
      # The same client again: its (user, IP) count is taken.
      again, _, reply = self.login_as("::ffff:192.0.2.10")
      again.close()
      self.assertTrue(reply.startswith(b"-ERR [SYS/TEMP]"), reply)
    finally:
      held.sendall(b"QUIT\r\n")
      held_stream.readline()
      held.close()


class FixedAuthHttpAnswer(http.server.BaseHTTPRequestHandler):
  """nginx's auth_http: every login goes to the backend in `server.backend_port`."""

  def do_GET(self):
    self.server.requests.append(dict(self.headers))
    # nginx percent-encodes the user name and password.
    ok = urllib.parse.unquote(self.headers.get("Auth-Pass", "")) == PASSWORD
    self.send_response(200)
    if ok:
      self.send_header("Auth-Status", "OK")
      self.send_header("Auth-Server", "127.0.0.1")
      self.send_header("Auth-Port", str(self.server.backend_port))
    else:
      self.send_header("Auth-Status", "Invalid login or password")
      self.send_header("Auth-Wait", "1")
    self.end_headers()

  def log_message(self, *args):
    pass


class NginxMailProxyTest(unittest.TestCase):
  """nginx's mail proxy (libnginx-mod-mail) with `proxy_protocol on` and a fixed auth_http answerer."""

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer(extra_args=[
        "--proxy_networks=127.0.0.1/32", "--trusted_networks=", "--proxy_header_timeout_ms=500"
    ])
    cls.server.add_user(USER, PASSWORD)
    cls.server.deliver(USER, MESSAGE)
    cls.server.start()
    cls.auth = http.server.HTTPServer(("127.0.0.1", 0), FixedAuthHttpAnswer)
    cls.auth.requests = []
    cls.auth.backend_port = cls.server.pop3_port
    cls.auth_thread = threading.Thread(target=cls.auth.serve_forever, daemon=True)
    cls.auth_thread.start()
    cls.port = free_port()
    directory = make_temp_dir("nginx-")
    config = os.path.join(directory, "nginx.conf")
    with open(config, "w") as f:
      f.write("load_module /usr/lib/nginx/modules/ngx_mail_module.so;\n"
              "daemon off;\nmaster_process off;\n"
              "pid %(d)s/nginx.pid;\nerror_log %(d)s/error.log info;\n"
              "events { worker_connections 64; }\n"
              "mail {\n  server_name mail.proxy.test;\n"
              "  auth_http 127.0.0.1:%(auth)d/auth;\n  proxy_pass_error_message on;\n"
              "  server {\n    listen 127.0.0.1:%(port)d;\n    protocol pop3;\n"
              "    pop3_auth plain;\n    proxy_protocol on;\n  }\n}\n" %
              {"d": directory, "auth": cls.auth.server_address[1], "port": cls.port})
    cls.nginx = subprocess.Popen(
        [sbin_tool("nginx"), "-p", directory, "-e", os.path.join(directory, "error.log"),
         "-c", config], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)

    def listening():
      if cls.nginx.poll() is not None:
        raise AssertionError("nginx exited: %s" % cls.nginx.stderr.read().decode())
      try:
        socket.create_connection(("127.0.0.1", cls.port), 1).close()
        return True
      except OSError:
        return False

    try:
      wait_for(listening, timeout_s=20, what="nginx listening")
    except BaseException:
      cls.tearDownClass()
      raise

  @classmethod
  def tearDownClass(cls):
    if getattr(cls, "nginx", None) is not None:
      cls.nginx.terminate()
      try:
        cls.nginx.wait(10)
      except subprocess.TimeoutExpired:
        cls.nginx.kill()
        cls.nginx.wait(10)
      cls.nginx.stderr.close()
    cls.auth.shutdown()
    cls.auth.server_close()
    cls.server.stop()

  def test_login_and_retr_through_nginx_carry_the_client_address(self):
    pop = Pop3From("127.0.0.3", "127.0.0.1", self.port)
    self.assertTrue(pop.user(USER).startswith(b"+OK"))
    self.assertTrue(pop.pass_(PASSWORD).startswith(b"+OK"))
    _, lines, _ = pop.retr(1)
    self.assertIn(b"Delivered before the proxies started.", lines)
    pop.quit()
    self.assertEqual(self.auth.requests[-1].get("Client-IP"), "127.0.0.3")
    wait_for(lambda: re.search(r"session end.*?\bclient=127\.0\.0\.3\b",
                               self.server.stderr_text()) is not None,
             timeout_s=TIMEOUT_S, what="the session end line naming 127.0.0.3")
    samples = self.server.metrics()
    self.assertEqual(metric_sum(samples, "posthaste_proxy_headers_total", service="pop3",
                                kind="client"), 1)  # nginx connects only after auth_http


if __name__ == "__main__":
  unittest.main()
