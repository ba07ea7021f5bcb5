"""Synchronous, I/O-free building blocks: codec, crypto, chunking, object formats.

Nothing here touches the disk, the network or the clock: callers hand in bytes,
file objects, the time and a source of randomness.
"""
