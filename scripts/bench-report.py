#!/usr/bin/env python3
"""Renders `courier bench --json` output as docs/performance.md and its charts (scripts/bench runs it).

Usage: bench-report.py REPORT.json [--peers PEERS.json] [--output docs/performance.md] [--images docs/images]

Writes the Markdown page and two PNGs: throughput vs calls in flight, and the sequential latency percentile
distribution. The hand-written section between `<!-- analysis -->` and `<!-- /analysis -->` of the existing page
is carried over. The peers' figures (scripts/bench-peers) are included when PEERS.json exists (by default
peers.json beside REPORT.json). Needs matplotlib; the output depends only on the JSON (no timestamps of its own).
"""
import argparse
import json
import math
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANALYSIS_START, ANALYSIS_END = "<!-- analysis -->", "<!-- /analysis -->"
ANALYSIS_PLACEHOLDER = ("_What limits each figure, and where a target is missed, why: written by hand. scripts/bench "
                        "keeps this section when it regenerates the page._")
NA = "—"   # a figure that was not measured


# ---------------------------------------------------------------------------------------------------- formatting


def event_acks_row(settings):
    """The settings row saying whether Courier's emits awaited acknowledgements (older reports: Kafka only)."""
    if "tcp" in settings.get("eventAcksTransports", []):
        acks = settings["eventAcks"]
        return ["TCP, Kafka and Redis pub/sub emits",
                "await each event's write or acknowledgement (`--event-acks`)" if acks
                else "return once the event is queued (`eventAcks=false`: the TCP connection with at most 4,096 "
                     "events unwritten, librdkafka's queue, or the Redis connection with at most 4,096 `PUBLISH`es "
                     "unanswered), as the raw loops do"]
    if "eventAcks" in settings:
        acks = settings["eventAcks"]
        return ["Kafka and Redis pub/sub emits",
                "await each event's acknowledgement (`--event-acks`)" if acks
                else "return once the event is queued (`eventAcks=false`: librdkafka's queue, or the Redis "
                     "connection with at most 4,096 `PUBLISH`es unanswered), as the raw loops do"]
    acks = settings.get("kafkaEventAcks")
    return ["Kafka emits", NA if acks is None else (
        "await each event's acknowledgement (`--kafka-event-acks`)" if acks
        else "return once librdkafka queued the event (`eventAcks=false`), as the raw produce loop does")]


def number(value, kind="rate"):
    """One format per kind of figure, so a column reads evenly; None (not measured) as a dash.
    rate: whole numbers with thousands separators; micros: 0.1 µs below 1 ms; mib: 0.1 MiB; plain: as short
    as exact (settings)."""
    if value is None:
        return NA
    if kind == "micros":
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}"
    if kind == "cores":
        return f"{value:.2f}"
    if kind == "mib":
        return f"{value:,.1f}"
    if kind == "plain":
        return f"{value:,g}" if isinstance(value, float) else f"{value:,}"
    return f"{value:,.0f}"


def ratio(value):
    return NA if value is None else f"{value:.2f}"


def divide(a, b):
    return a / b if a is not None and b else None


