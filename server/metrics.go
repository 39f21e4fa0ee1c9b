package server

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/qs/apikeys/gen"
	"github.com/qs/apikeys/service"
)

// The metrics are the server's own, in a registry of its own (never Prometheus's global
// one), so that servers built side by side in one process, as the tests build them, count
// apart. No label carries a key, a subject, a tenant, a token or an address: a route is
// its template in openapi.yaml, and a method Go does not know is OTHER.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	handler  http.Handler
}

// latencyBuckets span a verification served from memory (well under a millisecond) to an
// argon2id run behind a queue and the request deadline (seconds).
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// The label values of requests that matched no operation.
const (
	routeUnmatched = "(unmatched)" // no route of openapi.yaml has this path
	routeRefused   = "(refused)"   // refused on a connection beyond the limit, unrouted
)

func newMetrics(svc *service.Service, db *sql.DB, log *slog.Logger) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apikeys_http_requests_total",
			Help: "HTTP requests answered, by method, route (the path template of openapi.yaml) and status (499: the client went away first).",
		}, []string{"method", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apikeys_http_request_duration_seconds",
			Help:    "Time from a request's arrival at the server to the end of its answer, by method and route.",
			Buckets: latencyBuckets,
		}, []string{"method", "route"}),
	}
	reg.MustRegister(m.requests, m.latency, serviceCollector{svc},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hashWait := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "apikeys_argon2_wait_seconds",
		Help:    "Time each argon2id run (hash or verify) waited for a slot of the bounded hasher, whether it got one or gave up.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	if svc.OnHashWait(func(d time.Duration) { hashWait.Observe(d.Seconds()) }) {
		reg.MustRegister(hashWait)
	}
	if db != nil {
		reg.MustRegister(collectors.NewDBStatsCollector(db, "apikeys"))
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// At DEBUG: among promhttp's errors are a client's refused encodings (Accept-Encoding:
		// identity;q=0), which anyone could repeat to raise ERROR alerts; a collector's failure
		// is counted in promhttp_metric_handler_errors_total.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// A collector that fails leaves out its own metrics, not everyone's.
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg, // promhttp_metric_handler_errors_total
		// openapi.yaml promises text/plain: neither protobuf nor OpenMetrics, whatever the
		// scraper asks for.
		AcceptedFormats: []expfmt.Format{expfmt.NewFormat(expfmt.TypeTextPlain)},
	})
	return m
}

// request counts one answered request.
func (m *metrics) request(method, route string, status int, elapsed time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(method, route).Observe(elapsed.Seconds())
}

// metricsRoute serves GET /metrics with promhttp (compression, the text format's content
// type), in place of the generated handler; the route keeps its middleware. The query string
// is dropped, as for every public operation: promhttp would read name[] from it.
func (s *Server) metricsRoute(c echo.Context) error {
	r := c.Request()
	if r.URL.RawQuery != "" {
		u, bare := *r.URL, *r
		u.RawQuery = ""
		bare.URL = &u
		r = &bare
	}
	s.metrics.handler.ServeHTTP(c.Response(), r)
	return nil
}

// GetMetrics serves the metrics in the text format. The route itself is metricsRoute; this
// method completes gen.StrictServerInterface.
func (s *Server) GetMetrics(context.Context, gen.GetMetricsRequestObject) (gen.GetMetricsResponseObject, error) {
	families, err := s.metrics.reg.Gather()
	if err != nil {
		s.log.Error("gather metrics", "err", err) // what was gathered is still served
	}
	var b strings.Builder
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			return nil, err
		}
	}
	return gen.GetMetrics200TextResponse(b.String()), nil
}

// serviceCollector reads the service's Snapshot at scrape time: the use cases count with
// plain atomics and know nothing of Prometheus.
type serviceCollector struct{ svc *service.Service }

