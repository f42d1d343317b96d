"""Where the per-sample work runs: this process, local worker processes, or a Dask cluster.

Every engine yields :class:`~netdiff.dataset.evaluate.SampleResult` s in sample order, so the
aggregation (and the report) is the same whatever the engine and the number of workers. Each
worker process builds its :class:`~netdiff.dataset.evaluate.Evaluator` (its onnxruntime
sessions) once, with single-threaded sessions: N workers use N cores.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from collections.abc import Iterator, Sequence
from typing import Any

from netdiff.dataset.evaluate import Evaluator, Job, SampleResult
from netdiff.errors import NetdiffError

ENGINES = ("local", "dask")
#: With the default --jobs, worker processes start only when the samples left would take this long
#: in this process (measured on the first block): a spawned worker costs about a second to start,
#: so below this one process finishes sooner.
WORKERS_PAY_AFTER_S = 3.0

_EVALUATORS: dict[str, Evaluator] = {}  # per process: job key -> evaluator (built once)


def default_jobs() -> int:
    """The machine's cores available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def job_key(job: Job) -> str:
    """A content key of a job, so a worker process reuses its evaluator across tasks."""
    return hashlib.sha256(pickle.dumps(job, protocol=4)).hexdigest()[:16]


def _evaluator(job: Job) -> Evaluator:
    from netdiff.runners.onnxrt import set_session_threads

    found = _EVALUATORS.get(job.key)
    if found is None:
        previous = set_session_threads(1)
        try:
            found = Evaluator(job)
        finally:
            set_session_threads(previous)
        _EVALUATORS.clear()  # one job at a time per process
        _EVALUATORS[job.key] = found
    return found


def evaluate_batch(job: Job, batch: Sequence[tuple[int, Any]]) -> list[SampleResult]:
    """Evaluate ``(index, sample)`` pairs with this process's evaluator of ``job``."""
    from netdiff.runners.onnxrt import set_session_threads

    evaluator = _evaluator(job)
    previous = set_session_threads(1)  # sessions a target creates lazily (simulators) stay single-threaded
    try:
        return evaluator.evaluate_many(batch)
    finally:
        set_session_threads(previous)


def run_samples(job: Job, samples: Sequence[Any], *, jobs: int = 1, engine: str = "local",
                address: str | None = None, adaptive: bool = False) -> Iterator[SampleResult]:
    """Evaluate every sample and yield the results in sample order.

    ``adaptive`` (the default --jobs): the first block runs in this process, and ``jobs`` workers
    start for the rest only when it would take more than :data:`WORKERS_PAY_AFTER_S` here. The
    results are the same either way.
    """
    if engine not in ENGINES:
        raise NetdiffError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
    job.key = job.key or job_key(job)
    indexed = list(enumerate(samples))
    if engine == "dask":
        yield from _dask(job, indexed, address)
    elif jobs <= 1 or len(indexed) <= 1:
        yield from _in_process(job, indexed)
    else:
        if adaptive:
            size = _evaluator(job).block_size  # built before the clock starts
            started = time.perf_counter()
            yield from evaluate_batch(job, indexed[:size])
            per_sample = (time.perf_counter() - started) / min(size, len(indexed))
            indexed = indexed[size:]
            if per_sample * len(indexed) < WORKERS_PAY_AFTER_S:
                yield from _in_process(job, indexed)
                return
        yield from _processes(job, indexed, jobs)


def _in_process(job: Job, indexed: list[tuple[int, Any]]) -> Iterator[SampleResult]:
    start = 0
    while start < len(indexed):  # a block at a time (the evaluator sizes its blocks)
        size = _evaluator(job).block_size
        yield from evaluate_batch(job, indexed[start:start + size])
        start += size


def _batches(indexed: list[tuple[int, Any]], workers: int, per_worker: int = 8, most: int = 32
             ) -> list[list[tuple[int, Any]]]:
    size = max(1, min(most, len(indexed) // max(1, workers * per_worker)))
    return [indexed[i:i + size] for i in range(0, len(indexed), size)]


def _init_worker(job: Job) -> None:
    _evaluator(job)


def _worker_batch(batch: list[tuple[int, Any]]) -> list[SampleResult]:
    (evaluator,) = _EVALUATORS.values()  # built by _init_worker
    return evaluate_batch(evaluator.job, batch)


def _processes(job: Job, indexed: list[tuple[int, Any]], jobs: int) -> Iterator[SampleResult]:
    import multiprocessing

    # spawn, not fork: a forked onnxruntime thread pool can deadlock the child
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs, initializer=_init_worker, initargs=(job,)) as pool:
        for results in pool.imap(_worker_batch, _batches(indexed, jobs)):
            yield from results


def _dask(job: Job, indexed: list[tuple[int, Any]], address: str | None) -> Iterator[SampleResult]:
    try:
        from distributed import Client
    except ImportError:
        raise NetdiffError("--engine dask needs Dask distributed: pip install 'netdiff[dask]'") from None
    if not address:
        raise NetdiffError("--engine dask needs --address (the scheduler, e.g. tcp://10.0.0.5:8786)")
    try:
        client = Client(address, timeout="20s", set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise NetdiffError(f"cannot reach the Dask scheduler at {address} ({e})") from None
    try:
        workers = max(1, sum(client.nthreads().values()))
        shared = client.scatter(job, broadcast=True)
        batches = _batches(indexed, workers)
        window = 4 * workers
        futures: list[Any] = []
        done = 0
        for batch in batches:
            futures.append(client.submit(evaluate_batch, shared, batch, pure=False))
            if len(futures) - done >= window:
                yield from futures[done].result()
                futures[done] = None
                done += 1
        for k in range(done, len(futures)):
            yield from futures[k].result()
            futures[k] = None
    finally:
        client.close()
