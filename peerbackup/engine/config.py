"""The repository's config file: format version, id and chunker parameters.

It is stored in the clear so that `not a repository` and `newer format` are
told apart from `wrong passphrase` before any key is tried.
"""

from __future__ import annotations

from dataclasses import dataclass

from peerbackup.core import codec
from peerbackup.core.chunker import ChunkerParams
from peerbackup.errors import FormatError, UnsupportedVersion

REPO_VERSION = 1


@dataclass(frozen=True)
class RepoConfig:
    id: str
    chunker: ChunkerParams
    created: int
    version: int = REPO_VERSION

    def to_bytes(self) -> bytes:
        c = self.chunker
        return codec.pack({
            "peerbackup": "repository", "v": self.version, "id": self.id, "created": self.created,
            "chunker": {"alg": "fastcdc", "min": c.min_size, "avg": c.avg_size, "max": c.max_size},
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> RepoConfig:
        what = "repository config"
        obj = codec.unpack_map(data, what)
        if obj.get("peerbackup") != "repository":
            raise FormatError(what, "not a peerbackup config file")
        version = codec.field(obj, "v", int, what)
        if version > REPO_VERSION:
            raise UnsupportedVersion("the repository", version, REPO_VERSION)
        ch = codec.field(obj, "chunker", dict, what)
        if ch.get("alg") != "fastcdc":
            raise FormatError(what, f"unknown chunker {ch.get('alg')!r}")
        params = ChunkerParams(
            min_size=codec.field(ch, "min", int, what),
            avg_size=codec.field(ch, "avg", int, what),
            max_size=codec.field(ch, "max", int, what),
        )
        params.validate()
        return cls(
            id=codec.field(obj, "id", str, what), chunker=params,
            created=codec.field(obj, "created", int, what), version=version,
        )
