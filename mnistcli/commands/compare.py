"""`mnistcli compare`: runs side by side (a table, their curves in one PNG); `--train` makes the runs first."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mnistcli import files, ui
from mnistcli.commands import params
from mnistcli.commands.common import (
    DataDir,
    Device,
    DeviceName,
    Json,
    NoDownload,
    handles_errors,
    print_json,
    value,
)
from mnistcli.errors import OptionError
from mnistcli.models import model_names
from mnistcli.settings import PRESET_NAMES, RunSettings


@handles_errors
def compare_command(
    runs: Annotated[
        Optional[list[Path]],
        typer.Argument(help="Run folders (or checkpoints in them) to compare.", show_default=False, metavar="RUN..."),
    ] = None,
    train: Annotated[
        Optional[str],
        params.option(
            "--train",
            help="Train these networks first, each in its own folder under --out-dir (e.g. fc,report-cnn), "
            "then compare them (with any RUN given). A finished run is kept, a stopped one resumed.",
            metavar=",".join(model_names()),
        ),
    ] = None,
    recipe: Annotated[
        Optional[str],
        params.option("--recipe", help="Preset for --train.", default="default", metavar="|".join(PRESET_NAMES)),
    ] = None,
    epochs: Annotated[
        Optional[int], params.option("--epochs", help="Epochs for --train.", default="the recipe's", metavar="N")
    ] = None,
    out_dir: Annotated[
        Path, params.option("--out-dir", help="Where --train puts its runs.", default="runs", metavar="FOLDER")
    ] = Path("runs"),
    figure: Annotated[
        Optional[Path],
        params.option(
            "--figure",
            help="The PNG of the curves.",
            default="comparison.png, or OUT_DIR/comparison.png with --train",
            metavar="PNG",
        ),
    ] = None,
    json_out: Json = False,
    markdown: Annotated[
        bool, params.option("--markdown", help="Print the table as Markdown, to paste into a report.")
    ] = False,
    device: Device = DeviceName("auto"),
    data_dir: DataDir = None,
    no_download: NoDownload = False,
) -> None:
    """Runs side by side: what each is, how fast it trained, how well it reads; their curves in one PNG."""
    from mnistcli import comparison, plots

    folders = list(runs or [])
    if train:
        run = RunSettings(data_dir=data_dir, download=not no_download, device=value(device))
        folders += _train_each([m.strip() for m in train.split(",") if m.strip()], recipe, epochs, out_dir, run)
    if not folders:
        raise OptionError("give run folders to compare, or --train MODELS")
    summaries, failures = comparison.compare(folders)
    for failure in failures:
        ui.error(failure)
    if not summaries:
        raise typer.Exit(1)
    chosen = figure or (out_dir / "comparison.png" if train else Path("comparison.png"))
    plots.comparison_figure(summaries, chosen, title=f"{len(summaries)} runs on {summaries[0].dataset}")
    if json_out:
        print_json({"runs": [s.to_dict() for s in summaries], "figure": str(chosen), "errors": failures})
    elif markdown:
        print(ui.markdown_table(ui.COMPARISON_COLUMNS, ui.comparison_rows(summaries)))
    else:
        ui.console.print(ui.comparison_table(summaries))
        ui.info(f"Curves: {chosen}")
    if failures:
        raise typer.Exit(1)


def _train_each(
    models: list[str], preset: Optional[str], epochs: Optional[int], root: Path, run: RunSettings
) -> list[Path]:
    """Each network trained (or resumed, or kept when finished) in ROOT/NAME; the folders."""
    from dataclasses import replace

    from mnistcli import checkpoint
    from mnistcli.commands.train import _report, _train

    unknown = [m for m in models if m not in model_names()]
    if unknown:
        raise OptionError(f"--train: unknown model {unknown[0]!r}; choose from: {', '.join(model_names())}")
    folders = []
    for name in models:
        folder = root / name
        last = folder / files.LAST
        given = {"model": name} | ({"epochs": epochs} if epochs is not None else {})
        settings = replace(run, out_dir=folder, command=f"mnistcli compare --train ... ({name})")
        if last.is_file():
            saved = checkpoint.load(last)
            wanted = epochs or saved.recipe.epochs
            if saved.stopped_at is None and (saved.epoch or 0) >= wanted:
                ui.info(f"{folder}: finished ({saved.epoch} epochs), kept")
                folders.append(folder)
                continue
            ui.info(f"{folder}: resuming at epoch {(saved.epoch or 0) + 1}")
            result, code = _train(None, {"epochs": wanted}, replace(settings, resume=last))
        else:
            ui.info(f"{folder}: training {name}")
            result, code = _train(preset, given, settings)
        _report(result, settings)
        if result.interrupted:
            raise typer.Exit(code)
        folders.append(folder)
    return folders
