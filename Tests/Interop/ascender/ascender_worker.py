"""An Ascender Framework 2.1.0 service for Courier's interop checks.

Usage: ascender_worker.py --transport tcp|redis --port P
Serves math.sum, math.fail (RPCException 422), event audit.log and audit.count through Ascender's own
transporters and event bus. Prints one line `ready` on stdout once it serves; runs until SIGTERM/SIGINT.
Needs ascender-framework==2.1.0 with starlette<1.0 (and redis for --transport redis).
"""
import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from ascender.common.api_docs import DefineAPIDocs
from ascender.common.microservices import RPCException, Transports, provideMicroservices
from ascender.core import inject
from ascender.core.applications.create_application import createApplication
from ascender.core.router.provide import provideRouter

audit_events = 0


async def math_sum(data: list):
    return sum(data)


async def math_fail(data: object):
    raise RPCException("math.fail always fails", code=422)


async def audit_log(data: object):
    global audit_events
    audit_events += 1


async def audit_count():
    return audit_events


async def serve(transport: str, port: int, out) -> None:
    if transport == "tcp":
        options = {"transport": Transports.TCP, "options": {"host": "127.0.0.1", "port": port}}
    else:
        options = {"transport": Transports.REDIS, "options": {"redis_url": f"redis://127.0.0.1:{port}"}}
    app = createApplication(config={"providers": [
        {"provide": DefineAPIDocs, "value": DefineAPIDocs()}, provideRouter([]),
        provideMicroservices([{"token": "WORKER", "options": options}])]})
    # What @MessagePattern/@EventPattern do when a controller loads; before startup, as Redis subscribes then.
    manager = inject("TRANSPORT_MANAGER")
    manager.add_message_pattern("math.sum", math_sum)
    manager.add_message_pattern("math.fail", math_fail)
    manager.add_event_pattern("audit.log", audit_log)
    manager.add_message_pattern("audit.count", audit_count)
    # Ascender's startup handlers, as uvicorn would run them (no HTTP server needed).
    await app.app.router.startup()
    transporter = inject("TRANSPORT_INSTANCE_WORKER").transporter
    # `listen` runs as a task: wait until it really serves (TCP bound / Redis channels subscribed).
    for _ in range(100):
        if transport == "tcp":
            up = transporter.server is not None and transporter.server.is_serving()
        else:
            up = transporter.publisher is not None and all(
                n > 0 for _, n in await transporter.publisher.pubsub_numsub("math.sum", "audit.log"))
        if up:
            break
        await asyncio.sleep(0.05)
    else:
        raise SystemExit("ascender worker did not start")
    print("ready", file=out, flush=True)
    stop = asyncio.Event()
    # A parent may have started us with these blocked (children inherit the mask of the thread that spawned them).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception, asyncio.TimeoutError):
        await asyncio.wait_for(app.app.router.shutdown(), 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=["tcp", "redis"], required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.getLogger("Ascender Framework").setLevel(logging.WARNING)  # its per-call INFO lines
    # Ascender's TCP server print()s every message: keep stdout for the `ready` line only.
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        asyncio.run(serve(args.transport, args.port, out))


if __name__ == "__main__":
    main()
