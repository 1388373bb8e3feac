"""Runs the real posthaste binary for integration tests with real POP3 clients.

Defines `PosthasteServer`: a temporary data directory (under $TEST_TMPDIR) provisioned through
the real command line (`user add`, `deliver`), and the real `posthaste serve` on 127.0.0.1
port 0. `start()` waits, bounded, for the server's one `listening` line and reads the ports from
it; `stop()` sends SIGTERM and requires exit status 0 within a bounded time (SIGKILL after it,
and the test fails). Used as a context manager the server is always stopped.

Also: `wire_form()` (what the store makes of a delivered message: the bytes RETR sends before
dot-stuffing) and small helpers for the metrics listener.

Threading: one test thread drives a PosthasteServer; a daemon thread per running server reads
its stderr. The CLI takes an exclusive lock on the data directory, so provision (add_user,
deliver) only while the server is stopped.
"""

import http.client
import os
import re
import resource
import signal
import subprocess
import tempfile
import threading
import time

# Bounds: under ASan on a loaded 2-core machine start-up is slower, so the defaults are
# generous; PH_SERVER_START_TIMEOUT_S / PH_SERVER_STOP_TIMEOUT_S override them.
START_TIMEOUT_S = float(os.environ.get("PH_SERVER_START_TIMEOUT_S", "30"))
STOP_TIMEOUT_S = float(os.environ.get("PH_SERVER_STOP_TIMEOUT_S", "40"))
CLI_TIMEOUT_S = 120

# Lines in the server's stderr that mean a sanitizer found a bug: the test fails on them.
_SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

# Text (pop3=HOST:PORT) or JSON ("pop3":"HOST:PORT", --log_format=json) listening lines; pop3
# may be bound elsewhere than loopback by extra_args (e.g. a non-loopback address).
_LISTENING_POP3 = re.compile(r'\bpop3(?:=|":")(?:\[[^\]]*\]|[^\s:"]+):(\d+)')
_LISTENING_METRICS = re.compile(r'\bmetrics(?:=|":")127\.0\.0\.1:(\d+)')
_LISTENING_POP3S = re.compile(r'\bpop3s(?:=|":")127\.0\.0\.1:(\d+)')
_LISTENING_LMTP = re.compile(r'\blmtp(?:=|":")127\.0\.0\.1:(\d+)')


def posthaste_binary():
  """The path of //server:posthaste in this test's runfiles (or $PH_POSTHASTE_BIN)."""
  override = os.environ.get("PH_POSTHASTE_BIN")
  if override:
    return override
  for root in (os.environ.get("TEST_SRCDIR"), os.environ.get("RUNFILES_DIR")):
    if root:
      path = os.path.join(root, "posthaste", "server", "posthaste")
      if os.access(path, os.X_OK):
        return path
  raise AssertionError(
      "posthaste binary not found in the runfiles; the test target needs "
      'data = ["//server:posthaste"] (or set PH_POSTHASTE_BIN)')


def make_temp_dir(prefix):
  """A fresh directory under $TEST_TMPDIR (or the system temp dir outside Bazel)."""
  return tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TEST_TMPDIR"))


def wire_form(raw):
  """The message as POP3 transfers it, before dot-stuffing: what the store makes of `raw`.

  CRLF, bare CR and bare LF all end a line and become CRLF; a last line without a line break
  gets CRLF; an empty message becomes one empty line. len() of the result is the size LIST
  and STAT report.
  """
  if not raw:
    return b"\r\n"
  lines = re.split(rb"\r\n|\r|\n", raw)
  if lines[-1] == b"":
    lines.pop()
  return b"".join(line + b"\r\n" for line in lines)


def wire_lines(raw):
  """The lines poplib's retr() returns for `raw`: no CRLF, dot-unstuffed."""
  return wire_form(raw).split(b"\r\n")[:-1]


def wait_for(predicate, timeout_s=20, what="condition", poll_s=0.05):
  """Polls `predicate` (bounded) until it returns a true value; returns that value."""
  deadline = time.monotonic() + timeout_s
  while True:
    value = predicate()
    if value:
      return value
    if time.monotonic() > deadline:
      raise AssertionError("timed out waiting for " + what)
    time.sleep(poll_s)


