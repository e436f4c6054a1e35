"""One module per CLI command: ``define_flags()`` and ``main(argv)`` (see jaxmask/cli.py)."""
