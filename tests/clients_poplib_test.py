"""Python's poplib (the stdlib client) against the real posthaste server.

Shows: login with USER/PASS (a password with spaces), CAPA, STAT, LIST, UIDL (the UIDLs
`deliver` printed), RETR of every message byte-exact (dot-stuffed lines, NUL and 8-bit bytes,
bare LF, no final newline, a 10 MiB message), TOP, NOOP, RSET, DELE+QUIT seen by the next
session, DELE then a dropped connection deletes nothing, a wrong password answered -ERR [AUTH],
that the 10 MiB RETR on a plain connection was sent by a zero-copy path (server metrics),
concurrent sessions over two shards, and SIGTERM draining open sessions.
"""

import poplib
import socket
import threading
import time
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import PosthasteServer, metric_sum, wire_form, wire_lines

PASSWORD = "correct horse battery staple"  # spaces: PASS takes the rest of the line
TIMEOUT_S = 60
PARALLEL_USERS = 6
PARALLEL_ROUNDS = 3


class PoplibTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer(shards=2)
    # alice's mailbox is only read; every test that deletes has its own user.
    cls.mail = messages.everyday_messages() + [messages.big_message()]
    cls.uidls = []
    cls.server.add_user("alice@example.test", PASSWORD)
    for _, raw in cls.mail:
      cls.uidls.append(cls.server.deliver("alice@example.test", raw))
    for user in ("bob", "carol", "dave"):
      cls.server.add_user(user + "@example.test", PASSWORD)
      for _, raw in cls.mail[:3]:
        cls.server.deliver(user + "@example.test", raw)
    # Users for concurrent sessions (spread over both shards).
    cls.parallel_mail = messages.everyday_messages() + [messages.big_message(size=1 << 20)]
    for i in range(PARALLEL_USERS):
      cls.server.add_user("par%d@example.test" % i, PASSWORD)
      for _, raw in cls.parallel_mail:
        cls.server.deliver("par%d@example.test" % i, raw)
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()  # SIGTERM; fails unless the server exits 0

  def connect(self):
    return poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)

  def login(self, user="alice"):
    pop = self.connect()
    pop.user(user + "@example.test")
    pop.pass_(PASSWORD)
    return pop

  def test_health_and_metrics_endpoints(self):
    self.assertEqual(self.server.http_get("/healthz")[0], 200)
    self.assertEqual(self.server.http_get("/readyz")[0], 200)
    names = {name for name, _, _ in self.server.metrics()}
    self.assertIn(SEND_PATH_METRIC, names)
    # Only posthaste's own families, the HTTP listeners' among them, and the process_* families
    # every Prometheus client library exports (the server's memory, CPU and descriptors).
    self.assertTrue(all(name.startswith(("posthaste_", "process_")) for name in names),
                    sorted(names))
    self.assertIn("posthaste_http_connections_accepted_total", names)
    process = {name: value for name, _, value in self.server.metrics()
               if name.startswith("process_")}
    self.assertEqual(set(process), {
        "process_cpu_seconds_total", "process_resident_memory_bytes",
        "process_virtual_memory_bytes", "process_open_fds", "process_max_fds", "process_threads",
        "process_start_time_seconds"})
    self.assertGreater(process["process_resident_memory_bytes"], 1 << 20)
    self.assertGreater(process["process_open_fds"], 3)  # listeners, rings, the store
    self.assertGreaterEqual(process["process_max_fds"], process["process_open_fds"])

  def test_greeting(self):
    pop = self.connect()
    self.assertTrue(pop.getwelcome().startswith(b"+OK"), pop.getwelcome())
    self.assertEqual(pop.quit()[:3], b"+OK")

  def test_capa_before_and_after_login(self):
    pop = self.connect()
    before = pop.capa()
    for capability in ("TOP", "UIDL", "USER", "RESP-CODES", "PIPELINING"):
      self.assertIn(capability, before)
    pop.user("alice@example.test")
    pop.pass_(PASSWORD)
    after = pop.capa()
    for capability in ("TOP", "UIDL", "RESP-CODES", "PIPELINING"):
      self.assertIn(capability, after)
    pop.quit()

  def test_stat_list_uidl(self):
    pop = self.login()
    sizes = [len(wire_form(raw)) for _, raw in self.mail]
    self.assertEqual(pop.stat(), (len(sizes), sum(sizes)))
    resp, listing, _ = pop.list()
    self.assertTrue(resp.startswith(b"+OK"))
    self.assertEqual(listing, [b"%d %d" % (i + 1, size) for i, size in enumerate(sizes)])
    resp, uidls, _ = pop.uidl()
    self.assertEqual(uidls, [b"%d %s" % (i + 1, u.encode()) for i, u in enumerate(self.uidls)])
    for i, size in enumerate(sizes):
      self.assertEqual(pop.list(i + 1), b"+OK %d %d" % (i + 1, size))
      self.assertEqual(pop.uidl(i + 1), b"+OK %d %s" % (i + 1, self.uidls[i].encode()))
    pop.quit()

  def test_retr_every_message_byte_exact(self):
    pop = self.login()
    for number, (name, raw) in enumerate(self.mail, start=1):
      with self.subTest(message=name):
        resp, lines, _ = pop.retr(number)
        self.assertEqual(resp.split()[:2], [b"+OK", b"%d" % len(wire_form(raw))], resp)
        expected = wire_lines(raw)
        self.assertEqual(len(lines), len(expected))
        self.assertTrue(lines == expected, "RETR %d (%s) differs from what was delivered" %
                        (number, name))
    pop.quit()

  def test_dot_lines_and_binary_bytes(self):
    pop = self.login()
    names = [name for name, _ in self.mail]
    _, lines, _ = pop.retr(names.index("dots") + 1)
    self.assertIn(b".", lines)
    self.assertIn(b"..", lines)
    self.assertIn(b".hidden", lines)
    _, lines, _ = pop.retr(names.index("binary") + 1)
    self.assertIn(b"NUL here:\x00:there", lines)
    self.assertIn(b"high bytes \x80\x81\xfe\xff", lines)
    pop.quit()

  def test_retr_10_mib_byte_exact(self):
    name, raw = self.mail[-1]
    self.assertEqual(name, "big")
    pop = self.login()
    resp, lines, _ = pop.retr(len(self.mail))
    pop.quit()
    self.assertEqual(resp.split()[:2], [b"+OK", b"%d" % len(wire_form(raw))])
    self.assertTrue(lines == wire_lines(raw), "the 10 MiB message differs")

  def test_retr_10_mib_send_path_counted_as_zero_copy(self):
    name, raw = self.mail[-1]
    self.assertEqual(name, "big")
    before = self.server.metrics()
    pop = self.login()
    pop.retr(len(self.mail))
    pop.quit()
    after = self.server.metrics()

    def grew(path):
      return (metric_sum(after, SEND_PATH_METRIC, **{SEND_PATH_LABEL: path}) -
              metric_sum(before, SEND_PATH_METRIC, **{SEND_PATH_LABEL: path}))

    paths = {labels[SEND_PATH_LABEL] for name, labels, _ in after
             if name == SEND_PATH_METRIC and SEND_PATH_LABEL in labels}
    growth = {path: grew(path) for path in paths}
    # The server chose a zero-copy path for the body (a chunk the kernel refuses to pin may go
    # out by a plain send; the server counts it under its own label) ...
    self.assertGreater(sum(growth.get(path, 0) for path in ZERO_COPY_PATHS), 0,
                       "a plain RETR of 10 MiB was not sent by a zero-copy path: %s" % growth)
    # ... and every body byte is counted under some path (the stored body is dot-stuffed, so it
    # is at least the POP3 size).
    self.assertGreaterEqual(sum(growth.values()), len(wire_form(raw)),
                            "body bytes missing from %s: %s" % (SEND_PATH_METRIC, growth))

  def test_top(self):
    pop = self.login()
    for number, (name, raw) in enumerate(self.mail, start=1):
      with self.subTest(message=name):
        lines = wire_lines(raw)
        header_end = lines.index(b"") if b"" in lines else len(lines)
        for body_lines in (0, 1, 3):
          _, got, _ = pop.top(number, body_lines)
          want = lines[:min(len(lines), header_end + 1 + body_lines)]
          self.assertEqual(got, want, "TOP %d %d" % (number, body_lines))
    pop.quit()

  def test_noop_and_unknown_message(self):
    pop = self.login()
    self.assertTrue(pop.noop().startswith(b"+OK"))
    with self.assertRaises(poplib.error_proto):
      pop.retr(len(self.mail) + 1)
    with self.assertRaises(poplib.error_proto):
      pop.list(0)
    self.assertTrue(pop.noop().startswith(b"+OK"))
    pop.quit()

  def test_wrong_password_and_unknown_user_look_the_same(self):
    answers = []
    for user, password in (("alice@example.test", "wrong password"),
                           ("nobody@example.test", PASSWORD)):
      pop = self.connect()
      self.assertTrue(pop.user(user).startswith(b"+OK"))  # no user enumeration
      with self.assertRaises(poplib.error_proto) as caught:
        pop.pass_(password)
      self.assertIn(b"[AUTH]", caught.exception.args[0])
      answers.append(caught.exception.args[0])
      pop.quit()
    self.assertEqual(answers[0], answers[1])

  def test_login_domain_is_case_insensitive(self):
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    pop.user("alice@Example.TEST")
    pop.pass_(PASSWORD)
    self.assertEqual(pop.stat()[0], len(self.mail))
    pop.quit()

  def test_utf8_and_no_stls_without_tls(self):
    pop = self.login()
    self.assertIn("UTF8", pop.capa())
    self.assertNotIn("STLS", pop.capa())  # no TLS configured: STLS is not offered
    self.assertTrue(pop.utf8().startswith(b"+OK"))  # RFC 6856; Outlook sends it after login
    self.assertEqual(pop.stat()[0], len(self.mail))
    pop.quit()

  def test_dele_then_quit_is_seen_by_the_next_session(self):
    pop = self.login("bob")
    self.assertEqual(pop.stat()[0], 3)
    self.assertTrue(pop.dele(2).startswith(b"+OK"))
    self.assertEqual(pop.stat()[0], 2)
    with self.assertRaises(poplib.error_proto):
      pop.retr(2)  # deleted in this session
    self.assertTrue(pop.quit().startswith(b"+OK"))
    pop = self.login("bob")  # right after +OK to QUIT: the maildrop must be free
    names = [self.mail[0][0], self.mail[2][0]]
    self.assertEqual(pop.stat(), (2, sum(len(wire_form(raw)) for _, raw in
                                         (self.mail[0], self.mail[2]))), names)
    _, lines, _ = pop.retr(2)
    self.assertEqual(lines, wire_lines(self.mail[2][1]))
    pop.quit()

  def test_rset_undeletes(self):
    pop = self.login("carol")
    pop.dele(1)
    pop.dele(3)
    self.assertEqual(pop.stat()[0], 1)
    self.assertTrue(pop.rset().startswith(b"+OK"))
    self.assertEqual(pop.stat()[0], 3)
    pop.quit()
    pop = self.login("carol")
    self.assertEqual(pop.stat()[0], 3)
    pop.quit()

  def test_dele_then_dropped_connection_deletes_nothing(self):
    pop = self.login("dave")
    pop.dele(1)
    pop.sock.shutdown(socket.SHUT_RDWR)
    pop.close()
    # The server notices the drop asynchronously; the maildrop may be in use for a moment.
    deadline = time.monotonic() + 20
    while True:
      pop = self.connect()
      pop.user("dave@example.test")
      try:
        pop.pass_(PASSWORD)
        break
      except poplib.error_proto as error:
        pop.close()
        if b"[IN-USE]" not in error.args[0] or time.monotonic() > deadline:
          raise
        time.sleep(0.2)
    self.assertEqual(pop.stat()[0], 3)
    pop.quit()

  def test_concurrent_sessions(self):
    # PARALLEL_USERS clients at once, each retrieving its whole maildrop PARALLEL_ROUNDS times.
    errors = []
    want = [wire_lines(raw) for _, raw in self.parallel_mail]

    def client(user):
      try:
        for _ in range(PARALLEL_ROUNDS):
          pop = self.login(user)
          count, _ = pop.stat()
          if count != len(want):
            errors.append("%s: STAT says %d messages" % (user, count))
          for number in range(1, count + 1):
            if pop.retr(number)[1] != want[number - 1]:
              errors.append("%s: RETR %d differs" % (user, number))
          pop.quit()
      except Exception as error:  # reported below, with the user
        errors.append("%s: %r" % (user, error))

    threads = [threading.Thread(target=client, args=("par%d" % i,))
               for i in range(PARALLEL_USERS)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join(300)
    self.assertFalse(any(thread.is_alive() for thread in threads), "a client hung")
    self.assertEqual(errors, [])


class DrainTest(unittest.TestCase):
  """SIGTERM with sessions open: a session that QUITs during the drain commits; one that stays
  idle is closed at the drain timeout without committing; /readyz says 503 meanwhile."""

  def test_sigterm_drains(self):
    server = PosthasteServer(extra_args=["--drain_timeout_s=3"])
    mail = messages.everyday_messages()[:3]
    for user in ("quitter", "idler"):
      server.add_user(user + "@example.test", PASSWORD)
      for _, raw in mail:
        server.deliver(user + "@example.test", raw)
    with server:
      sessions = {}
      for user in ("quitter", "idler"):
        pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=TIMEOUT_S)
        pop.user(user + "@example.test")
        pop.pass_(PASSWORD)
        self.assertTrue(pop.dele(1).startswith(b"+OK"))
        sessions[user] = pop
      server.terminate()
      deadline = time.monotonic() + 10
      while server.http_get("/readyz")[0] != 503:
        self.assertLess(time.monotonic(), deadline, "/readyz never said 503 while draining")
        time.sleep(0.05)
      self.assertEqual(server.http_get("/healthz")[0], 200)
      # A session open at SIGTERM may still finish: its QUIT commits.
      self.assertTrue(sessions["quitter"].quit().startswith(b"+OK"))
      server.wait_exit()
      # The idle one was closed at the drain timeout.
      with self.assertRaises((poplib.error_proto, OSError, EOFError)):
        sessions["idler"].noop()
      sessions["idler"].close()
    self.assertEqual(server.mailbox_stats("quitter@example.test")[0], len(mail) - 1)
    self.assertEqual(server.mailbox_stats("idler@example.test")[0], len(mail))


# The server's counter of message body bytes by the send path it submitted (server/metrics_gather.cc).
SEND_PATH_METRIC = "posthaste_pop3_body_bytes_total"
SEND_PATH_LABEL = "path"
ZERO_COPY_PATHS = ("splice", "send_zc")

if __name__ == "__main__":
  unittest.main()
