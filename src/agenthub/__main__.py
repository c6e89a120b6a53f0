from __future__ import annotations

from agenthub.cli import main

main()
