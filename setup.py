"""Build the Cython extensions in pyx/ (with the C helpers in csrc/) into multigres._cy.

Each pyx/NAME.pyx becomes the module multigres._cy.NAME. Its pyx/NAME.pxd is the interface
other extensions cimport (``from multigres._cy.NAME cimport ...``): the build stages the .pxd
files under build/pxd/multigres/_cy/ so that Cython finds them by their package name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).parent
PYX = ROOT / "pyx"
CSRC = ROOT / "csrc"
# MULTIGRES_DEBUG=1 compiles the debug checks in (`DEF MG_DEBUG = MULTIGRES_DEBUG` in each
# .pyx, then `if MG_DEBUG:` blocks); release builds drop them at compile time.
DEBUG = os.environ.get("MULTIGRES_DEBUG", "0") == "1"


def _stage_pxd() -> Path:
    staged = ROOT / "build" / "pxd"
    pkg = staged / "multigres" / "_cy"
    pkg.mkdir(parents=True, exist_ok=True)
    for marker in (staged / "multigres" / "__init__.pxd", pkg / "__init__.pxd"):
        marker.touch()
    for pxd in PYX.glob("*.pxd"):
        shutil.copyfile(pxd, pkg / pxd.name)
    return staged


def _extensions() -> list[Extension]:
    exts = []
    for pyx in sorted(PYX.glob("*.pyx")):
        exts.append(
            Extension(
                f"multigres._cy.{pyx.stem}",
                [str(pyx.relative_to(ROOT))],
                include_dirs=[str(CSRC.relative_to(ROOT))],
                extra_compile_args=["-O2"],
            )
        )
    return exts


setup(
    ext_modules=cythonize(
        _extensions(),
        include_path=[str(_stage_pxd()), str(PYX)],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
        compile_time_env={"MULTIGRES_DEBUG": DEBUG},
    ),
)
