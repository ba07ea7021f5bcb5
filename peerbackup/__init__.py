"""peerbackup: encrypted, deduplicated backups for offices without a server."""

__version__ = "0.1.0"
