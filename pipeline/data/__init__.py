"""Recording stores: schema, synthetic generator, alignment, micro-batches, validation.

See docs/data.md for the schema and the alignment and validation rules.
"""

from pipeline.data.align import RowIndex, latest_at_or_before, step_times, window_samples
from pipeline.data.batches import STALE_COLUMNS, AlignedBatch, MicroBatch, plan_batches
from pipeline.data.check import CheckReport, check_store
from pipeline.data.errors import SchemaError, SensorDataError
from pipeline.data.generator import generate_store
from pipeline.data.pools import prefault
from pipeline.data.reader import StoreReader, open_reader
from pipeline.data.windows import max_age_ns, read_batch, read_windows

__all__ = [
    "STALE_COLUMNS", "AlignedBatch", "CheckReport", "MicroBatch", "RowIndex", "SchemaError", "SensorDataError", "StoreReader",
    "check_store", "generate_store", "latest_at_or_before", "max_age_ns", "open_reader", "plan_batches", "prefault", "read_batch",
    "read_windows", "step_times", "window_samples",
]
