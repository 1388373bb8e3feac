"""The kill -9 campaign of issue 18: the real `posthaste serve` SIGKILLed under mixed load.

Each trial runs a mixed load against the server, kills it with SIGKILL at a random moment,
restarts it and checks what a client may rely on:
- LMTP: three connections deliver messages to one or two recipients each. A recipient's copy
  that got `250` must be present and byte-identical (MD5) until a deletion of it is
  acknowledged; one that got any other reply, or whose `<CRLF>.<CRLF>` was never sent, must
  never appear; one whose reply was lost (DATA sent, killed before the answer) may go either
  way, and whichever way the restarted server shows it stays so.
- POP3: two sessions at a time log in, UIDL, RETR (checked byte for byte), DELE and QUIT, or
  drop the connection without QUIT. A QUIT answered `+OK` removed its DELEs for good; a QUIT
  without an answer removed all of them or none (one commit); a session that ended otherwise
  removed nothing. A message a POP3 client has seen must stay (it was committed).
- Admin socket: `user add`/`user del` of churn accounts, `user quota` of the stable ones and
  `compact`, each through the real CLI online. An acknowledged `user del` leaves no account and
  none of its mail (a later `user add` of the address starts empty); an acknowledged quota is
  the one `user show` reports, unless a later one was still unanswered.
- Everywhere: no message twice, UIDLs never change, `posthaste check` clean on a copy of the
  data directory taken right after the kill, and the server serves again (POP3 greeting and
  LMTP greeting answered) within RESTART_S_MAX.
A tenth of the kills land during start-up instead (index recovery).

Run: `tools/crash_campaign N [SEED]`, or under Bazel as //tests:crash_campaign_test (a short
run; CRASH_TRIALS and CRASH_SEED from the target's env). Prints the seed and one progress line
per trial, then `crash campaign: T trials, F failures, ...` and exits 1 on any violation.
Everything listens on 127.0.0.1 (ports chosen by the kernel) and lives in one temporary
directory that is removed at the end (kept when a trial failed, and named).

Threading: the main thread owns the server process and the model; load threads record what
they observed in the model under its lock, and are joined before the model is checked.
"""

import hashlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

DOMAIN = "crash.test"
STABLE = ["s%d@%s" % (i, DOMAIN) for i in range(4)]
CHURN = ["c%d@%s" % (i, DOMAIN) for i in range(4)]
NEVER = "nobody@" + DOMAIN  # never created: its RCPTs must always be refused
SENDER = "campaign@sender.test"
LMTP_WORKERS = 3
POP3_WORKERS = 2
LOAD_S_MIN = 0.05
LOAD_S_MAX = 1.5
STARTUP_KILL_PERCENT = 10
STARTUP_KILL_S_MAX = 0.4
START_S_MAX = 60.0  # a start that takes longer fails the trial
RESTART_S_MAX = 30.0  # "serves again within a bounded time"
SOCKET_TIMEOUT_S = 20.0
MAILBOX_MESSAGES_SOFT_MAX = 60  # POP3 workers delete more when a mailbox grows past it
QUOTA_CHOICES = [0, 40, 80, 150]  # messages; 0 = the tenant default (unlimited)
CLI_TIMEOUT_S = 60

_LISTENING_POP3 = re.compile(r"\bpop3=127\.0\.0\.1:(\d+)")
_LISTENING_LMTP = re.compile(r"\blmtp=127\.0\.0\.1:(\d+)")
_CRASH_ID = re.compile(rb"^X-Crash-Id: (\S+)\r$", re.M)
_SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def password(address):
  return "pw-" + address


def posthaste_binary():
  override = os.environ.get("PH_POSTHASTE_BIN")
  if override:
    return override
  for root in (os.environ.get("TEST_SRCDIR"), os.environ.get("RUNFILES_DIR")):
    if root:
      path = os.path.join(root, "posthaste", "server", "posthaste")
      if os.access(path, os.X_OK):
        return path
  raise SystemExit("posthaste binary not found: set PH_POSTHASTE_BIN")


# ---------------------------------------------------------------------------------------------
# The model: what was acknowledged, what is ambiguous, what must never appear.


class Copy:
  """One recipient's copy of one message."""

  def __init__(self, address, message_id, stored_md5):
    self.address = address
    self.message_id = message_id
    self.md5 = stored_md5
    self.required = False  # must be present (acknowledged, or seen by a client)
    self.possible = True  # may be present
    self.uidl = None  # once known, must never change
    self.deleting = None  # the ambiguous QUIT group it belongs to, if any
    self.sending = False  # its <CRLF>.<CRLF> is being written right now
    self.deleted = False  # a QUIT answered +OK removed it
    self.history = []  # what happened to it, for the failure report

  def note(self, event):
    self.history.append("%s %.3f" % (event, time.monotonic()))