def table(header, rows, align=None):
    align = align or ["---"] + ["--:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def escape(text):
    return str(text).replace("|", "\\|")


# ---------------------------------------------------------------------------------------------------- figures


def throughput_at(side, in_flight):
    for point in (side or {}).get("throughput") or []:
        if point.get("inFlight") == in_flight:
            return point.get("callsPerSecond")
    return None


def cpu_at(side, in_flight):
    for point in (side or {}).get("throughput") or []:
        if point.get("inFlight") == in_flight:
            return point.get("cpu")
    return None


def micros_per_unit(cpu, part=None):
    """CPU per call or event in µs: every accounted process's (part None), or one part's ('workerSeconds')."""
    if not cpu or not cpu.get("units"):
        return None
    if part is not None:
        seconds = cpu.get(part)
    else:
        seconds = sum(cpu.get(key) or 0 for key in ("clientSeconds", "workerSeconds", "brokerSeconds"))
    return None if seconds is None else seconds / cpu["units"] * 1e6


def latency(side, key):
    return ((side or {}).get("latency") or {}).get(key)


def given_ratio(transport, key, in_flight=None):
    """The ratio as `courier bench` computed it, when it did."""
    ratios = transport.get("ratios") or {}
    if in_flight is None:
        return ratios.get(key)
    for point in ratios.get("throughput") or []:
        if point.get("inFlight") == in_flight:
            return point.get("ratio")
    return None


def transport_table(transport, in_flights):
    courier, raw = transport.get("courier") or {}, transport.get("raw")
    rows = []

    def row(label, c, r, stated=None, kind="rate"):
        # The ratio is courier/raw: above 1 is slower for latencies, faster for rates.
        value = stated if stated is not None else divide(c, r)
        rows.append([label, number(c, kind), number(r, kind) if raw else NA, ratio(value) if raw else NA])

    row("sequential RPC p50 (µs)", latency(courier, "p50Micros"), latency(raw, "p50Micros"),
        given_ratio(transport, "latencyP50"), kind="micros")
    row("sequential RPC p99 (µs)", latency(courier, "p99Micros"), latency(raw, "p99Micros"), kind="micros")
    row("sequential RPC p99.9 (µs)", latency(courier, "p999Micros"), latency(raw, "p999Micros"), kind="micros")
    for n in in_flights:
        row(f"RPC calls/s, {n} in flight", throughput_at(courier, n), throughput_at(raw, n),
            given_ratio(transport, "throughput", n))
    row("events/s handled", courier.get("eventsPerSecond"), (raw or {}).get("eventsPerSecond"),
        given_ratio(transport, "events"))
    row("stream elements/s", courier.get("streamElementsPerSecond"), (raw or {}).get("streamElementsPerSecond"))
    row("worker peak RSS (MiB)", courier.get("workerPeakRSSMiB"), (raw or {}).get("workerPeakRSSMiB"), kind="mib")
    # CPU at the targets' 64 in flight (or the most measured below it), and per event.
    cpu_n = max([n for n in in_flights if n <= 64] or in_flights or [64])
    c_cpu, r_cpu = cpu_at(courier, cpu_n), cpu_at(raw, cpu_n)
    if c_cpu or r_cpu:
        row(f"CPU per call, {cpu_n} in flight, all processes (µs)", micros_per_unit(c_cpu), micros_per_unit(r_cpu),
            kind="micros")
        row("… of it the worker's (µs)", micros_per_unit(c_cpu, "workerSeconds"),
            micros_per_unit(r_cpu, "workerSeconds"), kind="micros")
        row(f"cores busy, {cpu_n} in flight", (c_cpu or {}).get("busyCores"), (r_cpu or {}).get("busyCores"),
            kind="cores")
    c_ev, r_ev = courier.get("eventsCPU"), (raw or {}).get("eventsCPU")
    if c_ev or r_ev:
        row("CPU per event, all processes (µs)", micros_per_unit(c_ev), micros_per_unit(r_ev), kind="micros")
        row("… of it the worker's (µs)", micros_per_unit(c_ev, "workerSeconds"), micros_per_unit(r_ev, "workerSeconds"),
            kind="micros")
    text = table(["", "Courier", "raw", "Courier / raw"], rows)
    if not raw:
        text += "\n\nNo raw baseline for this transport in this run."
    return text


def peers_section(peers, report):
    """The Python peers' table, with this run's Courier figures on the same transports beside them."""
    by_id = {t.get("id"): t for t in report.get("transports") or []}
    rows = []
    for transport_id in dict.fromkeys(p.get("transport") for p in peers.get("peers") or []):
        courier = (by_id.get(transport_id) or {}).get("courier")
        if courier:
            rows.append([f"**Courier** ({report.get('courierCommit') or 'this run'})",
                         escape((by_id[transport_id].get("title") or transport_id)),
                         number(latency(courier, "p50Micros"), "micros"),
                         number(latency(courier, "p99Micros"), "micros"),
                         number(throughput_at(courier, 1)), number(throughput_at(courier, 64)),
                         number(courier.get("eventsPerSecond")), number(courier.get("workerPeakRSSMiB"), "mib")])
        for peer in peers.get("peers") or []:
            if peer.get("transport") != transport_id:
                continue
            lat = peer.get("latency") or {}
            cells = [f"{escape(peer.get('framework'))} {escape(peer.get('version') or '')}".strip(),
                     escape(peer.get("title") or transport_id),
                     number(lat.get("p50Micros"), "micros"), number(lat.get("p99Micros"), "micros")]
            for n in (1, 64):
                point = next((t for t in peer.get("throughput") or [] if t.get("inFlight") == n), None)
                cell = number((point or {}).get("callsPerSecond"))
                if point and point.get("errors"):
                    kinds = ", ".join(sorted((point.get("errorTypes") or {}).keys()))
                    cell += f" ({point['errors']:,} of {point['calls'] + point['errors']:,} failed{': ' + kinds if kinds else ''})"
                cells.append(cell)
            events = peer.get("events") or {}
            cell = number(events.get("eventsPerSecond"))
            if events and events.get("handled") != events.get("emitted"):
                cell += f" ({events.get('handled'):,} of {events.get('emitted'):,} handled)"
            cells += [cell, number(peer.get("workerPeakRSSMiB"), "mib")]
            rows.append(cells)
    settings = peers.get("settings") or {}
    versions = peers.get("versions") or {}
    machine = peers.get("machine") or {}
    same_day = (peers.get("date") or "")[:10] == (report.get("date") or "")[:10]
    others = [f["cpu"]["othersPercent"] for p in peers.get("peers") or []
              for f in [p.get("latency"), p.get("events"), *(p.get("throughput") or [])]
              if f and (f.get("cpu") or {}).get("othersPercent") is not None]
    load_note = ""
    if others:
        span = f"{min(others):.0f}" if round(min(others)) == round(max(others)) else \
            f"{min(others):.0f}–{max(others):.0f}"
        load_note = (f" While the figures ran, processes other than the benchmark's used {span} % of the machine's "
                     "CPU" + (" (the figures are lower than an idle machine gives)." if max(others) > 10 else "."))
    lines = [
        "## Python peers, same machine" + (", same day" if same_day else ""),
        "",
        f"Measured by `scripts/bench-peers` on {peers.get('date', NA)} (Courier: {report.get('date', NA)}): the same "
        f"workload (`math.sum` {settings.get('payload', '[1,2,3]')}, `audit.log` events) through "
        "[FastStream](https://pypi.org/project/faststream/) and "
        "[Ascender](https://pypi.org/project/ascender-framework/) "
        "with their default settings, the worker in its own process, a fresh worker and client for each figure, "
        f"each figure {number(settings.get('secondsPerFigure'), 'plain')} s after a "
        f"{number(settings.get('warmupSeconds'), 'plain')} s "
        f"warm-up. Python {machine.get('python', NA)}; "
        + ", ".join(f"{name} {v}" for name, v in versions.items()) + ". "
        "FastStream has no TCP transport, and neither framework's Kafka RPC works against a broker, so they "
        "appear on Redis pub/sub and TCP only. Both handle one message at a time per subscription (FastStream) or "
        "per connection (Ascender), and Ascender's TCP server print()s every message it receives (to a log file "
        "here). Events/s counts events the worker handled, from the first emit to the last event handled; calls "
        "that failed or timed out are not counted as calls."
        + load_note,
        "",
        table(["framework", "transport", "p50 (µs)", "p99 (µs)", "calls/s, 1 in flight", "calls/s, 64 in flight",
               "events/s handled", "worker peak RSS (MiB)"], rows, ["---", "---"] + ["--:"] * 6),
    ]
    if peers.get("complete") is False:
        lines += ["", "This peers run was interrupted: figures it did not reach are shown as —."]
    failures = [f"{p.get('framework')} {p.get('title')}: {f}" for p in peers.get("peers") or []
                for f in p.get("failures") or []]
    if failures:
        lines += ["", "Figures that could not be measured: " + "; ".join(escape(f) for f in failures) + "."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- charts


def colors(transports):
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"]
    return {t.get("id"): palette[i % len(palette)] for i, t in enumerate(transports)}


def legend_below(figure, axes):
    """The legend under the plot, where it cannot hide a line, in as many rows as it needs."""
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        axes.legend(handles, labels, fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                    frameon=False)
    figure.tight_layout()


def save(figure, path):
    # No Software/date metadata: the PNG depends only on the figures.
    figure.savefig(path, dpi=110, metadata={"Software": None})


def throughput_chart(report, path, plt):
    transports = report.get("transports") or []
    color = colors(transports)
    in_flights = (report.get("settings") or {}).get("inFlight") or [1, 16, 64, 256]
    figure, axes = plt.subplots(figsize=(8, 6))
    for transport in transports:
        for side, style, label in (("courier", "-", "Courier"), ("raw", "--", "raw")):
            points = [(p["inFlight"], p["callsPerSecond"]) for p in (transport.get(side) or {}).get("throughput") or []
                      if p.get("inFlight") and p.get("callsPerSecond")]
            if points:
                xs, ys = zip(*sorted(points))
                axes.plot(xs, ys, style, marker="o" if side == "courier" else "s", markersize=4,
                          color=color[transport.get("id")], label=f"{transport.get('title')}: {label}")
    axes.set_xscale("log", base=2)
    axes.set_xticks(in_flights, [str(n) for n in in_flights])
    axes.minorticks_off()
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    axes.set_xlabel("calls in flight")
    axes.set_ylabel("RPC calls/s (log)")
    axes.set_title("RPC throughput vs calls in flight (Courier solid, raw dashed)")
    axes.grid(True, which="major", alpha=0.3)
    legend_below(figure, axes)
    save(figure, path)
    plt.close(figure)


def latency_chart(report, path, plt):
    transports = report.get("transports") or []
    color = colors(transports)
    figure, axes = plt.subplots(figsize=(8, 6))
    largest = 10.0
    for transport in transports:
        for side, style, label in (("courier", "-", "Courier"), ("raw", "--", "raw")):
            lat = (transport.get(side) or {}).get("latency") or {}
            points = sorted((p["percentile"], p["micros"]) for p in lat.get("percentiles") or []
                            if p.get("percentile") is not None and p.get("micros") is not None)
            if not points:   # no distribution in the JSON: the summary percentiles still make a line
                points = [(p, lat[key]) for p, key in ((50.0, "p50Micros"), (99.0, "p99Micros"),
                                                         (99.9, "p999Micros"), (100.0, "maxMicros"))
                          if lat.get(key) is not None]
            if not points:
                continue
            # x = 1/(1-p): 1 at p0, 10 at p90, 100 at p99… The maximum (p100) sits where the sample runs out,
            # at 1/(1-p) = the number of calls (or just past the last finite point).
            xs, ys = [], []
            for percentile, micros in points:
                if percentile >= 100:
                    x = max(float(lat.get("calls") or 0), (xs[-1] * 2) if xs else 10.0)
                else:
                    x = 1 / (1 - percentile / 100)
                if xs and x <= xs[-1]:
                    continue   # duplicates collapse; the axis must grow
                xs.append(x)
                ys.append(micros)
            largest = max(largest, xs[-1])
            axes.plot(xs, ys, style, color=color[transport.get("id")], label=f"{transport.get('title')}: {label}")
    axes.set_xscale("log")
    decades = range(0, max(1, math.ceil(math.log10(largest))) + 1)
    ticks = [10 ** d for d in decades]
    labels = ["0%" if d == 0 else (f"{100 - 10 ** (2 - d):.{max(0, d - 2)}f}%") for d in decades]
    axes.set_xticks(ticks, labels)
    axes.minorticks_off()
    axes.set_xlim(1, ticks[-1])
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axes.set_xlabel("percentile")
    axes.set_ylabel("sequential RPC latency, µs (log)")
    axes.set_title("Sequential RPC latency by percentile (Courier solid, raw dashed)")
    axes.grid(True, which="major", alpha=0.3)
    legend_below(figure, axes)
    save(figure, path)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------------- page


def kept_analysis(path):
    """The hand-written analysis of the page being replaced, markers excluded."""
    try:
        with open(path, encoding="utf-8") as page:
            text = page.read()
    except FileNotFoundError:
        return None
    match = re.search(re.escape(ANALYSIS_START) + r"\n?(.*?)\n?" + re.escape(ANALYSIS_END), text, re.S)
    return match.group(1) if match else None


def page(report, peers, analysis, image_dir):
    machine = report.get("machine") or {}
    settings = report.get("settings") or {}
    in_flights = settings.get("inFlight") or [1, 16, 64, 256]
    transports = report.get("transports") or []
    kafka_properties = settings.get("kafkaProperties") or {}
    out = [
        "# Performance",
        "",
        "<!-- Generated by scripts/bench from `courier bench --json` (scripts/bench-report.py); edit only the "
        "analysis section, which is kept when the page is regenerated. -->",
        "",
        "What is measured: for each transport, Courier's client calling Courier's example worker (`math.sum` "
        f"{settings.get('payload', '[1,2,3]')}, `load.tick` events counted by the worker, `math.countdown` streams of 10,000 elements), and in the same run a "
        "raw baseline that does the same round trip with the same socket or library code path and no framework "
        "(a SwiftNIO echo with the same framing; PUBLISH/SUBSCRIBE ping-pong over the same connection code; "
        "librdkafka produce → consume request/reply). Figures: sequential RPC latency (one call in flight; "
        "p50, p99, p99.9), RPC throughput with several calls in flight, events handled per second (emitted by the "
        "client, counted by the worker), streamed reply elements per second, and the worker's peak RSS.",
        "",
        "How: `courier bench`, release build. The worker runs in its own process, the client in the bench "
        "process, over loopback; client, worker and broker share the machine's "
        f"{machine.get('cores', NA)} cores, so every figure includes the cost of the other side and of the broker. "
        "Each figure comes from one run. This virtual machine is noisy: repeated runs of the same figure differed by "
        "up to 40 % (TCP RPC with 64 in flight gave 30,652 to 46,883 calls/s over five runs on one day), more on "
        "the tails; ratios measured in the same run vary less than the figures.",
        "",
        "To repeat: `scripts/bench` (installs what is missing, builds, starts a redis-server, runs "
        "`courier bench`, regenerates this page and its charts); `scripts/bench --seconds 2` passes its options to "
        "`courier bench`. `scripts/bench-peers` measures the Python peers first, when you want them on this page.",
        "",
        "## Machine and versions",
        "",
        table(["", ""], [
            ["date", report.get("date", NA)],
            ["Courier commit", f"`{report['courierCommit']}`" if report.get("courierCommit") else NA],
            ["CPU", f"{escape(machine.get('cpuModel', NA))}, {machine.get('cores', NA)} cores"],
            ["memory", f"{number(machine.get('memoryGiB'), 'plain')} GiB"],
            ["OS, kernel", f"{escape(machine.get('os', NA))}, Linux {escape(machine.get('kernel', NA))}"],
            ["Swift", machine.get("swift", NA)],
            ["librdkafka", machine.get("librdkafka", NA)],
            ["hiredis", machine.get("hiredis", NA)],
            ["redis-server", machine.get("redisServer", NA)],
        ], ["---", "---"]),
        "",
        "## Settings",
        "",
        table(["", ""], [
            ["duration per figure", f"{number(settings.get('seconds'), 'plain')} s after "
                                    f"{number(settings.get('warmupSeconds'), 'plain')} s warm-up"
                                    + (f", in {settings['rounds']} rounds alternating Courier and the raw baseline "
                                       "(both servers up; a figure is its total over the rounds)"
                                       if (settings.get("rounds") or 1) > 1 else "")],
            ["events per event figure", number(settings.get("eventCount"), "plain")
             + (f", emitted by {number(settings.get('emitters'), 'plain')} tasks at once"
                if settings.get("emitters") else "")
             + (f", {number(settings.get('emitBatch'), 'plain')} per `emitBatch` call"
                if (settings.get("emitBatch") or 1) > 1 else "")],
            event_acks_row(settings),
            ["calls in flight", ", ".join(str(n) for n in in_flights)],
            ["payload", f"`{settings.get('payload', NA)}`"],
            ["Kafka properties (worker, client and raw baseline)",
             ", ".join(f"`{k}={v}`" for k, v in kafka_properties.items()) or NA],
        ], ["---", "---"]),
        "",
        "## Figures",
        "",
        "Courier / raw is Courier's figure divided by the raw baseline's: above 1 means slower for latencies, "
        "faster for rates and more CPU for CPU figures.",
        "",
        "CPU figures are the kernel's accounting over the step: the bench process's own time (`getrusage`: the "
        "client, and on the embedded Kafka cluster the broker too; the raw Kafka baseline also consumes its events "
        "there), the worker's or raw server's and a broker process's (`/proc/<pid>/stat`, in 10 ms ticks), divided "
        "by the calls or events counted. Cores busy is the whole machine's busy time over the step (`/proc/stat`), "
        "in cores. A rate is the cores kept busy divided by the CPU per call, so a throughput ratio is the product "
        "of the two ratios.",
    ]
    for transport in transports:
        out += ["", f"### {escape(transport.get('title') or transport.get('id'))}", "",
                transport_table(transport, in_flights)]
    out += ["", "![RPC throughput vs calls in flight](" + f"{image_dir}/throughput.png)", "",
            "![Sequential RPC latency by percentile](" + f"{image_dir}/latency.png)"]
    targets = report.get("targets") or []
    if targets:
        met = sum(1 for t in targets if t.get("met"))
        out += ["", "## Targets", "", f"{met} of {len(targets)} met in this run.", "",
                table(["target", "figure", ""],
                      [[escape(t.get("name", "")), escape(t.get("figure", NA)),
                        "met" if t.get("met") else "**missed**"] for t in targets], ["---", "--:", "---"])]
    codec = report.get("codec")
    if codec:
        out += ["", "## The codec alone", "",
                "Courier's NestJS encodes and decodes of one message, on both sides, run back to back on one thread "
                f"({number(codec.get('iterations'))} times in five rounds, the best round reported; warm caches, so a "
                f"lower bound of their cost inside a real call): **{codec.get('tcpCallMicros')} µs per TCP call** (the request's payload, envelope and frame, "
                "their decoding by the worker, the reply's, and their decoding by the client) and "
                f"**{codec.get('kafkaEventMicros')} µs per Kafka event** (the record, and the payload's parse for the "
                "handler). The raw baselines skip this work. Added to raw's CPU per call or event, it bounds the share "
                "of raw Courier could reach with no other cost of its own; the targets above give that bound."]
    memory = report.get("memory")
    if memory:
        title = next((t.get("title") for t in transports if t.get("id") == memory.get("transport")),
                     memory.get("transport"))
        out += ["", "## Memory", "",
                f"A worker holding {number(memory.get('inFlight'))} calls in flight over {escape(title)} peaked at "
                f"**{number(memory.get('workerPeakRSSMiB'), 'mib')} MiB** RSS."]
    out += ["", "## What limits the figures", "", ANALYSIS_START,
            analysis if analysis is not None else ANALYSIS_PLACEHOLDER, ANALYSIS_END]
    if peers:
        out += ["", peers_section(peers, report)]
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report")
    parser.add_argument("--peers", help="scripts/bench-peers output (default: peers.json beside REPORT, if any)")
    parser.add_argument("--output", default=os.path.join(ROOT, "docs", "performance.md"))
    parser.add_argument("--images", default=None, help="default: images/ beside --output")
    args = parser.parse_args()

    with open(args.report, encoding="utf-8") as f:
        report = json.load(f)
    peers_path = args.peers or os.path.join(os.path.dirname(os.path.abspath(args.report)), "peers.json")
    peers = None
    if os.path.exists(peers_path):
        with open(peers_path, encoding="utf-8") as f:
            peers = json.load(f)
    elif args.peers:
        sys.exit(f"bench-report: {args.peers} does not exist")
    output_dir = os.path.dirname(os.path.abspath(args.output))
    images = args.images or os.path.join(output_dir, "images")
    os.makedirs(images, exist_ok=True)

    import matplotlib
    matplotlib.use("Agg")   # no display; also keeps the output the same everywhere
    import matplotlib.pyplot as plt
    plt.rcParams["svg.hashsalt"] = "courier"   # determinism, should anyone switch to SVG
    throughput_chart(report, os.path.join(images, "throughput.png"), plt)
    latency_chart(report, os.path.join(images, "latency.png"), plt)

    image_link = os.path.relpath(images, output_dir).replace(os.sep, "/")
    text = page(report, peers, kept_analysis(args.output), image_link)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"bench-report: wrote {os.path.relpath(args.output)} and {os.path.relpath(images)}/"
          f"{{throughput,latency}}.png{' (with the Python peers)' if peers else ''}")


if __name__ == "__main__":
    main()
