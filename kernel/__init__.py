"""The shared kernel: what every part of callshield may import, and which imports none of them.

- :mod:`kernel.errors`: the root of callshield's exceptions and config errors;
- :mod:`kernel.sections`: one reader of config sections (TOML tables to frozen settings);
- :mod:`kernel.protocol`: the agent <-> console wire protocol;
- :mod:`kernel.levels`: the ladder's level names and the severities, with what each means to the floor;
- :mod:`kernel.clock`: the wall clock, passed in, and its format;
- :mod:`kernel.recordings`: the recording contract between agent and console (names, sidecars, hashes);
- :mod:`kernel.retention`: how long recordings and transcripts of calls are kept;
- :mod:`kernel.pcm`: PCM16 levels; :mod:`kernel.tensors`: the ``.safetensors`` file format
  (the sentence encoder's weights, the semantic stage's adapter);
- :mod:`kernel.queues`: the one bounded drop-oldest queue.

``docs/architecture.md`` draws the house; ``tests/test_architecture.py`` keeps it one-way.
"""
