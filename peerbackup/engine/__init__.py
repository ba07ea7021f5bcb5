"""Backup, restore, check and prune over any Store. Knows nothing of the network."""
