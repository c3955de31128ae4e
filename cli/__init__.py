"""The ``callshield`` command line: the top of the house, the only code that wires the agent and the console together.

``cli/main.py`` builds the parser; each subcommand is a module under
``cli/commands/``; ``cli/settings.py`` reads the whole config file and hands
each package its own section; ``cli/demo/`` holds the demo call of
``callshield serve --demo``.
"""
