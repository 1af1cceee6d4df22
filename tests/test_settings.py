"""Settings: declared once, read from DATASTORE_<FIELD>, every bound named in its error."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from datastore.errors import ConfigError
from datastore.settings import MiB, Settings, env_var


def test_every_field_is_read_from_its_variable():
    env = {}
    for f in dataclasses.fields(Settings):
        kind = f.metadata["kind"]
        env[env_var(f.name)] = ({"path": f"/some/{f.name}", "flag": "1"}.get(kind)
                                or (f.metadata["choices"][-1] if kind == "choice" else None)
                                or f.metadata.get("example") or str(f.metadata["minimum"] + 7 * MiB))
    s = Settings.from_env(env)
    for f in dataclasses.fields(Settings):
        assert str(getattr(s, f.name)) == {"flag": "True"}.get(f.metadata["kind"], env[env_var(f.name)]), f.name


def test_empty_or_missing_variables_mean_the_defaults():
    assert Settings.from_env({"DATASTORE_WORKERS": "  ", "DATASTORE_STORE": ""}) == Settings.from_env({})
    assert Settings.from_env({}).workers == 4


@pytest.mark.parametrize(("var", "raw", "message"), [
    ("DATASTORE_WORKERS", "four", "DATASTORE_WORKERS='four' is not a whole number: "
                                  "set DATASTORE_WORKERS to an integer >= 1"),
    ("DATASTORE_PART_BYTES", "1048576", "DATASTORE_PART_BYTES='1048576' is too small: "
                                        "set DATASTORE_PART_BYTES to an integer >= 5242880"),
    ("DATASTORE_LEASE_TTL", "2", "DATASTORE_LEASE_TTL='2' is too small: set DATASTORE_LEASE_TTL to an integer >= 3"),
    ("DATASTORE_HTTP_ALLOW_PRIVATE", "maybe", "DATASTORE_HTTP_ALLOW_PRIVATE='maybe' is not a boolean: "
                                              "set DATASTORE_HTTP_ALLOW_PRIVATE to 1 or 0"),
    ("DATASTORE_TASK_RUNNER", "spark", "DATASTORE_TASK_RUNNER='spark' is not one of threads, dask: "
                                       "set DATASTORE_TASK_RUNNER to threads or dask"),
    ("DATASTORE_DASK_ADDRESS", "http://10.0.0.5/dask", "DATASTORE_DASK_ADDRESS='http://10.0.0.5/dask' is not a Dask "
                                                       "scheduler address: set DATASTORE_DASK_ADDRESS to one like "
                                                       "tcp://127.0.0.1:8786 (or leave it empty)"),
])
def test_a_bad_variable_is_named_with_its_bound(var, raw, message):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({var: raw})
    assert str(info.value) == message
    assert info.value.setting == var


def test_zero_is_allowed_where_the_bound_is_zero():
    s = Settings.from_env({"DATASTORE_MAX_VERSIONS": "0", "DATASTORE_GC_GRACE": "0"})
    assert (s.max_versions, s.gc_grace) == (0, 0)


@pytest.mark.parametrize("raw", ["1", "true", "YES", "on"])
def test_flags(raw):
    assert Settings.from_env({"DATASTORE_HTTP_ALLOW_PRIVATE": raw}).http_allow_private is True
    assert Settings.from_env({"DATASTORE_HTTP_ALLOW_PRIVATE": "0"}).http_allow_private is False


def test_a_caller_gets_the_same_bounds():
    with pytest.raises(ConfigError, match=r"^batch_files=0 must be an integer >= 1: pass batch_files >= 1$"):
        Settings(batch_files=0)
    with pytest.raises(ConfigError, match="part_bytes"):
        Settings().replace(part_bytes=1)


def test_replace_and_pickle_keep_the_value():
    s = Settings(workers=7).replace(store="s3://bucket/prefix")
    assert (s.workers, s.store) == (7, "s3://bucket/prefix")
    assert pickle.loads(pickle.dumps(s)) == s  # task parameters cross process boundaries


@pytest.mark.parametrize(("env", "on_dask"), [
    ({}, False),
    ({"DATASTORE_TASK_RUNNER": "dask"}, True),
    ({"DATASTORE_DASK_ADDRESS": "tcp://10.0.0.5:8786"}, True),
    ({"DATASTORE_DASK_ADDRESS": "scheduler:8786"}, True),
])
def test_dask_is_chosen_by_the_runner_or_an_address(env, on_dask):
    assert Settings.from_env(env).on_dask is on_dask