class Account:

  def __init__(self, address):
    self.address = address
    self.exists = False  # resolved state (at the last check)
    self.maybe = None  # None, or the state an unanswered add/del may have left
    self.deleted_acked = False  # this trial: an acknowledged `user del`
    self.quota = 0  # acknowledged quota (messages)
    self.quota_pending = []  # unanswered quota changes this trial
    self.copies = {}  # message id -> Copy (current incarnation)


class Model:

  def __init__(self):
    self.lock = threading.Lock()
    self.accounts = {a: Account(a) for a in STABLE + CHURN}
    self.uidls = {}  # (address, uidl) -> message id, for every incarnation ever seen
    self.quit_groups = []  # lists of copies whose QUIT went unanswered (this trial)
    self.counts = dict(delivered=0, refused=0, ambiguous_deliveries=0, pop3_quits=0,
                       deleted=0, ambiguous_quits=0, retr_checked=0, user_adds=0,
                       user_dels=0, quotas=0, compactions=0, admin_ambiguous=0)

  def count(self, key, n=1):
    self.counts[key] += n


class Violation(Exception):
  pass


# ---------------------------------------------------------------------------------------------
# Messages


def make_message(rng, message_id):
  """A message in wire form (CRLF lines, no terminator), with lines that need dot-stuffing."""
  lines = [
      "From: <%s>" % SENDER,
      "Subject: crash campaign %s" % message_id,
      "X-Crash-Id: %s" % message_id,
      "",
  ]
  size = rng.choice([200, 800, 800, 3000, 3000, 12000, 12000, 60000]) + rng.randrange(200)
  body = []
  total = 0
  while total < size:
    kind = rng.randrange(10)
    if kind == 0:
      line = "." * rng.randrange(1, 3) + "dot line %d" % total
    elif kind == 1:
      line = ""
    else:
      line = "".join(rng.choice("abcdefghij klmnopqrstuvwxyz0123456789") for _ in
                     range(rng.randrange(1, 100)))
    body.append(line)
    total += len(line) + 2
  return ("\r\n".join(lines + body) + "\r\n").encode("ascii")


def dot_stuff(wire):
  return re.sub(rb"(?m)^\.", b"..", wire)


def stored_form(wire):
  """What RETR returns (unstuffed): LMTP adds the Return-Path line."""
  return b"Return-Path: <" + SENDER.encode() + b">\r\n" + wire


# ---------------------------------------------------------------------------------------------
# Line-oriented clients on raw sockets (the kill must surface as an error, never a hang)


class LineConn:

  def __init__(self, port):
    self.sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
    self.file = self.sock.makefile("rb")

  def line(self):
    line = self.file.readline(1 << 20)
    if not line.endswith(b"\r\n"):
      raise ConnectionError("connection closed")
    return line[:-2]

  def send(self, data):
    self.sock.sendall(data)

  def close(self):
    try:
      self.file.close()
      self.sock.close()
    except OSError:
      pass


class Pop3:

  def __init__(self, port):
    self.conn = LineConn(port)
    greeting = self.conn.line()
    if not greeting.startswith(b"+OK"):
      raise ConnectionError("POP3 greeting %r" % greeting)

  def command(self, text):
    self.conn.send(text.encode() + b"\r\n")
    return self.conn.line()

  def ok(self, text):
    reply = self.command(text)
    if not reply.startswith(b"+OK"):
      raise Pop3Error(text.split(" ")[0], reply)
    return reply

  def multi(self, text):
    self.ok(text)
    lines = []
    while True:
      line = self.conn.line()
      if line == b".":
        return lines
      lines.append(line[1:] if line.startswith(b".") else line)

  def login(self, address):
    self.ok("USER " + address)
    reply = self.command("PASS " + password(address))
    return reply.startswith(b"+OK")

  def uidls(self):
    result = {}
    for line in self.multi("UIDL"):
      number, uidl = line.split(b" ", 1)
      result[int(number)] = uidl.decode()
    return result

  def retr(self, number):
    return b"".join(line + b"\r\n" for line in self.multi("RETR %d" % number))

  def close(self):
    self.conn.close()


