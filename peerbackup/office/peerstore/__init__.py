"""A backup node's repository kept on the office's storage peers.

`store` is the engine's Store over the peers (placement, holders passed over, damaged copies
skipped); `client` one request to one storage peer (and the upload limit);
`holder` the StorageService a storage peer serves (who may write, read and delete what);
`repair` keeps every file on R live peers and challenges the holders; `purge` deletes a
removed node's files; `reader` the dashboard's snapshot, tree and restore reads. May import
office.membership, office.replication and office.nodes, never coordination or jobs.
"""
