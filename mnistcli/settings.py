"""Every setting of a training run, declared once: what it learns (`Recipe`) and how it runs
(`RunSettings`); the presets, dataset defaults and legacy values derived from those declarations;
and `resolve_recipe`, the one place where a preset, the settings a user gave and a resumed run's
saved recipe become the final recipe.

To add a setting: one field below (`setting(default, help, ...)`), then the code that uses its
value. The command-line option, `--help`, the range check, the run summary, the curve note, the
printed resume command and the config file key all follow from the field.

Plain data with no torch import, so that `--help` and shell completion stay quick; the optimiser
and schedule a recipe asks for are built in `optim.py`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Optional

from mnistcli import declare, files
from mnistcli.dataset_specs import DEFAULT_DATASET, DEFAULT_VAL_SIZE, dataset_names
from mnistcli.declare import AUGMENTS, FILES, RUNS, setting
from mnistcli.errors import OptionError
from mnistcli.models import DEFAULT_MODEL, model_names

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("onecycle", "cosine", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_PRESET = "default"
REPORT = "report"  # the report's recipe: its CNN, plain SGD lr 0.01 momentum 0.5, batch 128, all 60,000 images
PRESET_NAMES = (DEFAULT_PRESET, REPORT)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _sgd(r: Recipe) -> bool:
    return r.optimizer == "sgd"


# Clothes are not handwriting: bending them like handwriting costs Fashion-MNIST about 2 points of
# accuracy in 5 epochs, so these distortions are off for it in every preset.
_NOT_FOR_CLOTHES = {"fashion-mnist": 0.0}


def augmentation(
    default: float, help: str, phrase: str, at_most: float = 1, in_training_note: bool = True, **more: Any
) -> Any:
    """An augmentation setting: from 0 (off: in the report's recipe, and in runs saved before it
    existed) to `at_most`, named in the training note when it is on."""
    return setting(
        default,
        help,
        panel=AUGMENTS,
        at_least=0,
        at_most=at_most,
        presets={REPORT: 0.0},
        legacy=0.0,
        phrase=phrase,
        off=0.0,
        in_training_note=in_training_note,
        **more,
    )


@dataclass
class Recipe:
    """Everything that decides what a run learns (not where it writes or how it prints)."""

    model: str = setting(
        DEFAULT_MODEL, "Network to train (see --list-models).", choices=model_names, presets={REPORT: "report-cnn"}
    )
    dataset: str = setting(DEFAULT_DATASET, "Dataset.", choices=dataset_names)
    epochs: int = setting(
        20, "Epochs to train.", at_least=1, resumable=True, phrase=lambda n: _plural(n, "epoch"), metavar="N"
    )
    batch_size: int = setting(128, "Images per batch.", at_least=1, phrase="batch {}", metavar="N")
    optimizer: str = setting("sgd", "Optimiser.", choices=lambda: OPTIMIZERS, phrase="{}")
    lr: float = setting(
        0.1, "Learning rate (the peak of the schedule).", above=0, presets={REPORT: 0.01}, phrase="lr {:g}"
    )
    momentum: float = setting(
        0.9, "SGD momentum.", at_least=0, below=1, presets={REPORT: 0.5}, phrase="momentum {:g}", shown_if=_sgd
    )
    nesterov: bool = setting(
        True,
        "Nesterov momentum for SGD.",
        flag="--nesterov/--no-nesterov",
        presets={REPORT: False},
        phrase="nesterov",
        off=False,
        shown_if=_sgd,
    )
    weight_decay: float = setting(
        5e-4,
        "Weight decay (not on biases and batch norm).",
        at_least=0,
        presets={REPORT: 0.0},
        phrase="weight decay {:g}",
    )
    scheduler: str = setting(
        "onecycle",
        "Learning-rate schedule over the run.",
        choices=lambda: SCHEDULERS,
        presets={REPORT: "none"},
        phrase="schedule {}",
    )
    label_smoothing: float = setting(
        0.1,
        "Label smoothing of the loss.",
        at_least=0,
        below=1,
        presets={REPORT: 0.0},
        phrase="label smoothing {:g}",
        off=0.0,
        in_training_note=True,
    )
    ema: float = setting(
        0.999,
        "Evaluate and save an average of the weights with this decay per step (0 = off).",
        at_least=0.5,
        below=1,
        or_off=True,
        presets={REPORT: 0.0},
        phrase="weight average {:g}",
        off=0.0,
    )
    val_size: int = setting(
        DEFAULT_VAL_SIZE,
        "Training images held out to choose best.pt; 0 trains on all 60,000.",
        at_least=0,
        presets={REPORT: 0},
        metavar="N",
    )
    seed: int = setting(0, "Random seed.", phrase="seed {}", metavar="N")
    # How people write beyond MNIST (benchmarks/augmentations.py measures each).
    augment: int = setting(
        2,
        "Random shifts of up to N pixels (0 = none).",
        panel=AUGMENTS,
        at_least=0,
        at_most=4,
        presets={REPORT: 0},
        phrase="shifts up to {} px",
        off=0,
        in_training_note=True,
        metavar="N",
    )
    rotate: float = augmentation(
        15.0,
        "Random rotations of up to this many degrees either way.",
        "rotations up to {:g} degrees",
        at_most=45,
        datasets=_NOT_FOR_CLOTHES,
    )
    scale: float = augmentation(
        0.15,
        "Random scaling of up to this fraction either way.",
        "scaling up to {:.0%}",
        at_most=0.5,
        datasets=_NOT_FOR_CLOTHES,
    )
    shear: float = augmentation(
        15.0,
        "Random shear of up to this many degrees either way.",
        "shear up to {:g} degrees",
        at_most=45,
        datasets=_NOT_FOR_CLOTHES,
    )
    elastic: float = augmentation(
        0.0,
        "Elastic distortions of this strength (alpha in pixels, Simard et al. 2003).",
        "elastic distortions {:g} px",
        at_most=100,
    )
    stroke: float = augmentation(
        0.5,
        "Share of images whose strokes are made bolder or thinner.",
        "stroke width changed in {:.0%} of images",
        datasets=_NOT_FOR_CLOTHES,
    )

    # Off by default, where clean MNIST accuracy is what the recipe is judged by: on cnn-wide, 0.1
    # reads 92.3% of rendered continental 1s instead of 50.0% and a point more of the UCI digits,
    # for 0.06 points of validation accuracy (medians of 3 seeds). The bundled model uses 0.1.
    flag_ones: float = augmentation(
        0.0,
        "Share of the 1s given the long flag they are written with across continental Europe "
        "(e.g. 0.1, as the bundled model, for readers who write their 1s so).",
        "a flag on {:.0%} of the 1s",
    )

    # What pictures do besides the pen (benchmarks/corruptions.py measures them): the share of images
    # that get each.
    paper: float = augmentation(
        0.1,
        "Share of images put on grey or unevenly lit paper, at a lower contrast.",
        "grey or uneven paper in {:.0%}",
    )
    noise: float = augmentation(
        0.1,
        "Share of images with grain (Gaussian noise, or salt and pepper).",
        "grain in {:.0%}",
    )
    blur: float = augmentation(
        0.1,
        "Share of images blurred (out of focus, or shaken in a random direction).",
        "blur in {:.0%}",
    )
    marks: float = augmentation(
        0.1,
        "Share of images with a stray stroke or a band of the other polarity.",
        "stray marks in {:.0%}",
    )
    lowres: float = augmentation(
        0.1,
        "Share of images seen at a low resolution (6-10 samples across the digit, scaled up again), as "
        "small scans and distant photos are.",
        "low resolution in {:.0%}",
    )
    outline: float = augmentation(
        0.05,
        "Share of images whose strokes are drawn as outlines.",
        "outlined strokes in {:.0%}",
        datasets=_NOT_FOR_CLOTHES,
    )
    settle: float = augmentation(
        0.4,
        "The last share of the run, in which paper, grain, blur, marks, outlines and low resolution come a "
        "quarter as often (the last epochs sharpen clean digits).",
        "fewer of them in the last {:.0%} of the run",
        in_training_note=False,
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """A recipe saved by any version: unknown keys are ignored; fields added since take the
        value that reproduces what that version did (LEGACY), else today's default."""
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in values.items() if k in names}
        return cls(**{**LEGACY, **known})


