"""CEMP consensus: a pure, deterministic Raft state machine (no I/O, no clock, injected randomness).

Modules: ``messages`` (wire and storage records), ``log`` (the in-memory log with its durable and applied
marks), ``quorum`` (majorities and membership transitions), ``raft`` (the state machine and its ``Ready``
contract with the driver in ``node/``).
"""
