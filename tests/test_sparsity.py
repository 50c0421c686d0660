from __future__ import annotations

import pytest

from lib.pruning.sparsity import parse_sparsity
from lib.run.errors import UserError


@pytest.mark.parametrize("kind,ratio,n,m,expected", [
    ("2:4", 0.0, 2, 4, 0.5), ("2:4", 0.5, 2, 4, 0.5), ("4:8", 0.0, 4, 8, 0.5),
    ("1:4", 0.0, 1, 4, 0.75),
])
def test_nm_ratio_follows_pattern(kind, ratio, n, m, expected):
    s = parse_sparsity(kind, ratio, False)
    assert (s.n, s.m, s.ratio, s.type_name) == (n, m, expected, kind)


@pytest.mark.parametrize("kind,ratio,variant", [
    ("5:4", 0, False), ("0:4", 0, False), ("4:4", 0, False), ("2:4", 0.3, False),
    ("2-4", 0, False), ("unstructured", 1.0, False), ("unstructured", -0.1, False),
    ("2:4", 0.5, True),
])
def test_bad_sparsity_rejected(kind, ratio, variant):
    with pytest.raises(UserError):
        parse_sparsity(kind, ratio, variant)
