"""Throwaway certificates for TLS integration tests, made with the openssl command at test time.

`TestPki(directory)` creates a CA (P-256, valid one day) and signs server certificates with it:
`issue(name, dns_names)` writes NAME.crt/NAME.key (leaf then CA in the .crt, the way operators
install chains); `issue_client(name, email)` a client certificate for SASL EXTERNAL. `cert_dir_pair(cert_dir, stem, ...)` writes the `--tls_cert_dir` layout
(`example.com.crt` + `.key`, `_.example.com` for a wildcard) atomically, as a Secret update
lands. No private key is ever committed: everything lives under $TEST_TMPDIR.

Threading: single-threaded test code.
"""

import os
import subprocess

_OPENSSL_TIMEOUT_S = 60


def _openssl(*args):
  result = subprocess.run(["openssl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=_OPENSSL_TIMEOUT_S, check=False)
  if result.returncode != 0:
    raise AssertionError("openssl %s failed: %s" %
                         (" ".join(args), result.stderr.decode("utf-8", "replace")))
  return result.stdout


class TestPki:
  """A throwaway CA in `directory` and the server certificates it signs."""

  def __init__(self, directory):
    self.directory = directory
    os.makedirs(directory, exist_ok=True)
    self.ca_key = os.path.join(directory, "ca.key")
    self.ca_cert = os.path.join(directory, "ca.crt")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "1",
             "-subj", "/CN=posthaste test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    self._serial = 1

  def issue(self, name, dns_names, common_name=None, ip_addresses=()):
    """Signs a server certificate; returns (cert_path, key_path) under the PKI directory."""
    key = os.path.join(self.directory, name + ".key")
    csr = os.path.join(self.directory, name + ".csr")
    crt = os.path.join(self.directory, name + ".crt")
    ext = os.path.join(self.directory, name + ".ext")
    with open(ext, "w") as f:
      f.write("subjectAltName=%s\n" % ",".join(["DNS:" + n for n in dns_names] +
                                                ["IP:" + a for a in ip_addresses]))
      f.write("extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
      f.write("basicConstraints=critical,CA:FALSE\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=%s" % (common_name or dns_names[0]))
    self._serial += 1
    leaf = _openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                    "-set_serial", str(self._serial), "-days", "1", "-extfile", ext)
    with open(self.ca_cert, "rb") as f:
      chain = leaf + f.read()
    with open(crt, "wb") as f:
      f.write(chain)
    return crt, key

  def issue_client(self, name, email, common_name=None):
    """Signs a client certificate (clientAuth, subjectAltName email); returns (cert, key)."""
    key = os.path.join(self.directory, name + ".key")
    csr = os.path.join(self.directory, name + ".csr")
    crt = os.path.join(self.directory, name + ".crt")
    ext = os.path.join(self.directory, name + ".ext")
    with open(ext, "w") as f:
      f.write("subjectAltName=email:%s\n" % email)
      f.write("extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
      f.write("basicConstraints=critical,CA:FALSE\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=%s" % (common_name or email))
    self._serial += 1
    leaf = _openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                    "-set_serial", str(self._serial), "-days", "1", "-extfile", ext)
    with open(crt, "wb") as f:
      f.write(leaf)
    return crt, key

  def cert_dir_pair(self, cert_dir, stem, dns_names, common_name=None):
    """Issues a certificate and installs it as cert_dir/STEM.crt + .key (atomic renames)."""
    crt, key = self.issue("%s-%d" % (stem, self._serial + 1), dns_names, common_name)
    os.makedirs(cert_dir, exist_ok=True)
    for source, suffix in ((key, ".key"), (crt, ".crt")):
      target = os.path.join(cert_dir, stem + suffix)
      with open(source, "rb") as f:
        data = f.read()
      with open(target + ".tmp", "wb") as f:
        f.write(data)
      os.replace(target + ".tmp", target)
    return os.path.join(cert_dir, stem + ".crt")


def peer_subject_cn(ssl_socket):
  """The commonName of the peer certificate of a verified ssl.SSLSocket."""
  cert = ssl_socket.getpeercert()
  for rdn in cert.get("subject", ()):
    for key, value in rdn:
      if key == "commonName":
        return value
  return None


def peer_dns_names(ssl_socket):
  """The DNS subjectAltNames of the peer certificate of a verified ssl.SSLSocket."""
  return sorted(v for k, v in ssl_socket.getpeercert().get("subjectAltName", ()) if k == "DNS")
