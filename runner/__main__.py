"""`python -m runner`: the command line (:func:`runner.cli.main`)."""

from runner.cli import main

main()
