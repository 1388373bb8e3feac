"""`posthaste user move` between two real backends registered in a real 3-member etcd.

Shows: a mailbox of a few thousand messages moves from b1 to b2 while a delivery loop runs (LMTP
to whichever backend the directory names, waiting while the entry says moving_to and retrying
451s) and a POP3 client keeps reconnecting to the owner; the move CLI is killed with SIGKILL at
random points and run again until it finishes. Afterwards: the directory names b2 alone and no
move record is left; b1 no longer has the account; on b2 every message is there exactly once
(MD5 of each), with the UIDLs the client knew; the client's second download fetches only the
messages delivered during the move. A second user's move is stopped while the source holds the
account, and the source restarted: it still answers LMTP 451 4.2.0 and POP3 [SYS/TEMP] for that
user (the hold is stored with the account) until the move is run again and finishes.
"""

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
LOOP_MESSAGES_MAX = 400
TIMEOUT_S = 60
MOVE_RUNS_MAX = 100
# Progress lines of the move CLI after which a run is killed.
KILL_POINTS = ("move ", "copy (source serving)", "switching:", "final copy", "switched:",
               "removed the copy")


def message(tag):
  return ("From: loop@example.test\r\nTo: %s\r\nSubject: %s\r\n\r\nbody of %s\r\n%s\r\n" %
          (USER, tag, tag, "x" * (len(tag) * 7 % 300))).encode()


