"""``python -m recforge``: the `recforge` command (how torchrun starts training processes)."""

from recforge.cli.main import main

main()
