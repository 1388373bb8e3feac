"""Metrics, structured logs, dashboard and alert rules against the real `posthaste serve`.

Drives POP3 sessions for two tenants (with --metrics_max_tenants=1, so only the larger one gets
its own label), then checks on a live scrape: per-tenant sessions and logins, per-command
counts and latency histograms, RETR bytes by path, store and reactor families; `promtool
check metrics` on the scrape; that every metric the Grafana dashboard and the alert rules query
is exported; `promtool check rules` and `promtool test rules`; and the JSON log: one object per
line, a per-session summary line with session id, client, tenant, retrieved/deleted counts and
bytes, and never the password (nor its base64 forms from SASL).
"""

import base64
import json
import os
import poplib
import re
import socket
import subprocess
import unittest

from tests.testing.posthaste_server import PosthasteServer, metric_sum, parse_prometheus_text

PASSWORD = "Zebra-Quartz-7731 secret"  # spaces: PASS takes the rest of the line
TIMEOUT_S = 30
PROMTOOL = "/usr/bin/promtool"
RUNFILES = os.environ.get("TEST_SRCDIR", "")


def runfile(path):
  for base in (os.path.join(RUNFILES, "posthaste"), os.getcwd()):
    candidate = os.path.join(base, path)
    if os.path.exists(candidate):
      return candidate
  raise AssertionError("runfile %s not found" % path)


