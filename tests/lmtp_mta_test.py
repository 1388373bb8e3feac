"""Real MTAs delivering into posthaste over LMTP: swaks and a Postfix instance from Debian.

swaks --protocol LMTP: a message to a known and an unknown recipient gets one reply per
accepted RCPT after DATA, and the copy comes back over POP3 byte-exact.

Postfix: a private instance (its own config, queue and data directories under the test's
temporary directory; smtpd on 127.0.0.1 at a free port; every message for example.test goes
to `lmtp:inet:127.0.0.1:<posthaste's LMTP port>`). A message is sent into Postfix over SMTP to
two recipients, Postfix delivers it over LMTP, and both copies are read back over POP3: the
original headers and body byte-exact after the lines Postfix and the LMTP server put in front
(Return-Path, Received). The Postfix master runs in the foreground as a child of the test
(`postfix start-fg`), so it cannot outlive it; it is stopped with `postfix stop`.

Postfix's master must run as root and its data directory must belong to the `postfix` user,
which Bazel's linux-sandbox (a user namespace mapping only the caller's uid) cannot provide, so
the target is tagged `no-sandbox`: Bazel runs it as a plain local process. Where even that is
impossible (not root, no postfix user) the Postfix test is skipped, naming the reason.
"""

import os
import poplib
import pwd
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
import unittest

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, wire_form

PASSWORD = "mta test password"
TIMEOUT_S = 60
DELIVERY_WAIT_S = 60

ORIGINAL = (b"From: Sender <sender@origin.test>\r\n"
            b"To: first@example.test, second@example.test\r\n"
            b"Subject: through postfix\r\n"
            b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
            b"Message-ID: <postfix-lmtp-test@origin.test>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n"
            b"\r\n"
            b"First line.\r\n"
            b".a line starting with a dot\r\n"
            b"8-bit: \xc3\xa9t\xc3\xa9\r\n"
            b"\r\n"
            b"Last line.\r\n")

