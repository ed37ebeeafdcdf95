"""The optional native data path: two small C extensions, built when a compiler, the Python
headers and OpenSSL's headers are there (`.ci/setup` installs them), skipped otherwise.

Rule 1: a build failure is a warning, never an error: the runtime then runs its pure-Python
        data path, which is the reference the native one is tested against.
Rule 2: everything else about the package is in pyproject.toml.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration", "-fno-strict-aliasing"]


class OptionalBuildExt(build_ext):
    """build_ext that leaves out an extension it cannot build (Rule 1)."""

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as e:  # noqa: BLE001 - any compiler or linker failure
            print(f"warning: {ext.name} not built ({e}); the runtime uses its pure-Python data path")


setup(
    ext_modules=[
        Extension("runtime._fastseal", ["runtime/native/fastseal.c"], depends=["runtime/native/fastpath.c"],
                  libraries=["crypto"],
                  extra_compile_args=CFLAGS),
        Extension("runtime._fastseg", ["runtime/native/fastseg.c"], extra_compile_args=CFLAGS),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
