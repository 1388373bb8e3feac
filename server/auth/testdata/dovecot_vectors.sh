#!/bin/bash
# Prints stored hashes made by Dovecot's own `doveadm pw` (Debian dovecot-core) for the schemes
# posthaste imports, as server/auth/password_hash_test.cc's Dovecot vectors were made. Each line:
# SCHEME<TAB>PASSWORD<TAB>HASH. Usage: server/auth/testdata/dovecot_vectors.sh [PASSWORD]
set -euo pipefail
password="${1:-correct horse}"
for scheme in SSHA512 SSHA256 SSHA PBKDF2 CRAM-MD5 SHA512-CRYPT SHA256-CRYPT BLF-CRYPT \
              ARGON2ID CRYPT; do
  printf '%s\t%s\t%s\n' "$scheme" "$password" "$(doveadm pw -s "$scheme" -p "$password")"
done
printf '%s\t%s\t%s\n' "PBKDF2-1000" "$password" "$(doveadm pw -s PBKDF2 -r 1000 -p "$password")"