MASTER_CF = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mta.test
mydomain = mta.test
myorigin = mta.test
mydestination =
mynetworks = 127.0.0.0/8
relay_domains = example.test
transport_maps = inline:{{ example.test=lmtp:inet:127.0.0.1:{lmtp_port} }}
smtpd_relay_restrictions = permit_mynetworks reject
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
smtputf8_enable = no
biff = no
lmtp_connect_timeout = 10s
"""


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# Bazel's test PATH lacks the sbin directories.
POSTFIX = shutil.which("postfix", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def postfix_unavailable():
  if POSTFIX is None:
    return "postfix is not installed (Debian package postfix, tools/lib/deps.sh)"
  if os.geteuid() != 0:
    return "the Postfix master must run as root"
  try:
    pwd.getpwnam("postfix")
  except KeyError:
    return "no postfix user"
  return None


class MtaTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer(shards=2)
    for user in ("first", "second", "swaks"):
      cls.server.add_user(user + "@example.test", PASSWORD)
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def retr_all(self, user):
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    try:
      pop.user(user)
      pop.pass_(PASSWORD)
      out = []
      for i in range(1, pop.stat()[0] + 1):
        _, lines, _ = pop.retr(i)
        out.append(b"".join(line + b"\r\n" for line in lines))
      return out
    finally:
      pop.quit()

  def test_swaks_lmtp(self):
    if shutil.which("swaks") is None:
      self.skipTest("swaks is not installed")
    raw = (b"From: s@origin.test\r\nTo: swaks@example.test\r\nSubject: swaks\r\n\r\n"
           b"body line\r\n.dot line\r\n")
    data = make_temp_dir("swaks-") + "/message.eml"
    with open(data, "wb") as f:
      f.write(raw[:-2])  # swaks ends the data with CRLF . CRLF itself
    result = subprocess.run([
        "swaks", "--protocol", "LMTP", "--server", "127.0.0.1",
        "--port", str(self.server.lmtp_port), "--from", "s@origin.test",
        "--to", "swaks@example.test,nobody@example.test", "--data", data, "--timeout", "30"
    ], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT_S, check=False)
    transcript = result.stdout.decode("utf-8", "replace")
    # swaks exits non-zero when a recipient is refused; the transcript is what matters.
    self.assertRegex(transcript, r"<\*\* +550 5\.1\.1", transcript)
    self.assertRegex(transcript, r"<- +250 2\.1\.5 <swaks@example\.test> delivered", transcript)
    self.assertRegex(transcript, r"<- +221 ", transcript)
    self.assertEqual(self.retr_all("swaks@example.test"),
                     [b"Return-Path: <s@origin.test>\r\n" + wire_form(raw)])

  def test_postfix_delivers_over_lmtp(self):
    reason = postfix_unavailable()
    if reason:
      self.skipTest(reason)
    # Under /tmp, not $TEST_TMPDIR: Postfix's UNIX sockets live in its queue directory, and
    # sun_path holds only 108 bytes.
    root = tempfile.mkdtemp(prefix="ph-postfix-")
    self.addCleanup(shutil.rmtree, root, True)
    conf = os.path.join(root, "conf")
    for d in ("conf", "queue", "data"):
      os.mkdir(os.path.join(root, d))
    os.chmod(root, 0o755)
    postfix = pwd.getpwnam("postfix")
    try:
      os.chown(os.path.join(root, "data"), postfix.pw_uid, postfix.pw_gid)
    except OSError as e:  # e.g. a user-namespace sandbox that maps only our uid
      self.skipTest("cannot give the Postfix data directory to the postfix user: %s" % e)
    smtp_port = free_port()
    with open(os.path.join(conf, "main.cf"), "w") as f:
      f.write(MAIN_CF.format(root=root, lmtp_port=self.server.lmtp_port))
    with open(os.path.join(conf, "master.cf"), "w") as f:
      f.write(MASTER_CF.format(smtp_port=smtp_port))
    maillog = os.path.join(root, "maillog")

    master = subprocess.Popen([POSTFIX, "-c", conf, "start-fg"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def stop_postfix():
      subprocess.run([POSTFIX, "-c", conf, "stop"], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, timeout=TIMEOUT_S, check=False)
      try:
        master.wait(TIMEOUT_S)
      except subprocess.TimeoutExpired:
        master.kill()
        master.wait(10)
      master.stdout.close()

    self.addCleanup(stop_postfix)

    def log():
      try:
        with open(maillog, "r", errors="replace") as f:
          return f.read()
      except FileNotFoundError:
        return "(no maillog)"

    # Wait (bounded) for smtpd to accept.
    deadline = time.monotonic() + TIMEOUT_S
    while True:
      if master.poll() is not None:
        self.fail("postfix exited with %d:\n%s\n%s" %
                  (master.returncode, master.stdout.read().decode(errors="replace"), log()))
      try:
        smtp = smtplib.SMTP("127.0.0.1", smtp_port, timeout=TIMEOUT_S)
        break
      except OSError:
        if time.monotonic() > deadline:
          self.fail("postfix smtpd did not come up:\n" + log())
        time.sleep(0.2)
    refused = smtp.sendmail("sender@origin.test", ["first@example.test", "second@example.test"],
                            ORIGINAL)
    smtp.quit()
    self.assertEqual(refused, {})

    deadline = time.monotonic() + DELIVERY_WAIT_S
    while len(re.findall(r"status=sent", log())) < 2:
      if time.monotonic() > deadline:
        self.fail("postfix did not deliver both copies over LMTP:\n" + log())
      time.sleep(0.2)
    self.assertIn("relay=127.0.0.1[127.0.0.1]:%d" % self.server.lmtp_port, log())
    self.assertIn("250 2.1.5 <first@example.test> delivered", log())

    for user in ("first@example.test", "second@example.test"):
      stored = self.retr_all(user)
      self.assertEqual(len(stored), 1, user)
      message = stored[0]
      self.assertTrue(message.startswith(b"Return-Path: <sender@origin.test>\r\n"), message[:200])
      # Postfix adds its Received: line in front; everything it was given follows unchanged.
      self.assertTrue(message.endswith(ORIGINAL), message)
      added = message[:-len(ORIGINAL)].decode("ascii")
      self.assertRegex(added, r"^Return-Path: <sender@origin\.test>\r\nReceived: from ")
      self.assertIn("by mta.test (Postfix)", added)


if __name__ == "__main__":
  unittest.main()
