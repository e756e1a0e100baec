"""The voice gateway: one asyncio websocket server, one pipeline per call.

``server`` (listener, lifecycle, signals), ``routes`` (paths and their authentication),
``call`` (one call's coordinator) and its stages ``audio_in`` (decode, resample, emotion),
``turn_taking`` (end-pointing, barge-in cue), ``dialogue_turn`` (ASR, Rasa, hand-off) and
``speech_out`` (TTS, marks, playback); ``emotion`` (the shared hub that batches every call's
windows off the event loop), ``call_log``, ``feed``, ``metrics``, ``logging_json``.
``python -m connectors.gateway`` (or ``emotune serve``) runs it.
"""

from connectors.gateway.server import Gateway, main, pid_file, request_reload, serve

__all__ = ["Gateway", "main", "pid_file", "request_reload", "serve"]
