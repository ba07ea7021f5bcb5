"""The replicated logs: the control log and every node's log, kept in step between the peers.

`service` is the LogService (persistence, anti-entropy, control events turned into membership
changes); `nodeviews` folds each node's log once per change (jobs, missed slots, forgotten
snapshots) for every reader; `describe` is an event as operators read it. Imports only office.membership.
"""
