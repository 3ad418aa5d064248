"""The platform's caller flow, one module per step in the order a simulation runs them:
token_fetch (reading the answer with token_answer) → claims → call_room → agent_join →
conversation (speaking and listening with speech) → simulation (one call end to end) → runner
(many at once).
"""