class Pop3Error(Exception):

  def __init__(self, verb, reply):
    super().__init__("%s answered %r" % (verb, reply))
    self.reply = reply


def crash_id(message):
  match = _CRASH_ID.search(message)
  return match.group(1).decode() if match else None


# ---------------------------------------------------------------------------------------------
# The server process


class Server:
  """`posthaste serve` on 127.0.0.1 port 0; stderr kept for the failure report."""

  def __init__(self, binary, data_dir, log_path):
    self.binary = binary
    self.data_dir = data_dir
    self.log = open(log_path, "ab")
    self.proc = None
    self.pop3_port = None
    self.lmtp_port = None
    self._listening = threading.Event()

  def spawn(self):
    argv = [
        self.binary, "serve", "--data_dir=" + self.data_dir, "--pop3_listen=127.0.0.1:0",
        "--metrics_listen=127.0.0.1:0", "--lmtp_listen=127.0.0.1:0", "--shards=2",
        "--pin_shards=false", "--drain_timeout_s=2",
        # A POP3 worker may log in to a churn account as it is deleted; the failure's 2 s
        # penalty would only idle that worker.
        "--auth_failure_delay_ms=20", "--auth_penalty_delay_max_ms=20"
    ]
    self._listening.clear()
    self.pop3_port = self.lmtp_port = None
    self.log.write(b"=== spawn\n")
    self.log.flush()
    # Its own session: a terminal's Ctrl-C reaches the campaign (which then ends after the
    # trial), not the server (which would drain).
    self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, start_new_session=True)
    threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
    return time.monotonic()

  def _read(self, proc):
    for raw in proc.stderr:
      self.log.write(raw)
      line = raw.decode("utf-8", "replace")
      if any(marker in line for marker in _SANITIZER_MARKERS):
        self.sanitizer_report = line
      if not self._listening.is_set() and "listening" in line:
        pop3 = _LISTENING_POP3.search(line)
        lmtp = _LISTENING_LMTP.search(line)
        if pop3 and lmtp:
          self.pop3_port = int(pop3.group(1))
          self.lmtp_port = int(lmtp.group(1))
          self._listening.set()
    self.log.flush()
    proc.stderr.close()

  sanitizer_report = None

  def wait_listening(self, timeout_s):
    deadline = time.monotonic() + timeout_s
    while not self._listening.wait(0.02):
      if self.proc.poll() is not None:
        raise Violation("serve exited %d before listening" % self.proc.returncode)
      if time.monotonic() > deadline:
        raise Violation("serve not listening after %.0f s" % timeout_s)
    return time.monotonic()

  def kill(self):
    """SIGKILL; waits for the process to be gone (its lock released)."""
    if self.proc is None:
      return
    self.proc.send_signal(signal.SIGKILL)
    self.proc.wait(30)
    self.proc = None  # the reader thread closes stderr at its end

  def stop(self):
    """SIGTERM and exit status 0 required."""
    if self.proc is None:
      return
    self.proc.send_signal(signal.SIGTERM)
    code = self.proc.wait(60)
    self.proc = None
    if code != 0:
      raise Violation("serve exited %d after SIGTERM" % code)


def run_cli(binary, data_dir, words, args=(), stdin=b""):
  """Runs `posthaste WORDS --data_dir=DIR ARGS`; returns (exit status, stdout, stderr)."""
  argv = [binary, *words, "--data_dir=" + data_dir, *args]
  try:
    result = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=CLI_TIMEOUT_S, check=False)
  except subprocess.TimeoutExpired:
    return None, b"", b"timed out"
  return result.returncode, result.stdout, result.stderr


# ---------------------------------------------------------------------------------------------
# Load


