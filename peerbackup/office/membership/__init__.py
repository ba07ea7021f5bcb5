"""Who is in the office and who is alive, and what a peer keeps of it.

`members` (certificates and revocations checked against the office key) and `liveness`
(heartbeats to alive/suspect/dead) are synchronous and I/O-free; `home` is the peer's
directory (identity, flock, admin files), `state` its SQLite State, `enrol` init, join and
recover, `service` the PeerService that serves and sends hello and heartbeat, and `admission`
an admin's invites, joins and removals.
Imports nothing else of the office.
"""
