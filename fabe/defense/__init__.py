"""Defense: backdoored `victims` (classifiers; made by `victim_training` from a corpus whose
`labels` may be computed from the code), the `attack_set` of held-out records under each
attack, data-side `detection` baselines (KillBadCode, spectral signatures, activation
clustering), statement `purifiers` (naturalness and ONION-style baselines) and the `defenses`
measured against them (FABE's front door, top-1, the purifiers, none): attack success rate
and clean accuracy."""
