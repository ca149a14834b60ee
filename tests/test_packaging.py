"""What ships: the wheel and the sdist built from this tree hold no path of the machine that built them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from helpers import ROOT

pytestmark = pytest.mark.slow


def _check_wheel_module():
    spec = importlib.util.spec_from_file_location("check_wheel", ROOT / "tools" / "check_wheel.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("build", reason="the build package is not installed")
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out


def test_the_wheel_holds_the_bundled_model_and_the_page_and_no_machine_path(built):
    (wheel,) = built.glob("*.whl")
    _check_wheel_module().check_contents(wheel)


def test_the_sdist_holds_no_machine_path(built):
    (sdist,) = built.glob("*.tar.gz")
    _check_wheel_module().check_sdist(sdist)


def test_the_check_finds_a_machine_path_when_there_is_one():
    check = _check_wheel_module()
    with pytest.raises(AssertionError, match="path of this machine"):
        check.check_no_machine_paths("x", f"trained in {ROOT}/runs".encode())
    with pytest.raises(AssertionError, match="absolute path"):
        check.check_no_machine_paths("x", b"data_dir=/" + b"home/someone/mnist")  # split: this file ships too
