"""The soak of issue 18: the real `posthaste serve` under ~80% of its peak mixed load for a while.

What runs, against one server on 127.0.0.1 (kernel-chosen ports) in a temporary data directory:
- the crash campaign's load (tests/crash_campaign_load.py) without its kills and churn: LMTP
  deliveries from several connections to existing accounts (and refused RCPTs to one that never
  exists), POP3 sessions that UIDL, RETR (each message checked byte for byte against the model),
  DELE and QUIT, a third of them upgraded with STLS and the certificate checked;
- compaction through the real CLI and the admin socket every COMPACT_EVERY_S;
- a certificate reload every RELOAD_EVERY_S: a newly issued certificate replaces the files,
  SIGHUP, and new STLS sessions must present it within RELOAD_SEEN_S_MAX.
First PEAK_S seconds unthrottled measure the peak (deliveries/s, POP3 sessions/s); then both are
paced to LOAD_PERCENT of it for MINUTES. Every minute (and at the start) the server's VmRSS,
VmHWM, open descriptors and the data directory's size on disk are sampled with the counts so far.
At the end: the load stops, every account's mailbox is checked against the model (each message
byte for byte, deleted ones gone, no duplicates; Campaign.verify), serve stops on SIGTERM with
status 0 and `posthaste check` is clean. The RSS slope is a least-squares fit over the samples
after the warm-up, in MiB per hour. Writes soak.csv and soak.png (gnuplot) to OUT_DIR.

An error is anything the crash campaign tolerates only because it kills the server: a dropped
connection, a refused recipient, a failed login, an -ERR, a model violation, a failed compaction
or reload, an `error` line in the server's log. Exit status 1 on any error or failed check.

Run: `tools/soak_campaign [MINUTES] [OUT_DIR]`, or under Bazel as //tests:soak_campaign_test
(SOAK_MINUTES, SOAK_PEAK_S, SOAK_COMPACT_EVERY_S and SOAK_RELOAD_EVERY_S from the target's env,
output in $TEST_UNDECLARED_OUTPUTS_DIR).

Threading: the main thread samples and owns the server; the load threads and the maintenance
thread report through the model's lock (counts) and SoakCampaign.lock (errors, certificates).
"""

import http.client
import os
import random
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from tests.crash_campaign import Campaign, posthaste_binary
from tests.crash_campaign_load import CHURN, NEVER, STABLE, Load, Pop3, Violation, run_cli
from tests.testing.tls_certs import TestPki, peer_subject_cn

PEAK_S = 60.0
PEAK_SKIP_S = 5.0  # the first seconds of the peak phase (connections opening) are not counted
LOAD_PERCENT = 80
PACE_CREDIT_S = 1.0
SAMPLE_EVERY_S = 60.0
COMPACT_EVERY_S = 20.0
RELOAD_EVERY_S = 60.0
RELOAD_SEEN_S_MAX = 30.0  # a reload's certificate must be presented by then
OLD_CERT_GRACE_S = 5.0  # a handshake that started before the reload may still show the old one
STLS_PERCENT = 33
LMTP_WORKERS = 3
POP3_WORKERS = 3
WARMUP_FRACTION = 1 / 6  # samples before this part of the run are left out of the slope
TLS_NAME = "localhost"
ERRORS_LISTED_MAX = 20


class Pacer:
  """Spaces the calls of each kind to `rate` per second across threads (none: unthrottled)."""

  def __init__(self, stop):
    self.stop = stop
    self.lock = threading.Lock()
    self.rates = {}
    self.next = {}
    self.calls = dict(lmtp=0, pop3=0)

  def set_rates(self, rates):
    with self.lock:
      self.rates = dict(rates)
      now = time.monotonic()
      self.next = {kind: now for kind in rates}

  def __call__(self, kind):
    with self.lock:
      self.calls[kind] += 1
      rate = self.rates.get(kind)
      if not rate:
        return
      now = time.monotonic()
      # Slots missed while every worker was busy are made up, but at most PACE_CREDIT_S worth.
      due = max(self.next[kind], now - PACE_CREDIT_S)
      self.next[kind] = due + 1.0 / rate
    if due > now:
      self.stop.wait(due - now)


