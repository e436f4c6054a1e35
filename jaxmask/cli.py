"""``jaxmask <command> [--flags]``: a thin dispatcher.

Each command lives in ``jaxmask/commands/<command>.py`` with ``define_flags()``
and ``main(argv)``; only the chosen command's flags are defined, so
``jaxmask <command> --help`` lists just its own. A command's ``PATH_FLAGS``
name its path flags: an empty or blank one is refused before the command runs
(it would otherwise mean the current folder).

Stops. From ``main``'s first line on, SIGTERM raises ``Stopped`` and Ctrl-C
``KeyboardInterrupt`` in every command (``train``'s loop swaps in its own
handler, which saves a checkpoint first); either ends in one line and exit
128 + the signal, with every lock this process holds removed. The console
script (``main()`` without arguments) then leaves without the interpreter's
teardown (``_leave``).
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
    """``jaxmask ARGV[1:]``. Without ``argv`` (the console script, ``python -m jaxmask.cli``) the process
    then leaves at once (``_leave``); with it (a caller in process) it ends in SystemExit as usual."""
    if argv is not None:
        return _main(list(argv))
    code = 0
    try:
        _main(list(sys.argv))
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            code = done.code or 0
        else:
            print(done.code, file=sys.stderr)
            code = 1
    except BaseException:            # a bug: the traceback, as the interpreter would print it
        import traceback
        traceback.print_exc()
        code = 1
    _leave(code)


def _main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        raise SystemExit(0 if len(argv) >= 2 else 2)
    name = argv[1]
    if name not in COMMANDS:
        print(f"jaxmask: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    # From here on a SIGTERM ends in one line (_stoppable), imports included; `train`'s loop installs
    # its own (StopOnSignal: a checkpoint first), and a multi-process run's jax.distributed replaces
    # it with JAX's preemption notice.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_stopped)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # an ignored Ctrl-C stays so
            signal.signal(signal.SIGINT, _raise_stopped)
        sys.unraisablehook = keep_ignored_stops(sys.unraisablehook)
    try:
        _run(name, argv)
    except (KeyboardInterrupt, Stopped) as stop:     # before the command's own main started
        _stopped(name, stop, "nothing was written")
    finally:
        # However the command ended (a stop, an error that skipped its owner's cleanup), no lock of
        # this process outlives it.
        workdir = sys.modules.get("jaxmask.workdir")
        if workdir is not None:
            workdir.release_all_locks()


def _leave(code: int) -> None:
    """Out without the interpreter's teardown, once the command has ended.

    Further Ctrl-C/SIGTERM are ignored (the process is leaving), the output is
    flushed and the ``atexit`` handlers run (JAX's distributed shutdown among
    them), then the process exits at once: the teardown, with XLA's and the
    input pipeline's threads still alive, is where a stopped training crashed
    (a segmentation fault), and where a signal still had its default action.
    """
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
    for thread in threading.enumerate():        # what Python's own exit waits for
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    import atexit
    atexit._run_exitfuncs()
    import logging
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


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
    path_flags = (*getattr(command, "PATH_FLAGS", ()), *(("compilation_cache",) if name in CACHED_COMMANDS else ()))
    app.run(_stoppable(name, command, command_main), argv=[f"jaxmask {name}", *argv[2:]],
            flags_parser=lambda args: parse_flags(name, args, path_flags))


class Stopped(BaseException):
    """SIGTERM arrived (raised in the main thread, so ``finally`` blocks clean up as for Ctrl-C)."""


def _raise_stopped(signum, frame) -> None:
    """SIGTERM raises Stopped, Ctrl-C KeyboardInterrupt, in the main thread's current line.

    Where Python ignores exceptions (a gc callback — XLA runs one at every
    collection —, a ``__del__``, a weakref callback) the stop would be lost:
    ``keep_ignored_stops``, installed beside this handler, sends it again.
    """
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Stopped(signal.Signals(signum).name)


def keep_ignored_stops(previous):
    """A ``sys.unraisablehook`` that sends a stop Python ignored once more, a moment later.

    An exception raised in a gc callback, a ``__del__`` or a weakref callback (a ``WeakSet``
    entry dying during a collection) is only printed as "Exception ignored": the stop would be
    lost and a traceback printed. Whatever the place, the ignored ``Stopped``/``KeyboardInterrupt``
    reaches this hook, and the signal is sent again 20 ms later, to land outside it. Every other
    unraisable exception goes to ``previous``.
    """
    def hook(unraisable):
        if isinstance(unraisable.exc_value, Stopped):
            _send_again(signal.SIGTERM)
        elif isinstance(unraisable.exc_value, KeyboardInterrupt):
            _send_again(signal.SIGINT)
        else:
            previous(unraisable)
    return hook


def _send_again(signum: int) -> None:
    timer = threading.Timer(0.02, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()


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


def _refuse(name: str, message: str, code: int = 2) -> None:
    print(f"jaxmask {name}: error: {message}", file=sys.stderr)
    raise SystemExit(code) from None


def check_config_file(name: str, spec: str) -> None:
    """The ``--config`` file, loaded with jaxmask.config_files' checks before ml_collections reads it: an
    empty path, no regular file, a file that fails to import, no get_config, one that raises or returns
    no ConfigDict are one line naming the file and the fix (ml_collections would hang on a FIFO, print
    the traceback, or hand a dict on)."""
    from jaxmask import config_files
    if not spec.split(":")[0].strip():
        _refuse(name, f"--config is empty ({spec!r}): pass a config file, e.g. --config configs/synth_hair.py")
    try:
        config_files.load(spec)
    except FileNotFoundError:
        _refuse(name, f"--config {config_files.split_spec(spec)[0]}: no such config file (the configs are in "
                      "configs/*.py)")
    except (ValueError, TypeError) as error:       # "config file PATH…: what is wrong: the fix"
        _refuse(name, _one_line(error))


def parse_flags(name: str, args: list[str], path_flags: tuple[str, ...] = ()) -> list[str]:
    """absl's parsing, with a mistyped flag, config field or config file as one line (exit 2).

    ml_collections raises tracebacks for ``--config.typo=1`` (at parse time)
    and a missing config file (when the config is first read): both are the
    user's mistake, so both are turned into one line naming the flag and the fix.
    ``path_flags``: flags that name a path, which may not be given empty or blank.
    """
    from absl import flags
    FLAGS = flags.FLAGS
    spec = _config_path(args)
    if spec is not None:
        check_config_file(name, spec)
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
    from jaxmask import arguments
    for flag_name in path_flags:      # an empty path is not the current folder
        if FLAGS[flag_name].present and isinstance(FLAGS[flag_name].value, str):
            try:
                arguments.path(FLAGS[flag_name].value, f"--{flag_name}")
            except ValueError as error:
                _refuse(name, str(error))
    return remaining


if __name__ == "__main__":
    main()
