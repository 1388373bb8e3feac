"""`posthaste import pop3` from a live Dovecot (Debian's dovecot-pop3d) holding 2,000 messages.

The Dovecot mailbox is a Maildir whose dovecot-uidlist gives every message a custom POP3 UIDL
("P" field, as a migration into Dovecot leaves them). Shows:
  - getmail (Debian's getmail6) fetches all 2,000 from Dovecot;
  - an offline import over STLS (certificate checked against the test CA and the name
    localhost) killed with SIGKILL after its first batch, run again over implicit TLS with a
    Dovecot master-user login, completes without a duplicate; a third run imports nothing;
  - the same mailbox imported into a second account through the running server's admin socket;
  - with Dovecot stopped and posthaste on Dovecot's port, both accounts' UIDL lists equal
    Dovecot's and every message's RETR bytes (wire form, dot-stuffing included) are Dovecot's;
  - getmail pointed at posthaste (same host, port and user) fetches nothing.
About a minute on 2 cores.
"""

import os
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir

MESSAGES = 2000
USER = "mover@import.test"
COPY = "copy@import.test"
SOURCE_PASSWORD = "dovecot secret"
MASTER = "admin"
MASTER_PASSWORD = "master secret"
# The accounts keep their passwords in a move (`import passwd-file`): getmail's rc is unchanged.
POSTHASTE_PASSWORD = SOURCE_PASSWORD
TIMEOUT_S = 120
MAIL_UID = 8  # Debian's "mail" user owns the Maildir (Dovecot refuses root)


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def message_text(i):
  """Message i (LF line ends, as Maildir files are): varied enough to catch mistakes."""
  lines = ["Return-Path: <sender%d@example.org>" % i,
           "From: Sender %d <sender%d@example.org>" % (i, i),
           "To: %s" % USER,
           "Subject: message %d" % i,
           "Message-ID: <%d@import.test>" % i, ""]
  if i % 7 == 0:
    lines += [".", "..two dots", ".leading dot", "a line . with a dot"]
  if i % 11 == 0:
    lines += ["From the start of a line", ">From quoted"]
  if i % 13 == 0:
    lines += ["8-bit: caf\u00e9 \u2603"]
  if i % 50 == 0:
    lines += ["L" * 3000]
  if i % 500 == 0:
    lines += ["%05d %s" % (n, "x" * 90) for n in range(1000)]  # ~100 KB
  if i % 100 != 0:
    lines += ["body of message %d" % i]
  return ("\n".join(lines) + "\n").encode("utf-8")


def custom_uidl(i):
  return "legacy-%05d-%08x%s" % (i, (i * 2654435761) % (1 << 32), "!#$" if i % 9 == 0 else "")


class RawPop3:
  """A minimal POP3 client that keeps replies in wire form (poplib undoes dot-stuffing)."""

  def __init__(self, port, user, password):
    self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    self.buffer = b""
    assert self.line().startswith(b"+OK")
    for command in (b"USER " + user.encode(), b"PASS " + password.encode()):
      status, _ = self.command(command)
      assert status.startswith(b"+OK"), status

  def line(self):
    while b"\r\n" not in self.buffer:
      chunk = self.sock.recv(65536)
      if not chunk:
        raise AssertionError("connection closed")
      self.buffer += chunk
    line, self.buffer = self.buffer.split(b"\r\n", 1)
    return line + b"\r\n"

  def command(self, command, multiline=False):
    self.sock.sendall(command + b"\r\n")
    status = self.line()
    if not (multiline and status.startswith(b"+OK")):
      return status, None
    body = []
    while True:
      line = self.line()
      if line == b".\r\n":
        return status, b"".join(body)
      body.append(line)

  def uidls(self):
    _, body = self.command(b"UIDL", multiline=True)
    return [line.split(b" ", 1)[1].strip().decode() for line in body.splitlines()]

  def all_messages(self):
    count = len(self.uidls())
    return [self.command(b"RETR %d" % n, multiline=True)[1] for n in range(1, count + 1)]

  def quit(self):
    self.command(b"QUIT")
    self.sock.close()


