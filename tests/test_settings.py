"""Options resolved once: presets, the options a user gives, and a resumed run's saved recipe."""

import pytest

from mnistcli.errors import OptionError
from mnistcli.settings import LEGACY, PRESETS, Recipe, resolve_recipe


def test_no_options_give_the_default_recipe():
    resolved = resolve_recipe()
    assert resolved.recipe == Recipe() and resolved.changed == {}


def test_given_options_override_the_preset_and_the_rest_comes_from_it():
    recipe = resolve_recipe("report", {"lr": 0.05, "epochs": 3, "momentum": None}).recipe
    assert recipe.lr == 0.05 and recipe.epochs == 3  # given
    assert (recipe.model, recipe.momentum, recipe.val_size, recipe.ema) == ("report-cnn", 0.5, 0, 0.0)  # preset
    assert recipe.batch_size == Recipe().batch_size  # neither: the default


def test_every_preset_is_a_valid_recipe_and_names_only_recipe_fields():
    for name, values in PRESETS.items():
        assert set(values) <= set(Recipe().to_dict()), name
        resolve_recipe(name)


def test_an_unknown_preset_or_impossible_value_is_refused():
    with pytest.raises(OptionError, match="unknown recipe 'fast'; choose from: default, report"):
        resolve_recipe("fast")
    with pytest.raises(OptionError, match="--momentum must be in"):
        resolve_recipe(given={"momentum": 1.5})
    with pytest.raises(TypeError, match="not recipe options: colour"):
        resolve_recipe(given={"colour": "red"})


def test_a_resume_keeps_the_saved_recipe_and_may_change_only_the_epochs():
    saved = Recipe(model="fc", epochs=3, lr=0.02, seed=7).to_dict()
    kept = resolve_recipe(saved=saved)
    assert kept.recipe == Recipe(model="fc", epochs=3, lr=0.02, seed=7) and kept.changed == {}
    longer = resolve_recipe(given={"epochs": 5, "lr": 0.02}, saved=saved)  # the same lr is no change
    assert longer.recipe.epochs == 5 and longer.changed == {"epochs": (3, 5)}
    with pytest.raises(OptionError, match=r"cannot resume with --lr 0.1 \(checkpoint: 0.02\), --seed 1"):
        resolve_recipe(given={"lr": 0.1, "seed": 1}, saved=saved)
    with pytest.raises(OptionError, match="--recipe cannot be combined with --resume"):
        resolve_recipe("report", saved=saved)


def test_a_recipe_saved_before_a_field_existed_takes_the_value_that_meant_as_before():
    old = {k: v for k, v in Recipe().to_dict().items() if k not in LEGACY}
    assert Recipe.from_dict({**old, "unknown": 1}) == Recipe(**{**Recipe().to_dict(), **LEGACY})


def test_clothes_are_not_distorted_like_handwriting_unless_asked():
    fashion = resolve_recipe(given={"dataset": "fashion-mnist"}).recipe
    assert (fashion.rotate, fashion.scale, fashion.shear, fashion.stroke) == (0, 0, 0, 0)
    assert fashion.augment == Recipe().augment  # shifts still help
    assert resolve_recipe(given={"dataset": "fashion-mnist", "rotate": 5.0}).recipe.rotate == 5.0
    assert resolve_recipe(given={"dataset": "mnist"}).recipe.rotate == Recipe().rotate > 0
