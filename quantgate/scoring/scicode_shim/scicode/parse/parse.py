"""``process_hdf5_to_tuple``: a SciCode step's numeric targets from an HDF5 file.

Written for quantgate. It re-implements the interface a SciCode test script imports as
``scicode.parse.parse``; it is not upstream code. Layout read (SciCode's ``test_data.h5``)::

    <step>/test<i>/            one group per test case, i = 1..n
        var1, var2, ...        the returned values: one member -> that value, several -> a tuple
    a value is either a dataset: a number, an array, or bytes (a UTF-8 string), or a group:
        list/<k>               a list, its items in stored order, as stored (no decoding)
        sparse_matrix/         data, shape and row+col (COO) | indices+indptr+blocksize (BSR)
                               | indices+indptr (CSR)
        <key>                  otherwise a dict: a dataset member is a value (bytes decoded;
                               a key that parses as a float becomes that float, except for
                               strings), a group member a sparse matrix under ``sparse_matrix``

Members are taken in the order h5py lists them (their names' order), as SciCode's reader does.
Which kind of group a value is, is decided by its first member's name.
"""

from __future__ import annotations

import h5py

DEFAULT_FILE = "targets.h5"  # where quantgate puts a step's targets in the sandbox


def _text_or_raw(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def read_sparse(group: h5py.Group):
    import scipy.sparse as sp

    values = group["data"][()]
    shape = tuple(int(n) for n in group["shape"][()])
    if "row" in group and "col" in group:
        return sp.coo_matrix((values, (group["row"][()], group["col"][()])), shape=shape)
    compressed = (values, group["indices"][()], group["indptr"][()])
    if "blocksize" in group:
        blocks = tuple(int(n) for n in group["blocksize"][()])
        return sp.bsr_matrix(compressed, shape=shape, blocksize=blocks)
    return sp.csr_matrix(compressed, shape=shape)


def read_dict(group: h5py.Group) -> dict:
    out: dict = {}
    for name, member in group.items():
        if isinstance(member, h5py.Group):
            out[name] = read_sparse(member["sparse_matrix"])
            continue
        value = member[()]
        if isinstance(value, bytes):
            out[name] = value.decode("utf-8")
            continue
        try:
            out[float(name)] = value
        except ValueError:
            out[name] = value
    return out


def read_group(group: h5py.Group):
    """A value stored as a group: a list, a sparse matrix or a dict."""
    first = next(iter(group.keys()), None)
    if first == "list":
        return [member[()] for member in group["list"].values()]
    if first == "sparse_matrix":
        return read_sparse(group["sparse_matrix"])
    return read_dict(group)


def read_value(node):
    if isinstance(node, h5py.Group):
        return read_group(node)
    return _text_or_raw(node[()])


def process_hdf5_to_tuple(step_id, test_num, h5py_file=DEFAULT_FILE):
    """The targets of tests 1..``test_num`` of step ``step_id``, as a list (index 0 = test1)."""
    targets = []
    with h5py.File(h5py_file, "r") as f:
        for i in range(1, test_num + 1):
            path = f"{step_id}/test{i}"
            if path not in f or not isinstance(f[path], h5py.Group):
                raise FileNotFoundError(f"Path {path} not found in the file.")
            values = [read_value(member) for member in f[path].values()]
            targets.append(values[0] if len(values) == 1 else tuple(values))
    return targets