class Load:
  """The load threads of one trial."""

  def __init__(self, campaign, rng):
    self.c = campaign
    self.model = campaign.model
    self.stop = threading.Event()
    self.rng = rng
    self.pop3_busy = set()
    self.pop3_busy_lock = threading.Lock()
    self.threads = []
    self.errors = []

  def start(self):
    for i in range(LMTP_WORKERS):
      self._spawn(self.lmtp_worker, random.Random(self.rng.random()), i)
    for i in range(POP3_WORKERS):
      self._spawn(self.pop3_worker, random.Random(self.rng.random()), i)
    self._spawn(self.admin_worker, random.Random(self.rng.random()), 0)

  def _spawn(self, fn, rng, index):

    def run():
      try:
        fn(rng, index)
      except Violation as v:
        self.errors.append(str(v))
      except Exception:  # pylint: disable=broad-except
        # Anything else is a bug of the campaign or a reply it cannot parse: a failure too.
        self.errors.append("load thread raised: " + traceback.format_exc())

    t = threading.Thread(target=run, daemon=True)
    t.start()
    self.threads.append(t)

  def join(self):
    self.stop.set()
    for t in self.threads:
      t.join(CLI_TIMEOUT_S + 10)
      if t.is_alive():
        self.errors.append("a load thread did not end")

  # --- LMTP ---

  def lmtp_worker(self, rng, index):
    conn = None
    sequence = 0
    while not self.stop.is_set():
      try:
        if conn is None:
          conn = LineConn(self.c.server.lmtp_port)
          if not conn.line().startswith(b"220"):
            raise ConnectionError("no LMTP greeting")
          conn.send(("LHLO crash%d\r\n" % index).encode())
          while True:
            line = conn.line()
            if line[:4] == b"250 ":
              break
            if not line.startswith(b"250-"):
              raise ConnectionError("LHLO answered %r" % line)
        sequence += 1
        message_id = "%s.%d.%d" % (self.c.trial_tag, index, sequence)
        self.deliver(conn, rng, message_id)
      except (OSError, ConnectionError):
        if conn is not None:
          conn.close()
        conn = None
        if self.stop.wait(0.05):
          break
    if conn is not None:
      conn.close()

  def deliver(self, conn, rng, message_id):
    candidates = STABLE + CHURN + [NEVER]
    recipients = rng.sample(candidates, rng.choice([1, 1, 1, 2]))
    wire = make_message(rng, message_id)
    md5 = hashlib.md5(stored_form(wire)).hexdigest()
    conn.send(("MAIL FROM:<%s>\r\n" % SENDER).encode())
    if not conn.line().startswith(b"250"):
      raise ConnectionError("MAIL refused")
    accepted = []
    for rcpt in recipients:
      conn.send(("RCPT TO:<%s>\r\n" % rcpt).encode())
      reply = conn.line()
      if reply.startswith(b"250"):
        accepted.append(rcpt)
      elif rcpt == NEVER and not reply.startswith(b"550"):
        raise Violation("RCPT of an unknown address answered %r" % reply)
    if not accepted:
      conn.send(b"RSET\r\n")
      conn.line()
      return
    conn.send(b"DATA\r\n")
    if not conn.line().startswith(b"354"):
      raise ConnectionError("DATA refused")
    copies = []
    with self.model.lock:
      for rcpt in accepted:
        if rcpt == NEVER:
          raise Violation("RCPT of the never-created %s accepted" % NEVER)
        copy = Copy(rcpt, message_id, md5)
        copy.note("DATA")
        copy.sending = True
        self.model.accounts[rcpt].copies[message_id] = copy
        copies.append(copy)
    try:
      conn.send(dot_stuff(wire) + b".\r\n")
    except OSError:
      # sendall failed, so its last piece, the terminator, was never sent: no delivery.
      with self.model.lock:
        for copy in copies:
          if copy.required:
            raise Violation("%s: message %s seen by POP3 though its DATA was cut short" %
                            (copy.address, message_id))
          copy.note("DATA cut")
          copy.sending = False
          copy.possible = False
      raise
    with self.model.lock:
      for copy in copies:
        copy.sending = False
    for copy in copies:
      reply = conn.line()  # ConnectionError here leaves this copy and the rest ambiguous
      with self.model.lock:
        copy.note("reply " + reply[:3].decode("ascii", "replace"))
        if reply.startswith(b"250"):
          # A POP3 client may have seen, deleted and committed it before this reply was read.
          if not copy.deleted:
            copy.required = True
          self.model.count("delivered")
        else:
          copy.possible = False
          self.model.count("refused")

  # --- POP3 ---

  def pop3_worker(self, rng, index):
    while not self.stop.is_set():
      with self.model.lock:
        live = [a.address for a in self.model.accounts.values() if a.exists]
      with self.pop3_busy_lock:
        free = [a for a in live if a not in self.pop3_busy]
        if not free:
          address = None
        else:
          address = rng.choice(free)
          self.pop3_busy.add(address)
      if address is None:
        self.stop.wait(0.05)
        continue
      try:
        self.pop3_session(rng, address)
      except (OSError, ConnectionError, Pop3Error):
        self.stop.wait(0.02)
      finally:
        with self.pop3_busy_lock:
          self.pop3_busy.discard(address)

  def pop3_session(self, rng, address):
    pop = Pop3(self.c.server.pop3_port)
    try:
      if not pop.login(address):
        return  # deleted meanwhile (or not yet created)
      uidls = pop.uidls()
      numbers = sorted(uidls)
      many = len(numbers) > MAILBOX_MESSAGES_SOFT_MAX
      dele_probability = 0.6 if many else 0.25
      to_read = [n for n in numbers if rng.random() < (0.5 if many else 0.3)]
      deleted = []
      for n in to_read:
        if self.stop.is_set():
          break
        data = pop.retr(n)
        copy = self.c.identify(address, data, uidls[n], during_load=True)
        if copy is not None and rng.random() < dele_probability:
          pop.ok("DELE %d" % n)
          with self.model.lock:
            copy.note("DELE")
          deleted.append(copy)
      ending = rng.random()
      if ending < 0.1:
        return  # dropped without QUIT: nothing may be deleted
      if ending < 0.15:
        pop.ok("RSET")
        deleted = []
      with self.model.lock:
        group = list(deleted)
        for copy in group:
          copy.deleting = group
          copy.note("QUIT sent")
        self.model.quit_groups.append(group)
      pop.conn.send(b"QUIT\r\n")
      reply = pop.conn.line()
      with self.model.lock:
        self.model.quit_groups.remove(group)
        for copy in group:
          copy.deleting = None
        if reply.startswith(b"+OK"):
          self.model.count("pop3_quits")
          self.model.count("deleted", len(group))
          for copy in group:
            copy.note("QUIT +OK")
            copy.deleted = True
            copy.required = False
            copy.possible = False
        else:
          # -ERR: not committed; the messages stay.
          self.model.count("pop3_quits")
    finally:
      pop.close()

  # --- admin socket ---

  def admin_worker(self, rng, index):
    touched = set()
    while not self.stop.wait(rng.uniform(0.02, 0.3)):
      op = rng.random()
      if op < 0.2:
        self.admin_compact()
        continue
      if op < 0.5:
        self.admin_quota(rng)
        continue
      with self.model.lock:
        choices = [a for a in CHURN if a not in touched and self.model.accounts[a].maybe is None]
      if not choices:
        continue
      address = rng.choice(choices)
      touched.add(address)  # one add or del per churn account per trial
      self.admin_add_or_del(address)

  def admin_compact(self):
    code, out, err = run_cli(self.c.binary, self.c.data_dir, ["compact"])
    if code == 0:
      with self.model.lock:
        self.model.count("compactions")
        if out.startswith(b"compacted ") and not out.startswith(b"compacted 0 "):
          self.c.compactions_rewrote += 1

  def admin_quota(self, rng):
    address = rng.choice(STABLE)
    value = rng.choice(QUOTA_CHOICES)
    with self.model.lock:
      self.model.accounts[address].quota_pending.append(value)
    code, out, err = run_cli(self.c.binary, self.c.data_dir, ["user", "quota"],
                             ["--messages=%d" % value, address])
    with self.model.lock:
      account = self.model.accounts[address]
      if code == 0:
        account.quota_pending.remove(value)
        # Later answered changes win; an earlier unanswered one may still be what is stored
        # only if it committed after this one, which the one admin thread never allows.
        account.quota = value
        account.quota_pending.clear()
        self.model.count("quotas")
      elif code != 1:
        self.model.count("admin_ambiguous")
      # exit 1: either refused or cut by the kill; left pending (ambiguous)

  def admin_add_or_del(self, address):
    with self.model.lock:
      account = self.model.accounts[address]
      adding = not account.exists
      account.maybe = adding
    if adding:
      code, out, err = run_cli(self.c.binary, self.c.data_dir, ["user", "add"], [address],
                               stdin=password(address).encode() + b"\n")
    else:
      code, out, err = run_cli(self.c.binary, self.c.data_dir, ["user", "del"], [address])
    with self.model.lock:
      if code == 0:
        account.maybe = None
        if adding:
          account.exists = True
          self.model.count("user_adds")
        else:
          account.exists = False
          account.deleted_acked = True
          self.model.count("user_dels")
      else:
        self.model.count("admin_ambiguous")


