"""The peer protocol: signed envelopes, message families, HTTP server and client, mDNS."""
