"""Runs Courier's benchmark workload through the Python peers FastStream and Ascender, for docs/performance.md.

Usage (scripts/bench-peers runs it in .build/bench/peers-venv with a redis-server it started):
  bench_peers.py run --redis-url redis://127.0.0.1:P --output .build/bench/peers.json [--seconds 5]
  bench_peers.py worker --framework faststream|ascender --transport redis|tcp --redis-url U --port P   (internal)
  bench_peers.py client --framework … --transport … --redis-url U --port P --figure F --seconds S      (internal)

The workload is Courier's example worker's: RPC `math.sum` [1,2,3] → 6 and the event `audit.log`, handled by a
worker in its own process, called by a client in another. Each figure gets a fresh worker and a fresh client
process, because Ascender's TCP transport slows down as a connection (and its server) ages: no figure inherits
the previous one's state. Figures, each bounded in time (--seconds) and in count:
  latency       sequential RPC, p50 / p99 / p99.9 (µs);
  rpc-1, rpc-64 RPC calls/s with 1 and 64 calls in flight (errors and timeouts counted, not retried);
  events        events handled per second by the worker (emitted → handled, counted by the worker, which
                writes its count and the time of the last event handled to a file the client polls).
The worker's peak RSS (VmHWM) is read from /proc before it is stopped.
Frameworks run with their defaults (FastStream handles one message at a time per subscriber, Ascender too).
"""
import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version

PAYLOAD = [1, 2, 3]
WARMUP_SECONDS = 0.5
MAX_SEQUENTIAL_CALLS = 50_000
MAX_CONCURRENT_CALLS = 200_000
MAX_EVENTS = 100_000   # kept well below Redis's pub/sub output buffer limit (8 MB for 60 s) at ~100 B each
CALL_TIMEOUT = 10.0    # seconds per call; a call slower than this counts as an error
DRAIN_SECONDS = 60.0   # after emitting, how long the worker may take to handle the backlog (Ascender TCP: ~40 s)
FIGURES = ["latency", "rpc-1", "rpc-64", "events"]
# (framework, transport) pairs: FastStream has no TCP transport; Kafka RPC does not work in either (see
# /work/shared/reference/brokers-and-peers.md), so Kafka is left out.
PEERS = [("faststream", "redis"), ("ascender", "redis"), ("ascender", "tcp")]
TITLES = {"faststream": "FastStream", "ascender": "Ascender", "redis": "Redis pub/sub", "tcp": "TCP"}


# ---------------------------------------------------------------------------------------------------- worker


class Counter:
    """Events the worker handled, and when (CLOCK_MONOTONIC is system-wide, so the client can compare)."""
    count = 0
    first = None
    last = None

    @classmethod
    def hit(cls):
        now = time.monotonic()
        cls.count += 1
        if cls.first is None:
            cls.first = now
        cls.last = now

    @classmethod
    def snapshot(cls):
        return {"count": cls.count, "first": cls.first, "last": cls.last}

    @classmethod
    def write(cls, path: str):
        with open(path + ".tmp", "w") as stats:
            json.dump(cls.snapshot(), stats)
        os.replace(path + ".tmp", path)   # atomic: the client never reads half a file

    @classmethod
    async def publish(cls, path: str):
        """Writes the snapshot to `path` every 20 ms. A file, not an RPC: Ascender's TCP server handles a
        connection's messages one at a time, so a count request would queue behind the event backlog."""
        while True:
            cls.write(path)
            await asyncio.sleep(0.02)


async def wait_for_signal(stats_file: str):
    publisher = asyncio.create_task(Counter.publish(stats_file))
    stop = asyncio.Event()
    # A parent may have started us with these blocked (children inherit the mask of the thread that spawned them).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    publisher.cancel()


async def faststream_worker(redis_url: str, stats_file: str, out) -> None:
    from faststream.redis import RedisBroker

    broker = RedisBroker(redis_url, logger=None)

    @broker.subscriber("math.sum")
    async def math_sum(data: list[int]) -> int:
        return sum(data)

    @broker.subscriber("audit.log")
    async def audit_log(data: dict) -> None:
        Counter.hit()

    await broker.start()
    await wait_subscribed(redis_url, ["math.sum", "audit.log"])
    Counter.write(stats_file)
    print("ready", file=out, flush=True)
    await wait_for_signal(stats_file)
    with contextlib.suppress(Exception, asyncio.TimeoutError):
        await asyncio.wait_for(broker.stop(), 3)


