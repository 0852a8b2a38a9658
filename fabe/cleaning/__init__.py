"""Cleaning: `loading` a trained cleaner, diverse beam search (`decoding`), the `cleaner`
(K ranked candidates with scores and front-door weights), `trust` (signals on each candidate
and a verdict), the weights' temperature (`calibration`), `serving` them to the page,
`export` as a plain model folder, and text `report`s (side by side, diff rows)."""
