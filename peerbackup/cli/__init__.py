"""The `peerbackup` command line."""