async def ascender_worker(transport: str, redis_url: str, port: int, stats_file: str, out) -> None:
    # As Tests/Interop/ascender/ascender_worker.py, the set-up that works in 2.1.0.
    from ascender.common.api_docs import DefineAPIDocs
    from ascender.common.microservices import Transports, provideMicroservices
    from ascender.core import inject
    from ascender.core.applications.create_application import createApplication
    from ascender.core.router.provide import provideRouter

    async def math_sum(data: list):
        return sum(data)

    async def audit_log(data: object):
        Counter.hit()

    if transport == "tcp":
        options = {"transport": Transports.TCP, "options": {"host": "127.0.0.1", "port": port}}
    else:
        options = {"transport": Transports.REDIS, "options": {"redis_url": redis_url}}
    app = createApplication(config={"providers": [
        {"provide": DefineAPIDocs, "value": DefineAPIDocs()}, provideRouter([]),
        provideMicroservices([{"token": "WORKER", "options": options}])]})
    manager = inject("TRANSPORT_MANAGER")
    manager.add_message_pattern("math.sum", math_sum)
    manager.add_event_pattern("audit.log", audit_log)
    await app.app.router.startup()   # Ascender's startup handlers, as uvicorn would run them
    transporter = inject("TRANSPORT_INSTANCE_WORKER").transporter
    if transport == "tcp":
        for _ in range(200):
            if transporter.server is not None and transporter.server.is_serving():
                break
            await asyncio.sleep(0.05)
        else:
            raise SystemExit("ascender worker did not start")
    else:
        await wait_subscribed(redis_url, ["math.sum", "audit.log"])
    Counter.write(stats_file)
    print("ready", file=out, flush=True)
    await wait_for_signal(stats_file)
    with contextlib.suppress(Exception, asyncio.TimeoutError):
        await asyncio.wait_for(app.app.router.shutdown(), 3)


async def wait_subscribed(redis_url: str, channels: list[str]) -> None:
    """Subscribers start as tasks: wait until Redis reports a subscriber on every channel."""
    import redis.asyncio as aioredis

    connection = aioredis.from_url(redis_url)
    try:
        for _ in range(200):
            if all(n > 0 for _, n in await connection.pubsub_numsub(*channels)):
                return
            await asyncio.sleep(0.05)
        raise SystemExit(f"worker did not subscribe {channels}")
    finally:
        await connection.aclose()


# ---------------------------------------------------------------------------------------------------- clients


class FastStreamClient:
    async def start(self, redis_url: str, port: int):
        from faststream.redis import RedisBroker

        self.broker = RedisBroker(redis_url, logger=None)
        await self.broker.start()   # a publisher-only broker: connect

    async def send(self, pattern, data):
        message = await self.broker.request(data, channel=pattern, timeout=CALL_TIMEOUT)
        return await message.decode()

    async def emit(self, pattern, data):
        await self.broker.publish(data, channel=pattern)

    async def stop(self):
        await self.broker.stop()


class AscenderClient:
    """As Tests/Interop/ascender/ascender_client.py: TCP through ClientProxyFactory, Redis through the DI proxy."""

    async def start(self, redis_url: str, port: int, transport: str):
        from ascender.common.api_docs import DefineAPIDocs
        from ascender.common.microservices import Transports, provideMicroservices
        from ascender.common.microservices.instances.client_factory import ClientProxyFactory
        from ascender.core import inject
        from ascender.core.applications.create_application import createApplication
        from ascender.core.router.provide import provideRouter

        micro = []
        if transport == "redis":
            micro = [{"token": "CLIENT", "with_client_proxy": True, "options": {
                "transport": Transports.REDIS, "options": {"redis_url": redis_url}}}]
        self.app = createApplication(config={"providers": [
            {"provide": DefineAPIDocs, "value": DefineAPIDocs()}, provideRouter([]),
            provideMicroservices(micro)]})
        if transport == "tcp":
            self.client = await ClientProxyFactory.acreate(Transports.TCP, {"host": "127.0.0.1", "port": port})
        else:
            inject("TRANSPORT_MANAGER")
            self.client = inject("CLIENT")
            await self.app.app.router.startup()
            await wait_subscribed(redis_url, ["_rpc:response"])

    async def send(self, pattern, data):
        return await self.client.send(pattern, data, timeout=CALL_TIMEOUT)

    async def emit(self, pattern, data):
        await self.client.emit(pattern, data)

    async def stop(self):
        with contextlib.suppress(Exception, asyncio.TimeoutError):
            await asyncio.wait_for(self.app.app.router.shutdown(), 2)


