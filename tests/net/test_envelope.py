"""The signed envelope: every refusal is raised, and raised with the right class."""

from __future__ import annotations

import random
from typing import Any

import pytest

from peerbackup.core import codec
from peerbackup.core.identity import SigningKey
from peerbackup.errors import (
    BadSignature,
    ClockSkew,
    Malformed,
    ProtocolError,
    TooLarge,
    UnsupportedProtocol,
    WrongAudience,
)
from peerbackup.net import envelope
from peerbackup.net.envelope import (
    MAX_BODY,
    MAX_ENVELOPE,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    RESPONSE,
    body_hash,
    check,
    open_envelope,
    seal,
)

ALICE = SigningKey(bytes(range(32)))
BOB = SigningKey(bytes(range(1, 33)))
CAROL = SigningKey(bytes(range(2, 34)))
NOW = 1_700_000_000.0
SKEW = 120.0
PATH = "/v1/hello"


def rand(seed: int = 1) -> Any:
    return random.Random(seed).randbytes


def sealed(body: bytes = b"hello body", now: float = NOW, audience: str = BOB.peer_id, method: str = "POST",
           path: str = PATH, reply_to: bytes = b"", key: SigningKey = ALICE, seed: int = 1) -> tuple[bytes, bytes]:
    return seal(key, audience, method, path, body, now, rand(seed), reply_to=reply_to)


def check_as_bob(data: bytes, method: str = "POST", path: str = PATH, now: float = NOW, reply_to: bytes = b"",
                 public_key: bytes = ALICE.public_key) -> envelope.Envelope:
    env = open_envelope(data)
    check(env, public_key, BOB.peer_id, method, path, now, SKEW, reply_to=reply_to)
    return env


def header_obj(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "v": PROTOCOL_VERSION, "iss": ALICE.peer_id, "aud": BOB.peer_id, "ts": int(NOW * 1000),
        "n": b"\x07" * NONCE_SIZE, "m": "POST", "p": PATH, "bh": body_hash(b"body"), "re": b"",
    }
    obj.update(overrides)
    return obj


def crafted(body: bytes = b"body", key: SigningKey = ALICE, sig: bytes | None = None, **overrides: Any) -> bytes:
    """An envelope built by hand, so its header may say anything yet still be signed by `key`."""
    header = codec.pack(header_obj(**overrides))
    return codec.pack({"h": header, "s": key.sign(header) if sig is None else sig, "b": body})


def parts(data: bytes) -> dict[str, Any]:
    return codec.unpack_map(data, "test")


