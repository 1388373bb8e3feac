"""A real etcd cluster on 127.0.0.1 for integration tests (Debian's etcd-server and etcdctl).

`EtcdCluster(members=3)` starts the members with their own client and peer ports and data
directories under $TEST_TMPDIR, waits (bounded) until a linearizable read works, and kills
them in `stop()` (also as a context manager). `etcdctl(...)` runs the real etcdctl against
every member. A missing etcd fails the test: tools/lib/deps.sh installs it.
"""

import os
import shutil
import socket
import subprocess
import time

from tests.testing.posthaste_server import make_temp_dir

START_TIMEOUT_S = 30
ETCDCTL_TIMEOUT_S = 15


def _free_port():
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _find(binary):
  path = shutil.which(binary) or ("/usr/bin/" + binary
                                  if os.access("/usr/bin/" + binary, os.X_OK) else None)
  if path is None:
    raise AssertionError("%s is not installed (Debian's etcd-server/etcd-client; "
                         "tools/lib/deps.sh PH_TEST_PACKAGES)" % binary)
  return path


class EtcdCluster:
  """`members` etcd processes forming one cluster; endpoints in `endpoints_flag`."""

  def __init__(self, members=3):
    self.etcd = _find("etcd")
    self.etcdctl_binary = _find("etcdctl")
    root = make_temp_dir("etcd-")
    self.members = []
    for i in range(members):
      self.members.append({
          "name": "m%d" % i,
          "client": _free_port(),
          "peer": _free_port(),
          "dir": os.path.join(root, "m%d" % i),
          "proc": None,
      })
    self.initial_cluster = ",".join(
        "%s=http://127.0.0.1:%d" % (m["name"], m["peer"]) for m in self.members)
    self.endpoints_flag = ",".join("http://127.0.0.1:%d" % m["client"] for m in self.members)

  def start(self):
    for m in self.members:
      self._spawn(m)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
      result = self._run_etcdctl(["get", "/health-check"], check=False, timeout_s=5)
      if result.returncode == 0:
        return self
      if time.monotonic() > deadline:
        self.stop()
        raise AssertionError("etcd cluster not healthy within %d s: %s" %
                             (START_TIMEOUT_S, result.stderr))
      time.sleep(0.1)

  def _spawn(self, m):
    client = "http://127.0.0.1:%d" % m["client"]
    peer = "http://127.0.0.1:%d" % m["peer"]
    argv = [
        self.etcd, "--name=" + m["name"], "--data-dir=" + m["dir"],
        "--listen-client-urls=" + client, "--advertise-client-urls=" + client,
        "--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
        "--initial-cluster=" + self.initial_cluster, "--initial-cluster-state=new",
        "--initial-cluster-token=posthaste-test", "--heartbeat-interval=50",
        "--election-timeout=500", "--logger=zap", "--log-outputs=" + m["dir"] + ".log",
        "--log-level=warn"
    ]
    m["proc"] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)

  def _run_etcdctl(self, args, check=True, timeout_s=ETCDCTL_TIMEOUT_S):
    env = dict(os.environ, ETCDCTL_API="3")
    result = subprocess.run([self.etcdctl_binary, "--endpoints=" + self.endpoints_flag,
                             "--command-timeout=3s", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=timeout_s, check=False, text=True)
    if check and result.returncode != 0:
      raise AssertionError("etcdctl %s failed: %s" % (" ".join(args), result.stderr))
    return result

  def etcdctl(self, *args):
    """Runs etcdctl with `args` against every member; returns its stdout."""
    return self._run_etcdctl(list(args)).stdout

  def get(self, key):
    """The value of `key` (str), or None when it does not exist."""
    out = self.etcdctl("get", key, "--print-value-only")
    return out.rstrip("\n") if out else None

  def stop(self):
    for m in self.members:
      proc, m["proc"] = m["proc"], None
      if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(10)

  def __enter__(self):
    return self.start()

  def __exit__(self, exc_type, exc, tb):
    self.stop()
