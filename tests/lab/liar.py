"""A hostile peer for the NAT lab: it keeps a replication stream open (so
it is a link) and answers every reachability probe with a made-up address
and "ok", without ever dialling back (PROTOCOL.md §17.4.2).

    ip netns exec NS python -m tests.lab.liar LISTEN_MULTIADDR FAKE_ADDR
"""

from __future__ import annotations

import os
import sys
from typing import Any

import trio
from libp2p.custom_types import TProtocol

from node.transport import REPLICATION_PROTOCOL, frame, make_host, parse_multiaddr, read_frame
from protocol.links import reach_wire


async def main(listen: str, fake: str) -> None:
    host = make_host(os.urandom(32))

    async def on_reach(stream: Any) -> None:
        try:
            reach_wire.decode(await read_frame(stream, reach_wire.MAX_FRAME))
            await stream.write(frame(reach_wire.encode(reach_wire.Result(fake, True))))
        finally:
            await stream.close()

    async def on_replication(stream: Any) -> None:
        try:
            while await stream.read(65536):
                pass
        except Exception:  # the node closed it
            return

    host.set_stream_handler(TProtocol(reach_wire.PROTOCOL_ID), on_reach)
    host.set_stream_handler(TProtocol(REPLICATION_PROTOCOL), on_replication)
    async with host.run([parse_multiaddr(listen)]):
        print(host.get_id().to_base58(), flush=True)
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])
