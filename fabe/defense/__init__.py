"""Defense: backdoored `victims` (classifiers), statement `purifiers` (naturalness and
ONION-style baselines) and the `defenses` measured against them (FABE's front door, top-1,
the purifiers, none): attack success rate and clean accuracy."""
