"""ROS 1 / ROS 2 bags (sqlite3, MCAP) to recording stores: ``neuroliquid task=import``.

``discover`` (bags -> recordings, the first counting pass), ``source`` (one reading
interface, named errors), ``messages`` (message -> schema row, pure numpy), ``resample``
(IMU rate, targets on the model clock), ``stage`` (one recording, a Dask task),
``assemble`` (the store, one task per shard group), ``report`` (the summary table),
``run`` (the task).  Needs the ``.[import]`` extra.  docs/data.md, "Your own recordings".
"""

from pipeline.data.importer.run import ImportFailed, import_bags
from pipeline.data.importer.source import BagError

__all__ = ["BagError", "ImportFailed", "import_bags"]
