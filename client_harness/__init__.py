"""client_harness: the simulation platform's side of the LiveKit flow, replayed and measured.

`client-harness check --config C` walks the platform's connection test one step at a time
(endpoint reachable, token in the answer, claims, server URL, WebSocket join, agent joined, agent
audio) and names the fix for the first failing step. `client-harness run --config C --scenario S
--count N --concurrency K [--mode voice|text]` runs full simulations and writes a summary,
report.json, junit.xml and stereo recordings. Config fields carry the platform's own names
(`config.py`); the one parser of token responses is `token_response.py`.
"""
