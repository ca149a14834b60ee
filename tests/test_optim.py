"""The optimiser: mnistcli's SGD is torch's, bit for bit, without importing torch._dynamo."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from mnistcli.optim import SGD

from helpers import ROOT


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))


def _groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _train(optimizer_class, settings: dict, steps: int = 6):
    model = _model(0)
    opt = optimizer_class(_groups(model, settings.pop("weight_decay", 0.0)), foreach=True, **settings)
    data = torch.Generator().manual_seed(1)
    for step in range(steps):
        x, y = torch.randn(8, 6, generator=data), torch.randint(0, 3, (8,), generator=data)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step == 2:
            model[2].bias.grad = None  # a parameter without a gradient this step
        opt.step()
        for group in opt.param_groups:
            group["lr"] *= 0.9  # as a schedule does
    return model, opt


@pytest.mark.parametrize(
    "settings",
    [
        {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        {"lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4},
        {"lr": 0.05, "momentum": 0.5, "dampening": 0.3},
        {"lr": 0.2, "momentum": 0.0, "weight_decay": 1e-2},
        {"lr": 0.01},
    ],
)
def test_the_same_updates_and_state_as_torchs_sgd(settings):
    mine, mine_opt = _train(SGD, dict(settings))
    theirs, their_opt = _train(torch.optim.SGD, dict(settings))
    for a, b in zip(mine.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    a, b = mine_opt.state_dict(), their_opt.state_dict()
    assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
    for key in a["state"]:
        assert torch.equal(a["state"][key]["momentum_buffer"], b["state"][key]["momentum_buffer"])


def test_state_saved_by_torchs_sgd_loads_and_continues_the_same():
    theirs, their_opt = _train(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True}, steps=3)
    mine = _model(0)
    mine.load_state_dict(theirs.state_dict())
    mine_opt = SGD(_groups(mine, 0.0), lr=0.1, momentum=0.9, nesterov=True, foreach=True)
    mine_opt.load_state_dict(copy.deepcopy(their_opt.state_dict()))  # (loading shares the buffers otherwise)
    for model, opt in ((mine, mine_opt), (theirs, their_opt)):
        torch.manual_seed(5)
        loss = model(torch.randn(4, 6)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(mine.parameters(), theirs.parameters()))


def test_a_training_run_never_imports_torch_dynamo(fixture_data, tmp_path):
    code = (
        "import sys; from mnistcli.cli import app; "
        f"sys.argv = ['mnistcli', 'train', '--epochs', '1', '--data-dir', {str(fixture_data)!r}, "
        f"'--out-dir', {str(tmp_path)!r}, '--val-size', '100', '--batch-size', '100']\n"
        "try:\n    app(prog_name='mnistcli')\nexcept SystemExit:\n    pass\n"
        "print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0 and (tmp_path / "last.pt").is_file(), result.stderr
    assert result.stdout.strip().endswith("no dynamo"), result.stdout[-300:]
