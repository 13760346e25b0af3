"""lmvisor.runtime.observe: one runtime's events, logs, metrics and lifecycle reports.

`names` lists every event type and metric and says which signal carries
what; `events` and `store` (with `sink`, its SQLite half) keep events; `logs`
is the redacting log chain (`process_logging` the daemon's process-wide
setup); `metrics` the Prometheus families; `reports` the lifecycle reports
written to logs and events off the restart path.
"""

from typing import TYPE_CHECKING

from lmvisor._lazy import lazy_package

if TYPE_CHECKING:
    from lmvisor._redaction import REDACTED as REDACTED
    from lmvisor._redaction import Redactor as Redactor
    from lmvisor.runtime.observe.events import (
        EVENT_TYPE_FILTER_PATTERN as EVENT_TYPE_FILTER_PATTERN,
    )
    from lmvisor.runtime.observe.events import MAX_TYPE_FILTERS as MAX_TYPE_FILTERS
    from lmvisor.runtime.observe.events import Event as Event
    from lmvisor.runtime.observe.events import EventInterest as EventInterest
    from lmvisor.runtime.observe.events import EventListener as EventListener
    from lmvisor.runtime.observe.events import EventRing as EventRing
    from lmvisor.runtime.observe.events import RingStatistics as RingStatistics
    from lmvisor.runtime.observe.events import matches as matches
    from lmvisor.runtime.observe.events import type_matches as type_matches
    from lmvisor.runtime.observe.logs import RoutedLogger as RoutedLogger
    from lmvisor.runtime.observe.logs import RuntimeLogging as RuntimeLogging
    from lmvisor.runtime.observe.logs import capture_logs as capture_logs
    from lmvisor.runtime.observe.logs import get_logger as get_logger
    from lmvisor.runtime.observe.logs import log_context as log_context
    from lmvisor.runtime.observe.metrics import CONTENT_TYPE as CONTENT_TYPE
    from lmvisor.runtime.observe.metrics import MAX_LM_SERIES as MAX_LM_SERIES
    from lmvisor.runtime.observe.metrics import OTHER_MODEL as OTHER_MODEL
    from lmvisor.runtime.observe.metrics import CacheFigures as CacheFigures
    from lmvisor.runtime.observe.metrics import LMFigures as LMFigures
    from lmvisor.runtime.observe.metrics import Metrics as Metrics
    from lmvisor.runtime.observe.metrics import ModuleFigures as ModuleFigures
    from lmvisor.runtime.observe.metrics import RuntimeFigures as RuntimeFigures
    from lmvisor.runtime.observe.metrics import cumulative_buckets as cumulative_buckets
    from lmvisor.runtime.observe.metrics import le_labels as le_labels
    from lmvisor.runtime.observe.process_logging import (
        configure_process_logging as configure_process_logging,
    )
    from lmvisor.runtime.observe.process_logging import (
        reset_process_logging as reset_process_logging,
    )
    from lmvisor.runtime.observe.reports import REPORT_DELAY as REPORT_DELAY
    from lmvisor.runtime.observe.reports import Reporter as Reporter
    from lmvisor.runtime.observe.reports import ReporterStatistics as ReporterStatistics
    from lmvisor.runtime.observe.sink import SqliteEventSink as SqliteEventSink
    from lmvisor.runtime.observe.store import EVENT_STORE_NAME as EVENT_STORE_NAME
    from lmvisor.runtime.observe.store import EventNotice as EventNotice
    from lmvisor.runtime.observe.store import EventStore as EventStore
    from lmvisor.runtime.observe.store import EventStoreActor as EventStoreActor
    from lmvisor.runtime.observe.store import emit_event as emit_event
    from lmvisor.runtime.observe.store import event_store_spec as event_store_spec
    from lmvisor.runtime.observe.store import query_events as query_events
    from lmvisor.runtime.observe.store import subscribe_events as subscribe_events
else:
    __all__, __getattr__, __dir__ = lazy_package(__name__, __file__)
