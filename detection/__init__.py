"""callshield detection: taxonomy, lexicons, rules, repetition, shouting, escalation. Pure, no I/O."""
