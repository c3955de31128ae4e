"""SIP ingress: a SIPREC recording server (RFC 7866) that also takes plain SIP "listen" calls.

- :mod:`audio.sip.message`: SIP messages, a bounded sans-I/O parser and serializer, TCP framing, multipart bodies;
- :mod:`audio.sip.sdp`: SDP offers in, answers out (``a=recvonly``, ``a=label`` kept);
- :mod:`audio.sip.metadata`: RFC 7865 recording metadata (participants, streams), XML bounded, no DTDs;
- :mod:`audio.sip.config`: the ``[siprec]`` section;
- :mod:`audio.sip.speakers`: which stream is the customer's and which the partner's;
- :mod:`audio.sip.dialog`: the sans-I/O dialogs and server transactions (requests in, responses and call events out);
- :mod:`audio.sip.call`: a call's dialog and its RTP media (:mod:`audio.rtp`) as one call's audio;
- :mod:`audio.sip.server`: the UDP and TCP server around the dialog core.

No maintained Python SIP library fits a recorder (PyPI's are user agents, or
unmaintained: aiosip 2017, PyVoIP a threaded UA, pjsua2 C bindings for a UA),
so this is a small server of its own; ``docs/siprec.md`` says what it answers.
Nothing here imports ``agent`` or ``console``.
"""