def decode_reply(value):
    """FastStream hands back the decoded body; Ascender the payload; either may still be JSON text or bytes."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode()
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    return value


async def call(client, pattern, data):
    """One RPC, bounded by our own timeout too (Ascender's timer runs on a thread and may not wake the loop)."""
    return decode_reply(await asyncio.wait_for(client.send(pattern, data), CALL_TIMEOUT + 1))


def percentile(sorted_values, p):
    """Nearest-rank percentile (p in 0…100) of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), round(p / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


async def measure_latency(client, seconds):
    deadline = time.monotonic() + WARMUP_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):   # a warm-up failure shows again, counted, in the figure
            await call(client, "math.sum", PAYLOAD)
    latencies, errors = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(latencies) < MAX_SEQUENTIAL_CALLS:
        start = time.perf_counter_ns()
        try:
            result = await call(client, "math.sum", PAYLOAD)
        except Exception:
            errors += 1
            continue
        latencies.append((time.perf_counter_ns() - start) / 1000)
        if result != 6:
            raise RuntimeError(f"math.sum returned {result!r}")
    latencies.sort()
    return {"calls": len(latencies), "errors": errors,
            "p50Micros": percentile(latencies, 50), "p99Micros": percentile(latencies, 99),
            "p999Micros": percentile(latencies, 99.9), "maxMicros": latencies[-1] if latencies else None}


async def measure_throughput(client, seconds, in_flight):
    # Warm-up with the same concurrency, then `in_flight` loops that each keep one call outstanding until the
    # deadline; the figure counts calls completed until the last outstanding one returned.
    state = {"calls": 0, "errors": 0, "errorTypes": {}}

    async def loop(deadline, counting):
        while time.monotonic() < deadline and state["calls"] + state["errors"] < MAX_CONCURRENT_CALLS:
            try:
                result = await call(client, "math.sum", PAYLOAD)
                if result != 6:
                    raise RuntimeError(f"math.sum returned {result!r}")
                if counting:
                    state["calls"] += 1
            except Exception as error:
                if counting:
                    state["errors"] += 1
                    name = type(error).__name__
                    state["errorTypes"][name] = state["errorTypes"].get(name, 0) + 1

    warmup_deadline = time.monotonic() + WARMUP_SECONDS
    await asyncio.gather(*(loop(warmup_deadline, False) for _ in range(in_flight)))
    start = time.monotonic()
    await asyncio.gather(*(loop(start + seconds, True) for _ in range(in_flight)))
    elapsed = time.monotonic() - start
    return {"inFlight": in_flight, "calls": state["calls"], "errors": state["errors"],
            "errorTypes": state["errorTypes"] or None, "seconds": round(elapsed, 3),
            "callsPerSecond": state["calls"] / elapsed}


def read_stats(path: str) -> dict:
    with open(path) as stats:
        return json.load(stats)


async def measure_events(client, seconds, stats_file):
    # Emit as fast as the client's emit allows (each awaited, as an application would) for `seconds` or
    # MAX_EVENTS, then wait until the worker has handled them all (or stops making progress).
    before = read_stats(stats_file)
    start = time.monotonic()
    deadline = start + seconds
    emitted = 0
    while time.monotonic() < deadline and emitted < MAX_EVENTS:
        await client.emit("audit.log", {"user": "ada", "action": "login"})
        emitted += 1
    emit_seconds = time.monotonic() - start
    target = before["count"] + emitted
    snapshot, stalled_since, last_count = before, time.monotonic(), before["count"]
    drain_deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < drain_deadline:
        snapshot = read_stats(stats_file)
        if snapshot["count"] >= target:
            break
        if snapshot["count"] != last_count:
            last_count, stalled_since = snapshot["count"], time.monotonic()
        elif time.monotonic() - stalled_since > 3:
            break   # lost events: no progress for 3 s
        await asyncio.sleep(0.05)
    handled = snapshot["count"] - before["count"]
    handled_seconds = (snapshot["last"] - start) if handled and snapshot["last"] else None
    return {"emitted": emitted, "handled": handled, "emitSeconds": round(emit_seconds, 3),
            "emitPerSecond": emitted / emit_seconds,
            "handledSeconds": round(handled_seconds, 3) if handled_seconds else None,
            "eventsPerSecond": handled / handled_seconds if handled_seconds else None}


async def run_client(args) -> dict:
    client = FastStreamClient() if args.framework == "faststream" else AscenderClient()
    if args.framework == "faststream":
        await client.start(args.redis_url, args.port)
    else:
        await client.start(args.redis_url, args.port, args.transport)
    try:
        if args.figure == "latency":
            return await measure_latency(client, args.seconds)
        if args.figure.startswith("rpc-"):
            return await measure_throughput(client, args.seconds, int(args.figure[4:]))
        return await measure_events(client, args.seconds, args.stats_file)
    finally:
        await client.stop()


# ---------------------------------------------------------------------------------------------------- runner


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib(pid: int):
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return None


TICK = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


def process_seconds(pid) -> float:
    """CPU time of one process (user + system), from /proc/PID/stat; 0 when it is gone or unknown."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def own_seconds() -> float:
    import resource
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def run_figure(framework, transport, figure, args, log) -> tuple[dict, float]:
    """Starts a worker, runs one figure's client, stops the worker (by its PID). Returns (figure, peak RSS)."""
    me = os.path.abspath(__file__)
    port = free_port()
    stats_file = os.path.splitext(args.output)[0] + ".stats.json"
    with contextlib.suppress(FileNotFoundError):
        os.remove(stats_file)
    common = ["--framework", framework, "--transport", transport, "--redis-url", args.redis_url,
              "--port", str(port), "--stats-file", stats_file]
    worker = subprocess.Popen([sys.executable, me, "worker", *common], stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        line = worker.stdout.readline()   # `ready`, or EOF if it died
        if line.strip() != "ready":
            raise RuntimeError(f"{framework} {transport} worker did not start; see {log.name}")
        # The client's own bound: every phase is bounded, this only catches a hang.
        budget = WARMUP_SECONDS + args.seconds + DRAIN_SECONDS + 2 * CALL_TIMEOUT + 30
        # CPU accounting over the client's run: what the machine spent beyond our client, worker, redis-server
        # (and this runner) is other people's work, which lowers the figure.
        started = time.monotonic()
        before = (busy_seconds(), own_seconds(), process_seconds(worker.pid), process_seconds(args.redis_pid))
        client = subprocess.run([sys.executable, me, "client", *common, "--figure", figure,
                                 "--seconds", str(args.seconds)],
                                stdout=subprocess.PIPE, stderr=log, text=True, timeout=budget)
        after = (busy_seconds(), own_seconds(), process_seconds(worker.pid), process_seconds(args.redis_pid))
        elapsed = time.monotonic() - started
        busy, own, in_worker, in_redis = (b - a for a, b in zip(before, after))
        if client.returncode != 0:
            raise RuntimeError(f"{framework} {transport} {figure}: client exited {client.returncode}; see {log.name}")
        result = json.loads(client.stdout.strip().splitlines()[-1])
        cores = os.cpu_count() or 1
        result["cpu"] = {"seconds": round(elapsed, 2),
                         "benchPercent": round(100 * (own + in_worker + in_redis) / (elapsed * cores), 1),
                         "othersPercent": round(max(0.0, 100 * (busy - own - in_worker - in_redis) / (elapsed * cores)), 1)}
        return result, peak_rss_mib(worker.pid)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def machine() -> dict:
    cpu = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), None)
    redis_version = None
    with contextlib.suppress(Exception):
        text = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        redis_version = next(w[2:] for w in text.split() if w.startswith("v="))
    # The load before we start: the figures are only comparable when nothing else was running.
    return {"cpuModel": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "redisServer": redis_version,
            "loadAverageAtStart": [round(x, 2) for x in os.getloadavg()]}


