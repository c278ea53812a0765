"""gptquant.config: the one TOML reader of nightly, backtest and sweep configs."""
from pathlib import Path

import pytest

from gptquant.config import ANY, load_toml, resolve_path
from gptquant.errors import GptquantError

SCHEMA = {"title": ANY, "data": {"bars", "start"}, "run": [{"name", "params"}], "free": ANY}


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_unknown_keys_are_named_with_their_dotted_path(tmp_path):
    p = write(tmp_path, '[data]\nbars = "b.csv"\nbras = 1\n[[run]]\nname = "a"\n[[run]]\nname = "b"\nparms = 2\n'
                        'extra = 3\n')
    with pytest.raises(GptquantError, match=r"unknown config key\(s\): .*data\.bras, run\[1\]\.parms"):
        load_toml(p, SCHEMA)


def test_free_tables_and_required_keys(tmp_path):
    p = write(tmp_path, '[free]\nanything = {x = 1}\n[data]\nstart = "2024-01-01"\n')
    with pytest.raises(GptquantError, match="missing data.bars"):
        load_toml(p, SCHEMA, required=("data.bars",))
    config, digest = load_toml(p, SCHEMA, required=("data.start",))
    assert config["free"] == {"anything": {"x": 1}} and len(digest) == 16


def test_a_table_written_as_a_value_or_a_table_array_written_as_a_table_is_refused(tmp_path):
    with pytest.raises(GptquantError, match=r"write run as \[\[run\]\] tables"):
        load_toml(write(tmp_path, '[run]\nname = "a"\n'), SCHEMA)
    with pytest.raises(GptquantError, match=r"data must be a table"):
        load_toml(write(tmp_path, 'data = 3\n'), SCHEMA)


def test_environment_variables_with_defaults(tmp_path, monkeypatch):
    p = write(tmp_path, '[data]\nbars = "${GQ_CFG_ROOT:-/srv}/bars.csv"\nstart = "${GQ_CFG_START}"\n')
    with pytest.raises(GptquantError, match="data.start: environment variable GQ_CFG_START is not set"):
        load_toml(p, SCHEMA)
    monkeypatch.setenv("GQ_CFG_START", "2024-02-01")
    config, _ = load_toml(p, SCHEMA)
    assert config["data"] == {"bars": "/srv/bars.csv", "start": "2024-02-01"}
    monkeypatch.setenv("GQ_CFG_ROOT", "/data")
    assert load_toml(p, SCHEMA)[0]["data"]["bars"] == "/data/bars.csv"


def test_overrides_change_the_digest_and_are_checked(tmp_path):
    p = write(tmp_path, '[data]\nbars = "b.csv"\n')
    _, d0 = load_toml(p, SCHEMA)
    config, d1 = load_toml(p, SCHEMA, overrides={"data": {"start": "2024-01-01"}})
    assert config["data"] == {"bars": "b.csv", "start": "2024-01-01"} and d0 != d1
    with pytest.raises(GptquantError, match="data.nope"):
        load_toml(p, SCHEMA, overrides={"data": {"nope": 1}})


def test_paths_are_relative_to_the_base_folder(tmp_path):
    assert resolve_path(tmp_path, "x/y.csv") == tmp_path / "x" / "y.csv"
    assert resolve_path(tmp_path, "/abs/y.csv") == Path("/abs/y.csv")
    assert resolve_path(tmp_path, "~/y.csv") == Path.home() / "y.csv"


def test_leaf_types_are_checked_at_load_with_the_dotted_key(tmp_path, monkeypatch):
    typed = {"data": {"bars": str | list[str], "start": ANY, "lots": int}, "run": [{"name": str, "weight": float}]}
    p = write(tmp_path, '[data]\nbars = ["a.csv", "b.csv"]\nlots = "${GQ_CFG_LOTS:-3}"\n'
                        '[[run]]\nname = "a"\nweight = 1\n[[run]]\nname = "b"\nweight = 0.5\n')
    config, _ = load_toml(p, typed)
    assert config == {"data": {"bars": ["a.csv", "b.csv"], "lots": 3},  # ${VAR} read as the int the key needs
                      "run": [{"name": "a", "weight": 1.0}, {"name": "b", "weight": 0.5}]}
    monkeypatch.setenv("GQ_CFG_LOTS", "three")
    with pytest.raises(GptquantError, match=r"c\.toml: data\.lots: expected int, got str"):
        load_toml(p, typed)
    monkeypatch.delenv("GQ_CFG_LOTS")
    for bad, message in (('[[run]]\nname = "a"\n[[run]]\nname = 2\n', r"run\[1\]\.name: expected str, got int"),
                         ('[data]\nlots = true\n', r"data\.lots: expected int, got bool"),
                         ('[data]\nbars = ["a.csv", 3]\n', r"data\.bars\[1\]: expected str, got int")):
        with pytest.raises(GptquantError, match=message):
            load_toml(write(tmp_path, bad), typed)