# ---------------------------------------------------------------------------------------------
# The campaign


class Campaign:

  def __init__(self, binary, trials, seed, work_dir, out=sys.stdout):
    self.binary = binary
    self.trials = trials
    self.seed = seed
    self.rng = random.Random(seed)
    self.work_dir = work_dir
    self.data_dir = os.path.join(work_dir, "data")
    self.out = out
    self.model = Model()
    self.server = Server(binary, self.data_dir, os.path.join(work_dir, "serve.log"))
    self.failures = []
    self.restart_s = []  # spawn -> POP3 and LMTP greetings, after a kill
    self.listening_s = []  # spawn -> the listening line
    self.startup_kills = 0
    self.compactions_rewrote = 0
    self.trial_tag = "t0"
    self.trial = 0
    self.completed = 0
    self.interrupted = False  # SIGINT/SIGTERM: end after the current trial, with the summary

  def say(self, text):
    print(text, file=self.out, flush=True)

  # --- set-up ---

  def provision(self):
    for address in STABLE + CHURN[:2]:
      code, out, err = run_cli(self.binary, self.data_dir, ["user", "add"],
                               ["--password_scheme=sha512-crypt", address],
                               stdin=password(address).encode() + b"\n")
      if code != 0:
        raise SystemExit("user add %s: %s" % (address, err.decode()))
      self.model.accounts[address].exists = True
    # Cheap hashes keep logins from dominating each trial (see docs/BENCHMARKS.md).
    code, out, err = run_cli(self.binary, self.data_dir, ["tenant", "policy"],
                             [DOMAIN, "--password_scheme=sha512-crypt"])
    if code != 0:
      raise SystemExit("tenant policy: %s" % err.decode())

  # --- start-up and its timing ---

  def start(self, measure):
    spawned = self.server.spawn()
    listening = self.server.wait_listening(START_S_MAX)
    # Serving: a POP3 greeting and an LMTP greeting answered.
    while True:
      try:
        pop = Pop3(self.server.pop3_port)
        pop.close()
        conn = LineConn(self.server.lmtp_port)
        greeting = conn.line()
        conn.close()
        if greeting.startswith(b"220"):
          break
      except (OSError, ConnectionError):
        pass
      if time.monotonic() - spawned > START_S_MAX:
        raise Violation("not serving %.0f s after spawn" % START_S_MAX)
      time.sleep(0.01)
    serving = time.monotonic()
    if measure:
      self.listening_s.append(listening - spawned)
      self.restart_s.append(serving - spawned)
      if serving - spawned > RESTART_S_MAX:
        raise Violation("serving again took %.1f s (bound %.0f s)" %
                        (serving - spawned, RESTART_S_MAX))

  # --- what a client may see ---

  def identify(self, address, data, uidl, during_load):
    """Checks one retrieved message against the model; returns its Copy (or None)."""
    message_id = crash_id(data)
    with self.model.lock:
      account = self.model.accounts[address]
      copy = account.copies.get(message_id) if message_id else None
      if copy is None:
        raise Violation("%s: message %s (UIDL %s) was never delivered to this incarnation" %
                        (address, message_id, uidl))
      if not copy.possible:
        raise Violation("%s: message %s is present but was refused, deleted or never sent" %
                        (address, message_id))
      if hashlib.md5(data).hexdigest() != copy.md5:
        raise Violation("%s: message %s differs from what was sent (MD5)" % (address, message_id))
      known = self.model.uidls.get((address, uidl))
      if known is not None and known != message_id:
        raise Violation("%s: UIDL %s named %s and now %s" % (address, uidl, known, message_id))
      if copy.uidl is not None and copy.uidl != uidl:
        raise Violation("%s: message %s changed UIDL %s -> %s" %
                        (address, message_id, copy.uidl, uidl))
      copy.uidl = uidl
      self.model.uidls[(address, uidl)] = message_id
      copy.required = True  # a client has seen it: committed
      copy.note("seen" if during_load else "checked")
      self.model.count("retr_checked")
      return copy

  def verify(self):
    """After a restart: every account and mailbox against the model; resolves ambiguity."""
    code, out, err = run_cli(self.binary, self.data_dir, ["user", "list"], [DOMAIN])
    if code != 0:
      raise Violation("user list: %s" % err.decode().strip())
    listed = {}
    for line in out.decode().splitlines():
      address, messages, octets = line.split("\t")
      listed[address] = (int(messages), int(octets))
    for address, account in self.model.accounts.items():
      present = address in listed
      if account.maybe is None and present != account.exists:
        raise Violation("%s: %s after an acknowledged user %s" %
                        (address, "present" if present else "missing",
                         "del" if account.deleted_acked or not account.exists else "add"))
      if account.deleted_acked and present:
        raise Violation("%s: present after an acknowledged user del" % address)
      if present:
        self.verify_mailbox(account, listed[address])
      else:
        # Gone: only a deletion may have taken mail acknowledged to it.
        deleting = account.deleted_acked or account.maybe is False
        lost = [c.message_id for c in account.copies.values() if c.required]
        if lost and not deleting:
          raise Violation("%s: missing, with acknowledged mail (%s), and never deleted" %
                          (address, lost[0]))
        # None of its mail may come back with a later incarnation.
        account.copies = {}
      account.exists = present
      account.maybe = None
      account.deleted_acked = False
    unknown = set(listed) - set(self.model.accounts)
    if unknown:
      raise Violation("accounts nobody created: %s" % sorted(unknown))
    self.verify_quotas()
    self.model.quit_groups = []

  def verify_mailbox(self, account, listed_stats):
    pop = Pop3(self.server.pop3_port)
    try:
      if not pop.login(account.address):
        raise Violation("%s: listed but the login failed" % account.address)
      stat = pop.ok("STAT").split()
      if (int(stat[1]), int(stat[2])) != listed_stats:
        raise Violation("%s: STAT %s but user list %s" % (account.address, stat[1:],
                                                           listed_stats))
      uidls = pop.uidls()
      seen = {}
      for number in sorted(uidls):
        data = pop.retr(number)
        message_id = crash_id(data)
        if message_id in seen:
          raise Violation("%s: message %s twice (UIDLs %s and %s)" %
                          (account.address, message_id, seen[message_id], uidls[number]))
        seen[message_id] = uidls[number]
        self.identify(account.address, data, uidls[number], during_load=False)
      if len(set(uidls.values())) != len(uidls):
        raise Violation("%s: a UIDL twice" % account.address)
      pop.ok("QUIT")
    finally:
      pop.close()
    with self.model.lock:
      groups = {}
      for message_id, copy in list(account.copies.items()):
        here = message_id in seen
        if copy.required and not here and copy.deleting is None:
          raise Violation("%s: acknowledged message %s (UIDL %s) lost; history: %s" %
                          (account.address, message_id, copy.uidl, ", ".join(copy.history)))
        if copy.deleting is not None:
          groups.setdefault(id(copy.deleting), []).append(here)
        if not here:
          del account.copies[message_id]  # gone for good
        else:
          copy.possible = True
          copy.required = True
          copy.deleting = None
      for outcomes in groups.values():
        if any(outcomes) and not all(outcomes):
          raise Violation("%s: an unanswered QUIT deleted part of its messages" %
                          account.address)

  def verify_quotas(self):
    for address in STABLE:
      account = self.model.accounts[address]
      code, out, err = run_cli(self.binary, self.data_dir, ["user", "show"], [address])
      if code != 0:
        raise Violation("user show %s: %s" % (address, err.decode().strip()))
      match = re.search(rb"^quota_messages\t(\S+)( \(tenant default\))?$", out, re.M)
      shown = 0 if match.group(2) else int(match.group(1))
      allowed = [account.quota] + account.quota_pending
      if shown not in allowed:
        raise Violation("%s: quota %d, acknowledged %d (unanswered: %s)" %
                        (address, shown, account.quota, account.quota_pending))
      account.quota = shown
      account.quota_pending = []

  # --- a trial ---

  def check_copy(self, trial):
    """`posthaste check` on a copy of the killed server's data directory (in the background)."""
    snapshot = os.path.join(self.work_dir, "snapshot")
    shutil.rmtree(snapshot, ignore_errors=True)
    shutil.copytree(self.data_dir, snapshot, symlinks=True,
                    ignore=shutil.ignore_patterns("admin.sock"))
    return subprocess.Popen([self.binary, "check", "--data_dir=" + snapshot],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

  def run_trial(self, trial):
    self.trial = trial
    self.trial_tag = "%d-%d" % (self.seed, trial)
    load_s = self.rng.uniform(LOAD_S_MIN, LOAD_S_MAX)
    startup_kill = self.rng.randrange(100) < STARTUP_KILL_PERCENT
    startup_kill_s = self.rng.uniform(0, STARTUP_KILL_S_MAX)
    load = Load(self, random.Random(self.rng.random()))
    load.start()
    time.sleep(load_s)
    self.server.kill()
    load.join()
    if load.errors:
      raise Violation("; ".join(load.errors))
    checker = self.check_copy(trial)
    try:
      if startup_kill:
        # Killed again while starting (index recovery, segment clean-up).
        self.server.spawn()
        time.sleep(startup_kill_s)
        self.server.kill()
        self.startup_kills += 1
      self.start(measure=True)
      self.verify()
    finally:
      out, err = checker.communicate(timeout=CLI_TIMEOUT_S * 2)
    # stderr may log recovery (e.g. "removing unreferenced segment"); the verdict is stdout.
    if checker.returncode != 0 or not out.startswith(b"ok"):
      raise Violation("posthaste check after the kill: %s %s" %
                      (out.decode().strip(), err.decode().strip()))
    if self.server.sanitizer_report:
      raise Violation("sanitizer: %s" % self.server.sanitizer_report)
    return load_s, out.decode().strip()

  def run(self):
    self.say("crash campaign: %d trials, seed %d, work dir %s" %
             (self.trials, self.seed, self.work_dir))
    self.provision()
    self.start(measure=False)
    self.verify()
    started = time.monotonic()
    for trial in range(1, self.trials + 1):
      if self.interrupted:
        self.say("interrupted: ending after %d trials" % self.completed)
        break
      try:
        load_s, check_text = self.run_trial(trial)
        self.completed = trial
        c = self.model.counts
        self.say("trial %d/%d: killed after %.2f s; restart %.0f ms; %d delivered, %d deleted, "
                 "%d checked so far; %s" %
                 (trial, self.trials, load_s, self.restart_s[-1] * 1000, c["delivered"],
                  c["deleted"], c["retr_checked"], check_text))
      except (Violation, OSError, ConnectionError, Pop3Error) as v:
        # OSError and the like: the restarted server stopped answering in the middle of the check.
        self.completed = trial
        self.failures.append((trial, str(v)))
        self.say("trial %d/%d: FAILED: %s" % (trial, self.trials, v))
        break  # the model is no longer trustworthy after a violation
    try:
      self.server.stop()
      # And once more after a clean stop, on the directory itself.
      code, out, err = run_cli(self.binary, self.data_dir, ["check"])
      if code != 0 or not out.startswith(b"ok"):
        raise Violation("posthaste check after the final stop: %s %s" %
                        (out.decode().strip(), err.decode().strip()))
    except Violation as v:
      self.failures.append((self.trial, str(v)))
      self.say("at the end: FAILED: %s" % v)
    return time.monotonic() - started

  def summary(self, elapsed_s):
    c = self.model.counts
    times = sorted(self.restart_s)

    def pct(p):
      if not times:
        return 0.0
      return times[min(len(times) - 1, int(p / 100.0 * len(times)))] * 1000

    self.say("restart to serving (ms, %d restarts): min %.0f p50 %.0f p90 %.0f p99 %.0f max %.0f"
             % (len(times), pct(0), pct(50), pct(90), pct(99), times[-1] * 1000 if times else 0))
    self.say("load: %d delivered (250), %d refused, %d POP3 QUITs, %d deleted, %d RETRs checked, "
             "%d user adds, %d user dels, %d quota changes, %d compactions (%d rewrote), "
             "%d kills during start-up" %
             (c["delivered"], c["refused"], c["pop3_quits"], c["deleted"], c["retr_checked"],
              c["user_adds"], c["user_dels"], c["quotas"], c["compactions"],
              self.compactions_rewrote, self.startup_kills))
    self.say("crash campaign: %d trials, %d failures, seed %d, %.0f s" %
             (self.completed, len(self.failures), self.seed, elapsed_s))


def main(argv):
  if os.environ.get("TEST_SRCDIR"):
    trials = int(os.environ.get("CRASH_TRIALS", "25"))
    seed = int(os.environ.get("CRASH_SEED", "18"))
  else:
    if len(argv) < 2 or len(argv) > 3:
      print("usage: crash_campaign.py TRIALS [SEED]", file=sys.stderr)
      return 2
    trials = int(argv[1])
    seed = int(argv[2]) if len(argv) == 3 else random.SystemRandom().randrange(1 << 31)
  work_dir = tempfile.mkdtemp(prefix="crash-campaign-", dir=os.environ.get("TEST_TMPDIR"))
  campaign = Campaign(posthaste_binary(), trials, seed, work_dir)

  def interrupt(signum, frame):
    del signum, frame
    campaign.interrupted = True

  signal.signal(signal.SIGINT, interrupt)
  signal.signal(signal.SIGTERM, interrupt)
  elapsed = 0.0
  try:
    elapsed = campaign.run()
  finally:
    campaign.server.kill()
  campaign.summary(elapsed)
  if campaign.failures:
    print("kept for inspection: %s (serve.log has the server's stderr)" % work_dir)
    return 1
  shutil.rmtree(work_dir, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
