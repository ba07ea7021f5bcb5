"""The office: the peers of one office working together, without a server.

Subpackages, each with one purpose, lowest first (an import-linter contract in pyproject.toml
keeps every import pointing down this list, and the ones on the same line apart):

    membership     who is in the office and alive; the home, its State and enrolment
    replication    the replicated logs (control log, node logs) and the views folded from them
    nodes          backup nodes, their keys, grants and data sets
    coordination   the coordinator election and its fencing
    peerstore      the peer store: the store, one peer's client, the holder, repair, purge, reads
    jobs, alerts   a node's jobs (coordinator and agent sides); alert rounds and channels
"""
