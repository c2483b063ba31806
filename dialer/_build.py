"""Build hooks (setuptools ``cmdclass``): the wheel carries the top-level files.

The project keeps its Alembic scripts in the top-level ``migrations/`` folder
and the demo's leads in ``sample_leads.csv``; an installed ``dialer`` needs
both, so every build copies them into the package as ``dialer/_shipped/``
(see :mod:`dialer.resources`), and every source distribution carries them.
Only setuptools imports this module.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

#: Top-level files and folders shipped inside the package.
SHIPPED = ("migrations", "sample_leads.csv")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc")


def _copy(root: Path, target: Path) -> None:
    for name in SHIPPED:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, target / name, dirs_exist_ok=True, ignore=_SKIP)
        elif source.is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
        else:
            raise FileNotFoundError(f"{source}: missing from the source tree; cannot build dialer")


class BuildPy(build_py):
    """``build_py`` that adds :data:`SHIPPED` as ``dialer/_shipped/``."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            _copy(Path.cwd(), Path(self.build_lib) / "dialer" / "_shipped")


class Sdist(sdist):
    """``sdist`` whose tree holds :data:`SHIPPED` at its top level, as the repository does."""

    def make_release_tree(self, base_dir: str, files) -> None:
        super().make_release_tree(base_dir, files)
        _copy(Path.cwd(), Path(base_dir))
