"""Live moves between two real backends registered in a real 3-member etcd.

`UserMoveTest`: a mailbox of a few thousand messages (MOVE_TEST_MESSAGES) moves b1 -> b2, then
back and forth, while a delivery loop runs (LMTP to whichever backend the directory names,
waiting while the entry says moving_to and retrying 451s) and a POP3 client keeps reconnecting
to the owner; the move CLI is killed with SIGKILL at random points (MOVE_TEST_KILLS times in
all, at most KILLS_PER_MOVE per move, so a move that finished early is followed by the next) and
run again until it finishes. After each move: the directory names the target alone and no move
record is left; the source no longer has the account. At the end: every message is there exactly
once (MD5 of each as it was sent), with the UIDLs the client knew; the client's second download
fetches only the messages delivered during the moves.

`TenantMoveTest`: `posthaste tenant move` of a tenant of several users from b1 to b2, the tenant
move killed with SIGKILL and run again, while deliveries go on: every message once on b2, b1
without the tenant's accounts, the tenant placed on b2 and no per-user entry or move record left.

`HeldRestartTest`: a user's move is stopped while the source holds the account, and the source
restarted: it still answers LMTP 451 4.2.0 and POP3 [SYS/TEMP] for that user (the hold is stored
with the account) until the move is run again and finishes.
"""

import collections
import hashlib
import http.client
import json
import os
import poplib
import random
import re
import smtplib
import subprocess
import threading
import time
import unittest

from tests.testing.etcd_cluster import EtcdCluster
from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, wait_for

TOKEN = "move-admin-token-0123456789"
USER = "ann@example.test"
PASSWORD = "ann password"
PRELOADED = int(os.environ.get("MOVE_TEST_MESSAGES", "2000"))
KILLS = int(os.environ.get("MOVE_TEST_KILLS", "3"))
KILLS_PER_MOVE = 6
MOVES_MAX = 30
LOOP_MESSAGES_MAX = 5000
TIMEOUT_S = 60
MOVE_RUNS_MAX = 100
# Progress lines of the move CLI after which a run is killed.
KILL_POINTS = ("move ", "copy (source serving)", "switching:", "final copy", "switched:",
               "removed the copy")
TENANT = "tenant.test"
TENANT_USERS = ["u%d@%s" % (i, TENANT) for i in range(5)]
TENANT_PRELOADED = 60  # per user
TENANT_KILL_POINTS = ("tenant move ", "pinned ", "placed ", "user ", "copy (source serving)",
                      "final copy", "switched:", "removed the copy", "unpinned ")


def message(tag, user=USER):
  return ("From: loop@example.test\r\nTo: %s\r\nSubject: %s\r\n\r\nbody of %s\r\n%s\r\n" %
          (user, tag, tag, "x" * (len(tag) * 7 % 300))).encode()


def sent_md5(lines):
  """MD5 of a message as it was sent, from the lines RETR returned (LMTP adds Return-Path)."""
  if lines and lines[0].startswith(b"Return-Path: "):
    lines = lines[1:]
  return hashlib.md5(b"\r\n".join(lines) + b"\r\n").hexdigest()


