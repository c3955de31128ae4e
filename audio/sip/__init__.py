"""SIP ingress: SIPREC recording server and plain SIP "listen" calls (see docs/siprec.md)."""
