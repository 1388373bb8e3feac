"""The load of the kill -9 campaign (tests/crash_campaign.py) and the model it records into.

`Load` runs one trial's threads against a running `posthaste serve`: LMTP deliveries, POP3
sessions (UIDL, RETR, DELE, QUIT or a dropped connection) and admin-socket commands through the
real CLI (`user add`/`del`, `user quota`, `compact`). Each thread writes what its client was
told into the `Model` (under `Model.lock`) just before and just after each exchange, so the
model always knows which outcomes are acknowledged, which are refused and which are ambiguous
(the answer lost in the kill). `LineConn` and `Pop3` are minimal clients on raw sockets: a kill
surfaces as an OSError or ConnectionError, never as a hang (every socket has a timeout).

Threading: Load's threads and the campaign's main thread share the Model through its lock; the
campaign reads the model only after joining the threads, or under the lock.
"""

import hashlib
import random
import re
import socket
import subprocess
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
SOCKET_TIMEOUT_S = 20.0
MAILBOX_MESSAGES_SOFT_MAX = 60  # POP3 workers delete more when a mailbox grows past it
QUOTA_CHOICES = [0, 40, 80, 150]  # messages; 0 = the tenant default (unlimited)
CLI_TIMEOUT_S = 60
IN_USE_AFTER_DROP_S = 1.0  # how long a dropped session's maildrop lock may outlive its close

_CRASH_ID = re.compile(rb"^X-Crash-Id: (\S+)\r$", re.M)


def password(address):
  return "pw-" + address


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

  def stls(self, context, server_hostname):
    """STLS, then the TLS handshake; returns the ssl socket (for its peer certificate)."""
    self.ok("STLS")
    # Nothing follows the +OK before the handshake, so the old reader holds no bytes.
    self.conn.file.close()
    self.conn.sock = context.wrap_socket(self.conn.sock, server_hostname=server_hostname)
    self.conn.file = self.conn.sock.makefile("rb")
    return self.conn.sock

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
    self.login_reply = self.command("PASS " + password(address))
    return self.login_reply.startswith(b"+OK")

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
  """The load threads of one trial.

  The crash campaign uses it as it is. The soak (tests/soak_campaign.py) sets the hooks below
  before start(): worker counts, `recipients` (only accounts that exist, and NEVER), `pace`
  (called with "lmtp" or "pop3" before each delivery or session; it throttles), `open_pop3`
  (port, rng -> a logged-out Pop3, e.g. after STLS), `unexpected` (called with a description
  of each failure the crash campaign expects from its kills: a dropped connection, a refused
  recipient, a failed login) and `admin` (False: no admin-socket thread).
  """

  def __init__(self, campaign, rng):
    self.c = campaign
    self.model = campaign.model
    self.stop = threading.Event()
    self.rng = rng
    self.pop3_busy = set()
    self.pop3_busy_lock = threading.Lock()
    self.threads = []
    self.errors = []
    self.lmtp_workers = LMTP_WORKERS
    self.pop3_workers = POP3_WORKERS
    self.recipients = STABLE + CHURN + [NEVER]
    self.admin = True
    self.pace = lambda kind: None
    self.open_pop3 = lambda port, rng: Pop3(port)
    self.unexpected = lambda what: None
    self.dropped_at = {}  # address -> when a session of it was last dropped without QUIT
    self.in_use_after_drop = 0

  def start(self):
    for i in range(self.lmtp_workers):
      self._spawn(self.lmtp_worker, random.Random(self.rng.random()), i)
    for i in range(self.pop3_workers):
      self._spawn(self.pop3_worker, random.Random(self.rng.random()), i)
    if self.admin:
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
        self.pace("lmtp")
        if self.stop.is_set():
          break
        sequence += 1
        message_id = "%s.%d.%d" % (self.c.trial_tag, index, sequence)
        self.deliver(conn, rng, message_id)
      except (OSError, ConnectionError) as e:
        self.unexpected("LMTP: %r" % e)
        if conn is not None:
          conn.close()
        conn = None
        if self.stop.wait(0.05):
          break
    if conn is not None:
      conn.close()

  def deliver(self, conn, rng, message_id):
    recipients = rng.sample(self.recipients, rng.choice([1, 1, 1, 2]))
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
      elif rcpt != NEVER:
        self.unexpected("RCPT TO:<%s> answered %r" % (rcpt, reply))
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
          self.unexpected("DATA for %s answered %r" % (copy.address, reply))

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
        self.pace("pop3")
        if not self.stop.is_set():
          self.pop3_session(rng, address)
      except (OSError, ConnectionError, Pop3Error) as e:
        self.unexpected("POP3 %s: %r" % (address, e))
        self.stop.wait(0.02)
      finally:
        with self.pop3_busy_lock:
          self.pop3_busy.discard(address)

  def pop3_session(self, rng, address):
    pop = self.open_pop3(self.c.server.pop3_port, rng)
    try:
      if not pop.login(address):
        # The server holds the maildrop lock until it has seen a dropped session's close,
        # which may come after the next session's PASS: [IN-USE] then is correct (RFC 2449).
        if (b"[IN-USE]" in pop.login_reply and
            time.monotonic() - self.dropped_at.get(address, -1e9) < IN_USE_AFTER_DROP_S):
          self.in_use_after_drop += 1
        else:
          self.unexpected("POP3 login of %s answered %r" % (address, pop.login_reply))
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
        self.dropped_at[address] = time.monotonic()
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
          self.unexpected("QUIT of %s answered %r" % (address, reply))
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
