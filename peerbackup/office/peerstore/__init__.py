"""A backup node's repository kept on the office's storage peers.

`client` is the engine's Store over the peers (placement, retries, the upload limit);
`holder` the StorageService a storage peer serves (who may write, read and delete what);
`repair` keeps every file on R live peers and challenges the holders; `purge` deletes a
removed node's files; `reader` the dashboard's snapshot, tree and restore reads. Imports
office.membership, office.replication and office.nodes, never coordination or jobs.
"""
