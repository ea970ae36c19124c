"""Dynamic execution: skip attention / MLP branches of chosen blocks of a pretrained model.

No retraining: a *configuration* is a set of skipped units (``"blocks.2.attn"``,
``"blocks.0.mlp"``); the residual path of a skipped branch stays, so the block computes
``x + other_branch(x)``. The search measures each configuration's accuracy and cost and keeps the
Pareto front; one file per front configuration is exported (phone delegates reject control flow,
so there are no runtime ``If`` gates), and a budget selector picks, per frame, the most accurate
configuration that fits the frame's budget.

Modules:

- :mod:`pipeline.dynamic.skip`: find skip units by module structure, apply a configuration;
- :mod:`pipeline.dynamic.search`: sensitivity, beam / greedy search, FLOPs, Pareto front;
- :mod:`pipeline.dynamic.selector`: the budget selector (mirrored by ``BudgetSelector.java``);
- :mod:`pipeline.dynamic.export`: one bundle per front configuration, in any export mode;
- :mod:`pipeline.dynamic.trace`: a budget-trace run on the host;
- ``python -m pipeline.dynamic``: the command line.

Importing this package stays light (no torch): the selector only needs the standard library.
"""

from pipeline.dynamic.selector import Choice, FrontEntry, select_for_budget

__all__ = ["Choice", "FrontEntry", "select_for_budget"]
