"""The zarr bridge (pipeline.data.zarr_io) on a real zarr v3 store: many reads and writes
in one round trip equal the plain synchronous calls, and errors come back as asked."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from pipeline.data.zarr_io import get_many, set_many


def _arrays(tmp_path):
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=3)
    a = g.create_array("a", shape=(8, 6), chunks=(4, 3), dtype="f4", fill_value=np.nan)
    b = g.create_array("b", shape=(8,), chunks=(2,), dtype="i8", fill_value=0)
    return g, a, b


def test_set_many_then_get_many_equal_the_synchronous_calls(tmp_path):
    g, a, b = _arrays(tmp_path)
    va = np.arange(12, dtype="f4").reshape(4, 3)
    vb = np.array([7, 9], "i8")
    set_many([(a, (slice(4, 8), slice(0, 3)), va), (b, slice(2, 4), vb)])
    ra, rb = get_many([(a, (slice(4, 8), slice(0, 3))), (b, slice(0, 4))])
    np.testing.assert_array_equal(ra, va)
    np.testing.assert_array_equal(rb, [0, 0, 7, 9])
    np.testing.assert_array_equal(a[4:8, 0:3], va)  # what a plain zarr read sees
    assert np.isnan(a[0:4, :]).all()  # nothing else was written


def test_errors_raise_or_come_back_in_place(tmp_path):
    g, a, b = _arrays(tmp_path)
    set_many([(b, slice(0, 2), np.array([1, 2], "i8"))])
    bad = (a, (0, 0, 0))  # one index too many
    with pytest.raises(IndexError):
        get_many([(b, slice(0, 2)), bad])
    good, err = get_many([(b, slice(0, 2)), bad], return_exceptions=True)
    np.testing.assert_array_equal(good, [1, 2])
    assert isinstance(err, IndexError)
