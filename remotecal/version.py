"""`remotecal --version`: the version and the commit it was installed from.

The commit is what a bug report needs beside the version (0.1.0 stays 0.1.0 across many
commits).  It is found, in this order:

- the installed distribution's PEP 610 record (`direct_url.json`): `pip install
  git+https://...@REV` records the commit it checked out;
- a git work tree holding the code: an editable install (`make venv`: `pip install -e .`) runs
  from the checkout itself; `pip install /opt/remotecal-src` records that folder in
  `direct_url.json`, and the commit is read there (`git rev-parse HEAD`, with `-dirty` when
  tracked files differ from it);
- else "commit unknown" (a wheel from elsewhere).
"""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gateway import __version__

__all__ = ["commit", "version_line"]

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-c", "safe.directory=*", "-C", str(folder), *args],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _git_commit(folder: Path) -> str | None:
    if not folder.is_dir() or _git(folder, "rev-parse", "--is-inside-work-tree") != "true":
        return None
    head = _git(folder, "rev-parse", "HEAD")
    if not head:
        return None
    dirty = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return f"{head[:12]}-dirty" if dirty else head[:12]


def _direct_url() -> dict[str, object]:
    try:
        text = metadata.distribution("remotecal").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return {}
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def commit() -> str | None:
    """The commit this remotecal was installed from (12 hex digits, `-dirty` when the work
    tree it runs from has changes), or None when nothing says."""
    record = _direct_url()
    vcs = record.get("vcs_info")
    if isinstance(vcs, dict) and isinstance(vcs.get("commit_id"), str):
        return str(vcs["commit_id"])[:12]
    folders = [_PACKAGE_ROOT] if (_PACKAGE_ROOT / "pyproject.toml").is_file() else []
    url = record.get("url")
    if isinstance(url, str) and url.startswith("file://"):
        folders.insert(0, Path(unquote(urlsplit(url).path)))
    for folder in folders:
        if (found := _git_commit(folder)) is not None:
            return found
    return None


def version_line() -> str:
    """`remotecal 0.1.0 (commit 0123456789ab)`."""
    return f"remotecal {__version__} (commit {commit() or 'unknown'})"
