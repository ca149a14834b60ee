"""`mnistcli serve`'s API tried by a machine: schemathesis reads the OpenAPI description and sends
requests made from it (valid and invalid query parameters, multipart and raw bodies, pictures good
and bad, unexpected methods). Every answer must be a 2xx, or a 4xx with {"error": "..."}, never a
5xx, an exception or a dropped connection; afterwards the server still answers.

Two runs: to the app in-process through its ASGI interface (FUZZ_EXAMPLES generated requests, and
the answers checked against the description too), and over HTTP to the same app served by uvicorn
in a thread (FUZZ_EXAMPLES_HTTP), where a connection that fails counts as a failure. Derandomised,
no example database: the same 378 + 138 requests every run with schemathesis 4.32.5 (each run adds
the coverage phase's 63 fixed cases), about 20 s on 2 cores. The last test checks that neither run
was cut short and that both still answer."""

from __future__ import annotations

import collections
import io
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi", reason="the serve extra is not installed")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (test extra) is not installed")
import requests  # noqa: E402
import torch  # noqa: E402
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mnistcli import checkpoint, webapp  # noqa: E402

# Cut-off TIFF files make Pillow warn about their tags while it refuses them: expected here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
FUZZ_EXAMPLES = 300  # generated requests per operation (the coverage phase adds its own fixed cases)
FUZZ_EXAMPLES_HTTP = 60
MIN_CASES = 300  # fewer means the run was cut short (a phase stopped generating)
MIN_CASES_HTTP = 100
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F", "CMYK"]
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"]
SEEN: collections.Counter[int] = collections.Counter()  # status codes of the generated requests
SEEN_HTTP: collections.Counter[int] = collections.Counter()


@st.composite
def pictures(draw: st.DrawFn) -> bytes:
    """What a `format: binary` field holds here: drawings as the page sends them, pictures of every
    mode, format and shape (1 x N included), cut-off files, and plain bytes."""
    kind = draw(st.sampled_from(["drawing", "pixels", "cut", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=600))
    if kind == "drawing":  # dark strokes on a white square
        side = draw(st.integers(28, 560))
        image = Image.new("L", (side, side), 255)
        pen = ImageDraw.Draw(image)
        for _ in range(draw(st.integers(0, 3))):
            points = draw(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=5))
            width = draw(st.integers(1, max(1, side // 6)))
            pen.line([(x * side, y * side) for x, y in points], fill=draw(st.integers(0, 200)), width=width)
    else:  # a background and a few marks, any size
        side = st.integers(1, 90) | st.integers(1000, 3000)  # long thin strips too
        width, height = draw(side), draw(st.integers(1, 90))
        if draw(st.booleans()):
            width, height = height, width
        pixels = np.full((height, width), draw(st.integers(0, 255)), np.uint8)
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        for _ in range(draw(st.integers(0, 4))):
            y, x = rng.integers(0, height), rng.integers(0, width)
            pixels[y : y + rng.integers(1, 30), x : x + rng.integers(1, 30)] = rng.integers(0, 256)
        image = Image.fromarray(pixels)
    image = image.convert(draw(st.sampled_from(MODES)))
    kind_of_file = draw(st.sampled_from(FORMATS))
    buf = io.BytesIO()
    try:
        image.save(buf, kind_of_file)
    except (OSError, ValueError, KeyError, TypeError):  # a mode the format cannot hold
        buf = io.BytesIO()
        image.convert("RGB").save(buf, kind_of_file)
    data = buf.getvalue()
    return data[: draw(st.integers(0, len(data)))] if kind == "cut" else data


APP = webapp.create_app(checkpoint.load_model(checkpoint.PRETRAINED, torch.device("cpu")), max_upload=1_000_000)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(modes=["positive", "negative"], deterministic=True)
# A request outside the description is refused with one of these (413: more pictures than allowed).
schema.config.checks.negative_data_rejection.expected_statuses = ["400", "405", "413", "415", "422"]
# Not "valid input gets a 2xx": a valid binary field holds anything, and a picture without a digit gets 422.
schema.config.checks.update(excluded_check_names=["positive_data_acceptance"])


@pytest.fixture(scope="module", autouse=True)
def _pictures_for_binary_fields():
    schemathesis.openapi.format("binary", pictures())
    yield
    from schemathesis.specs.openapi.formats import unregister_string_format

    unregister_string_format("binary")


@pytest.fixture(scope="module")
def live():
    """The same app served by uvicorn on a free port, in a thread; its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(APP, log_level="error", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(30)
    sock.close()


def _check(case, status: int, text: str, body: object) -> None:
    assert status < 500, f"{case.method} {case.formatted_path} {case.query}: {text[:300]}"
    if status >= 400:
        assert isinstance(body, dict) and isinstance(body.get("error"), str), text[:300]


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_generated_request_gets_a_2xx_or_a_4xx_with_a_json_error(case):
    response = case.call()
    SEEN[response.status_code] += 1
    _check(case, response.status_code, response.text, response.json() if response.status_code >= 400 else None)
    # ... and the answer is what the description says (status, content type, the JSON schema of the body).
    case.validate_response(response)


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES_HTTP,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_over_http_no_request_gets_a_5xx_or_a_dropped_connection(case, live):
    try:
        response = requests.request(**case.as_transport_kwargs(base_url=live), timeout=30)
    except requests.ConnectionError as exc:
        pytest.fail(f"{case.method} {case.formatted_path} {case.query}: the connection failed ({exc})")
    SEEN_HTTP[response.status_code] += 1
    _check(case, response.status_code, response.text, response.json() if response.status_code >= 400 else None)


def test_the_fuzzing_ran_in_full_and_the_server_still_answers(live):
    if not (SEEN and SEEN_HTTP):
        pytest.skip("runs after the fuzzing, in the same session")
    assert sum(SEEN.values()) >= MIN_CASES and sum(SEEN_HTTP.values()) >= MIN_CASES_HTTP, (SEEN, SEEN_HTTP)
    for seen, least in ((SEEN, 10), (SEEN_HTTP, 5)):  # both kinds of answer were tried
        assert seen[200] >= least and any(400 <= status < 500 for status in seen), seen
    one = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(one).line([(104, 30), (100, 170)], fill=0, width=16)
    body = io.BytesIO()
    one.save(body, "PNG")
    raw = {"data": body.getvalue(), "headers": {"content-type": "image/png"}, "timeout": 30}
    assert requests.get(live + "/api/health", timeout=30).json()["status"] == "ok"
    answer = requests.post(live + "/api/predict", **raw)
    assert answer.status_code == 200 and answer.json()["label"] == "1", answer.text
    client = TestClient(APP)
    assert client.get("/api/health").json()["status"] == "ok"
    assert client.post("/api/predict", content=raw["data"], headers=raw["headers"]).json()["label"] == "1"
