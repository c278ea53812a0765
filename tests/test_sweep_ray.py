"""`--sweep --engine ray` (local Ray, 2 CPUs) gives the same rows as the in-process run, failures included."""
from __future__ import annotations

import pandas as pd
import pytest

pytest.importorskip("backtrader")
ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'gptquant[ray]'")

from gptquant.backtest.sweep import run_sweep  # noqa: E402
from conftest import check_sweep_results  # noqa: E402


pytestmark = pytest.mark.usefixtures("local_ray")


def test_ray_sweep_matches_the_local_run(sweep_project, tmp_path):
    on_ray = run_sweep(sweep_project / "sweep.toml", tmp_path / "ray", engine="ray", workers=2, progress=False)
    check_sweep_results(on_ray, tmp_path / "ray")
    local = run_sweep(sweep_project / "sweep.toml", tmp_path / "local", workers=1, progress=False)
    pd.testing.assert_frame_equal(on_ray.drop(columns="seconds"), local.drop(columns="seconds"), check_dtype=False)


def test_ray_sweep_refuses_workers_of_another_gptquant_version(sweep_project, tmp_path, monkeypatch):
    import gptquant.version
    from gptquant.errors import GptquantError

    real = gptquant.version.__version__
    monkeypatch.setattr(gptquant.version, "__version__", "9.9.9")
    with pytest.raises(GptquantError, match=f"^this Ray worker runs gptquant {real}, the driver 9.9.9: "):
        run_sweep(sweep_project / "sweep.toml", tmp_path / "ray", engine="ray", workers=2, progress=False)
    assert not (tmp_path / "ray" / "sweep_results.parquet").exists()


def test_ray_sweep_inputs_the_driver_cannot_read_are_one_error_before_any_task(sweep_project, tmp_path):
    """The driver reads the data it ships: a missing bars file stops the sweep at once, naming the file,
    instead of every task failing on a worker."""
    import shutil

    from gptquant.errors import GptquantError

    project = tmp_path / "project"
    shutil.copytree(sweep_project, project)
    (project / "bars.csv").unlink()
    with pytest.raises(GptquantError, match=r"^cannot load the sweep's inputs on the driver: bars: .*bars\.csv does not exist"):
        run_sweep(project / "sweep.toml", tmp_path / "ray", engine="ray", workers=2, progress=False)
    assert not list((tmp_path / "ray").glob("task-*.json"))
