"""Runs: the `manager` (launch with every problem at once, list, stop, resume, delete) and
the `processes` behind it (the detached starter, the GPU queue, liveness, NVML)."""
