"""callshield agent: config, call sessions, link to the console, command line."""
