"""Load on `mnistcli serve`: N requests from C concurrent clients, latency and throughput.

Starts the server (bundled model unless -c) on a free port, sends each client's requests one
after another (a drawing-sized PNG to POST /api/predict), and prints how many succeeded, the
median and 99th-percentile latency, and requests per second.

    python benchmarks/serve_load.py --requests 200 --clients 8
    python benchmarks/serve_load.py --requests 200 --clients 1 --query "input=true&explain=true"

`--query` is the query string of each request: the page sends `input=true`, and
`input=true&explain=true` while it shows the network's insides.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]


def drawing() -> bytes:
    """A 7 as the page sends it: black marker strokes on a white 560x560 canvas, PNG."""
    img = Image.new("L", (560, 560), 255)
    ImageDraw.Draw(img).line([(160, 120), (400, 120), (250, 470)], fill=17, width=40, joint="curve")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def post(url: str, body: bytes, query: str = "") -> tuple[int, float]:
    target = url + "/api/predict" + (f"?{query}" if query else "")
    request = urllib.request.Request(target, data=body, headers={"Content-Type": "image/png"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
        return response.status, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--checkpoint", "-c", type=Path, default=None)
    ap.add_argument("--query", default="", help="query string of each request, e.g. input=true&explain=true")
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "mnistcli", "serve", "--port", str(port)]
    if args.checkpoint:
        cmd += ["--checkpoint", str(args.checkpoint)]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/api/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        body = drawing()
        for _ in range(5):
            post(url, body, args.query)  # warm up
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            results = list(pool.map(lambda _: post(url, body, args.query), range(args.requests)))
        wall = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    ok = sum(status == 200 for status, _ in results)
    latencies = sorted(seconds * 1000 for _, seconds in results)
    p99 = float(np.percentile(latencies, 99))
    print(f"{args.requests} requests ?{args.query} from {args.clients} clients: {ok} succeeded")
    print(f"latency p50 {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms; {args.requests / wall:.1f} requests/s")


if __name__ == "__main__":
    main()
