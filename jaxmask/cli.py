"""``jaxmask <command> [--flags]``: a thin dispatcher.

Each command lives in ``jaxmask/commands/<command>.py`` with ``define_flags()``
and ``main(argv)``; only the chosen command's flags are defined, so
``jaxmask <command> --help`` lists just its own.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import sys
import threading

COMMANDS = {
    "run": "train → export → evaluate → report on an experiment (default: SynthFaces hair)",
    "train": "train the masker and Φ from a config into a workdir (resumes automatically)",
    "evaluate": "utility, privacy and mask metrics of exported maskers against baselines",
    "export": "write a self-contained masker bundle from a workdir's checkpoint",
    "mask": "mask a folder of images with an exported masker",
    "prepare": "build a tfds dataset (ArrayRecord) from raw files",
    "bench": "throughput of a round, the masker forward and top-K (optionally vs PyTorch)",
}


# Commands that keep compiled programs between runs (jaxmask/platform.py; `bench` times compilation).
CACHED_COMMANDS = ("run", "train", "evaluate", "mask")


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
    # From here on a SIGTERM ends in one line (_stoppable), imports included; not for `train`:
    # a multi-process training keeps SIGTERM's default (its preemption is coordinated by JAX),
    # a single-process one installs its own (StopOnSignal, a checkpoint first).
    if name != "train" and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        _run(name, argv)
    except (KeyboardInterrupt, Stopped) as stop:     # before the command's own main started
        _stopped(name, stop, "nothing was written")


def _run(name: str, argv: list[str]) -> None:
    from jaxmask import platform        # here, after main's SIGTERM handler: a signal during imports is one line
    platform.configure_xla_defaults()   # before any JAX backend starts; see jaxmask/platform.py
    from absl import app, flags
    command = importlib.import_module(f"jaxmask.commands.{name}")
    platform.tune_garbage_collector()   # after the command's imports: they are frozen out of every scan
    command.define_flags()
    command_main = command.main
    if name in CACHED_COMMANDS:
        flags.DEFINE_string(
            "compilation_cache", None,
            "Folder of compiled programs kept between runs, or 'off' (default: "
            f"${platform.CACHE_ENV}, else {platform.default_cache_dir().replace(os.path.expanduser('~'), '~')})")
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS["compilation_cache"])

        def command_main(command_argv):
            # After parsing, before anything compiles: JAX opens the cache once per process.
            platform.configure_compilation_cache(flags.FLAGS.compilation_cache)
            command.main(command_argv)
    # absl's --help lists the key flags of the module named by sys.argv[0] (the
    # console script, or cli.py under `python -m`): make the command's flags
    # (and the shared --config of jaxmask/commands/_config.py) key flags there.
    for module_name, defined in flags.FLAGS.flags_by_module_dict().items():
        if module_name.startswith("jaxmask.commands"):
            for flag in defined:
                flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    app.run(_stoppable(name, command, command_main), argv=[f"jaxmask {name}", *argv[2:]],
            flags_parser=lambda args: parse_flags(name, args))


class Stopped(BaseException):
    """SIGTERM arrived (raised in the main thread, so ``finally`` blocks clean up as for Ctrl-C)."""


def _raise_stopped(signum, frame) -> None:
    raise Stopped(signal.Signals(signum).name)


def _stoppable(name: str, command, command_main=None):
    """``command_main`` (default ``command.main``), ended by Ctrl-C or SIGTERM with one line and 128 +
    the signal number.

    Commands clean up in ``finally``/``except BaseException`` (temporary files
    and folders, locks) as the exception unwinds; ``command.STOPPED`` says what
    the stop leaves. ``train`` handles SIGTERM itself (a checkpoint first:
    jaxmask/workdir.py StopOnSignal); a second Ctrl-C ends here.
    """
    def main(argv):
        try:
            return (command_main or command.main)(argv)
        except (KeyboardInterrupt, Stopped) as stop:
            _stopped(name, stop, getattr(command, "STOPPED", "nothing half-written is left; run the same "
                                                             "command again"))
    return main


def _stopped(name: str, stop: BaseException, hint: str) -> None:
    """One line, and exit 128 + the signal number."""
    if isinstance(stop, Stopped):
        print(f"jaxmask {name}: stopped by {stop.args[0]}: {hint}", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    print(f"\njaxmask {name}: interrupted (Ctrl-C): {hint}", file=sys.stderr)
    raise SystemExit(128 + signal.SIGINT) from None


def _one_line(error: BaseException) -> str:
    # ml_collections wraps a KeyError (whose str() is a repr) in an AttributeError: unwrap to the text.
    while isinstance(error, (KeyError, AttributeError)) and error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    text = str(error.args[0]) if isinstance(error, (KeyError, AttributeError)) and error.args else str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        head = text.split("Traceback (most recent call last)")[0].strip()
        lines = [head, lines[-1]] if head else lines[-1:]      # the message, and the exception's line
    return " ".join(line[1:-1] if len(line) > 1 and line[0] == line[-1] == "'" else line for line in lines)


def _config_path(args: list[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(args):
            return args[i + 1]
    return None


def parse_flags(name: str, args: list[str]) -> list[str]:
    """absl's parsing, with a mistyped flag, config field or config file as one line (exit 2).

    ml_collections raises tracebacks for ``--config.typo=1`` (at parse time)
    and a missing config file (when the config is first read): both are the
    user's mistake, so both are turned into one line naming the flag and the fix.
    """
    from absl import flags
    FLAGS = flags.FLAGS
    # "Off" is spelled None (jaxmask/config_checks.py), which ml_collections cannot parse for a typed
    # field: `--config.x=None` / `--eval.x=None` are set after parsing instead.
    nulls = [arg for arg in args if re.fullmatch(r"--(config|eval)\.[\w.]+=None", arg)]
    args = [arg for arg in args if arg not in nulls]
    try:
        remaining = FLAGS(args)
        for flag_name in ("config", "eval"):
            if flag_name in FLAGS and FLAGS[flag_name].value is not None:
                FLAGS[flag_name].value.keys()    # a config file is loaded lazily: load it now
        for arg in nulls:
            root, *parents, leaf = arg[2:].split("=", 1)[0].split(".")
            node = FLAGS[root].value
            for parent in parents:
                node = node[parent]
            if leaf not in node:
                raise KeyError(f"{arg.split('=')[0][2 + len(root) + 1:]}")
            node[leaf] = None
    except flags.Error as error:
        print(f"jaxmask {name}: error: {_one_line(error)}\n(jaxmask {name} --help lists the flags)",
              file=sys.stderr)
        raise SystemExit(2) from None
    except (OSError, AttributeError, KeyError, ValueError, TypeError, SyntaxError, ImportError) as error:
        path = _config_path(args)
        if path and not os.path.exists(path.split(":")[0]):
            message = f"--config {path.split(':')[0]}: no such config file (the configs are in configs/*.py)"
        elif isinstance(error, (AttributeError, KeyError)):
            message = (f"unknown config field: {_one_line(error)} "
                       "(every field is defined in the config file; check the spelling)")
        else:
            message = f"--config {path}: {type(error).__name__}: {_one_line(error)}"
        print(f"jaxmask {name}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    return remaining


if __name__ == "__main__":
    main()
