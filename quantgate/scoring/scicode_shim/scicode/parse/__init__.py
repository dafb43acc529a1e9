"""Target reader (quantgate's re-implementation of the interface, not upstream code)."""
