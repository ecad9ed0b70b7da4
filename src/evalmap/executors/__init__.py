"""Where a plan's jobs run: `local` (this process, one model after another) and `ray` (a Ray cluster, a
model's replicas side by side; ray_executor.py). Both drive the same runner and the same store;
`resources.py` says what a replica asks of a cluster and `packing.py` how long a plan takes on N GPUs.
"""
