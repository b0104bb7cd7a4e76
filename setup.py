"""Build of the one C extension; everything else is in pyproject.toml.

The extension computes sector tokens without the GIL (src/sealbox/storage/_native.c).
It is optional: without a C compiler, the Python headers or OpenSSL's headers the build skips it
with a warning, and sealbox computes the same tokens in Python, more slowly
(``sealbox.storage.chunk.native_tokens`` tells which is in use).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sealbox.storage._native",
            ["src/sealbox/storage/_native.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=True,
        )
    ]
)
