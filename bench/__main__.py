"""`python -m bench [--seconds N]`: run every benchmark in `bench.BENCHES`, one after the other."""

from __future__ import annotations

import argparse
import importlib
import sys

from bench import BENCHES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--seconds", type=float, default=None,
                   help="measured duration of each phase of each benchmark (default: the benchmark's own)")
    args = p.parse_args(argv)
    status = 0
    for name in BENCHES:
        print(f"## {name}\n", flush=True)
        module = importlib.import_module(name)
        sub_argv = [] if args.seconds is None else ["--seconds", str(args.seconds)]
        status = max(status, int(module.main(sub_argv) or 0))
        print(flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
