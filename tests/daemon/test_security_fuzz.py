"""The peer protocol's defences, fuzzed against a live daemon (tests/daemon/wire.py): random bytes, random
msgpack, valid requests damaged in transit, damaged messages in signed envelopes, headers with one wrong
field. Every one is refused with the right status, signed by the daemon, and the daemon keeps serving.
"""

from __future__ import annotations

import random
import time
from typing import Any

from peerbackup.core import codec
from peerbackup.core.identity import SigningKey
from peerbackup.errors import ProtocolError
from peerbackup.net import envelope
from peerbackup.net.proto import heartbeat, hello, join
from peerbackup.net.proto.refusal import Refusal
from peerbackup.office.membership.home import Identity
from tests.daemon.harness import Office
from tests.daemon.wire import STATUS_OF_CODE, acme, heartbeat_body, sealed

# ---- 12: fuzzing the live daemon ----------------------------------------------------------------


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, 1, -1, 2, 99, 2**31, 2**63 - 1, -(2**63), rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.random() * 1e6
    if kind == 4:
        return "".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randrange(0, 40)))
    if kind in (5, 6):
        return rng.randbytes(rng.choice([0, 1, 16, 31, 32, 33, 64, rng.randrange(0, 300)]))
    if kind in (7, 8):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    return {rng.choice(["v", "h", "s", "b", "cert", "addrs", "peers", "revoked", "seq", "rd", "tid", "key",
                        "name", "proof", "id", str(rng.randrange(100))]): random_value(rng, depth + 1)
            for _ in range(rng.randrange(0, 6))}


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    """Half the time one in-place byte change (the framing survives), else one to three edits of any
    kind: flips, substitutions, insertions, deletions, truncation, garbage appended. Never the input."""
    out = bytearray(data)
    edits = 1 if rng.random() < 0.5 else rng.randrange(1, 4)
    for _ in range(edits):
        op = rng.randrange(2) if edits == 1 else rng.randrange(6)
        i = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[i % len(out)] ^= 1 << rng.randrange(8)
        elif op == 1 and out:
            out[i % len(out)] = rng.randrange(256)
        elif op == 2:
            out[i:i] = rng.randbytes(rng.randrange(1, 9))
        elif op == 3:
            del out[i:i + rng.randrange(1, 17)]
        elif op == 4:
            del out[i:]
        else:
            out += rng.randbytes(rng.randrange(1, 9))
    if bytes(out) == data:
        out += b"\x00"
    return bytes(out)


def mutate_header(rng: random.Random, header: dict[str, Any], others: list[str]) -> dict[str, Any]:
    """The header with one field deleted or set to a value that must not pass (never a fresh 16-byte
    nonce or an in-window timestamp, which would make a valid request)."""
    h = dict(header)
    key = rng.choice(sorted(h))
    if rng.random() < 0.15:
        del h[key]
        return h
    now_ms = int(time.time() * 1000)
    wrong: dict[str, list[Any]] = {
        "v": [0, 2, 99, -1, "1", None, 1.5],
        "iss": [*others, "", "AAAA-AAAA-AAAA-AAAA", h["iss"].lower(), 7],
        "aud": [*others, "", "AAAA-AAAA-AAAA-AAAA", b"aud"],
        "ts": [now_ms - 3_600_000, now_ms + 3_600_000, 0, -1, 2**63 - 1, -(2**63), "now", 1.5e12],
        "n": [b"", bytes(15), bytes(17), rng.randbytes(64), "nonce", 16],
        "m": ["GET", "PUT", "post", envelope.RESPONSE, "", "P" * 17, 1],
        "p": [heartbeat.PATH, hello.PATH, join.PATH, "/v1/nope", "", "/" + "x" * 300, None],
        "bh": [rng.randbytes(32), b"", bytes(32), "hash"],
        "re": [rng.randbytes(16), b"x", bytes(32), None],
    }
    choices = [v for v in wrong[key] if v != h[key]]
    h[key] = rng.choice(choices) if choices else random_value(rng)
    return h


def mutate_message(rng: random.Random, body: bytes) -> bytes:
    """A message with one field deleted, retyped or set to a random value (or its version changed)."""
    obj = codec.unpack_map(body, "template")
    key = rng.choice([*obj, "extra"])
    op = rng.randrange(4)
    if op == 0:
        obj.pop(key, None)
    elif op == 1:
        obj["v"] = rng.choice([0, 2, 99, -1, "1", None, 1.0])
    elif op == 2 and key in obj and isinstance(obj[key], bytes) and obj[key]:
        obj[key] = mutate_bytes(rng, obj[key])
    else:
        obj[key] = random_value(rng)
    return codec.pack(obj)