class TwoBackends(unittest.TestCase):
  """A 3-member etcd and backends b1 and b2 registered in it, with their admin APIs."""

  @classmethod
  def setUpClass(cls):
    cls.etcd = EtcdCluster(members=3).start()
    cls.token_file = os.path.join(make_temp_dir("token-"), "token")
    with open(cls.token_file, "w") as f:
      f.write(TOKEN + "\n")
    os.chmod(cls.token_file, 0o600)
    cls.backends = {}
    for name in ("b1", "b2"):
      server = PosthasteServer(extra_args=[
          "--etcd_endpoints=" + cls.etcd.endpoints_flag, "--advertise_ip=127.0.0.1",
          "--backend_name=" + name, "--admin_listen=127.0.0.1:0",
          "--admin_token_file=" + cls.token_file
      ])
      if name == "b1":
        for address in cls.users_on_b1():
          server.add_user(address, PASSWORD)
      server.start()
      cls.read_admin_port(server)
      cls.backends[name] = server
    for name in cls.backends:
      wait_for(lambda: cls.etcd.get("/posthaste/backends/" + name) is not None, timeout_s=20,
               what="backend %s in etcd" % name)

  @classmethod
  def read_admin_port(cls, server):
    ports = re.findall(r"\badmin_api=127\.0\.0\.1:(\d+)", server.stderr_text())
    assert ports, server.stderr_text()
    server.admin_port = int(ports[-1])  # the latest start's

  @classmethod
  def tearDownClass(cls):
    for server in cls.backends.values():
      server.stop()
    cls.etcd.stop()

  # --- the directory, as the router would read it ---
  def placement(self, user):
    """The user's entry, else its tenant's, read at one revision (as the router's cache sees
    the directory): two separate reads could see the user without an entry and then the
    tenant already switched by the tenant move's pin step, a state that never existed."""
    user_key = "/posthaste/users/" + user
    tenant_key = "/posthaste/tenants/" + user.split("@")[1]
    lines = self.etcd.etcdctl("get", "--prefix", "/posthaste/").splitlines()
    entries = dict(zip(lines[0::2], lines[1::2]))
    return json.loads(entries.get(user_key) or entries[tenant_key])

  def lmtp_deliver(self, backend, user, messages):
    """Delivers (tag, bytes) pairs in one LMTP session; returns the tags acknowledged."""
    done = []
    with smtplib.LMTP("127.0.0.1", self.backends[backend].lmtp_port, timeout=TIMEOUT_S) as lmtp:
      for tag, data in messages:
        try:
          lmtp.sendmail("loop@example.test", [user], data)
          done.append(tag)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as e:
          text = str(e)
          if " 451" not in text and "451" not in text.split(",")[0]:
            raise
          break
    return done

  def download(self, backend, user, known):
    """UIDL -> (MD5 as sent, Subject) of every message not in `known`, from `backend`."""
    pop = poplib.POP3("127.0.0.1", self.backends[backend].pop3_port, timeout=TIMEOUT_S)
    try:
      pop.user(user)
      pop.pass_(PASSWORD)
      fetched = {}
      for line in pop.uidl()[1]:
        number, uidl = line.decode().split()
        if uidl in known:
          continue
        lines = pop.retr(int(number))[1]
        subject = [l[9:].decode() for l in lines if l.startswith(b"Subject: ")]
        fetched[uidl] = (sent_md5(lines), subject[0] if subject else "")
      pop.quit()
      return fetched
    finally:
      try:
        pop.close()
      except OSError:
        pass

  def admin_get(self, backend, path):
    conn = http.client.HTTPConnection("127.0.0.1", self.backends[backend].admin_port,
                                      timeout=TIMEOUT_S)
    try:
      conn.request("GET", path, headers={"Authorization": "Bearer " + TOKEN})
      response = conn.getresponse()
      return response.status, response.read()
    finally:
      conn.close()

  def admin_call(self, backend, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", self.backends[backend].admin_port,
                                      timeout=TIMEOUT_S)
    try:
      conn.request(method, path, body=None if body is None else json.dumps(body),
                   headers={"Authorization": "Bearer " + TOKEN,
                            "Content-Type": "application/json"})
      response = conn.getresponse()
      text = response.read()
      return response.status, (json.loads(text) if text else None)
    finally:
      conn.close()

  def cli_argv(self, *words):
    return [self.backends["b1"].binary] + list(words) + [
        "--etcd_endpoints=" + self.etcd.endpoints_flag, "--admin_token_file=" + self.token_file
    ]

  def run_until_done(self, argv, rng, kills_max, kill_points, stream):
    """Runs `argv` again and again until it exits 0, killing (SIGKILL) up to `kills_max` runs
    right after a progress line chosen from `kill_points()` (the lines the run may still print)
    on `stream` ("stdout" or "stderr"), at once or part way through the step after it. Returns
    (runs, kills, the last run's output)."""
    kills = 0
    for runs in range(1, MOVE_RUNS_MAX + 1):
      points = kill_points()
      proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
      progress = proc.stdout if stream == "stdout" else proc.stderr
      seen = []
      if kills < kills_max:
        target = points[rng.randrange(len(points))]
        while True:
          line = progress.readline()
          seen.append(line)
          if not line or line.decode().startswith(target):
            break
        if rng.random() < 0.5:
          time.sleep(rng.uniform(0, 0.02))
        if proc.poll() is None:
          proc.kill()
          kills += 1
          proc.communicate(timeout=TIMEOUT_S)
          print("run %d killed (SIGKILL) after %r" % (runs, target))
          continue
      out, err = proc.communicate(timeout=600)
      if proc.returncode == 0:
        return runs, kills, b"".join(seen).decode() + (out if stream == "stdout" else err).decode()
      print("run %d exited %d: %s" % (runs, proc.returncode, err.decode().strip()[-500:]))
    self.fail("%s never finished" % " ".join(argv[1:3]))


