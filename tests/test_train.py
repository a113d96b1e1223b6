"""Training loop properties that do not fit the resume or distributed suites."""

from __future__ import annotations

from safetensors.torch import load_file
from test_resume import rnnlab, train_args, write_data

from rnnlab import runs


def test_data_loader_workers_do_not_change_the_result(tmp_path):
    """--workers only moves batch preparation into other processes: the trained weights are identical."""
    data, glove = write_data(tmp_path)
    for workers in (0, 2):
        done = rnnlab([*train_args(data, glove, tmp_path / f"w{workers}"), "--workers", str(workers)])
        assert done.returncode == 0, done.stderr
    inline, workers = load_file(tmp_path / "w0" / runs.WEIGHTS), load_file(tmp_path / "w2" / runs.WEIGHTS)
    assert inline.keys() == workers.keys()
    assert all((inline[k] == workers[k]).all() for k in inline)