def process_memory(pid):
  """(VmRSS, VmHWM) of `pid` in MiB."""
  values = {}
  with open("/proc/%d/status" % pid) as f:
    for line in f:
      if line.startswith(("VmRSS:", "VmHWM:")):
        values[line.split(":")[0]] = int(line.split()[1]) / 1024.0
  return values["VmRSS"], values["VmHWM"]


def disk_usage_mib(path):
  """What `du` reports for `path` (allocated blocks), in MiB; files vanishing meanwhile skipped."""
  if not os.path.isdir(path):
    return os.lstat(path).st_blocks * 512 / (1024.0 * 1024.0)
  total = 0
  seen = set()
  for root, dirs, files in os.walk(path):
    for name in dirs + files:
      try:
        st = os.lstat(os.path.join(root, name))
      except FileNotFoundError:
        continue
      if (st.st_dev, st.st_ino) not in seen:
        seen.add((st.st_dev, st.st_ino))
        total += st.st_blocks * 512
  return total / (1024.0 * 1024.0)


def slope_per_hour(points):
  """Least-squares slope of [(minute, value)], per hour (0 with fewer than two points)."""
  if len(points) < 2:
    return 0.0
  n = float(len(points))
  mean_x = sum(x for x, _ in points) / n
  mean_y = sum(y for _, y in points) / n
  sxx = sum((x - mean_x)**2 for x, _ in points)
  if sxx == 0:
    return 0.0
  sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
  return sxy / sxx * 60.0


COLUMNS = ("minute", "rss_mib", "hwm_mib", "fds", "store_mib", "delivered", "retrieved",
           "deleted", "pop3_sessions", "tls_sessions", "compactions", "reloads", "errors",
           "index_memtables_mib", "index_block_cache_mib", "index_table_readers_mib")
# The RocksDB index's share of the RSS, from /metrics (posthaste_store_index_memory_bytes).
INDEX_MEMORY_PARTS = ("memtables", "block_cache", "table_readers")
_INDEX_MEMORY = re.compile(
    r'^posthaste_store_index_memory_bytes\{part="([a-z_]+)"\} (\S+)$', re.MULTILINE)

_GNUPLOT = """
set terminal pngcairo size 900,900 font ",10"
set output "{png}"
set datafile separator ","
set key autotitle columnhead bottom right
set multiplot layout 3,1 title "{title}"
set grid
set xlabel "minutes"
set yrange [0:*]
set ylabel "MiB"
plot "{csv}" using 1:2 with linespoints title "server VmRSS", \\
     "{csv}" using 1:3 with lines dashtype 2 title "VmHWM", \\
     "{csv}" using 1:15 with lines title "index block cache", \\
     "{csv}" using 1:14 with lines title "index memtables", \\
     "{csv}" using 1:16 with lines title "index table readers"
set ylabel "descriptors"
plot "{csv}" using 1:4 with linespoints title "open fds"
set ylabel "MiB"
plot "{csv}" using 1:5 with linespoints title "data directory on disk"
unset multiplot
"""


