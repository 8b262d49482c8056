#!/usr/bin/env python3
"""Portal API latency and export throughput against a running `tollgate serve` (see
BENCHMARKS.md for how the store is loaded). Standard library only.

    benches/portal_load.py --url http://127.0.0.1:8080 --token TOKEN --accounts accounts.csv \
        [--pid PID] [--pages 2000] [--usage-rounds 5]

Measures, one request at a time on a kept-alive connection:
  * an unbilled-calls page (100 calls, newest first) of a random account;
  * month-to-date usage by day of every reseller, sub-accounts included;
  * the CSV and Parquet usage exports of the largest reseller over two months: rows (CSV) and
    bytes per second, and the server's resident memory before, during and after (with --pid).
"""

import argparse
import csv
import http.client
import random
import statistics
import threading
import time
import urllib.parse


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(name, seconds):
    millis = [value * 1000 for value in seconds]
    print(
        f"{name}: n={len(millis)} p50={statistics.median(millis):.2f} ms "
        f"p99={percentile(millis, 0.99):.2f} ms max={max(millis):.2f} ms"
    )


def resident_kib(pid):
    """The server's anonymous resident memory (heap and stacks). Mapped store pages are left out:
    they are the kernel's file cache, shared and reclaimable, and counted there either way."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


class Client:
    def __init__(self, url, token):
        parsed = urllib.parse.urlparse(url)
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=600)
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path):
        started = time.perf_counter()
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
        return elapsed, body

    def stream(self, path, chunk):
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status} {response.read()[:300]!r}")
        while True:
            data = response.read(chunk)
            if not data:
                return
            yield data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--accounts", required=True, help="the accounts CSV that was imported")
    parser.add_argument("--pid", type=int, help="the server's pid, to read its memory")
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--usage-rounds", type=int, default=5)
    parser.add_argument("--export-from", default="2026-10-01")
    parser.add_argument("--export-to", default="2026-12-01")
    arguments = parser.parse_args()

    with open(arguments.accounts) as file:
        rows = list(csv.DictReader(file))
    accounts = [row["account"] for row in rows]
    children = {}
    for row in rows:
        if row["parent"]:
            children.setdefault(row["parent"], []).append(row["account"])
    resellers = sorted(children, key=lambda reseller: -len(children[reseller]))
    client = Client(arguments.url, arguments.token)
    generator = random.Random(7)

    for account in accounts[:50]:  # warm the connection and the page cache a little
        client.get(f"/v1/accounts/{account}/unbilled-calls")
    seconds, calls = [], 0
    for _ in range(arguments.pages):
        account = generator.choice(accounts)
        elapsed, body = client.get(f"/v1/accounts/{account}/unbilled-calls?limit=100")
        seconds.append(elapsed)
        calls += body.count(b'"cdr_id"')
    summary(f"unbilled-calls page ({calls / len(seconds):.0f} calls per page)", seconds)

    for reseller in resellers:  # one round to warm the cache, not measured
        client.get(f"/v1/accounts/{reseller}/usage?include_sub_accounts=true")
    seconds = []
    for _ in range(arguments.usage_rounds):
        for reseller in resellers:
            elapsed, body = client.get(
                f"/v1/accounts/{reseller}/usage?include_sub_accounts=true"
            )
            seconds.append(elapsed)
    print(f"resellers: {len(resellers)}, sub-accounts of the largest: {len(children[resellers[0]])}")
    print(f"month-to-date usage body (first reseller): {body[:200]!r}")
    summary("month-to-date usage by day, sub-accounts included", seconds)

    reseller = resellers[0]
    for extension in ["csv", "parquet"]:
        path = (
            f"/v1/exports/usage.{extension}?account={reseller}&include_sub_accounts=true"
            f"&from={arguments.export_from}&to={arguments.export_to}"
        )
        before = resident_kib(arguments.pid) if arguments.pid else 0
        peak = [before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], resident_kib(arguments.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        if arguments.pid:
            sampler.start()
        started = time.perf_counter()
        total_bytes, newlines = 0, 0
        for data in client.stream(path, 1 << 20):
            total_bytes += len(data)
            newlines += data.count(b"\n")
        elapsed = time.perf_counter() - started
        done.set()
        if arguments.pid:
            sampler.join()
        line = f"{extension} export of {reseller} and its sub-accounts: {total_bytes / 1e6:.1f} MB in {elapsed:.2f} s"
        if extension == "csv":
            rows_exported = newlines - 1
            line += f", {rows_exported} rows, {rows_exported / elapsed:,.0f} rows/s"
        else:
            line += f", {total_bytes / 1e6 / elapsed:.1f} MB/s"
        if arguments.pid:
            line += f"; server anonymous RSS {before / 1024:.0f} MB before, peak {peak[0] / 1024:.0f} MB during"
        print(line)


if __name__ == "__main__":
    main()
