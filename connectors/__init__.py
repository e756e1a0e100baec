"""Everything that talks to the outside world, one package per concern (toolkit venv, no torch).

``protocols`` I/O-free protocol cores (Twilio, Genesys AudioHook, emotune-ws); ``gateway`` the
websocket server and the per-call pipeline; ``speech`` ASR/TTS engines; ``dialogue`` the Rasa
client and hand-off transports; ``sdk`` the in-process emotion SDK; ``tools`` demo, pilot stack and
call reports; ``devtools`` protocol peers, caller emulator and Rasa launcher for tests and benchmarks.
"""
