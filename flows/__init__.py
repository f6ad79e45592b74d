"""Prefect flows and the `fineforge` command.

Importing a flow raises the project's loggers to INFO, so that stage progress reaches the run log in the flow
runs a Prefect worker starts too (the CLI's commands do the same in `runtime.prepare_runtime`).
"""

import logging

from fineforge.flows.runtime import PROJECT_LOGGERS

for _name in PROJECT_LOGGERS:
    logging.getLogger(_name).setLevel(logging.INFO)
