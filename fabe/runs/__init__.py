"""Runs: the `manager` (launch with every problem at once, list, stop, resume, delete, the
state a page shows), the `processes` behind it (the detached starter, the GPU queue,
liveness, NVML) and `experiments` (runs compared: config diff, checkpoints with size and a
quick evaluation)."""
