"""Research workflow tools: families of dataset configs, dataset merging, run tables.

* :mod:`dubfiv.workflow.dataset_configs` -- ``dubfiv_dataset_configs``: dataset TOMLs
  over a grid of bias parameters or split sizes;
* :mod:`dubfiv.workflow.merge` -- ``dubfiv_two4two_merge``: merge rendered datasets
  split by split, interventions kept aligned;
* :mod:`dubfiv.workflow.collect_runs` -- ``dubfiv_collect_runs``: one table of many runs.

Every function raises :class:`WorkflowError` (or a subclass) for bad input; the
message names the file or flag and the fix.
"""

from dubfiv.workflow.errors import WorkflowError

__all__ = ["WorkflowError"]
