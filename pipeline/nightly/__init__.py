"""Nightly device-farm runs: ``python -m pipeline.nightly --farm farm.yaml``.

- :mod:`pipeline.nightly.farm`: the farm file (phones, matrix, settings), ``sim:N``;
- :mod:`pipeline.nightly.leases`: phone leases in the results database (SQLite or PostgreSQL);
- :mod:`pipeline.nightly.scheduler`: one worker per phone, retries, jobs moving between phones;
- :mod:`pipeline.nightly.history`: what the collector holds for this night and the ones before;
- :mod:`pipeline.nightly.regressions`: the regression rule (pure functions);
- :mod:`pipeline.nightly.run`: one night from end to end (``run_nightly``).
- :mod:`pipeline.nightly.dynamic_bundles`: the bundles of ``matrix.dynamic`` skip configurations.

Importing this package stays light (no torch, no adb).
"""

from pipeline.nightly.farm import (
           FarmConfig,
           Job,
           Matrix,
           NightSettings,
           PhoneSpec,
           load_farm,
           parse_farm_mapping,
)
from pipeline.nightly.regressions import Regression, RegressionRule, find_regressions

__all__ = ["FarmConfig", "Job", "Matrix", "NightSettings", "PhoneSpec", "load_farm", "parse_farm_mapping",
           "Regression", "RegressionRule", "find_regressions"]
