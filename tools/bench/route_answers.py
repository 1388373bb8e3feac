#!/usr/bin/env python3
"""Answers per second of `posthaste route`, on loopback, against one real backend.

Starts `posthaste serve` (one shard, admin API on) with one user, and `posthaste route` with a
directory file placing the user's tenant on it; then, for --seconds each:
  - socketmap: --connections connections, each sending --pipeline requests before reading
    their answers (as several Postfix processes would, one connection each);
  - auth_http: --connections threads, each sending nginx's GET (a new connection per request,
    as nginx does) for the user with the right password: the route service asks the backend's
    /api/v1/auth/verify every time (the backend's auth cache answers after the first);
  - auth_http_unknown: the same for a user no tenant places (no backend call).
Prints one JSON object with answers/s and the route process's CPU seconds per 1000 answers.

    bazel build --config=opt //server:posthaste
    tools/bench/route_answers.py --binary=bazel-bin/server/posthaste
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

TOKEN = "route-bench-admin-token-0123456789"


def cpu_seconds(pid):
  with open("/proc/%d/stat" % pid) as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_line(proc, pattern, timeout_s=30):
  deadline = time.monotonic() + timeout_s
  text = ""
  while time.monotonic() < deadline:
    line = proc.stderr.readline().decode("utf-8", "replace")
    if not line:
      break
    text += line
    match = re.search(pattern, line)
    if match:
      return match
  raise SystemExit("no line matching %r:\n%s" % (pattern, text))


def netstring(text):
  data = text.encode()
  return str(len(data)).encode() + b":" + data + b","


def socketmap_worker(port, pipeline, stop, counts, index):
  request = netstring("transport alice@one.bench") * pipeline
  with socket.create_connection(("127.0.0.1", port)) as s:
    while not stop.is_set():
      s.sendall(request)
      got = 0
      buffer = b""
      while got < pipeline:
        chunk = s.recv(65536)
        if not chunk:
          return
        buffer += chunk
        got = buffer.count(b",")  # an answer "N:OK lmtp:inet:IP:PORT," holds one comma
      if not buffer.startswith(b"OK", buffer.index(b":") + 1):
        raise SystemExit("bad answer: %r" % buffer[:80])
      counts[index] += pipeline


def auth_worker(port, user, password, expected, stop, counts, index):
  request = ("GET /auth HTTP/1.0\r\nHost: localhost\r\nAuth-Method: plain\r\n"
             "Auth-User: %s\r\nAuth-Pass: %s\r\nAuth-Protocol: pop3\r\n"
             "Auth-Login-Attempt: 1\r\nClient-IP: 127.0.0.1\r\n\r\n" % (user, password)).encode()
  while not stop.is_set():
    with socket.create_connection(("127.0.0.1", port)) as s:
      s.sendall(request)
      data = b""
      while True:
        chunk = s.recv(4096)
        if not chunk:
          break
        data += chunk
    if expected not in data:
      raise SystemExit("bad answer: %r" % data)
    counts[index] += 1


def run(target, args, route_pid, seconds, connections):
  stop = threading.Event()
  counts = [0] * connections
  threads = [threading.Thread(target=target, args=args + (stop, counts, i), daemon=True)
             for i in range(connections)]
  cpu0 = cpu_seconds(route_pid)
  t0 = time.monotonic()
  for t in threads:
    t.start()
  time.sleep(seconds)
  stop.set()
  for t in threads:
    t.join(30)
  elapsed = time.monotonic() - t0
  cpu = cpu_seconds(route_pid) - cpu0
  total = sum(counts)
  return {"answers": total, "answers_per_s": round(total / elapsed),
          "route_cpu_s_per_1000": round(1000 * cpu / max(total, 1), 4)}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--binary", default="bazel-bin/server/posthaste")
  parser.add_argument("--seconds", type=float, default=5)
  parser.add_argument("--connections", type=int, default=4)
  parser.add_argument("--pipeline", type=int, default=32)
  args = parser.parse_args()
  work = tempfile.mkdtemp(prefix="route-bench-")
  token_file = os.path.join(work, "token")
  with open(token_file, "w") as f:
    f.write(TOKEN + "\n")
  data = os.path.join(work, "data")
  subprocess.run([args.binary, "user", "add", "--data_dir=" + data, "alice@one.bench"],
                 input=b"alice pw\n", check=True)
  backend = subprocess.Popen(
      [args.binary, "serve", "--data_dir=" + data, "--pop3_listen=127.0.0.1:0",
       "--metrics_listen=127.0.0.1:0", "--lmtp_listen=127.0.0.1:0", "--shards=1",
       "--admin_listen=127.0.0.1:0", "--admin_token_file=" + token_file],
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  route = None
  try:
    line = wait_line(backend, r"listening")
    text = line.string
    pop3 = int(re.search(r"pop3=127\.0\.0\.1:(\d+)", text).group(1))
    lmtp = int(re.search(r"lmtp=127\.0\.0\.1:(\d+)", text).group(1))
    admin = int(re.search(r"admin_api=127\.0\.0\.1:(\d+)", text).group(1))
    directory = os.path.join(work, "directory.json")
    with open(directory, "w") as f:
      json.dump({"backends/b1": {"ip": "127.0.0.1", "pop3": pop3, "lmtp": lmtp, "admin": admin},
                 "tenants/one.bench": {"backend": "b1"}}, f)
    route = subprocess.Popen(
        [args.binary, "route", "--directory_file=" + directory,
         "--auth_http_listen=127.0.0.1:0", "--admin_token_file=" + token_file,
         "--socketmap_listen=127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    match = wait_line(route, r"auth_http=127\.0\.0\.1:(\d+).*socketmap=127\.0\.0\.1:(\d+)")
    auth_port, socketmap_port = int(match.group(1)), int(match.group(2))
    results = {
        "connections": args.connections,
        "pipeline": args.pipeline,
        "socketmap": run(socketmap_worker, (socketmap_port, args.pipeline),
                         route.pid, args.seconds, args.connections),
        "auth_http": run(auth_worker, (auth_port, "alice@one.bench", "alice%20pw", b"Auth-Status: OK"),
                         route.pid, args.seconds, args.connections),
        "auth_http_unknown": run(auth_worker,
                                 (auth_port, "nobody@none.bench", "x", b"Auth-Wait"), route.pid, args.seconds,
                                 args.connections),
    }
    print(json.dumps(results, indent=1))
  finally:
    for proc in (route, backend):
      if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
  sys.exit(main())
