"""Micro-batching: requests queue up, one model thread labels them in batches.

A model thread owns the model: it takes up to `max_batch` texts from the queue, tokenizes them (off the event
loop), runs them sorted by length under inference mode, and resolves each request's future. Concurrent requests
thus share forward passes, which is where a CPU server gets its throughput. A request that finds the queue empty
after a batch that served one request runs at once (waiting 5 ms for company cost a lone request 8 ms at p50 on 2
cores); under load — others queued, or the last batch shared — the batch waits up to `max_wait_ms` for more (at
concurrency 8, running the first arrival alone split the clients into batches of 1 and 7).
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rnnlab.serve.explain import Attribution
from rnnlab.serve.labeller import Labeller


class QueueFull(Exception):
    """The queue holds `max_queue` texts already: the client should retry later."""


@dataclass
class Labelled:
    probs: np.ndarray  # [N, C]
    n_tokens: list[int]
    """Each text's length in tokens before truncation, special tokens included."""
    attributions: list[Attribution] | None


@dataclass
class _Job:
    texts: list[str]
    explain: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future = field(repr=False)
    taken: bool = False
    """Claimed by the model thread (guarded by the batcher's lock, like `dropped`)."""
    dropped: bool = False
    """Given up by its request while still queued."""


class MicroBatcher:
    """The queue and the model thread. `on_batch(size, seconds)` is told about every batch run."""

    def __init__(
        self,
        labeller: Labeller,
        *,
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
        explainer: Callable[[list[list[int]]], list[Attribution]] | None = None,
        on_batch: Callable[[int, float], None] = lambda size, seconds: None,
    ) -> None:
        self.labeller, self.explainer, self.on_batch = labeller, explainer, on_batch
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000, max_queue
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._queued = 0  # texts waiting, guarded by _lock
        self._lock = threading.Lock()
        self._carry: _Job | None = None  # a claimed job that did not fit the last batch goes first in the next
        self._shared = False  # whether the last batch served several requests: then the next one waits for company
        self._thread = threading.Thread(target=self._run, name="rnnlab-model", daemon=True)

    @property
    def depth(self) -> int:
        """Texts waiting for the model thread."""
        return self._queued

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Finish every job already queued, then stop the model thread."""
        self._queue.put(None)
        self._thread.join()

    async def submit(self, texts: list[str], *, explain: bool = False) -> Labelled:
        """Label `texts` in the next batches; raises QueueFull rather than queueing past `max_queue` texts."""
        with self._lock:
            if self._queued + len(texts) > self.max_queue:
                raise QueueFull(f"{self._queued} texts are queued (limit {self.max_queue})")
            self._queued += len(texts)
        loop = asyncio.get_running_loop()
        job = _Job(texts, explain, loop, loop.create_future())
        self._queue.put(job)
        try:
            return await job.future
        except asyncio.CancelledError:  # the request timed out or its client left: free its place at once
            with self._lock:
                if not job.taken:
                    job.dropped = True
                    self._queued -= len(texts)
            raise

    def _run(self) -> None:
        while (jobs := self._next_batch()) is not None:
            if jobs:
                self._label(jobs)

    def _next_batch(self) -> list[_Job] | None:
        """The jobs of the next batch (up to `max_batch` texts), or None once closed and drained."""
        jobs: list[_Job] = []
        size, deadline = 0, None
        while size < self.max_batch:
            if self._carry is not None:
                job, self._carry = self._carry, None
            elif deadline is None:
                job = self._queue.get()
            else:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            if job is None:  # closed: finish this batch first, then stop
                if not jobs:
                    return None
                self._queue.put(None)
                break
            if not self._take(job):
                continue
            if jobs and size + len(job.texts) > self.max_batch:
                self._carry = job  # first in the next batch
                break
            jobs.append(job)
            size += len(job.texts)
            if deadline is None:
                if self._queue.empty() and not self._shared:
                    break  # no sign of company (none queued, last batch alone): run at once
                deadline = time.monotonic() + self.max_wait
        self._shared = len(jobs) > 1
        return jobs

    def _take(self, job: _Job) -> bool:
        """Claim a queued job for the model thread; False when its request gave up while it waited."""
        with self._lock:
            if job.dropped:
                return False
            if not job.taken:
                job.taken = True
                self._queued -= len(job.texts)
            return True

    def _label(self, jobs: list[_Job]) -> None:
        jobs = [job for job in jobs if not job.future.done()]  # a request that timed out while carried over
        if not jobs:
            return
        texts = [text for job in jobs for text in job.texts]
        start = time.perf_counter()
        try:
            ids, counts = self.labeller.encoder.tokenize_counted(texts)
            probs = self.labeller.probs_of_ids(ids)
            ends = list(itertools.accumulate(len(job.texts) for job in jobs))
            wanted = [ids[i] for job, end in zip(jobs, ends) if job.explain for i in range(end - len(job.texts), end)]
            attributions = iter(self.explainer(wanted) if wanted and self.explainer else ())
        except Exception as error:  # a failed batch fails its requests, never the model thread
            for job in jobs:
                _reply(job, None, error)
            return
        self.on_batch(len(texts), time.perf_counter() - start)
        offset = 0
        for job in jobs:
            n = len(job.texts)
            attr = [next(attributions) for _ in range(n)] if job.explain and self.explainer else None
            result = Labelled(probs[offset : offset + n], counts[offset : offset + n], attr)
            _reply(job, result, None)
            offset += n


def _reply(job: _Job, result: Labelled | None, error: BaseException | None) -> None:
    try:
        job.loop.call_soon_threadsafe(_settle, job.future, result, error)
    except RuntimeError:  # the event loop has closed: nobody is waiting any more
        pass


def _settle(future: asyncio.Future, result: Labelled | None, error: BaseException | None) -> None:
    if future.done():  # cancelled by a timeout meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