var (
	descVerifications = prometheus.NewDesc("apikeys_verifications_total",
		"Tokens verified, by where they were presented (verify: POST /api-keys/verify; bearer: an API key calling this API) and verdict.",
		[]string{"via", "code"}, nil)
	descCacheHits = prometheus.NewDesc("apikeys_key_cache_hits_total",
		"Key lookups of verification answered from the key cache.", nil, nil)
	descCacheMisses = prometheus.NewDesc("apikeys_key_cache_misses_total",
		"Key lookups of verification that read the database (not cached, stale, or the cache not trusted).", nil, nil)
	descCacheEvictions = prometheus.NewDesc("apikeys_key_cache_evictions_total",
		"Key cache entries dropped to make room for others.", nil, nil)
	descInvalidations = prometheus.NewDesc("apikeys_key_cache_invalidations_total",
		"Key changes heard from the change feed, each dropping its key from the cache.", nil, nil)
	descCacheFlushes = prometheus.NewDesc("apikeys_key_cache_flushes_total",
		"Times the whole key cache was dropped because the change feed may have missed changes.", nil, nil)
	descFeedConnected = prometheus.NewDesc("apikeys_change_feed_connected",
		"1 while the change feed vouches for the key cache (its listener is connected and current), else 0.", nil, nil)
	descLimited = prometheus.NewDesc("apikeys_verify_failures_limited_total",
		"Wrong secrets answered NOT_FOUND without an argon2id run, their key's limit of failed runs being reached.", nil, nil)
	descFilterAbsent = prometheus.NewDesc("apikeys_handle_filter_absent_total",
		"Tokens answered NOT_FOUND by the handle filter, which holds every key's lookup handle, without a database read.", nil, nil)
	descFilterLoads = prometheus.NewDesc("apikeys_handle_filter_loads_total",
		"Times the handle filter was loaded from the database (at start, after the change feed lost changes, when it grew).", nil, nil)
	descFilterReady = prometheus.NewDesc("apikeys_handle_filter_ready",
		"1 while the handle filter answers (loaded and current), else 0: unknown handles are then read from the database.", nil, nil)
	descUsageFlushes = prometheus.NewDesc("apikeys_usage_flushes_total",
		"Batches of recorded key usage written to the database.", nil, nil)
	descUsageRows = prometheus.NewDesc("apikeys_usage_flushed_keys_total",
		"Keys' last uses written by those batches.", nil, nil)
	descUsageFailures = prometheus.NewDesc("apikeys_usage_flush_failures_total",
		"Batches of recorded key usage that failed to be written (kept for the next attempt).", nil, nil)
	descHashSlots = prometheus.NewDesc("apikeys_argon2_slots",
		"How many argon2id runs may go at once.", nil, nil)
	descHashRunning = prometheus.NewDesc("apikeys_argon2_in_flight",
		"argon2id runs (hash or verify) going now.", nil, nil)
	descHashWaiting = prometheus.NewDesc("apikeys_argon2_waiting",
		"argon2id runs waiting for a slot now.", nil, nil)
	descHashBusy = prometheus.NewDesc("apikeys_argon2_busy_total",
		"argon2id runs refused because no slot freed up in time (answered 503).", nil, nil)
)

func (c serviceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVerifications, descCacheHits, descCacheMisses, descCacheEvictions,
		descInvalidations, descCacheFlushes, descFeedConnected, descLimited, descFilterAbsent, descFilterLoads, descFilterReady, descUsageFlushes, descUsageRows,
		descUsageFailures, descHashSlots, descHashRunning, descHashWaiting, descHashBusy} {
		ch <- d
	}
}

func (c serviceCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.svc.Snapshot()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	for _, v := range snap.Verifications {
		counter(descVerifications, v.N, string(v.Via), string(v.Code))
	}
	counter(descCacheHits, snap.Cache.Hits)
	counter(descCacheMisses, snap.Cache.Misses)
	counter(descCacheEvictions, snap.Cache.Evictions)
	counter(descInvalidations, snap.Cache.Invalidations)
	counter(descCacheFlushes, snap.Cache.Flushes)
	counter(descLimited, snap.Cache.Limited)
	connected := int64(0)
	if snap.FeedConnected {
		connected = 1
	}
	gauge(descFeedConnected, connected)
	counter(descFilterAbsent, snap.Cache.FilterAbsent)
	counter(descFilterLoads, snap.Cache.FilterLoads)
	ready := int64(0)
	if snap.Cache.FilterReady {
		ready = 1
	}
	gauge(descFilterReady, ready)
	counter(descUsageFlushes, snap.Usage.Flushes)
	counter(descUsageRows, snap.Usage.Rows)
	counter(descUsageFailures, snap.Usage.Failures)
	if h := snap.Hasher; h != nil {
		gauge(descHashSlots, int64(h.Slots))
		gauge(descHashRunning, int64(h.Running))
		gauge(descHashWaiting, int64(h.Waiting))
		counter(descHashBusy, h.Busy)
	}
}
