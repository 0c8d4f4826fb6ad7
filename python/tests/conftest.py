"""pytest setup for tandem's Python package: the package is imported from
python/ (built in place by `make python`), and the integration tests'
helpers (tests/integration: the CLI, the real server, curl) are shared."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
