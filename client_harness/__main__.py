"""`python -m client_harness` / `client-harness`."""

from __future__ import annotations

import sys

from client_harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
