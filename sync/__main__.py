"""`python -m retouch.sync` is the same as the `retouch` command."""

from .cli import main

main()
