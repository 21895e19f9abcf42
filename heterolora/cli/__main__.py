"""`python -m heterolora.cli`, the same as the `heterolora` command."""

from heterolora.cli import main

main()
