"""`python -m clara_pipeline.training.launch`: under Dagster Pipes, or standalone (see the package docstring)."""

import sys

from clara_pipeline.training.launch import main

sys.exit(main())
