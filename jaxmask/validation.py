"""Every config check: one line naming the field and the fix, before any long work.

All config validation lives here (state.build_method, the train/run/evaluate
commands and the resume check call it); what a check needs is derived from
the config's structure, not from a list of fields:

* **by field-name pattern** (a new field following the naming convention is
  covered without being listed):

  ``*_every``                   an interval in rounds: an integer ≥ 1, or None for never
  ``num_rounds``, ``*batch_size``, ``*image_size``, ``*_widths`` entries, ``epochs``: integers ≥ 1
                                (ensembles: a list of such lists)
  ``*_steps``, ``*_epochs``     an integer ≥ 0
  ``*learning_rate``            a finite number > 0
  ``num_classes``               ≥ 2 (one class is no task: Φ is right without looking)
  ``topk_fraction``, ``k_sweep`` entries   in (0, 1], and at least one pixel at image_size
  ``*_accuracy``                a threshold in [0, 1], or None for never

* **across fields** (``check_method_config``): the game, reveal rule, value
  mode and gradient rule, dtype and optimizer are known names and fit
  together; adversaries get ≥ 1 step; a synthetic split holds one batch.
* **the model builds** (``check_model_builds``): jax.eval_shape of the state
  (nothing compiles), so an image too small for the U-Net's depth is named.
* **evaluation** (``check_eval_config``): the same patterns on ``--eval``, the
  K sweep, and ``probe_releases`` against the rows the evaluation releases.

"Off" has one spelling, None (``adversary.reinit_every``, ``adversary.exit_accuracy``,
every ``*_every``): 0 for an interval is refused with the message to pass None.
A field that is None passes the pattern checks (an optional field left unset).

Path checks: a folder argument that is an existing file (or the reverse) and
an output that cannot be written are refused up front, so that nothing runs
for minutes before failing.
"""

from __future__ import annotations

import math
import os
from typing import Any


class ConfigError(ValueError):
    """A config value that cannot be meant; the message names the field and the fix."""


def _flatten(config, prefix: str = "") -> dict[str, Any]:
    items = config.items() if hasattr(config, "items") else []
    flat = {}
    for key, value in items:
        if hasattr(value, "items"):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_field(name: str, value) -> str | None:
    """Why ``value`` is not valid for field ``name`` (by its name's pattern), or None."""
    leaf = name.rsplit(".", 1)[-1]
    if value is None:          # an optional field left unset
        return None
    if leaf.endswith("_every"):
        if not _is_int(value) or value < 1:
            return "must be an integer ≥ 1 (rounds), or None for never (0 is not a spelling of never: use None)"
    elif leaf == "num_rounds" or leaf == "epochs" or leaf.endswith(("batch_size", "image_size")):
        if not _is_int(value) or value < 1:
            return "must be an integer ≥ 1"
    elif leaf.endswith(("_steps", "_epochs")):
        if not _is_int(value) or value < 0:
            return "must be an integer ≥ 0"
    elif leaf.endswith("learning_rate"):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                or value <= 0:
            return "must be a finite number > 0"
    elif leaf == "num_classes":
        if not _is_int(value) or value < 2:
            return "must be an integer ≥ 2 (a single class is no task to learn)"
    elif leaf == "topk_fraction":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
            return "must lie in (0, 1]"
    elif leaf == "k_sweep":
        if not isinstance(value, (tuple, list)) or not all(
                isinstance(k, (int, float)) and not isinstance(k, bool) and 0 < k <= 1 for k in value):
            return "must be a list of fractions in (0, 1]"
    elif leaf.endswith("_margin"):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            return "must be an accuracy margin in [0, 1] (or unset: None)"
    elif leaf.endswith("_accuracy"):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            return "must be an accuracy in [0, 1] (or unset: None)"
    elif leaf.endswith("_widths"):
        # An ensemble's widths (adversary.*_widths) are a list of such lists, one per member.
        members = value if value and all(isinstance(w, (tuple, list)) for w in value) else [value]
        for widths in members:
            if not isinstance(widths, (tuple, list)) or not widths or not all(_is_int(w) and w >= 1 for w in widths):
                return "must be a non-empty list of integers ≥ 1 (an ensemble: a non-empty list of such lists)"
    return None


def _check_patterns(config, prefix: str) -> None:
    for name, value in _flatten(config).items():
        why = _check_field(name, value)
        if why is not None:
            raise ConfigError(f"{prefix}.{name}={value!r} {why}: pass --{prefix}.{name}=<value>")


