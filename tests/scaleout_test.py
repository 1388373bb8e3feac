"""The scaled-out picture on loopback: three posthaste backends registered in a 3-member etcd,
`posthaste route` reading the directory from etcd, nginx's mail proxy (POP3 with STLS, and
implicit TLS with the provider's certificate) and HAProxy (TCP, routing 995 by SNI through the
route-written map, pushed over its runtime API), both sending the PROXY protocol.

Shows:
  - tenants placed with `posthaste placement set-tenant` on three different backends; each user
    logs in through nginx (STLS and implicit TLS) and HAProxy (SNI; TLS ends at the backend with
    the tenant's certificate) with poplib and curl, and sees only their own mail;
  - mail: the route service's socketmap (queried with Postfix's own `postmap -q`) names the
    owning backend's LMTP; a throwaway Postfix instance (its own config, queue and port under a
    temporary directory, `transport_maps = socketmap:...`) takes mail over SMTP and relays each
    message by LMTP to the owning backend, where the user then sees it through the proxy and
    the other users do not. Without root (Postfix's master needs it) the message is delivered
    by smtplib's LMTP to the address the socketmap named instead;
  - the backends' session logs carry the clients' own addresses (127.0.0.2, 127.0.0.3), from
    nginx's PROXY v1 and HAProxy's v2, not the proxy's 127.0.0.1;
  - a wrong password and an unknown user are refused by the router: no backend's POP3
    connection counter moves;
  - a stopped backend gives its users a clear temporary error while the others serve;
  - one etcd member down changes nothing; all members down: logins keep working from the route
    service's cache, which says it is stale on /metrics.
"""

import os
import poplib
import re
import shutil
import smtplib
import socket
import ssl
import tempfile
import subprocess
import time
import unittest

from tests.route_proxy_test import Process, free_port
from tests.testing.etcd_cluster import EtcdCluster
from tests.testing.posthaste_server import (PosthasteServer, make_temp_dir, metric_sum,
                                            parse_prometheus_text, posthaste_binary, read_mbox,
                                            wait_for, write_mbox_mda)
from tests.testing.tls_certs import TestPki

TOKEN = "scaleout-test-admin-token-0123456789"
TIMEOUT_S = 20
NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"
POSTMAP = "/usr/sbin/postmap"
POSTFIX = "/usr/sbin/postfix"
CURL = "/usr/bin/curl"
NGINX_MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"
PROVIDER = "mail.provider.test"
# user, password, tenant, backend
USERS = [("alice@one.test", "alice pw", "one.test", "b1"),
         ("bob@two.test", "bob pw", "two.test", "b2"),
         ("carol@three.test", "carol pw", "three.test", "b3")]


def body_of(address):
  return b"From: sender@x.test\r\nSubject: for %s\r\n\r\nonly for %s\r\n" % (
      address.encode(), address.encode())


def http_get(port, path):
  with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as s:
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
      chunk = s.recv(65536)
      if not chunk:
        break
      data += chunk
  return data.split(b"\r\n\r\n", 1)[1].decode()


class BoundPop3(poplib.POP3):
  """poplib.POP3 whose socket is bound to `source` (a second loopback address)."""

  def __init__(self, host, port, source):
    self.source = source
    super().__init__(host, port, timeout=TIMEOUT_S)

  def _create_socket(self, timeout):
    return socket.create_connection((self.host, self.port), timeout, source_address=(self.source,
                                                                                     0))


class BoundPop3Ssl(poplib.POP3_SSL):

  def __init__(self, host, port, source, context, server_hostname):
    self.source = source
    self.sni = server_hostname
    super().__init__(host, port, timeout=TIMEOUT_S, context=context)

  def _create_socket(self, timeout):
    raw = socket.create_connection((self.host, self.port), timeout, source_address=(self.source,
                                                                                    0))
    return self.context.wrap_socket(raw, server_hostname=self.sni)


class ScaleOutTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.started = time.monotonic()
    cls.dir = make_temp_dir("scaleout-")
    cls.processes = []
    cls.backends = {}
    cls.etcd = EtcdCluster(members=3).start()
    try:
      cls._start_all()
    except BaseException:
      cls.tearDownClass()
      raise

  @classmethod
  def _start_all(cls):
    token_file = os.path.join(cls.dir, "token")
    with open(token_file, "w") as f:
      f.write(TOKEN + "\n")
    cls.pki = TestPki(os.path.join(cls.dir, "pki"))
    cls.client_tls = ssl.create_default_context(cafile=cls.pki.ca_cert)
    provider_crt, provider_key = cls.pki.issue("provider", [PROVIDER])
    for address, password, tenant, name in USERS:
      cert_dir = os.path.join(cls.dir, "certs-" + name)
      cls.pki.cert_dir_pair(cert_dir, tenant, [tenant])
      default_crt, default_key = cls.pki.issue("default-" + name, ["%s.provider.test" % name])
      backend = PosthasteServer(extra_args=[
          "--etcd_endpoints=" + cls.etcd.endpoints_flag, "--advertise_ip=127.0.0.1",
          "--backend_name=" + name, "--etcd_lease_ttl_s=2", "--proxy_networks=127.0.0.1/32",
          "--admin_listen=127.0.0.1:0", "--admin_token_file=" + token_file,
          "--tls_cert=" + default_crt, "--tls_key=" + default_key, "--tls_cert_dir=" + cert_dir,
          "--pop3s_listen=127.0.0.1:0"
      ])
      backend.add_user(address, password)
      backend.deliver(address, body_of(address))
      backend.start()
      cls.backends[name] = backend
    for name in cls.backends:
      wait_for(lambda n=name: cls.etcd.get("/posthaste/backends/" + n) is not None,
               timeout_s=TIMEOUT_S, what="backend %s registered" % name)
    for _, _, tenant, name in USERS:
      cls.placement("set-tenant", tenant, name)

    cls.map_file = os.path.join(cls.dir, "tenants.map")
    with open(cls.map_file, "w") as f:
      f.write("# empty until the route service writes it\n")
    # A UNIX socket path has at most 107 bytes: $TEST_TMPDIR is too deep.
    cls.socket_dir = tempfile.mkdtemp(prefix="ph-scaleout-", dir="/tmp")
    cls.haproxy_socket = os.path.join(cls.socket_dir, "haproxy.sock")
    cls.haproxy_port = free_port()
    cls.haproxy = cls.spawn([HAPROXY, "-db", "-f", cls.write_haproxy_config()])
    wait_for(lambda: os.path.exists(cls.haproxy_socket) or cls.haproxy.proc.poll() is not None,
             timeout_s=TIMEOUT_S, what="HAProxy's runtime socket")
    assert os.path.exists(cls.haproxy_socket), "HAProxy did not start:\n" + cls.haproxy.text()

    cls.route = cls.spawn([
        posthaste_binary(), "route", "--etcd_endpoints=" + cls.etcd.endpoints_flag,
        "--auth_http_listen=127.0.0.1:0", "--admin_token_file=" + token_file,
        "--socketmap_listen=127.0.0.1:0", "--haproxy_map=" + cls.map_file,
        "--haproxy_socket=" + cls.haproxy_socket, "--metrics_listen=127.0.0.1:0"
    ])
    pattern = re.compile(r"auth_http=127\.0\.0\.1:(\d+).*socketmap=127\.0\.0\.1:(\d+).*"
                         r"metrics=127\.0\.0\.1:(\d+)")
    wait_for(lambda: pattern.search(cls.route.text()) or cls.route.proc.poll() is not None,
             timeout_s=TIMEOUT_S, what="route listening line")
    match = pattern.search(cls.route.text())
    assert match, "route did not start:\n" + cls.route.text()
    cls.auth_http_port, cls.socketmap_port, cls.route_metrics_port = map(int, match.groups())

    cls.postfix_dir = None
    if os.geteuid() == 0:
      cls.start_postfix()

    cls.nginx_stls_port = free_port()
    cls.nginx_tls_port = free_port()
    cls.nginx = cls.spawn(cls.nginx_argv(provider_crt, provider_key))
    for port in (cls.nginx_stls_port, cls.nginx_tls_port, cls.haproxy_port):
      wait_for(lambda p=port: cls.accepting(p), timeout_s=TIMEOUT_S, what="proxy on %d" % port)
    # The map reached the running HAProxy (no reload): every tenant is routed.
    wait_for(lambda: all(t in cls.haproxy_command("show map " + cls.map_file)
                         for _, _, t, _ in USERS),
             timeout_s=TIMEOUT_S, what="the tenant map pushed into HAProxy")

  @classmethod
  def start_postfix(cls):
    """A private Postfix: config, queue and data under the short /tmp directory (its queue's
    UNIX sockets need short paths), SMTP on 127.0.0.1, LMTP from 127.0.0.4 (not a proxy)."""
    root = os.path.join(cls.socket_dir, "postfix")
    for sub in ("etc", "queue", "data"):
      os.makedirs(os.path.join(root, sub))
    os.chmod(cls.socket_dir, 0o755)
    os.chmod(root, 0o755)
    shutil.chown(os.path.join(root, "data"), "postfix")
    cls.smtp_port = free_port()
    with open(os.path.join(root, "etc", "main.cf"), "w") as f:
      f.write("""compatibility_level = 3.6
queue_directory = %(root)s/queue
data_directory = %(root)s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.scaleout.test
mydomain = scaleout.test
myorigin = scaleout.test
mydestination =
relay_domains = %(domains)s
transport_maps = socketmap:inet:127.0.0.1:%(socketmap)d:transport
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
lmtp_bind_address = 127.0.0.4
maillog_file = %(root)s/maillog
maillog_file_prefixes = %(root)s
alias_maps =
alias_database =
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
""" % {"root": root, "domains": " ".join(t for _, _, t, _ in USERS),
       "socketmap": cls.socketmap_port})
    services = ["%d inet n - n - - smtpd" % cls.smtp_port]
    for name, kind, private, limit in (
        ("pickup", "unix", "n", "1"), ("cleanup", "unix", "n", "0"), ("qmgr", "unix", "n", "1"),
        ("rewrite", "unix", "-", "-"), ("bounce", "unix", "-", "0"), ("defer", "unix", "-", "0"),
        ("trace", "unix", "-", "0"), ("verify", "unix", "-", "1"), ("flush", "unix", "n", "0"),
        ("proxymap", "unix", "-", "-"), ("smtp", "unix", "-", "-"), ("relay", "unix", "-", "-"),
        ("showq", "unix", "n", "-"), ("error", "unix", "-", "-"), ("retry", "unix", "-", "-"),
        ("discard", "unix", "-", "-"), ("lmtp", "unix", "-", "-"), ("anvil", "unix", "-", "1"),
        ("scache", "unix", "-", "1"), ("postlog", "unix-dgram", "n", "1")):
      program = {"rewrite": "trivial-rewrite", "defer": "bounce", "trace": "bounce",
                 "relay": "smtp", "retry": "error", "postlog": "postlogd"}.get(name, name)
      services.append("%s %s %s - n - %s %s" % (name, kind, private, limit, program))
    with open(os.path.join(root, "etc", "master.cf"), "w") as f:
      f.write("\n".join(services) + "\n")
    cls.postfix_dir = root
    result = subprocess.run([POSTFIX, "-c", os.path.join(root, "etc"), "start"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT_S,
                            check=False)
    assert result.returncode == 0, "postfix start: %s\n%s" % (result.stdout, cls.postfix_log())
    wait_for(lambda: cls.accepting(cls.smtp_port), timeout_s=TIMEOUT_S, what="Postfix's smtpd")

  @classmethod
  def postfix_log(cls):
    try:
      with open(os.path.join(cls.postfix_dir, "maillog")) as f:
        return f.read()
    except OSError:
      return ""

  @classmethod
  def stop_postfix(cls):
    if cls.postfix_dir is None:
      return
    subprocess.run([POSTFIX, "-c", os.path.join(cls.postfix_dir, "etc"), "abort"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT_S,
                   check=False)
    cls.postfix_dir = None

  @classmethod
  def placement(cls, *words):
    result = subprocess.run([posthaste_binary(), "placement",
                             "--etcd_endpoints=" + cls.etcd.endpoints_flag, *words],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S,
                            check=False, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout

  @classmethod
  def spawn(cls, argv):
    process = Process(argv)
    cls.processes.append(process)
    return process

  @staticmethod
  def accepting(port):
    try:
      socket.create_connection(("127.0.0.1", port), timeout=1).close()
      return True
    except OSError:
      return False

  @classmethod
  def haproxy_command(cls, command):
    with socket.socket(socket.AF_UNIX) as s:
      s.settimeout(TIMEOUT_S)
      s.connect(cls.haproxy_socket)
      s.sendall(command.encode() + b"\n")
      data = b""
      while True:
        chunk = s.recv(65536)
        if not chunk:
          break
        data += chunk
    return data.decode()

  @classmethod
  def write_haproxy_config(cls):
    path = os.path.join(cls.dir, "haproxy.cfg")
    with open(path, "w") as f:
      f.write("""
global
  stats socket %(socket)s level admin
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend pop3s_sni
  bind 127.0.0.1:%(port)d
  tcp-request inspect-delay 5s
  tcp-request content reject unless { req.ssl_hello_type 1 }
  tcp-request content set-var(sess.owner) req.ssl_sni,lower,map_str(%(map)s)
  tcp-request content reject unless { var(sess.owner) -m found }
  tcp-request content set-dst var(sess.owner),field(1,:)
  tcp-request content set-dst-port var(sess.owner),field(2,:)
  default_backend owner
backend owner
  server owner 0.0.0.0:0 send-proxy-v2
""" % {"socket": cls.haproxy_socket, "port": cls.haproxy_port, "map": cls.map_file})
    return path

  @classmethod
  def nginx_argv(cls, crt, key):
    prefix = make_temp_dir("scaleout-nginx-")
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
      f.write("""
load_module %(module)s;
daemon off;
master_process off;
worker_processes 1;
pid %(prefix)s/nginx.pid;
error_log %(prefix)s/error.log info;
events { worker_connections 128; }
mail {
  server_name %(provider)s;
  auth_http 127.0.0.1:%(auth)d/auth;
  auth_http_timeout 20s;
  proxy_pass_error_message on;
  proxy_protocol on;
  ssl_certificate %(crt)s;
  ssl_certificate_key %(key)s;
  server {
    listen 127.0.0.1:%(stls)d;
    protocol pop3;
    pop3_auth plain;
    starttls only;
  }
  server {
    listen 127.0.0.1:%(tls)d ssl;
    protocol pop3;
    pop3_auth plain;
  }
}
""" % {"module": NGINX_MAIL_MODULE, "prefix": prefix, "auth": cls.auth_http_port,
       "provider": PROVIDER, "crt": crt, "key": key, "stls": cls.nginx_stls_port,
       "tls": cls.nginx_tls_port})
    return [NGINX, "-p", prefix, "-e", prefix + "/error.log", "-c", conf]

  @classmethod
  def tearDownClass(cls):
    if getattr(cls, "postfix_dir", None):
      cls.stop_postfix()
    for process in reversed(cls.processes):
      process.stop()
    for backend in cls.backends.values():
      if backend.running():
        backend.stop()
    cls.etcd.stop()
    if getattr(cls, "socket_dir", None):
      shutil.rmtree(cls.socket_dir, ignore_errors=True)
    print("scaleout_test: %.1f s" % (time.monotonic() - cls.started))

  # --- helpers ---

  def login(self, how, address, password, source="127.0.0.2"):
    """Logs in through `how` (stls, tls, sni); returns the client, authenticated."""
    tenant = address.split("@", 1)[1]
    if how == "stls":
      client = BoundPop3("127.0.0.1", self.nginx_stls_port, source)
      client.host = PROVIDER  # poplib checks the certificate against .host
      client.stls(self.client_tls)
    elif how == "tls":
      client = BoundPop3Ssl("127.0.0.1", self.nginx_tls_port, source, self.client_tls, PROVIDER)
    else:
      client = BoundPop3Ssl("127.0.0.1", self.haproxy_port, source, self.client_tls, tenant)
    try:
      client.user(address)
      client.pass_(password)
    except BaseException:
      client.close()
      raise
    return client

  def mailbox(self, how, address, password, source="127.0.0.2"):
    client = self.login(how, address, password, source)
    try:
      count, _ = client.stat()
      return [b"\r\n".join(client.retr(i + 1)[1]) for i in range(count)]
    finally:
      client.quit()

  def postmap(self, key):
    result = subprocess.run(
        [POSTMAP, "-q", key, "socketmap:inet:127.0.0.1:%d:transport" % self.socketmap_port],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=False, text=True)
    return result.stdout.strip()

  def pop3_connections(self):
    return {
        name: metric_sum(b.metrics(), "posthaste_pop3_connections_accepted_total")
        for name, b in self.backends.items() if b.running()
    }

  def route_metrics(self):
    return parse_prometheus_text(http_get(self.route_metrics_port, "/metrics"))

  # --- the tests, in name order: the later ones take parts down ---

  def test_1_each_user_through_each_proxy_sees_only_their_mail(self):
    for address, password, tenant, name in USERS:
      for how, source in (("stls", "127.0.0.2"), ("tls", "127.0.0.3"), ("sni", "127.0.0.2")):
        messages = self.mailbox(how, address, password, source)
        self.assertTrue(messages, (address, how))
        for message in messages:
          self.assertIn(b"only for " + address.encode(), message, (address, how))
      # The tenant's certificate came from the backend (TLS ends there, chosen by SNI).
      with socket.create_connection(("127.0.0.1", self.haproxy_port), timeout=TIMEOUT_S,
                                    source_address=("127.0.0.2", 0)) as raw:
        with self.client_tls.wrap_socket(raw, server_hostname=tenant) as tls:
          subject = dict(x[0] for x in tls.getpeercert()["subject"])
          self.assertEqual(subject["commonName"], tenant)
          self.assertTrue(tls.recv(512).startswith(b"+OK"))
    # curl through both: STLS on nginx, and SNI through HAProxy.
    for address, password, tenant, _ in USERS:
      for url, extra in (("pop3://%s:%d/1" % (PROVIDER, self.nginx_stls_port),
                          ["--ssl-reqd", "--resolve",
                           "%s:%d:127.0.0.1" % (PROVIDER, self.nginx_stls_port)]),
                         ("pop3s://%s:%d/1" % (tenant, self.haproxy_port),
                          ["--resolve", "%s:%d:127.0.0.1" % (tenant, self.haproxy_port)])):
        result = subprocess.run(
            [CURL, "-sS", "--max-time", str(TIMEOUT_S), "--interface", "127.0.0.3", "--cacert",
             self.pki.ca_cert, "--user", "%s:%s" % (address, password), *extra, url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S + 5, check=False)
        self.assertEqual(result.returncode, 0, (url, result.stderr))
        self.assertIn(b"only for " + address.encode(), result.stdout, url)

  def test_2_backend_logs_show_the_clients_not_the_proxy(self):
    for address, password, _, name in USERS:
      for how in ("stls", "sni"):
        self.mailbox(how, address, password, source="127.0.0.3")
      log = self.backends[name].stderr_text()
      ends = [line for line in log.splitlines() if "session end" in line]
      self.assertTrue(any("127.0.0.3" in line for line in ends), log[-3000:])
      self.assertTrue(any("127.0.0.2" in line for line in ends), log[-3000:])
      self.assertFalse(any(re.search(r"client\W+127\.0\.0\.1\b", line) for line in ends),
                       [line for line in ends if "127.0.0.1" in line])

  def test_3_mail_lands_on_the_owning_backend(self):
    for address, password, tenant, name in USERS:
      result = subprocess.run(
          [POSTMAP, "-q", address, "socketmap:inet:127.0.0.1:%d:transport" % self.socketmap_port],
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=False,
          text=True)
      self.assertEqual(result.returncode, 0, result.stderr)
      expected = "lmtp:inet:127.0.0.1:%d" % self.backends[name].lmtp_port
      self.assertEqual(result.stdout.strip(), expected)
      message = b"Subject: routed\r\n\r\nrouted mail for " + address.encode() + b"\r\n"
      if self.postfix_dir is not None:
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=TIMEOUT_S) as smtp:
          smtp.sendmail("sender@x.test", [address], message)
      else:
        _, _, host, port = result.stdout.strip().split(":")
        # From 127.0.0.4: the backends take PROXY headers from 127.0.0.1 only.
        with smtplib.LMTP(host, int(port), source_address=("127.0.0.4", 0),
                          timeout=TIMEOUT_S) as lmtp:
          lmtp.sendmail("sender@x.test", [address], message)

    def delivered(address, password):
      return any(b"routed mail for " + address.encode() in m
                 for m in self.mailbox("sni", address, password))

    for address, password, _, name in USERS:
      wait_for(lambda: delivered(address, password), timeout_s=TIMEOUT_S, poll_s=0.5,
               what="mail for %s relayed to its backend" % address)
      if self.postfix_dir is not None:
        lmtp = "relay=127.0.0.1[127.0.0.1]:%d" % self.backends[name].lmtp_port
        self.assertTrue(any("to=<%s>" % address in line and lmtp in line and "status=sent" in line
                            for line in self.postfix_log().splitlines()), self.postfix_log())
      messages = self.mailbox("sni", address, password)
      self.assertFalse(any(b"routed mail for" in m and address.encode() not in m
                           for m in messages))

  def test_3a_fetchmail_through_each_proxy(self):
    # fetchmail cannot bind its source address, so it runs after the address checks above.
    # Through HAProxy it polls the tenant's name (sent as SNI, chosen by the map) via 127.0.0.1,
    # and checks the tenant's own certificate.
    for address, password, tenant, _ in USERS:
      for poll, port, tls, common_name in (
          ("127.0.0.1", self.nginx_stls_port, "sslproto 'TLS1.2+'", PROVIDER),
          ("127.0.0.1", self.nginx_tls_port, "ssl", PROVIDER),
          ("%s via 127.0.0.1" % tenant, self.haproxy_port, "ssl", tenant)):
        home = make_temp_dir("scaleout-fetchmail-")
        os.chmod(home, 0o700)
        mda, mbox = write_mbox_mda(home)
        rc = os.path.join(home, "fetchmailrc")
        with open(rc, "w") as f:
          f.write("set no syslog\nset no bouncemail\nset invisible\n"
                  "poll %s with proto POP3 service %d auth password timeout 30 uidl\n"
                  '  user "%s" there with password "%s" is "root" here\n'
                  '  %s sslcertck sslcertfile "%s" sslcommonname "%s"\n'
                  '  keep no rewrite mda "%s"\n' %
                  (poll, port, address, password, tls, self.pki.ca_cert, common_name, mda))
        os.chmod(rc, 0o600)
        env = dict(os.environ, FETCHMAILHOME=home, HOME=home, FETCHMAILUSER="root")
        result = subprocess.run(
            ["/usr/bin/fetchmail", "--fetchmailrc", rc, "--idfile", os.path.join(home, "ids"),
             "--pidfile", os.path.join(home, "pid"), "--nodetach", "--all"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT_S * 3, check=False)
        log = result.stdout.decode("utf-8", "replace")
        self.assertEqual(result.returncode, 0, log)
        messages = read_mbox(mbox)
        self.assertTrue(messages, log)
        for message in messages:
          self.assertIn(b"for " + address.encode(), message)

  def test_4_bad_logins_are_refused_by_the_router(self):
    before = self.pop3_connections()
    for address, password, how in (("alice@one.test", "wrong", "stls"),
                                   ("nobody@one.test", "x", "tls"),
                                   ("nobody@nowhere.test", "x", "stls")):
      with self.assertRaises(poplib.error_proto) as refused:
        self.login(how, address, password).quit()
      self.assertIn(b"[AUTH]", refused.exception.args[0])
    self.assertEqual(self.pop3_connections(), before)

  def test_5_a_stopped_backend_is_a_temporary_error(self):
    stopped = self.backends["b3"]
    stopped.stop()
    wait_for(lambda: self.etcd.get("/posthaste/backends/b3") is None, timeout_s=TIMEOUT_S,
             what="b3 withdrawn")
    wait_for(lambda: metric_sum(self.route_metrics(), "posthaste_directory_watch_events_total")
             > 0 and "three.test" not in self.haproxy_command("show map " + self.map_file),
             timeout_s=TIMEOUT_S, what="the route service and HAProxy following the withdrawal")
    with self.assertRaises(poplib.error_proto) as refused:
      self.login("stls", "carol@three.test", "carol pw").quit()
    self.assertIn(b"[SYS/TEMP]", refused.exception.args[0])
    for address, password, _, name in USERS[:2]:
      self.assertTrue(self.mailbox("tls", address, password))

  def test_6_one_etcd_member_down_changes_nothing(self):
    member = self.etcd.members[0]
    member["proc"].kill()
    member["proc"].wait(TIMEOUT_S)
    member["proc"] = None
    self.placement("set-user", "bob@one.test", "b2")  # quorum of two: writes still go through
    self.assertIn("user\tbob@one.test\tb2\n", self.placement("list"))
    # The route service follows the change through its watch: the override routes mail.
    b2_lmtp = "lmtp:inet:127.0.0.1:%d" % self.backends["b2"].lmtp_port
    wait_for(lambda: self.postmap("bob@one.test") == b2_lmtp, timeout_s=TIMEOUT_S,
             what="the override answered by the socketmap")
    self.assertEqual(self.postmap("ann@one.test"),
                     "lmtp:inet:127.0.0.1:%d" % self.backends["b1"].lmtp_port)
    for address, password, _, _ in USERS[:2]:
      self.assertTrue(self.mailbox("stls", address, password))
      self.assertTrue(self.mailbox("sni", address, password))
    self.assertEqual(metric_sum(self.route_metrics(), "posthaste_directory_stale"), 0)

  def test_7_all_etcd_members_down_logins_keep_working_from_the_cache(self):
    for member in self.etcd.members:
      if member["proc"] is not None:
        member["proc"].kill()
        member["proc"].wait(TIMEOUT_S)
        member["proc"] = None
    wait_for(lambda: metric_sum(self.route_metrics(), "posthaste_directory_stale") == 1,
             timeout_s=TIMEOUT_S, what="the route service's cache marked stale")
    for address, password, _, _ in USERS[:2]:
      self.assertTrue(self.mailbox("stls", address, password))
      self.assertTrue(self.mailbox("tls", address, password))
      self.assertTrue(self.mailbox("sni", address, password))


if __name__ == "__main__":
  unittest.main()
