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

The load threads, the model they record into and the raw-socket clients are in
tests/crash_campaign_load.py; this file holds the server process, the trials and the checks.

Threading: the main thread owns the server process and the model; load threads record what
they observed in the model under its lock, and are joined before the model is checked.
"""

import ctypes
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from tests.crash_campaign_load import (CHURN, CLI_TIMEOUT_S, DOMAIN, STABLE, LineConn, Load,
                                       Model, Pop3, Pop3Error, Violation, crash_id, password,
                                       run_cli)

LOAD_S_MIN = 0.05
LOAD_S_MAX = 1.5
STARTUP_KILL_PERCENT = 10
STARTUP_KILL_S_MAX = 0.4
START_S_MAX = 60.0  # a start that takes longer fails the trial
RESTART_S_MAX = 30.0  # "serves again within a bounded time"

_LISTENING_POP3 = re.compile(r"\bpop3=127\.0\.0\.1:(\d+)")
_LISTENING_LMTP = re.compile(r"\blmtp=127\.0\.0\.1:(\d+)")
_LISTENING_METRICS = re.compile(r"\bmetrics=127\.0\.0\.1:(\d+)")
_SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


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
# The server process

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
  """In the child before exec: SIGKILL when the thread that spawned it (the main one) ends."""
  _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)



class Server:
  """`posthaste serve` on 127.0.0.1 port 0; stderr kept for the failure report."""

  def __init__(self, binary, data_dir, log_path):
    self.binary = binary
    self.data_dir = data_dir
    self.log = open(log_path, "ab")
    self.proc = None
    self.pop3_port = None
    self.lmtp_port = None
    self.extra_args = []  # appended to the serve command line (the soak's TLS flags)
    self._listening = threading.Event()

  def spawn(self):
    argv = [
        self.binary, "serve", "--data_dir=" + self.data_dir, "--pop3_listen=127.0.0.1:0",
        "--metrics_listen=127.0.0.1:0", "--lmtp_listen=127.0.0.1:0", "--shards=2",
        "--pin_shards=false", "--drain_timeout_s=2",
        # A POP3 worker may log in to a churn account as it is deleted; the failure's 2 s
        # penalty would only idle that worker.
        "--auth_failure_delay_ms=20", "--auth_penalty_delay_max_ms=20", *self.extra_args
    ]
    self._listening.clear()
    self.pop3_port = self.lmtp_port = self.metrics_port = None
    self.log.write(b"=== spawn\n")
    self.log.flush()
    # Its own session: a terminal's Ctrl-C reaches the campaign (which then ends after the
    # trial), not the server (which would drain). Out of the campaign's process group, it is
    # SIGKILLed by the kernel when the campaign dies, so it never outlives it.
    self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, start_new_session=True,
                                 preexec_fn=_die_with_parent)
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
          metrics = _LISTENING_METRICS.search(line)
          self.metrics_port = int(metrics.group(1)) if metrics else None
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
