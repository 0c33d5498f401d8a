"""`python -m gateway.ingest ingest -c CENTRAL.toml` / `... keys new ...`: the same commands
as `remotecal ingest` and `remotecal keys`, for hosts where the console script is not on PATH."""

import sys

from gateway.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
