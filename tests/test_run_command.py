"""`jaxmask run`'s masker list: Ours, the non-adversarial baseline, and with --ablation the paper's
game and the soft modes."""

from conftest import load_config

from jaxmask.commands import run


def test_variant_switches_only_the_adversary_and_the_mask_mode():
    config = load_config("synth_hair", "smoke")
    off = run.variant(config, adversarial=False)
    assert off.obfuscator_steps == 0 and config.obfuscator_steps == 1      # the original is untouched
    assert (off.mask_values, off.mask_gradient) == (config.mask_values, config.mask_gradient)
    soft = run.variant(config, adversarial=True, mask_values="soft", mask_gradient="exact")
    assert (soft.mask_values, soft.mask_gradient, soft.obfuscator_steps) == ("soft", "exact", 1)
    everything_else = lambda c: {k: v for k, v in c.to_dict().items()
                                 if k not in ("mask_values", "mask_gradient", "obfuscator_steps")}
    assert everything_else(soft) == everything_else(off) == everything_else(config)


def test_ablation_covers_the_paper_game_and_soft_values_with_and_without_adversary():
    soft = {(o["mask_values"], o["mask_gradient"], adversarial) for _, _, adversarial, o in run.ABLATION
            if "mask_values" in o}
    assert soft == {("soft", g, a) for g in ("straight_through", "exact") for a in (True, False)}
    paper = {(o["game"], o["mask_channel"], adversarial) for _, _, adversarial, o in run.ABLATION
             if o.get("game") == "paper"}
    assert paper == {("paper", False, True), ("paper", False, False)}
    config = load_config("synth_hair", "smoke")
    from jaxmask import build_method
    for _, _, adversarial, overrides in run.ABLATION:        # every override is a real config key, and valid
        build_method(run.variant(config, adversarial, **overrides))
    names = [name for name, *_ in run.ABLATION] + [run.OURS, run.NON_ADVERSARIAL]
    workdirs = [subdir for _, subdir, *_ in run.ABLATION] + ["ours", "non_adversarial"]
    assert len(set(names)) == len(set(workdirs)) == 8


def test_command_help_lists_the_commands_own_flags():
    import os
    import subprocess
    import sys

    from conftest import REPO
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-m", "jaxmask.cli", "run", "--help"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr[-2000:]     # absl's --help exits 1 by design
    for flag in ("--[no]ablation", "--[no]full", "--workdir", "--config", "--k_sweep", "--eval",
                 "--compilation_cache"):
        assert flag in done.stdout, flag
    assert "--model" not in done.stdout      # `mask`'s flag: only the chosen command's are defined


def test_quick_schedule_unless_full_and_explicit_flags_win():
    from jaxmask import evaluate
    quick = run.schedule(evaluate.get_config(), full=False, given={})
    assert (quick.max_train, quick.probe_max_train, tuple(quick.probe_releases)) == (4000, 4000, (run.OURS,))
    full = run.schedule(evaluate.get_config(), full=True, given={})
    assert full.to_dict() == evaluate.get_config().to_dict()
    mine = evaluate.get_config()
    mine.max_train = 123
    assert run.schedule(mine, full=False, given={"max_train": 123}).max_train == 123   # the user's value stays
