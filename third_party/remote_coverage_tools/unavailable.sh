#!/bin/sh
echo "coverage through Bazel is not available offline; use gcov/lcov directly" >&2
exit 1
