"""Builds tandem's Python package: the _tandem extension over include/tandem.h,
linked with the static libtandem.a that `make` builds, so the installed
package needs no shared library at run time.

    make && pip install --no-build-isolation ./python   # into a venv
    make python                                          # in place, for tests

TANDEM_BUILD names the build directory (default: ../build beside this file).
"""
import os
import sys

from setuptools import Extension, setup

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
build = os.environ.get("TANDEM_BUILD", os.path.join(root, "build"))
library = os.path.join(build, "libtandem.a")
if not os.path.exists(library) and "sdist" not in sys.argv:
    sys.exit(f"setup.py: {library} is missing: run `make` in {root} first "
             "(or set TANDEM_BUILD to the build directory)")

extension = Extension(
    "tandem._tandem",
    sources=[os.path.join("src", "_tandem.c")],
    include_dirs=[os.path.join(root, "include")],
    extra_objects=[library],
    libraries=["curl", "fyaml", "hiredis", "lmdb", "microhttpd", "rdkafka", "sqlite3", "ssl",
               "crypto", "m", "pthread"],
    extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Werror",
                        "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                        "-Wno-cast-function-type"],
)

setup(
    name="tandem",
    version="0.1.0",
    description="tandem: one ML scoring pipeline, batch and live, from Python",
    packages=["tandem"],
    ext_modules=[extension],
    python_requires=">=3.9",
)
