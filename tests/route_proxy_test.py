"""`posthaste route` with the real peers it serves: Postfix's postmap over socketmap, and
nginx's mail proxy (auth_http) in front of a real posthaste backend.

Shows:
  - postmap -q ADDRESS socketmap:inet:127.0.0.1:PORT:transport gives lmtp:inet:IP:PORT of the
    owning backend (tenant placement and a user's override); an unplaced address is not found;
    a moving mailbox and a backend that is not registered are temporary failures;
  - through nginx (POP3 on 127.0.0.1, auth_http pointing at the route service) poplib logs in
    with USER/PASS and RETRs the message from the backend; a wrong password is refused by the
    route service (the backend's verification endpoint says so) and nginx never opens a
    backend connection for it (the backend's POP3 connection counter does not move), nor for
    a user no tenant places; a user
    of a tenant placed on a down backend gets nginx's -ERR with the temporary failure text;
  - the HAProxy map file lists the tenant with the backend's address; /metrics counts the
    answers by kind and exports the directory-stale gauge;
  - SIGHUP reads the directory file again: a tenant added to it is routed by the socketmap and
    appears in the rewritten HAProxy map.
"""

import json
import os
import poplib
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

from tests.testing.posthaste_server import (PosthasteServer, make_temp_dir, metric_sum,
                                            parse_prometheus_text, posthaste_binary, wait_for)

TOKEN = "route-test-admin-token-0123456789"
TIMEOUT_S = 30
NGINX = "/usr/sbin/nginx"
POSTMAP = "/usr/sbin/postmap"
NGINX_MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"
MESSAGE = b"From: a@x.test\r\nSubject: through the proxy\r\n\r\nrouted body\r\n"