def run_all(args) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    log_path = os.path.splitext(args.output)[0] + ".log"
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(),
        "versions": {name: version(name) for name in ("faststream", "ascender-framework", "starlette", "redis")},
        "settings": {"secondsPerFigure": args.seconds, "warmupSeconds": WARMUP_SECONDS, "payload": json.dumps(PAYLOAD, separators=(",", ":")),
                     "inFlight": [1, 64], "callTimeoutSeconds": CALL_TIMEOUT,
                     "maxSequentialCalls": MAX_SEQUENTIAL_CALLS, "maxConcurrentCalls": MAX_CONCURRENT_CALLS,
                     "maxEvents": MAX_EVENTS},
        "complete": False,   # until every figure ran; the file is rewritten after each one
        "peers": [],
    }

    def save():
        with open(args.output + ".tmp", "w") as output:
            json.dump(report, output, indent=2)
            output.write("\n")
        os.replace(args.output + ".tmp", args.output)

    selected = [p for p in PEERS if not args.only or f"{p[0]}-{p[1]}" in args.only]
    with open(log_path, "w") as log:
        for framework, transport in selected:
            entry = {"framework": TITLES[framework], "version": version(
                "faststream" if framework == "faststream" else "ascender-framework"),
                "transport": transport, "title": TITLES[transport],
                "latency": None, "throughput": [], "events": None, "workerPeakRSSMiB": None, "failures": []}
            report["peers"].append(entry)
            for figure in FIGURES:
                label = f"{TITLES[framework]} {TITLES[transport]} {figure}"
                print(f"bench-peers: {label} …", file=sys.stderr, flush=True)
                log.write(f"==== {label}\n")
                log.flush()
                try:
                    result, rss = run_figure(framework, transport, figure, args, log)
                except Exception as error:   # one broken figure must not lose the others
                    entry["failures"].append(f"{figure}: {error}")
                    print(f"bench-peers: {label} failed: {error}", file=sys.stderr, flush=True)
                    continue
                if rss is not None:
                    entry["workerPeakRSSMiB"] = max(rss, entry["workerPeakRSSMiB"] or 0)
                if figure == "latency":
                    entry["latency"] = result
                elif figure == "events":
                    entry["events"] = result
                else:
                    entry["throughput"].append(result)
                print(f"bench-peers: {label}: {summary(figure, result)}{cpu_note(result)}", file=sys.stderr, flush=True)
                save()   # an interrupted run keeps what it measured (marked incomplete)
    report["complete"] = True
    save()
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.splitext(args.output)[0] + ".stats.json")
    print(f"bench-peers: wrote {args.output} (worker and client logs in {log_path})", file=sys.stderr)