def message(n, size=3000):
  body = ("line %d of the test message\r\n" % n) * (size // 30)
  return ("From: a@b.test\r\nSubject: m%d\r\n\r\n%s" % (n, body)).encode("ascii")


def raw_session(port, lines):
  """Sends each line, reading one reply line after each; returns the replies."""
  with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as s:
    f = s.makefile("rb")
    replies = [f.readline()]
    for line in lines:
      s.sendall(line + b"\r\n")
      replies.append(f.readline())
    return replies


class MetricsTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer(shards=2, extra_args=[
        "--log_format=json", "--metrics_max_tenants=1", "--auth_failure_delay_ms=50"])
    # big.test has two accounts and gets its own label; small.test shares "other".
    for user in ("alice@big.test", "bob@big.test", "carol@small.test"):
      cls.server.add_user(user, PASSWORD)
    cls.server.deliver("alice@big.test", message(1))
    cls.server.deliver("alice@big.test", message(2))
    cls.server.deliver("carol@small.test", message(3))
    cls.server.start()
    try:
      port = cls.server.pop3_port
      # alice: USER/PASS, STAT, RETR, TOP, DELE, QUIT.
      pop = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT_S)
      pop.user("alice@big.test")
      pop.pass_(PASSWORD)
      pop.stat()
      cls.retr_bytes = sum(len(line) + 2 for line in pop.retr(1)[1])
      pop.top(2, 1)
      pop.dele(1)
      pop.quit()
      # A wrong password.
      pop = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT_S)
      pop.user("alice@big.test")
      with self_assert_raises(poplib.error_proto):
        pop.pass_("wrong " + PASSWORD)
      pop.quit()
      # bob: AUTH PLAIN with an initial response, AUTH LOGIN for carol (small.test).
      cls.plain_b64 = base64.b64encode(b"\0bob@big.test\0" + PASSWORD.encode()).decode()
      cls.replies = raw_session(port, [b"AUTH PLAIN " + cls.plain_b64.encode(), b"QUIT"])
      cls.login_b64 = base64.b64encode(PASSWORD.encode()).decode()
      cls.replies += raw_session(port, [
          b"AUTH LOGIN", base64.b64encode(b"carol@small.test"), cls.login_b64.encode(),
          b"BOGUS", b"QUIT"])
      cls.text = cls.server.http_get("/metrics")[1].decode("utf-8")
      cls.samples = parse_prometheus_text(cls.text)
    finally:
      cls.server.stop()
    cls.log = cls.server.stderr_text()

  def value(self, name, **labels):
    return metric_sum(self.samples, name, **labels)

  def test_sessions_and_logins_by_bounded_tenant(self):
    self.assertEqual([r[:3] for r in self.replies],
                     [b"+OK", b"+OK", b"+OK", b"+OK", b"+ V", b"+ U", b"+OK", b"-ER", b"+OK"])
    self.assertEqual(self.value("posthaste_pop3_sessions_total", tenant="big.test",
                                outcome="logout"), 2)
    self.assertEqual(self.value("posthaste_pop3_sessions_total", tenant="other",
                                outcome="logout"), 1)
    self.assertEqual(self.value("posthaste_pop3_sessions_total", tenant="none", outcome="quit"),
                     1)  # the failed login's QUIT
    tenants = {labels.get("tenant") for name, labels, _ in self.samples if "tenant" in labels}
    self.assertEqual(tenants, {"big.test", "other", "none"})
    auth = "posthaste_pop3_authentications_total"
    self.assertEqual(self.value(auth, tenant="big.test", mechanism="user", result="ok"), 1)
    self.assertEqual(self.value(auth, tenant="big.test", mechanism="user", result="failed"), 1)
    self.assertEqual(self.value(auth, tenant="big.test", mechanism="plain", result="ok"), 1)
    self.assertEqual(self.value(auth, tenant="other", mechanism="login", result="ok"), 1)

  def test_commands_latency_and_bytes(self):
    cmd = "posthaste_pop3_commands_total"
    self.assertEqual(self.value(cmd, command="RETR", result="ok"), 1)
    self.assertEqual(self.value(cmd, command="TOP", result="ok"), 1)
    self.assertEqual(self.value(cmd, command="DELE", result="ok"), 1)
    self.assertEqual(self.value(cmd, command="PASS", result="err"), 1)
    self.assertEqual(self.value(cmd, command="unknown", result="err"), 1)
    self.assertEqual(self.value(cmd, command="AUTH", result="ok"), 2)
    hist = "posthaste_pop3_command_duration_seconds"
    self.assertEqual(self.value(hist + "_count", command="PASS"), 2)
    self.assertEqual(self.value(hist + "_bucket", command="PASS", le="+Inf"), 2)
    self.assertGreater(self.value(hist + "_sum", command="PASS"), 0)
    self.assertGreaterEqual(self.value("posthaste_pop3_retrieved_bytes_total", path="zero_copy"),
                            self.retr_bytes)
    self.assertEqual(self.value("posthaste_pop3_retrieved_bytes_total", path="copied"), 0)
    # Sessions' own counters reach the shard when each session ends: carol's BOGUS.
    self.assertEqual(self.value("posthaste_pop3_bad_commands_total"), 1)

  def test_limit_counters_are_exported_with_their_labels(self):
    # Refusals and limits of POP3, LMTP and the shards (server/pop3_service/pop3_counters.h,
    # server/lmtp_service/lmtp_counters.h, server/counters.h), at 0 or more.
    expected = [
        ("posthaste_pop3_limit_rejections_total", {"limit": "per_user_ip"}),
        ("posthaste_pop3_connections_refused_total", {"reason": "per_shard"}),
        ("posthaste_pop3_connections_refused_total", {"reason": "busy"}),
        ("posthaste_pop3_timeouts_total", {"timeout": "authorization"}),
        ("posthaste_pop3_protocol_closes_total", {"reason": "bad_commands_max"}),
        ("posthaste_pop3_protocol_closes_total", {"reason": "auth_failures_max"}),
        ("posthaste_pop3_sasl_line_too_long_total", {}),
        ("posthaste_pop3_command_line_too_long_total", {}),
        ("posthaste_lmtp_limit_rejections_total", {"limit": "per_shard"}),
        ("posthaste_lmtp_timeouts_total", {"timeout": "idle"}),
        ("posthaste_lmtp_timeouts_total", {"timeout": "send_stall"}),
        ("posthaste_lmtp_recipients_refused_total", {"reason": "lookup"}),
        ("posthaste_lmtp_recipients_refused_total", {"reason": "recipients_max"}),
        ("posthaste_lmtp_messages_refused_total", {"reason": "message_bytes_max"}),
        ("posthaste_lmtp_protocol_closes_total", {"reason": "bad_commands_max"}),
        ("posthaste_lmtp_connections_open", {"shard": "1"}),
        ("posthaste_pop3_auth_checks_expired_total", {}),
        ("posthaste_offload_rejected_total", {}),
        ("posthaste_inbox_rejected_total", {}),
        ("posthaste_reactor_timers_fired_total", {"shard": "0"}),
        ("posthaste_bugs_total", {}),
    ]
    for name, labels in expected:
      self.assertTrue(
          any(n == name and all(l.get(k) == v for k, v in labels.items())
              for n, l, _ in self.samples), "%s%s is not on the scrape" % (name, labels))

  def test_store_and_reactor_families(self):
    self.assertEqual(self.value("posthaste_store_up"), 1)
    self.assertEqual(self.value("posthaste_store_accounts"), 3)
    self.assertEqual(self.value("posthaste_store_messages"), 2)  # one of three deleted
    self.assertGreater(self.value("posthaste_store_dead_bytes"), 0)
    self.assertGreater(self.value("posthaste_store_segment_bytes"), 0)
    for shard in ("0", "1"):
      self.assertGreater(self.value("posthaste_reactor_loop_iterations_total", shard=shard), 0)
      self.assertGreater(self.value("posthaste_reactor_busy_seconds_total", shard=shard), 0)
    self.assertEqual(self.value("posthaste_shards_answering"), 2)

  def test_reactor_internal_families(self):
    # Registered by each shard's ServiceShard: listeners, buffer rings, offload, inboxes.
    self.assertGreater(self.value("posthaste_reactor_accepts_total", listener="pop3"), 0)
    self.assertGreater(self.value("posthaste_reactor_buffers_taken_total", ring="pop3"), 0)
    for name, labels in [("posthaste_reactor_accepts_total", {"listener": "lmtp", "shard": "1"}),
                         ("posthaste_reactor_buffer_ring_exhausted_total",
                          {"ring": "lmtp", "shard": "1"}),
                         ("posthaste_offload_pool_jobs_total", {"pool": "io", "result": "refused"}),
                         ("posthaste_reactor_offload_pending_jobs", {"shard": "0"})]:
      self.assertTrue(
          any(n == name and all(l.get(k) == v for k, v in labels.items())
              for n, l, _ in self.samples), "%s%s is not on the scrape" % (name, labels))
    self.assertGreater(
        self.value("posthaste_reactor_offload_jobs_total", pool="cpu", result="queued"), 0)
    self.assertGreater(
        self.value("posthaste_offload_pool_jobs_total", pool="cpu", result="completed"), 0)
    for shard in ("0", "1"):
      # Every scrape reaches a shard through its inbox.
      self.assertGreater(
          self.value("posthaste_reactor_inbox_messages_total", result="queued", shard=shard), 0)

  def test_promtool_check_metrics_on_the_live_scrape(self):
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=self.text.encode(),
                            capture_output=True, timeout=60, check=False)
    self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

  def metric_names_in(self, text):
    return set(re.findall(r"\b(?:posthaste|process)_[a-z0-9_]+", text))

  def test_every_metric_the_dashboard_queries_is_exported(self):
    with open(runfile("deploy/grafana/posthaste.json")) as f:
      dashboard = json.load(f)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    queried = self.metric_names_in("\n".join(exprs))
    self.assertGreater(len(queried), 20)
    exported = {name for name, _, _ in self.samples}
    self.assertEqual(queried - exported, set())

  def test_alert_rules_check_test_and_name_exported_metrics(self):
    rules = runfile("deploy/prometheus/alerts.yml")
    check = subprocess.run([PROMTOOL, "check", "rules", rules], capture_output=True, timeout=60,
                           check=False)
    self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
    unit = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], capture_output=True,
                          timeout=60, check=False, cwd=os.path.dirname(rules))
    self.assertEqual(unit.returncode, 0, unit.stdout + unit.stderr)
    with open(rules) as f:
      queried = self.metric_names_in(f.read())
    self.assertEqual(queried - {name for name, _, _ in self.samples}, set())

  def test_json_log_lines_and_session_summary(self):
    entries = []
    for line in self.log.splitlines():
      if line.startswith("=== start"):  # the harness's own marker
        continue
      entries.append(json.loads(line))  # every line is one JSON object
    ends = [e for e in entries if e["msg"] == "session end"]
    self.assertEqual(len(ends), 4, ends)
    alice = [e for e in ends if e["user"] == "alice@big.test"]
    self.assertEqual(len(alice), 1)
    alice = alice[0]
    self.assertEqual(alice["tenant"], "big.test")
    self.assertEqual(alice["client"], "127.0.0.1")
    self.assertRegex(alice["session"], r"^\d+-\d+$")
    self.assertEqual(alice["outcome"], "logout")
    self.assertEqual((alice["retrieved"], alice["top"], alice["deleted"]), ("1", "1", "1"))
    self.assertEqual(alice["uidls_changed"], "true")
    self.assertGreaterEqual(int(alice["message_bytes"]), self.retr_bytes)
    self.assertGreater(int(alice["bytes_out"]), int(alice["message_bytes"]))
    # The wrong password: a session without a login that names the account tried, not the secret.
    failed = [e for e in ends if e["failed_user"] == "alice@big.test"]
    self.assertEqual(len(failed), 1, ends)
    self.assertEqual((failed[0]["user"], failed[0]["auth_failures"]), ("", "1"))
    self.assertEqual(alice["auth_failures"], "0")
    carol = [e for e in ends if e["user"] == "carol@small.test"][0]
    self.assertEqual((carol["retrieved"], carol["deleted"], carol["uidls_changed"]),
                     ("0", "0", "false"))
    self.assertEqual(len({e["session"] for e in ends}), 4)

  def test_no_password_or_sasl_secret_in_the_log(self):
    self.assertIn("session end", self.log)
    for secret in (PASSWORD, "Zebra-Quartz", self.plain_b64, self.login_b64,
                   "wrong " + PASSWORD):
      self.assertNotIn(secret, self.log)


class self_assert_raises:  # a context manager usable in setUpClass
  def __init__(self, exc):
    self.exc = exc

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is None:
      raise AssertionError("%s not raised" % self.exc.__name__)
    return issubclass(exc_type, self.exc)


if __name__ == "__main__":
  unittest.main()
