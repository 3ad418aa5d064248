"""The offline speech models (`offline_speech`) as the framework's STT and TTS plugins.

Both are thin: the models load once per process (see `agent.prewarm`) and these classes only
adapt audio frames and run the blocking model calls in a thread, so one process's event loop
keeps moving audio while Whisper or hibari work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
from livekit.agents import APIConnectOptions, LanguageCode, stt, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from offline_speech import Synthesizer, Transcriber
from offline_speech.tts import SAMPLE_RATE as TTS_SAMPLE_RATE


class OfflineSTT(stt.STT):
    """Whisper tiny.en (faster-whisper, int8 CPU). Not streaming: the session pairs it with the
    VAD, which hands over each finished utterance."""

    def __init__(self, transcriber: Transcriber) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._transcriber = transcriber

    @property
    def model(self) -> str:
        return "whisper-tiny.en"

    @property
    def provider(self) -> str:
        return "faster-whisper"

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.SpeechEvent:
        frame = utils.merge_frames(buffer)
        pcm = np.frombuffer(frame.data, dtype=np.int16)
        if frame.num_channels > 1:
            pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)
        text = await asyncio.to_thread(self._transcriber.transcribe, pcm, frame.sample_rate)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=utils.shortuuid("stt_"),
            alternatives=[stt.SpeechData(language=LanguageCode("en"), text=text)],
        )


class OfflineTTS(tts.TTS):
    """hibari-tts's bundled voice, 24 kHz mono. Not streaming: the session splits the reply into
    sentences and synthesises each as it comes, so the first audio follows the first sentence."""

    def __init__(self, synthesizer: Synthesizer) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=TTS_SAMPLE_RATE,
            num_channels=1,
        )
        self._synthesizer = synthesizer

    @property
    def model(self) -> str:
        return "hibari"

    @property
    def provider(self) -> str:
        return "hibari-tts"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _OfflineChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class _OfflineChunkedStream(tts.ChunkedStream):
    def __init__(self, *, tts: OfflineTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._synthesizer = tts._synthesizer

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid("tts_"),
            sample_rate=TTS_SAMPLE_RATE,
            num_channels=1,
            mime_type="audio/pcm",
        )
        chunks: Iterator[np.ndarray] = self._synthesizer.stream(self.input_text)
        sentinel = np.zeros(0, np.int16)
        while (chunk := await asyncio.to_thread(next, chunks, sentinel)) is not sentinel:
            output_emitter.push(chunk.tobytes())
        output_emitter.flush()
