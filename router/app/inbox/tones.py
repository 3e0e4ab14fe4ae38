"""The softphone's sounds, made here as small WAV files: the ring of an incoming call,
the tones of an outgoing one, the hang-up and the keypad's DTMF. Twilio's SDK is told
to play these instead of fetching its own from Twilio's CDN, and the simulated calls
play the same ones, so every page loads only our own files."""

from __future__ import annotations

import io
import math
import struct
import wave
from functools import cache

RATE = 8000  # telephone quality is enough for a tone
# DTMF: each key is the sum of a low and a high frequency (ITU-T Q.23)
_ROWS, _COLS = (697, 770, 852, 941), (1209, 1336, 1477)
_KEYS = ("123", "456", "789", "*0#")
DTMF = {key: (_ROWS[r], _COLS[c]) for r, row in enumerate(_KEYS) for c, key in enumerate(row)}
# Twilio.Device's sound names (Device.SoundName): dtmf0-9, dtmfs (star), dtmfh (hash)
_DTMF_NAMES = {f"dtmf{k}": k for k in "0123456789"} | {"dtmfs": "*", "dtmfh": "#"}
NAMES = ("incoming", "outgoing", "disconnect", *_DTMF_NAMES)


def _samples(parts: list[tuple[tuple[int, ...], float]]) -> bytes:
    """16-bit PCM of consecutive parts, each (frequencies summed, seconds); () is silence."""
    frames = bytearray()
    for frequencies, seconds in parts:
        for n in range(int(RATE * seconds)):
            value = sum(math.sin(2 * math.pi * f * n / RATE) for f in frequencies) / max(1, len(frequencies))
            frames += struct.pack("<h", int(value * 0.3 * 32767))
    return bytes(frames)


@cache
def wav(name: str) -> bytes:
    """The sound `name` (one of NAMES) as a WAV file; KeyError for another name."""
    if name == "incoming":  # a North American ring: 2 s of 440 + 480 Hz, 4 s of silence
        parts = [((440, 480), 2.0), ((), 4.0)]
    elif name == "outgoing":  # ringback, once
        parts = [((440, 480), 1.0), ((), 1.0)]
    elif name == "disconnect":
        parts = [((480, 620), 0.25), ((), 0.15)] * 3
    else:
        parts = [(DTMF[_DTMF_NAMES[name]], 0.15)]
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(RATE)
        file.writeframes(_samples(parts))
    return out.getvalue()
