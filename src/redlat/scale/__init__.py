"""Scaling out on existing engines: Ray for work across processes and machines (`--ray`). No scheduler, queue or RPC
of our own: workers are Ray actors, retries are Ray's, and the driver keeps the run store."""
