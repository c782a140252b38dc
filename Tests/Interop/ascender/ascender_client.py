"""An Ascender Framework 2.1.0 client for Courier's interop checks.

Usage: ascender_client.py --transport tcp|redis --port P
Calls math.sum [1,2,3], emits audit.log, calls audit.count, through Ascender's own client proxies, and prints
one JSON line, e.g. {"sum": 6, "count": 1}. Exits 0 on success, 1 with a message on stderr otherwise.
TCP goes through ClientProxyFactory.acreate, Redis through the DI client proxy (with_client_proxy), the only
paths that work in 2.1.0. Needs ascender-framework==2.1.0 with starlette<1.0 (and redis for --transport redis).
"""
import argparse
import asyncio
import contextlib
import json
import logging
import sys

from ascender.common.api_docs import DefineAPIDocs
from ascender.common.microservices import Transports, provideMicroservices
from ascender.common.microservices.instances.client_factory import ClientProxyFactory
from ascender.core import inject
from ascender.core.applications.create_application import createApplication
from ascender.core.router.provide import provideRouter

CALL_TIMEOUT = 5.0  # seconds, per call (Ascender's own timer; it fires on a thread and may not wake the loop)
DEADLINE = 10.0  # seconds for the whole run, enforced by asyncio


async def run(transport: str, port: int) -> dict:
    micro = []
    if transport == "redis":
        micro = [{"token": "CLIENT", "with_client_proxy": True, "options": {
            "transport": Transports.REDIS, "options": {"redis_url": f"redis://127.0.0.1:{port}"}}}]
    app = createApplication(config={"providers": [
        {"provide": DefineAPIDocs, "value": DefineAPIDocs()}, provideRouter([]), provideMicroservices(micro)]})
    if transport == "tcp":
        client = await ClientProxyFactory.acreate(Transports.TCP, {"host": "127.0.0.1", "port": port})
    else:
        inject("TRANSPORT_MANAGER")  # registers the transporter's startup (its pub/sub listener)
        client = inject("CLIENT")  # registers the proxy's startup (connect)
        await app.app.router.startup()
        # The listener runs as a task: wait until it has subscribed the reply channel.
        transporter = inject("TRANSPORT_INSTANCE_CLIENT").transporter
        for _ in range(100):
            if transporter.publisher is not None and \
                    (await transporter.publisher.pubsub_numsub("_rpc:response"))[0][1] > 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError("Redis reply subscription did not start")
    try:
        total = await client.send("math.sum", [1, 2, 3], timeout=CALL_TIMEOUT)
        await client.emit("audit.log", {"message": "hello from ascender"})
        count = await client.send("audit.count", None, timeout=CALL_TIMEOUT)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(app.app.router.shutdown(), 2)
    return {"sum": total, "count": count}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["tcp", "redis"], required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("Ascender Framework").setLevel(logging.WARNING)  # its per-call INFO lines
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the result line
            result = asyncio.run(asyncio.wait_for(run(args.transport, args.port), DEADLINE))
    except TimeoutError as error:  # Ascender's own ("Response timed out.") or our DEADLINE (no text)
        reason = str(error) or f"no reply within {DEADLINE:g} s"
        print(f"ascender client failed: timed out: {reason}", file=sys.stderr)
        return 1
    except Exception as error:  # connection errors, RPCException, ...
        print(f"ascender client failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    if result["sum"] != 6 or not isinstance(result["count"], int) or result["count"] < 1:
        print("ascender client failed: expected sum 6 and count >= 1", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
