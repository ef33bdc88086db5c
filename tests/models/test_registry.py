"""The model registry (kdlib/models/registry.py): names, descriptions, parameter counts,
errors for unknown names and bad class counts."""

from __future__ import annotations

import pytest

from kdlib.errors import KdlibError
from kdlib.models import create_model, list_models, model_description
from tests.models.helpers import PARAMS, n_params


def test_registry_lists_exactly_the_known_models() -> None:
    assert sorted(list_models()) == sorted(PARAMS)
    for name in list_models():
        desc = model_description(name)
        assert desc and "\n" not in desc


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_count(name: str) -> None:
    assert n_params(create_model(name)) == PARAMS[name]


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(KdlibError) as info:
        create_model("resnet9000")
    msg = str(info.value)
    assert "resnet9000" in msg and "see `kdlib models`" in msg
    for name in PARAMS:
        assert name in msg
    with pytest.raises(KdlibError, match="valid names"):
        model_description("nope")


def test_names_are_case_insensitive() -> None:
    assert n_params(create_model("WRN10_1")) == PARAMS["wrn10_1"]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_num_classes(bad: object) -> None:
    with pytest.raises(KdlibError, match="num_classes"):
        create_model("resnet8", num_classes=bad)  # type: ignore[arg-type]
