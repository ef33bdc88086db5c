"""The fixture's runs as kdlib loads them, and an empty runs folder."""

from __future__ import annotations

import pandas as pd
import pytest

from kdlib.runs import load_runs
from tests.figures.helpers import FIXTURE, raw_runs


@pytest.fixture(scope="session")
def runs() -> pd.DataFrame:
    return load_runs(FIXTURE)


@pytest.fixture(scope="session")
def raw() -> pd.DataFrame:
    return raw_runs()


@pytest.fixture(scope="session")
def empty(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return load_runs(tmp_path_factory.mktemp("no-runs"))