def summary(figure, result) -> str:
    if figure == "latency":
        return f"p50 {result['p50Micros']:.0f} µs, p99 {result['p99Micros']:.0f} µs over {result['calls']} calls"
    if figure == "events":
        rate = result["eventsPerSecond"]
        return (f"{result['handled']}/{result['emitted']} handled, "
                f"{rate:.0f}/s handled" if rate else f"{result['handled']}/{result['emitted']} handled")
    return f"{result['callsPerSecond']:.0f} calls/s ({result['calls']} calls, {result['errors']} errors)"


def cpu_note(result) -> str:
    cpu = result.get("cpu") or {}
    return f" [CPU: bench {cpu.get('benchPercent')} %, others {cpu.get('othersPercent')} %]" if cpu else ""


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--redis-url", required=True)
    run.add_argument("--output", required=True)
    run.add_argument("--seconds", type=float, default=5.0, help="per figure (after a 0.5 s warm-up)")
    run.add_argument("--only", nargs="*", help="e.g. faststream-redis ascender-tcp")
    run.add_argument("--redis-pid", type=int, help="the redis-server's PID, to tell its CPU time from others'")
    for name in ("worker", "client"):
        p = sub.add_parser(name)
        p.add_argument("--framework", choices=["faststream", "ascender"], required=True)
        p.add_argument("--transport", choices=["redis", "tcp"], required=True)
        p.add_argument("--redis-url", required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--stats-file", required=True, help="where the worker writes its event count")
        if name == "client":
            p.add_argument("--figure", choices=FIGURES, required=True)
            p.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    if args.command == "run":
        run_all(args)
        return
    # Both frameworks log per message at INFO; Ascender's TCP server print()s every message: keep stdout for
    # our one line (`ready`, or the figure's JSON).
    logging.getLogger("Ascender Framework").setLevel(logging.WARNING)
    logging.disable(logging.INFO)
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        if args.command == "worker":
            if args.framework == "faststream":
                asyncio.run(faststream_worker(args.redis_url, args.stats_file, out))
            else:
                asyncio.run(ascender_worker(args.transport, args.redis_url, args.port, args.stats_file, out))
        else:
            result = asyncio.run(run_client(args))
            print(json.dumps(result), file=out, flush=True)


if __name__ == "__main__":
    main()
