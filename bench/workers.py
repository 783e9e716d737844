"""Workers (scripts/bench --workers N): GET /items/{id} against one API process and
against N (`python -m api.server --workers N`) on the same database, in interleaved
wrk rounds. Prints requests/s of each and the ratio; what limits it on this machine
is in docs/benchmarks.md.
"""

import statistics
import time
from typing import Any

from bench.harness import Setup, serve
from bench.load import SETTLE_S, Result, _wrk


def report(wrk: str, setup: Setup, workers: int, args: Any) -> None:
    process, many = serve(["api.server", "--workers", str(workers)], setup.env)
    try:
        targets = {"1 worker": setup.targets["app"], f"{workers} workers": many}
        path = f"/api/v1/items/{setup.first_item}"
        runs: dict[str, list[Result]] = {label: [] for label in targets}
        for _ in range(args.rounds):
            for label, base in targets.items():
                runs[label].append(
                    _wrk(wrk, base + path, setup.token, args.seconds, args.connections)
                )
                time.sleep(SETTLE_S)
    finally:
        process.terminate()
        process.wait()
    print(
        f"\n{args.rounds} rounds x {args.seconds}s, {args.connections} connections, "
        "GET /items/{id}, one database\n"
    )
    one = statistics.median(r.rps for r in runs["1 worker"])
    for label, results in runs.items():
        rps = statistics.median(r.rps for r in results)
        p99 = statistics.median(r.p99_ms for r in results)
        print(f"{label:<12}{rps:>9.0f} req/s{p99:>9.1f} ms p99{rps / one:>8.2f}x")