def check_training_config(config) -> None:
    """ConfigError naming the first field whose value cannot be meant (see the module doc)."""
    _check_patterns(config, "config")
    check_method_config(config)
    _check_pixels(config.topk_fraction, config.image_size, "config.topk_fraction")
    data = config.get("data") if hasattr(config, "get") else None
    if config.get("dataset") == "synth_faces" and data is not None and not data.get("data_dir"):
        for split in ("train", "validation"):      # generated in memory: the size is the config's
            count = data.get(f"num_{split}")
            if _is_int(count) and count < config.batch_size:
                raise ConfigError(f"config.data.num_{split}={count} is fewer than one batch of config.batch_size="
                                  f"{config.batch_size}: pass --config.data.num_{split}=<at least "
                                  f"{config.batch_size}> or a smaller --config.batch_size")
        selection = config.get("selection")
        count = data.get("num_validation")
        if selection is not None and selection.get("probe_epochs") is not None and _is_int(count):
            if selection.get("max_images"):
                count = min(count, selection.max_images)
            check_selection_split(count, selection)


def check_selection_split(count: int, settings) -> None:
    """ConfigError unless ``count`` validation images make two halves of one selection-probe batch each."""
    if count // 2 < settings.probe_batch_size:
        raise ConfigError(
            f"model selection fits its probes on two halves of ≥ config.selection.probe_batch_size="
            f"{settings.probe_batch_size} validation images, and the validation split has {count}: pass "
            f"--config.data.num_validation=<at least {2 * settings.probe_batch_size}>, a smaller "
            f"--config.selection.probe_batch_size, or --config.selection.probe_epochs=None (no selection)")


def _check_pixels(fraction, image_size, name: str) -> None:
    """K must reveal at least one pixel at the model's size (round(K·H·W) ≥ 1)."""
    if isinstance(fraction, (int, float)) and _is_int(image_size) and round(fraction * image_size ** 2) < 1:
        raise ConfigError(f"{name}={fraction!r} reveals round({fraction}·{image_size}·{image_size}) = 0 pixels "
                          f"at image_size={image_size}: pass a K of at least {0.5 / image_size ** 2:.2g}")


# Names each field may take (the modules that use them re-state nothing: they call check_method_config).
# The games are jaxmask.games.GAMES, the one table of them (read there, not listed twice).
REVEAL_MODES = ("exact", "cap")
JUDGE_OBJECTIVES = ("uniform", "excess")
VALUE_MODES = ("binary", "soft")
GRADIENT_RULES = ("straight_through", "exact")
DTYPES = ("float32", "bfloat16", "float64")
OPTIMIZERS = ("adam", "sgd")
# Optional fields and what None means for each (0 is no spelling of "off": refused, naming None).
OPTIONAL = {"reinit_every": "never re-initialise", "exit_accuracy": "never skip the remaining updates"}


def check_method_config(config) -> None:
    """The cross-field rules of the game (ConfigDict or any object with the fields as attributes).

    Called by ``state.build_method`` too, so every way to build a method checks the same rules.
    """
    def field(name: str, choices: tuple) -> str:
        value = getattr(config, name)
        if value not in choices:
            raise ConfigError(f"config.{name}={value!r}: expected one of {choices}: pass --config.{name}=<value>")
        return value

    from jaxmask.games import GAMES
    field("dtype", DTYPES)
    field("optimizer", OPTIMIZERS)
    game = field("game", tuple(GAMES))
    reveal = field("reveal", REVEAL_MODES)
    needed = GAMES[game].reveal
    if needed is not None and reveal != needed:
        raise ConfigError(f"config.game={game!r} needs config.reveal={needed!r} (got {reveal!r}): pass "
                          f"--config.reveal={needed}")
    section = getattr(config, "minimal", None)
    if section is not None and getattr(section, "judge_objective", "uniform") not in JUDGE_OBJECTIVES:
        raise ConfigError(f"config.minimal.judge_objective={section.judge_objective!r}: expected one of "
                          f"{JUDGE_OBJECTIVES}: pass --config.minimal.judge_objective=<value>")
    values = field("mask_values", VALUE_MODES)
    gradient = field("mask_gradient", GRADIENT_RULES)
    if values == "binary" and gradient == "exact":
        raise ConfigError("config.mask_gradient='exact' with mask_values='binary' is refused: the exact gradient of "
                          "a hard 0/1 indicator is zero everywhere, so the masker would never learn. Pass "
                          "--config.mask_gradient=straight_through, or --config.mask_values=soft for the exact rule")
    if reveal == "cap" and values != "binary":
        raise ConfigError("config.reveal='cap' needs mask_values='binary' (a capped reveal is a 0/1 mask): pass "
                          "--config.mask_values=binary or --config.reveal=exact")
    if not _is_int(config.predictor_steps) or config.predictor_steps < 1 or \
            not _is_int(config.obfuscator_steps) or config.obfuscator_steps < 0:
        raise ConfigError(f"config.predictor_steps={config.predictor_steps!r}, obfuscator_steps="
                          f"{config.obfuscator_steps!r}: a round needs predictor_steps ≥ 1 and obfuscator_steps ≥ 0 "
                          "(0 = non-adversarial)")
    if not isinstance(config.topk_fraction, (int, float)) or isinstance(config.topk_fraction, bool) or \
            not 0 < config.topk_fraction <= 1:
        raise ConfigError(f"config.topk_fraction={config.topk_fraction!r} must lie in (0, 1]: it is the share of "
                          "pixels revealed, e.g. --config.topk_fraction=0.25")
    _check_pixels(config.topk_fraction, config.image_size, "config.topk_fraction")
    adversary = config.adversary
    for name, meaning in OPTIONAL.items():
        value = getattr(adversary, name, None)
        if value is not None and not isinstance(value, bool) and value == 0 and name.endswith("_every"):
            raise ConfigError(f"config.adversary.{name}=0: 'off' is spelled None ({meaning}): pass "
                              f"--config.adversary.{name}=None, or a number of rounds ≥ 1")
    adversaries = GAMES[game].adversaries and config.obfuscator_steps > 0 and (
        bool(adversary.complement_widths) or (adversary.pattern_weight > 0 and bool(adversary.pattern_widths)))
    if adversaries and (not _is_int(adversary.steps) or adversary.steps < 1):
        raise ConfigError(f"config.adversary.steps={adversary.steps!r}: the {game!r} game trains its adversaries, "
                          "so it needs ≥ 1 step per round: pass --config.adversary.steps=<n ≥ 1>")


