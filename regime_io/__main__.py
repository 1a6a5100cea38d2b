"""``python -m regime_io``: the same as the ``regime-io`` command."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
