"""`python -m bench [--seconds N] [--out FILE]`: run every benchmark in `bench.BENCHES`, one
after the other, and write what they print to FILE (default bench/RESULTS.md)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import BENCHES, machine


class _Tee(io.TextIOBase):
    def __init__(self, *streams: io.TextIOBase | io.StringIO):
        self.streams = streams

    def write(self, s: str) -> int:
        for st in self.streams:
            st.write(s)
            st.flush()
        return len(s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--seconds", type=float, default=None,
                   help="measured duration of each phase of each benchmark (default: the benchmark's own)")
    p.add_argument("--out", default=str(Path(__file__).parent / "RESULTS.md"))
    p.add_argument("--only", nargs="*", help="run only these benchmarks (names without 'bench.')")
    args = p.parse_args(argv)
    names = [n for n in BENCHES if not args.only or n.removeprefix("bench.") in args.only]
    captured = io.StringIO()
    out = _Tee(sys.stdout, captured)  # type: ignore[arg-type]
    status = 0
    t_all = time.monotonic()
    with contextlib.redirect_stdout(out):
        print(f"# remotecal benchmarks\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}\n")
        for name in names:
            print(f"## {name}\n")
            t0 = time.monotonic()
            sub_argv = [] if args.seconds is None else ["--seconds", str(args.seconds)]
            try:  # an import error too: one failing benchmark must not stop the others
                code = int(importlib.import_module(name).main(sub_argv) or 0)
            except Exception as exc:  # one failing benchmark must not hide the others' figures
                print(f"FAILED: {type(exc).__name__}: {exc}")
                code = 1
            status = max(status, code)
            print(f"\n({name} took {time.monotonic() - t0:.0f} s)\n")
        print(f"All benchmarks took {time.monotonic() - t_all:.0f} s.")
    Path(args.out).write_text(captured.getvalue())
    print(f"written to {args.out}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
