"""OAUTHBEARER (RFC 7628) and XOAUTH2 against the real server, with tokens signed by openssl.

A tenant's issuer, audience and JWKS come from `--oauth_config`. Tokens are JWTs signed at test
time with the openssl command (RS256, ES256 and EdDSA keys; the public halves written as a
JWKS). Shows, over pop3s: CAPA offers OAUTHBEARER and XOAUTH2 only over TLS; curl's
`--oauth2-bearer` (OAUTHBEARER: Debian's curl picks it whenever it is offered) and a raw XOAUTH2
client log in to the token's mailbox with
each algorithm; a wrong audience, an expired token, another user's token, another tenant's
token and a token of a key not in the JWKS get the RFC 7628 error JSON challenge, then
`-ERR [AUTH]`, counted by reason; replacing the JWKS file (key rotation) is picked up without a
restart: the old key's tokens stop working and the new key's work.
"""

import base64
import json
import os
import poplib
import socket
import ssl
import subprocess
import time
import unittest

from tests.testing import messages
from tests.testing.posthaste_server import PosthasteServer, make_temp_dir, metric_sum, wire_form
from tests.testing.tls_certs import TestPki

TIMEOUT_S = 60
PASSWORD = "unused password"
TENANT = "oauth.test"
ISSUER = "https://idp.oauth.test/"
AUDIENCE = "pop.oauth.test"
ANN = "ann@oauth.test"
BOB = "bob@oauth.test"
CARL = "carl@plain.test"  # a tenant without OAuth


def b64url(data):
  return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args, data=None):
  result = subprocess.run(["openssl", *args], input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=TIMEOUT_S, check=False)
  if result.returncode != 0:
    raise AssertionError("openssl %s: %s" % (" ".join(args), result.stderr.decode()))
  return result.stdout


def der_ecdsa_to_raw(der):
  """An ASN.1 ECDSA-Sig-Value (SEQUENCE of two INTEGERs) as JWS's 64-byte r || s."""
  assert der[0] == 0x30
  pos = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
  out = b""
  for _ in range(2):
    assert der[pos] == 0x02
    length = der[pos + 1]
    value = der[pos + 2:pos + 2 + length].lstrip(b"\0")
    out += value.rjust(32, b"\0")
    pos += 2 + length
  return out


class SigningKey:
  """A private key made by openssl, its JWK, and JWTs signed with it."""

  def __init__(self, directory, kid, alg):
    self.kid, self.alg = kid, alg
    self.path = os.path.join(directory, kid + ".pem")
    if alg == "RS256":
      openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
              self.path)
      modulus = openssl("rsa", "-in", self.path, "-noout", "-modulus").decode().strip()
      n = bytes.fromhex(modulus.split("=", 1)[1])
      self.jwk = {"kty": "RSA", "n": b64url(n), "e": "AQAB"}
    elif alg == "ES256":
      openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
              self.path)
      point = openssl("pkey", "-in", self.path, "-pubout", "-outform", "DER")[-65:]
      self.jwk = {"kty": "EC", "crv": "P-256", "x": b64url(point[1:33]),
                  "y": b64url(point[33:])}
    else:
      openssl("genpkey", "-algorithm", "ED25519", "-out", self.path)
      public = openssl("pkey", "-in", self.path, "-pubout", "-outform", "DER")[-32:]
      self.jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(public)}
    self.jwk.update({"kid": kid, "alg": alg, "use": "sig"})

  def token(self, mailbox, audience=AUDIENCE, issuer=ISSUER, expires_in=600):
    now = int(time.time())
    header = b64url(json.dumps({"alg": self.alg, "kid": self.kid, "typ": "JWT"}).encode())
    payload = b64url(json.dumps({"iss": issuer, "aud": audience, "email": mailbox,
                                 "iat": now - 5, "exp": now + expires_in}).encode())
    signing_input = ("%s.%s" % (header, payload)).encode()
    if self.alg == "RS256":
      signature = openssl("dgst", "-sha256", "-sign", self.path, data=signing_input)
    elif self.alg == "ES256":
      signature = der_ecdsa_to_raw(
          openssl("dgst", "-sha256", "-sign", self.path, data=signing_input))
    else:
      data_path = self.path + ".in"
      with open(data_path, "wb") as f:
        f.write(signing_input)
      signature = openssl("pkeyutl", "-sign", "-inkey", self.path, "-rawin", "-in", data_path)
    return "%s.%s" % (signing_input.decode(), b64url(signature))


class SaslOAuthTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.keys_dir = make_temp_dir("oauth-keys-")
    cls.keys = {alg: SigningKey(cls.keys_dir, "k-" + alg.lower(), alg)
                for alg in ("RS256", "ES256", "EdDSA")}
    cls.rogue = SigningKey(cls.keys_dir, "k-rogue", "RS256")  # never published
    cls.jwks_path = os.path.join(cls.keys_dir, "oauth.test.jwks.json")
    cls.publish([k.jwk for k in cls.keys.values()])
    config = os.path.join(cls.keys_dir, "oauth.json")
    with open(config, "w") as f:
      json.dump({"tenants": {TENANT: {"issuer": ISSUER, "audiences": [AUDIENCE],
                                      "jwks_path": "oauth.test.jwks.json",
                                      "scope": "mail"}}}, f)
    pki = TestPki(make_temp_dir("oauth-pki-"))
    cls.ca = pki.ca_cert
    cert, key = pki.issue("server", ["localhost"], ip_addresses=["127.0.0.1"])
    cls.server = PosthasteServer(extra_args=[
        "--tls_cert=" + cert, "--tls_key=" + key, "--pop3s_listen=127.0.0.1:0",
        "--oauth_config=" + config, "--tls_reload_check_s=1", "--auth_failure_delay_ms=0"])
    for user in (ANN, BOB, CARL):
      cls.server.add_user(user, PASSWORD)
    cls.ann_mail = [raw for _, raw in messages.everyday_messages()[:2]]
    for raw in cls.ann_mail:
      cls.server.deliver(ANN, raw)
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  @classmethod
  def publish(cls, jwks):
    with open(cls.jwks_path + ".new", "w") as f:
      json.dump({"keys": jwks}, f)
    os.replace(cls.jwks_path + ".new", cls.jwks_path)  # as a cron fetch would

  def tls_session(self):
    ctx = ssl.create_default_context(cafile=self.ca)
    raw = socket.create_connection(("127.0.0.1", self.server.pop3s_port), TIMEOUT_S)
    tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    reader = tls.makefile("rb")
    self.assertTrue(reader.readline().startswith(b"+OK"))
    return tls, reader

  def xoauth2(self, user, token):
    """(first reply, reply to the client's empty response or None) of AUTH XOAUTH2."""
    tls, reader = self.tls_session()
    with tls:
      message = ("user=%s\x01auth=Bearer %s\x01\x01" % (user, token)).encode()
      tls.sendall(b"AUTH XOAUTH2 " + base64.b64encode(message) + b"\r\n")
      first = reader.readline()
      second = None
      if first.startswith(b"+ "):
        tls.sendall(b"\r\n")
        second = reader.readline()
      tls.sendall(b"QUIT\r\n")
      return first, second

  def curl(self, user, token, path="", mechanism="OAUTHBEARER"):
    argv = ["curl", "-sS", "--max-time", str(TIMEOUT_S), "--cacert", self.ca,
            "--oauth2-bearer", token, "--login-options", "AUTH=" + mechanism, "-u", user + ":",
            "pop3s://127.0.0.1:%d/%s" % (self.server.pop3s_port, path)]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=TIMEOUT_S + 10, check=False)

  def failures(self, mechanism, reason):
    return metric_sum(self.server.metrics(), "posthaste_auth_failures_total",
                      mechanism=mechanism, reason=reason)

  def test_offered_over_tls_only(self):
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    self.assertNotIn("OAUTHBEARER", pop.capa().get("SASL", []))
    pop.quit()
    tls, reader = self.tls_session()
    with tls:
      tls.sendall(b"CAPA\r\n")
      lines = []
      while True:
        line = reader.readline()
        if line in (b".\r\n", b""):
          break
        lines.append(line)
      sasl = [l for l in lines if l.startswith(b"SASL")][0].split()
      self.assertIn(b"OAUTHBEARER", sasl)
      self.assertIn(b"XOAUTH2", sasl)

  def test_curl_oauthbearer_with_each_algorithm(self):
    # Debian's curl (7.88) picks OAUTHBEARER whenever the server offers it, even with
    # AUTH=XOAUTH2 in --login-options; XOAUTH2 is shown by the raw client below.
    for alg, key in self.keys.items():
      with self.subTest(alg):
        result = self.curl(ANN, key.token(ANN), "1")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, wire_form(self.ann_mail[0]))
    self.assertGreaterEqual(metric_sum(self.server.metrics(), "posthaste_auth_successes_total",
                                       mechanism="OAUTHBEARER"), 3)

  def test_xoauth2_logs_in(self):
    first, _ = self.xoauth2(ANN, self.keys["ES256"].token(ANN))
    self.assertTrue(first.startswith(b"+OK"), first)

  def test_bad_tokens_get_the_error_json_then_err(self):
    key = self.keys["RS256"]
    cases = [
        ("wrong audience", ANN, key.token(ANN, audience="someone.else"), "token_invalid"),
        ("expired", ANN, key.token(ANN, expires_in=-3600), "token_expired"),
        ("another user's token", BOB, key.token(ANN), "token_invalid"),
        ("a tenant without OAuth", CARL, key.token(CARL), "token_invalid"),
        ("a key not in the JWKS", ANN, self.rogue.token(ANN), "token_invalid"),
    ]
    for what, user, token, reason in cases:
      with self.subTest(what):
        before = self.failures("XOAUTH2", reason)
        first, second = self.xoauth2(user, token)
        self.assertTrue(first.startswith(b"+ "), first)
        error = json.loads(base64.b64decode(first[2:].strip()))
        self.assertEqual(error["status"], "401")
        self.assertIsNotNone(second)
        self.assertTrue(second.startswith(b"-ERR [AUTH]"), second)
        self.assertEqual(self.failures("XOAUTH2", reason), before + 1)
    # The operator's log says why each token failed (the client only got the error JSON).
    details = [line for line in self.server.stderr_text().splitlines()
               if '"sasl failed"' in line and "mechanism=XOAUTH2" in line]
    self.assertGreaterEqual(len(details), len(cases), self.server.stderr_text()[-3000:])
    self.assertTrue(any("expired" in line.lower() for line in details), details)
    # OAUTHBEARER's error JSON (RFC 7628 section 3.2.2) through curl: the login fails.
    result = self.curl(ANN, key.token(ANN, audience="someone.else"))
    self.assertNotEqual(result.returncode, 0, result.stdout)

  def test_zz_key_rotation_is_picked_up_without_a_restart(self):
    old = self.keys["EdDSA"]
    new = SigningKey(self.keys_dir, "k-new", "EdDSA")
    self.publish([k.jwk for alg, k in self.keys.items() if alg != "EdDSA"] + [new.jwk])
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
      if self.xoauth2(ANN, new.token(ANN))[0].startswith(b"+OK"):
        break
      time.sleep(0.5)
    else:
      self.fail("the new key was not picked up")
    first, second = self.xoauth2(ANN, old.token(ANN))
    self.assertTrue(first.startswith(b"+ "), first)
    self.assertIn("oauth keys reloaded", self.server.stderr_text())


if __name__ == "__main__":
  unittest.main()
