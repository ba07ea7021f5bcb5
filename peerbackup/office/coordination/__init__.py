"""The coordinator: who it is, by lease, and the fencing token every peer checks.

`election` decides (synchronous, no I/O, clock handed in); `service` is the CoordinatorService
that ticks it, sends and answers announcements and logs each term. Imports office.membership
and office.replication.
"""
