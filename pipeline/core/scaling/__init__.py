"""How the worker pool follows the load: a pure policy (:mod:`.policy`) apart from the
Dask mechanism that applies it (:mod:`.adaptive`)."""

from pipeline.core.scaling.adaptive import PredictiveAdaptive, RecordingAdaptive, attach_scaling
from pipeline.core.scaling.policy import Decision, PredictivePolicy

__all__ = ["Decision", "PredictiveAdaptive", "PredictivePolicy", "RecordingAdaptive", "attach_scaling"]
