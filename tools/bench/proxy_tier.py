#!/usr/bin/env python3
"""POP3 through the proxy tier (issue 15) against direct to the backend, on loopback.

Starts one `posthaste serve` backend (one shard, --proxy_networks=127.0.0.1/32, admin API on
for the route service's password checks), `posthaste route --directory_file` placing the
tenant on it, and Debian's nginx with the mail module (auth_http to the route service,
`proxy_protocol on` towards the backend, one worker). Users:
  small1..N@bench.test  one small message each (--small_bytes), for sessions;
  big1..M@bench.test    two large messages each (--big_bytes), for RETR throughput.
Then, --repeat times, alternating the path (direct, nginx) inside each repeat, pop3load runs
  sessions  connect, USER/PASS, STAT, UIDL, RETR 1, QUIT, over and over (N connections);
  bulk      M logged-in sessions RETR-ing their two messages over and over;
clients leave from 127.0.0.2 (outside --proxy_networks: direct sessions need no header). Around
each run the CPU seconds (user + system, /proc/PID/stat and the children of nginx's master) of
each tier are read: nginx (master and workers), route, posthaste. Prints one JSON object:
every run, and the medians per path and scenario, with the CPU per 1000 sessions or per GB.

    bazel build --config=opt //server:posthaste //tools/bench:pop3load
    tools/bench/proxy_tier.py --repeat=3 > /tmp/proxy_tier.json

Needs /usr/sbin/nginx and /usr/lib/nginx/modules/ngx_mail_module.so (Debian: nginx,
libnginx-mod-mail). Every process it starts is stopped on exit; its temp dir is removed.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TOKEN = "proxy-tier-bench-admin-token-0123456789"
PASSWORD = "bench pw"
NGINX = "/usr/sbin/nginx"
NGINX_MAIL_MODULE = "/usr/lib/nginx/modules/ngx_mail_module.so"
CLIENT_SOURCE = "127.0.0.2"


def ticks_of(pid):
  """utime + stime of one process, in clock ticks (0 once it is gone)."""
  try:
    with open("/proc/%d/stat" % pid) as f:
      fields = f.read().rsplit(")", 1)[1].split()
  except OSError:
    return 0
  return int(fields[11]) + int(fields[12])


def children_of(pid):
  found = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit():
      continue
    try:
      with open("/proc/%s/stat" % entry) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
      continue
    if int(fields[1]) == pid:
      found.append(int(entry))
  return found


def cpu_seconds(pid, with_children=False):
  """CPU seconds of `pid` (and of its live children: nginx's workers never exit here)."""
  pids = [pid] + (children_of(pid) if with_children else [])
  return sum(ticks_of(p) for p in pids) / os.sysconf("SC_CLK_TCK")


def wait_line(path, pattern, timeout_s=60):
  """The first match of `pattern` in the log file at `path` (a process's stderr: a file, not a
  pipe, so that a busy server never blocks on a full pipe nobody reads)."""
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    with open(path, encoding="utf-8", errors="replace") as f:
      match = re.search(pattern, f.read())
    if match:
      return match
    time.sleep(0.05)
  with open(path, encoding="utf-8", errors="replace") as f:
    raise SystemExit("no line matching %r in %s:\n%s" % (pattern, path, f.read()[-2000:]))


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def wait_listening(port, timeout_s=20):
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    try:
      socket.create_connection(("127.0.0.1", port), 1).close()
      return
    except OSError:
      time.sleep(0.05)
  raise SystemExit("nothing listens on 127.0.0.1:%d" % port)


def message(size, tag):
  head = ("From: bench@example.test\r\nTo: user@bench.test\r\nSubject: %s\r\n\r\n" % tag).encode()
  line = b"x" * 70 + b"\r\n"
  body = line * max(1, (size - len(head)) // len(line))
  return head + body


def provision(binary, data, small_users, big_users, small_bytes, big_bytes):
  def cli(command, address, stdin):
    subprocess.run([binary] + command + ["--data_dir=" + data, address], input=stdin,
                   check=True, stdout=subprocess.DEVNULL)

  for i in range(1, small_users + 1):
    address = "small%d@bench.test" % i
    cli(["user", "add"], address, PASSWORD.encode() + b"\n")
    cli(["deliver"], address, message(small_bytes, "small"))
  for i in range(1, big_users + 1):
    address = "big%d@bench.test" % i
    cli(["user", "add"], address, PASSWORD.encode() + b"\n")
    for n in (1, 2):
      cli(["deliver"], address, message(big_bytes, "big %d" % n))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--binary", default="bazel-bin/server/posthaste")
  parser.add_argument("--pop3load", default="bazel-bin/tools/bench/pop3load")
  parser.add_argument("--repeat", type=int, default=3)
  parser.add_argument("--seconds", type=float, default=5)
  parser.add_argument("--connections", type=int, default=8, help="sessions: connections (users)")
  parser.add_argument("--bulk_connections", type=int, default=4, help="bulk: sessions (users)")
  parser.add_argument("--small_bytes", type=int, default=2048)
  parser.add_argument("--big_bytes", type=int, default=4 << 20)
  parser.add_argument("--nginx_workers", type=int, default=1)
  args = parser.parse_args()
  for path in (args.binary, args.pop3load, NGINX, NGINX_MAIL_MODULE):
    if not os.path.exists(path):
      raise SystemExit("missing: %s" % path)
  if not 1 <= args.repeat <= 20 or not 0 < args.seconds <= 600:
    raise SystemExit("--repeat in [1, 20], --seconds in (0, 600]")

  work = tempfile.mkdtemp(prefix="proxy-tier-bench-")
  procs = []
  try:
    token_file = os.path.join(work, "token")
    with open(token_file, "w") as f:
      f.write(TOKEN + "\n")
    data = os.path.join(work, "data")
    provision(args.binary, data, args.connections, args.bulk_connections, args.small_bytes,
              args.big_bytes)

    backend = subprocess.Popen(
        [args.binary, "serve", "--data_dir=" + data, "--pop3_listen=127.0.0.1:0",
         "--metrics_listen=127.0.0.1:0", "--lmtp_listen=127.0.0.1:0", "--shards=1",
         "--admin_listen=127.0.0.1:0", "--admin_token_file=" + token_file,
         "--proxy_networks=127.0.0.1/32", "--auth_cache_ttl_s=3600"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "serve.log"), "w"))
    procs.append(backend)
    text = wait_line(os.path.join(work, "serve.log"), r".*listening.*").group(0)
    pop3 = int(re.search(r"pop3=127\.0\.0\.1:(\d+)", text).group(1))
    lmtp = int(re.search(r"lmtp=127\.0\.0\.1:(\d+)", text).group(1))
    admin = int(re.search(r"admin_api=127\.0\.0\.1:(\d+)", text).group(1))

    directory = os.path.join(work, "directory.json")
    with open(directory, "w") as f:
      json.dump({"backends/b1": {"ip": "127.0.0.1", "pop3": pop3, "lmtp": lmtp, "admin": admin},
                 "tenants/bench.test": {"backend": "b1"}}, f)
    route = subprocess.Popen(
        [args.binary, "route", "--directory_file=" + directory, "--auth_http_listen=127.0.0.1:0",
         "--admin_token_file=" + token_file, "--socketmap_listen=127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "route.log"), "w"))
    procs.append(route)
    auth_http = int(wait_line(os.path.join(work, "route.log"),
                              r"auth_http=127\.0\.0\.1:(\d+)").group(1))

    nginx_port = free_port()
    prefix = os.path.join(work, "nginx")
    os.mkdir(prefix)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
      f.write("""load_module %(module)s;
daemon off;
master_process on;
worker_processes %(workers)d;
pid %(prefix)s/nginx.pid;
error_log %(prefix)s/error.log warn;
events { worker_connections 4096; }
mail {
  server_name bench.test;
  auth_http 127.0.0.1:%(auth)d/auth;
  proxy_pass_error_message on;
  server {
    listen 127.0.0.1:%(port)d;
    protocol pop3;
    pop3_auth plain;
    proxy_protocol on;
  }
}
""" % {"module": NGINX_MAIL_MODULE, "workers": args.nginx_workers, "prefix": prefix,
       "auth": auth_http, "port": nginx_port})
    nginx = subprocess.Popen([NGINX, "-p", prefix, "-e", prefix + "/error.log", "-c", conf],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(nginx)
    wait_listening(nginx_port)

    tiers = {"nginx": (nginx.pid, True), "route": (route.pid, False),
             "posthaste": (backend.pid, False)}
    scenarios = {
        "sessions": ["--scenario=sessions", "--connections=%d" % args.connections,
                     "--user_pattern=small%d@bench.test"],
        "bulk": ["--scenario=bulk", "--connections=%d" % args.bulk_connections,
                 "--user_pattern=big%d@bench.test"],
    }
    paths = {"direct": pop3, "nginx": nginx_port}

    def pop3load(port, label, seconds, options):
      out = subprocess.run(
          [args.pop3load, "--server=127.0.0.1:%d" % port, "--source_ips=" + CLIENT_SOURCE,
           "--password=" + PASSWORD, "--duration_s=%g" % seconds, "--warmup_s=0",
           "--label=" + label] + options, check=True, stdout=subprocess.PIPE).stdout
      return json.loads(out)

    # Every user's first login pays for the password hash (yescrypt); the backend's auth
    # cache answers later ones, as in a steady state. One unmeasured pass logs everyone in.
    for scenario, options in scenarios.items():
      for path, port in paths.items():
        pop3load(port, "warm-up", 3, options)
    runs = []
    for repeat in range(args.repeat):
      for scenario, options in scenarios.items():
        for path, port in paths.items():
          before = {name: cpu_seconds(*tier) for name, tier in tiers.items()}
          result = pop3load(port, path, args.seconds, options)
          after = {name: cpu_seconds(*tier) for name, tier in tiers.items()}
          cpu = {name: round(after[name] - before[name], 3) for name in tiers}
          if path == "direct":
            cpu["nginx"] = cpu["route"] = 0.0  # idle: not on the path
          runs.append({"repeat": repeat, "scenario": scenario, "path": path,
                       "sessions_per_s": round(result["sessions_per_s"], 1),
                       "mb_per_s": round(result["mb_per_s"], 1),
                       "sessions": result["sessions"], "body_bytes": result["body_bytes"],
                       "errors": result["errors"]["total"], "error_kinds": result["errors"],
                       "cpu_s": cpu})
          print(json.dumps(runs[-1]), file=sys.stderr)

    summary = {}
    for scenario in scenarios:
      for path in paths:
        mine = [r for r in runs if r["scenario"] == scenario and r["path"] == path]
        row = {"sessions_per_s": statistics.median(r["sessions_per_s"] for r in mine),
               "mb_per_s": statistics.median(r["mb_per_s"] for r in mine),
               "errors": sum(r["errors"] for r in mine)}
        for name in tiers:
          if scenario == "sessions":
            row[name + "_cpu_ms_per_session"] = round(statistics.median(
                1000 * r["cpu_s"][name] / max(r["sessions"], 1) for r in mine), 3)
          else:
            row[name + "_cpu_s_per_gb"] = round(statistics.median(
                1e9 * r["cpu_s"][name] / max(r["body_bytes"], 1) for r in mine), 3)
        summary["%s/%s" % (scenario, path)] = row
    print(json.dumps({"seconds": args.seconds, "repeat": args.repeat,
                      "connections": args.connections, "bulk_connections": args.bulk_connections,
                      "small_bytes": args.small_bytes, "big_bytes": args.big_bytes,
                      "nginx_workers": args.nginx_workers, "medians": summary, "runs": runs},
                     indent=1))
  finally:
    for proc in reversed(procs):
      if proc.poll() is None:
        proc.send_signal(signal.SIGQUIT if proc.args[0] == NGINX else signal.SIGTERM)
        try:
          proc.wait(30)
        except subprocess.TimeoutExpired:
          proc.kill()
          proc.wait(10)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  sys.exit(main())
