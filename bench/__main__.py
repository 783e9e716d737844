"""scripts/bench: the app against the raw floor, side by side, on one database.

Both run as single Uvicorn workers on the embedded database (or MONGODB_URL when
set). The default run drives both with wrk in interleaved rounds, so drift in the
machine hits both alike, and prints requests/s, p50/p99 and app/floor ratios.
`--scale N` times page 1, a deep page, a filter and search one request at a time at
1,000, 10,000, ... and N items of one user, then prints the plan of the cursor query.
`--live N` connects N WebSocket subscribers and measures event latency and memory.
`--storm N` sends N logins at once and times `/health` during the storm against idle.
`--soak S` drives a mixed workload for S seconds: requests, 5xx, RSS and open files.
`--batch N` times N creates in one batch against N single POSTs (the default run
prints it for 100 after the throughput table).
`--patch` measures PATCH /items/{id} (a compare-and-swap and its history version).
`--versions N` changes a 10 KiB item N times and prints what its history stores.
`--workers N` compares GET /items/{id} on one API process and on N.
`--seed N` times `docstore-admin seed` of N items against a raw insert_many.
`--cost N` calls the app and the floor in process, N requests a round, and prints
where a by-id read's CPU goes: the floor, validation, the endpoint, the middleware.
`--webhooks N` delivers N changes to a loopback receiver: throughput against a floor
that signs and POSTs the same payloads, and the lag at `--rate` changes/s (100).
Not part of the test suite.
"""

import argparse
import shutil
import sys
from collections.abc import Callable

from bench import (
    batch,
    cost,
    live,
    load,
    patch,
    scale,
    seed,
    soak,
    storm,
    versions,
    webhooks,
    workers,
)
from bench.harness import Setup, running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per round and target")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--scale", type=int, metavar="N", help="scale check with N items")
    parser.add_argument("--live", type=int, metavar="N", help="live feed with N subscribers")
    parser.add_argument(
        "--rate", type=float, help="--live: writes per second (10); --webhooks: changes (100)"
    )
    parser.add_argument("--cost", type=int, metavar="N", help="by id in process: CPU by layer")
    parser.add_argument("--webhooks", type=int, metavar="N", help="N changes to a webhook")
    parser.add_argument("--storm", type=int, metavar="N", help="N logins at once vs /health")
    parser.add_argument("--soak", type=float, metavar="S", help="mixed load for S seconds")
    parser.add_argument("--batch", type=int, metavar="N", help="N creates: batch vs singles")
    parser.add_argument("--versions", type=int, metavar="N", help="history size: N changes")
    parser.add_argument("--patch", action="store_true", help="PATCH: app vs floor")
    parser.add_argument("--workers", type=int, metavar="N", help="by id: 1 worker vs N")
    parser.add_argument("--seed", type=int, metavar="N", help="seed N items vs insert_many")
    args = parser.parse_args()
    # The modes that need only a user (each seeds what it measures), first given wins.
    alone: list[tuple[object, Callable[[Setup], None]]] = [
        (args.cost, lambda setup: cost.report(setup, args.cost, args.rounds)),
        (args.webhooks, lambda setup: webhooks.report(setup, args.webhooks, args.rate or 100)),
        (args.seed, lambda setup: seed.report(setup, args.seed)),
        (args.versions, lambda setup: versions.report(setup, args.versions)),
        (args.batch, lambda setup: batch.report(setup, args.batch, args.rounds)),
        (args.soak, lambda setup: soak.report(setup, args.soak)),
        (args.storm, lambda setup: storm.report(setup, args.storm, args.rounds)),
        (args.live, lambda setup: live.report(setup, args.live, args.rate or 10, args.seconds * 2)),
        (args.scale, lambda setup: scale.report(setup, args.scale)),  # seeded as sizes grow
    ]
    for asked, report in alone:
        if asked:
            with running(1) as setup:
                report(setup)
            return
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("scripts/bench needs wrk: apt-get install wrk (or brew install wrk)")
    with running(args.items) as setup:
        if args.workers:
            workers.report(wrk, setup, args.workers, args)
            return
        if args.patch:
            patch.report(wrk, setup, args)
            return
        load.report(wrk, setup, args)
        batch.report(setup, 100, args.rounds)


if __name__ == "__main__":
    main()
