"""Test messages for the client integration tests: the cases real mail throws at a POP3 server.

Each is (name, raw bytes as an MTA would hand them to `deliver`). Every message has a unique
Message-ID header, so clients that rewrite headers can still be matched to what was delivered.
Deterministic: the same bytes on every run.
"""

import random


def _message(name, headers, body):
  head = b"".join(h + b"\r\n" for h in headers)
  return (name, b"Message-ID: <%s@itest.example.test>\r\n%s\r\n%s" %
          (name.encode("ascii"), head, body))


def big_message(name="big", size=10 * 1024 * 1024, seed=4):
  """About `size` octets of 76-character lines, one in 17 starting with a dot."""
  rng = random.Random(seed)
  alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/"
  lines = []
  total = 0
  i = 0
  while total < size:
    line = bytes(rng.choice(alphabet) for _ in range(76))
    if i % 17 == 0:
      line = b"." + line[1:]
    lines.append(line)
    total += len(line) + 2
    i += 1
  return _message(name, [b"Subject: ten mebibytes", b"Content-Type: text/plain"],
                  b"\r\n".join(lines) + b"\r\n")


def everyday_messages():
  """Small messages covering dot-stuffing, binary bytes, bare LF, missing final newline."""
  return [
      _message("plain", [b"From: Alice <alice@example.test>", b"To: Bob <bob@example.test>",
                         b"Subject: hello"], b"Hello Bob,\r\n\r\nsee you at noon.\r\n"),
      _message("dots", [b"Subject: lines that begin with a dot"],
               b".\r\n..\r\n.hidden\r\n..two dots\r\n. space\r\nmiddle . dot\r\n.\r\n"),
      _message("binary", [b"Subject: 8-bit \xe4\xf6\xfc and \xc3\xa9",
                          b"Content-Transfer-Encoding: 8bit"],
               b"NUL here:\x00:there\r\n\x00\x00\x00\r\nhigh bytes \x80\x81\xfe\xff\r\n"
               b"\xef\xbb\xbfUTF-8 BOM line\r\n\x01\x02\x1b[0m control\r\n"),
      ("bare_lf", b"Message-ID: <bare_lf@itest.example.test>\nSubject: unix line ends\n\n"
                  b"first\nsecond\n.dotted\nno final newline"),
      _message("long_line", [b"Subject: a 1500-octet line"], b"x" * 1500 + b"\r\nend\r\n"),
      _message("from_line", [b"Subject: mbox quoting"],
               b"From the start of a line\r\n>From quoted already\r\nok\r\n"),
      _message("headers_only", [b"Subject: no body"], b""),
  ]
