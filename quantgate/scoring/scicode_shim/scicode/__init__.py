"""quantgate's stand-in for the ``scicode`` package inside the sandbox.

Written for quantgate: it re-implements the interface a SciCode step's test script imports
(``scicode.parse.parse.process_hdf5_to_tuple``, ``scicode.compare.cmp``); it is not SciCode's code.
"""
