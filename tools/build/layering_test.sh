#!/bin/bash
# Checks the dependency arrows of docs/ARCHITECTURE.md ("Module map") against the build graph.
#
# Usage: layering_test.sh FACTS FORBIDDEN_REGEX ALLOWED_REGEX [FACTS FORBIDDEN_REGEX ALLOWED_REGEX ...]
# FACTS is a genquery output (one label per line: a target's transitive dependencies, made at
# build time because a test cannot run `bazel query` inside its sandbox); every label matching
# FORBIDDEN_REGEX and not ALLOWED_REGEX (extended regular expressions over whole labels;
# ALLOWED_REGEX "none" allows nothing) is a layering violation.
set -u
if (( $# == 0 || $# % 3 != 0 )); then
  echo "usage: $0 FACTS FORBIDDEN_REGEX ALLOWED_REGEX [FACTS FORBIDDEN_REGEX ALLOWED_REGEX ...]" >&2
  exit 2
fi
failures=0
while (( $# > 0 )); do
  facts="$1"
  forbidden="$2"
  allowed="$3"
  shift 3
  if [[ ! -s "$facts" ]]; then
    echo "FAIL: $facts is missing or empty" >&2
    failures=$((failures + 1))
    continue
  fi
  # The first label genquery prints is not necessarily the root; name the file instead.
  root="$(basename "$facts" .deps)"
  violations="$(grep -E "^(${forbidden})$" "$facts" || true)"
  if [[ -n "$violations" && "$allowed" != "none" ]]; then
    violations="$(grep -vE "^(${allowed})$" <<<"$violations" || true)"
  fi
  if [[ -n "$violations" ]]; then
    echo "FAIL: ${root} depends on targets its layer must not use:" >&2
    sed 's/^/    /' <<<"$violations" >&2
    failures=$((failures + 1))
  else
    echo "ok: ${root} ($(wc -l <"$facts") dependencies checked)"
  fi
done
if (( failures > 0 )); then
  echo "${failures} layering violation(s); see docs/ARCHITECTURE.md \"Module map\"" >&2
  exit 1
fi
