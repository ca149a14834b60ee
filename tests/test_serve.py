"""`mnistcli serve`: the JSON API (in-process) and a real server under load."""

from __future__ import annotations

import concurrent.futures
import io
import json
import socket
import subprocess
import sys
import tempfile
import urllib.request

import numpy as np
import pytest
from PIL import Image

from mnistcli import checkpoint
from mnistcli.errors import MissingExtra

from helpers import bomb_png, free_port, render_digits, run

pytest.importorskip("fastapi", reason="the serve extra is not installed")
from fastapi.testclient import TestClient

from mnistcli import serve


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


DIGITS, LABELS = render_digits(6, seed=21)
DRAWING = png(255 - np.asarray(Image.fromarray(DIGITS[1]).resize((200, 200), Image.Resampling.BICUBIC)))


@pytest.fixture(scope="module")
def client():
    loaded = checkpoint.load_model(None, __import__("torch").device("cpu"))  # the bundled model
    return TestClient(serve.create_app(loaded, max_upload=2_000_000))


def test_health_names_the_model_and_its_classes(client):
    doc = client.get("/api/health").json()
    assert doc["status"] == "ok" and doc["model"] == "cnn" and doc["source"] == "bundled pretrained"
    assert doc["classes"] == [str(d) for d in range(10)] and doc["max_upload_bytes"] == 2_000_000


def test_predict_answers_what_predict_json_answers_for_one_file(client, tmp_path):
    (tmp_path / "d.png").write_bytes(DRAWING)
    cli = json.loads(run("predict", tmp_path / "d.png", "--json", "--top-k", 10).stdout)["predictions"][0]
    api = client.post("/api/predict", files={"image": ("d.png", DRAWING, "image/png")}).json()
    assert api["file"] == "d.png" and cli["file"].endswith("d.png")
    assert {k: v for k, v in api.items() if k != "file"} == {k: v for k, v in cli.items() if k != "file"}
    assert api["digit"] == LABELS[1] and "unsure" in api and len(api["top_k"]) == 10


def test_a_raw_body_and_the_input_image(client):
    doc = client.post("/api/predict?input=true", content=DRAWING, headers={"content-type": "image/png"}).json()
    assert doc["digit"] == LABELS[1] and doc["input"].startswith("data:image/png;base64,")
    import base64

    seen = Image.open(io.BytesIO(base64.b64decode(doc["input"].split(",", 1)[1])))
    assert seen.size == (28, 28)


def test_several_images_give_a_list_and_a_bad_one_does_not_spoil_the_others(client):
    files = [("image", (f"{i}.png", png(255 - DIGITS[i]), "image/png")) for i in range(3)]
    files.append(("image", ("notes.txt", b"not an image", "text/plain")))
    docs = client.post("/api/predict", files=files).json()
    assert [d["file"] for d in docs] == ["0.png", "1.png", "2.png", "notes.txt"]
    assert all("digit" in d for d in docs[:3]) and docs[3]["status"] == 422 and "not an image" in docs[3]["error"]


BAD = [
    ("empty body", {"content": b"", "headers": {"content-type": "image/png"}}, 400, "empty"),
    ("no image field", {"files": {"photo": ("a.png", DRAWING, "image/png")}}, 400, "no multipart field named 'image'"),
    ("empty file", {"files": {"image": ("a.png", b"", "image/png")}}, 400, "empty file"),
    ("not an image", {"files": {"image": ("a.png", b"hello" * 20, "image/png")}}, 422, "not an image"),
    ("truncated", {"files": {"image": ("a.png", DRAWING[:300], "image/png")}}, 422, "truncated or corrupt"),
    (
        "blank page",
        {"files": {"image": ("a.png", png(np.full((50, 50), 255, np.uint8)), "image/png")}},
        422,
        "no digit",
    ),
    ("text body", {"content": b"7", "headers": {"content-type": "text/plain"}}, 415, "unsupported content type"),
    ("over the limit", {"content": b"\0" * 2_100_000, "headers": {"content-type": "image/png"}}, 413, "limit"),
]


