"""Becoming a member: init (a new office), join (an invite), recover (a recovery kit).

These run from the command line with no daemon: init and recover touch only
the home; join talks to the inviter's daemon directly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from peerbackup.core import codec
from peerbackup.core.certs import ADMIN_RANK, ROLES, Certificate, Office, Revocation, check_name
from peerbackup.core.crypto import NONCE_SIZE, SALT_SIZE, KdfParams, Random, derive_key, seal, unseal
from peerbackup.core.identity import SigningKey, fingerprint_of
from peerbackup.core.keys import kdf_from_wire
from peerbackup.core.settings import Settings
from peerbackup.errors import (
    AlreadyInitialised,
    DecryptError,
    FormatError,
    InviteError,
    PeerBackupError,
    PeerRefused,
    PeerUnreachable,
    UnsupportedVersion,
    UsageError,
    WrongKitPassphrase,
)
from peerbackup.net.client import PeerClient
from peerbackup.net.proto import join
from peerbackup.office.membership.home import STATE_DB, Home, Identity, write_private

KIT_VERSION = 1
_KIT_AAD = b"peerbackup recovery kit v1"


def _refuse_initialised(home: Home) -> None:
    if home.initialised():
        ident = home.load()
        raise AlreadyInitialised(home.path, ident.office.name, ident.peer_id)


@dataclass(frozen=True)
class RecoveryKit:
    office: Office
    kdf: KdfParams
    salt: bytes
    nonce: bytes
    sealed: bytes

    @classmethod
    def create(cls, office: Office, office_key: SigningKey, passphrase: bytes, kdf: KdfParams,
               rand: Random) -> RecoveryKit:
        salt, nonce = rand(SALT_SIZE), rand(NONCE_SIZE)
        sealed = seal(derive_key(passphrase, salt, kdf), office_key.seed, _KIT_AAD, nonce)
        return cls(office, kdf, salt, nonce, bytes(sealed))

    def open(self, passphrase: bytes) -> SigningKey:
        try:
            seed = unseal(derive_key(passphrase, self.salt, self.kdf), self.sealed, _KIT_AAD, self.nonce, "kit")
        except DecryptError:
            raise WrongKitPassphrase() from None
        key = SigningKey(bytes(seed))
        if key.public_key != self.office.public_key:
            raise FormatError("recovery kit", "the key inside is not the office's key")
        return key

    def to_bytes(self) -> bytes:
        return codec.pack({"v": KIT_VERSION, "kind": "peerbackup-recovery-kit", "office": self.office.to_wire(),
                           "kdf": {"ops": self.kdf.opslimit, "mem": self.kdf.memlimit}, "salt": self.salt,
                           "nonce": self.nonce, "sealed": self.sealed})

    @classmethod
    def from_bytes(cls, data: bytes) -> RecoveryKit:
        what = "recovery kit"
        obj = codec.unpack_map(data, what)
        if obj.get("kind") != "peerbackup-recovery-kit":
            raise FormatError(what, "this file is not a peerbackup recovery kit")
        version = codec.field(obj, "v", int, what)
        if version > KIT_VERSION:
            raise UnsupportedVersion(what, version, KIT_VERSION)
        params = kdf_from_wire(codec.field(obj, "kdf", dict, what), what)
        salt, nonce = codec.field(obj, "salt", bytes, what), codec.field(obj, "nonce", bytes, what)
        if len(salt) != SALT_SIZE or len(nonce) != NONCE_SIZE:
            raise FormatError(what, "bad salt or nonce")
        return cls(Office.from_wire(codec.field(obj, "office", dict, what)), params, salt, nonce,
                   codec.field(obj, "sealed", bytes, what))


def init_office(home: Home, office_name: str, peer_name: str, passphrase: bytes, kit_path: str,
                kdf: KdfParams, rand: Random, now: int) -> Identity:
    """Create an office with this peer as its first member and admin; write the recovery kit."""
    check_name(office_name, "office name")
    check_name(peer_name)
    with home.locked():
        _refuse_initialised(home)
        office_key = SigningKey.generate(rand)
        office = Office(office_name, office_key.public_key)
        # The kit first: an office whose key has no recovery kit is one lost disk from gone.
        write_private_path(kit_path, RecoveryKit.create(office, office_key, passphrase, kdf, rand).to_bytes())
        return _become_admin(home, office, office_key, peer_name, rand, now)


def write_private_path(path: str, data: bytes) -> None:
    from pathlib import Path
    try:
        write_private(Path(path).absolute(), data)
    except OSError as exc:
        raise UsageError(f"cannot write the recovery kit to {path}: {exc.strerror}") from None


def _become_admin(home: Home, office: Office, office_key: SigningKey, peer_name: str, rand: Random,
                  now: int) -> Identity:
    key = SigningKey.generate(rand)
    cert = Certificate.issue(office_key, key.public_key, peer_name, ROLES, ADMIN_RANK, now)
    ident = Identity(key=key, office=office, certificate=cert, office_key=office_key)
    home.save(ident)
    return ident


def recover_admin(home: Home, kit_bytes: bytes, passphrase: bytes, peer_name: str, rand: Random,
                  now: int) -> Identity:
    """Rebuild an admin on a new machine from the recovery kit: a new peer key, the same office key."""
    kit = RecoveryKit.from_bytes(kit_bytes)
    office_key = kit.open(passphrase)
    with home.locked():
        _refuse_initialised(home)
        return _become_admin(home, kit.office, office_key, check_name(peer_name), rand, now)


@dataclass(frozen=True)
class Joined:
    ident: Identity
    inviter: Certificate
    address: str
    revocations: tuple[bytes, ...]
    peers: tuple[tuple[str, tuple[str, ...]], ...]


async def _redeem(token: join.InviteToken, key: SigningKey, name: str, settings: Settings,
                  rand: Random) -> Joined:
    errors: list[str] = []
    async with aiohttp.ClientSession() as session:
        client = PeerClient(key, settings, time.time, rand, session)
        for address in token.addresses:
            try:
                who = await client.whoami(address)
                office = Office.from_wire(who.office)
                if fingerprint_of(office.public_key) != token.office:
                    raise InviteError(f"the peer at {address} belongs to another office than the invite's")
                inviter = Certificate.from_bytes(who.certificate, office.public_key)
                req = join.JoinRequest(join.token_id(token.secret), key.public_key, name,
                                       join.join_proof(token.secret, key.public_key, name))
                inviter_key = inviter.public_key

                def key_for(_env: object, k: bytes = inviter_key) -> bytes:
                    return k

                body = await client.request(address, inviter.peer_id, join.PATH, req.to_wire(), key_for)
                reply = join.JoinReply.from_wire(body)
                if Office.from_wire(reply.office) != office:
                    raise InviteError("the inviter answered for another office")
                cert = Certificate.from_bytes(reply.certificate, office.public_key)
                if cert.public_key != key.public_key:
                    raise InviteError("the inviter issued a certificate for another key")
                office_key = SigningKey(key.open_sealed(reply.office_key_box)) if reply.office_key_box else None
                if office_key is not None and office_key.public_key != office.public_key:
                    raise InviteError("the office key sent by the inviter is not the office's key")
                ident = Identity(key=key, office=office, certificate=cert, office_key=office_key)
                for raw in reply.revocations:
                    Revocation.from_bytes(raw, office.public_key)
                return Joined(ident, inviter, address, reply.revocations,
                              tuple((p.peer_id, p.addresses) for p in reply.peers))
            except PeerRefused as exc:
                errors.append(f"{address} refused: {exc.args[1]}")
                if exc.code == "forbidden":
                    break  # the inviter said no; another address of the same inviter will say the same
            except PeerUnreachable:
                errors.append(f"cannot reach the inviter at {address} (is its daemon running? the invite works "
                              "only while `peerbackup up` runs on the machine that made it)")
            except (PeerBackupError, FormatError) as exc:
                errors.append(f"{address}: {exc}")
                if isinstance(exc, InviteError):
                    break
    raise InviteError("; ".join(errors) or "the invite names no address")


def join_office(home: Home, token_text: str, name: str, settings: Settings, rand: Random) -> Joined:
    token = join.InviteToken.decode(token_text)
    check_name(name)
    if token.expires < time.time() - settings.clock_skew:
        raise InviteError("this invite has expired: ask an admin for a new one")
    with home.locked():
        _refuse_initialised(home)
        key = SigningKey.generate(rand)
        joined = asyncio.run(_redeem(token, key, name, settings, rand))
        home.save(joined.ident)
    return joined


async def seed_state(home: Home, joined: Joined) -> None:
    """Hand the new member what the inviter told it, so its daemon knows whom to greet first."""
    from peerbackup.office.membership.state import State

    state = await State.open(home.file(STATE_DB))
    try:
        await state.save_cert(joined.inviter)
        for raw in joined.revocations:
            await state.save_revocation(Revocation.from_bytes(raw, joined.ident.office.public_key))
        for peer_id, addrs in joined.peers:
            await state.add_addresses(peer_id, list(addrs), "join")
        await state.add_addresses(joined.inviter.peer_id, [joined.address], "join")
    finally:
        await state.close()


