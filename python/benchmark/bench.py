"""shmq for Python against py-sharedmemory, multiprocessing.Queue and faster-fifo, in one run.

Usage (from any directory but python/, whose source folder would shadow the
installed package; every transport must be installed in the interpreter)::

    pip install ./python py-sharedmemory==4.3.1 faster-fifo matplotlib
    python python/benchmark/bench.py --quick         # 64 B ... 16 MiB, 1 run, small counts (~30 s)
    python python/benchmark/bench.py                 # 64 B ... 1 GiB, 3 runs per cell (~11 min)
    python python/benchmark/bench.py --runs 1 --sizes 64,1Ki,64Ki,1Mi,16Mi,256Mi,1Gi

Options: ``--quick``; ``--runs N``; ``--sizes`` (a comma list, suffixes Ki, Mi,
Gi); ``--only NAME`` (transports whose name contains NAME); ``--timeout S``
(seconds per measurement, then the cell reads "timeout"); ``--max-messages N``
and ``--rtt-count N`` (caps, for smoke tests); ``--out DIR`` (default
python/benchmark/results).

What it measures:

- One-way throughput: a producer in a fresh process (multiprocessing "spawn")
  puts ``count`` copies of one ``bytes`` object of the size; the main process
  gets them and touches one byte per 4 KiB page of each (every transport hands
  the consumer a new ``bytes`` object). Timed from the first arrival to the last:
  ``count - 1`` messages in steady state. ``count`` is capped by bytes (1 GiB in
  quick mode, 4 GiB otherwise) and by messages (20k quick, 200k otherwise), at
  least 6. Every queue holds the same number of messages in flight: about 1 MiB,
  2 to 64 messages (``capacity_for``), as the Node benchmark does.
- Round trip: the main process puts one message on a queue, the child echoes it
  on a second queue; p50, p99 and max over ``count`` trips after a warm-up.

Times are from a 2-core VM; py-sharedmemory's 200k small messages (~5k/s)
take most of the full run.

Each transport with its own best API: shmq and py-sharedmemory ``put``/``get``
of ``bytes``; ``multiprocessing.Queue`` ``put``/``get``; faster-fifo ``put``
and, in the consumer, ``get_many`` (round trip: ``get``), with identity
``dumps`` and ``bytes(view)`` as ``loads`` (no pickling; one copy out of its
buffer, as the others make). Every cell is the median of ``--runs`` runs
(min–max). The markdown table goes to results/results.md (the layout of the
Node benchmark's benchmark/results/results.md), the numbers to results.json,
and a chart to throughput.svg when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import os
import platform
import queue
import signal
import sys
import time
import traceback
from importlib import metadata

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
ALL_SIZES = [64, KiB, 64 * KiB, MiB, 16 * MiB, 256 * MiB, GiB]
QUICK_SIZES = ALL_SIZES[:5]
RTT_SIZES = [64, 4 * KiB]
STOP = b""  # the round-trip sentinel: an empty message ends the echo

CTX = mp.get_context("spawn")

try:
    import shmq
except ImportError:  # reported as "n/a" rows
    shmq = None
try:
    import py_sharedmemory
except ImportError:
    py_sharedmemory = None
try:
    import faster_fifo
except ImportError:
    faster_fifo = None


def version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def label(n: int) -> str:
    if n >= GiB:
        return f"{n // GiB} GiB"
    if n >= MiB:
        return f"{n // MiB} MiB"
    if n >= KiB:
        return f"{n // KiB} KiB"
    return f"{n} B"


def parse_size(s: str) -> int:
    s = s.strip()
    for suffix, unit in (("Ki", KiB), ("Mi", MiB), ("Gi", GiB)):
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * unit)
    return int(s)


def capacity_for(size: int) -> int:
    """Messages in flight: about 1 MiB, 2 to 64 messages (as in benchmark/transports.mjs)."""
    return max(2, min(64, MiB // size))


# ---------------------------------------------------------------------------
# Transports. Each makes, in the main process, the consumer's end and what the
# child needs (all picklable for "spawn"); the child functions are top level.


def ff_dumps(x):
    return x


def ff_loads(view):
    return bytes(view)


def ff_queue(size: int, capacity: int):
    # The ring must hold `capacity` messages and their 4-byte length headers;
    # never less than faster-fifo's default buffer (1 MB).
    return faster_fifo.Queue(
        max_size_bytes=max(1_000_000, capacity * (size + 64)),
        maxsize=capacity,
        dumps=ff_dumps,
        loads=ff_loads,
    )


class Transport:
    name: str
    available: bool = True
    why: str = ""

    def pair(self, size: int, capacity: int):
        """(receiver used here, sender for the child, closer)."""
        raise NotImplementedError

    def receive_loop(self, rx, count: int, size: int, deadline: float):
        """Gets `count` messages; returns (first arrival ns, last arrival ns, sink).
        A blocking get without a timeout (a timeout costs some transports a poll
        per message): the measurement's alarm (`Alarm`) ends a hung one."""
        get = rx.get
        m = get()
        first = time.perf_counter_ns()
        sink = 0
        for n in range(count):
            if n:
                m = get()
            sink ^= len(m[::4096])  # touch a byte of every page
            if len(m) != size:
                raise RuntimeError(f"got {len(m)} bytes, expected {size}")
        return first, time.perf_counter_ns(), sink


