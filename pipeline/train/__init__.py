"""The training application (``task=train``): ``trainer=ridge`` fits the network's readout
on Dask from per-group sufficient statistics (reservoir computing), with the liquid and
spiking layers as they are; the result is a weights file any run loads (``model.weights``)."""