def locally_valid_heartbeat(body: bytes) -> bool:
    try:
        heartbeat.Heartbeat.from_wire(body)
    except ProtocolError:
        return False
    return True


def fuzz_payloads(rng: random.Random, alpha_id: str, beta: Identity, eve: SigningKey) -> list[tuple[str, bytes]]:
    """200 (path, request) pairs for alpha, none of which it may accept: beta is a member, eve is not."""
    hint = hello.PeerHint(eve.peer_id, ("10.0.0.9:7420",))
    templates = {
        hello.PATH: hello.Hello(beta.certificate.raw, ("127.0.0.1:1",), (), (hint,)).to_wire(),
        heartbeat.PATH: heartbeat_body(),
        join.PATH: join.JoinRequest(rng.randbytes(16), eve.public_key, "eve", rng.randbytes(32)).to_wire(),
    }

    def seal(key: SigningKey, path: str, body: bytes) -> bytes:
        return envelope.seal(key, alpha_id, "POST", path, body, time.time(), rng.randbytes)[0]

    payloads: list[tuple[str, bytes]] = []
    for _ in range(200):
        path = rng.choice(list(templates))
        kind = rng.choices(range(6), weights=[1, 1, 3, 3, 3, 1])[0]
        if kind == 0:  # random bytes
            data = rng.randbytes(rng.randrange(0, 600))
        elif kind == 1:  # random msgpack, as the envelope itself
            data = codec.pack(random_value(rng))
        elif kind == 2:  # a valid request (from beta, a member), damaged in transit
            data = mutate_bytes(rng, seal(beta.key, path, templates[path]))
        elif kind == 3:  # a properly signed envelope around a damaged message
            body = mutate_message(rng, templates[path]) if rng.random() < 0.6 else mutate_bytes(rng, templates[path])
            # beta signs a damaged heartbeat only when it really is damaged (else it would be a valid beat).
            signer = beta.key if path == heartbeat.PATH and not locally_valid_heartbeat(body) else eve
            data = seal(signer, path, body)
        elif kind == 4:  # a header with one wrong field, properly signed by beta or by eve
            signer = rng.choice([beta.key, eve])
            good = codec.unpack_map(seal(signer, path, templates[path]), "test envelope")
            header = mutate_header(rng, codec.unpack_map(good["h"], "test header"),
                                   [beta.peer_id, eve.peer_id, alpha_id])
            raw = codec.pack(header)
            data = codec.pack({"h": raw, "s": signer.sign(raw), "b": good["b"]})
        else:  # a properly signed envelope around random msgpack, maybe sent to another route
            data = seal(rng.choice([beta.key, eve]), path, codec.pack(random_value(rng)))
            path = rng.choice([path, *templates])
        payloads.append((path, data))
    return payloads


def test_fuzzed_requests_are_refused_and_never_crash_the_daemon(office: Office) -> None:
    alpha, m = acme(office, "beta")
    beta = m["beta"]
    rng = random.Random(7)
    eve = SigningKey(rng.randbytes(32))
    payloads = fuzz_payloads(rng, alpha.id, beta, eve)

    before = alpha.peer.log.read_text().count("peer.refused")
    seen: dict[str, int] = {}
    for path, data in payloads:
        status, env = alpha.send(path, data)  # signed by alpha and bound to the request, or it fails here
        refusal = Refusal.from_wire(env.body)
        assert 400 <= status < 500, f"{status} {refusal} for {path} {data[:80]!r}"
        assert STATUS_OF_CODE.get(refusal.code) == status, refusal
        seen[refusal.code] = seen.get(refusal.code, 0) + 1
    print(f"fuzz: {len(payloads)} requests, refusals by code: {dict(sorted(seen.items()))}")
    # The fuzz reached past the parser: into authentication, signature checks and the handlers.
    assert {"malformed", "version", "bad-signature", "unknown-peer", "wrong-audience", "clock-skew",
            "forbidden"} <= set(seen)
    assert alpha.peer.log.read_text().count("peer.refused") == before + len(payloads)
    alpha.assert_serving()
    alpha.ok(heartbeat.PATH, sealed(beta.key, alpha.id, heartbeat.PATH, heartbeat_body())[0])