def free_port():
  """A port free on 127.0.0.1 right now (nginx cannot listen on port 0 and report it)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Process:
  """A child process whose stderr is collected; stop() ends it (SIGTERM, then SIGKILL)."""

  def __init__(self, argv):
    self.argv = argv
    self.lines = []
    self.lock = threading.Lock()
    self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
    self.reader = threading.Thread(target=self._read, daemon=True)
    self.reader.start()

  def _read(self):
    for raw in self.proc.stderr:
      with self.lock:
        self.lines.append(raw.decode("utf-8", "replace"))

  def text(self):
    with self.lock:
      return "".join(self.lines)

  def stop(self):
    if self.proc.poll() is None:
      self.proc.send_signal(signal.SIGTERM)
      try:
        self.proc.wait(TIMEOUT_S)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait(TIMEOUT_S)
    self.reader.join(5)
    return self.proc.returncode


class RouteProxyTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.dir = make_temp_dir("route-")
    token_file = os.path.join(cls.dir, "token")
    with open(token_file, "w") as f:
      f.write(TOKEN + "\n")
    cls.backend = PosthasteServer(
        shards=1, extra_args=["--admin_listen=127.0.0.1:0", "--admin_token_file=" + token_file])
    cls.backend.add_user("alice@one.test", "alice pw")
    cls.backend.add_user("boss@one.test", "boss pw")
    cls.backend.deliver("alice@one.test", MESSAGE)
    cls.backend.start()
    admin = re.search(r"\badmin_api=127\.0\.0\.1:(\d+)", cls.backend.stderr_text())
    assert admin, cls.backend.stderr_text()
    cls.admin_port = int(admin.group(1))
    b1 = {"ip": "127.0.0.1", "pop3": cls.backend.pop3_port, "pop3s": 1995,
          "lmtp": cls.backend.lmtp_port, "admin": cls.admin_port}
    directory = {
        "backends/b1": b1,
        "backends/b3": {"ip": "127.0.0.3", "pop3": 110, "lmtp": 24, "admin": 8080},
        "tenants/one.test": {"backend": "b1"},
        "tenants/moving.test": {"backend": "b1", "moving_to": "b3"},
        "tenants/down.test": {"backend": "b2"},  # b2 is not registered: down
        "users/boss@one.test": {"backend": "b3"},
    }
    cls.directory = directory
    cls.directory_file = os.path.join(cls.dir, "directory.json")
    with open(cls.directory_file, "w") as f:
      json.dump(directory, f)
    cls.map_file = os.path.join(cls.dir, "tenants.map")
    cls.route = Process([
        posthaste_binary(), "route", "--directory_file=" + cls.directory_file,
        "--auth_http_listen=127.0.0.1:0", "--admin_token_file=" + token_file,
        "--socketmap_listen=127.0.0.1:0", "--haproxy_map=" + cls.map_file,
        "--metrics_listen=127.0.0.1:0"
    ])
    pattern = re.compile(r"auth_http=127\.0\.0\.1:(\d+).*socketmap=127\.0\.0\.1:(\d+).*"
                         r"metrics=127\.0\.0\.1:(\d+)")
    wait_for(lambda: pattern.search(cls.route.text()) or cls.route.proc.poll() is not None,
             timeout_s=TIMEOUT_S, what="route listening line")
    match = pattern.search(cls.route.text())
    assert match, "route did not start:\n" + cls.route.text()
    cls.auth_http_port, cls.socketmap_port, cls.metrics_port = map(int, match.groups())
    cls.nginx = None

  @classmethod
  def tearDownClass(cls):
    if cls.nginx is not None:
      cls.nginx.stop()
    code = cls.route.stop()
    cls.backend.stop()
    assert code == 0, "route exited %r:\n%s" % (code, cls.route.text())

  # --- Postfix ---

  def postmap(self, key):
    result = subprocess.run(
        [POSTMAP, "-q", key,
         "socketmap:inet:127.0.0.1:%d:transport" % self.socketmap_port],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=False)
    return result.returncode, result.stdout.decode().strip(), result.stderr.decode()

  def test_postmap_gets_the_owning_backends_lmtp(self):
    lmtp = "lmtp:inet:127.0.0.1:%d" % self.backend.lmtp_port
    self.assertEqual(self.postmap("alice@one.test")[:2], (0, lmtp))
    self.assertEqual(self.postmap("Alice@ONE.test")[:2], (0, lmtp))
    self.assertEqual(self.postmap("one.test")[:2], (0, lmtp))
    self.assertEqual(self.postmap("boss@one.test")[:2], (0, "lmtp:inet:127.0.0.3:24"))
    # An extension address is left to Postfix's next lookups (boss@one.test, then one.test).
    self.assertEqual(self.postmap("boss+lists@one.test")[:2], (1, ""))
    code, out, _ = self.postmap("nobody@elsewhere.test")
    self.assertEqual((code, out), (1, ""))  # not found

  def test_postmap_moving_and_down_are_temporary(self):
    for key in ("x@moving.test", "x@down.test"):
      code, out, err = self.postmap(key)
      self.assertNotEqual(code, 0, key)
      self.assertEqual(out, "", key)
      self.assertIn("try again later", err, key)

  def test_sighup_reloads_the_directory_file(self):
    self.assertEqual(self.postmap("x@later.test")[:2], (1, ""))
    directory = dict(self.directory)
    directory["tenants/later.test"] = {"backend": "b1"}
    with open(self.directory_file + ".new", "w") as f:
      json.dump(directory, f)
    os.rename(self.directory_file + ".new", self.directory_file)
    self.route.proc.send_signal(signal.SIGHUP)
    lmtp = "lmtp:inet:127.0.0.1:%d" % self.backend.lmtp_port
    wait_for(lambda: self.postmap("x@later.test")[:2] == (0, lmtp), timeout_s=TIMEOUT_S,
             what="the reloaded directory answering")

    def map_has_later():
      with open(self.map_file) as f:
        return "later.test 127.0.0.1:1995\n" in f.read()

    wait_for(map_has_later, timeout_s=TIMEOUT_S, what="the HAProxy map rewritten")

  # --- HAProxy map ---

  def test_haproxy_map_lists_routable_tenants(self):
    with open(self.map_file) as f:
      text = f.read()
    self.assertIn("one.test 127.0.0.1:1995\n", text)
    self.assertNotIn("down.test", text)

  # --- nginx ---

  def start_nginx(self):
    if self.__class__.nginx is not None:
      return self.__class__.nginx_port
    if not os.path.exists(NGINX) or not os.path.exists(NGINX_MAIL_MODULE):
      self.fail("nginx with the mail module is needed (tools/lib/deps.sh: nginx "
                "libnginx-mod-mail)")
    port = free_port()
    prefix = make_temp_dir("nginx-")
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
      f.write("""
