"""Study variant names → configs, shared by privacy_study.py and game_cost.py.

``name`` is ``default`` (the config file as it is) or a game of
``jaxmask.games.GAMES`` followed by options: ``+channel`` (mask channel on;
off without it), ``+cap`` (reveal=cap), ``+nopattern`` (no mask-pattern
adversary), ``+nonadv`` (obfuscator_steps=0), ``+obfN`` (N privacy steps per
round), ``+advN`` (N adversary updates per round), ``+plateau`` (the
plateau exit of those updates), ``+noopening`` (no opening of the capped
reveal), ``+noidentity`` (no identity adversaries), ``+rN`` (N rounds).
"""

from __future__ import annotations


def variant_config(base, variant: str, seed: int):
    config = base.copy_and_resolve_references()
    game, *options = variant.split("+")
    config.seed = seed
    if game != "default":
        from jaxmask.games import GAMES
        config.game = game
        config.mask_channel = "channel" in options   # explicit: the config's default has the channel on
        config.reveal = (GAMES[game].reveal_mode or "exact") if game in GAMES else config.reveal
    for option in options:
        if option == "channel":
            pass
        elif option == "cap":
            config.reveal = "cap"
        elif option == "nopattern":
            config.adversary.pattern_weight = 0.0
        elif option == "nonadv":
            config.obfuscator_steps = 0
        elif option.startswith("obf"):          # obf3: three privacy steps per round
            config.obfuscator_steps = int(option[3:])
        elif option.startswith("adv"):          # adv2: two adversary updates per round
            config.adversary.steps = int(option[3:])
        elif option == "plateau":               # stop a round's adversary updates once they stop improving
            config.adversary.plateau = 0.0
        elif option == "noopening":             # the capped reveal without its 3×3 opening
            config.opening = None
        elif option == "noidentity":            # no identity adversaries on the release
            config.adversary.identity_widths = ()
        elif option.startswith("r"):            # r200: 200 rounds
            config.num_rounds = int(option[1:])
        else:
            raise SystemExit(f"unknown variant option {option!r} in {variant!r}")
    return config


def load_base(config_arg: str, topk_fraction: float | None = None, num_rounds: int | None = None):
    """The experiment config ``file[:arg]`` with K and the number of rounds overridden where given."""
    from jaxmask import config_files
    path, _, arg = config_arg.partition(":")
    base = config_files.load(path, arg or None)
    if topk_fraction is not None:
        base.topk_fraction = topk_fraction
    if num_rounds is not None:
        base.num_rounds = num_rounds
    return base
