"""What the README and the help promise, checked against the code."""

import re

import torch

from mnistcli import checkpoint
from mnistcli.models import count_parameters, create_model, model_names

from helpers import ROOT, run

README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def test_the_checkpoint_keys_in_the_readme_are_what_train_writes(trained_run):
    listed = re.search(r"hold these keys: (.*?)\.\n", _section("Checkpoint format"), re.S)
    assert listed, "the README's checkpoint section lists the keys"
    keys = re.findall(r"`(\w+)`", listed.group(1))
    written = torch.load(trained_run / "last.pt", weights_only=True)
    assert sorted(keys) == sorted(written) == sorted(checkpoint.Checkpoint.__dataclass_fields__)


def test_the_parameter_counts_in_the_readme_are_the_models():
    rows = dict(re.findall(r"^\| `([\w-]+)`[^|]*\| ([\d,]+) \|", _section("Models"), re.M))
    assert sorted(rows) == sorted(model_names())
    for name, count in rows.items():
        assert int(count.replace(",", "")) == count_parameters(create_model(name)), name


def test_help_lists_exactly_the_commands():
    result = run("--help")
    assert result.exit_code == 0, result.output
    panel = result.stdout[result.stdout.index("Commands:") :]
    names = re.findall(r"^  (\S+) ", panel, re.M)
    assert names == ["train", "evaluate", "predict", "show-samples", "export", "explain", "compare", "serve"], names


# Options with nothing to default to (a path that is only used when given).
NO_DEFAULT = {
    "train": {"--resume"},
    "evaluate": {"--out-dir", "--model"},
    "predict": {"--save-inputs", "--model"},
    "show-samples": {"--per-class", "--checkpoint"},
    "export": set(),
    "serve": {"--checkpoint"},
}


def test_every_option_of_every_command_has_help_and_shows_its_default():
    import typer

    from mnistcli.cli import app

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for command, exempt in NO_DEFAULT.items():
        flags = {opt for p in commands[command].params if getattr(p, "is_flag", False) for opt in p.opts}
        result = run(command, "--help")
        assert result.exit_code == 0, result.output
        blocks = [" ".join(b.split()) for b in re.split(r"\n(?=  -)", result.stdout)[1:]]
        assert len(blocks) >= 2, command
        for text in blocks:
            name = next(word for word in text.replace(",", " ").split() if word.startswith("--"))
            assert len(text) > len(name) + 12, f"{command} {name} has no help"
            if name not in flags | exempt | {"--help"}:
                assert "[default:" in text, f"{command} {name} shows no default: {text}"


def test_the_unsure_threshold_is_the_one_the_readme_states():
    from mnistcli.inference import prediction

    words = r"An answer is marked unsure when it does not hold up: when its probability, averaged over"
    stated = re.search(r"\s+".join(words.split(" ")) + r"[^.]*?\), is under (\d+)%", README)
    assert stated, "the README says below which probability an answer is unsure"
    threshold = int(stated.group(1)) / 100
    classes = [str(d) for d in range(10)]
    below = prediction("a.png", [threshold - 0.005, 0.2], [4, 9], classes, top_k=2)
    above = prediction("b.png", [threshold + 0.005, 0.2], [4, 9], classes, top_k=2)
    assert below.unsure is True and below.runner_up is not None and below.runner_up.digit == 9
    assert above.unsure is False
    # over the changed copies: a confident answer that does not hold up is unsure, and the other way
    shaky = prediction("c.png", [0.99, 0.01], [4, 9], classes, top_k=2, steady=threshold - 0.005)
    steady = prediction("d.png", [0.5, 0.4], [4, 9], classes, top_k=2, steady=threshold + 0.005)
    assert shaky.unsure is True and steady.unsure is False


def test_every_commands_help_fits_80_columns_with_plain_value_names():
    for command in [*NO_DEFAULT, "compare", "explain"]:
        result = run(command, "--help", env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        assert max(map(len, result.stdout.splitlines())) <= 80, command
        assert not re.search(r"<[\w\[\]]+>", result.stdout), f"{command}: {re.search(r'<[^>]+>', result.stdout)}"
