"""The optimiser: mnistcli's SGD is torch's, bit for bit, without importing torch._dynamo."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from mnistcli.optim import SGD

from helpers import NEUTRAL


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
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=NEUTRAL, timeout=300)
    assert result.returncode == 0 and (tmp_path / "last.pt").is_file(), result.stderr
    assert result.stdout.strip().endswith("no dynamo"), result.stdout[-300:]


def test_the_default_recipe_builds_nesterov_sgd_without_decay_on_biases_and_batch_norm():
    from mnistcli.models import create_model
    from mnistcli.optim import make_optimizer
    from mnistcli.settings import Recipe

    model = create_model("cnn")
    opt = make_optimizer(Recipe(), model)
    assert isinstance(opt, SGD)
    decay, no_decay = opt.param_groups
    matrices = {id(p) for p in model.parameters() if p.ndim > 1}
    vectors = {id(p) for p in model.parameters() if p.ndim <= 1}
    assert {id(p) for p in decay["params"]} == matrices and decay["weight_decay"] == 5e-4
    assert {id(p) for p in no_decay["params"]} == vectors and no_decay["weight_decay"] == 0.0
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(id(m.weight) in vectors and id(m.bias) in vectors for m in bn)
    for group in opt.param_groups:
        assert (group["lr"], group["momentum"], group["nesterov"], group["foreach"]) == (0.1, 0.9, True, True)


@pytest.mark.parametrize(
    "changes, kind",
    [({"optimizer": "adam", "lr": 1e-3}, torch.optim.Adam), ({"optimizer": "adamw", "lr": 1e-3}, torch.optim.AdamW)],
)
def test_other_optimisers_keep_the_parameter_groups_and_the_learning_rate(changes, kind):
    from mnistcli.models import create_model
    from mnistcli.optim import make_optimizer
    from mnistcli.settings import Recipe

    opt = make_optimizer(Recipe(**changes), create_model("fc"))
    assert type(opt) is kind and [g["weight_decay"] for g in opt.param_groups] == [5e-4, 0.0]
    assert all(g["lr"] == 1e-3 for g in opt.param_groups)


def test_plain_momentum_is_never_nesterov_and_no_momentum_turns_nesterov_off():
    from mnistcli.models import create_model
    from mnistcli.optim import make_optimizer
    from mnistcli.settings import Recipe

    report = make_optimizer(Recipe(momentum=0.5, nesterov=False), create_model("fc"))
    assert [(g["momentum"], g["nesterov"]) for g in report.param_groups] == [(0.5, False)] * 2
    none = make_optimizer(Recipe(momentum=0.0, nesterov=True), create_model("fc"))  # torch refuses nesterov then
    assert [(g["momentum"], g["nesterov"]) for g in none.param_groups] == [(0.0, False)] * 2


def test_the_schedule_peaks_at_the_requested_lr_and_keeps_momentum_constant():
    from mnistcli.models import create_model
    from mnistcli.optim import make_optimizer, make_scheduler
    from mnistcli.settings import Recipe

    recipe = Recipe(epochs=4, lr=0.3)
    opt = make_optimizer(recipe, create_model("fc"))
    scheduler = make_scheduler(recipe, opt, steps_per_epoch=25)
    lrs, momenta = [], []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        momenta.append(opt.param_groups[0]["momentum"])
        opt.step()
        scheduler.step()
    assert max(lrs) == pytest.approx(0.3, rel=1e-6) and lrs.index(max(lrs)) == 24  # a quarter of the run
    assert lrs[0] < 0.3 / 10 and lrs[-1] < 0.3 / 1000
    assert set(momenta) == {0.9}


def test_the_training_loss_smooths_labels_as_the_recipe_says():
    from mnistcli.settings import Recipe
    from mnistcli.trainer import _loss

    logits, labels = torch.randn(16, 10, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 10
    smoothed = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    assert Recipe().label_smoothing == 0.1
    assert torch.equal(_loss(Recipe())(logits, labels), smoothed)
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert torch.equal(_loss(Recipe(label_smoothing=0.0))(logits, labels), plain)