class LmtpSink(socketserver.StreamRequestHandler):
  """Takes getmail's deliveries and counts them (what getmail fetched is what it delivered)."""

  def handle(self):
    self.wfile.write(b"220 sink LMTP\r\n")
    recipients = 0
    while True:
      line = self.rfile.readline(65536)
      verb = line[:4].upper()
      if not line or verb == b"QUIT":
        self.wfile.write(b"221 bye\r\n")
        return
      if verb == b"LHLO":
        self.wfile.write(b"250-sink\r\n250 8BITMIME\r\n")
      elif verb == b"RCPT":
        recipients += 1
        self.wfile.write(b"250 ok\r\n")
      elif verb == b"DATA":
        self.wfile.write(b"354 go ahead\r\n")
        while line and line != b".\r\n":
          line = self.rfile.readline(1 << 20)
        self.server.delivered += 1
        self.wfile.write(b"250 delivered\r\n" * max(recipients, 1))
        recipients = 0
      else:
        self.wfile.write(b"250 ok\r\n")


class ImportPop3Test(unittest.TestCase):

  def setUp(self):
    self.work = make_temp_dir("import-pop3-")
    # Dovecot's side lives in /tmp: its sockets sit under base_dir and a Unix socket path has 108
    # bytes at most, and its mail and auth users must reach the files (the test's TMPDIR may be
    # under /root, which they cannot enter).
    self.dovecot_dir = tempfile.mkdtemp(prefix="phdv-", dir="/tmp")
    os.chmod(self.dovecot_dir, 0o755)
    self.addCleanup(shutil.rmtree, self.dovecot_dir, True)
    self.pop3_port = free_port()
    self.pop3s_port = free_port()
    self.make_certificate()
    self.make_maildir()
    self.start_dovecot()
    # getmail's forking destinations (Maildir, Mboxrd, MDA_external) wait for each child with
    # a race that loses one in a few dozen SIGCHLDs on a busy machine; MDA_lmtp does not fork.
    self.lmtp_sink = socketserver.ThreadingTCPServer(("127.0.0.1", 0), LmtpSink)
    self.lmtp_sink.daemon_threads = True
    self.lmtp_sink.delivered = 0
    threading.Thread(target=self.lmtp_sink.serve_forever, daemon=True).start()
    self.addCleanup(self.lmtp_sink.server_close)
    self.addCleanup(self.lmtp_sink.shutdown)

  def make_certificate(self):
    self.cert = os.path.join(self.work, "cert.pem")
    self.key = os.path.join(self.work, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", self.key, "-out",
                    self.cert, "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

  def make_maildir(self):
    home = os.path.join(self.dovecot_dir, "home")
    maildir = os.path.join(home, "Maildir")
    for sub in ("cur", "new", "tmp"):
      os.makedirs(os.path.join(maildir, sub))
    uidlist = ["3 V1700000000 N%d G0123456789abcdef0123456789abcdef" % (MESSAGES + 1)]
    for i in range(1, MESSAGES + 1):
      base = "%d.M%dP1.oldhost" % (1700000000 + i, i)
      with open(os.path.join(maildir, "cur", base + ":2,S"), "wb") as f:
        f.write(message_text(i))
      uidlist.append("%d P%s :%s" % (i, custom_uidl(i), base))
    with open(os.path.join(maildir, "dovecot-uidlist"), "w") as f:
      f.write("\n".join(uidlist) + "\n")
    for root, dirs, files in os.walk(home):
      for name in dirs + files:
        os.chown(os.path.join(root, name), MAIL_UID, MAIL_UID)
    os.chown(home, MAIL_UID, MAIL_UID)
    self.home = home

  def start_dovecot(self):
    d = self.dovecot_dir
    os.makedirs(os.path.join(d, "run"))
    os.makedirs(os.path.join(d, "state"))
    with open(os.path.join(d, "passwd"), "w") as f:
      f.write("%s:{PLAIN}%s:%d:%d::%s\n" % (USER, SOURCE_PASSWORD, MAIL_UID, MAIL_UID, self.home))
    with open(os.path.join(d, "masters"), "w") as f:
      f.write("%s:{PLAIN}%s\n" % (MASTER, MASTER_PASSWORD))
    conf = os.path.join(d, "dovecot.conf")
    with open(conf, "w") as f:
      f.write("""# A private Dovecot instance on loopback, written by tests/import_pop3_test.py.
instance_name = posthaste-import-test
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain
auth_master_user_separator = *
first_valid_uid = {uid}
last_valid_uid = {uid}
mail_location = maildir:~/Maildir
pop3_no_flag_updates = yes
passdb {{
  driver = passwd-file
  args = {d}/masters
  master = yes
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = passwd-file
  args = {d}/passwd
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s}
  }}
}}
""".format(d=d, cert=self.cert, key=self.key, uid=MAIL_UID, pop3=self.pop3_port,
           pop3s=self.pop3s_port))
    self.dovecot_log = os.path.join(d, "dovecot.log")
    self.dovecot = subprocess.Popen(["/usr/sbin/dovecot", "-F", "-c", conf])
    self.addCleanup(self.stop_dovecot)
    deadline = time.time() + 30
    while time.time() < deadline and self.dovecot.poll() is None:
      try:
        with socket.create_connection(("127.0.0.1", self.pop3_port), timeout=2) as s:
          if s.recv(100).startswith(b"+OK"):
            return
      except OSError:
        time.sleep(0.1)
    self.fail("Dovecot did not answer:\n" + self.read_dovecot_log())

  def read_dovecot_log(self):
    try:
      with open(self.dovecot_log) as f:
        return f.read()[-3000:]
    except OSError:
      return "(no log)"

  def stop_dovecot(self):
    if self.dovecot.poll() is None:
      self.dovecot.terminate()
      self.dovecot.wait(timeout=30)

  def getmail(self, getmaildir):
    rc = os.path.join(getmaildir, "getmailrc")
    with open(rc, "w") as f:
      f.write("[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = %d\n"
              "username = %s\npassword = %s\ntimeout = 60\n\n"
              "[destination]\ntype = MDA_lmtp\nhost = 127.0.0.1\nport = %d\noverride = %s\n\n"
              "[options]\nverbose = 1\nread_all = false\ndelete = false\n"
              "delivered_to = false\nreceived = false\n"
              % (self.pop3_port, USER, SOURCE_PASSWORD, self.lmtp_sink.server_address[1], USER))
    result = subprocess.run([shutil.which("getmail") or "/usr/bin/getmail", "--getmaildir",
                             getmaildir, "--rcfile", rc], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=TIMEOUT_S, check=False)
    log = result.stdout.decode("utf-8", "replace")
    self.assertEqual(result.returncode, 0, log)
    return log

  def import_argv(self, server, address, port, tls, source_user):
    return [server.binary, "import", "pop3", "--data_dir=" + server.data_dir,
            "--from=localhost:%d" % port, "--tls=" + tls, "--ca_file=" + self.cert,
            "--source_user=" + source_user, address]

  def run_import(self, argv, password):
    result = subprocess.run(argv, input=password.encode() + b"\n", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=False)
    out, err = result.stdout.decode(), result.stderr.decode()
    self.assertEqual(result.returncode, 0, err + self.read_dovecot_log())
    return out, err

  def import_killed_after_first_batch(self, argv):
    """Starts the import, SIGKILLs it once a batch is stored; returns messages done by then."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdin.write(SOURCE_PASSWORD.encode() + b"\n")
    proc.stdin.close()
    deadline = time.time() + TIMEOUT_S
    seen = b""
    done = 0
    while done == 0 and time.time() < deadline:
      ready, _, _ = select.select([proc.stderr], [], [], 1)
      if not ready:
        continue
      chunk = os.read(proc.stderr.fileno(), 4096)
      if not chunk:
        break
      seen += chunk
      for line in seen.decode().splitlines():
        if line.startswith("posthaste: import: "):
          done = max(done, int(line.split()[2].split("/")[0]))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    self.assertGreater(done, 0, seen.decode())
    self.assertLess(done, MESSAGES, "the import ended before it could be interrupted")
    return done

  def test_move_from_dovecot(self):
    getmaildir = make_temp_dir("getmail-")
    log = self.getmail(getmaildir)
    self.assertIn("%d messages" % MESSAGES, log)
    self.assertEqual(self.lmtp_sink.delivered, MESSAGES)

    source = RawPop3(self.pop3_port, USER, SOURCE_PASSWORD)
    source_uidls = source.uidls()
    source_messages = source.all_messages()
    source.quit()
    self.assertEqual(source_uidls, [custom_uidl(i) for i in range(1, MESSAGES + 1)])

    server = PosthasteServer()
    self.addCleanup(server.stop)
    server.add_user(USER, POSTHASTE_PASSWORD)
    server.add_user(COPY, POSTHASTE_PASSWORD)

    # Refusals with a clear error and nothing stored: plaintext to a host that is not loopback
    # (refused before connecting), and Dovecot's certificate without its CA.
    result = subprocess.run(
        [server.binary, "import", "pop3", "--data_dir=" + server.data_dir,
         "--from=192.0.2.1:110", "--tls=none", USER], input=b"x\n", stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=False)
    self.assertEqual(result.returncode, 1)
    self.assertIn(b"only for a loopback source", result.stderr)
    argv = self.import_argv(server, USER, self.pop3_port, "stls", USER)
    argv.remove("--ca_file=" + self.cert)
    result = subprocess.run(argv, input=SOURCE_PASSWORD.encode() + b"\n",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT_S,
                            check=False)
    self.assertEqual(result.returncode, 1)
    self.assertIn(b"is not trusted", result.stderr)
    self.assertEqual(server.mailbox_stats(USER)[0], 0)

    # Offline, STLS, the user's own login; killed after its first stored batch.
    done = self.import_killed_after_first_batch(
        self.import_argv(server, USER, self.pop3_port, "stls", USER))
    stored_after_kill = server.mailbox_stats(USER)[0]
    self.assertGreater(stored_after_kill, 0)
    # Run again: implicit TLS (995 style), a Dovecot master-user login.
    out, err = self.run_import(
        self.import_argv(server, USER, self.pop3s_port, "implicit", USER + "*" + MASTER),
        MASTER_PASSWORD)
    self.assertIn("imported %d messages" % (MESSAGES - stored_after_kill), out)
    self.assertIn("skipped %d already present" % stored_after_kill, out)
    self.assertIn("posthaste: import: %d/%d messages" % (MESSAGES, MESSAGES), err)
    self.assertGreaterEqual(stored_after_kill, done)
    self.assertEqual(server.mailbox_stats(USER)[0], MESSAGES)
    out, _ = self.run_import(self.import_argv(server, USER, self.pop3_port, "stls", USER),
                             SOURCE_PASSWORD)
    self.assertIn("imported 0 messages", out)

    # Online: through the running server's admin socket, into a second account.
    server.start()
    out, _ = self.run_import(self.import_argv(server, COPY, self.pop3_port, "stls", USER),
                             SOURCE_PASSWORD)
    self.assertIn("imported %d messages" % MESSAGES, out)
    server.stop()

    # The move: Dovecot goes, posthaste takes its port.
    self.stop_dovecot()
    server.start(pop3_port=self.pop3_port)
    for address in (USER, COPY):
      moved = RawPop3(self.pop3_port, address, POSTHASTE_PASSWORD)
      self.assertEqual(moved.uidls(), source_uidls, address)
      messages = moved.all_messages()
      moved.quit()
      self.assertEqual(len(messages), MESSAGES)
      for n, (got, want) in enumerate(zip(messages, source_messages), start=1):
        self.assertTrue(got == want, "%s message %d differs:\n%r\n%r" % (address, n, got[:300],
                                                                        want[:300]))
    # getmail's memory is keyed by server, port and user: all the same, so nothing is new.
    log = self.getmail(getmaildir)
    self.assertIn("0 messages", log)
    self.assertEqual(self.lmtp_sink.delivered, MESSAGES)


if __name__ == "__main__":
  unittest.main()
