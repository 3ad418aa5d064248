"""The commands a user runs: `client-harness run`, `check` and `demo`."""
