"""Build of the one C extension; everything else is in pyproject.toml.

The extension runs the data path's per-sector loops without the GIL: sector tokens and XTS over
4 KiB data units (src/sealbox/storage/_native.c). It is optional: without a C compiler, the
Python headers or OpenSSL's headers the build skips it with a warning, and sealbox does the same
work in Python and ctypes, more slowly (``Sealer(None).native`` tells which is in use).
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
