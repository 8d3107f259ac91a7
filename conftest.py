"""Names every docstring example may use without importing them (collected by --doctest-modules)."""

import math

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict) -> None:
    doctest_namespace.update(torch=torch, nn=nn, math=math)
