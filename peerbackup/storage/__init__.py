"""Where bytes live: the Store protocol and its backends, plus local SQLite caches."""
