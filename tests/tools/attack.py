"""Send a forged and a replayed request to a running daemon, and print how it answers.

    python -m tests.tools.attack --home HOME_OF_A_MEMBER TARGET_HOST:PORT

The member's key (from its home) signs one valid heartbeat, which is sent
twice (the second is a replay); then a copy with one bit of its signature
flipped (a forgery). A daemon answers 200, 409 replay, 401 bad-signature.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
import urllib.error
import urllib.request

from peerbackup.core import codec
from peerbackup.net import envelope
from peerbackup.net.proto import heartbeat
from peerbackup.net.proto.hello import WHOAMI_PATH, WhoAmI
from peerbackup.net.proto.refusal import Refusal
from peerbackup.office.membership.home import Home
from tests.daemon.harness import post_raw


def describe(status: int, raw: bytes) -> str:
    env = envelope.open_envelope(raw)
    if status == 200:
        return "200 accepted"
    r = Refusal.from_wire(env.body)
    return f"{status} {r.code}: {r.message}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", required=True)
    ap.add_argument("address")
    args = ap.parse_args()
    key = Home(args.home).load().key
    with urllib.request.urlopen(f"http://{args.address}{WHOAMI_PATH}", timeout=10) as resp:
        who = WhoAmI.from_wire(resp.read())
    target = codec.unpack_map(codec.unpack_map(who.certificate, "cert")["body"], "cert")["id"]
    body = heartbeat.Heartbeat(1, bytes(32)).to_wire()
    data, _ = envelope.seal(key, target, "POST", heartbeat.PATH, body, time.time(), secrets.token_bytes)
    print("valid   :", describe(*post_raw(args.address, heartbeat.PATH, data)))
    print("replayed:", describe(*post_raw(args.address, heartbeat.PATH, data)))
    fresh, _ = envelope.seal(key, target, "POST", heartbeat.PATH, body, time.time(), secrets.token_bytes)
    outer = codec.unpack_map(fresh, "envelope")
    sig = bytearray(outer["s"])
    sig[0] ^= 1
    outer["s"] = bytes(sig)
    print("forged  :", describe(*post_raw(args.address, heartbeat.PATH, codec.pack(outer))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
