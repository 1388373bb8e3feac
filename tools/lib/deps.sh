#!/usr/bin/env bash
# Installs the Debian 12 packages posthaste needs, only those missing (idempotent; quick when
# everything is there). Sourced by tools/test, tools/run and tools/bench.

PH_BUILD_PACKAGES=(
  bazel-bootstrap bazel-rules-java bazel-platforms
  g++ clang-14 libclang-rt-14-dev clang-format
  liburing-dev android-libboringssl-dev librocksdb-dev libabsl-dev prometheus-cpp-dev
  libcrypt-dev libargon2-dev libgtest-dev libgmock-dev libbenchmark-dev
  libldap-dev  # the LDAP passdb (server/auth/ldap_passdb.h)
  libicu-dev  # SASLprep of UTF-8 names and passwords (server/auth/utf8_credential.h)
)

# Real clients and peers used by integration tests.
PH_TEST_PACKAGES=(
  python3 curl perl openssl fetchmail getmail6 swaks procps iproute2 postfix
  nginx libnginx-mod-mail  # the mail proxy in front of `posthaste route` (tests/route_proxy_test.py)
  libio-socket-ssl-perl testssl.sh prometheus
  haproxy nginx libnginx-mod-mail  # tests/proxy_protocol_test.py: proxies in front of posthaste
  etcd-server etcd-client  # the placement directory (server/placement tests: a 3-member cluster)
  fail2ban  # fail2ban-regex checks deploy/fail2ban's filter (tests/auth_penalty_test.py)
  python3-yaml  # tests/openapi_test.py reads docs/openapi.yaml
  slapd ldap-utils  # the LDAP passdb against a real directory (tests/ldap_passdb_test.py)
  libauthen-scram-perl  # a real SCRAM client (Authen::SCRAM, tests/sasl_scram_test.py)
  dovecot-core dovecot-pop3d  # doveadm pw hashes and a Dovecot POP3 source (password_import,
                              # import_pop3 tests)
)

# The benchmark (tools/bench/compare): the server compared against, password hashing for its
# passwd-file, the chart, CPU pinning.
PH_BENCH_PACKAGES=(
  dovecot-pop3d dovecot-lmtpd whois gnuplot-nox python3 util-linux procps
)

# Deployment tests (deploy/*/test): container image, chart, systemd unit, Debian package.
PH_DEPLOY_PACKAGES=(
  podman buildah runc skopeo umoci mmdebstrap uidmap fuse-overlayfs slirp4netns
  systemd dpkg-dev fakeroot lintian unzip jq
  debhelper  # deploy/debian/build (dh_installsystemd, dh_installsysusers, dh_shlibdeps)
)
# deploy/helm/test: podman kube play's pause container (catatonit) and its manifest tools.
PH_DEPLOY_PACKAGES+=(catatonit python3-yaml)
# deploy/helm/test: `nginx -t` of the proxy tier's rendered nginx.conf.
PH_DEPLOY_PACKAGES+=(nginx libnginx-mod-mail)
# Node.js and npm (chart validation) come with this machine kind (NodeSource's nodejs, which
# conflicts with Debian's npm package): Debian's are installed only when `npm` is missing.
ph_require_npm() {
  command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1 && return 0
  ph_install_packages nodejs npm
}

ph_install_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # A busy package manager (unattended-upgrades, another build) holds dpkg's lock: apt waits
  # for it up to 5 minutes, and a failed attempt is retried once.
  local apt_opts=(-o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends)
  local attempt log
  log=$(mktemp -p /tmp --suffix=.posthaste-apt)
  for attempt in 1 2; do
    if $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq >"$log" 2>&1 &&
       DEBIAN_FRONTEND=noninteractive $sudo apt-get install "${apt_opts[@]}" "${missing[@]}" \
         >>"$log" 2>&1; then
      rm -f "$log"
      return 0
    fi
    echo "apt-get failed (attempt $attempt of 2); its last lines:" >&2
    tail -5 "$log" >&2
    [ "$attempt" -eq 1 ] && sleep 10
  done
  echo "could not install: ${missing[*]} (full apt output: $log)" >&2
  return 1
}
