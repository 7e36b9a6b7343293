"""The API server's Prometheus metrics (`twin up --metrics-port`), one registry per server so
several servers in one process (as in the tests) count apart.

Pushed as calls end (the gate in twin.services.server; labels looked up once per method and code):

- `twin_api_calls_total{method, code}`: calls answered, by method and gRPC status code name.
- `twin_api_call_duration_seconds{method, code}`: unary calls' time in the server, from the gate
  taking the call to its answer (a histogram, buckets 1 ms .. 10 s). A server stream's length is
  how long its reader stayed, not a latency: streams are counted, not timed.

Read when scraped (`ServerCollector`; nothing is pushed per tick or per stream item):

- `twin_engine_tick`: the tick the clock is at (the next to run, as GetClock says).
- `twin_engine_tick_duration_seconds`: wall seconds each tick took since the engine started (a
  histogram the engine keeps: twin.engine.timing).
- `twin_engine_ticks_behind`: how far the running clock is behind its schedule (since the tick it
  runs or is about to run was due), in ticks (0 when on time, paused or flat out).
- `twin_engine_clock_slip_seconds_total`: wall seconds of schedule the running clock gave up
  because ticks took longer than its pace allows (rising steadily: the fleet cannot keep the speed).
- `twin_engine_clock_state{state}`: 1 for the clock's state (running, paused, stopped, failed), 0 for the others.
- `twin_api_calls_in_flight`: calls being answered now (the gate's count, streams excluded).
- `twin_api_stream_subscribers{stream}`: WatchFleet, StreamAlerts and StreamResponses calls open.
- `twin_api_stream_lag_seconds{stream}`: how long the oldest item not yet delivered on any open
  stream of that kind has waited since it was produced (0: all caught up). A stream is ended, to be
  resumed, once this passes its delivery window (twin.services.streams.StreamLimits)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from twin.engine.clock import ClockState
from twin.engine.interface import FleetEngine
from twin.services.subscribers import Subscribers

# Upper bounds of the call duration buckets, seconds: a hub read answers in about a millisecond,
# an overloaded server or a big ListHubs page takes seconds; beyond 10 s is +Inf.
CALL_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The server streams whose subscribers are counted, by method name (the `stream` label).
STREAM_KINDS = ("WatchFleet", "StreamAlerts", "StreamResponses")


class ApiMetrics:
    """Every answered call counted (and a unary call timed) by method and status code, in a
    Prometheus registry of its own; `watch` adds the engine's and the streams' figures."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter("twin_api_calls", "API calls answered, by method and gRPC status code",
                             ["method", "code"], registry=self.registry)
        self.latency = Histogram("twin_api_call_duration_seconds",
                                 "Seconds a unary API call took in the server, by method and gRPC status code",
                                 ["method", "code"], buckets=CALL_BUCKETS_S, registry=self.registry)
        self._httpd: Any = None  # the /metrics HTTP server, once serve_http is called
        # The children per (method, code), looked up once: labels() costs a lock and a dict lookup
        # on tuples of strings, a measurable share of a hub read. A stream's pair gets no histogram
        # (it would export an always-empty one).
        self._counted: dict[tuple[str, grpc.StatusCode], Any] = {}
        self._timed: dict[tuple[str, grpc.StatusCode], tuple[Any, Any]] = {}
        self._collector: ServerCollector | None = None

    def _counter(self, method: str, code: grpc.StatusCode) -> Any:
        child = self._counted.get((method, code))
        if child is None:
            child = self._counted[(method, code)] = self.calls.labels(method, code.name)
        return child

    def count(self, method: str, code: grpc.StatusCode) -> None:
        """Count a call that ended with `code` (a stream's, which is not timed)."""
        self._counter(method, code).inc()

    def answered(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Count a unary call that ended with `code` after `seconds` in the server."""
        pair = self._timed.get((method, code))
        if pair is None:
            pair = self._timed[(method, code)] = (self._counter(method, code), self.latency.labels(method, code.name))
        pair[0].inc()
        pair[1].observe(seconds)

    def by_code(self, method: str | None = None) -> dict[str, int]:
        """Calls answered so far per status code name (of one method, or all)."""
        out: dict[str, int] = {}
        for fam in self.calls.collect():
            for s in fam.samples:
                if s.name.endswith("_total") and (method is None or s.labels["method"] == method):
                    out[s.labels["code"]] = out.get(s.labels["code"], 0) + int(s.value)
        return out

    def watch(self, engine: FleetEngine, streams: Mapping[str, Subscribers], in_flight: Callable[[], int]) -> None:
        """Export the engine's tick figures and the streams' subscribers from now on (once)."""
        if self._collector is None:
            self._collector = ServerCollector(engine, streams, in_flight)
            self.registry.register(self._collector)

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve the metrics in Prometheus text format at http://host:port/metrics; the port.
        OSError if the port is taken."""
        self._httpd, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(self._httpd.server_address[1])

    def stop_http(self) -> None:
        httpd = self._httpd
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            self._httpd = None


class ServerCollector:
    """The figures read at scrape time (see the module's list), on the HTTP server's thread: the
    engine's are cheap and safe from any thread (FleetEngine.tick_timings), the streams' cost
    one look at each open stream."""

    def __init__(self, engine: FleetEngine, streams: Mapping[str, Subscribers], in_flight: Callable[[], int]):
        self.engine = engine
        self.streams = dict(streams)
        self.in_flight = in_flight

    def collect(self) -> Iterator[Metric]:
        t = self.engine.tick_timings()
        yield GaugeMetricFamily("twin_engine_tick", "The tick the clock is at (the next to run, as GetClock says)",
                                value=self.engine.tick)
        buckets = [(floatToGoString(b), float(c)) for b, c in zip(t.bounds, t.cumulative, strict=False)]
        buckets.append(("+Inf", float(t.count)))
        yield HistogramMetricFamily("twin_engine_tick_duration_seconds",
                                    "Wall seconds each tick took (sent to the shards, or the tick before it "
                                    "ended, to recorded)", buckets=buckets, sum_value=t.sum_s)
        yield GaugeMetricFamily("twin_engine_ticks_behind",
                                "How far the running clock is behind its schedule, in ticks",
                                value=t.behind_ticks)
        yield CounterMetricFamily("twin_engine_clock_slip_seconds",
                                  "Wall seconds of schedule the running clock gave up because ticks took longer "
                                  "than its pace allows", value=t.slipped_s)
        state = GaugeMetricFamily("twin_engine_clock_state", "1 for the clock's state, 0 for the others",
                                  labels=["state"])
        now = self.engine.clock_state
        for s in ClockState:
            state.add_metric([s.value], 1.0 if s == now else 0.0)
        yield state
        yield GaugeMetricFamily("twin_api_calls_in_flight", "Unary API calls being answered now",
                                value=self.in_flight())
        subscribers = GaugeMetricFamily("twin_api_stream_subscribers", "Server streams open, by method",
                                        labels=["stream"])
        lag = GaugeMetricFamily("twin_api_stream_lag_seconds",
                                "Seconds the oldest undelivered item of any open stream of the kind has waited",
                                labels=["stream"])
        for kind, subs in self.streams.items():
            subscribers.add_metric([kind], subs.open)
            lag.add_metric([kind], subs.lag_s())
        yield subscribers
        yield lag
