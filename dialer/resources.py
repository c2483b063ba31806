"""Files the project keeps at its top level, found wherever dialer runs from.

The Alembic scripts (``migrations/``) and the demo's leads
(``sample_leads.csv``) live at the repository's top level. A wheel carries
them inside the package as ``dialer/_shipped/`` (``dialer/_build.py`` puts
them there); a source checkout or an editable install reads them in place.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """The path of top-level file or folder ``name`` (``"migrations"``, ``"sample_leads.csv"``)."""
    installed = _PACKAGE / "_shipped" / name
    if installed.exists():
        return installed
    return _PACKAGE.parent / name
