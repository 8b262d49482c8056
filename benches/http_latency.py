#!/usr/bin/env python3
"""Latency of POST /v1/cdrs at a steady rate: from sending a request to its answer (after commit).

Sends REQUESTS_PER_SECOND requests of CDRS_PER_REQUEST canonical CSV rows each (20 x 1000 =
20,000 CDRs/s by default) for SECONDS seconds, on a fixed schedule (a late answer does not delay
the next request), to a running `tollgate serve`, and prints the median, p99 and worst latency.
CDRs come from a canonical CSV file (e.g. one written by `tollgate gen`), whose accounts must be
imported first. Standard library only.

Usage: benches/http_latency.py --cdrs FILE [--url http://127.0.0.1:8080] [--seconds 30]
       [--requests-per-second 20] [--cdrs-per-request 1000]
"""

import argparse
import concurrent.futures
import statistics
import threading
import time
import urllib.error
import urllib.request


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cdrs", required=True)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--requests-per-second", type=float, default=20)
    parser.add_argument("--cdrs-per-request", type=int, default=1000)
    options = parser.parse_args()

    n_requests = int(options.seconds * options.requests_per_second)
    with open(options.cdrs, encoding="utf-8") as file:
        header = file.readline()
        bodies = []
        for _ in range(n_requests):
            rows = [file.readline() for _ in range(options.cdrs_per_request)]
            if not rows[-1]:
                raise SystemExit(f"{options.cdrs} has too few CDRs for {n_requests} requests")
            bodies.append((header + "".join(rows)).encode())

    latencies = []
    statuses = {}
    lock = threading.Lock()

    def send(index):
        request = urllib.request.Request(
            options.url + "/v1/cdrs",
            data=bodies[index],
            headers={"Content-Type": "text/csv", "Idempotency-Key": f"latency-{time.time_ns()}-{index}"},
            method="POST",
        )
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        took = time.perf_counter() - started
        with lock:
            latencies.append(took)
            statuses[status] = statuses.get(status, 0) + 1

    interval = 1.0 / options.requests_per_second
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
        for index in range(n_requests):
            delay = start + index * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, index)
    elapsed = time.perf_counter() - start

    latencies.sort()
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    print(f"requests        {len(latencies)} in {elapsed:.1f} s, statuses {statuses}")
    print(f"rate            {len(latencies) * options.cdrs_per_request / elapsed:,.0f} CDRs/s offered")
    print(f"latency median  {statistics.median(latencies) * 1000:.1f} ms")
    print(f"latency p99     {p99 * 1000:.1f} ms")
    print(f"latency max     {latencies[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
