"""The games: one row each in ``table.GAMES``, played by ``table.play_round``.

One game is read in three places: its row (``table.py``), its roles and its
settings (``paper.py``, ``minimal.py``), and the judges it trains
(``adversaries.py``); ``random_masks.py`` holds the masks Φ learns from in
the games where it never sees the masker's own.
"""

from jaxmask.games.table import GAMES, Game, eval_step, play_round, train_round  # noqa: F401
