"""The batch application (``task=run``): every (recording group x time block) region of a
store once, state carried across blocks, outputs written to a zarr store, resumable."""
