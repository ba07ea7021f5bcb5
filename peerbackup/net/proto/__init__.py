"""Peer messages, one module per family; each message has to_wire()/from_wire().

Every message carries its own version ("v"); from_wire raises Malformed or
UnsupportedProtocol and never anything else, whatever the bytes.
"""