@pytest.mark.parametrize("name, request_args, status, words", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_with_a_json_error_and_the_server_keeps_serving(
    client, name, request_args, status, words
):
    response = client.post("/api/predict", **request_args)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert client.post("/api/predict", content=DRAWING, headers={"content-type": "image/png"}).status_code == 200


def test_a_decompression_bomb_is_refused_before_decoding(client):
    response = client.post("/api/predict", files={"image": ("bomb.png", bomb_png(8_000, 6_000), "image/png")})
    assert response.status_code == 413 and "image too large (8000x6000 pixels)" in response.json()["error"]


def test_a_body_over_the_limit_is_refused_while_it_streams(client):
    def chunks():  # no content-length: the limit is counted as the body arrives
        for _ in range(30):
            yield b"\0" * 100_000

    response = client.post("/api/predict", content=chunks(), headers={"content-type": "image/png"})
    assert response.status_code == 413


def test_nothing_uploaded_is_written_to_disk(client, monkeypatch):
    def no_disk(*args, **kwargs):
        raise AssertionError("an upload went to a temporary file")

    for name in ("mkstemp", "TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    big = png(
        (np.random.default_rng(0).random((1200, 1200)) * 40).astype(np.uint8)
        + DIGITS[1].repeat(43, 0).repeat(43, 1)[:1200, :1200]
    )
    assert len(big) > 1_000_000  # bigger than the in-memory part of a spooled upload
    response = client.post("/api/predict", files={"image": ("big.png", big, "image/png")})
    assert response.status_code == 200, response.text


def test_the_page_is_one_self_contained_file(client):
    page = client.get("/").text
    for testid in ("pad", "clear", "prediction", "upload"):
        assert f'data-testid="{testid}"' in page
    assert "http://" not in page and "https://" not in page and "<script src" not in page  # works offline


def test_without_the_extra_serve_says_how_to_add_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if it were not installed
    result = run("serve")
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "needs the serve extra" in line and "-m pip install 'mnistcli[serve]'" in line
    command = line.split("serve extra: ", 1)[1]
    assert command == MissingExtra("serve", "x").args[0].split(": ", 1)[1]
    # The printed command, run exactly as printed, installs the extra into this Python (here: already there).
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url + "/api/predict", data=body, headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, json.loads(response.read())


@pytest.mark.slow
def test_200_requests_from_8_concurrent_clients_all_succeed(served):
    server = served
    pictures = [png(255 - digit) for digit in DIGITS]
    alone = [_post(server, body)[1] for body in pictures]  # one at a time
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: _post(server, pictures[i % 6]), range(200)))
    assert all(status == 200 for status, _ in answers)
    assert all(doc == alone[i % 6] for i, (_, doc) in enumerate(answers))  # as answered one at a time


def test_a_busy_port_is_one_clear_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        result = run("serve", "--port", s.getsockname()[1])
    assert result.exit_code == 1 and "cannot listen on 127.0.0.1" in result.stderr and "--port" in result.stderr


def test_exposing_the_server_warns(monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: [s.close() for s in sockets])
    result = run("serve", "--host", "0.0.0.0", "--port", free_port())
    assert result.exit_code == 0, result.output
    assert "anyone who can reach this machine can use it" in result.stderr


@pytest.mark.parametrize("host, warned", [("::1", False), ("localhost", False), ("::", True)])
def test_ipv6_and_named_hosts_serve_and_warn_only_when_exposed(monkeypatch, host, warned):
    import uvicorn

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: [s.close() for s in sockets])
    result = run("serve", "--host", host, "--port", free_port())
    assert result.exit_code == 0, result.output
    assert ("anyone who can reach this machine can use it" in result.stderr) == warned


def test_a_bad_image_between_good_ones_keeps_every_row_in_request_order(client):
    files = [("image", (f"{i}.png", png(255 - DIGITS[i]), "image/png")) for i in (0, 1)]
    alone = [client.post("/api/predict", files=[f]).json()["digit"] for f in files]
    files.insert(1, ("image", ("notes.txt", b"not an image", "text/plain")))
    docs = client.post("/api/predict", files=files).json()
    assert [(d["file"], d.get("digit"), d.get("status")) for d in docs] == [
        ("0.png", alone[0], None),
        ("notes.txt", None, 422),
        ("1.png", alone[1], None),
    ]
    assert alone[0] != alone[1]  # so that a swap would show