class UserMoveTest(TwoBackends):

  @classmethod
  def users_on_b1(cls):
    return [USER]

  def user_kill_points(self):
    """The progress lines a run of the user move may still print, by its record's step."""
    raw = self.etcd.get("/posthaste/moves/" + USER)
    step = json.loads(raw)["step"] if raw else None
    return KILL_POINTS[{None: 0, "copy": 1, "hold": 3, "switched": 5}[step]:]

  def test_live_moves_with_deliveries_readers_and_kills(self):
    self.etcd.etcdctl("put", "/posthaste/tenants/example.test", '{"backend":"b1"}')
    rng = random.Random(int(os.environ.get("MOVE_TEST_SEED", "15")))
    # Preload, then the client's first download.
    preload = [("pre-%d" % i, message("pre-%d" % i)) for i in range(PRELOADED)]
    for start in range(0, len(preload), 500):
      self.assertEqual(len(self.lmtp_deliver("b1", USER, preload[start:start + 500])),
                       len(preload[start:start + 500]))
    first = self.download("b1", USER, known=set())
    self.assertEqual(sorted(subject for _, subject in first.values()),
                     sorted(tag for tag, _ in preload))
    print("mailbox: %d messages delivered and downloaded before the moves" % len(first))

    stop = threading.Event()
    delivered = []  # tags acknowledged with 250
    temp_failures = [0]
    pop_sessions = [0]
    errors = []

    def delivery_loop():
      i = 0
      while not stop.is_set() and i < LOOP_MESSAGES_MAX:
        entry = self.placement(USER)
        if entry.get("moving_to"):
          time.sleep(0.05)  # the router answers TEMP: Postfix would wait and retry
          continue
        tag = "loop-%d" % i
        try:
          done = self.lmtp_deliver(entry["backend"], USER, [(tag, message(tag))])
        except Exception as e:  # pylint: disable=broad-except
          errors.append("delivery %s: %r" % (tag, e))
          return
        if done:
          delivered.append(tag)
          i += 1
          time.sleep(0.01)
        else:
          temp_failures[0] += 1
          time.sleep(0.05)

    def reader_loop():
      while not stop.is_set():
        entry = self.placement(USER)
        if entry.get("moving_to"):
          time.sleep(0.05)
          continue
        try:
          pop = poplib.POP3("127.0.0.1", self.backends[entry["backend"]].pop3_port,
                            timeout=TIMEOUT_S)
          pop.user(USER)
          pop.pass_(PASSWORD)
          pop.stat()
          pop.uidl()
          pop.quit()
          pop_sessions[0] += 1
        except (poplib.error_proto, OSError):
          pass  # the account just left its source: the next round reads the directory again
        time.sleep(0.02)

    threads = [threading.Thread(target=delivery_loop), threading.Thread(target=reader_loop)]
    for t in threads:
      t.start()
    kills = 0
    moves = 0
    source, target = "b1", "b2"
    try:
      time.sleep(0.5)
      # Moves back and forth until the move CLI has been killed KILLS times: one move may
      # finish before its kills are spent (a kill after its last step is no kill at all).
      while (moves == 0 or kills < KILLS) and moves < MOVES_MAX:
        moves += 1
        runs, these, last = self.run_until_done(
            self.cli_argv("user", "move", USER, "--to=" + target), rng,
            min(KILLS_PER_MOVE, KILLS - kills), self.user_kill_points, "stdout")
        kills += these
        print("move %d (%s -> %s) finished after %d runs (%d killed):\n%s" %
              (moves, source, target, runs, these, last))
        # One owner, no move in progress, no copy left behind.
        self.assertEqual(json.loads(self.etcd.get("/posthaste/users/" + USER)),
                         {"backend": target})
        self.assertIsNone(self.etcd.get("/posthaste/moves/" + USER))
        status, _ = self.admin_get(source, "/api/v1/accounts/" + USER)
        self.assertEqual(status, 404)
        source, target = target, source
      time.sleep(1.0)  # deliveries and logins against the new owner
    finally:
      stop.set()
      for t in threads:
        t.join(TIMEOUT_S)
    self.assertEqual(errors, [])
    self.assertGreaterEqual(kills, KILLS)
    owner = source  # the last move's target
    print("%d moves, %d kills of the move CLI; during the moves: %d deliveries acknowledged, "
          "%d temporary failures, %d POP3 sessions" %
          (moves, kills, len(delivered), temp_failures[0], pop_sessions[0]))

    # The client's second download is exactly the messages delivered meanwhile, and the known
    # UIDLs still name the same messages.
    second = self.download(owner, USER, known=set(first))
    self.assertEqual(sorted(subject for _, subject in second.values()), sorted(delivered))
    everything = self.download(owner, USER, known=set())
    for uidl, md5 in first.items():
      self.assertEqual(everything.get(uidl), md5, uidl)
    # Every message exactly once, byte for byte as sent: no loss, no duplicate.
    expected = collections.Counter(
        hashlib.md5(message(tag)).hexdigest() for tag in [t for t, _ in preload] + delivered)
    self.assertEqual(collections.Counter(md5 for md5, _ in everything.values()), expected)


