"""What the summary says about a run's time (forecaster/manifest.py)."""

from forecaster.manifest import interval_line, summary_lines


def _manifest(history):
    return {"counts": {"input": 3, "forecast": 3, "rejected": 0}, "metrics": {"history": history},
            "outputs": {"forecasts": "f", "rejects": "r", "manifest": "m"},
            "timings_s": {"ray_init": 4.04, "read_validate": 2.0, "score": 0.1, "split_rejects": 0.5, "train": 30.0,
                          "predict_write": 6.25, "total": 42.9}}


def test_the_wall_time_line_says_where_the_time_went():
    history = [{"epoch": 0, "seconds": 10.0}, {"epoch": 1, "seconds": 11.5}]
    assert summary_lines(_manifest(history))[-1] == (
        "wall time: 42.9 s (Ray start 4.0 s, read + validate 2.0 s, scoring 0.1 s, split 0.5 s, "
        "training 30.0 s (21.5 s in epochs), predict + write 6.2 s)")


def test_an_older_manifest_without_epoch_times_still_reads():
    line = summary_lines(_manifest([{"epoch": 0, "train_loss": 1.0}]))[-1]
    assert "training 30.0 s," in line and "in epochs" not in line


def _validated(**metrics):
    manifest = _manifest([])
    manifest["counts"]["trained_on"] = 100_000
    manifest["metrics"].update(validation={"forecast": {"mase": 0.9, "smape": 12.0}}, **metrics)
    manifest["config"] = {"model": {"combine": "fitted"}, "train": {"max_validation_series": 65_536}}
    return summary_lines(manifest)


def test_the_summary_names_the_partner_and_scores_both_its_members():
    manifest = _manifest([])
    manifest["metrics"].update(validation={"forecast": {"mase": 0.9, "smape": 12.0}, "Theta": {"mase": 1.1},
                                           "DampedTrend": {"mase": 1.05}, "Naive": {"mase": 1.4}},
                               combine_weight=0.6)
    manifest["config"] = {"model": {"combine": "fitted", "statistical": "theta_damped"}}
    lines = summary_lines(manifest)
    assert "forecast = 0.6 x LSTM + 0.4 x Theta+DampedTrend (model.combine=fitted, chosen on validation)" in lines
    # both members of the partner on the validation line (Naive is the report's, not the console's)
    assert any(line.startswith("validation MASE") and "forecast 0.900, Theta 1.100, DampedTrend 1.050;" in line
               for line in lines)


def test_the_summary_says_which_partner_model_statistical_auto_chose_and_on_what():
    manifest = _manifest([])
    manifest["metrics"].update(validation={"forecast": {"mase": 0.9, "smape": 12.0}, "Theta": {"mase": 1.1},
                                           "DampedTrend": {"mase": 1.05}, "SES": {"mase": 1.02}},
                               combine_weight=0.6, statistical={
                                   "configured": "auto", "chosen": "theta_ses", "windows": 3, "series": 617,
                                   "pairs": 1618, "mase": {"theta_damped": 1.782, "theta_ses": 1.741}})
    manifest["config"] = {"model": {"combine": "fitted", "statistical": "auto"}}
    lines = summary_lines(manifest)
    assert ("statistical partner: Theta+SES (model.statistical=auto; mean MASE over the last 3 horizons of 617 "
            "series: Theta+DampedTrend 1.782, Theta+SES 1.741)") in lines
    assert "forecast = 0.6 x LSTM + 0.4 x Theta+SES (model.combine=fitted, chosen on validation)" in lines
    assert any(line.startswith("validation MASE") and "DampedTrend 1.050, SES 1.020;" in line for line in lines)
    # a configured partner: no line about a choice
    manifest["metrics"]["statistical"] = {"configured": "theta_damped", "chosen": "theta_damped"}
    manifest["config"]["model"]["statistical"] = "theta_damped"
    assert not any(line.startswith("statistical partner") for line in summary_lines(manifest))


def test_the_summary_says_which_weight_and_how_many_series_validation_used():
    lines = _validated(combine_weight=0.7, val_series=65_536)
    assert "validation MASE (last horizon of 65536 of the 100000 series (train.max_validation_series))" in lines[1]
    # a manifest from before model.statistical: its partner was Theta
    assert lines[2] == "forecast = 0.7 x LSTM + 0.3 x Theta (model.combine=fitted, chosen on validation)"
    # under the cap: a series or two that Ray Data's equal shards leave out is no subset of the cap's
    manifest = _manifest([])
    manifest["counts"]["trained_on"] = 617
    manifest["metrics"].update(validation={"forecast": {"mase": 0.9, "smape": 12.0}}, val_series=616)
    manifest["config"] = {"train": {"max_validation_series": 65_536}}
    assert "(last horizon of each series)" in summary_lines(manifest)[1]


def test_the_interval_line_names_the_steps_drawn_from_realised_errors():
    """One step ("step 1", a nightly run a month into monthly data), a run of steps, and steps apart."""
    def line(quantiles, errors, origins=("1999-10-25",)):
        record = {"calibration": "realised", "realised": {"quantiles": [quantiles], "errors": errors,
                                                          "origins": list(origins)}}
        return interval_line(record)

    assert line([1.0, None, None], [617, 0, 0]) == (
        "intervals: step 1 of the network's series calibrated on 617 realised errors per step of the forecasts "
        "of 1 earlier date (1999-10-25); the other steps on the validation window")
    assert line([1.0, 1.5, None], [1234, 617, 0], ("1999-11-25", "1999-10-25")).startswith(
        "intervals: steps 1-2 of the network's series calibrated on 617-1234 realised errors per step of the "
        "forecasts of 2 earlier dates (1999-11-25, 1999-10-25);")
    assert line([1.0, None, 2.0], [40, 0, 40]).startswith("intervals: steps 1, 3 of")
    assert line([1.0, 1.5], [40, 40]).endswith("(1999-10-25)")  # every step realised: nothing left to validation