def _derived(attribute: str) -> dict[str, dict[str, Any]]:
    """{preset or dataset: {setting: value}} from what each setting declares."""
    out: dict[str, dict[str, Any]] = {}
    for d in declare.declared(Recipe):
        for name, value in getattr(d.setting, attribute).items():
            out.setdefault(name, {})[d.name] = value
    return out


# Settings added after format 1 was first written, with the value that means "as before".
LEGACY: dict[str, Any] = {
    d.name: d.setting.legacy for d in declare.declared(Recipe) if d.setting.legacy is not declare.NO_VALUE
}
PRESETS: dict[str, dict[str, Any]] = {DEFAULT_PRESET: {}, **_derived("presets")}
DATASET_DEFAULTS: dict[str, dict[str, Any]] = _derived("datasets")


@dataclass
class RunSettings:
    """Where a run reads and writes and how it computes and reports; not part of what it learns."""

    data_dir: Optional[Path] = setting(
        None,
        "Folder with the dataset's IDX files (flat or in MNIST/raw/); downloaded there when missing. "
        "Without it: the folder a checkpoint recorded, ./data, then the user's cache, where downloads go.",
        panel=FILES,
        show_default="the user's cache",
        envvar="MNISTCLI_DATA_DIR",
        metavar="FOLDER",
    )
    out_dir: Optional[Path] = setting(
        None,
        "Where checkpoints, history and curves go.",
        panel=FILES,
        show_default=f"./{files.RUN_DIR}, or the resumed run's",
        metavar="FOLDER",
    )
    resume: Optional[Path] = setting(
        None, "Continue a run from its last.pt (or its folder).", panel=FILES, show_default="no", metavar="PATH"
    )
    device: str = setting(
        "auto",
        "Where to compute: auto picks cuda, then mps, then cpu.",
        panel=RUNS,
        choices=lambda: DEVICES,
        on_resume=True,
    )
    precision: str = setting(
        "auto",
        "Training arithmetic: auto is bf16 autocast where the hardware has it natively. Evaluation is always fp32.",
        panel=RUNS,
        choices=lambda: PRECISIONS,
        on_resume=True,
    )
    threads: Optional[int] = setting(
        None,
        "CPU threads torch may use; on a machine busy with other work, fewer threads than cores train faster.",
        panel=RUNS,
        at_least=1,
        show_default="torch's: $OMP_NUM_THREADS, else one per core",
        on_resume=True,
        metavar="N",
    )
    log_every: int = setting(
        300, "Print a row of loss and accuracy every N batches.", panel=RUNS, at_least=1, on_resume=True, metavar="N"
    )
    keep: Optional[int] = setting(
        None,
        "Keep only the last N epoch-NNN.pt files (best.pt and last.pt always stay).",
        panel=FILES,
        at_least=1,
        show_default="all",
        on_resume=True,
        metavar="N",
    )
    compile: bool = setting(
        False,
        "torch.compile the network for training (pays off on GPUs and long runs; compiling takes tens of seconds).",
        panel=RUNS,
        flag="--compile",
        on_resume=True,
    )
    download: bool = setting(
        True,
        "Download the dataset when it is not on disk (--no-download: fail instead).",
        panel=FILES,
        flag="--download/--no-download",
        on_resume=True,
    )
    nproc: int = setting(
        1,
        "Train with N processes (torch.distributed, gloo on CPU, nccl on CUDA); launches torchrun.",
        panel=RUNS,
        at_least=1,
        metavar="N",
    )
    tensorboard: bool = setting(
        False,
        "Also log the loss, accuracy, learning rate, validation and test figures as TensorBoard event files in "
        "the run folder (the tensorboard extra); view with tensorboard --logdir on the runs' parent folder.",
        panel=FILES,
        flag="--tensorboard",
        on_resume=True,
    )
    command: str = setting("", "The command line that started the run, kept in its checkpoints.", cli=False)

    @property
    def run_dir(self) -> Path:
        """The run's folder: --out-dir, else the resumed run's own, else ./checkpoints."""
        if self.out_dir is not None:
            return self.out_dir
        if self.resume is not None:
            return self.resume if self.resume.is_dir() else self.resume.parent
        return files.RUN_DIR

    def check(self) -> None:
        declare.check(self)
        if self.tensorboard:
            from mnistcli import tensorboard_log

            tensorboard_log.require()


