"""``jaxmask <command> [--flags]``: a thin dispatcher.

Each command lives in ``jaxmask/commands/<command>.py`` with ``define_flags()``
and ``main(argv)``; only the chosen command's flags are defined, so
``jaxmask <command> --help`` lists just its own.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "run": "train → export → evaluate → report on an experiment (default: SynthFaces hair)",
    "train": "train the masker and Φ from a config into a workdir (resumes automatically)",
    "evaluate": "utility, privacy and mask metrics of exported maskers against baselines",
    "export": "write a self-contained masker bundle from a workdir's checkpoint",
    "mask": "mask a folder of images with an exported masker",
    "prepare": "build a tfds dataset (ArrayRecord) from raw files",
    "bench": "throughput of a round, the masker forward and top-K (optionally vs PyTorch)",
}


def usage() -> str:
    lines = ["usage: jaxmask <command> [--flags]   (jaxmask <command> --help for its flags)", ""]
    lines += [f"  {name:<9} {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        raise SystemExit(0 if len(argv) >= 2 else 2)
    name = argv[1]
    if name not in COMMANDS:
        print(f"jaxmask: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    from jaxmask import platform
    platform.configure_xla_defaults()   # before any JAX backend starts; see jaxmask/platform.py
    from absl import app, flags
    command = importlib.import_module(f"jaxmask.commands.{name}")
    command.define_flags()
    # absl's --help lists the key flags of the module named by sys.argv[0] (the
    # console script, or cli.py under `python -m`): make the command's flags
    # (and the shared --config of jaxmask/commands/_config.py) key flags there.
    for module_name, defined in flags.FLAGS.flags_by_module_dict().items():
        if module_name.startswith("jaxmask.commands"):
            for flag in defined:
                flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(command.main, argv=[f"jaxmask {name}", *argv[2:]])


if __name__ == "__main__":
    main()
