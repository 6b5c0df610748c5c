"""Research scripts of the FAME facet workbench: the experiments behind docs/results.md and
docs/facets.md (ablations, the hyperparameter study, the facet objectives and gate/router checks
of issues 15-16), kept apart from the product (fame_core/, app/) and its benchmarks (bench/).

Each script runs from the repository root as ``python -m experiments.NAME --help``; its results
go to experiments/results/, and experiments/LABLOG.md is the narrative of what was tried.
"""
