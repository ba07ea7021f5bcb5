"""Who is in the office, as far as this peer knows. Synchronous, no I/O.

Built from certificates (each checked against the office key) and
revocations; the daemon persists what it learns and feeds it back here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from peerbackup.core.certs import Certificate, Office, Revocation
from peerbackup.errors import Forbidden, ForeignOffice, FormatError, RevokedPeer, UnknownPeer, UnsupportedVersion


@dataclass
class Membership:
    office: Office
    certs: dict[str, Certificate] = field(default_factory=dict)
    revocations: dict[str, Revocation] = field(default_factory=dict)

    def admit(self, raw: bytes, now: float, remember: bool = True) -> tuple[Certificate, bool]:
        """Check a certificate received from the network; (cert, whether it was new) or the refusal.
        With remember=False it is only checked, not added."""
        try:
            cert = Certificate.from_bytes(raw, self.office.public_key)
        except (FormatError, UnsupportedVersion) as exc:
            try:
                claimed = Certificate.office_of(raw)
            except (FormatError, UnsupportedVersion):
                claimed = None
            if claimed is not None and claimed != self.office.fingerprint:
                raise ForeignOffice(claimed) from None
            raise Forbidden(f"certificate refused: {exc}") from None
        self.refuse_revoked(cert.peer_id)
        if not cert.valid_at(now):
            raise Forbidden(f"the certificate of {cert.peer_id} is not valid now")
        known = self.certs.get(cert.peer_id)
        # A later certificate (new roles, renewed validity) replaces an earlier one.
        if known is not None and known.issued >= cert.issued:
            return known, False
        if remember:
            self.certs[cert.peer_id] = cert
        return cert, True

    def add_revocation(self, raw: bytes) -> Revocation | None:
        """A revocation new to us, or None when known already; FormatError when forged."""
        try:
            rev = Revocation.from_bytes(raw, self.office.public_key)
        except UnsupportedVersion as exc:
            raise FormatError("revocation", str(exc)) from None
        if rev.peer_id in self.revocations:
            return None
        self.revocations[rev.peer_id] = rev
        return rev

    def refuse_revoked(self, peer_id: str) -> None:
        """Refuse a removed peer, with the office-signed revocation: it can check that for itself."""
        rev = self.revocations.get(peer_id)
        if rev is not None:
            name = self.name(peer_id)  # the removed peer reads its own id in it too
            raise RevokedPeer(peer_id if name == peer_id else f"{name} ({peer_id})", rev.raw)

    def member(self, peer_id: str, now: float) -> Certificate:
        """The certificate of a current member, or the refusal that says why not."""
        self.refuse_revoked(peer_id)
        cert = self.certs.get(peer_id)
        if cert is None:
            raise UnknownPeer(peer_id)
        if not cert.valid_at(now):
            raise Forbidden(f"the certificate of {cert.name} ({peer_id}) is not valid now")
        return cert

    def name(self, peer_id: str) -> str:
        """How messages name a peer: by its name, by its id only when no certificate names it."""
        cert = self.certs.get(peer_id)
        return cert.name if cert is not None else peer_id

    def members(self) -> list[Certificate]:
        return sorted((c for c in self.certs.values() if c.peer_id not in self.revocations),
                      key=lambda c: (c.rank, c.peer_id))

    def revocations_digest(self) -> bytes:
        h = hashlib.sha256(b"peerbackup revocations\0")
        for peer_id in sorted(self.revocations):
            h.update(peer_id.encode())
        return h.digest()

    def revocation_list(self) -> tuple[bytes, ...]:
        return tuple(self.revocations[p].raw for p in sorted(self.revocations))
