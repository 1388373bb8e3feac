"""Per-tenant certificates chosen by SNI, and certificate reload, against the real server.

The certificate directory is laid out the way Kubernetes mounts a Secret: DIR/..data is a
symlink to a timestamped directory holding the files, and DIR/NAME.crt -> ..data/NAME.crt.
Certificates come from a throwaway CA made with openssl at test time.

Shows: two tenants (an exact name and a wildcard) each get their own certificate, over pop3s
and over STLS, checked by the verified peer certificate's subject and SAN; no SNI and an
unknown name get the default. Swapping `..data` (a Secret update) is noticed by the file check
and replaces tenant A's certificate: new connections get the new one, while a session that was
logged in on the old one carries on (RETR of a 1 MiB message after the reload) and quits
cleanly. A broken new file keeps the old certificate and the log says why. SIGHUP reloads the
default certificate when the file check is off.
"""

import os
import poplib
import signal
import socket
import ssl
import time
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import (PosthasteServer, make_temp_dir, metric_sum,
                                            wait_for, wire_lines)
from tests.testing.tls_certs import TestPki, peer_dns_names, peer_subject_cn

USER = "sni@example.test"
PASSWORD = "sni secret"
TIMEOUT_S = 60
TENANT_A = "mail.tenant-a.test"
TENANT_B_WILDCARD = "*.tenant-b.test"
TENANT_B_HOST = "pop.tenant-b.test"


def wait_for_reload(predicate, what="condition"):
  """Bounded wait for a certificate reload (polled each second; 30 s for a loaded machine)."""
  return wait_for(predicate, timeout_s=30, what=what, poll_s=0.1)


class SecretDir:
  """A Kubernetes-style Secret mount: DIR/..data -> ..TIMESTAMP, DIR/NAME -> ..data/NAME."""

  def __init__(self, path):
    self.path = path
    os.makedirs(path, exist_ok=True)
    self.version = 0

  def publish(self, files):
    """Atomically replaces the whole content with `files` ({name: bytes})."""
    self.version += 1
    stamp = "..2026_11_26_00_00_%02d.%d" % (self.version, os.getpid())
    os.mkdir(os.path.join(self.path, stamp))
    for name, data in files.items():
      with open(os.path.join(self.path, stamp, name), "wb") as f:
        f.write(data)
    tmp_link = os.path.join(self.path, "..data_tmp")
    os.symlink(stamp, tmp_link)
    os.replace(tmp_link, os.path.join(self.path, "..data"))  # the atomic swap
    for name in files:
      link = os.path.join(self.path, name)
      if not os.path.islink(link):
        os.symlink(os.path.join("..data", name), link)


def read(path):
  with open(path, "rb") as f:
    return f.read()