def check_model_builds(config) -> None:
    """ConfigError when the config's state cannot be built (jax.eval_shape: no compilation)."""
    from jaxmask import checkpoint
    try:
        checkpoint.abstract_state(config)
    except ConfigError:
        raise
    except Exception as error:     # flax/jax raise many types for a model that does not fit the image
        message = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise ConfigError(f"config.image_size={config.image_size} with masker_widths={tuple(config.masker_widths)} "
                          f"and phi_widths={tuple(config.phi_widths)} builds no model ({type(error).__name__}: "
                          f"{message}): every level of the U-Net halves the image, so pass a larger "
                          "--config.image_size or fewer --config.masker_widths") from None


# The rows an evaluation releases besides the maskers (jaxmask/baselines.py standard(), and the Oracle
# where the dataset has ground-truth task regions).
BASELINE_ROWS = ("Block", "Gaussian Blur", "Random-K")
TASK_REGION_DATASETS = ("synth_faces",)


def check_eval_config(eval_config, config, model_names) -> None:
    """ConfigError for an --eval setting that cannot be meant, before any bundle loads or network trains."""
    _check_patterns(eval_config, "eval")
    for fraction in eval_config.k_sweep:
        _check_pixels(fraction, config.image_size, "--k_sweep entry")
    for name in ("max_train", "max_test", "probe_max_train", "grid_examples", "dlib_images"):
        value = eval_config.get(name)
        if value is not None and (not _is_int(value) or value < 0):
            raise ConfigError(f"eval.{name}={value!r} must be an integer ≥ 0: pass --eval.{name}=<value>")
    kernel = eval_config.blur_kernel_size
    if not _is_int(kernel) or kernel < 1 or kernel % 2 == 0:
        raise ConfigError(f"eval.blur_kernel_size={kernel!r} must be a positive odd integer: pass "
                          "--eval.blur_kernel_size=<odd value>")
    if eval_config.dlib not in ("auto", "on", "off"):
        raise ConfigError(f"eval.dlib={eval_config.dlib!r}: expected one of ('auto', 'on', 'off')")
    rows = [*BASELINE_ROWS, *model_names]
    if eval_config.oracle and config.dataset in TASK_REGION_DATASETS:
        rows.append("Oracle")
    unknown = [name for name in eval_config.probe_releases if name not in rows]
    if unknown:
        raise ConfigError(f"eval.probe_releases names {unknown}, which this evaluation does not release: use names "
                          f"from {rows} (or () for every masker): pass --eval.probe_releases=<names>")


def parse_k_sweep(values) -> tuple[float, ...]:
    """--k_sweep's strings as fractions; ConfigError naming the one that is not a number."""
    out = []
    for value in values:
        try:
            out.append(float(value))
        except ValueError:
            raise ConfigError(f"--k_sweep: {value!r} is not a number: pass fractions in (0, 1], e.g. "
                              "--k_sweep=0.1,0.25") from None
    return tuple(out)


def check_folder_argument(path: str, flag: str) -> None:
    """A folder to create or reuse must not be an existing file (or a link to one)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag} {path} is a file, not a folder: pass a new or existing folder")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"{flag} {path}: {parent} is a file, so the folder cannot be created")


def check_writable_folder(path: str, flag: str) -> None:
    """``check_folder_argument``, then create the folder and check that a file can be written in it."""
    check_folder_argument(path, flag)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".jaxmask-write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(f"{flag} {path} cannot be written ({error.strerror}): pass a writable folder") from None
