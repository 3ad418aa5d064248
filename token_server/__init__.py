"""token_server."""
