"""What users install, checked as they would use it (CI runs this after the tests).

    python tools/check_wheel.py dist/mnistcli-*.whl dist/mnistcli-*.tar.gz

1. The wheel holds the bundled model and the page as real files; neither it nor the sdist holds
   a path of the machine that built it (nor any other absolute home or work path).
2. Installed, not editable, into a fresh virtual environment that borrows this environment's
   dependencies, `mnistcli predict` and `mnistcli evaluate` work from an empty folder with the
   bundled model.
"""

from __future__ import annotations

import json
import re
import site
import subprocess
import sys
import tarfile
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_MNIST = ROOT.parent / "shared" / "data" / "mnist"
MACHINE_PATH = re.compile(rb"/(?:work|root|home|Users|tmp)/[\w.-]+/")
MUST_HOLD = ("mnistcli/pretrained/mnistcli-cnn.safetensors", "mnistcli/static/index.html", "mnistcli/cli.py")


def check_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        for name in MUST_HOLD:
            assert name in names, f"{wheel.name} lacks {name}"
            assert z.getinfo(name).external_attr >> 28 != 0o12, f"{name} is a symlink"
        model = z.read(MUST_HOLD[0])
        assert 100_000 < len(model) < 700_000 and model[8:9] == b"{", "the bundled model is not a safetensors file"
        for name in names:
            check_no_machine_paths(name, z.read(name))
    print(f"contents: {len(names)} files, bundled model {len(model) / 1024:.0f} KB, no machine paths")


def check_sdist(sdist: Path) -> None:
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        for member in members:
            extracted = tar.extractfile(member)
            assert extracted is not None
            check_no_machine_paths(member.name, extracted.read())
    print(f"sdist: {len(members)} files, no machine paths")


def check_no_machine_paths(name: str, data: bytes) -> None:
    for needle in (str(ROOT).encode(), str(Path.home()).encode() + b"/"):
        assert needle not in data, f"{name} holds a path of this machine: {needle!r}"
    found = MACHINE_PATH.search(data)
    assert found is None, f"{name} holds an absolute path: {found.group(0)!r}"


def install(wheel: Path, where: Path) -> Path:
    """A fresh venv that borrows this environment's packages (not its editable mnistcli) and has the wheel."""
    venv.create(where, with_pip=True)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # A plain path line: the borrowed folder's own .pth files (the editable install) are not run.
    (Path(purelib) / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    return where / "bin" / "mnistcli"


def run(cmd: list[str], cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def check_installed(wheel: Path) -> None:
    from PIL import Image, ImageDraw

    with tempfile.TemporaryDirectory() as tmp:
        mnistcli = install(wheel, Path(tmp) / "venv")
        empty = Path(tmp) / "empty"
        empty.mkdir()
        located = run([str(mnistcli.parent / "python"), "-c", "import mnistcli; print(mnistcli.__file__)"], empty)
        assert str(Path(tmp) / "venv") in located, f"not the installed wheel: {located}"
        digit = Image.new("L", (200, 200), 255)
        ImageDraw.Draw(digit).line([(60, 40), (140, 40), (90, 170)], fill=0, width=14)  # a 7
        digit.save(Path(tmp) / "seven.png")
        doc = json.loads(run([str(mnistcli), "predict", str(Path(tmp) / "seven.png"), "--json"], empty))
        assert doc["checkpoint"]["source"] == "bundled pretrained", doc["checkpoint"]
        assert doc["predictions"][0]["digit"] == 7, doc["predictions"]
        print(f"predict: 7 read as {doc['predictions'][0]['digit']} by the bundled model, from an empty folder")
        if (REAL_MNIST / "MNIST" / "raw").is_dir():
            args = ["evaluate", "--data-dir", str(REAL_MNIST), "--no-download", "--json"]
            result = json.loads(run([str(mnistcli), *args], empty))
            assert result["accuracy"] >= 0.995, result["accuracy"]  # the floor tests/test_pretrained.py holds it to
            print(f"evaluate: {100 * result['accuracy']:.2f}% of the 10,000 real test images")
        assert not any(empty.iterdir()), f"left files behind in the working folder: {list(empty.iterdir())}"


def main() -> None:
    for path in map(Path, sys.argv[1:]):
        if path.suffix == ".whl":
            check_contents(path)
            check_installed(path)
        else:
            check_sdist(path)


if __name__ == "__main__":
    main()
