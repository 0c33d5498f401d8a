"""Results appear whole or not at all: a run writes into a temporary folder inside DIR (the same
filesystem), and only when every file is written are they moved into DIR, each with one
rename; a result file of an earlier run that this run does not write is removed then.  A run
that fails part-way (a reference outside its certificate, a key that will not sign, a full
disk, InfluxDB refusing the points) leaves DIR exactly as it was: never new results beside
stale ones (issue 14)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gateway.errors import RemotecalError

__all__ = ["staged_results"]

log = logging.getLogger(__name__)


@contextmanager
def staged_results(out: Path, names: Sequence[str]) -> Iterator[Path]:
    """A temporary folder to write the results ``names`` into (module docstring); moved into
    ``out`` when the block ends without an error, removed when it raises."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".remotecal-results-", dir=out))
    except OSError as exc:
        raise RemotecalError(f"{out}: cannot write the results: {exc.strerror or exc}") from None
    try:
        yield stage
        written = [n for n in names if (stage / n).exists()]
        stale = [n for n in names if n not in written and ((out / n).is_file() or (out / n).is_symlink())]
        try:
            for n in written:
                os.replace(stage / n, out / n)
            for n in stale:
                (out / n).unlink()
        except OSError as exc:
            why = exc.strerror or exc
            raise RemotecalError(f"{out}: cannot move the results into place: {why}") from None
        if stale:
            log.warning("%s: removed %s of an earlier run: this run has none", out, ", ".join(stale))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