def flip_at(data: bytes, pos: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[pos] ^= mask
    return bytes(out)


# ---- the good path -----------------------------------------------------------------------


def test_seal_then_open_and_check() -> None:
    data, nonce = sealed(body=b"the body")
    env = check_as_bob(data)
    h = env.header
    assert (h.version, h.issuer, h.audience, h.method, h.path) == (PROTOCOL_VERSION, ALICE.peer_id, BOB.peer_id,
                                                                    "POST", PATH)
    assert h.ts_ms == int(NOW * 1000)
    assert h.nonce == nonce and len(nonce) == NONCE_SIZE
    assert h.reply_to == b""
    assert h.body_hash == body_hash(b"the body")
    assert env.body == b"the body"
    assert len(env.signature) == 64


def test_nonce_comes_from_the_random_source() -> None:
    _, n1 = sealed(seed=3)
    _, n2 = sealed(seed=3)
    _, n3 = sealed(seed=4)
    assert n1 == n2 == random.Random(3).randbytes(NONCE_SIZE)
    assert n1 != n3


def test_response_bound_to_its_request_nonce() -> None:
    _, request_nonce = sealed(seed=1)
    data, _ = seal(BOB, ALICE.peer_id, RESPONSE, PATH, b"answer", NOW, rand(2), reply_to=request_nonce)
    env = open_envelope(data)
    check(env, BOB.public_key, ALICE.peer_id, RESPONSE, PATH, NOW, SKEW, reply_to=request_nonce)
    assert env.header.reply_to == request_nonce
    _, other_nonce = sealed(seed=9)
    with pytest.raises(BadSignature):
        check(env, BOB.public_key, ALICE.peer_id, RESPONSE, PATH, NOW, SKEW, reply_to=other_nonce)
    with pytest.raises(BadSignature):
        check(env, BOB.public_key, ALICE.peer_id, RESPONSE, PATH, NOW, SKEW)


def test_empty_and_maximal_bodies_pass() -> None:
    for body in (b"", b"\0" * MAX_BODY):
        data, _ = sealed(body=body)
        assert len(data) <= MAX_ENVELOPE
        assert check_as_bob(data).body == body


# ---- signature -----------------------------------------------------------------------------


@pytest.mark.parametrize("pos", [0, 31, 32, 63])
def test_flipped_signature_byte_is_bad_signature(pos: int) -> None:
    data, _ = sealed()
    p = parts(data)
    bad = codec.pack({"h": p["h"], "s": flip_at(p["s"], pos), "b": p["b"]})
    with pytest.raises(BadSignature):
        check_as_bob(bad)


def test_flipped_header_byte_is_bad_signature() -> None:
    data, nonce = sealed()
    p = parts(data)
    # Bytes inside the nonce, the body hash and the path: the header still decodes, but is not what was signed.
    for target in (nonce, body_hash(b"hello body"), PATH.encode()):
        start = p["h"].index(target)
        for pos in (start, start + len(target) - 1):
            bad = codec.pack({"h": flip_at(p["h"], pos), "s": p["s"], "b": p["b"]})
            env = open_envelope(bad)
            with pytest.raises(BadSignature, match="does not verify"):
                check(env, ALICE.public_key, BOB.peer_id, "POST", PATH, NOW, SKEW)


def test_flipped_body_byte_is_bad_signature() -> None:
    data, _ = sealed(body=b"0123456789")
    p = parts(data)
    for pos in range(10):
        bad = codec.pack({"h": p["h"], "s": p["s"], "b": flip_at(p["b"], pos)})
        with pytest.raises(BadSignature, match="body does not match"):
            check_as_bob(bad)
    for body in (b"", p["b"] + b"x", p["b"][:-1]):
        with pytest.raises(BadSignature, match="body does not match"):
            check_as_bob(codec.pack({"h": p["h"], "s": p["s"], "b": body}))


def test_signed_by_another_key_is_bad_signature() -> None:
    data, _ = sealed(key=CAROL)
    with pytest.raises(BadSignature):
        check_as_bob(data)  # checked against Alice's key
    # Carol signs a header naming Alice as issuer: open_envelope parses it, check refuses it.
    forged = crafted(key=CAROL)
    assert open_envelope(forged).header.issuer == ALICE.peer_id
    with pytest.raises(BadSignature):
        check_as_bob(forged)


def test_header_swapped_between_envelopes_is_bad_signature() -> None:
    a, _ = sealed(body=b"one", seed=1)
    b, _ = sealed(body=b"two", seed=2)
    pa, pb = parts(a), parts(b)
    with pytest.raises(BadSignature):
        check_as_bob(codec.pack({"h": pa["h"], "s": pb["s"], "b": pa["b"]}))
    with pytest.raises(BadSignature):
        check_as_bob(codec.pack({"h": pa["h"], "s": pa["s"], "b": pb["b"]}))


# ---- audience, binding and time --------------------------------------------------------------


def test_wrong_audience() -> None:
    data, _ = sealed(audience=CAROL.peer_id)
    with pytest.raises(WrongAudience) as info:
        check_as_bob(data)
    assert info.value.args == (CAROL.peer_id, BOB.peer_id)
    assert info.value.status == 403


@pytest.mark.parametrize(("method", "path"), [
    ("GET", PATH), ("post", PATH), ("POST", "/v1/heartbeat"), ("POST", PATH + "/"), (RESPONSE, PATH),
])
def test_method_or_path_mismatch_is_bad_signature(method: str, path: str) -> None:
    data, _ = sealed()
    with pytest.raises(BadSignature, match="signed for POST /v1/hello"):
        check_as_bob(data, method=method, path=path)


def test_reply_to_mismatch_is_bad_signature() -> None:
    nonce = b"\x05" * NONCE_SIZE
    data, _ = sealed(reply_to=nonce)
    check_as_bob(data, reply_to=nonce)
    for expected in (b"", b"\x06" * NONCE_SIZE):
        with pytest.raises(BadSignature):
            check_as_bob(data, reply_to=expected)
    plain, _ = sealed()
    with pytest.raises(BadSignature):
        check_as_bob(plain, reply_to=nonce)


@pytest.mark.parametrize("offset", [-SKEW, -SKEW + 0.5, 0.0, SKEW - 0.5, SKEW])
def test_timestamp_within_skew_passes(offset: float) -> None:
    data, _ = sealed(now=NOW + offset)
    check_as_bob(data)


@pytest.mark.parametrize("offset", [-SKEW - 1, SKEW + 1, -86400.0, 86400.0, -NOW])
def test_timestamp_outside_skew_is_clock_skew(offset: float) -> None:
    data, _ = sealed(now=NOW + offset)
    with pytest.raises(ClockSkew) as info:
        check_as_bob(data)
    assert info.value.args[0] == pytest.approx(offset)
    assert info.value.args[1] == SKEW
    assert info.value.status == 401
    assert "check the clocks" in str(info.value)


def test_check_order_signature_before_everything_else() -> None:
    # A forged envelope that is also late, misaddressed and misbound is refused for its signature.
    forged = crafted(key=CAROL, aud=CAROL.peer_id, ts=0, m="GET")
    with pytest.raises(BadSignature, match="does not verify"):
        check_as_bob(forged)


# ---- parsing refusals -----------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2, 255, -1])
def test_unsupported_envelope_version(version: int) -> None:
    data = crafted(v=version)
    with pytest.raises(UnsupportedProtocol) as info:
        open_envelope(data)
    assert info.value.args == (version, PROTOCOL_VERSION)
    assert info.value.code == "version"


def test_crafted_v1_is_accepted() -> None:
    env = check_as_bob(crafted())
    assert env.body == b"body"


def test_oversize_envelope_is_too_large() -> None:
    with pytest.raises(TooLarge) as info:
        open_envelope(b"\0" * (MAX_ENVELOPE + 1))
    assert info.value.args == (MAX_ENVELOPE + 1, MAX_ENVELOPE)
    assert info.value.status == 413


def test_oversize_body_is_too_large() -> None:
    body = b"\0" * (MAX_BODY + 1)
    data, _ = sealed(body=body)
    assert len(data) <= MAX_ENVELOPE  # only the body is over its limit
    with pytest.raises(TooLarge) as info:
        open_envelope(data)
    assert info.value.args == (MAX_BODY + 1, MAX_BODY)


@pytest.mark.parametrize("overrides", [
    {"iss": "alice"}, {"iss": ALICE.peer_id.lower()}, {"iss": ALICE.peer_id.replace("-", "")}, {"iss": ""},
    {"aud": "bob"}, {"aud": "X" * 19},
])
def test_non_peer_id_issuer_or_audience_is_malformed(overrides: dict[str, Any]) -> None:
    with pytest.raises(Malformed, match="peer ids"):
        open_envelope(crafted(**overrides))


def test_issuer_with_trailing_newline_is_malformed() -> None:
    with pytest.raises(Malformed):
        open_envelope(crafted(iss=ALICE.peer_id + "\n"))


@pytest.mark.parametrize(("overrides", "match"), [
    ({"n": b""}, "nonce"), ({"n": b"x" * 15}, "nonce"), ({"n": b"x" * 17}, "nonce"),
    ({"re": b"x" * 8}, "nonce"), ({"re": b"x" * 17}, "nonce"),
    ({"p": "/" + "x" * 256}, "path"), ({"m": "M" * 17}, "method"),
])
def test_bad_lengths_are_malformed(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(Malformed, match=match):
        open_envelope(crafted(**overrides))


@pytest.mark.parametrize("sig", [b"", b"s" * 63, b"s" * 65])
def test_bad_signature_length_is_malformed(sig: bytes) -> None:
    with pytest.raises(Malformed, match="signature length"):
        open_envelope(crafted(sig=sig))


@pytest.mark.parametrize("field", ["v", "iss", "aud", "ts", "n", "m", "p", "bh", "re"])
def test_missing_or_mistyped_header_field_is_malformed(field: str) -> None:
    obj = header_obj()
    del obj[field]
    header = codec.pack(obj)
    with pytest.raises(Malformed, match=f"missing field '{field}'"):
        open_envelope(codec.pack({"h": header, "s": ALICE.sign(header), "b": b"body"}))
    obj = header_obj(**{field: True})
    header = codec.pack(obj)
    with pytest.raises(Malformed, match=f"field '{field}' has type bool"):
        open_envelope(codec.pack({"h": header, "s": ALICE.sign(header), "b": b"body"}))


@pytest.mark.parametrize("data", [
    b"", b"\xc1", b"\x80", codec.pack([1, 2, 3]), codec.pack("h"), codec.pack({"h": b"", "s": b"", "b": b""}),
    codec.pack({"h": "header", "s": b"s" * 64, "b": b""}), codec.pack({"s": b"s" * 64, "b": b""}),
    codec.pack({"h": codec.pack([1]), "s": b"s" * 64, "b": b""}),
    codec.pack({"h": codec.pack(header_obj()), "s": b"s" * 64, "b": "body"}),
    codec.pack({"h": codec.pack(header_obj()), "s": b"s" * 64}),
    codec.pack({"h": codec.pack(header_obj()), "s": b"s" * 64, "b": b""}) + b"\0",
])
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(Malformed) as info:
        open_envelope(data)
    assert info.value.code == "malformed"
    assert info.value.status == 400


def test_every_refusal_is_a_protocol_error_with_a_code() -> None:
    for cls in (Malformed, UnsupportedProtocol, TooLarge, BadSignature, ClockSkew, WrongAudience):
        assert issubclass(cls, ProtocolError)
        assert cls.code != ProtocolError.code