class SoakCampaign(Campaign):

  def __init__(self, binary, minutes, peak_s, seed, work_dir, out_dir, out=sys.stdout):
    super().__init__(binary, 0, seed, work_dir, out=out)
    self.minutes = minutes
    self.peak_s = peak_s
    self.out_dir = out_dir
    self.trial_tag = "soak"
    self.compact_every_s = float(os.environ.get("SOAK_COMPACT_EVERY_S", COMPACT_EVERY_S))
    self.reload_every_s = float(os.environ.get("SOAK_RELOAD_EVERY_S", RELOAD_EVERY_S))
    self.lock = threading.Lock()
    self.errors = []
    self.error_count = 0
    self.sessions = dict(pop3=0, tls=0, reloads=0)
    self.reload_seen_s = []
    self.samples = []
    self.peak = {}
    self.pki = TestPki(os.path.join(work_dir, "pki"))
    self.cert_path = os.path.join(work_dir, "server.crt")
    self.key_path = os.path.join(work_dir, "server.key")
    self.cert_version = 0
    self.allowed_cns = set()
    self.install_certificate()
    self.tls_context = ssl.create_default_context(cafile=self.pki.ca_cert)
    # With a certificate serve also listens for POP3S, on 0.0.0.0:995 unless told otherwise.
    self.server.extra_args = ["--tls_cert=" + self.cert_path, "--tls_key=" + self.key_path,
                              "--tls_reload_check_s=0", "--pop3s_listen=127.0.0.1:0"]

  # --- errors ---

  def error(self, what):
    with self.lock:
      self.error_count += 1
      if len(self.errors) < ERRORS_LISTED_MAX:
        self.errors.append("%.0f s: %s" % (time.monotonic() - self.started, what))

  started = 0.0
  in_use_after_drop = 0

  # --- certificates ---

  def install_certificate(self):
    """Issues the next certificate and puts it in place of the served one; returns its CN."""
    self.cert_version += 1
    cn = "soak certificate %d" % self.cert_version
    crt, key = self.pki.issue("server-%d" % self.cert_version, [TLS_NAME], common_name=cn,
                              ip_addresses=["127.0.0.1"])
    for source, target in ((key, self.key_path), (crt, self.cert_path)):
      shutil.copyfile(source, target + ".new")
      os.replace(target + ".new", target)
    with self.lock:
      self.allowed_cns.add(cn)
    return cn

  def open_pop3(self, port, rng):
    pop = Pop3(port)
    with self.lock:
      self.sessions["pop3"] += 1
    if rng.randrange(100) < STLS_PERCENT:
      cn = peer_subject_cn(pop.stls(self.tls_context, TLS_NAME))
      with self.lock:
        self.sessions["tls"] += 1
        allowed = cn in self.allowed_cns
      if not allowed:
        self.error("STLS session saw certificate %r (expected one of %s)" %
                   (cn, sorted(self.allowed_cns)))
    return pop

  def stls_certificate(self):
    pop = Pop3(self.server.pop3_port)
    try:
      cn = peer_subject_cn(pop.stls(self.tls_context, TLS_NAME))
      pop.ok("QUIT")
      return cn
    finally:
      pop.close()

  def reload_certificate(self, stop):
    old = set(self.allowed_cns)
    cn = self.install_certificate()
    sent = time.monotonic()
    self.server.proc.send_signal(signal.SIGHUP)
    while True:
      seen = self.stls_certificate()
      if seen == cn:
        break
      if time.monotonic() - sent > RELOAD_SEEN_S_MAX:
        self.error("reload: new sessions still see %r %.0f s after SIGHUP" %
                   (seen, RELOAD_SEEN_S_MAX))
        return
      if stop.wait(0.1):
        return
    with self.lock:
      self.reload_seen_s.append(time.monotonic() - sent)
      self.sessions["reloads"] += 1
    stop.wait(OLD_CERT_GRACE_S)
    with self.lock:
      self.allowed_cns -= old

  # --- maintenance: compaction and reloads ---

  def maintenance(self, stop):
    next_compact = time.monotonic() + self.compact_every_s
    next_reload = time.monotonic() + self.reload_every_s
    while not stop.wait(min(next_compact, next_reload) - time.monotonic()):
      try:
        if time.monotonic() >= next_compact:
          next_compact += self.compact_every_s
          code, out, err = run_cli(self.binary, self.data_dir, ["compact"])
          if code != 0:
            self.error("compact exited %s: %s" % (code, err.decode().strip()))
          else:
            with self.model.lock:
              self.model.count("compactions")
              if out.startswith(b"compacted ") and not out.startswith(b"compacted 0 "):
                self.compactions_rewrote += 1
        if time.monotonic() >= next_reload:
          next_reload += self.reload_every_s
          self.reload_certificate(stop)
      except Exception as e:  # pylint: disable=broad-except
        self.error("maintenance: %r" % e)
        stop.wait(1.0)

  # --- samples ---

  def counts(self):
    with self.model.lock:
      c = dict(self.model.counts)
    with self.lock:
      s = dict(self.sessions)
      errors = self.error_count
    return c, s, errors

  def index_memory_mib(self):
    """{part: MiB} of the index's memory gauges on /metrics (0 when the scrape fails)."""
    parts = dict.fromkeys(INDEX_MEMORY_PARTS, 0.0)
    conn = http.client.HTTPConnection("127.0.0.1", self.server.metrics_port, timeout=10)
    try:
      conn.request("GET", "/metrics")
      text = conn.getresponse().read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
      self.error("GET /metrics: %r" % e)
      return parts
    finally:
      conn.close()
    for part, value in _INDEX_MEMORY.findall(text):
      if part in parts:
        parts[part] = float(value) / (1 << 20)
    return parts

  def sample(self, minute, load_errors):
    rss, hwm = process_memory(self.server.proc.pid)
    fds = len(os.listdir("/proc/%d/fd" % self.server.proc.pid))
    index = self.index_memory_mib()
    c, s, errors = self.counts()
    row = dict(minute=round(minute, 2), rss_mib=round(rss, 1), hwm_mib=round(hwm, 1), fds=fds,
               store_mib=round(disk_usage_mib(self.data_dir), 1), delivered=c["delivered"],
               retrieved=c["retr_checked"], deleted=c["deleted"], pop3_sessions=s["pop3"],
               tls_sessions=s["tls"], compactions=c["compactions"], reloads=s["reloads"],
               errors=errors + len(load_errors),
               index_memtables_mib=round(index["memtables"], 1),
               index_block_cache_mib=round(index["block_cache"], 1),
               index_table_readers_mib=round(index["table_readers"], 1))
    self.samples.append(row)
    self.say("minute %5.1f: RSS %.1f MiB (HWM %.1f), %d fds, store %.1f MiB; %d delivered, "
             "%d retrieved, %d deleted, %d POP3 sessions (%d STLS), %d compactions, %d reloads, "
             "%d errors; index memtables %.1f MiB, block cache %.1f MiB, table readers %.1f MiB"
             % tuple(row[k] for k in COLUMNS))

  # --- the run ---

  def run_soak(self):
    self.say("soak: %.1f minutes at %d%% of peak after a %.0f s peak run, seed %d, work dir %s"
             % (self.minutes, LOAD_PERCENT, self.peak_s, self.seed, self.work_dir))
    self.provision()
    self.start(measure=False)
    self.verify()
    rss, hwm = process_memory(self.server.proc.pid)
    self.say("idle before the load: RSS %.1f MiB, %d fds, store %.1f MiB" %
             (rss, len(os.listdir("/proc/%d/fd" % self.server.proc.pid)),
              disk_usage_mib(self.data_dir)))
    self.started = time.monotonic()
    load = Load(self, random.Random(self.rng.random()))
    load.lmtp_workers = LMTP_WORKERS
    load.pop3_workers = POP3_WORKERS
    load.recipients = STABLE + CHURN[:2] + [NEVER]  # provision() created these
    load.admin = False
    pacer = Pacer(load.stop)
    load.pace = pacer
    load.open_pop3 = self.open_pop3
    load.unexpected = self.error
    maintenance_stop = threading.Event()
    maintenance = threading.Thread(target=self.maintenance, args=(maintenance_stop,),
                                   daemon=True)
    load.start()
    maintenance.start()
    try:
      # Peak: unthrottled.
      load.stop.wait(PEAK_SKIP_S)
      c0, s0, _ = self.counts()
      transactions0 = pacer.calls["lmtp"]
      t0 = time.monotonic()
      load.stop.wait(max(1.0, self.peak_s - PEAK_SKIP_S))
      c1, s1, _ = self.counts()
      transactions = max(1, pacer.calls["lmtp"] - transactions0)
      elapsed = time.monotonic() - t0
      self.peak = dict(deliveries=(c1["delivered"] - c0["delivered"]) / elapsed,
                       sessions=(s1["pop3"] - s0["pop3"]) / elapsed,
                       retrievals=(c1["retr_checked"] - c0["retr_checked"]) / elapsed)
      rates = dict(lmtp=self.peak["deliveries"] * LOAD_PERCENT / 100.0,
                   pop3=self.peak["sessions"] * LOAD_PERCENT / 100.0)
      # A transaction delivers to one or two recipients, or none (the never-created one):
      # pace transactions so that deliveries (250 replies) come at the share of the peak.
      per_transaction = max(0.1, (c1["delivered"] - c0["delivered"]) / transactions)
      self.say("peak: %.1f deliveries/s (%.2f per LMTP transaction), %.1f POP3 sessions/s, "
               "%.1f RETRs/s; pacing to %.1f deliveries/s and %.1f POP3 sessions/s" %
               (self.peak["deliveries"], per_transaction, self.peak["sessions"],
                self.peak["retrievals"], rates["lmtp"], rates["pop3"]))
      pacer.set_rates(dict(lmtp=rates["lmtp"] / per_transaction, pop3=rates["pop3"]))
      self.soak_started = time.monotonic()
      self.soak_counts = c1, s1
      self.sample(0.0, load.errors)
      end = self.soak_started + self.minutes * 60.0
      next_sample = self.soak_started + SAMPLE_EVERY_S
      while time.monotonic() < end - 0.5 and not self.interrupted:
        time.sleep(min(1.0, max(0.0, min(next_sample, end) - time.monotonic())))
        if time.monotonic() >= next_sample - 0.01:
          self.sample((time.monotonic() - self.soak_started) / 60.0, load.errors)
          next_sample += SAMPLE_EVERY_S
        if self.server.proc.poll() is not None:
          self.error("serve exited %d during the soak" % self.server.proc.returncode)
          break
      if self.samples[-1]["minute"] < self.minutes - 0.05:
        self.sample((time.monotonic() - self.soak_started) / 60.0, load.errors)
      self.soak_s = time.monotonic() - self.soak_started
      self.say("data directory at the end of the load: " + ", ".join(
          "%s %.1f MiB" % (name, disk_usage_mib(os.path.join(self.data_dir, name)))
          for name in sorted(os.listdir(self.data_dir))))
    finally:
      load.join()
      maintenance_stop.set()
      maintenance.join(RELOAD_SEEN_S_MAX + 60)
    for text in load.errors:
      self.error(text)
    self.in_use_after_drop = load.in_use_after_drop
    # The end: every mailbox against the model, a clean stop, `posthaste check`.
    self.final_check = "not reached"
    try:
      self.verify()
      self.server.stop()
      code, out, err = run_cli(self.binary, self.data_dir, ["check"])
      if code != 0 or not out.startswith(b"ok"):
        raise Violation("posthaste check: %s %s" % (out.decode().strip(), err.decode().strip()))
      self.final_check = out.decode().strip()
    except (Violation, OSError, ConnectionError) as v:
      self.final_check = "FAILED: %s" % v
      self.error("final check: %s" % v)
    self.log_errors()

  def log_errors(self):
    self.server.log.flush()
    with open(self.server.log.name, "rb") as f:
      for raw in f:
        line = raw.decode("utf-8", "replace").strip()
        if " error " in line or '"level":"error"' in line:
          self.error("serve log: " + line)

  # --- results ---

  def write_outputs(self):
    os.makedirs(self.out_dir, exist_ok=True)
    csv = os.path.join(self.out_dir, "soak.csv")
    with open(csv, "w") as f:
      f.write(",".join(COLUMNS) + "\n")
      for row in self.samples:
        f.write(",".join(str(row[k]) for k in COLUMNS) + "\n")
    png = os.path.join(self.out_dir, "soak.png")
    title = "posthaste soak: %g min at %d%% of peak (%.0f deliveries/s), RSS slope %+.2f MiB/h" % (
        self.minutes, LOAD_PERCENT, self.peak.get("deliveries", 0), self.rss_slope)
    script = _GNUPLOT.format(png=png, csv=csv, title=title)
    result = subprocess.run(["gnuplot"], input=script.encode(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=60, check=False)
    if result.returncode != 0:
      self.error("gnuplot: %s" % result.stderr.decode().strip())
    return csv, png

  def report(self):
    warm = [r for r in self.samples if r["minute"] >= self.minutes * WARMUP_FRACTION]
    self.rss_slope = slope_per_hour([(r["minute"], r["rss_mib"]) for r in warm])
    fds_slope = slope_per_hour([(r["minute"], r["fds"]) for r in warm])
    store_slope = slope_per_hour([(r["minute"], r["store_mib"]) for r in warm])
    csv, png = self.write_outputs()
    c, s, _ = self.counts()
    if self.samples:
      c1, s1 = self.soak_counts
      soak_s = max(1.0, self.soak_s)
      self.say("soak rates: %.1f deliveries/s, %.1f POP3 sessions/s, %.1f RETRs/s "
               "(%.0f%% / %.0f%% of peak deliveries / sessions)" %
               ((self.samples[-1]["delivered"] - c1["delivered"]) / soak_s,
                (self.samples[-1]["pop3_sessions"] - s1["pop3"]) / soak_s,
                (self.samples[-1]["retrieved"] - c1["retr_checked"]) / soak_s,
                100.0 * (self.samples[-1]["delivered"] - c1["delivered"]) / soak_s /
                max(self.peak["deliveries"], 1e-9),
                100.0 * (self.samples[-1]["pop3_sessions"] - s1["pop3"]) / soak_s /
                max(self.peak["sessions"], 1e-9)))
    self.say("slopes after %.1f min of warm-up, least squares over %d samples: RSS %+.2f MiB/h, "
             "fds %+.2f /h, store %+.2f MiB/h" %
             (self.minutes * WARMUP_FRACTION, len(warm), self.rss_slope, fds_slope, store_slope))
    # What of the RSS slope the index's bounded caches explain, and what is left.
    index_slope = slope_per_hour([(r["minute"], sum(r["index_%s_mib" % p]
                                                    for p in INDEX_MEMORY_PARTS)) for r in warm])
    self.say("of which the index (memtables + block cache + table readers): %+.2f MiB/h; "
             "RSS less the index: %+.2f MiB/h" % (index_slope, self.rss_slope - index_slope))
    seen = sorted(self.reload_seen_s)
    self.say("totals: %d delivered, %d refused, %d RETRs checked (incl. the final check), "
             "%d deleted, %d POP3 sessions (%d STLS), %d compactions (%d rewrote), %d reloads "
             "(new certificate seen after max %.2f s)" %
             (c["delivered"], c["refused"], c["retr_checked"], c["deleted"], s["pop3"], s["tls"],
              c["compactions"], self.compactions_rewrote, s["reloads"], seen[-1] if seen else 0))
    self.say("logins answered [IN-USE] right after the account's previous session was dropped "
             "without QUIT (not errors): %d" % self.in_use_after_drop)
    self.say("final check: %s" % self.final_check)
    for text in self.errors:
      self.say("error: %s" % text)
    self.say("soak: %d errors; csv %s, plot %s" % (self.error_count, csv, png))


def main(argv):
  if os.environ.get("TEST_SRCDIR"):
    minutes = float(os.environ.get("SOAK_MINUTES", "0.5"))
    peak_s = float(os.environ.get("SOAK_PEAK_S", "15"))
    out_dir = os.environ.get("TEST_UNDECLARED_OUTPUTS_DIR") or os.environ["TEST_TMPDIR"]
  else:
    if len(argv) > 3:
      print("usage: soak_campaign.py [MINUTES] [OUT_DIR]", file=sys.stderr)
      return 2
    minutes = float(argv[1]) if len(argv) > 1 else 30.0
    out_dir = argv[2] if len(argv) > 2 else "docs"
    peak_s = float(os.environ.get("SOAK_PEAK_S", str(PEAK_S)))
  seed = int(os.environ.get("SOAK_SEED", "18"))
  work_dir = tempfile.mkdtemp(prefix="soak-campaign-", dir=os.environ.get("TEST_TMPDIR"))
  campaign = SoakCampaign(posthaste_binary(), minutes, peak_s, seed, work_dir, out_dir)

  def interrupt(signum, frame):
    del signum, frame
    campaign.interrupted = True

  signal.signal(signal.SIGINT, interrupt)
  signal.signal(signal.SIGTERM, interrupt)
  try:
    campaign.run_soak()
  except Exception:
    campaign.server.log.flush()
    with open(campaign.server.log.name, "rb") as f:
      print("serve.log ends:\n" + f.read()[-4000:].decode("utf-8", "replace"))
    raise
  finally:
    campaign.server.kill()
  campaign.report()
  if campaign.error_count or campaign.interrupted:
    print("kept for inspection: %s (serve.log has the server's stderr)" % work_dir)
    return 1
  shutil.rmtree(work_dir, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