@dataclass
class Resolved:
    """The final recipe; where each of its values came from; and on resume what the given
    settings changed: name -> (saved, new)."""

    recipe: Recipe
    origins: dict[str, str] = field(default_factory=dict)  # name -> "default", "the report recipe", ...
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    preset: Optional[str] = None  # the preset a new run started from (None on resume)


def resolve_recipe(
    preset: Optional[str] = None, given: Optional[dict[str, Any]] = None, saved: Optional[dict[str, Any]] = None
) -> Resolved:
    """The recipe of a run, checked.

    New run: the preset (default: "default"), then what the dataset changes (DATASET_DEFAULTS),
    then the settings the user gave (those not None). Resumed run (`saved` is the checkpoint's
    recipe): the saved recipe, where the given settings may change only the resumable ones; other
    differences are refused, and so is a preset.
    """
    given = {k: v for k, v in (given or {}).items() if v is not None}
    unknown = set(given) - {f.name for f in fields(Recipe)}
    if unknown:
        raise TypeError(f"not recipe options: {', '.join(sorted(unknown))}")
    if saved is None:
        return _new_recipe(preset or DEFAULT_PRESET, given)
    if preset is not None:
        raise OptionError("--recipe cannot be combined with --resume: the run keeps its own recipe")
    base = Recipe.from_dict(saved)
    changed = {k: (getattr(base, k), v) for k, v in given.items() if getattr(base, k) != v}
    resumable = {d.name for d in declare.declared(Recipe) if d.setting.resumable}
    conflicts = [
        f"--{k.replace('_', '-')} {new} (checkpoint: {old})" for k, (old, new) in changed.items() if k not in resumable
    ]
    if conflicts:
        raise OptionError(
            "cannot resume with "
            + ", ".join(conflicts)
            + "; drop these options or start a new run with another --out-dir"
        )
    recipe = replace(base, **{k: new for k, (_, new) in changed.items()})
    declare.check(recipe)
    origins = {f.name: "given" if f.name in changed else "the checkpoint" for f in fields(Recipe)}
    return Resolved(recipe, origins, changed)


