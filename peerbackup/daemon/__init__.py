"""The daemon: builds and supervises every service of a peer, and the local admin API."""
