"""Early stopping while tuning (tune.early_stopping_rounds): fewer trees, handed to train, stopped on real rows
of the training fold only, and a clear error when a fold has too few buyers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stages.lib.core.errors import DataError
from stages.lib.modeling.search import tune_hyperparameters
from tests.helpers import recipe_of


def test_early_stopping_keeps_fewer_trees_and_hands_the_count_to_train(engine, params_with, train_xy):
    features, y = train_xy
    params = params_with(tune__early_stopping_rounds=5, model__n_estimators=200)
    first = tune_hyperparameters(engine, features, y, recipe_of(params), params.tune)
    second = tune_hyperparameters(engine, features, y, recipe_of(params), params.tune)
    assert first == second  # deterministic: same rows and params, same search and tree count
    assert 1 <= first.best_params["n_estimators"] < 200


def test_early_stopping_classifier_trains_on_resampled_rows_and_stops_on_real_ones(train_xy, monkeypatch):
    import lightgbm

    from stages.lib.modeling.early_stopping import EarlyStoppingClassifier

    features, y = train_xy
    seen = {}
    original_fit = lightgbm.LGBMClassifier.fit

    def spy(self, X, y, **kwargs):
        seen.update(X=X, y=np.asarray(y), eval_X=kwargs["eval_X"][0], eval_y=kwargs["eval_y"][0])
        return original_fit(self, X, y, **kwargs)

    monkeypatch.setattr(lightgbm.LGBMClassifier, "fit", spy)
    model = EarlyStoppingClassifier(early_stopping_rounds=5, stopping_metric="average_precision",
                                    resample_method="smote", sampling_strategy=0.5, n_estimators=300,
                                    n_jobs=1, random_state=1, verbose=-1).fit(features, y)
    assert model.best_iteration_ < 300
    assert len(model.evals_result_["valid_0"]["average_precision"]) == model.best_iteration_ + 5
    # The stopping slice is 10 % of the real rows given, both classes, none of them resampled.
    held_out = seen["eval_X"]
    assert len(held_out) == pytest.approx(0.1 * len(y), abs=1) and set(seen["eval_y"]) == {0, 1}
    assert held_out.index.isin(features.index).all()
    pd.testing.assert_frame_equal(held_out, features.loc[held_out.index])
    # The other 90 % were oversampled to half as many buyers as non-buyers.
    fitted_non_buyers = int((seen["y"] == 0).sum())
    assert fitted_non_buyers == int((y == 0).sum()) - int((seen["eval_y"] == 0).sum())
    assert int(seen["y"].sum()) == fitted_non_buyers // 2


@pytest.mark.parametrize("buyers, method, phrase", [
    # 2 folds (conftest): 6 buyers per training fold, too few to hold out 10 %.
    (12, "none", "holds out 10% of them and needs at least 10"),
    # 10 buyers per training fold are enough for SMOTE with k_neighbors 9, but not the 9 left after holding out 1.
    (20, "smote", "less its early-stopping rows: 9 buyer rows, but resample.k_neighbors=9 needs at least 10"),
])
def test_early_stopping_on_too_few_buyers_is_a_clear_error(engine, params_with, train_xy, buyers, method, phrase):
    features, y = train_xy
    keep = np.concatenate([np.flatnonzero(y == 0)[:400], np.flatnonzero(y == 1)[:buyers]])
    params = params_with(tune__early_stopping_rounds=5, resample__method=method, resample__k_neighbors=9)
    with pytest.raises(DataError, match=phrase):
        tune_hyperparameters(engine, features.iloc[keep], y[keep], recipe_of(params), params.tune)


def test_early_stopping_never_sees_the_fold_it_is_scored_on(engine, params_with, train_xy, fit_spy):
    features, y = train_xy
    params = params_with(tune__early_stopping_rounds=5, resample__method="smote")
    tune_hyperparameters(engine, features, y, recipe_of(params), params.tune)
    searched = params.tune.n_iter * params.tune.cv_folds
    fits, scores = fit_spy.pipeline_fits[:searched], fit_spy.pipeline_scores[:searched]
    assert len(fits) == len(scores) == searched
    for fitted, scored in zip(fits, scores):
        assert not set(scored.index) & set(fitted.index)
    # LightGBM trained on the oversampled 90 % of each training fold; the other 10 % only decided when to stop.
    for (model_rows, _), fitted in zip(fit_spy.model_fits, fits):
        assert len(model_rows) > 0.9 * len(fitted)