class MailboxMoveTest(unittest.TestCase):

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
        server.add_user(USER, PASSWORD)
      server.start()
      cls.read_admin_port(server)
      cls.backends[name] = server
    for name in cls.backends:
      wait_for(lambda: cls.etcd.get("/posthaste/backends/" + name) is not None, timeout_s=20,
               what="backend %s in etcd" % name)
    cls.etcd.etcdctl("put", "/posthaste/tenants/example.test", '{"backend":"b1"}')

  @classmethod
  def tearDownClass(cls):
    for server in cls.backends.values():
      server.stop()
    cls.etcd.stop()

  @classmethod
  def read_admin_port(cls, server):
    ports = re.findall(r"\badmin_api=127\.0\.0\.1:(\d+)", server.stderr_text())
    assert ports, server.stderr_text()
    server.admin_port = int(ports[-1])  # the latest start's

  # --- the directory, as the router would read it ---
  def placement(self):
    raw = self.etcd.get("/posthaste/users/" + USER) or self.etcd.get(
        "/posthaste/tenants/example.test")
    return json.loads(raw)

  def lmtp_deliver(self, backend, messages, user=USER):
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

  def download(self, backend, known):
    """UIDL -> (MD5, Subject) of every message not in `known`, from `backend` by POP3 (the
    server adds trace headers, so the MD5 is of what POP3 returns)."""
    pop = poplib.POP3("127.0.0.1", self.backends[backend].pop3_port, timeout=TIMEOUT_S)
    try:
      pop.user(USER)
      pop.pass_(PASSWORD)
      fetched = {}
      for line in pop.uidl()[1]:
        number, uidl = line.decode().split()
        if uidl in known:
          continue
        lines = pop.retr(int(number))[1]
        subject = [l[9:].decode() for l in lines if l.startswith(b"Subject: ")]
        fetched[uidl] = (hashlib.md5(b"\r\n".join(lines) + b"\r\n").hexdigest(),
                         subject[0] if subject else "")
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

  def move_argv(self, user=USER):
    return [
        self.backends["b1"].binary, "user", "move", user, "--to=b2",
        "--etcd_endpoints=" + self.etcd.endpoints_flag, "--admin_token_file=" + self.token_file
    ]

  def test_source_restarted_while_held(self):
    user = "bob@example.test"
    status, body = self.admin_call("b1", "POST", "/api/v1/accounts",
                                   {"address": user, "password": PASSWORD})
    self.assertEqual(status, 201, body)
    # Messages of 3 MiB, one per 4 MiB page: the final copy is several pages long, so the
    # move is still in its hold step when it is killed after the first of them.
    big = [("big-%d" % i, message("big-%d" % i) + b"y" * (3 << 20) + b"\r\n") for i in range(4)]
    self.assertEqual(len(self.lmtp_deliver("b1", big, user=user)), len(big))
    proc = subprocess.Popen(self.move_argv(user), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
        lmtp.sendmail("loop@example.test", [user], message("after-restart"))
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

    result = subprocess.run(self.move_argv(user), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=600, check=False)
    self.assertEqual(result.returncode, 0, result.stderr.decode())
    self.assertEqual(json.loads(self.etcd.get("/posthaste/users/" + user)), {"backend": "b2"})
    self.assertEqual(self.admin_call("b1", "GET", "/api/v1/accounts/" + user)[0], 404)
    status, body = self.admin_call("b2", "GET", "/api/v1/accounts/" + user)
    self.assertEqual((status, body["messages"], body["held"]), (200, len(big), False))

  def test_live_move_with_deliveries_readers_and_kills(self):
    rng = random.Random(int(os.environ.get("MOVE_TEST_SEED", "15")))
    # Preload, then the client's first download.
    preload = [("pre-%d" % i, message("pre-%d" % i)) for i in range(PRELOADED)]
    for start in range(0, len(preload), 500):
      self.assertEqual(len(self.lmtp_deliver("b1", preload[start:start + 500])),
                       len(preload[start:start + 500]))
    first = self.download("b1", known=set())
    self.assertEqual(sorted(subject for _, subject in first.values()),
                     sorted(tag for tag, _ in preload))

    stop = threading.Event()
    delivered = []  # tags acknowledged with 250
    temp_failures = [0]
    pop_sessions = [0]
    errors = []

    def delivery_loop():
      i = 0
      while not stop.is_set() and i < LOOP_MESSAGES_MAX:
        entry = self.placement()
        if entry.get("moving_to"):
          time.sleep(0.05)  # the router answers TEMP: Postfix would wait and retry
          continue
        tag = "loop-%d" % i
        try:
          done = self.lmtp_deliver(entry["backend"], [(tag, message(tag))])
        except Exception as e:  # pylint: disable=broad-except
          errors.append("delivery %s: %r" % (tag, e))
          return
        if done:
          delivered.append(tag)
          i += 1
        else:
          temp_failures[0] += 1
          time.sleep(0.05)

    def reader_loop():
      while not stop.is_set():
        entry = self.placement()
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
          pass  # the account just left b1: the next round reads the directory again
        time.sleep(0.02)

    threads = [threading.Thread(target=delivery_loop), threading.Thread(target=reader_loop)]
    for t in threads:
      t.start()
    try:
      time.sleep(0.5)
      kills = 0
      runs = 0
      finished = None
      while finished is None and runs < MOVE_RUNS_MAX:
        runs += 1
        proc = subprocess.Popen(self.move_argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if kills < KILLS:
          # Killed right after a chosen progress line (each step boundary in turn), or part way
          # through a step.
          target = KILL_POINTS[rng.randrange(len(KILL_POINTS))]
          while True:
            line = proc.stdout.readline()
            if not line or line.decode().startswith(target):
              break
          time.sleep(rng.uniform(0, 0.05))
          if proc.poll() is None:
            proc.kill()
            kills += 1
            proc.communicate(timeout=TIMEOUT_S)
            print("move run %d killed (SIGKILL) after %r; directory: %s" %
                  (runs, target, self.placement()))
            continue
        out, err = proc.communicate(timeout=600)
        if proc.returncode == 0:
          finished = out.decode() or "(its last lines were read above)"
        else:
          print("move run %d exited %d: %s" % (runs, proc.returncode, err.decode().strip()))
      self.assertIsNotNone(finished, "the move never finished")
      print("move finished after %d runs (%d killed):\n%s" % (runs, kills, finished))
      time.sleep(1.0)  # deliveries and logins against the new owner
    finally:
      stop.set()
      for t in threads:
        t.join(TIMEOUT_S)
    self.assertEqual(errors, [])
    print("during the move: %d deliveries acknowledged, %d temporary failures, %d POP3 sessions" %
          (len(delivered), temp_failures[0], pop_sessions[0]))

    # One owner, no move in progress.
    self.assertEqual(json.loads(self.etcd.get("/posthaste/users/" + USER)), {"backend": "b2"})
    self.assertIsNone(self.etcd.get("/posthaste/moves/" + USER))
    status, _ = self.admin_get("b1", "/api/v1/accounts/" + USER)
    self.assertEqual(status, 404)

    # Every message exactly once, the known UIDLs kept; the second download is the delta.
    second = self.download("b2", known=set(first))
    self.assertEqual(sorted(subject for _, subject in second.values()), sorted(delivered))
    everything = self.download("b2", known=set())
    self.assertEqual(len(everything), PRELOADED + len(delivered))
    for uidl, md5 in first.items():
      self.assertEqual(everything.get(uidl), md5, uidl)


if __name__ == "__main__":
  unittest.main()
