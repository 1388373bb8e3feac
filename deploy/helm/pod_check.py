#!/usr/bin/python3
"""Talks to the chart's Pod running under `podman kube play` (deploy/helm/test), from the host.

  pod_check.py serve PORTS_JSON CA.pem TENANT_CERT.pem ADDRESS PASSWORD TENANT_NAME
      /healthz and /readyz 200 and posthaste_ready 1 on the metrics port; one message delivered
      over LMTP; a POP3 login after STLS (chain checked against CA.pem, name
      mail.example.test) with a byte-exact RETR; POP3S with SNI TENANT_NAME presents
      TENANT_CERT.pem (the --tls_cert_dir Secret).
  pod_check.py drain PORTS_JSON
      Run while the container is being stopped (SIGTERM): /readyz turns 503 while the POP3
      listener still greets new clients (--drain_delay_s), then the listener closes.

PORTS_JSON: chart_tools.py pod's output ({"ports": {name: host port}}). Every wait is bounded;
exit status 1 with the reason on failure.
"""

import http.client
import json
import poplib
import smtplib
import socket
import ssl
import sys
import time

HOST = "127.0.0.1"
TIMEOUT_S = 15
DEFAULT_NAME = "mail.example.test"
SENDER = "helm-test@example.test"
MESSAGE = (b"From: helm-test@example.test\r\nTo: {to}\r\nSubject: from the chart's pod\r\n"
           b"Message-ID: <helm-pod-check@example.test>\r\n\r\n"
           b"Delivered over LMTP to the Pod rendered from the chart.\r\n"
           b".a line that starts with a dot\r\n")


def fail(text):
  print("FAIL: " + text, file=sys.stderr)
  sys.exit(1)


def http_get(port, path):
  conn = http.client.HTTPConnection(HOST, port, timeout=TIMEOUT_S)
  try:
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()
  finally:
    conn.close()


def wait_until(predicate, timeout_s, what):
  deadline = time.monotonic() + timeout_s
  while True:
    try:
      if predicate():
        return
    except OSError:
      pass
    if time.monotonic() > deadline:
      fail("timed out after %d s waiting for %s" % (timeout_s, what))
    time.sleep(0.2)


def greeting(port):
  """The POP3 greeting of a new connection, or None when the connection is refused."""
  try:
    with socket.create_connection((HOST, port), timeout=TIMEOUT_S) as s:
      return s.recv(512)
  except ConnectionRefusedError:
    return None


def check_serve(ports, ca_file, tenant_cert_file, address, password, tenant_name):
  wait_until(lambda: http_get(ports["metrics"], "/readyz")[0] == 200, 60, "/readyz 200")
  if http_get(ports["metrics"], "/healthz")[0] != 200:
    fail("/healthz is not 200")
  status, body = http_get(ports["metrics"], "/metrics")
  if status != 200 or b"\nposthaste_ready 1" not in body:
    fail("/metrics lacks posthaste_ready 1 (status %d)" % status)
  print("ok: /healthz 200, /readyz 200, posthaste_ready 1")

  message = MESSAGE.replace(b"{to}", address.encode())
  with smtplib.LMTP(HOST, ports["lmtp"], timeout=TIMEOUT_S) as lmtp:
    refused = lmtp.sendmail(SENDER, [address], message)
    if refused:
      fail("LMTP refused: %r" % refused)
  print("ok: delivered over LMTP")

  # poplib checks the name against HOST (an address): the chain is checked against the CA, the
  # name below.
  context = ssl.create_default_context(cafile=ca_file)
  context.check_hostname = False
  pop = poplib.POP3(HOST, ports["pop3"], timeout=TIMEOUT_S)
  pop.stls(context)
  cert = pop.sock.getpeercert()
  names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
  if DEFAULT_NAME not in names:
    fail("STLS presented %r, not the default certificate %s" % (names, DEFAULT_NAME))
  pop.user(address)
  pop.pass_(password)
  count, _ = pop.stat()
  if count != 1:
    fail("STAT says %d messages, want 1" % count)
  # The LMTP session puts the envelope sender on top (RFC 5321 4.4).
  want = b"Return-Path: <" + SENDER.encode() + b">\r\n" + message
  lines = pop.retr(1)[1]
  if b"\r\n".join(lines) + b"\r\n" != want:
    fail("RETR differs from what LMTP delivered")
  pop.quit()
  print("ok: POP3 STLS login (certificate %s), RETR byte-exact" % DEFAULT_NAME)

  with open(tenant_cert_file) as f:
    tenant_der = ssl.PEM_cert_to_DER_cert(f.read())
  tenant_context = ssl.create_default_context(cafile=ca_file)
  tenant_context.check_hostname = False
  with socket.create_connection((HOST, ports["pop3s"]), timeout=TIMEOUT_S) as raw:
    with tenant_context.wrap_socket(raw, server_hostname=tenant_name) as tls:
      served = tls.getpeercert(binary_form=True)
      banner = tls.recv(512)
  if served != tenant_der:
    fail("POP3S with SNI %s did not present the tenant's certificate" % tenant_name)
  if not banner.startswith(b"+OK"):
    fail("POP3S greeting: %r" % banner)
  print("ok: POP3S with SNI %s: the tenant's certificate (--tls_cert_dir), greeted" % tenant_name)


def check_drain(ports):
  started = time.monotonic()
  wait_until(lambda: http_get(ports["metrics"], "/readyz")[0] == 503, 30,
             "/readyz 503 after SIGTERM")
  banner = greeting(ports["pop3"])
  if banner is None or not banner.startswith(b"+OK"):
    fail("POP3 not greeting while /readyz is 503 (the drain delay): %r" % banner)
  print("ok: /readyz 503 %.1f s after the stop began, POP3 still greets new clients" %
        (time.monotonic() - started))
  wait_until(lambda: greeting(ports["pop3"]) is None, 120, "the POP3 listener to close")
  print("ok: POP3 listener closed %.1f s after the stop began" % (time.monotonic() - started))


def main():
  if len(sys.argv) < 3:
    fail(__doc__)
  with open(sys.argv[2]) as f:
    ports = json.load(f)["ports"]
  if sys.argv[1] == "serve" and len(sys.argv) == 8:
    check_serve(ports, *sys.argv[3:8])
  elif sys.argv[1] == "drain" and len(sys.argv) == 3:
    check_drain(ports)
  else:
    fail(__doc__)


if __name__ == "__main__":
  main()
