"""callshield audio: sources, codecs, voice activity, loudness, recorder."""
