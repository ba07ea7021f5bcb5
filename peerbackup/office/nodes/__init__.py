"""Backup nodes: their keys, grants, data sets and schedules, as events of the control log.

`service` is the NodeService (what admins change, what key holders open); `probe` asks the
node's agents whether a data set's folder is there before it is added. Imports
office.membership and office.replication.
"""
