"""The models: estimators, the logistic regression, resampling, folds, the search, the family choice,
calibration and the threshold, and the order of customers."""
