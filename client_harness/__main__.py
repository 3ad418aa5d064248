"""`python -m client_harness` / the `client-harness` console script."""

from __future__ import annotations

import os
import sys

from client_harness.commands import cli


def main() -> None:
    """Run the CLI, then exit without interpreter teardown: the native LiveKit SDK can abort
    while Python finalises (its threads outlive the loop), which would replace the run's exit
    code — the thing CI reads — with SIGABRT. Everything the CLI writes is flushed first."""
    code = cli.main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
