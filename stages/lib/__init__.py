"""The library the stages share, one job per module; it never imports a stage.

    params        params.yaml -> typed, validated sections (the one params loader)
    errors        the errors a user can fix;  cli: arguments, one-line errors, exit codes
    files         atomic writes, JSON, pickled objects;  tables: CSV and parquet
    schema        the customer table's checks and the columns stages pass on (the one schema check)
    synthetic     the generated customer export and its true probabilities
    preprocessing split and fit on training rows;  features: the pickled preprocessor
    resampling    SMOTE and its variants;  models: LightGBM, pipelines, folds, out-of-fold scores
    tuning        BayesSearchCV and its progress line;  compute: cores, `auto` threads, the Dask client
    exact         rounding that gives the same bits on every x86-64 CPU;  ranking: customer order, threshold
    baselines     the models a user would pick instead, beside the model
    calibration   the pickled probability calibrator;  thresholds: calibration fit and threshold choice
    metrics       precision, recall, F1, ranking and top-of-list numbers
    plots         plot data (JSON);  figures: PNG images
    scoring       scoring new customers;  artifacts: model files checked against dvc.lock
    revisions, report_markdown   the pull-request report
"""
