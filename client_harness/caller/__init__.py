"""The platform's caller flow, one module per step in the order a simulation runs them:
token_fetch → token_answer → claims → call_room → agent_join → conversation → simulation → runner.
"""