class Shmq(Transport):
    name = "shmq"

    def __init__(self):
        self.available = shmq is not None
        self.why = "" if self.available else "shmq is not installed"

    def pair(self, size, capacity):
        tx, rx = shmq.create_shared_memory_pair(capacity=capacity)

        def close():
            tx.close()
            rx.close()

        return rx, tx, close


class PySharedMemory(Transport):
    name = "py-sharedmemory"

    def __init__(self):
        v = version_of("py-sharedmemory")
        self.available = py_sharedmemory is not None
        self.why = "" if self.available else "py-sharedmemory is not installed"
        if v:
            self.name = f"py-sharedmemory {v}"

    def pair(self, size, capacity):
        tx, rx = py_sharedmemory.create_shared_memory_pair(capacity=capacity, ctx=CTX)

        def close():
            rx.close()
            tx.close()  # never put here: only closes this process's queue handles

        return rx, tx, close


class MpQueue(Transport):
    name = "multiprocessing.Queue"

    def pair(self, size, capacity):
        q = CTX.Queue(maxsize=capacity)

        def close():
            q.close()
            q.join_thread()

        return q, q, close


class FasterFifo(Transport):
    name = "faster-fifo"

    def __init__(self):
        v = version_of("faster-fifo")
        self.available = faster_fifo is not None
        self.why = "" if self.available else "faster-fifo could not be imported"
        if v:
            self.name = f"faster-fifo {v}"

    def pair(self, size, capacity):
        q = ff_queue(size, capacity)
        return q, q, q.close

    def receive_loop(self, rx, count, size, deadline):
        first = 0
        sink = 0
        n = 0
        get_many = rx.get_many
        while n < count:
            tmo = deadline - time.monotonic()
            if tmo <= 0:
                raise TimeoutError
            batch = get_many(timeout=tmo, max_messages_to_get=count - n)
            if n == 0:
                first = time.perf_counter_ns()
            for m in batch:
                sink ^= len(m[::4096])
                if len(m) != size:
                    raise RuntimeError(f"got {len(m)} bytes, expected {size}")
            n += len(batch)
        return first, time.perf_counter_ns(), sink


TRANSPORTS = [Shmq(), PySharedMemory(), MpQueue(), FasterFifo()]


# ---------------------------------------------------------------------------
# Child processes.


def produce(kind: str, tx, size: int, count: int) -> None:
    message = b"\x5a" * size
    put = tx.put
    if kind == "faster-fifo":  # its put gives up after 10 s by default
        put = functools.partial(tx.put, block=True, timeout=3600.0)
    for _ in range(count):
        put(message)
    if kind in ("shmq", "py-sharedmemory"):
        tx.wait_for_all_ack()
        tx.close()
    elif kind == "mp":
        tx.close()
        tx.join_thread()  # until the feeder thread has written everything


def echo(kind: str, rx, tx) -> None:
    get, put = rx.get, tx.put
    while True:
        m = get(timeout=600) if kind == "faster-fifo" else get()
        put(m)
        if len(m) == 0:
            break
    if kind in ("shmq", "py-sharedmemory"):
        tx.wait_for_all_ack(timeout=60)
        tx.close()
        rx.close()
    elif kind == "mp":
        tx.close()
        tx.join_thread()


def kind_of(t: Transport) -> str:
    return {Shmq: "shmq", PySharedMemory: "py-sharedmemory", MpQueue: "mp", FasterFifo: "faster-fifo"}[type(t)]


