"""Disk faults under the real `posthaste serve` (issue 18): full disk, EIO, failed fdatasync and
segment files damaged under the running server.

- Full disk: the data directory sits on a size-limited tmpfs that the test mounts; a ballast
  file fills it; LMTP deliveries must be answered `452 4.3.1` (insufficient system storage,
  RFC 3463; never 250 for a copy not stored), and after the ballast is removed deliveries
  succeed again without a restart.
- EIO and failed fdatasync: an LD_PRELOAD interposer (fault_interposer.c, compiled here with
  cc) fails pwrite/write/fdatasync/fsync on files whose path contains a given string while a
  control file names that fault. Segment files (`.seg`) and RocksDB's write-ahead log (`.log`)
  are each targeted; deliveries under the fault must not get 250, and once the fault is
  cleared deliveries must succeed again (or the server must say what to do). A fault on
  RocksDB's log makes the index read-only: /readyz must answer 503 meanwhile, and the log must
  say either that it resumed or that posthaste must be restarted (RocksDB 7.8 cannot resume
  after an I/O error on its log).
- A segment damaged under the server: one message's bytes overwritten in place, another's
  file truncated. RETR and TOP of either get "-ERR [SYS/PERM]" (the stored bytes are checked
  against their CRC32C before they are sent: --verify_stored_messages) and the session goes
  on; RETR of the intact messages returns their exact bytes;
  posthaste_store_damaged_messages_total counts the refusals, the log names user, UIDL,
  segment and offset, /readyz stays 200; `posthaste check` names both.

Every message that got 250 is read back over POP3 at the end of each scenario (its bytes must
end with what was sent). Each scenario prints one `fault:` line with what it saw; the runner
tools/fault_campaign repeats the scenarios (PH_FAULT_ROUNDS) and sums them.

Needs root (mount, and the interposer only needs cc): without it the tmpfs scenario is skipped
with a message.
"""

import os
import poplib
import smtplib
import socket
import subprocess
import tempfile
import time
import unittest

from tests.testing.posthaste_server import (PosthasteServer, make_temp_dir, metric_sum,
                                            parse_prometheus_text, wait_for)

PASSWORD = "fault test password"
USER = "victim@fault.test"
TIMEOUT_S = 30
ROUNDS = int(os.environ.get("PH_FAULT_ROUNDS", "1"))
# Bounds: deliveries tried while a fault holds, and how long recovery may take.
DELIVERIES_UNDER_FAULT_MAX = 200
# The tmpfs for the full disk, and what the ballast leaves free: a little more than the store's
# free-space reserve (storage/mail_store.h, kFreeBytesMinDefault, 64 MiB), so a few deliveries
# pass and then the reserve refuses them.
TMPFS_MIB = 160
FREE_AFTER_BALLAST_BYTES = (64 << 20) + (1 << 20)
RECOVERY_TIMEOUT_S = 20

_INTERPOSER_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_interposer.c")


