"""Speech engines: recognition (pocketsphinx in worker processes, or ``none``) and synthesis
(espeak-ng with the tone's prosody, or ``none``), plus the registry that lets a package add a
cloud engine by entry point (``emotune.asr_engines`` / ``emotune.tts_engines``)."""
