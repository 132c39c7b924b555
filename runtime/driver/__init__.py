"""The driver's parts: plain classes with one job each, composed by :class:`runtime.pipeline.Pipeline` and
driven by its step loop (``poll``). None of them calls Ray: the pipeline passes Ray's calls in at the edges,
so each part is tested without Ray (``tests/runtime/test_driver_parts.py``).

- :class:`PlanBook` (``plans.py``): the plan versions, the one new frames start on, and routes of sources.
- :class:`Admission` (``admission.py``): the sources' waiting queues and their windows.
- :class:`runtime.feeding.Feeder`: admitted frames on their way to the device nodes, under credits.
- :class:`Collector` (``collect.py``): the sinks' replies into exactly-once, in-order delivery.
- :class:`Recovery` (``recovery.py``): acknowledgements, the stall watch and feeding again without blocking.
- :class:`ConditionsClock` (``clock.py``): when emulated conditions start, announced to restarted nodes.
- :class:`Switcher` (``switching.py``): one plan switch at a time, as a :class:`SwitchHandle` to wait on.
- :class:`Observer` (``observe.py``): the per-second timeline and the adapter's rounds.
- :class:`DriverView` (``view.py``): the narrow view the adapter and the reports read.
"""

from .admission import Admission
from .clock import ConditionsClock
from .collect import Collector
from .observe import Observer
from .plans import PlanBook
from .recovery import Recovery
from .switching import Switcher, SwitchHandle
from .view import DriverView

__all__ = ["Admission", "Collector", "ConditionsClock", "DriverView", "Observer", "PlanBook", "Recovery", "SwitchHandle", "Switcher"]
