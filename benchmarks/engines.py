"""Which cluster engine for dataset comparisons: a local Dask distributed cluster vs a local Ray.

    pip install distributed ray psutil    # in a scratch venv; netdiff itself needs only distributed
    python benchmarks/engines.py --workers 2

For each engine installed: seconds from nothing to a cluster of N single-threaded worker processes
that answered a first task, the memory of every process it started (RSS summed over the process
tree), and the round trip of 1,000 small tasks (each returns a few hundred bytes, like a sample
record), submitted in batches of 32 as netdiff does.
"""

from __future__ import annotations

import argparse
import time


def tree_rss_mib() -> float:
    import psutil

    me = psutil.Process()
    total = 0
    for p in [me, *me.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def record(i: int) -> bytes:
    return bytes(300) + i.to_bytes(4, "little")


def batch(items: list[int]) -> list[bytes]:
    return [record(i) for i in items]


def dask(workers: int) -> dict:
    from distributed import Client, LocalCluster

    before = tree_rss_mib()
    start = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40)
    client = Client(cluster)
    client.submit(record, 0).result()
    up = time.perf_counter() - start
    rss = tree_rss_mib() - before
    start = time.perf_counter()
    futures = [client.submit(batch, list(range(i, i + 32)), pure=False) for i in range(0, 1000, 32)]
    client.gather(futures)
    tasks = time.perf_counter() - start
    client.close()
    cluster.close()
    return {"startup_s": up, "rss_mib": rss, "tasks_s": tasks}


def ray(workers: int) -> dict:
    import ray as _ray

    before = tree_rss_mib()
    start = time.perf_counter()
    _ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    remote = _ray.remote(num_cpus=1)(batch)
    _ray.get([remote.remote([0]) for _ in range(workers)])  # every worker process up
    up = time.perf_counter() - start
    rss = tree_rss_mib() - before
    start = time.perf_counter()
    _ray.get([remote.remote(list(range(i, i + 32))) for i in range(0, 1000, 32)])
    tasks = time.perf_counter() - start
    _ray.shutdown()
    return {"startup_s": up, "rss_mib": rss, "tasks_s": tasks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for name, run in (("dask distributed", dask), ("ray", ray)):
        try:
            result = run(args.workers)
        except ImportError as e:
            print(f"{name}: not installed ({e})")
            continue
        print(f"{name}: cluster of {args.workers} workers up in {result['startup_s']:.2f} s, "
              f"{result['rss_mib']:.0f} MiB in its processes, 1000 small tasks in {result['tasks_s']:.2f} s")


if __name__ == "__main__":
    main()
