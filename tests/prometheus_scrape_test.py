"""A real Prometheus server (Debian's `prometheus`) scraping the real `posthaste serve`.

Prometheus runs on 127.0.0.1 with its own config and TSDB in a temporary directory, a 1 s
scrape interval and posthaste's alert rules loaded. While the test drives POP3 sessions, it
asks Prometheus's HTTP API for rate(posthaste_..._total[...]) and requires the rates to move;
it also requires the target up, the rules loaded healthy, and a per-tenant series.
"""

import json
import os
import poplib
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest
import urllib.parse
import urllib.request

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir

PROMETHEUS = "/usr/bin/prometheus"
PASSWORD = "scrape-me-not"
DEADLINE_S = 60
RUNFILES = os.environ.get("TEST_SRCDIR", "")


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def runfile(path):
  for base in (os.path.join(RUNFILES, "posthaste"), os.getcwd()):
    candidate = os.path.join(base, path)
    if os.path.exists(candidate):
      return candidate
  raise AssertionError("runfile %s not found" % path)


class PrometheusScrapeTest(unittest.TestCase):

  def setUp(self):
    self.server = PosthasteServer(shards=2)
    for i in range(4):
      self.server.add_user("u%d@scrape.test" % i, PASSWORD)
      self.server.deliver("u%d@scrape.test" % i, b"Subject: s\r\n\r\n" + b"x" * 5000 + b"\r\n")
    self.server.start()
    self.addCleanup(self.server.stop)
    self.dir = make_temp_dir("prometheus-")
    self.addCleanup(shutil.rmtree, self.dir, True)
    shutil.copy(runfile("deploy/prometheus/alerts.yml"), os.path.join(self.dir, "alerts.yml"))
    with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
      f.write("""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - alerts.yml
scrape_configs:
  - job_name: posthaste
    static_configs:
      - targets: ["127.0.0.1:%d"]
""" % self.server.metrics_port)
    self.port = free_port()
    self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
    self.addCleanup(self.log.close)
    self.prometheus = subprocess.Popen(
        [PROMETHEUS, "--config.file=" + os.path.join(self.dir, "prometheus.yml"),
         "--storage.tsdb.path=" + os.path.join(self.dir, "tsdb"),
         "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
        stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
    self.addCleanup(self.stop_prometheus)
    self.wait_for(lambda: self.get("/-/ready")[0] == 200, "Prometheus ready")

  def stop_prometheus(self):
    if self.prometheus.poll() is None:
      self.prometheus.send_signal(signal.SIGTERM)
      try:
        self.prometheus.wait(30)
      except subprocess.TimeoutExpired:
        self.prometheus.kill()
        self.prometheus.wait(10)

  def prometheus_log(self):
    with open(os.path.join(self.dir, "prometheus.log"), "rb") as f:
      return f.read().decode("utf-8", "replace")

  def get(self, path):
    try:
      with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.port, path), timeout=5) as r:
        return r.status, r.read()
    except OSError as e:
      return getattr(e, "code", 0), b""

  def query(self, expr):
    """The instant vector of `expr`: a list of (labels, float)."""
    status, body = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if status != 200:
      return []
    data = json.loads(body)["data"]["result"]
    return [(r["metric"], float(r["value"][1])) for r in data]

  def wait_for(self, condition, what):
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
      if self.prometheus.poll() is not None:
        self.fail("prometheus exited with %d:\n%s" % (self.prometheus.returncode,
                                                       self.prometheus_log()))
      if condition():
        return
      time.sleep(0.25)
    self.fail("timed out waiting for %s; prometheus log:\n%s" % (what, self.prometheus_log()))

  def drive_sessions(self, stop):
    i = 0
    while not stop.is_set():
      pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=10)
      pop.user("u%d@scrape.test" % (i % 4))
      pop.pass_(PASSWORD)
      pop.stat()
      pop.retr(1)
      pop.quit()
      i += 1
      time.sleep(0.02)

  def test_prometheus_sees_rates_move_while_sessions_run(self):
    self.wait_for(lambda: any(v == 1 for _, v in self.query('up{job="posthaste"}')),
                  "the posthaste target up")
    stop = threading.Event()
    driver = threading.Thread(target=self.drive_sessions, args=(stop,), daemon=True)
    driver.start()
    try:
      def positive(expr):
        return lambda: any(v > 0 for _, v in self.query(expr))
      self.wait_for(positive("sum(rate(posthaste_pop3_sessions_total[5s]))"), "session rate")
      self.wait_for(positive('sum(rate(posthaste_pop3_commands_total{command="RETR"}[5s]))'),
                    "RETR rate")
      self.wait_for(positive('rate(posthaste_pop3_retrieved_bytes_total{path="zero_copy"}[5s])'),
                    "zero-copy byte rate")
      self.wait_for(positive(
          'sum by (tenant) (rate(posthaste_pop3_authentications_total{result="ok"}[5s]))'),
          "login rate")
      self.wait_for(positive("rate(posthaste_reactor_loop_iterations_total[5s])"),
                    "reactor loop rate")
      self.wait_for(positive("histogram_quantile(0.9, sum by (le) (rate("
                             "posthaste_pop3_command_duration_seconds_bucket[5s])))"),
                    "a command latency quantile")
    finally:
      stop.set()
      driver.join(30)
    tenants = {m.get("tenant") for m, _ in self.query(
        "sum by (tenant) (posthaste_pop3_sessions_total)")}
    self.assertIn("scrape.test", tenants)
    # The alert rules loaded and evaluate without errors.
    status, body = self.get("/api/v1/rules")
    self.assertEqual(status, 200)
    groups = json.loads(body)["data"]["groups"]
    self.assertEqual([g["name"] for g in groups], ["posthaste"])
    self.wait_for(lambda: all(r.get("health") == "ok" for g in json.loads(
        self.get("/api/v1/rules")[1])["data"]["groups"] for r in g["rules"]),
                  "every rule evaluated healthy")


if __name__ == "__main__":
  unittest.main()