def message(tag, body_bytes=2048):
  line = (b"fault campaign " + tag.encode() + b" ").ljust(70, b"x") + b"\r\n"
  body = line * max(1, body_bytes // len(line))
  return (b"From: mta@origin.test\r\nTo: " + USER.encode() + b"\r\nSubject: " + tag.encode() +
          b"\r\n\r\n" + body)


class Lmtp:
  """One LMTP connection; deliver() returns the DATA reply code (or 0: connection lost) and
  keeps the reply's text in last_text."""

  def __init__(self, port):
    self.client = smtplib.LMTP("127.0.0.1", port, timeout=TIMEOUT_S)
    self.client.ehlo_or_helo_if_needed()
    self.last_text = ""

  def deliver(self, raw):
    try:
      code, text = self.client.mail("mta@origin.test")
      if code == 250:
        code, text = self.client.rcpt(USER)
      if code == 250:
        code, text = self.client.docmd("DATA")
        if code == 354:
          self.client.send(raw + b".\r\n")
          code, text = self.client.getreply()
      self.last_text = text.decode("utf-8", "replace")
      return code
    except (smtplib.SMTPServerDisconnected, OSError):
      self.last_text = "(connection lost)"
      return 0

  def close(self):
    try:
      self.client.quit()
    except (smtplib.SMTPException, OSError):
      pass


def last_warning(log):
  """The store's own line about a read-only index if there is one, else the last warning."""
  lines = [l.strip() for l in log.splitlines() if " warning " in l or " error " in l]
  own = [l for l in lines if "index read-only" in l and "lmtp delivery failed" not in l]
  return (own or lines or ["(none)"])[-1]


def retr_all(server):
  """Every message of USER over POP3: a list of bytes (CRLF lines, dot-unstuffed)."""
  pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=TIMEOUT_S)
  pop.user(USER)
  pop.pass_(PASSWORD)
  try:
    count, _ = pop.stat()
    return [b"".join(l + b"\r\n" for l in pop.retr(i)[1]) for i in range(1, count + 1)]
  finally:
    pop.quit()


