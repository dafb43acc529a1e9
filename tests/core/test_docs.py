"""The usage examples in the library's docstrings are true."""

import doctest

import pytest

import quantgate.config
import quantgate.gate
import quantgate.report
import quantgate.scoring.answers


@pytest.mark.parametrize(
    "module", [quantgate.gate, quantgate.scoring.answers, quantgate.report, quantgate.config]
)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