class SniReloadTest(unittest.TestCase):

  def setUp(self):
    self.pki = TestPki(make_temp_dir("pki-"))
    self.default_cert, self.default_key = self.pki.issue(
        "default", ["mail.default.test"], common_name="default v1")
    self.secret = SecretDir(make_temp_dir("certs-"))
    self.files = {}
    self.set_tenant("mail.tenant-a.test", [TENANT_A], "tenant-a v1")
    self.set_tenant("_.tenant-b.test", [TENANT_B_WILDCARD], "tenant-b v1")
    self.secret.publish(self.files)

  def set_tenant(self, stem, names, common_name):
    crt, key = self.pki.issue("%s-%s" % (stem, common_name.replace(" ", "-")), names,
                              common_name=common_name)
    self.files[stem + ".crt"] = read(crt)
    self.files[stem + ".key"] = read(key)

  def start_server(self, reload_check_s):
    server = PosthasteServer(extra_args=[
        "--tls_cert=" + self.default_cert, "--tls_key=" + self.default_key,
        "--tls_cert_dir=" + self.secret.path, "--pop3s_listen=127.0.0.1:0",
        "--tls_reload_check_s=%d" % reload_check_s])
    server.add_user(USER, PASSWORD)
    self.mail = [messages.everyday_messages()[0], messages.big_message(size=1 << 20)]
    for _, raw in self.mail:
      server.deliver(USER, raw)
    return server.start()

  def context(self, check_hostname=True):
    ctx = ssl.create_default_context(cafile=self.pki.ca_cert)
    ctx.check_hostname = check_hostname
    return ctx

  def connect_tls(self, server, server_name):
    """(subject CN, DNS SANs) the server presents for `server_name` on pop3s."""
    ctx = self.context(check_hostname=server_name is not None)
    with socket.create_connection(("127.0.0.1", server.pop3s_port), TIMEOUT_S) as raw:
      with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        greeting = tls.recv(512)
        self.assertTrue(greeting.startswith(b"+OK"), greeting)
        return peer_subject_cn(tls), peer_dns_names(tls)

  def stls_session(self, server, server_name):
    """A logged-in POP3 session upgraded with STLS, sending `server_name` as SNI."""
    pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=TIMEOUT_S)
    pop.host = server_name  # poplib's stls() sends `host` as the SNI name and checks it
    pop.stls(context=self.context())
    return pop

  def test_each_tenant_sees_its_own_certificate(self):
    server = self.start_server(reload_check_s=0)
    try:
      self.assertEqual(self.connect_tls(server, TENANT_A), ("tenant-a v1", [TENANT_A]))
      self.assertEqual(self.connect_tls(server, TENANT_B_HOST),
                       ("tenant-b v1", [TENANT_B_WILDCARD]))
      self.assertEqual(self.connect_tls(server, None)[0], "default v1")
      # An unknown name gets the default (whose SAN does not match: no hostname check here).
      ctx = self.context(check_hostname=False)
      with socket.create_connection(("127.0.0.1", server.pop3s_port), TIMEOUT_S) as raw:
        with ctx.wrap_socket(raw, server_hostname="unknown.example.test") as tls:
          self.assertEqual(peer_subject_cn(tls), "default v1")
      # STLS chooses by SNI the same way.
      for name, cn in ((TENANT_A, "tenant-a v1"), (TENANT_B_HOST, "tenant-b v1")):
        pop = self.stls_session(server, name)
        self.assertEqual(peer_subject_cn(pop.sock), cn)
        pop.user(USER)
        pop.pass_(PASSWORD)
        self.assertEqual(pop.stat()[0], len(self.mail))
        pop.quit()
    finally:
      server.stop()

  def test_secret_update_reloads_while_a_session_continues(self):
    server = self.start_server(reload_check_s=1)
    try:
      # A session on tenant A's first certificate, logged in, mid-maildrop.
      pop = self.stls_session(server, TENANT_A)
      self.assertEqual(peer_subject_cn(pop.sock), "tenant-a v1")
      pop.user(USER)
      pop.pass_(PASSWORD)
      _, lines, _ = pop.retr(1)
      self.assertEqual(lines, wire_lines(self.mail[0][1]))

      # The Secret is updated: tenant A gets a new certificate (..data swapped).
      self.set_tenant("mail.tenant-a.test", [TENANT_A], "tenant-a v2")
      self.secret.publish(self.files)
      wait_for_reload(lambda: self.connect_tls(server, TENANT_A)[0] == "tenant-a v2",
               what="new connections to see tenant A's new certificate")
      log = server.stderr_text()
      self.assertIn('"tls certificates reloaded" trigger="files changed"', log)
      self.assertEqual(self.connect_tls(server, TENANT_B_HOST)[0], "tenant-b v1")

      # The session from before the reload carries on over its TLS connection.
      self.assertEqual(peer_subject_cn(pop.sock), "tenant-a v1")
      _, lines, _ = pop.retr(2)
      self.assertTrue(lines == wire_lines(self.mail[1][1]), "RETR after the reload differs")
      pop.quit()

      # A broken new file keeps the old certificate, and the log says why.
      failed_before = metric_sum(server.metrics(), "posthaste_tls_reloads_total",
                                 result="failed")
      self.files["_.tenant-b.test.crt"] = b"-----BEGIN CERTIFICATE-----\nnot base64\n"
      self.secret.publish(self.files)
      wait_for_reload(lambda: metric_sum(server.metrics(), "posthaste_tls_reloads_total",
                                  result="failed") > failed_before,
               what="a failed reload")
      self.assertIn("tls: new certificate is broken, keeping the old one", server.stderr_text())
      self.assertEqual(self.connect_tls(server, TENANT_B_HOST)[0], "tenant-b v1")
      self.assertEqual(self.connect_tls(server, TENANT_A)[0], "tenant-a v2")
    finally:
      server.stop()

  def test_sighup_reloads_the_default_certificate(self):
    server = self.start_server(reload_check_s=0)  # file check off: only SIGHUP reloads
    try:
      self.assertEqual(self.connect_tls(server, None)[0], "default v1")
      crt, key = self.pki.issue("default-v2", ["mail.default.test"], common_name="default v2")
      for source, target in ((key, self.default_key), (crt, self.default_cert)):
        with open(target + ".new", "wb") as f:
          f.write(read(source))
        os.replace(target + ".new", target)
      time.sleep(1.5)
      self.assertEqual(self.connect_tls(server, None)[0], "default v1")  # not yet
      server.send_signal(signal.SIGHUP)
      wait_for_reload(lambda: self.connect_tls(server, None)[0] == "default v2",
               what="the default certificate to change after SIGHUP")
      self.assertIn('"tls certificates reloaded" trigger=SIGHUP', server.stderr_text())
      self.assertGreaterEqual(
          metric_sum(server.metrics(), "posthaste_tls_reloads_total", result="ok"), 1)
    finally:
      server.stop()


if __name__ == "__main__":
  unittest.main()
