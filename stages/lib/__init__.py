"""The library the stages share, in subpackages by concern; it never imports a stage.

    core/        what every stage stands on: params, errors, the command line, files, tables, cores, hashing
    data/        the customer table: schema, generated data, samples, the split, the preprocessor, drift
    modeling/    estimators, resampling, folds, the search, the family choice, calibration, the threshold
    evaluation/  metrics, baselines, explanations, plot data and images
    scoring/     the one scoring path and the model files it loads
    engines/     where work runs: the interface, the local engine, the Dask engine
    report/      the pull-request report

Each module, and why the layout is what it is: docs/development.md, "Repository layout".
"""
