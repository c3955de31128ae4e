"""callshield speech models: catalogue, install, lookup, streaming transcriber."""
