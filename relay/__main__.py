"""`python -m relay` runs the command line, like the `relay` script."""

from __future__ import annotations

from relay.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
