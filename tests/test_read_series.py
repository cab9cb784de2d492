"""forecaster.read.read_series through a real local Ray: one block per input file, split series merged."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from forecaster.config import load_config
from forecaster.read import _has_split_series, read_series
from forecaster.synthetic import seasonal_series

pytestmark = pytest.mark.ray


def _cfg(data):
    return load_config(None, [f"data.uri={data}", "data.freq=MS"])


def test_one_block_per_file_each_holding_whole_series(ray_session, tmp_path):
    # Ray Data's default Parquet reader packs small files into one read task (one block): reading and
    # grouping then ran on one core and one predictor actor got all the series.
    for i in range(3):
        pq.write_table(seasonal_series(7, 30, seed=i, id_prefix=f"f{i}-"), tmp_path / f"part-{i}.parquet")
    series = read_series(_cfg(tmp_path))
    assert series.num_blocks() == 3
    blocks = ray.get(series.to_arrow_refs())
    assert sorted(b.num_rows for b in blocks) == [7, 7, 7]
    assert all(len(set(b["unique_id"].to_pylist())) == b.num_rows for b in blocks)
    assert all(n == 30 for b in blocks for n in b["y"].combine_chunks().value_lengths().to_pylist())


def test_a_series_split_across_files_comes_out_whole_and_sorted(ray_session, tmp_path):
    table = seasonal_series(3, 24, seed=5)
    late = pa.compute.greater_equal(table["ds"], table["ds"][12])
    first = table["unique_id"][0].as_py()
    moved = pa.compute.and_(late, pa.compute.equal(table["unique_id"], first))
    pq.write_table(table.filter(pa.compute.invert(moved)), tmp_path / "a.parquet")
    pq.write_table(table.filter(moved), tmp_path / "b.parquet")
    rows = pa.concat_tables(ray.get(read_series(_cfg(tmp_path)).to_arrow_refs())).to_pylist()
    assert sorted(r["unique_id"] for r in rows) == sorted(set(table["unique_id"].to_pylist()))
    whole = next(r for r in rows if r["unique_id"] == first)
    assert len(whole["ds"]) == 24 and whole["ds"] == sorted(whole["ds"])


@pytest.mark.parametrize(("blocks", "split"), [
    ([["a", "b"], ["c"]], False),
    ([["a", "b"], ["b"]], True),
    ([["a", None], ["c"]], False),
    ([["a", None], [None]], True),  # null ids form one group per block: merged like any other id
])
def test_has_split_series(ray_session, blocks, split):
    tables = [pa.table({"unique_id": pa.array(ids, pa.string())}) for ids in blocks]
    assert _has_split_series(ray.data.from_arrow(tables).materialize()) is split
