"""`python -m tests.bench`: see tests/bench/README.md."""

from tests.bench.cli import main

raise SystemExit(main())
