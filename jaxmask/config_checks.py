"""Every config check, from one declaration per field: one line naming the field and the fix, before
anything compiles.

``TRAINING`` and ``EVALUATION`` declare every field of a training config
(configs/synth_hair.py) and of ``--eval`` (``jaxmask.evaluate.get_config``):
its type, its range or its names, what None means where None is allowed,
and the value a config saved before the field existed had (``legacy``).
From them alone:

* ``check_fields``: a field that is not declared (a typo in a config file:
  ``config.topk_fracton``, with the nearest name suggested), and a value of
  the wrong type or out of range (NaN included);
* ``complete_saved``: a checkpoint's or bundle's config of an older jaxmask,
  completed with each missing field's legacy value.

Rules across fields follow: ``check_method`` (the game's reveal mode, value
mode and gradient rule, adversaries with ≥ 1 update, K of at least one
pixel, SynthFaces' channels and classes), ``check_training_config`` (+ the
generated splits hold a batch, model selection's probes fit), and
``check_eval_config``. The games table is handed in (``jaxmask.build``
passes ``games.table.GAMES``): this module imports no game and builds no
model. "Off" has one spelling, None; 0 for an interval is refused, naming None.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tempfile
from typing import Any

from jaxmask.data.synthetic import TASK_CLASSES


class ConfigError(ValueError):
    """A config value that cannot be meant; the message names the field and the fix."""


_REQUIRED = object()   # no legacy value: a config without the field is not one jaxmask wrote


@dataclasses.dataclass(frozen=True)
class Field:
    """One declared field: ``kind`` ("int", "float", "bool", "str", "choice", "widths",
    "ensemble", "fractions", "names", "box"), its bounds, its names, what None means (None: it is
    never None) and the value configs saved before it existed had."""
    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple = ()
    none: str | None = None
    legacy: Any = _REQUIRED

    def why_not(self, value) -> str | None:
        """Why ``value`` is not valid here (a phrase completing "must …"), or None."""
        if value is None:
            return None if self.none is not None else f"be {self._expected()} (None is not allowed)"
        kind = self.kind
        if kind == "bool":
            return None if isinstance(value, bool) else "be true or false"
        if kind == "str":
            return None if isinstance(value, str) else "be a string"
        if kind == "choice":
            return None if value in self.choices else f"be one of {self.choices}"
        if kind in ("int", "float"):
            if not _is_number(value) or (kind == "int" and not _is_int(value)):
                return f"be {self._expected()}"
            return None if self._in_range(value) else f"be {self._expected()}"
        if kind in ("widths", "ensemble"):
            members = value if kind == "ensemble" else [value]
            ok = isinstance(members, (tuple, list)) and all(
                isinstance(w, (tuple, list)) and w and all(_is_int(x) and 1 <= x <= 4096 for x in w) for w in members)
            return None if ok and (kind == "ensemble" or value) else f"be {self._expected()}"
        if kind == "fractions":
            ok = isinstance(value, (tuple, list)) and all(_is_number(x) and 0 < x <= 1 for x in value)
            return None if ok else "be a list of fractions in (0, 1]"
        if kind == "names":
            ok = isinstance(value, (tuple, list)) and all(isinstance(x, str) and x for x in value)
            return None if ok and len(set(value)) == len(value) else "be a list of distinct names"
        if kind == "box":
            ok = isinstance(value, (tuple, list)) and len(value) == 3 and all(
                _is_number(x) and 0 <= x <= 1 for x in value)
            return None if ok else "be (centre y, centre x, side), each a fraction in [0, 1]"
        raise AssertionError(kind)

    def _in_range(self, value) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.open_high and value == self.high))

    def _expected(self) -> str:
        if self.kind == "widths":
            return "a non-empty list of integers in [1, 4096]"
        if self.kind == "ensemble":
            return "a list of such lists of integers in [1, 4096], one per member"
        what = "an integer" if self.kind == "int" else "a finite number"
        bound = lambda x: str(int(x)) if float(x).is_integer() else f"{x:g}"
        if self.low is not None and self.high is not None:
            what += f" in {'(' if self.open_low else '['}{bound(self.low)}, {bound(self.high)}{')' if self.open_high else ']'}"
        elif self.low is not None:
            what += f" {'>' if self.open_low else '≥'} {bound(self.low)}"
        return what + (f", or None ({self.none})" if self.none else "")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(low=None, high=None, **kw) -> Field:
    return Field("int", low, high, **kw)


def number(low=None, high=None, *, open_low=False, open_high=False, **kw) -> Field:
    return Field("float", low, high, open_low, open_high, **kw)


def choice(*names, **kw) -> Field:
    return Field("choice", choices=names, **kw)


FLAG, TEXT, WIDTHS, ENSEMBLE = Field("bool"), Field("str"), Field("widths"), Field("ensemble")
MAX_BATCH = 1 << 20          # images: a batch above this asks for more memory than any host has
MAX_IMAGE_SIZE = 4096
ACCURACY = number(0, 1)
RATE = number(0, open_low=True)
INTERVAL = integer(1, none="never")
DATASETS = ("synth_faces", "celeba_hair", "ferplus", "image_folder")

TRAINING: dict[str, Field] = {
    "seed": integer(0), "dataset": choice(*DATASETS), "task": TEXT,
    "image_size": integer(8, MAX_IMAGE_SIZE), "channels": choice(1, 3), "num_classes": integer(2),
    "data.num_identities": integer(1), "data.num_train": integer(1), "data.num_validation": integer(1),
    "data.num_test": integer(1), "data.data_dir": TEXT, "data.manual_dir": TEXT, "data.worker_count": integer(0, 1024),
    "data.cache": FLAG, "data.prefetch": integer(0, 64),
    "topk_fraction": number(0, 1, open_low=True), "mask_values": choice("binary", "soft"),
    "mask_gradient": choice("straight_through", "exact"), "predictor_steps": integer(1, 64),
    "obfuscator_steps": integer(0, 64),
    "game": TEXT,   # one of the games table's rows: check_method, which is handed the table
    "mask_channel": FLAG, "reveal": choice("exact", "cap"), "cap_threshold": number(0, 1, open_low=True, open_high=True),
    "opening": integer(1, 15, none="no opening", legacy=None),
    "minimal.utility_accuracy": number(0, 1, legacy=0.95), "minimal.hidden_margin": number(0, 1, legacy=0.05),
    "minimal.pattern_margin": number(0, 1, legacy=0.05), "minimal.dual_learning_rate": number(0, legacy=0.2),
    "minimal.max_log_multiplier": number(0, 50, legacy=2.0), "minimal.boundary_weight": number(0, legacy=0.0),
    "minimal.channel_gradient": Field("bool", legacy=True),
    "minimal.judge_objective": choice("uniform", "excess", legacy="uniform"),
    "minimal.min_mask_rate": number(0, 1, open_low=True, legacy=0.01),
    "minimal.identity_margin": number(0, 1, legacy=0.05), "minimal.identity_start": number(-50, 50, legacy=2.0),
    "minimal.identity_max_log_multiplier": number(0, 50, legacy=4.0),
    "adversary.complement_widths": ENSEMBLE, "adversary.pattern_widths": ENSEMBLE,
    "adversary.identity_widths": Field("ensemble", legacy=()),
    "adversary.hidden": integer(1, 65536), "adversary.learning_rate": RATE, "adversary.steps": integer(0, 64),
    "adversary.exit_accuracy": number(0, 1, none="never skip the remaining updates", legacy=None),
    "adversary.plateau": number(0, 1, none="never", legacy=None),
    "adversary.jitter": integer(0, 64, legacy=0), "adversary.reinit_every": INTERVAL,
    "adversary.pattern_weight": number(0),
    "masker_widths": WIDTHS, "phi_widths": WIDTHS, "phi_hidden": integer(1, 65536),
    "dtype": choice("float32", "bfloat16", "float64"), "optimizer": choice("adam", "sgd"),
    "masker_learning_rate": RATE, "phi_learning_rate": RATE, "batch_size": integer(1, MAX_BATCH),
    "num_rounds": integer(1), "parallel": choice("jit", "pmap"), "num_devices": integer(0),
    "selection.probe_epochs": integer(1, 1000, none="no model selection: the last checkpoint"),
    "selection.probe_widths": WIDTHS, "selection.probe_batch_size": integer(1, MAX_BATCH),
    "selection.max_images": integer(0), "selection.utility_margin": number(0, 1, none="no floor"),
    "selection.identity_probe": Field("bool", legacy=False), "selection.identity_epochs": integer(1, 1000, legacy=10),
    "log_every": INTERVAL, "eval_every": INTERVAL, "checkpoint_every": INTERVAL, "max_checkpoints": integer(0),   # 0: keep every checkpoint
}

EVALUATION: dict[str, Field] = {
    "seed": integer(0), "face_box": Field("box"), "blur_kernel_size": integer(1, 255), "blur_sigma": number(),
    "k_sweep": Field("fractions"), "sweep_retrained": FLAG, "mask_only": FLAG, "hidden_part": FLAG, "oracle": FLAG,
    "probe_random_k": FLAG, "probe_max_train": integer(0), "probe_releases": Field("names"), "mask_swap": FLAG,
    "max_train": integer(0), "max_test": integer(0), "batch_size": integer(1, MAX_BATCH),
    "grid_examples": integer(0, 1000), "dlib": choice("auto", "on", "off"), "dlib_images": integer(0),
    "evaluators": Field("names"),
    "network.widths": WIDTHS, "network.epochs": integer(1, 1000), "network.retrain_epochs": integer(0, 1000),
    "network.batch_size": integer(1, MAX_BATCH), "network.learning_rate": RATE,
}


def flatten(config, prefix: str = "") -> dict[str, Any]:
    """{dotted name: value} of a ConfigDict, a dict, or any object with ``items()``."""
    flat = {}
    for key, value in (config.items() if hasattr(config, "items") else []):
        if hasattr(value, "items"):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_fields(config, declared: dict[str, Field], prefix: str = "config") -> None:
    """ConfigError for the first field that is not declared, missing, or of a value it cannot take."""
    flat = flatten(config)
    for name in flat:
        if name not in declared:
            near = difflib.get_close_matches(name, list(declared), n=1)
            raise ConfigError(f"{prefix}.{name} is not a field of this config"
                              + (f": did you mean {prefix}.{near[0]}?" if near else "")
                              + " (a config file may set only the fields of configs/synth_hair.py)")
    for name, field in declared.items():
        if name not in flat:
            raise ConfigError(f"{prefix}.{name} is missing: start the config from configs/synth_hair.py's "
                              "get_config (config_files.load_sibling) so that it has every field")
        why = field.why_not(flat[name])
        if why is not None:
            zero_interval = field is INTERVAL and flat[name] == 0 and not isinstance(flat[name], bool)
            hint = " (0 is not a spelling of never: use None)" if zero_interval else ""
            raise ConfigError(f"{prefix}.{name}={flat[name]!r} must {why}{hint}: pass --{prefix}.{name}=<value>")


def complete_saved(saved: dict) -> dict:
    """A saved config (plain dict) with each field added since it was written set to its legacy value."""
    out = {key: (dict(value) if isinstance(value, dict) else value) for key, value in saved.items()}
    for name, field in TRAINING.items():
        *parents, leaf = name.split(".")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        if leaf not in node and field.legacy is not _REQUIRED:
            node[leaf] = field.legacy
    return out


def trains_adversaries(config, games) -> bool:
    """The one rule: the game's row trains adversaries, the run is adversarial (obfuscator_steps > 0)
    and an ensemble has members (Ψ's only with pattern_weight > 0)."""
    adversary = config.adversary
    return games[config.game].adversaries and config.obfuscator_steps > 0 and (
        bool(adversary.complement_widths) or bool(adversary.identity_widths)
        or (adversary.pattern_weight > 0 and bool(adversary.pattern_widths)))


def check_method(config, games) -> None:
    """Every field of a training config, then the rules across the fields the method is built from."""
    check_fields(config, TRAINING)
    if config.game not in games:
        raise ConfigError(f"config.game={config.game!r}: expected one of {tuple(games)}: pass --config.game=<value>")
    needed = games[config.game].reveal_mode
    if needed is not None and config.reveal != needed:
        raise ConfigError(f"config.game={config.game!r} needs config.reveal={needed!r} (got {config.reveal!r}): pass "
                          f"--config.reveal={needed}")
    if config.mask_values == "binary" and config.mask_gradient == "exact":
        raise ConfigError("config.mask_gradient='exact' with mask_values='binary' is refused: the exact gradient of "
                          "a hard 0/1 indicator is zero everywhere, so the masker would never learn. Pass "
                          "--config.mask_gradient=straight_through, or --config.mask_values=soft for the exact rule")
    if config.reveal == "cap" and config.mask_values != "binary":
        raise ConfigError("config.reveal='cap' needs mask_values='binary' (a capped reveal is a 0/1 mask): pass "
                          "--config.mask_values=binary or --config.reveal=exact")
    check_pixels(config.topk_fraction, config.image_size, "config.topk_fraction")
    if games[config.game].adversaries and config.obfuscator_steps > 0:
        # () is the off-switch of the identity adversaries only: the hidden-part constraint needs its judges,
        # and the mask-pattern one is turned off by pattern_weight=0, not by an empty ensemble.
        if not config.adversary.complement_widths:
            raise ConfigError(f"config.adversary.complement_widths=(): the {config.game!r} game judges the hidden "
                              "part with these adversaries, and with none its constraint would silently vanish: "
                              "pass at least one member, e.g. --config.adversary.complement_widths='((16,32,64,64),)'")
        if config.adversary.pattern_weight > 0 and not config.adversary.pattern_widths:
            raise ConfigError("config.adversary.pattern_widths=() with pattern_weight > 0: pass at least one member, "
                              "or --config.adversary.pattern_weight=0 to leave the mask-pattern adversaries out")
    if trains_adversaries(config, games) and config.adversary.steps < 1:
        raise ConfigError(f"config.adversary.steps={config.adversary.steps!r}: the {config.game!r} game trains its "
                          "adversaries, so it needs ≥ 1 step per round: pass --config.adversary.steps=<n ≥ 1>")
    if config.opening is not None and config.opening % 2 == 0:
        raise ConfigError(f"config.opening={config.opening!r} needs an odd side (a square centred on its "
                          "pixel): pass an odd --config.opening, or --config.opening=None")
    if config.adversary.identity_widths and (config.dataset != "synth_faces" or config.data.num_identities < 2):
        raise ConfigError(f"config.adversary.identity_widths={config.adversary.identity_widths!r}: identity "
                          f"adversaries need identity labels of data.num_identities ≥ 2 classes (SynthFaces); "
                          f"config.dataset={config.dataset!r}: pass --config.adversary.identity_widths=()")
    if 2 * config.adversary.jitter >= config.image_size:
        raise ConfigError(f"config.adversary.jitter={config.adversary.jitter} shifts by half the image "
                          f"(image_size={config.image_size}) or more: pass a smaller --config.adversary.jitter")
    if config.dataset == "synth_faces":
        if config.task not in TASK_CLASSES:
            raise ConfigError(f"config.task={config.task!r}: SynthFaces has the tasks {tuple(TASK_CLASSES)}: pass "
                              "--config.task=<one of them>")
        classes = len(TASK_CLASSES[config.task])
        if config.num_classes != classes or config.channels != 3:
            raise ConfigError(f"config.num_classes={config.num_classes}, channels={config.channels}: SynthFaces "
                              f"{config.task} has {classes} classes of RGB images: pass --config.num_classes="
                              f"{classes} --config.channels=3")


def check_training_config(config, games) -> None:
    """``check_method``, then what a training reads beyond the method: the generated splits and
    model selection's validation images (ConfigError naming the first field that cannot be meant)."""
    check_method(config, games)
    data = config.data
    if config.dataset == "synth_faces" and not data.data_dir:
        for split in ("train", "validation"):      # generated in memory: the size is the config's
            count = data[f"num_{split}"]
            if count < config.batch_size:
                raise ConfigError(f"config.data.num_{split}={count} is fewer than one batch of config.batch_size="
                                  f"{config.batch_size}: pass --config.data.num_{split}=<at least "
                                  f"{config.batch_size}> or a smaller --config.batch_size")
        if config.selection.probe_epochs is not None:
            count = data.num_validation
            if config.selection.max_images:
                count = min(count, config.selection.max_images)
            check_selection_split(count, config.selection)


def check_selection_split(count: int, settings) -> None:
    """ConfigError unless ``count`` validation images make two halves of one selection-probe batch each."""
    if count // 2 < settings.probe_batch_size:
        raise ConfigError(
            f"model selection fits its probes on two halves of ≥ config.selection.probe_batch_size="
            f"{settings.probe_batch_size} validation images, and the validation split has {count}: pass "
            f"--config.data.num_validation=<at least {2 * settings.probe_batch_size}>, a smaller "
            f"--config.selection.probe_batch_size, or --config.selection.probe_epochs=None (no selection)")


def check_pixels(fraction, image_size, name: str) -> None:
    """K must reveal at least one pixel at the model's size (round(K·H·W) ≥ 1)."""
    if round(fraction * image_size ** 2) < 1:
        raise ConfigError(f"{name}={fraction!r} reveals round({fraction}·{image_size}·{image_size}) = 0 pixels "
                          f"at image_size={image_size}: pass a K of at least {0.5 / image_size ** 2:.2g}")


# The rows an evaluation releases besides the maskers (jaxmask/baselines.py standard(), and the Oracles
# where the dataset has ground-truth task regions: evaluation/rows.py ORACLES).
BASELINE_ROWS = ("Original", "Block", "Gaussian Blur", "Random-K")
ORACLE_ROWS = ("Oracle", "Oracle-exact")
TASK_REGION_DATASETS = ("synth_faces",)
EVALUATORS = ("mask_quality", "original", "retrained", "fresh_probes", "in_training")


def check_eval_config(eval_config, config, model_names) -> None:
    """ConfigError for an --eval setting that cannot be meant, before any bundle loads or network trains."""
    check_fields(eval_config, EVALUATION, "eval")
    for fraction in eval_config.k_sweep:
        check_pixels(fraction, config.image_size, "--k_sweep entry")
    if eval_config.blur_kernel_size % 2 == 0:
        raise ConfigError(f"eval.blur_kernel_size={eval_config.blur_kernel_size!r} must be a positive odd integer: "
                          "pass --eval.blur_kernel_size=<odd value>")
    unknown = [name for name in eval_config.evaluators if name not in EVALUATORS]
    if unknown:
        raise ConfigError(f"eval.evaluators names {unknown}: expected names from {EVALUATORS}: pass "
                          "--eval.evaluators=<names>")
    rows = [*BASELINE_ROWS[1:], *model_names]
    if eval_config.oracle and config.dataset in TASK_REGION_DATASETS:
        rows += ORACLE_ROWS
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
        # A name of its own (created exclusively), so the probe never opens or removes a user's file.
        with tempfile.NamedTemporaryFile(dir=path, prefix=".jaxmask-write-test-"):
            pass
    except OSError as error:
        raise ConfigError(f"{flag} {path} cannot be written ({error.strerror}): pass a writable folder") from None
