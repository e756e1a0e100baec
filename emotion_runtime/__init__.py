"""Torch-free streaming emotion runtime: onnxruntime + NumPy only.

    model = EmotionModel.load("models/emotune-ser-v1/emotion.onnx")     # verifies the sidecar checksum
    stream = EmotionStream(model, encoding="mulaw", sample_rate=8000)    # one per call or microphone
    for frame in twenty_ms_frames:
        for event in stream.push(frame):
            print(event.label, event.confidence)
"""

from emotion_runtime.audio import StreamingResampler, mulaw_decode, mulaw_encode, pcm16_decode, resample
from emotion_runtime.features import DEFAULT_SPEC, FbankSpec, StreamingFbank, fbank
from emotion_runtime.model import EmotionModel, Prediction
from emotion_runtime.stream import EmotionEvent, EmotionStream, PendingWindow, StreamHub

__all__ = [
    "DEFAULT_SPEC",
    "EmotionEvent",
    "EmotionModel",
    "EmotionStream",
    "FbankSpec",
    "PendingWindow",
    "Prediction",
    "StreamHub",
    "StreamingFbank",
    "StreamingResampler",
    "fbank",
    "mulaw_decode",
    "mulaw_encode",
    "pcm16_decode",
    "resample",
]