class Alarm:
    """Raises TimeoutError in the main thread after `seconds` (SIGALRM): a
    blocking get sees it when it next returns to Python (shmq checks signals
    every 100 ms while it waits; pipes and locks are interrupted)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def _fire(self, signum, frame):
        raise TimeoutError("measurement timed out")

    def __enter__(self):
        self.previous = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)


def stop_child(p, grace: float) -> int | None:
    p.join(grace)
    if p.is_alive():
        p.kill()  # only the child this run started
        p.join(10)
    return p.exitcode


# ---------------------------------------------------------------------------
# Measurements: a dict with "status" ("ok", "timeout", "error") and numbers.


def measure_oneway(t: Transport, size: int, count: int, timeout: float) -> dict:
    rx, tx, close = t.pair(size, capacity_for(size))
    p = CTX.Process(target=produce, args=(kind_of(t), tx, size, count), daemon=True)
    status, result = "ok", {}
    try:
        with Alarm(timeout):
            p.start()
            first, last, _ = t.receive_loop(rx, count, size, time.monotonic() + timeout)
        seconds = (last - first) / 1e9
        result = {"messages": count - 1, "seconds": seconds, "perSecond": (count - 1) / seconds}
    except (TimeoutError, queue.Empty):
        status = "timeout"
    except Exception as e:  # a transport that fails shows "error", the run goes on
        status = "error"
        result = {"error": f"{type(e).__name__}: {e}"}
        traceback.print_exc()
    finally:
        code = stop_child(p, 60 if status == "ok" else 0)
        close()
    if status == "ok" and code != 0:
        status, result = "error", {"error": f"producer exited with {code}"}
    return {"status": status, **result}


def measure_rtt(t: Transport, size: int, count: int, warmup: int, timeout: float) -> dict:
    kind = kind_of(t)
    peer_rx, tx, close_a = t.pair(size, 4)  # main -> child
    rx, peer_tx, close_b = t.pair(size, 4)  # child -> main
    p = CTX.Process(target=echo, args=(kind, peer_rx, peer_tx), daemon=True)
    message = b"\x5a" * size
    times = [0] * count
    status, result = "ok", {}
    try:
        with Alarm(timeout):
            p.start()
            put, get = tx.put, rx.get
            now = time.perf_counter_ns
            for i in range(-warmup, count):
                t0 = now()
                put(message)
                get()
                t1 = now()
                if i >= 0:
                    times[i] = t1 - t0
            put(STOP)
            get()
        times.sort()

        def at(q):
            return times[min(count - 1, int(q * count))] / 1000

        result = {"p50": at(0.5), "p99": at(0.99), "max": times[-1] / 1000}
    except (TimeoutError, queue.Empty):
        status = "timeout"
    except Exception as e:
        status = "error"
        result = {"error": f"{type(e).__name__}: {e}"}
        traceback.print_exc()
    finally:
        code = stop_child(p, 30 if status == "ok" else 0)
        close_a()
        close_b()
    if status == "ok" and code != 0:
        status, result = "error", {"error": f"echo process exited with {code}"}
    return {"status": status, **result}


# ---------------------------------------------------------------------------
# References and the machine.


def memcpy_gbps(size: int) -> float:
    """Copy into warm memory (bytearray slice assignment, a memcpy), one core."""
    src = bytearray(b"\x01" * size)
    dst = bytearray(size)
    dst[:] = src
    reps = max(3, min(10_000, GiB // size))
    t0 = time.perf_counter_ns()
    for _ in range(reps):
        dst[:] = src
    return size * reps / (time.perf_counter_ns() - t0)


def new_bytes_gbps(size: int) -> float:
    """Copy into a new bytes object (bytes(bytearray)): what a consumer that returns bytes must do."""
    src = bytearray(b"\x01" * size)
    reps = max(3, min(10_000, GiB // size))
    t0 = time.perf_counter_ns()
    for _ in range(reps):
        b = bytes(src)
        del b
    return size * reps / (time.perf_counter_ns() - t0)


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor() or model
    ram = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    ram = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} × {model}, {round(ram / GiB)} GiB"


def shm_names() -> set[str]:
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


# ---------------------------------------------------------------------------
# Report.


def fmt_rate(per_second: float, size: int) -> str:
    if size >= 64 * KiB:
        return f"{per_second * size / 1e9:.2f} GB/s"
    return f"{per_second / 1e3:.0f} k msg/s"


def cell(r: dict | None, size: int) -> str:
    if r is None:
        return "n/a"
    if r.get("status") != "ok":
        return r.get("status", "n/a")
    return f"{fmt_rate(r['perSecond'], size)} ({fmt_rate(r['min'], size).split()[0]}–{fmt_rate(r['max'], size).split()[0]})"


def report(results: dict, names: list[str], sizes: list[int], runs: int) -> str:
    lines = [
        "# shmq-python benchmark",
        "",
        f"Machine: {results['machine']}; Python {results['python']}; {runs} run(s) per cell, median (min–max); "
        "one-way, producer in a fresh spawned process per run, consumer in the main process.",
        "",
    ]
    for name, why in results["unavailable"].items():
        lines += [f"{name}: n/a ({why}).", ""]
    head = f"| transport | {' | '.join(label(s) for s in sizes)} |"
    rule = f"|---|{'|'.join('---' for _ in sizes)}|"
    lines += ["## One-way throughput", "", head, rule]
    for t in names:
        lines.append(f"| {t} | {' | '.join(cell(results['oneway'].get(f'{t}|{s}'), s) for s in sizes)} |")
    for key, title in (("memcpy", "memcpy, one core, warm"), ("newBytes", "copy into a new bytes object, one core")):
        gbps = [results[key][str(s)] for s in sizes]
        lines.append(f"| {title} | {' | '.join(f'{g:.1f} GB/s' for g in gbps)} |")
    lines += ["", "### Ratios (median / median)", "", f"| shmq vs | {' | '.join(label(s) for s in sizes)} |", rule]

    def ratio(a, b):
        if not a or not b or a.get("status") != "ok" or b.get("status") != "ok":
            return "n/a"
        return f"{a['perSecond'] / b['perSecond']:.1f}×"

    mine = "shmq"
    for other in (n for n in names if n != mine):
        cells = [ratio(results["oneway"].get(f"{mine}|{s}"), results["oneway"].get(f"{other}|{s}")) for s in sizes]
        lines.append(f"| {mine} / {other} | {' | '.join(cells)} |")
    lines += [
        "",
        "## Round trip (µs)",
        "",
        "| transport | 64 B p50 | p99 | max | 4 KiB p50 | p99 | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in names:
        parts = []
        for s in RTT_SIZES:
            r = results["rtt"].get(f"{t}|{s}")
            if r is None:
                parts.append("n/a | n/a | n/a")
            elif r.get("status") != "ok":
                parts.append(f"{r['status']} | {r['status']} | {r['status']}")
            else:
                parts.append(" | ".join(f"{r[k]:.1f}" for k in ("p50", "p99", "max")))
        lines.append(f"| {t} | {' | '.join(parts)} |")
    return "\n".join(lines) + "\n"


def draw_chart(results: dict, path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    plt.rcParams["svg.hashsalt"] = "shmq"  # stable ids from run to run
    fig, ax = plt.subplots(figsize=(9, 5.5))
    by_transport: dict[str, list] = {}
    for key, r in results["oneway"].items():
        t, s = key.rsplit("|", 1)
        if r.get("status") == "ok":
            by_transport.setdefault(t, []).append((int(s), r))
    for t, points in by_transport.items():
        points.sort()
        xs = [s for s, _ in points]
        ys = [r["perSecond"] * s / 1e9 for s, r in points]
        lo = [y - r["min"] * s / 1e9 for (s, r), y in zip(points, ys)]
        hi = [r["max"] * s / 1e9 - y for (s, r), y in zip(points, ys)]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=t)
    sizes = sorted(int(s) for s in results["memcpy"])
    ax.plot(sizes, [results["memcpy"][str(s)] for s in sizes], "k--", label="memcpy (one core, warm)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [label(s) for s in sizes])
    ax.set_xlabel("message size")
    ax.set_ylabel("GB/s")
    ax.set_title(f"One-way throughput between two Python processes\n{results['machine']}; Python {results['python']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, metadata={"Date": None} if path.endswith(".svg") else None)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="sizes up to 16 MiB, 1 run, smaller counts")
    ap.add_argument("--runs", type=int, help="runs per cell (default 3, quick 1)")
    ap.add_argument("--sizes", help="comma list, e.g. 64,1Ki,64Ki,1Mi")
    ap.add_argument("--only", help="transports whose name contains this")
    ap.add_argument("--timeout", type=float, help="seconds per measurement (default 120 quick, 300 full)")
    ap.add_argument("--max-messages", type=int, help="cap on messages per one-way measurement")
    ap.add_argument("--rtt-count", type=int, help="round trips per measurement (warm-up is a fifth of it)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    opts = ap.parse_args()

    sizes = [parse_size(s) for s in opts.sizes.split(",")] if opts.sizes else QUICK_SIZES if opts.quick else ALL_SIZES
    runs = opts.runs or (1 if opts.quick else 3)
    timeout = opts.timeout or (120.0 if opts.quick else 300.0)
    budget = GiB if opts.quick else 4 * GiB
    cap = opts.max_messages or (20_000 if opts.quick else 200_000)
    rtt_count = opts.rtt_count or (10_000 if opts.quick else 30_000)
    rtt_warmup = max(1, rtt_count // 5)

    def count_for(size):
        return max(6, min(cap, budget // size))

    transports = [t for t in TRANSPORTS if not opts.only or opts.only in t.name]
    names = [t.name for t in transports]
    results = {
        "machine": machine(),
        "python": platform.python_version(),
        "versions": {d: version_of(d) for d in ("shmq", "py-sharedmemory", "faster-fifo")},
        "runs": runs,
        "sizes": sizes,
        "unavailable": {t.name: t.why for t in transports if not t.available},
        "oneway": {},
        "rtt": {},
        "memcpy": {},
        "newBytes": {},
    }
    for name, why in results["unavailable"].items():
        print(f"{name}: skipped ({why})", file=sys.stderr)
    before = shm_names()
    started = time.monotonic()

    def progress(s):
        print(f"[{time.monotonic() - started:6.1f}s] {s}", file=sys.stderr, flush=True)

    for size in sizes:
        results["memcpy"][str(size)] = memcpy_gbps(size)
        results["newBytes"][str(size)] = new_bytes_gbps(size)
        for t in transports:
            if not t.available:
                continue
            samples = []
            for r in range(runs):
                progress(f"one-way {label(size)} {t.name} run {r + 1}/{runs}")
                m = measure_oneway(t, size, count_for(size), timeout)
                samples.append(m)
                if m["status"] != "ok":
                    progress(f"  {m['status']} {m.get('error', '')}")
                    break  # a timeout costs `timeout` each run: one is enough
            ok = [m["perSecond"] for m in samples if m["status"] == "ok"]
            key = f"{t.name}|{size}"
            if len(ok) == len(samples):
                results["oneway"][key] = {
                    "status": "ok",
                    "perSecond": sorted(ok)[len(ok) // 2],
                    "min": min(ok),
                    "max": max(ok),
                    "count": count_for(size),
                    "samples": ok,
                }
            else:
                bad = next(m for m in samples if m["status"] != "ok")
                results["oneway"][key] = {"status": bad["status"], "error": bad.get("error"), "samples": ok}
    for size in RTT_SIZES:
        for t in transports:
            if not t.available:
                continue
            samples = []
            for r in range(runs):
                progress(f"round trip {label(size)} {t.name} run {r + 1}/{runs}")
                m = measure_rtt(t, size, rtt_count, rtt_warmup, timeout)
                samples.append(m)
                if m["status"] != "ok":
                    progress(f"  {m['status']} {m.get('error', '')}")
                    break
            ok = [m for m in samples if m["status"] == "ok"]
            key = f"{t.name}|{size}"
            if len(ok) == len(samples):
                results["rtt"][key] = {
                    "status": "ok",
                    "p50": sorted(m["p50"] for m in ok)[len(ok) // 2],
                    "p99": sorted(m["p99"] for m in ok)[len(ok) // 2],
                    "max": max(m["max"] for m in ok),
                    "count": rtt_count,
                }
            else:
                bad = next(m for m in samples if m["status"] != "ok")
                results["rtt"][key] = {"status": bad["status"], "error": bad.get("error")}
    results["seconds"] = time.monotonic() - started

    time.sleep(0.2)  # let exiting children finish their own cleanup
    new = shm_names() - before
    left = sorted(n for n in new if n.startswith("shmq-"))
    results["shmqLeftInDevShm"] = left
    if left:
        print(f"warning: shmq queues left in /dev/shm: {', '.join(left)}", file=sys.stderr)
    blocks = [n for n in new if n.startswith("psm_")]
    if blocks:  # blocks of a py-sharedmemory producer killed at a timeout
        print(f"note: {len(blocks)} psm_ block(s) in /dev/shm; multiprocessing's resource tracker "
              "unlinks them when this process exits", file=sys.stderr)

    all_names = [t.name for t in transports]  # unavailable ones read "n/a"
    markdown = report(results, all_names, sizes, runs)
    os.makedirs(opts.out, exist_ok=True)
    with open(os.path.join(opts.out, "results.md"), "w") as f:
        f.write(markdown)
    with open(os.path.join(opts.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    chart = draw_chart(results, os.path.join(opts.out, "throughput.svg"))
    print(markdown)
    written = ["results.md", "results.json"] + (["throughput.svg"] if chart else [])
    print(f"written to {opts.out}: {', '.join(written)} ({results['seconds']:.0f} s)")
    if not chart:
        print("matplotlib is not installed: no chart", file=sys.stderr)


if __name__ == "__main__":
    main()
