"""What a call is measured in: its recording, the caller's VAD, the result record, the diagnosis
of a failure. Nothing here talks to the network; the caller flow fills these in.
"""
