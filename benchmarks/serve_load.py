"""Load test of `rnnlab serve`: a real server process on loopback, driven by an asyncio client in this process.

    python benchmarks/serve_load.py                       # runs/default; ≈ 6 min on 2 cores
    python benchmarks/serve_load.py --quick               # ≈ 2 min: shorter levels and soak

First the same texts go through `Labeller.predict` in this process (batches of `--max-batch`, the server's
batch) and one at a time, which gives the two references: the server at concurrency 32 should reach ≥ 80 % of
the in-process texts/s (batching works), and at concurrency 1 its p95 latency should stay ≤ 1.5 × one in-process
call (batching costs a lone request little). Then concurrency 1, 8 and 32 with one review per request, an
overload run past the queue (expect 429s, no 5xx, a live server after), and a soak whose memory growth is
reported. The server shares the machine's cores with this client: the figures include that cost, as a real
deployment's client on the same host would. Writes docs/serving.md (figures between markers; curl examples
around them) and, where Chromium is installed, docs/img/serve.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, load, machine, table, use_all_cores, write_section  # noqa: E402

SERVING_MD = ROOT / "docs" / "serving.md"


def sample_reviews(n: int, seed: int = 0) -> list[str]:
    from rnnlab.data.readers import read_examples

    texts = read_examples("imdb").texts
    return random.Random(seed).sample(texts, n)


def in_process(run: Path, texts: list[str], batch: int, seconds: float) -> dict[str, float]:
    """Texts/s of Labeller.predict in batches of `batch`, and the latency of one call with one text."""
    import rnnlab

    predictor = rnnlab.load(run, device="cpu")
    predictor.predict(texts[:batch])  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        chunk = [texts[(done + i) % len(texts)] for i in range(batch)]
        predictor.predict(chunk)
        done += batch
    rate = done / (time.perf_counter() - start)
    single = []
    for text in texts[:60]:
        t0 = time.perf_counter()
        predictor.predict([text])
        single.append(time.perf_counter() - t0)
    return {
        "texts_per_s": rate,
        "single_p50_ms": 1000 * float(np.median(single)),
        "single_p95_ms": 1000 * float(np.percentile(single, 95)),
    }


class Server:
    """`rnnlab serve` in its own process, on a free loopback port."""

    def __init__(self, run: Path, *args: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "rnnlab", "serve", str(run), "--port", str(self.port), *args]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited: {self.process.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server never became ready")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024

    def batch_sizes(self) -> Counter:
        """Cumulative batch-size histogram from /metrics, as {upper bound: count}."""
        text = httpx.get(f"{self.url}/metrics").text
        return Counter(
            {float(le): float(n) for le, n in re.findall(r'rnnlab_batch_size_bucket\{le="([\d.]+)"\} ([\d.e+]+)', text)}
        )

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM: drains, then exits
        self.process.wait(timeout=60)


async def drive(url: str, texts: list[str], *, concurrency: int, seconds: float, max_requests: int,
                per_request: int = 1) -> dict:  # fmt: skip
    """`concurrency` clients sending requests back to back until `seconds` or `max_requests`."""
    latencies, statuses, sent = [], Counter(), 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        deadline = time.perf_counter() + seconds

        async def worker(k: int) -> None:
            nonlocal sent
            while time.perf_counter() < deadline and sent < max_requests:
                body = {"inputs": [texts[(sent * per_request + i) % len(texts)] for i in range(per_request)]}
                sent += 1
                t0 = time.perf_counter()
                try:
                    response = await client.post("/v1/classify", json=body)
                    statuses[response.status_code] += 1
                except httpx.HTTPError as error:
                    statuses[type(error).__name__] += 1
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
    ok = statuses.get(200, 0)
    ms = 1000 * np.asarray(latencies or [float("nan")])
    return {"requests_per_s": ok / elapsed, "texts_per_s": ok * per_request / elapsed, "p50": np.percentile(ms, 50),
            "p95": np.percentile(ms, 95), "p99": np.percentile(ms, 99), "statuses": dict(statuses), "requests": sent}  # fmt: skip


def batch_summary(before: Counter, after: Counter) -> str:
    """Batch sizes formed between two /metrics reads, from the cumulative histogram."""
    bounds = sorted(after)
    counts, previous = [], 0.0
    for bound in bounds:
        n = after[bound] - before.get(bound, 0.0)
        counts.append((bound, n - previous))
        previous = n
    total = sum(n for _, n in counts)
    if not total:
        return "none"
    return ", ".join(f"≤{int(b)}: {100 * n / total:.0f} %" for b, n in counts if n and b < float("inf"))


def screenshot(url: str, path: Path) -> bool:
    import shutil

    chromium = shutil.which("chromium")
    if chromium is None:
        return False
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(url + "/")
        page.click("text=Negation")
        page.wait_for_selector("#result", state="visible", timeout=60_000)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        browser.close()
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=str(ROOT / "runs" / "default"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--max-batch", type=int, default=32)
    args = parser.parse_args()
    run = Path(args.run)
    if not (run / "results.json").is_file():
        raise SystemExit(f"{run}: no finished run; train it first with `make demo`")
    level_s, soak_s = (8, 30) if args.quick else (20, 120)
    use_all_cores()
    texts = sample_reviews(400)
    print(f"{machine()}; {load()}")
    ref = in_process(run, texts, args.max_batch, seconds=level_s)
    print(f"in process: {ref['texts_per_s']:.1f} texts/s in batches of {args.max_batch}; one text {ref['single_p50_ms']:.1f} ms "
          f"(p95 {ref['single_p95_ms']:.1f} ms)")  # fmt: skip

    server = Server(run, "--max-batch", str(args.max_batch))
    server.wait_ready()
    rows, checks = [], {}
    asyncio.run(drive(server.url, texts, concurrency=4, seconds=3, max_requests=40))  # warm-up
    for concurrency in (1, 8, 32):
        before = server.batch_sizes()
        r = asyncio.run(drive(server.url, texts, concurrency=concurrency, seconds=level_s, max_requests=5000))
        batches = batch_summary(before, server.batch_sizes())
        rows.append(
            [concurrency, r["requests_per_s"], r["texts_per_s"], r["p50"], r["p95"], r["p99"], batches, _errors(r)]
        )
        print(f"concurrency {concurrency}: {r['texts_per_s']:.1f} texts/s, p50 {r['p50']:.0f} ms, p95 {r['p95']:.0f} ms, "
              f"batches {batches}, statuses {r['statuses']}")  # fmt: skip
        checks[concurrency] = r
    ratio = checks[32]["texts_per_s"] / ref["texts_per_s"]
    latency_ratio = checks[1]["p95"] / ref["single_p50_ms"]

    # Overload: 8 texts a request from 160 clients is 1,280 texts asked at once, past the 512-text queue.
    over = asyncio.run(drive(server.url, texts, concurrency=160, seconds=level_s, max_requests=2000, per_request=8))
    alive = httpx.get(f"{server.url}/health").status_code == 200
    server_5xx = sum(n for s, n in over["statuses"].items() if isinstance(s, int) and s >= 500)
    print(f"overload: statuses {over['statuses']}, alive after: {alive}")

    rss_before = server.rss_mb()
    soak = asyncio.run(drive(server.url, texts, concurrency=8, seconds=soak_s, max_requests=10**9))
    rss_after = server.rss_mb()
    print(
        f"soak {soak_s} s: {soak['requests']} requests, RSS {rss_before:.0f} → {rss_after:.0f} MB, statuses {soak['statuses']}"
    )
    shot = screenshot(server.url, ROOT / "docs" / "img" / "serve.png")
    server.stop()

    cmd = "python benchmarks/serve_load.py" + (" --quick" if args.quick else "")
    verdict = lambda ok: "**met**" if ok else "**not met**"  # noqa: E731
    markdown = "\n".join([
        f"`{cmd}` on `{run.name}` — {machine()}; {load()} at the end; server and client share the cores.",
        "",
        f"In process (`Labeller.predict`, batches of {args.max_batch}): **{ref['texts_per_s']:.1f} texts/s**; one text alone "
        f"{ref['single_p50_ms']:.1f} ms (p50), {ref['single_p95_ms']:.1f} ms (p95).",
        "",
        table(["concurrency", "requests/s", "texts/s", "p50 ms", "p95 ms", "p99 ms", "batch sizes formed", "errors"], rows),
        "",
        f"- Batching: at concurrency 32 the server labels {ratio:.0%} of the in-process texts/s "
        f"(goal ≥ 80 %: {verdict(ratio >= 0.8)}).",
        f"- A lone request: p95 at concurrency 1 is {latency_ratio:.2f} × one in-process call "
        f"(goal ≤ 1.5: {verdict(latency_ratio <= 1.5)}).",
        f"- Overload (160 clients × 8 texts, queue 512 texts): {_errors(over)}; 5xx: {server_5xx}; alive after: {alive}.",
        f"- Soak ({soak_s} s at concurrency 8, {soak['requests']:,} requests, {_errors(soak)}): server RSS "
        f"{rss_before:.0f} → {rss_after:.0f} MB ({rss_after - rss_before:+.0f} MB).",
    ])  # fmt: skip
    write_section("serve-load", markdown, SERVING_MD)
    print(markdown)
    if shot:
        print("wrote docs/img/serve.png")


def _errors(result: dict) -> str:
    errors = {s: n for s, n in result["statuses"].items() if s != 200}
    return ", ".join(f"{s}: {n}" for s, n in sorted(errors.items(), key=str)) or "none"


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
