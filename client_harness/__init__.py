"""client_harness."""