load_module %(module)s;
daemon off;
master_process off;
worker_processes 1;
pid %(prefix)s/nginx.pid;
error_log %(prefix)s/error.log info;
events { worker_connections 64; }
mail {
  server_name route.test;
  auth_http 127.0.0.1:%(auth)d/auth;
  auth_http_timeout 20s;
  proxy_pass_error_message on;
  server {
    listen 127.0.0.1:%(port)d;
    protocol pop3;
    pop3_auth plain;
  }
}
""" % {"module": NGINX_MAIL_MODULE, "prefix": prefix, "auth": self.auth_http_port,
       "port": port})
    self.__class__.nginx = Process([NGINX, "-p", prefix, "-e", prefix + "/error.log", "-c", conf])
    self.__class__.nginx_port = port

    def accepting():
      try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
      except OSError:
        self.assertIsNone(self.nginx.proc.poll(), "nginx exited:\n" + self.nginx.text())
        return False

    wait_for(accepting, timeout_s=TIMEOUT_S, what="nginx listening")
    return port

  def route_metric(self, answer):
    with socket.create_connection(("127.0.0.1", self.metrics_port), timeout=TIMEOUT_S) as s:
      s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
      data = b""
      while True:
        chunk = s.recv(65536)
        if not chunk:
          break
        data += chunk
    body = data.split(b"\r\n\r\n", 1)[1].decode()
    samples = parse_prometheus_text(body)
    self.assertEqual(metric_sum(samples, "posthaste_route_directory_stale"), 0)
    return metric_sum(samples, "posthaste_route_auth_http_answers_total", answer=answer)

  def backend_connections(self):
    return metric_sum(self.backend.metrics(), "posthaste_pop3_connections_accepted_total")

  def test_nginx_login_and_retr_reach_the_backend(self):
    port = self.start_nginx()
    before = self.backend_connections()
    client = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
      client.user("alice@one.test")
      client.pass_("alice pw")
      count, _ = client.stat()
      self.assertEqual(count, 1)
      _, lines, _ = client.retr(1)
      self.assertIn(b"routed body", lines)
    finally:
      client.quit()
    self.assertEqual(self.backend_connections(), before + 1)
    self.assertGreaterEqual(self.route_metric("ok"), 1)

  def test_nginx_wrong_password_never_reaches_the_backend(self):
    port = self.start_nginx()
    before = self.backend_connections()
    refused_before = self.route_metric("bad_credentials")
    client = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
      client.user("alice@one.test")
      with self.assertRaises(poplib.error_proto) as refused:
        client.pass_("wrong pw")
      self.assertIn(b"[AUTH]", refused.exception.args[0])
    finally:
      client.close()
    self.assertEqual(self.route_metric("bad_credentials"), refused_before + 1)
    self.assertEqual(self.backend_connections(), before)

  def test_nginx_unknown_user_never_reaches_a_backend(self):
    port = self.start_nginx()
    before = self.backend_connections()
    unknown_before = self.route_metric("unknown_user")
    client = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
      client.user("nobody@elsewhere.test")
      with self.assertRaises(poplib.error_proto) as refused:
        client.pass_("any")
      self.assertIn(b"[AUTH]", refused.exception.args[0])
    finally:
      client.close()
    self.assertEqual(self.route_metric("unknown_user"), unknown_before + 1)
    self.assertEqual(self.backend_connections(), before)

  def test_nginx_down_backend_is_a_temporary_failure(self):
    port = self.start_nginx()
    client = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
      client.user("carol@down.test")
      with self.assertRaises(poplib.error_proto) as refused:
        client.pass_("any")
      self.assertIn(b"[SYS/TEMP]", refused.exception.args[0])
    finally:
      client.close()
    self.assertGreaterEqual(self.route_metric("temp_backend_down"), 1)


if __name__ == "__main__":
  unittest.main()
