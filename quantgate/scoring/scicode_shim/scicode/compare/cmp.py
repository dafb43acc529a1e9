"""Comparison helpers SciCode's test cases import from ``scicode.compare.cmp``.

Written for quantgate. It re-implements the interface (the names and their verdicts: numbers and
arrays within ``np.allclose`` tolerances, strings and booleans equal, sparse matrices compared
densely, dicts key by key with sympy symbols taken as their names); it is not upstream code.
sympy is optional here: without it no value can be a symbol.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

try:
    import sympy
except ImportError:  # pragma: no cover - depends on the sandbox's interpreter
    sympy = None


def _is_symbol(x) -> bool:
    return sympy is not None and isinstance(x, sympy.Symbol)


def _is_sparse(x, formats) -> bool:
    return sp.issparse(x) and x.format in formats


def _close_or_equal(a, b, **tolerances) -> bool:
    """``np.allclose`` where the two can be compared numerically; else ``==`` (when allclose
    raises, e.g. for mismatched shapes or strings: with numpy 2 strings raise a TypeError, which
    SciCode's helpers do not catch, failing even equal strings; here they compare equal)."""
    try:
        return bool(np.allclose(a, b, **tolerances))
    except (ValueError, TypeError):
        return bool(a == b)


def process_symbol_in_dict(d: dict) -> dict:
    """A copy of ``d`` with sympy symbols (keys and values) replaced by their names."""
    return {
        (str(k) if _is_symbol(k) else k): (str(v) if _is_symbol(v) else v) for k, v in d.items()
    }


def are_dicts_close(dict1, dict2, atol=1e-8, rtol=1e-5) -> bool:
    """Same keys, and every value of ``dict1`` close to (or equal to) ``dict2``'s."""
    left, right = process_symbol_in_dict(dict1), process_symbol_in_dict(dict2)
    if left.keys() != right.keys():
        return False
    for key, a in left.items():
        b = right[key]
        if isinstance(a, str) or _is_symbol(a):
            same = a == b
        elif _is_sparse(a, ("csr", "csc", "bsr", "coo")):
            same = bool(np.allclose(a.toarray(), b.toarray(), atol=atol, rtol=rtol))
        else:
            same = _close_or_equal(a, b, atol=atol, rtol=rtol)
        if not same:
            return False
    return True


def are_csc_matrix_close(matrix1, matrix2) -> bool:
    """Two sparse matrices with the same dense values (default ``np.allclose`` tolerances)."""
    return bool(np.allclose(matrix1.toarray(), matrix2.toarray()))


def cmp_tuple_or_list(var1, var2) -> bool:
    """Element by element: dicts by :func:`are_dicts_close`, CSR/CSC matrices densely, booleans
    equal, anything else by ``np.allclose`` (``==`` where that cannot compare them)."""
    if len(var1) != len(var2):
        return False
    for a, b in zip(var1, var2):
        if isinstance(a, dict):
            same = are_dicts_close(a, b)
        elif _is_sparse(a, ("csr", "csc")):
            same = are_csc_matrix_close(a, b)
        elif isinstance(a, bool):
            same = a == b
        else:
            same = _close_or_equal(a, b)
        if not same:
            return False
    return True
