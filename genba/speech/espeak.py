"""espeak-ng through its C API (ctypes), from the library and voice data that the `espeakng-loader` wheel bundles:
no system package, nothing downloaded.

libespeak-ng keeps one global synthesizer per process, so calls are serialized by a lock. Its wave generator carries
state from one utterance to the next: the same text spoken twice differs by a few milliseconds (measured: 26985,
26983 and 26794 samples at 22.05 kHz for three calls in a row), even after espeak_Terminate and a new
espeak_Initialize; the other engines are deterministic. Japanese text must be
kana: espeak-ng's Japanese dictionary reads hiragana and katakana, not kanji (genba.speech.engines converts first).
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS (samples handed to the callback, no playback)
_RATE, _PITCH = 1, 3  # espeak_PARAMETER: words per minute, base pitch 0..100
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_DEFAULT_RATE, _DEFAULT_PITCH = 175, 50  # espeak-ng's defaults
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class Espeak:
    """One per process (`Espeak.get()`); `synth(text, voice, rate, pitch) -> (int16 (T,), sample rate)`."""

    _instance: Espeak | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        data = espeakng_loader.get_data_path().encode()
        self.sample_rate = self.lib.espeak_Initialize(_SYNCHRONOUS, 0, data, 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng did not initialize from {data.decode()} (error {self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: the library calls it later
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> Espeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav, n: int, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # 0 = go on

    def synth(self, text: str, voice: str, rate: int = _DEFAULT_RATE, pitch: int = _DEFAULT_PITCH):
        """(int16 (T,), sample rate) of `text` spoken by `voice` (an espeak-ng name: "en-us", "en-us+f3", "ja")."""
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            self.lib.espeak_SetParameter(_RATE, int(rate), 0)
            self.lib.espeak_SetParameter(_PITCH, int(np.clip(pitch, 0, 100)), 0)
            self._chunks = []
            raw = text.encode() + b"\0"
            err = self.lib.espeak_Synth(raw, len(raw), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise RuntimeError(f"espeak-ng failed on {text!r} (error {err})")
            self.lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        return (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)), self.sample_rate


def ipa(text: str, voice: str = "en-us") -> str:
    """espeak-ng's IPA transcription of `text` (clauses joined by spaces), with stress marks."""
    e = Espeak.get()
    f = e.lib.espeak_TextToPhonemes
    f.restype = ctypes.c_char_p
    f.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
    with e._lock:
        if e.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        buf = ctypes.create_string_buffer(text.encode())
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        out = []
        while ptr.value:  # one clause per call; the library advances ptr, NULL at the end
            out.append(f(ctypes.byref(ptr), _CHARS_UTF8, 2).decode())  # phonememode 2: IPA
    return " ".join(s.strip() for s in out if s.strip())
