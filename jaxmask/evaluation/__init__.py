"""The evaluation's parts (DESIGN.md §5), big_vision-style: rows to release, evaluators to score them.

* ``rows``: every row of the tables (Original, Block, Gaussian Blur, Random-K,
  the Oracles, each masker) is a ``Row``: how it releases a split, and two
  flags that say how the protocols treat it. No evaluator names a row.
* ``common``: the ``Context`` every evaluator shares (the data, the network
  trained on originals) and ``from_config``, which builds the evaluators the
  evaluation config asks for, one module each:
  ``mask_quality``, ``original``, ``retrained``, ``fresh_probes``, ``in_training``.
  Each module's ``Evaluator(context, eval_config).run(row, released)`` yields
  ``(metric name, value)`` pairs.

``jaxmask.evaluate.evaluate`` releases every row once and runs every evaluator on it.
"""
