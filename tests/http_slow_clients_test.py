"""Slow and greedy HTTP clients against the real `posthaste serve`: both HTTP listeners stay up.

Shows, with the default limits (--http_header_timeout_ms=5000, --http_connections_per_ip=16):
- 50 connections per listener that send `GET /x HTTP/1.1\\r\\nX-A: a` and stall (spread over four
  loopback addresses so the per-IP limit lets them all in), plus one that trickles a byte per
  second, against the metrics listener and against the admin listener at once: meanwhile a
  probe from 127.0.0.1 gets /readyz, /healthz, /metrics and an authenticated admin GET answered,
  each within PROBE_LIMIT_S; every slow client gets 408 (or EOF) at the header deadline
  (within 10% before it, a little after), the trickle not extending it. The probe latencies
  (median, max) are printed.
- From one address, connections beyond the per-IP limit are refused at once (503 or EOF) on
  both listeners while the first 16 are held, and the refusals are counted on /metrics.
On a server where two stalled connections hold the HTTP threads (civetweb with two threads)
the probes time out and this fails.
"""

import http.client
import os
import re
import selectors
import socket
import statistics
import threading
import time
import unittest

from tests.testing.posthaste_server import (PosthasteServer, make_temp_dir, metric_sum,
                                            parse_prometheus_text)

TOKEN = "slow-clients-admin-token-0123456789"
HEADER_TIMEOUT_S = 5.0  # the default --http_header_timeout_ms
PER_IP_LIMIT = 16  # the default --http_connections_per_ip
PROBE_LIMIT_S = 2.0
SLOW_CLIENTS = 50
ATTACKER_ADDRESSES = ["127.0.0.%d" % i for i in range(2, 6)]  # 13 each: under the per-IP limit
STALLED_HEAD = b"GET /x HTTP/1.1\r\nX-A: a"
TRICKLED_HEAD = b"GET /metrics HTTP/1.1\r\nHost: t\r\nX-Trickle: " + b"a" * 200
WATCH_LIMIT_S = HEADER_TIMEOUT_S + 10  # bound on every wait below


def connect_from(source, port):
  s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  s.bind((source, 0))
  s.settimeout(5)
  s.connect(("127.0.0.1", port))
  return s


class SlowClient:
  """One attacking connection: when it was opened, what it received, when it was closed."""

  def __init__(self, test, listener, source, port, head):
    self.listener = listener
    self.sock = connect_from(source, port)
    test.addCleanup(self.sock.close)
    self.opened_at = time.monotonic()
    self.sock.sendall(head)
    self.sock.setblocking(False)
    self.received = b""
    self.closed_at = None


class Watcher(threading.Thread):
  """Reads every slow client until the server closes it (EOF or reset); bounded in time."""

  def __init__(self, clients):
    super().__init__(daemon=True)
    self.clients = clients
    self.done = threading.Event()

  def run(self):
    selector = selectors.DefaultSelector()
    for client in self.clients:
      selector.register(client.sock, selectors.EVENT_READ, client)
    deadline = time.monotonic() + WATCH_LIMIT_S
    open_count = len(self.clients)
    while open_count and time.monotonic() < deadline:
      for key, _ in selector.select(timeout=0.1):
        client = key.data
        try:
          data = client.sock.recv(4096)
        except BlockingIOError:
          continue
        except OSError:
          data = b""
        if data:
          client.received += data
          continue
        client.closed_at = time.monotonic()
        selector.unregister(client.sock)
        open_count -= 1
    selector.close()
    self.done.set()


def trickle(client, stop):
  """Sends the rest of TRICKLED_HEAD a byte per second until the server closes or `stop`."""
  for byte in TRICKLED_HEAD[1:]:
    if stop.wait(1.0) or client.closed_at is not None:
      return
    try:
      client.sock.send(bytes([byte]))
    except OSError:
      return


class HttpSlowClientsTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    token_file = os.path.join(make_temp_dir("token-"), "token")
    with open(token_file, "w") as f:
      f.write(TOKEN + "\n")
    cls.server = PosthasteServer(
        shards=1, extra_args=["--admin_listen=127.0.0.1:0", "--admin_token_file=" + token_file])
    cls.server.add_user("probe@example.test", "pw")
    cls.server.start()
    match = re.search(r"\badmin_api=127\.0\.0\.1:(\d+)", cls.server.stderr_text())
    assert match, cls.server.stderr_text()
    cls.admin_port = int(match.group(1))

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def probe(self, port, path, headers=None):
    """(status, seconds) of one GET; status None when it failed or took over the limit."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_LIMIT_S + 1)
    try:
      conn.request("GET", path, headers=headers or {})
      response = conn.getresponse()
      response.read()
      status = response.status
    except OSError:
      status = None
    finally:
      conn.close()
    return status, time.monotonic() - start

  def probes(self):
    admin = {"Authorization": "Bearer " + TOKEN}
    return (("/readyz", self.server.metrics_port, "/readyz", None),
            ("/healthz", self.server.metrics_port, "/healthz", None),
            ("/metrics", self.server.metrics_port, "/metrics", None),
            ("admin GET", self.admin_port, "/api/v1/accounts/probe@example.test", admin))

  def test_slow_headers_do_not_hold_either_listener(self):
    clients = []
    for listener, port in (("metrics", self.server.metrics_port), ("admin_api", self.admin_port)):
      for i in range(SLOW_CLIENTS):
        source = ATTACKER_ADDRESSES[i % len(ATTACKER_ADDRESSES)]
        clients.append(SlowClient(self, listener, source, port, STALLED_HEAD))
    tricklers = [
        SlowClient(self, "metrics", "127.0.0.6", self.server.metrics_port, TRICKLED_HEAD[:1]),
        SlowClient(self, "admin_api", "127.0.0.6", self.admin_port, TRICKLED_HEAD[:1])
    ]
    clients += tricklers
    watcher = Watcher(clients)
    watcher.start()
    stop = threading.Event()
    trickle_threads = [threading.Thread(target=trickle, args=(t, stop), daemon=True)
                       for t in tricklers]
    for t in trickle_threads:
      t.start()

    # Probe while the attack holds its connections (until the deadline closes them).
    latencies = {name: [] for name, _, _, _ in self.probes()}
    failures = []
    probe_until = clients[0].opened_at + HEADER_TIMEOUT_S + 1
    while time.monotonic() < probe_until:
      for name, port, path, headers in self.probes():
        status, seconds = self.probe(port, path, headers)
        latencies[name].append(seconds)
        if status != 200 or seconds > PROBE_LIMIT_S:
          failures.append((name, status, round(seconds, 3)))
      time.sleep(0.1)
    watcher.done.wait(WATCH_LIMIT_S)
    stop.set()
    for t in trickle_threads:
      t.join(5)

    print("\nprobe latency while %d slow-header clients and one trickle per listener were "
          "connected:" % SLOW_CLIENTS)
    for name, values in latencies.items():
      print("  %-10s %3d probes  median %.1f ms  max %.1f ms" %
            (name, len(values), statistics.median(values) * 1000, max(values) * 1000))
    self.assertEqual(failures, [], "probes that failed or took over %.1f s" % PROBE_LIMIT_S)

    # Every slow client was closed by the header deadline, with 408 or plain EOF.
    lifetimes = []
    for client in clients:
      self.assertIsNotNone(client.closed_at, "a slow client was never closed (%s)" %
                           client.listener)
      lifetime = client.closed_at - client.opened_at
      lifetimes.append(lifetime)
      self.assertGreaterEqual(lifetime, HEADER_TIMEOUT_S * 0.9, client.listener)
      self.assertLess(lifetime, HEADER_TIMEOUT_S + 2.5, client.listener)
      self.assertTrue(client.received == b"" or client.received.startswith(b"HTTP/1.1 408 "),
                      client.received[:100])
      client.sock.close()
    with_408 = sum(1 for c in clients if c.received.startswith(b"HTTP/1.1 408 "))
    print("slow clients closed %.2f-%.2f s after connecting (header deadline %.1f s); %d of %d "
          "got 408" % (min(lifetimes), max(lifetimes), HEADER_TIMEOUT_S, with_408, len(clients)))
    # The admin listener's 408 carries the API's JSON error shape.
    admin_408 = [c.received for c in clients if c.listener == "admin_api" and c.received]
    self.assertTrue(any(b'{"error":' in r for r in admin_408), admin_408[:1])

    samples = self.server.metrics()
    for listener in ("metrics", "admin_api"):
      self.assertGreaterEqual(
          metric_sum(samples, "posthaste_http_timeouts_total", listener=listener,
                     phase="header"), SLOW_CLIENTS + 1)

  def test_connections_per_ip_are_bounded(self):
    extra = 4
    held = []
    for port in (self.server.metrics_port, self.admin_port):
      clients = [SlowClient(self, "", "127.0.0.9", port, STALLED_HEAD)
                 for _ in range(PER_IP_LIMIT + extra)]
      held.append(clients)
    try:
      watcher = Watcher([c for clients in held for c in clients])
      watcher.start()
      # The refused ones are closed at once; the others wait for their deadline.
      time.sleep(1.0)
      for clients in held:
        refused = [c for c in clients if c.closed_at is not None]
        self.assertEqual(len(refused), extra)
        for c in refused:
          self.assertTrue(c.received == b"" or c.received.startswith(b"HTTP/1.1 503 "),
                          c.received[:100])
          self.assertLess(c.closed_at - c.opened_at, 1.0)
      # Other addresses are still served.
      for name, port, path, headers in self.probes():
        self.assertEqual(self.probe(port, path, headers)[0], 200, name)
      samples = self.server.metrics()
      for listener in ("metrics", "admin_api"):
        self.assertEqual(
            metric_sum(samples, "posthaste_http_connections_refused_total", listener=listener,
                       reason="per_ip"), extra)
    finally:
      for clients in held:
        for c in clients:
          c.sock.close()


if __name__ == "__main__":
  unittest.main()
