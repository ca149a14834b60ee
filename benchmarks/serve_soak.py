"""Soak `mnistcli serve`: a few thousand mixed requests against a server in a child process, and its
memory (VmRSS from /proc/PID/status) before, during and after. It must not grow without bound.

The mix, drawn with a fixed seed: drawings as the page sends them (a multipart `image` field named
drawing.png, ?input=true), photos as raw JPEG bodies with ?top_k=3, several pictures in one
request (a bad one among them), and bad uploads (not a picture, cut off, empty, a blank page, a
decompression bomb, a text body, a body over --max-upload). Each kind has the status it must get;
anything else (a 5xx, a dropped connection) is counted as a failure.

    python benchmarks/serve_soak.py --requests 3000 --clients 4

Prints the counts by kind and status, RSS at start, after the warm-up, every tenth of the run
and after it (and after an idle pause), and exits 1 on a failure or when RSS in the last half
of the run keeps climbing (the median of the last tenth more than --max-growth-mb over the
median of the middle tenth).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import io
import random
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
MAX_UPLOAD_MB = 2.0  # the server's --max-upload here, so "over the limit" costs 2 MB, not 10


def rss_kib(pid: int) -> int:
    """The resident set of a process in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def encode(image: Image.Image, kind: str = "PNG", **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, kind, **options)
    return buf.getvalue()


def drawing(rng: random.Random) -> bytes:
    """A digit-like scribble as the page sends it: dark marker strokes on a white 560x560 canvas."""
    img = Image.new("L", (560, 560), 255)
    pen = ImageDraw.Draw(img)
    for _ in range(rng.randint(1, 3)):
        points = [(rng.randint(120, 440), rng.randint(80, 480)) for _ in range(rng.randint(2, 5))]
        pen.line(points, fill=17, width=40, joint="curve")
    return encode(img)


