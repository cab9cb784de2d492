"""The HTML report (report.py, report_backtest.py): built from stored fixture runs, no Ray.

The fixtures are made by hand with pyarrow (forecaster.synthetic.stored_run, `_stored_backtest`). One
test opens the page in a real headless Chromium (Debian's `chromium`; `make test` installs it) and
skips, saying so, where there is none.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html import unescape
from html.parser import HTMLParser

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forecaster.cli import main
from forecaster.config import load_config
from forecaster.report import MAX_ORIGINS, MAX_PLOTS, MAX_ROWS, report_location, sample_ids, write_report
from forecaster.report_backtest import backtest_report_location, build_backtest_report
from forecaster.storage import resolve
from forecaster.synthetic import stored_run

DATE = "2026-01-01"
SECTIONS = ("The run in numbers", "Training", "Validation", "Forecasts: a sample of series",
            "Forecasts: where the network did worst against seasonal naive", "Scores of earlier forecasts",
            "Rejects", "Details")


def _report(out, **settings) -> str:
    cfg = load_config(None, [f"output.uri={out}", f"run.date={DATE}", *(f"{k}={v}" for k, v in settings.items())])
    loc = write_report(cfg)
    with open(loc.path, encoding="utf-8") as fh:
        return fh.read()


def _captions(html: str, section: str) -> list[str]:
    """The plotted ids of a section, in page order."""
    part = html.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
    return re.findall(r'<span class="id">([^<]*)</span>', part)


class _Tags(HTMLParser):
    """Every tag with its attributes, and the text of <style> elements."""

    def __init__(self):
        super().__init__()
        self.tags, self.styles, self._in_style = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def assert_self_contained(html: str) -> None:
    """Nothing fetched: no <link>, <script>, <iframe>, <object>, <embed>; every src/href is an anchor in the
    page (#...) or inline data; no url() or @import in any style."""
    parsed = _Tags()
    parsed.feed(html)
    names = {tag for tag, _ in parsed.tags}
    assert not names & {"link", "script", "iframe", "object", "embed", "base"}
    for tag, attrs in parsed.tags:
        for name in ("src", "href", "xlink:href", "srcset", "poster", "action", "data"):
            if attrs.get(name) is not None:
                assert attrs[name].startswith(("#", "data:")), (tag, name, attrs[name])
        assert "url(" not in (attrs.get("style") or "")
    styles = "".join(parsed.styles)
    assert "url(" not in styles and "@import" not in styles


def test_report_shows_every_section(tmp_path):
    stored_run(str(tmp_path), n_series=40, n_rejects=7, n_origins=4)
    html = _report(tmp_path)
    for heading in SECTIONS:
        assert f">{heading}</h2>" in html
    assert "not recorded by this run" not in html
    assert len(_captions(html, "sample")) == 6 and len(_captions(html, "worst")) == 6
    assert html.count("<svg") == 1 + 12 + 1  # training curve, 12 series, scores over time
    assert "best epoch 8" in html
    stages = re.findall(r"<tr><td>(ray_init|read_validate|split_rejects|train|predict_write)</td>", html)
    assert stages == ["ray_init", "read_validate", "split_rejects", "train", "predict_write"]  # run order
    assert ">1.100</td>" in html  # validation MASE of the forecast, the lowest: marked best
    assert "80% interval (LSTM)" in html and "95% interval (LSTM)" in html
    assert "</i>DampedTrend</span>" in html  # the partner's other member is drawn, and named in the header
    assert "</i>SES</span>" in html  # every statistical baseline of the forecasts table is drawn
    assert "combine=theta, statistical=theta_damped" in html
    assert "The first 7 of 7 rejected series" in html
    assert html.count("<tr><td>2025-") == 4  # one row per scored origin
    assert_self_contained(html)
    assert os.listdir(tmp_path / "reports") == [f"forecast_date={DATE}.html"]  # no temporary file left


def test_sample_is_reproducible():
    ids = [f"id-{i}" for i in range(1000)]
    first = sample_ids(ids, 6)
    assert sample_ids(list(reversed(ids)), 6) == first  # order and file layout do not matter
    assert sample_ids(ids + ids[:10], 6) == first
    assert len(set(first)) == 6 and first != ids[:6]
    assert sample_ids(ids, 3) == first[:3]


def test_report_names_the_partner_model_statistical_auto_chose(tmp_path):
    stored_run(str(tmp_path), n_series=10, n_rejects=0, n_origins=1)
    path = tmp_path / "manifests" / f"forecast_date={DATE}.json"
    manifest = json.loads(path.read_text())
    manifest["config"]["model"]["statistical"] = "auto"
    manifest["metrics"]["statistical"] = {"configured": "auto", "chosen": "theta_ses", "windows": 3, "series": 617,
                                          "pairs": 1618, "mase": {"theta_damped": 1.783, "theta_ses": 1.742}}
    path.write_text(json.dumps(manifest))
    html = _report(tmp_path)
    assert "combine=theta, statistical=auto (chose theta_ses)" in html
    assert ("Statistical partner: Theta+SES (model.statistical=auto; mean MASE over the last 3 horizons of 617 "
            "series: Theta+DampedTrend 1.783, Theta+SES 1.742).") in html


def test_report_says_what_the_intervals_were_calibrated_on(tmp_path):
    stored_run(str(tmp_path), n_series=10, n_rejects=0, n_origins=1)
    path = tmp_path / "manifests" / f"forecast_date={DATE}.json"
    manifest = json.loads(path.read_text())
    manifest["intervals"] = {"calibration": "realised", "realised": {
        "unit": "spread", "levels": [80, 95], "quantiles": [[0.5, 0.7, None], [0.9, 1.3, None]],
        "errors": [40, 25, 12], "origins": ["2025-12-01"]}}
    path.write_text(json.dumps(manifest))
    assert ("Intervals: steps 1-2 of the network's series calibrated on 25-40 realised errors per step of the "
            "forecasts of 1 earlier date (2025-12-01); the other steps on the validation window.") in unescape(
        _report(tmp_path))
    manifest["intervals"]["realised"] = None
    path.write_text(json.dumps(manifest))
    assert ("Intervals: calibrated on the validation window; too few realised errors of earlier forecasts under "
            "output.uri yet (model.interval_calibration=realised).") in _report(tmp_path)


def test_older_manifest_gives_a_report(tmp_path):
    """No metrics.history/.validation, no scores, no report_series: each section says what is missing."""
    stored_run(str(tmp_path), n_series=30, n_rejects=2, newer_keys=False)
    html = _report(tmp_path)
    for heading in SECTIONS:
        assert f">{heading}</h2>" in html
    assert "Training curve: not recorded by this run" in html
    assert "Scores of earlier forecasts: not recorded by this run" in html
    assert "History and the worst series: not recorded by this run" in html
    assert "older keys metrics.val_mase_*" in html
    assert ">1.240</td>" in html  # the LSTM's validation MASE from val_mase_lstm
    sample = _captions(html, "sample")
    assert sample == sample_ids([f"s{i:02d}" for i in range(30)], 6)  # sampled from the forecasts partition
    assert _captions(_report(tmp_path), "sample") == sample  # the same ids on a rebuild
    assert html.count("history not recorded") == 6


def test_a_run_that_reused_a_model_says_which(tmp_path):
    """train.warm_epochs=0: no training of its own, the model of an earlier checkpoint."""
    stored_run(str(tmp_path), n_series=10, n_rejects=1)
    path = tmp_path / "manifests" / f"forecast_date={DATE}.json"
    manifest = json.loads(path.read_text())
    earlier = "s3://bucket/out/checkpoints/forecaster-2025-12-29/checkpoint_2025-12-29_01-02-03.000000"
    manifest["metrics"] = {"warm_started": True, "epochs": 0, "reused_checkpoint": earlier}
    path.write_text(json.dumps(manifest))
    html = _report(tmp_path)
    assert f"it forecast with the model of {earlier} as it is (train.warm_epochs=0)" in html
    assert "Training curve: not recorded" not in html


def test_report_survives_a_bare_manifest(tmp_path):
    """A manifest with none of the keys the report reads, and no partitions: a page that says so."""
    os.makedirs(tmp_path / "manifests")
    (tmp_path / "manifests" / f"forecast_date={DATE}.json").write_text("{}")
    html = _report(tmp_path)
    assert "Training: not recorded by this run" in html
    assert "no forecasts partition to read" in html and "no rejects partition to read" in html
    assert "Validation metrics: not recorded by this run" in html


@pytest.mark.slow
def test_size_is_bounded(tmp_path):
    """Many series, rejects, origins and plotted series asked for: the page stays small."""
    stored_run(str(tmp_path), n_series=60_000, n_rejects=20_000, n_origins=300, horizon=24, history=400,
               plotted=100)
    html = _report(tmp_path, **{"report.sample_series": 1000, "report.worst_series": 1000})
    assert len(html.encode()) < 4_000_000
    assert len(_captions(html, "sample")) == MAX_PLOTS and len(_captions(html, "worst")) == MAX_PLOTS
    rejects = html.split('<section id="rejects">', 1)[1].split("</section>", 1)[0]
    assert rejects.count("<tr><td") == MAX_ROWS
    assert f"The first {MAX_ROWS} of 20,000 rejected series" in rejects
    origins = html.split('<section id="scores">', 1)[1].split("</section>", 1)[0]
    assert origins.count("<tr><td") == MAX_ROWS
    assert f"The newest {MAX_ROWS} of {MAX_ORIGINS} origins" in origins


def test_user_strings_are_escaped(tmp_path):
    stored_run(str(tmp_path), n_series=10, n_rejects=1)
    manifest_path = tmp_path / "manifests" / f"forecast_date={DATE}.json"
    manifest = json.loads(manifest_path.read_text())
    evil = '<script>alert("x")</script> $\\frac{a}{b}$'
    manifest["report_series"][0]["unique_id"] = evil
    manifest["counts"]["reject_reasons"] = {"<img src=http://x/y.png>": 1}
    manifest_path.write_text(json.dumps(manifest))
    table = pq.read_table(tmp_path / "forecasts" / f"forecast_date={DATE}" / "part-0.parquet")
    ids = table["unique_id"].to_pylist()
    ids = [evil if i == ids[0] else i for i in ids]  # the first sampled row's id, also in the forecasts
    pq.write_table(table.set_column(0, "unique_id", pa.array(ids)),
                   tmp_path / "forecasts" / f"forecast_date={DATE}" / "part-0.parquet")
    html = _report(tmp_path)
    assert "<script>" not in html and "<img src" not in html
    assert "&lt;script&gt;alert" in html and "&lt;img src=http://x/y.png&gt;" in html
    assert_self_contained(html)


@pytest.mark.slow
def test_cli_report_needs_no_ray_torch_or_model(tmp_path):
    """`forecaster report` in a fresh interpreter: rebuilt from storage, Ray never started, torch and Ray
    Train never imported (so it takes seconds)."""
    stored_run(str(tmp_path), n_series=200, n_rejects=3)
    code = ("import sys, ray; from forecaster.cli import main; "
            f"rc = main(['report', '--set', 'output.uri={tmp_path}', '--set', 'run.date={DATE}']); "
            "print('RESULT', rc, ray.is_initialized(), 'torch' in sys.modules, 'ray.train' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "RESULT 0 False False False" in done.stdout
    assert f"report: {tmp_path}/reports/forecast_date={DATE}.html (built in" in done.stdout
    assert (tmp_path / "reports" / f"forecast_date={DATE}.html").stat().st_size > 10_000


def test_cli_report_without_a_run_names_the_manifest(tmp_path, capsys):
    args = ["report", "--set", f"output.uri={tmp_path}", "--set", f"run.date={DATE}"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"no manifest for run.date={DATE}" in err and f"manifests/forecast_date={DATE}.json" in err
    os.makedirs(tmp_path / "manifests")
    for body, expected in (("{not json", "not a JSON document"), ("[1, 2]", "expected a JSON object")):
        (tmp_path / "manifests" / f"forecast_date={DATE}.json").write_text(body)
        assert main(args) == 2
        err = capsys.readouterr().err
        assert expected in err and f"manifests/forecast_date={DATE}.json" in err


@pytest.mark.slow
def test_report_on_s3_reads_and_writes_through_storage(tmp_path, s3_server):
    """The fixture run uploaded to a local S3: the report is read from there and written back in one PUT,
    served as text/html (so a browser opens it from the bucket)."""
    stored_run(str(tmp_path), n_series=20, n_rejects=2)
    bucket, client = s3_server.bucket(), s3_server.client()
    for folder, _, files in os.walk(tmp_path):
        for name in files:
            path = os.path.join(folder, name)
            client.upload_file(path, bucket, f"out/{os.path.relpath(path, tmp_path)}")
    loc = write_report(load_config(None, [f"output.uri=s3://{bucket}/out", f"run.date={DATE}"]))
    assert loc.uri == f"s3://{bucket}/out/reports/forecast_date={DATE}.html"
    head = client.head_object(Bucket=bucket, Key=f"out/reports/forecast_date={DATE}.html")
    assert head["ContentType"].startswith("text/html")
    assert [k for k in s3_server.keys(bucket, "out/reports/")] == [f"out/reports/forecast_date={DATE}.html"]
    body = client.get_object(Bucket=bucket, Key=f"out/reports/forecast_date={DATE}.html")["Body"].read().decode()
    assert len(_captions(body, "sample")) == 6


# ---- the backtest's report ------------------------------------------------------------------------

MODELS = ("LSTM", "forecast", "no_fallback", "Naive", "SeasonalNaive", "Theta")


def _stored_backtest(out, windows: int = 2, n_series: int = 30) -> None:
    """What `forecaster backtest` commits in backtests/forecast_date=DATE/, made up."""
    final = os.path.join(out, "backtests", f"forecast_date={DATE}")
    os.makedirs(final)
    metrics = ("mase", "smape", "mae", "coverage_80")
    rows = [{"unique_id": f"s{i}", "window": w, "cutoff": None, "metric": m, "model": "LSTM+Theta",
             **{model: 1.0 + 0.01 * i + 0.1 * j for j, model in enumerate(MODELS)}}
            for w in range(windows) for i in range(n_series) for m in metrics]
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(final, "series.parquet"))
    pq.write_table(pa.table({"unique_id": ["short-1"], "window": [0], "reason": ["no_history"],
                             "detail": ["3 point(s), 12 hidden"]}), os.path.join(final, "skipped.parquet"))
    means = {m: {"series": n_series, **{model: 1.0 + 0.1 * j for j, model in enumerate(MODELS)}} for m in metrics}
    per_window = [{"window": w, "hidden": 6 * (windows - w), "cutoffs": ["2024-06-01T00:00:00"] * 2,
                   "counts": {"input": n_series, "forecast": n_series, "rejected": 0, "reject_reasons": {},
                              "series": n_series + 1, "no_history": int(w == 0), "non_finite_actual": 0,
                              "scored": n_series, "lstm_scored": n_series, "by_model": {"LSTM+Theta": n_series}},
                   "training": {"epochs": 3, "best_val_loss": 0.5, "best_epoch": 2,
                                "statistical": {"configured": "auto", "chosen": ("theta_ses", "theta_damped")[w % 2]},
                                "history": [{"epoch": e, "train_loss": 1 - 0.1 * e, "val_loss": 1.1 - 0.1 * e}
                                            for e in range(3)]},
                   "checkpoint_uri": None, "metrics": means,
                   "intervals": {"calibration": "realised", "realised": None if w == 0 else {
                       "unit": "spread", "levels": [80], "quantiles": [[0.8] * 3 + [None] * 3],
                       "errors": [30] * 3 + [0] * 3, "origins": ["window 0"]}}} for w in range(windows)]
    summary = {"windows": windows, "step": 6, "horizon": 6, "season": 12, "per_window": per_window,
               "overall": means, "output": final, "versions": {"forecaster": "0.1.0"},
               "config": {"data": {"uri": "x.parquet", "freq": "MS"}, "model": {"horizon": 6, "statistical": "auto"}},
               "timings_s": {"read": 1.0, "window_0": 30.0, "window_1": 31.0, "total": 62.0}}
    with open(os.path.join(final, "summary.json"), "w") as fh:
        json.dump(summary, fh)


def test_backtest_report(tmp_path, capsys):
    _stored_backtest(str(tmp_path))
    html = build_backtest_report(resolve(str(tmp_path)), DATE)
    for heading in ("The backtest in numbers", "Metrics over all windows", "Windows", "Training per window",
                    "Skipped series"):
        assert f">{heading}</h2>" in html
    assert html.count("<svg") == 2 + 2  # MASE per window, distribution, 2 training curves
    assert "short-1" in html and "no_history" in html
    assert ">1.1000</td>" in html  # MASE of `forecast` over all windows: the lowest is LSTM (1.0)
    # each window's statistical partner (model.statistical=auto chooses per window)
    assert "<td>Theta+SES</td>" in html and "<td>Theta+DampedTrend</td>" in html
    assert "(chose " not in html  # no one choice for the whole backtest to name in the header
    # what each window's intervals were calibrated on: window 1 on window 0's errors at the steps it saw
    assert "<td>validation window</td>" in html and "<td>on the errors of window 0 at steps 1-3</td>" in html
    assert_self_contained(html)
    assert main(["report", "--backtest", "--set", f"output.uri={tmp_path}", "--set", f"run.date={DATE}"]) == 0
    loc = backtest_report_location(resolve(str(tmp_path)), DATE)
    assert loc.path == f"{tmp_path}/reports/backtests/forecast_date={DATE}.html" and os.path.exists(loc.path)
    assert loc.path in capsys.readouterr().out


# ---- in a real browser ----------------------------------------------------------------------------

def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium on PATH: the report was not opened in a browser (make test installs Debian's "
                "chromium; by hand: apt-get install -y chromium)")


def _browser(chromium: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_report_renders_in_a_browser(tmp_path):
    chromium = _chromium()
    stored_run(str(tmp_path), n_series=40, n_rejects=5)
    _report(tmp_path)
    page = report_location(resolve(str(tmp_path)), DATE).path
    png = tmp_path / "report.png"
    shot = _browser(chromium, f"--screenshot={png}", "--window-size=1280,2400", f"file://{page}")
    assert png.exists(), shot.stderr[-2000:]
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (1280, 2400)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    colours.sort(reverse=True)
    assert len(colours) > 50  # text, plots, bars: not a blank or single-colour page
    assert colours[0][0] < 0.9 * 1280 * 2400  # no colour fills the page
    dom = _browser(chromium, "--dump-dom", f"file://{page}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for heading in SECTIONS:
        assert f">{heading}</h2>" in dom.stdout
    assert dom.stdout.count("<svg") == 14
    assert_self_contained(dom.stdout)


def test_scores_over_time_without_a_defined_mase_says_so(recwarn):
    """Earlier forecasts whose MASE is undefined everywhere (nothing to draw): a note, not an empty legend."""
    import pandas as pd

    from forecaster import plots

    frame = pd.DataFrame({"origin_date": ["2024-06-01"], "forecast": [float("nan")], "SeasonalNaive": [float("nan")]})
    assert plots.scores_over_time(frame, ["forecast", "SeasonalNaive"]).lstrip().startswith("<")
    assert not [w for w in recwarn if "legend" in str(w.message)]  # matplotlib's "No artists with labels" warning