class HeldRestartTest(TwoBackends):

  @classmethod
  def users_on_b1(cls):
    return []

  def test_source_restarted_while_held(self):
    self.etcd.etcdctl("put", "/posthaste/tenants/example.test", '{"backend":"b1"}')
    user = "bob@example.test"
    status, body = self.admin_call("b1", "POST", "/api/v1/accounts",
                                   {"address": user, "password": PASSWORD})
    self.assertEqual(status, 201, body)
    # Messages of 3 MiB, one per 4 MiB page: the final copy is several pages long, so the
    # move is still in its hold step when it is killed after the first of them.
    big = [("big-%d" % i, message("big-%d" % i, user) + b"y" * (3 << 20) + b"\r\n") for i in range(4)]
    self.assertEqual(len(self.lmtp_deliver("b1", user, big)), len(big))
    proc = subprocess.Popen(self.cli_argv("user", "move", user, "--to=b2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while True:
      line = proc.stdout.readline()
      if not line or line.decode().startswith("final copy"):
        break
    proc.kill()
    proc.communicate(timeout=TIMEOUT_S)
    self.assertEqual(json.loads(self.etcd.get("/posthaste/moves/" + user))["step"], "hold")
    self.assertTrue(self.admin_call("b1", "GET", "/api/v1/accounts/" + user)[1]["held"])

    b1 = self.backends["b1"]
    b1.stop()
    b1.start()
    self.read_admin_port(b1)
    wait_for(lambda: '"admin":%d' % b1.admin_port in (self.etcd.get("/posthaste/backends/b1") or
                                                     "").replace(" ", ""),
             timeout_s=20, what="b1 registered again")
    with smtplib.LMTP("127.0.0.1", b1.lmtp_port, timeout=TIMEOUT_S) as lmtp:
      with self.assertRaises(smtplib.SMTPRecipientsRefused) as refused:
        lmtp.sendmail("loop@example.test", [user], message("after-restart", user))
      code, text = refused.exception.recipients[user]
      self.assertEqual(code, 451, text)
      self.assertIn(b"4.2.0", text)
    pop = poplib.POP3("127.0.0.1", b1.pop3_port, timeout=TIMEOUT_S)
    try:
      pop.user(user)
      with self.assertRaises(poplib.error_proto) as login:
        pop.pass_(PASSWORD)
      self.assertTrue(login.exception.args[0].startswith(b"-ERR [SYS/TEMP]"), login.exception)
    finally:
      pop.close()

    result = subprocess.run(self.cli_argv("user", "move", user, "--to=b2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=600, check=False)
    self.assertEqual(result.returncode, 0, result.stderr.decode())
    self.assertEqual(json.loads(self.etcd.get("/posthaste/users/" + user)), {"backend": "b2"})
    self.assertEqual(self.admin_call("b1", "GET", "/api/v1/accounts/" + user)[0], 404)
    status, body = self.admin_call("b2", "GET", "/api/v1/accounts/" + user)
    self.assertEqual((status, body["messages"], body["held"]), (200, len(big), False))


class TenantMoveTest(TwoBackends):

  @classmethod
  def users_on_b1(cls):
    return TENANT_USERS

  def tenant_kill_points(self):
    """The progress lines a run of the tenant move may still print, by its record's step."""
    raw = self.etcd.get("/posthaste/tenant_moves/" + TENANT)
    step = json.loads(raw)["step"] if raw else None
    return TENANT_KILL_POINTS[{None: 0, "pin": 1, "users": 3}[step]:]

  def test_tenant_move_with_deliveries_and_kills(self):
    self.etcd.etcdctl("put", "/posthaste/tenants/" + TENANT, '{"backend":"b1"}')
    rng = random.Random(int(os.environ.get("MOVE_TEST_SEED", "15")))
    sent = {user: [] for user in TENANT_USERS}  # tags acknowledged, per user
    for user in TENANT_USERS:
      batch = [("%s-pre-%d" % (user, i), message("%s-pre-%d" % (user, i), user))
               for i in range(TENANT_PRELOADED)]
      self.assertEqual(len(self.lmtp_deliver("b1", user, batch)), len(batch))
      sent[user].extend(tag for tag, _ in batch)

    stop = threading.Event()
    errors = []
    counts = {"delivered": 0, "waited": 0}

    def delivery_loop():
      for i in range(LOOP_MESSAGES_MAX):
        if stop.is_set():
          return
        user = TENANT_USERS[i % len(TENANT_USERS)]
        tag = "%s-loop-%d" % (user, i)
        while not stop.is_set():
          entry = self.placement(user)
          if entry.get("moving_to"):
            counts["waited"] += 1
            time.sleep(0.05)
            continue
          try:
            done = self.lmtp_deliver(entry["backend"], user, [(tag, message(tag, user))])
          except Exception as e:  # pylint: disable=broad-except
            errors.append("delivery %s to %s: %r" % (tag, entry, e))
            return
          if done:
            sent[user].append(tag)
            counts["delivered"] += 1
            time.sleep(0.01)
            break
          counts["waited"] += 1
          time.sleep(0.05)

    loop = threading.Thread(target=delivery_loop)
    loop.start()
    try:
      time.sleep(0.3)
      runs, kills, last = self.run_until_done(
          self.cli_argv("tenant", "move", TENANT, "--to=b2"), rng, 4, self.tenant_kill_points,
          "stderr")
      print("tenant move finished after %d runs (%d killed):\n%s" % (runs, kills, last))
      time.sleep(0.5)  # deliveries against the new owner
    finally:
      stop.set()
      loop.join(TIMEOUT_S)
    self.assertEqual(errors, [])
    self.assertGreaterEqual(kills, 1)
    print("during the move: %d deliveries acknowledged, %d waits" %
          (counts["delivered"], counts["waited"]))

    # The tenant is on b2, with no per-user entry and no move record left.
    self.assertEqual(json.loads(self.etcd.get("/posthaste/tenants/" + TENANT)), {"backend": "b2"})
    leftovers = self.etcd.etcdctl("get", "--prefix", "--keys-only", "/posthaste/")
    self.assertNotIn(TENANT, leftovers.replace("/posthaste/tenants/" + TENANT, ""))
    status, body = self.admin_get("b1", "/api/v1/accounts?domain=" + TENANT)
    self.assertEqual((status, json.loads(body)["accounts"]), (200, []))
    # Every message of every user on b2 exactly once, byte for byte as sent.
    for user in TENANT_USERS:
      on_b2 = self.download("b2", user, known=set())
      expected = collections.Counter(
          hashlib.md5(message(tag, user)).hexdigest() for tag in sent[user])
      self.assertEqual(collections.Counter(md5 for md5, _ in on_b2.values()), expected, user)


if __name__ == "__main__":
  unittest.main()