def photo(rng: random.Random) -> bytes:
    """A digit on grey, lit unevenly, as a phone would send it: a 1200x1600 JPEG."""
    w, h = 1200, 1600
    shade = np.linspace(150, 210, w, dtype=np.float32)[None, :] + np.linspace(0, 30, h, dtype=np.float32)[:, None]
    img = Image.fromarray(shade.clip(0, 255).astype(np.uint8)).convert("RGB")
    pen = ImageDraw.Draw(img)
    x, y = rng.randint(300, 700), rng.randint(400, 900)
    pen.line([(x, y), (x + 300, y), (x + 120, y + 500)], fill=(40, 40, 60), width=28)
    return encode(img.filter(ImageFilter.GaussianBlur(2)), "JPEG", quality=85)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""
    raw = encode(Image.new("L", (8, 8)))
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return raw[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[8 + 25 :]


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body with one `image` field per (name, bytes), as a browser sends it."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


Request = tuple[str, bytes, str, int]  # query, body, content type, the status it must get


def make_requests(n: int, seed: int) -> list[tuple[str, Request]]:
    """n requests of mixed kinds, (kind, request) each; pictures are drawn once and reused in turn."""
    rng = random.Random(seed)
    drawings = [drawing(rng) for _ in range(24)]
    photos = [photo(rng) for _ in range(4)]
    good = drawings[0]
    blank = encode(Image.new("L", (300, 300), 255))

    def several() -> Request:
        files = [(f"{i}.png", rng.choice(drawings)) for i in range(rng.randint(2, 8))]
        files.insert(rng.randrange(len(files)), ("notes.txt", b"not a picture"))
        return ("?input=true", *multipart(files), 200)

    bad: list[Callable[[], Request]] = [
        lambda: ("", *multipart([("a.png", b"hello" * 40)]), 422),  # not a picture
        lambda: ("", *multipart([("a.png", good[: rng.randint(60, len(good) - 10)])]), 422),  # cut off
        lambda: ("", *multipart([("a.png", b"")]), 400),  # empty file
        lambda: ("", *multipart([("a.png", blank)]), 422),  # no digit
        lambda: ("", *multipart([("bomb.png", bomb_png(8000, 6000))]), 413),  # decompression bomb
        lambda: ("", b"7", "text/plain", 415),  # a text body
        lambda: ("", bytes(int(MAX_UPLOAD_MB * 1e6) + 1), "image/png", 413),  # over --max-upload
        lambda: ("?top_k=0", good, "image/png", 422),  # a bad parameter
    ]
    kinds: dict[str, Callable[[], Request]] = {
        "drawing": lambda: ("?input=true", *multipart([("drawing.png", rng.choice(drawings))]), 200),
        "photo": lambda: ("?top_k=3", rng.choice(photos), "image/jpeg", 200),
        "several": several,
        "bad upload": lambda: rng.choice(bad)(),  # noqa: PLW0108 (a new pick each time)
    }
    weights = {"drawing": 0.55, "photo": 0.05, "several": 0.15, "bad upload": 0.25}
    names = rng.choices(list(weights), weights=list(weights.values()), k=n)
    return [(name, kinds[name]()) for name in names]


def send(url: str, request: Request) -> int:
    """The status the server answered; 0 for a connection that failed or was dropped."""
    query, body, kind, _ = request
    req = urllib.request.Request(f"{url}/api/predict{query}", data=body, headers={"Content-Type": kind})
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code
    except OSError:
        return 0


def start(args: argparse.Namespace) -> tuple[subprocess.Popen, str, io.TextIOBase]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "mnistcli", "serve", "--port", str(port), "--max-upload", str(MAX_UPLOAD_MB)]
    if args.checkpoint:
        cmd += ["--checkpoint", str(args.checkpoint)]
    log = tempfile.TemporaryFile("w+")  # the access log of failed requests and any traceback
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/api/health", timeout=1).read()
            return server, url, log
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.2)
    log.seek(0)
    raise SystemExit(f"the server did not start:\n{log.read()[-3000:]}")


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=200, help="requests before the 'after warm-up' reading")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", "-c", type=Path, default=None)
    ap.add_argument("--max-growth-mb", type=float, default=20.0, help="allowed RSS growth over the last half")
    args = ap.parse_args()

    requests = make_requests(args.warmup + args.requests, args.seed)
    server, url, log = start(args)
    samples: list[tuple[int, int]] = []  # (requests done, RSS KiB)
    done = 0
    lock = threading.Lock()
    tally: collections.Counter[tuple[str, int]] = collections.Counter()
    failures: collections.Counter[tuple[str, int, int]] = collections.Counter()

    def one(item: tuple[str, Request]) -> None:
        nonlocal done
        kind, request = item
        status = send(url, request)
        with lock:
            done += 1
            tally[(kind, status)] += 1
            if status != request[3]:
                failures[(kind, request[3], status)] += 1

    try:
        at_start = rss_kib(server.pid)
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one, requests[: args.warmup]))
        after_warmup = rss_kib(server.pid)
        done = 0
        tally.clear()  # counts of the measured run (a failure in the warm-up still counts)
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                samples.append((done, rss_kib(server.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one, requests[args.warmup :]))
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        after = rss_kib(server.pid)
        time.sleep(5)
        after_idle = rss_kib(server.pid)
        health = urllib.request.urlopen(url + "/api/health", timeout=10).status
        alive = server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=30)

    n = args.requests
    print(f"{n} requests (after {args.warmup} to warm up), {args.clients} clients: {wall:.0f} s, {n / wall:.1f}/s")
    for kind in ("drawing", "photo", "several", "bad upload"):
        statuses = ", ".join(f"{status or 'dropped'}: {c}" for (k, status), c in sorted(tally.items()) if k == kind)
        print(f"  {kind:<11} {statuses}")
    print(f"RSS at start {mib(at_start)}, after the warm-up {mib(after_warmup)}")
    tenths = [min(samples, key=lambda s: abs(s[0] - n * i / 10)) for i in range(1, 11)] if samples else []
    print("RSS during: " + ", ".join(f"{d}: {mib(r)}" for d, r in tenths))
    print(f"RSS during: min {mib(min(r for _, r in samples))}, max {mib(max(r for _, r in samples))}")
    print(f"RSS after {mib(after)}, after 5 s idle {mib(after_idle)}; health {health}, still running: {alive}")

    def median_between(lo: float, hi: float) -> int:
        return int(np.median([r for d, r in samples if n * lo <= d <= n * hi] or [after]))

    first, middle, last = median_between(0, 0.1), median_between(0.45, 0.55), median_between(0.9, 1)
    growth = (last - middle) / 1024
    print(f"RSS median over the first, middle and last tenth: {mib(first)}, {mib(middle)}, {mib(last)}")
    print(f"growth over the last half: {growth:+.1f} MiB (allowed {args.max_growth_mb:g}); ", end="")
    print(f"after the run vs after the warm-up: {(after - after_warmup) / 1024:+.1f} MiB")
    bad = sum(failures.values())
    for (kind, want, got), count in sorted(failures.items()):
        print(f"  unexpected: {kind} wanted {want}, got {got or 'a dropped connection'} ({count}x)")
    if bad or growth > args.max_growth_mb or health != 200 or not alive:
        log.seek(0)
        print("server log (end):\n" + log.read()[-3000:])
        raise SystemExit(1)
    print("all requests answered as expected; memory flat")


if __name__ == "__main__":
    main()
