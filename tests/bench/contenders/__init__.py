"""The code each contender process runs: one module per contender.

Each module has `run(job, signals) -> Outcome`; `child.CONTENDERS` maps the
contender keys to them. They share the payload and the Probe, nothing else.
"""
