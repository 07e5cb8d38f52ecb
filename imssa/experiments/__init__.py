"""Training, evaluation and sweeps, with results as JSON and xarray Datasets."""
