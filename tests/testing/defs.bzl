"""ph_client_test: an integration test that runs the real posthaste binary with a real client.

A Python unittest (run on /usr/bin/python3, see tests/testing/BUILD.bazel) with the harness
and the binary in its runfiles. Tagged `integration`; it runs in every configuration, also
under --config=asan, where it exercises the sanitized server.
"""

def ph_client_test(name, srcs, data = [], tags = [], size = "medium", **kwargs):
    native.py_test(
        name = name,
        srcs = srcs,
        main = srcs[0],
        python_version = "PY3",
        srcs_version = "PY3",
        size = size,
        data = data + ["//server:posthaste"],
        deps = ["//tests/testing:posthaste_server"],
        tags = tags + ["integration"],
        **kwargs
    )
