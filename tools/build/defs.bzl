"""Every posthaste C++ target passes through these macros.

One place sets the C++ standard, warnings as errors, the BoringSSL include order and the
fuzzing variant. Sanitizer variants are `--config=asan` and `--config=fuzz` in .bazelrc.
"""

load("@rules_cc//cc:defs.bzl", "cc_binary", "cc_library", "cc_test")

# BoringSSL's headers must shadow OpenSSL's (libssl-dev is installed too); code that includes
# <openssl/...> checks OPENSSL_IS_BORINGSSL.
PH_COPTS = [
    "-std=c++20",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
    "-isystem",
    "/usr/include/android",
]

def ph_cc_library(name, copts = [], **kwargs):
    cc_library(name = name, copts = PH_COPTS + copts, **kwargs)

def ph_cc_binary(name, copts = [], **kwargs):
    cc_binary(name = name, copts = PH_COPTS + copts, **kwargs)

def ph_cc_test(name, copts = [], deps = [], size = "small", **kwargs):
    """A GoogleTest test; links gtest_main unless deps already bring a main."""
    cc_test(
        name = name,
        copts = PH_COPTS + copts,
        size = size,
        # Static: test binaries then carry their own references to system libraries, which
        # --as-needed (//third_party:absl) relies on.
        linkstatic = True,
        deps = deps + ["//third_party:gtest_main"],
        **kwargs
    )

def ph_cc_benchmark(name, copts = [], deps = [], tags = [], **kwargs):
    """A Google Benchmark binary; run through tools/bench, never as a test."""
    cc_binary(
        name = name,
        copts = PH_COPTS + copts,
        deps = deps + ["//third_party:benchmark_main"],
        tags = tags + ["benchmark"],
        **kwargs
    )

def ph_cc_fuzzer(name, srcs, deps = [], corpus = [], copts = [], **kwargs):
    """A libFuzzer target `name`, plus `name_regression_test`.

    Under --config=fuzz `name` is a real libFuzzer binary. In ordinary builds it links a
    standalone main, and the regression test replays `corpus` and deterministic random inputs
    under g++ (and under ASan+UBSan with --config=asan).
    """
    cc_binary(
        name = name,
        srcs = srcs,
        copts = PH_COPTS + copts,
        testonly = True,
        linkopts = select({
            "//tools/build:fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        deps = deps + select({
            "//tools/build:fuzzing": [],
            "//conditions:default": ["//tools/build:fuzz_standalone_main"],
        }),
        tags = ["fuzzer"],
        **kwargs
    )
    cc_test(
        name = name + "_regression_test",
        srcs = srcs,
        copts = PH_COPTS + copts,
        deps = deps + ["//tools/build:fuzz_standalone_main"],
        data = corpus,
        linkstatic = True,
        args = ["$(location %s)" % c for c in corpus],
        size = "small",
        tags = ["fuzz_regression"],
        **kwargs
    )
