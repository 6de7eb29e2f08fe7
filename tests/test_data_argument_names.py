"""One spelling of the time-binning arguments across the data package: ``time_window_ms`` (bin width),
``n_time_bins`` (number of bins) and ``max_duration_ms`` (crop), read from the signatures; earlier
spellings (``dt_ms``, ``max_duration`` in seconds) fail, in Python and in a config, naming the new one."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml

import exodus_lightning.data as data
from exodus_lightning.data.binning import EventBinner

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ("time_window_ms", "n_time_bins", "max_duration_ms")
# words that make a parameter one about the width, number or span of time bins (a count of steps,
# e.g. n_time_steps or jitter_steps, is not: only a step given as a physical time is)
TIME_BINNING_WORDS = {"dt", "window", "bin", "bins", "duration", "crop", "frame"}
OTHER_TIME_UNITS = ("_s", "_sec", "_seconds", "_us", "_ns")


def _is_time_binning(name: str) -> bool:
    words = set(name.split("_"))
    physical_step = bool(words & {"step", "steps", "length"}) and name.endswith(("_ms", *OTHER_TIME_UNITS))
    return bool(words & TIME_BINNING_WORDS) or physical_step or name in {"t_max", "tmax"}


def _public_callables():
    """Every class and function exported by exodus_lightning.data, with the parameters of its signature."""
    for name in data.__all__:
        obj = getattr(data, name)
        if (inspect.isclass(obj) and not issubclass(obj, BaseException)) or inspect.isfunction(obj):
            yield name, obj, list(inspect.signature(obj).parameters)
    from exodus_lightning.data.poisson_fit import make_poisson_fit_task

    yield "make_poisson_fit_task", make_poisson_fit_task, list(inspect.signature(make_poisson_fit_task).parameters)


def test_every_time_binning_parameter_has_one_of_the_three_names():
    datamodules = set()
    for name, obj, params in _public_callables():
        if inspect.isclass(obj) and issubclass(obj, pl.LightningDataModule):
            datamodules.add(name)
        if obj is EventBinner:
            # the binner's fields are in the events' unit (µs); the same words with _us, nothing else
            assert [p for p in params if _is_time_binning(p)] == ["time_window_us", "n_time_bins", "max_duration_us"]
            continue
        wrong = [p for p in params if _is_time_binning(p) and p not in PUBLIC]
        assert not wrong, f"{name} spells a time-binning argument {wrong}; use one of {PUBLIC}"
        other_units = [p for p in params if p.endswith(OTHER_TIME_UNITS)]
        assert not other_units, f"{name} takes a time in a unit other than ms: {other_units}"
    # the check saw every DataModule (a broken discovery would make it pass vacuously)
    assert {"SHDDataModule", "SSCDataModule", "DVSGestureDataModule", "NMNISTDataModule", "CIFAR10DVSDataModule",
            "SpikePatternsDataModule", "PoissonSpikeFitDataModule"} <= datamodules


@pytest.mark.parametrize(
    "name, expected",
    [
        ("SHDDataModule", {"time_window_ms", "n_time_bins", "max_duration_ms"}),
        ("SSCDataModule", {"time_window_ms", "n_time_bins", "max_duration_ms"}),
        ("NMNISTDataModule", {"time_window_ms", "n_time_bins", "max_duration_ms"}),
        ("DVSGestureDataModule", {"time_window_ms", "max_duration_ms"}),
        ("CIFAR10DVSDataModule", {"n_time_bins", "max_duration_ms"}),
        ("PoissonSpikeFitDataModule", {"time_window_ms"}),
    ],
)
def test_each_event_datamodule_takes_the_names_it_bins_by(name, expected):
    params = set(inspect.signature(getattr(data, name)).parameters)
    assert params & set(PUBLIC) == expected


def test_shd_defaults_bin_as_before_the_rename(tmp_path):
    """SHD/SSC's crop was 1.4 s (max_duration=1.4) and is 1400 ms: the same binner, in µs."""
    for cls in (data.SHDDataModule, data.SSCDataModule):
        dm = cls(str(tmp_path))
        assert dm._binner() == EventBinner(sensor_size=(700, 1, 1), target_size=(700, 1), time_window_us=10_000.0,
                                           max_duration_us=1_400_000.0)
        assert dm.n_time_steps == 140


@pytest.mark.parametrize("name", ["SHDDataModule", "SSCDataModule", "NMNISTDataModule"])
def test_time_window_and_n_time_bins_are_exclusive(name, tmp_path):
    with pytest.raises(ValueError, match="exactly one of time_window_ms .* or n_time_bins"):
        getattr(data, name)(str(tmp_path), time_window_ms=2.0, n_time_bins=10)


@pytest.mark.parametrize("old", [dict(dt_ms=10.0), dict(max_duration=1.0)])
def test_old_names_in_python_are_rejected(old, tmp_path):
    with pytest.raises(TypeError, match=next(iter(old))):
        data.SHDDataModule(str(tmp_path), **old)
    with pytest.raises(TypeError, match="dt_ms"):
        data.PoissonSpikeFitDataModule(dt_ms=1.0)


@pytest.mark.parametrize(
    "config, old, value, new",
    [("shd.yaml", "dt_ms", 10.0, "time_window_ms"), ("sparse_shd.yaml", "max_duration", 1.0, "max_duration_ms"),
     ("poisson_fit.yaml", "dt_ms", 1.0, "time_window_ms")],
)
def test_a_config_with_an_old_name_fails_naming_old_and_new(config, old, value, new, tmp_path, capsys):
    from exodus_lightning.lightning_cli import ExodusCLI

    spec = yaml.safe_load((ROOT / "configs" / config).read_text())
    spec["data"].setdefault("init_args", {})[old] = value
    path = tmp_path / "old_names.yaml"
    path.write_text(yaml.safe_dump(spec))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(SystemExit) as exit_info:
            ExodusCLI(args=["-c", str(path), "--trainer.logger", "false"], run=False)
    finally:
        os.chdir(cwd)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"Option '{old}' is not accepted" in err
    assert f"'{old}' was renamed: use {new}" in err
    assert err.count("was renamed") == 1, err