def non_loopback_address():
  """A local IPv4 address that is not loopback, or None (from `ip -4 -o addr`)."""
  try:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, timeout=10, check=False).stdout.decode()
  except OSError:
    return None
  for match in re.finditer(r"\binet (\d+\.\d+\.\d+\.\d+)/", out):
    if not match.group(1).startswith("127."):
      return match.group(1)
  return None


class ServerError(AssertionError):
  """The server did not start, did not stop cleanly, or reported a sanitizer error."""


class PosthasteServer:
  """A posthaste data directory and, between start() and stop(), a running server on it."""

  def __init__(self, shards=1, data_dir=None, extra_args=()):
    self.binary = posthaste_binary()
    self.data_dir = data_dir or make_temp_dir("posthaste-data-")
    self.shards = shards
    self.extra_args = list(extra_args)
    self.pop3_port = None
    self.pop3s_port = None  # set when the server has a pop3s listener (TLS certificates given)
    self.metrics_port = None
    self.lmtp_port = None
    self._proc = None
    self._stderr_lines = []
    self._stderr_lock = threading.Lock()
    self._listening = threading.Event()
    self._reader = None
    self._listening_line = ""
    self.start_count = 0

  # --- provisioning through the real CLI (server stopped) ---

  def run_cli(self, words, args=(), stdin=b""):
    """Runs `posthaste WORDS --data_dir=DIR ARGS`; returns stdout bytes; raises on failure."""
    if self._proc is not None:
      raise AssertionError("the CLI needs the data directory: stop the server first")
    argv = [self.binary, *words, "--data_dir=" + self.data_dir, *args]
    result = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=CLI_TIMEOUT_S, check=False)
    if result.returncode != 0:
      raise AssertionError("%s exited %d: %s" % (" ".join(argv), result.returncode,
                                                 result.stderr.decode("utf-8", "replace")))
    return result.stdout

  def add_user(self, address, password):
    self.run_cli(["user", "add"], [address], stdin=password.encode("utf-8") + b"\n")

  def deliver(self, address, message):
    """Delivers `message` (bytes) to `address`; returns the UIDL the CLI printed."""
    uidl = self.run_cli(["deliver"], [address], stdin=message).decode("ascii").strip()
    if not uidl:
      raise AssertionError("deliver printed no UIDL")
    return uidl

  def mailbox_stats(self, address):
    """(messages, octets) of `address` from `posthaste user list` (server stopped)."""
    domain = address.split("@", 1)[1]
    for line in self.run_cli(["user", "list"], [domain]).decode("utf-8").splitlines():
      fields = line.split("\t")
      if fields[0] == address:
        return int(fields[1]), int(fields[2])
    raise AssertionError("%s not in `user list`" % address)

  # --- the server process ---

  def start(self, pop3_port=0, metrics_port=0, env=None, listen_fd=None, nofile=None):
    """Starts `posthaste serve` and waits for its `listening` line (bounded).

    `env`: extra environment variables. `listen_fd`: (fd, name) handed over as systemd does
    (at descriptor 3, with LISTEN_PID set to the server's pid, LISTEN_FDS=1, LISTEN_FDNAMES).
    `nofile`: the server's RLIMIT_NOFILE, soft and hard (it raises soft to hard itself).
    """
    if self._proc is not None:
      raise AssertionError("server already running")
    argv = [
        self.binary, "serve", "--data_dir=" + self.data_dir,
        "--pop3_listen=127.0.0.1:%d" % pop3_port,
        "--metrics_listen=127.0.0.1:%d" % metrics_port, "--lmtp_listen=127.0.0.1:0",
        "--shards=%d" % self.shards,
        *self.extra_args
    ]
    self._listening.clear()
    with self._stderr_lock:
      self._stderr_lines.append("=== start %d: %s\n" % (self.start_count, " ".join(argv)))
    self.start_count += 1
    process_env = dict(os.environ, **(env or {}))
    preexec_fn = None
    pass_fds = ()
    if listen_fd is not None:
      fd, name = listen_fd
      process_env.update(LISTEN_FDS="1", LISTEN_FDNAMES=name)
      # LISTEN_PID must be the server's own pid: a shell sets it and execs the server.
      argv = ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", *argv]
      pass_fds = (3,)

      def preexec_fn():
        os.dup2(fd, 3)

    if nofile is not None:
      hand_over = preexec_fn

      def preexec_fn():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        if hand_over is not None:
          hand_over()

    self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, env=process_env, pass_fds=pass_fds,
                                  preexec_fn=preexec_fn)
    self._reader = threading.Thread(target=self._read_stderr, args=(self._proc,), daemon=True)
    self._reader.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not self._listening.wait(0.05):
      if self._proc.poll() is not None:
        self._reader.join(5)
        self._proc.stderr.close()
        code = self._proc.returncode
        self._proc = None
        raise ServerError("posthaste serve exited with %d before listening:\n%s" %
                          (code, self.stderr_text()))
      if time.monotonic() > deadline:
        self._kill()
        raise ServerError("posthaste serve printed no `listening` line within %.0f s:\n%s" %
                          (START_TIMEOUT_S, self.stderr_text()))
    line = self._listening_line
    pop3 = _LISTENING_POP3.search(line)
    metrics = _LISTENING_METRICS.search(line)
    if not pop3 or not metrics:
      self._kill()
      raise ServerError("the `listening` line lacks pop3=127.0.0.1:PORT or "
                        "metrics=127.0.0.1:PORT: %r" % line)
    self.pop3_port = int(pop3.group(1))
    self.metrics_port = int(metrics.group(1))
    pop3s = _LISTENING_POP3S.search(line)
    self.pop3s_port = int(pop3s.group(1)) if pop3s else None
    lmtp = _LISTENING_LMTP.search(line)
    self.lmtp_port = int(lmtp.group(1)) if lmtp else None
    return self

  def _read_stderr(self, proc):
    for raw in proc.stderr:
      line = raw.decode("utf-8", "replace")
      with self._stderr_lock:
        self._stderr_lines.append(line)
      if not self._listening.is_set() and "listening" in line and _LISTENING_POP3.search(line):
        self._listening_line = line
        self._listening.set()

  def stderr_text(self):
    with self._stderr_lock:
      return "".join(self._stderr_lines)

  def running(self):
    return self._proc is not None and self._proc.poll() is None

  def stop(self):
    """SIGTERM, then requires exit status 0 within STOP_TIMEOUT_S (else SIGKILL and fail).

    Also fails when the server's stderr shows a sanitizer report.
    """
    if self._proc is None:
      return
    self.terminate()
    self.wait_exit()

  def terminate(self):
    """Sends SIGTERM (the server starts draining) without waiting; then call wait_exit()."""
    if self._proc is not None and self._proc.poll() is None:
      self._proc.send_signal(signal.SIGTERM)

  def send_signal(self, sig):
    """Sends `sig` (e.g. signal.SIGHUP) to the running server."""
    if self._proc is None or self._proc.poll() is not None:
      raise AssertionError("server not running")
    self._proc.send_signal(sig)

  def wait_exit(self, timeout_s=None, expected_status=0):
    """Waits for the server to exit; requires `expected_status` and no sanitizer report."""
    proc = self._proc
    if proc is None:
      return
    timeout_s = STOP_TIMEOUT_S if timeout_s is None else timeout_s
    try:
      proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
      self._kill()
      raise ServerError("posthaste serve did not exit within %.0f s of SIGTERM:\n%s" %
                        (timeout_s, self.stderr_text()))
    self._reader.join(10)
    proc.stderr.close()
    self._proc = None
    self.pop3_port = self.pop3s_port = self.metrics_port = self.lmtp_port = None
    if proc.returncode != expected_status:
      raise ServerError("posthaste serve exited with %d (want %d):\n%s" %
                        (proc.returncode, expected_status, self.stderr_text()))
    self.check_no_sanitizer_report()

  def check_no_sanitizer_report(self):
    text = self.stderr_text()
    for marker in _SANITIZER_MARKERS:
      if marker in text:
        raise ServerError("the server's stderr has a sanitizer report (%s):\n%s" %
                          (marker, text))

  def _kill(self):
    proc, self._proc = self._proc, None
    if proc is None:
      return
    if proc.poll() is None:
      proc.kill()
      try:
        proc.wait(10)
      except subprocess.TimeoutExpired:
        pass
    if self._reader is not None:
      self._reader.join(5)
    proc.stderr.close()

  def __enter__(self):
    if self._proc is None:
      self.start()
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is None:
      self.stop()
      return False
    # The body failed: still stop the server, without hiding the body's failure.
    try:
      self.stop()
    except ServerError as stop_error:
      print("also, while stopping after the failure: %s" % stop_error)
    return False

  # --- the metrics listener ---

  def http_get(self, path):
    """GET `path` from the metrics listener; returns (status, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
    try:
      conn.request("GET", path)
      response = conn.getresponse()
      return response.status, response.read()
    finally:
      conn.close()

  def metrics(self):
    """The /metrics samples: a list of (name, {label: value}, float)."""
    status, body = self.http_get("/metrics")
    if status != 200:
      raise AssertionError("GET /metrics answered %d" % status)
    return parse_prometheus_text(body.decode("utf-8"))


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus_text(text):
  """Samples of a Prometheus text exposition: a list of (name, labels dict, value)."""
  samples = []
  for line in text.splitlines():
    if not line or line.startswith("#"):
      continue
    match = _SAMPLE.match(line)
    if not match:
      raise AssertionError("unparsable metrics line: %r" % line)
    labels = dict(_LABEL.findall(match.group(2) or ""))
    samples.append((match.group(1), labels, float(match.group(3))))
  return samples


def metric_sum(samples, name, **labels):
  """The sum of the samples named `name` whose labels include `labels`."""
  return sum(value for sample_name, sample_labels, value in samples
             if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items()))


# --- an mbox written by an MDA script, for clients that deliver through one ---

MBOX_SEPARATOR = b"From itest-mda@localhost Thu Jan  1 00:00:00 2026\n"

_MDA_SCRIPT = """#!/bin/sh
# Appends the message on stdin to %(mbox)s as one mboxrd entry. Written by posthaste_server.py.
set -e
export LC_ALL=C
{ printf '%(separator)s\\n'; sed -e 's/^>*From />&/'; printf '\\n'; } >> '%(mbox)s'
"""


def write_mbox_mda(directory, linger_s=0):
  """Writes an MDA script that appends stdin to an mboxrd file; returns (script, mbox path).

  linger_s: the script sleeps that long before it exits. getmail forks the MDA and only then
  installs its SIGCHLD handler, so on a loaded machine an MDA that exits at once can be reaped
  unseen, and getmail fails with "waiting child pid N timed out" after 60 s.
  """
  mbox = os.path.join(directory, "inbox.mbox")
  script = os.path.join(directory, "mda.sh")
  with open(mbox, "wb"):
    pass
  with open(script, "w") as f:
    f.write(_MDA_SCRIPT % {"mbox": mbox, "separator": MBOX_SEPARATOR.decode().strip()})
    if linger_s:
      f.write("sleep %g\n" % linger_s)
  os.chmod(script, 0o755)
  return script, mbox


def read_mbox(path):
  """The messages of an mbox written by write_mbox_mda's script, quoting undone."""
  with open(path, "rb") as f:
    data = f.read()
  if not data:
    return []
  if not data.startswith(MBOX_SEPARATOR):
    raise AssertionError("not an mbox written by the MDA script: %r" % data[:80])
  result = []
  for entry in data.split(MBOX_SEPARATOR)[1:]:
    if not entry.endswith(b"\n"):
      raise AssertionError("mbox entry without its closing newline: %r" % entry[-80:])
    entry = entry[:-1]
    result.append(re.sub(rb"(?m)^>(>*From )", rb"\1", entry))
  return result