class DiskFaultTest(unittest.TestCase):

  def note(self, line):
    print("fault: " + line, flush=True)

  def readyz(self, server):
    status, _ = server.http_get("/readyz")
    return status

  def temp_failures(self, server):
    """LMTP deliveries answered 4xx, from /metrics (what the delivery alert watches)."""
    return metric_sum(server.metrics(), "posthaste_lmtp_deliveries_total", result="temp_failure")

  def check_acknowledged(self, server, acknowledged):
    """Every 250'd message is served and ends with the bytes sent."""
    got = retr_all(server)
    for raw in acknowledged:
      self.assertTrue(any(m.endswith(raw) for m in got),
                      "an acknowledged message is missing or changed (%d served)" % len(got))
    return len(got)

  def deliver_until_refused(self, server, tag, size, count=DELIVERIES_UNDER_FAULT_MAX):
    """Delivers until 3 non-250 replies (at most `count` tries); returns (acknowledged
    messages, refusal codes). The refusals' texts go to self.refusal_texts."""
    acknowledged, refusals = [], []
    self.refusal_texts = []
    lmtp = Lmtp(server.lmtp_port)
    for i in range(count):
      raw = message("%s-%d" % (tag, i), size)
      code = lmtp.deliver(raw)
      if code == 250:
        acknowledged.append(raw)
        continue
      refusals.append(code)
      self.refusal_texts.append(lmtp.last_text)
      if code == 0:
        lmtp = Lmtp(server.lmtp_port)
      if len(refusals) >= 3:
        break
    lmtp.close()
    return acknowledged, refusals

  def deliver_after_recovery(self, server, tag):
    """Retries one delivery (bounded) until 250; returns (message, seconds taken)."""
    start = time.monotonic()
    raw = message(tag)
    last = None
    while time.monotonic() - start < RECOVERY_TIMEOUT_S:
      lmtp = Lmtp(server.lmtp_port)
      last = lmtp.deliver(raw)
      lmtp.close()
      if last == 250:
        return raw, time.monotonic() - start
      time.sleep(0.5)
    self.fail("no 250 within %d s of clearing the fault (last reply %s); log tail:\n%s" %
              (RECOVERY_TIMEOUT_S, last, server.stderr_text()[-3000:]))

  def assert_temporary(self, refusals, what):
    self.assertTrue(refusals, what + ": every delivery got 250")
    for code in refusals:
      # 0: the connection closed without a reply, which an MTA also retries.
      self.assertIn(code, (451, 452, 421, 0), "%s: refusal %d is not temporary" % (what, code))

  # --- full disk ---

  def test_full_disk(self):
    if os.geteuid() != 0:
      self.skipTest("mounting a tmpfs needs root")
    for round_number in range(ROUNDS):
      with self.subTest(round=round_number):
        self.full_disk_round(round_number)

  def full_disk_round(self, round_number):
    mount_point = make_temp_dir("fault-tmpfs-")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=%dm" % TMPFS_MIB, "tmpfs", mount_point],
                            stderr=subprocess.PIPE, check=False)
    if result.returncode != 0:
      self.skipTest("mount -t tmpfs failed: %s" % result.stderr.decode().strip())
    try:
      data_dir = os.path.join(mount_point, "data")
      os.mkdir(data_dir)
      server = PosthasteServer(data_dir=data_dir)
      server.add_user(USER, PASSWORD)
      with server:
        acknowledged, _ = self.deliver_until_refused(server, "before", 4096, count=5)
        ballast = os.path.join(mount_point, "ballast")
        self.fill(ballast, leave_bytes=FREE_AFTER_BALLAST_BYTES)
        more, refusals = self.deliver_until_refused(server, "full-%d" % round_number, 32 * 1024)
        acknowledged += more
        self.assert_temporary(refusals, "full disk")
        # RFC 3463 4.3.1 (mail system full) in a 452 (RFC 5321 insufficient system storage),
        # not the generic 451 4.3.0.
        self.assertEqual(set(refusals), {452}, "full disk: refusals %s" % refusals)
        for text in self.refusal_texts:
          self.assertIn("4.3.1", text, "full disk: " + text)
        ready_while_full = self.readyz(server)
        errors_while_full = self.temp_failures(server)
        os.unlink(ballast)
        raw, took = self.deliver_after_recovery(server, "after-full-%d" % round_number)
        acknowledged.append(raw)
        served = self.check_acknowledged(server, acknowledged)
        self.note("full disk (tmpfs %d MiB): %d acknowledged while filling, refusals %s (%s), "
                  "/readyz %d while full, temp_failure deliveries %d, first 250 %.1f s after "
                  "freeing, %d messages served, all acknowledged intact" %
                  (TMPFS_MIB, len(more), refusals, self.refusal_texts[0].split(" <")[0],
                   ready_while_full, errors_while_full, took, served))
      self.check_store(server, expect_clean=True)
    finally:
      subprocess.run(["umount", "-l", mount_point], check=False)

  def fill(self, path, leave_bytes):
    """Writes `path` until the filesystem is full, then frees `leave_bytes` of it."""
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
      while True:
        try:
          f.write(chunk)
          f.flush()
        except OSError:
          break
    size = os.path.getsize(path)
    os.truncate(path, max(0, size - leave_bytes))

  def check_store(self, server, expect_clean):
    result = subprocess.run([server.binary, "check", "--data_dir=" + server.data_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
                            check=False)
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    if expect_clean:
      self.assertEqual(result.returncode, 0, "posthaste check: " + output)
    return result.returncode, output

  # --- EIO and failed fdatasync through the interposer ---

  @classmethod
  def interposer(cls):
    if getattr(cls, "_interposer", None) is None:
      out = os.path.join(make_temp_dir("fault-interposer-"), "fault_interposer.so")
      subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", out, _INTERPOSER_C, "-ldl"],
                     check=True, timeout=120)
      cls._interposer = out
    return cls._interposer

  def eio_round(self, mode, path_part, round_number):
    control = os.path.join(make_temp_dir("fault-control-"), "fault")
    server = PosthasteServer()
    server.add_user(USER, PASSWORD)
    env = {"LD_PRELOAD": self.interposer(), "PH_FAULT_CONTROL": control}
    what = "%s EIO on %s" % (mode, path_part)
    recovered = None
    with server.start(env=env):
      acknowledged, _ = self.deliver_until_refused(server, "before", 4096, count=5)
      errors_before = self.temp_failures(server)
      with open(control, "w") as f:
        f.write("%s %s\n" % (mode, path_part))
      more, refusals = self.deliver_until_refused(server, "eio-%d" % round_number, 4096)
      acknowledged += more
      ready_under_fault = self.readyz(server)
      errors_under_fault = self.temp_failures(server) - errors_before
      os.unlink(control)
      self.assert_temporary(refusals, what)
      self.assertEqual(more, [], what + ": a delivery got 250 while its write failed")
      raw, took = None, None
      try:
        raw, took = self.deliver_after_recovery(server, "after-eio-%d" % round_number)
        acknowledged.append(raw)
        recovered = "first 250 %.1f s after clearing" % took
      except AssertionError as e:
        recovered = "NOT recovered without a restart"
        recovery_failure = e
      ready_after = self.readyz(server)
      self.check_acknowledged(server, acknowledged)
      log = server.stderr_text()
    # Recovery by restart when the server could not recover by itself.
    if raw is None:
      with server.start():
        raw, took = self.deliver_after_recovery(server, "after-restart-%d" % round_number)
        acknowledged.append(raw)
        self.check_acknowledged(server, acknowledged)
        recovered += "; recovered after a restart (/readyz %d)" % self.readyz(server)
    self.check_store(server, expect_clean=True)
    self.note("%s: refusals %s, temp_failure deliveries +%d, /readyz %d under fault and %d "
              "after, %s" %
              (what, refusals, errors_under_fault, ready_under_fault, ready_after, recovered))
    self.ready_under_fault, self.ready_after = ready_under_fault, ready_after
    return recovered, log

  def test_segment_write_eio(self):
    for round_number in range(ROUNDS):
      recovered, _ = self.eio_round("write", ".seg", round_number)
      self.assertIn("first 250", recovered)

  def test_segment_fdatasync_eio(self):
    for round_number in range(ROUNDS):
      recovered, _ = self.eio_round("sync", ".seg", round_number)
      self.assertIn("first 250", recovered)

  def check_wal_fault(self, mode, recovered, log):
    """RocksDB's write-ahead log: after a failed write or sync RocksDB stops writes. The server
    must not acknowledge, must answer /readyz 503 while its index is read-only, and either
    recover by itself (and say so) or name the step that recovers (a restart)."""
    self.assertEqual(self.ready_under_fault, 503, "/readyz while the index is read-only")
    if "NOT recovered" in recovered:
      self.assertIn("restart posthaste", log,
                    "not recovered by itself, and the log does not say to restart")
      self.assertEqual(self.ready_after, 503, "/readyz 200 while the index stays read-only")
      self.note("%s EIO on .log, the last log line before the restart: %s" %
                (mode, last_warning(log)))
    else:
      self.assertIn("index resumed", log, "recovered without a log line saying so")
      self.assertEqual(self.ready_after, 200, "/readyz after the index resumed")

  def test_rocksdb_wal_fdatasync_eio(self):
    for round_number in range(ROUNDS):
      recovered, log = self.eio_round("sync", ".log", round_number)
      self.check_wal_fault("sync", recovered, log)

  def test_rocksdb_wal_write_eio(self):
    for round_number in range(ROUNDS):
      recovered, log = self.eio_round("write", ".log", round_number)
      self.check_wal_fault("write", recovered, log)

  # --- a segment damaged under the running server ---

  def test_segment_damaged_under_server(self):
    for round_number in range(ROUNDS):
      self.damage_round(round_number)

  def damage_round(self, round_number):
    server = PosthasteServer()
    server.add_user(USER, PASSWORD)
    sent = [message("damage-%d-%d" % (round_number, i), 8192) for i in range(4)]
    for raw in sent:
      server.deliver(USER, raw)
    segments_dir = os.path.join(server.data_dir, "segments")

    def segment_holding(marker):
      # Each `deliver` run of the CLI writes its own segment.
      for name in sorted(os.listdir(segments_dir)):
        path = os.path.join(segments_dir, name)
        with open(path, "rb") as f:
          data = f.read()
        if marker in data:
          return path, data.index(marker)
      self.fail("no segment holds %r" % marker)

    with server:
      before = retr_all(server)
      self.assertEqual(len(before), 4)
      # Message 2: one byte of its body changed in place (same length).
      path, flip_at = segment_holding(b"campaign damage-%d-1 " % round_number)
      with open(path, "r+b") as f:
        f.seek(flip_at)
        f.write(b"C")
      # Message 4: its segment cut inside the message.
      path, cut_at = segment_holding(b"Subject: damage-%d-3" % round_number)
      os.truncate(path, cut_at + 3000)
      damaged_before = metric_sum(server.metrics(), "posthaste_store_damaged_messages_total")
      pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=TIMEOUT_S)
      pop.user(USER)
      pop.pass_(PASSWORD)
      first = b"".join(l + b"\r\n" for l in pop.retr(1)[1])
      self.assertEqual(first, before[0], "an intact message changed")
      flipped = self.retr_outcome(pop, 2, before[1])
      pop = self.reconnect_if_closed(pop, server, flipped)
      third = b"".join(l + b"\r\n" for l in pop.retr(3)[1])
      self.assertEqual(third, before[2], "an intact message changed")
      truncated = self.retr_outcome(pop, 4, before[3])
      pop = self.reconnect_if_closed(pop, server, truncated)
      # TOP sends part of a message: the whole is checked all the same.
      with self.assertRaisesRegex(poplib.error_proto, r"-ERR \[SYS/PERM\]"):
        pop.top(2, 0)
      # Still serving the readable messages after both, in the same session.
      again = b"".join(l + b"\r\n" for l in pop.retr(1)[1])
      self.assertEqual(again, before[0])
      pop.quit()
      damaged = metric_sum(server.metrics(), "posthaste_store_damaged_messages_total")
      ready = self.readyz(server)
      log = server.stderr_text()
    self.assertEqual(flipped, "error [SYS/PERM]", "RETR of a flipped message: %s" % flipped)
    self.assertEqual(truncated, "error [SYS/PERM]", "RETR of a truncated message: %s" % truncated)
    self.assertEqual(damaged - damaged_before, 3, "posthaste_store_damaged_messages_total")
    self.assertEqual(ready, 200)
    refusals = [l for l in log.splitlines() if "stored message damaged" in l]
    self.assertEqual(len(refusals), 3, log)
    for part in (USER, "uidl=", "segment ", "offset ", "checksum"):
      self.assertIn(part, refusals[0], refusals[0])
    code, output = self.check_store(server, expect_clean=False)
    self.assertNotEqual(code, 0, "posthaste check passed a damaged segment")
    self.assertIn("checksum", output, output)
    self.assertIn("outside segment", output, output)
    self.note("segment damaged under the server: RETR of the flipped message: %s; RETR of the "
              "truncated one: %s; TOP refused too; intact messages served with exact bytes; "
              "posthaste_store_damaged_messages_total +%d; /readyz %d; `posthaste check` exit "
              "%d naming both" % (flipped, truncated, damaged - damaged_before, ready, code))

  def retr_outcome(self, pop, number, original):
    """'error [CODE]' (-ERR with its RFC 3206 code), 'error', 'closed', 'wrong bytes' or
    'same bytes' for RETR `number`."""
    try:
      got = b"".join(l + b"\r\n" for l in pop.retr(number)[1])
    except poplib.error_proto as e:
      text = str(e)
      if "-ERR [" in text:
        return "error " + text[text.index("[", text.index("-ERR")):].split("]")[0] + "]"
      return "error" if "-ERR" in text else "closed"
    except (OSError, EOFError):
      return "closed"
    return "same bytes" if got == original else "wrong bytes (%d of %d octets)" % (
        len(got), len(original))

  def reconnect_if_closed(self, pop, server, outcome):
    if outcome != "closed":
      try:
        pop.noop()
        return pop
      except (poplib.error_proto, OSError, EOFError):
        pass
    pop.close()
    pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=TIMEOUT_S)
    pop.user(USER)
    pop.pass_(PASSWORD)
    return pop


if __name__ == "__main__":
  unittest.main()