def _new_recipe(name: str, given: dict[str, Any]) -> Resolved:
    if name not in PRESETS:
        raise OptionError(f"unknown recipe {name!r}; choose from: {', '.join(PRESETS)}")
    dataset = given.get("dataset", PRESETS[name].get("dataset", DEFAULT_DATASET))
    layers = [
        ("default", Recipe().to_dict()),
        (f"the {name} recipe", PRESETS[name]),
        (f"the {dataset} dataset", DATASET_DEFAULTS.get(dataset, {})),
        ("given", given),
    ]
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for origin, layer in layers:
        for key, value in layer.items():
            values[key], origins[key] = value, origin
    recipe = Recipe(**values)
    declare.check(recipe)
    return Resolved(recipe, origins, preset=name)


def training_note(r: Recipe) -> str:
    """How the training figures were measured, which is why they sit apart from validation and test:
    during the epoch, on the augmented images, with the smoothed labels the recipe trains on."""
    return ", ".join(["during the epoch", *declare.phrases(r, only_training_note=True)])


def summary(r: Recipe) -> str:
    """The recipe in a line: "20 epochs, batch 128, sgd, lr 0.1, momentum 0.9, nesterov, ..."."""
    return ", ".join(declare.phrases(r))


def resume_flags(run: RunSettings) -> list[str]:
    """The settings a resumed run should be given again: those declared on_resume, not at their defaults
    (the recipe, the data folder and the output folder are in the checkpoint)."""
    defaults = RunSettings()
    words: list[str] = []
    for d in declare.declared(RunSettings):
        value = getattr(run, d.name)
        if d.setting.on_resume and value != getattr(defaults, d.name):
            words += declare.flags(d, value)
    return words


def command_flags(record: Any, names: Any) -> list[str]:
    """The command-line words that set each of `names` of `record` to its value."""
    by_name = declare.by_name(type(record))
    words: list[str] = []
    for name in names:
        value = getattr(record, name)
        if value is not None:
            words += declare.flags(by_name[name], value)
    return words
