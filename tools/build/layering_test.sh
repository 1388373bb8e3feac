#!/bin/bash
# Checks the dependency arrows of docs/ARCHITECTURE.md ("Module map") against the build graph.
#
# Usage: layering_test.sh FACTS FORBIDDEN_REGEX [FACTS FORBIDDEN_REGEX ...]
# FACTS is a genquery output (one label per line: a target's transitive dependencies, made at
# build time because a test cannot run `bazel query` inside its sandbox); every label matching
# FORBIDDEN_REGEX (an extended regular expression over whole labels) is a layering violation.
set -u
if (( $# == 0 || $# % 2 != 0 )); then
  echo "usage: $0 FACTS FORBIDDEN_REGEX [FACTS FORBIDDEN_REGEX ...]" >&2
  exit 2
fi
failures=0
while (( $# > 0 )); do
  facts="$1"
  forbidden="$2"
  shift 2
  if [[ ! -s "$facts" ]]; then
    echo "FAIL: $facts is missing or empty" >&2
    failures=$((failures + 1))
    continue
  fi
  # The first label genquery prints is not necessarily the root; name the file instead.
  root="$(basename "$facts" .deps)"
  violations="$(grep -E "^(${forbidden})$" "$facts" || true)"
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
