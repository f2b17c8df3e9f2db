"""An Elasticsearch / OpenSearch stand-in on loopback, stdlib only.

Speaks enough of the REST API for elasticsearch-py 8/9 and for this
collection: ``GET /``, ``HEAD /``, index create/delete, ``_bulk``,
``_doc``/``_create`` (409 on an existing id), ``_refresh``, ``_search`` (with
hits: ``size``, ``from``, one-field ``sort``) and ``_count`` with the query
DSL subset the collection uses, and ES error shapes.

Personalities (``personality=``):

* ``es7``  - 7.17.x: product header; plain JSON; rejects ``compatible-with`` other than 7.
* ``es8``  - 8.x: product header; accepts JSON and compatible-with 7/8;
  rejects ``compatible-with=9`` with 400 ``media_type_header_exception``.
* ``es9``  - 9.x: accepts compatible-with 8/9, rejects 7.
* ``opensearch2`` - OpenSearch 2.x: no ``X-Elastic-Product`` header,
  ``version.distribution: opensearch``, 406 on Elastic vendor media types.

Fault switches on the :class:`EsDouble` object: ``down`` (close the
connection without answering), ``fail_next`` (answer that many requests with
503), ``slow`` (seconds to wait before answering), ``require_auth`` (exact
``Authorization`` header value expected, else 401), ``require_sigv4``
(an ``AWS4-HMAC-SHA256`` Authorization with that region/service expected).
Counters: ``requests``, ``response_bytes``, ``paths``, ``mutations`` (the
``METHOD path`` of every request that could change data: writes, deletes,
index creation, ``_bulk``); ``last_headers``.

Knowingly simpler than Elasticsearch:

* documents are searchable at once (``_refresh`` is accepted and a no-op);
* no mappings or analysis: ``term`` is exact equality on the stored value
  (numbers and numeric strings compare equal, ``x.keyword`` falls back to
  ``x``), arrays match if any element matches; ``match`` is not supported;
* dates are recognised by field name (``@timestamp``, ``timestamp`` and the
  ``date`` fields of a mapping given at index creation) and kept as epoch ms;
* percentiles are exact (linear interpolation), not TDigest estimates;
* ``range`` aggregations count a document in every range one of its
  values falls in (``from`` inclusive, ``to`` exclusive), in request order,
  with Elasticsearch's keys (``*-1.0``, ``1.0-2.0``, ``2.0-*``) or ``keyed``;
* hits: ``size`` (default 10, ``0`` gives no hits) and ``from`` are
  honoured; ``sort`` on one field only (``asc``/``desc``, missing values
  last, ties in index order; ``unmapped_type`` accepted and ignored); no
  scoring: unsorted hits come in index order with ``_score`` 1.0; ``_source``
  filtering is ignored; documents seeded with ``index_docs`` have no id, so
  their hits carry a made-up ``_id`` (``seeded-<row>``) that ``_doc`` does not
  find;
* ``_source`` is rebuilt from the flattened columns (object keys may come
  back in another order; JSON objects have none). A document the columns
  cannot give back as written (a key containing a dot, an empty object, a
  date not in the canonical ``2026-05-01T12:00:00.000Z`` form) keeps its
  original source beside the columns, so ``_source`` is always as written
  and the common case costs no extra memory;
* one shard, one primary term (1): each write of an id bumps its
  ``_version`` and takes the index's next ``_seq_no``; ``if_seq_no`` /
  ``if_primary_term`` on ``_doc``/``_create`` writes and ``_doc`` DELETE give
  409 ``version_conflict_engine_exception`` when they do not match, as ES
  does. A deleted document is gone from ``_doc``, searches and counts.

Documents are stored as columns (one Python list per flattened field) so a
million small documents fit and filter in well under a second. A lock makes
writes and searches safe from many threads.
"""

from __future__ import annotations

import bisect
import datetime
import fnmatch
import json
import math
import re
import threading
import time
import uuid
from urllib.parse import parse_qs, unquote, urlsplit

from support.servers import QuietHandler, start

PERSONALITIES = {
    'es7': dict(number='7.17.25', distribution=None, product=True, compat=(7,)),
    'es8': dict(number='8.15.3', distribution=None, product=True, compat=(7, 8)),
    'es9': dict(number='9.1.5', distribution=None, product=True, compat=(8, 9)),
    'opensearch2': dict(number='2.17.1', distribution='opensearch', product=False, compat=()),
}
DATE_FIELDS = ('@timestamp', 'timestamp')
_MISSING = object()
_CANONICAL_DATE = re.compile(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z')
_UNITS = {'ms': 0.001, 's': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}


class EsError(Exception):
    def __init__(self, status, kind, reason, **extra):
        super().__init__(reason)
        self.status = status
        self.kind = kind
        self.reason = reason
        self.extra = extra

    def body(self):
        err = dict(type=self.kind, reason=self.reason, **self.extra)
        return {'error': {'root_cause': [dict(type=self.kind, reason=self.reason)], **err}, 'status': self.status}


def parse_date(value, now_ms=None, round_up=False):
    """ISO-8601, epoch millis or date math (``now-30s``, ``now/d``) -> epoch ms."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if text.startswith('now'):
        base = now_ms if now_ms is not None else time.time() * 1000.0
        rest = text[3:]
        for sign, amount, unit in re.findall(r'([+-])(\d+)(ms|[smhdw])', rest):
            delta = int(amount) * _UNITS[unit] * 1000.0
            base += delta if sign == '+' else -delta
        rounding = re.search(r'/(ms|[smhdw])$', rest)
        if rounding:
            step = _UNITS[rounding.group(1)] * 1000.0
            base = math.floor(base / step) * step + (step - 1 if round_up else 0)
        return base
    if re.fullmatch(r'-?\d+(\.\d+)?', text):
        return float(text)
    stamp = datetime.datetime.fromisoformat(text.replace('Z', '+00:00'))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp() * 1000.0


def iso(ms):
    return datetime.datetime.fromtimestamp(ms / 1000.0, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'


def flatten(doc, prefix='', out=None):
    out = {} if out is None else out
    for key, value in doc.items():
        name = prefix + key
        if isinstance(value, dict):
            flatten(value, name + '.', out)
        else:
            out[name] = value
    return out


def _flatten_exact(doc, prefix, out):
    """flatten() that also says whether the columns can give ``doc`` back as written."""
    exact = True
    for key, value in doc.items():
        if '.' in key:
            exact = False
        name = prefix + key
        if isinstance(value, dict):
            if not value:
                exact = False
            exact = _flatten_exact(value, name + '.', out) and exact
        else:
            out[name] = value
    return exact


def unflatten(flat):
    """{'host.name': 'a'} -> {'host': {'name': 'a'}} (keys without dots only)."""
    out = {}
    for name, value in flat.items():
        parts = name.split('.')
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def interval_ms(spec):
    match = re.fullmatch(r'(\d+)(ms|[smhdw])', str(spec))
    if match:
        return int(match.group(1)) * _UNITS[match.group(2)] * 1000.0
    named = {'second': 's', 'minute': 'm', 'hour': 'h', 'day': 'd', 'week': 'w'}
    if str(spec) in named:
        return _UNITS[named[str(spec)]] * 1000.0
    raise EsError(400, 'illegal_argument_exception', 'failed to parse setting [fixed_interval] with value [%s]' % spec)


def exact_percentile(values, pct):
    if not values:
        return None
    data = sorted(values)
    rank = (len(data) - 1) * pct / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return float(data[low] + (data[high] - data[low]) * (rank - low))


class Index:
    """Column store for one index."""

    def __init__(self, name, date_fields=()):
        self.name = name
        self.columns = {}
        self.size = 0
        self.ids = {}
        self.row_ids = {}
        # row -> original document, only for rows the columns cannot give back as written
        self.sources = {}
        self.date_fields = set(DATE_FIELDS) | set(date_fields)
        self.seq_no = -1
        # doc id -> (seq_no, version) of its last write
        self.versions = {}
        # rows of deleted documents; searches and counts skip them
        self.deleted = set()

    def next_seq(self, doc_id):
        self.seq_no += 1
        _seq, version = self.versions.get(doc_id, (None, 0))
        self.versions[doc_id] = (self.seq_no, version + 1)
        return self.versions[doc_id]

    def remove(self, doc_id):
        row = self.ids.pop(doc_id)
        self.row_ids.pop(row, None)
        for column in self.columns.values():
            column[row] = _MISSING
        self.sources.pop(row, None)
        self.deleted.add(row)
        self.seq_no += 1
        _seq, version = self.versions.get(doc_id, (None, 0))
        # ES keeps the version of a deleted id (a re-create continues from it)
        self.versions[doc_id] = (None, version + 1)
        return self.seq_no, version + 1

    def add(self, doc, doc_id=None):
        flat = {}
        exact = _flatten_exact(doc, '', flat)
        row = self.size
        if doc_id is not None and doc_id in self.ids:
            row = self.ids[doc_id]
            for column in self.columns.values():
                column[row] = _MISSING
            self.sources.pop(row, None)
        else:
            self.size += 1
            for column in self.columns.values():
                column.append(_MISSING)
        for name, raw in flat.items():
            value = raw
            if name in self.date_fields and raw is not None:
                value = parse_date(raw)
                if exact and not (raw.__class__ is str and _CANONICAL_DATE.fullmatch(raw)):
                    exact = False
            column = self.columns.get(name)
            if column is None:
                column = self.columns[name] = [_MISSING] * self.size
            column[row] = value
        if not exact:
            self.sources[row] = json.loads(json.dumps(doc))
        if doc_id is not None:
            self.ids[doc_id] = row
            self.row_ids[row] = doc_id
        return row

    def source(self, row):
        """The document of ``row`` as it was written."""
        if row in self.sources:
            return json.loads(json.dumps(self.sources[row]))
        flat = {}
        for name, column in self.columns.items():
            value = column[row]
            if value is _MISSING:
                continue
            if name in self.date_fields and isinstance(value, float):
                value = iso(value)
            flat[name] = value
        return unflatten(flat)

    def doc_id(self, row):
        return self.row_ids.get(row, 'seeded-%d' % row)

    def column(self, field):
        col = self.columns.get(field)
        if col is None and field.endswith('.keyword'):
            col = self.columns.get(field[:-len('.keyword')])
        return col


def _variants(value):
    """Values a term query matches: '500' matches 500 and vice versa."""
    out = {value}
    if isinstance(value, str):
        try:
            number = float(value)
            out.add(number)
        except ValueError:
            pass
    elif isinstance(value, bool):
        out.add('true' if value else 'false')
    elif isinstance(value, (int, float)):
        out.add(str(value))
    return out


class Searcher:
    """Evaluates the DSL subset on a list of row numbers of one index."""

    def __init__(self, index, now_ms):
        self.index = index
        self.now_ms = now_ms

    # -- queries -----------------------------------------------------------
    def match(self, query, rows):
        if not isinstance(query, dict) or len(query) != 1:
            raise EsError(400, 'parsing_exception', 'query malformed, must start with start_object and hold exactly one query')
        kind, spec = next(iter(query.items()))
        handler = getattr(self, '_q_' + kind, None)
        if handler is None:
            raise EsError(400, 'parsing_exception', 'unknown query [%s]' % kind, line=1, col=1)
        return handler(spec, rows)

    def _q_match_all(self, _spec, rows):
        return rows

    def _q_match_none(self, _spec, _rows):
        return []

    def _q_bool(self, spec, rows):
        clauses = {}
        for key in ('filter', 'must', 'must_not', 'should'):
            value = spec.get(key, [])
            clauses[key] = value if isinstance(value, list) else [value]
        scored = clauses['filter'] + clauses['must']
        # cheap, selective clauses first
        scored.sort(key=lambda q: 0 if isinstance(q, dict) and ('term' in q or 'terms' in q) else 1)
        for clause in scored:
            rows = self.match(clause, rows)
            if not rows:
                return rows
        if clauses['should']:
            default_msm = 0 if scored else 1
            msm = int(spec.get('minimum_should_match', default_msm))
            if msm > 0:
                if msm == 1:
                    hit = set()
                    remaining = rows
                    for clause in clauses['should']:
                        matched = self.match(clause, remaining)
                        hit.update(matched)
                        if hit:
                            remaining = [r for r in remaining if r not in hit]
                    rows = [r for r in rows if r in hit]
                else:
                    counts = {}
                    for clause in clauses['should']:
                        for r in self.match(clause, rows):
                            counts[r] = counts.get(r, 0) + 1
                    rows = [r for r in rows if counts.get(r, 0) >= msm]
        for clause in clauses['must_not']:
            excluded = set(self.match(clause, rows))
            if excluded:
                rows = [r for r in rows if r not in excluded]
        return rows

    def _field_value(self, spec):
        if len(spec) != 1:
            raise EsError(400, 'parsing_exception', '[term] query does not support multiple fields')
        field, value = next(iter(spec.items()))
        if isinstance(value, dict):
            value = value.get('value')
        return field, value

    def _q_term(self, spec, rows):
        field, value = self._field_value(spec)
        return self._in(field, _variants(value), rows)

    def _q_terms(self, spec, rows):
        spec = {k: v for k, v in spec.items() if k != 'boost'}
        field, values = self._field_value(spec)
        if not isinstance(values, list):
            raise EsError(400, 'parsing_exception', '[terms] query does not support [%s]' % field)
        wanted = set()
        for value in values:
            wanted |= _variants(value)
        return self._in(field, wanted, rows)

    def _in(self, field, wanted, rows):
        col = self.index.column(field)
        if col is None:
            return []
        if isinstance(rows, range) and rows == range(len(col)):
            out = []
            for i, v in enumerate(col):
                if v.__class__ is list:
                    if any(x in wanted for x in v):
                        out.append(i)
                elif v in wanted:
                    out.append(i)
            return out
        return [r for r in rows if (col[r] in wanted) if col[r].__class__ is not list] + \
            [r for r in rows if col[r].__class__ is list and any(x in wanted for x in col[r])]

    def _q_exists(self, spec, rows):
        col = self.index.column(spec['field'])
        if col is None:
            return []
        return [r for r in rows if col[r] is not _MISSING and col[r] is not None and col[r] != []]

    def _q_range(self, spec, rows):
        if len(spec) != 1:
            raise EsError(400, 'parsing_exception', '[range] query does not support multiple fields')
        field, bounds = next(iter(spec.items()))
        col = self.index.column(field)
        if col is None:
            return []
        is_date = field in self.index.date_fields

        def conv(value, up=False):
            if value is None:
                return None
            if is_date:
                return parse_date(value, self.now_ms, round_up=up)
            return float(value)

        gte, gt = conv(bounds.get('gte'), False), conv(bounds.get('gt'), True)
        lte, lt = conv(bounds.get('lte'), True), conv(bounds.get('lt'), False)
        lo = max([b for b in (gte, gt) if b is not None], default=None)
        hi = min([b for b in (lte, lt) if b is not None], default=None)
        lo_strict = gt is not None and lo == gt
        hi_strict = lt is not None and hi == lt
        out = []
        for r in rows:
            v = col[r]
            if v is _MISSING or v is None or isinstance(v, (list, bool)):
                continue
            if not isinstance(v, (int, float)):
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    continue
            if lo is not None and (v <= lo if lo_strict else v < lo):
                continue
            if hi is not None and (v >= hi if hi_strict else v > hi):
                continue
            out.append(r)
        return out

    # -- aggregations --------------------------------------------------------
    def aggregate(self, aggs, rows):
        out = {}
        for name, spec in (aggs or {}).items():
            sub = spec.get('aggs', spec.get('aggregations'))
            kinds = [k for k in spec if k not in ('aggs', 'aggregations', 'meta')]
            if len(kinds) != 1:
                raise EsError(400, 'parsing_exception', 'Expected one aggregation type for [%s]' % name)
            kind = kinds[0]
            handler = getattr(self, '_a_' + kind, None)
            if handler is None:
                raise EsError(400, 'parsing_exception', 'Unknown aggregation type [%s] did you mean [filter]?' % kind)
            out[name] = handler(spec[kind], rows, sub)
        return out

    def _bucket(self, rows, sub, **extra):
        bucket = dict(extra)
        bucket['doc_count'] = len(rows)
        bucket.update(self.aggregate(sub, rows))
        return bucket

    def _a_filter(self, spec, rows, sub):
        return self._bucket(self.match(spec, rows), sub)

    def _a_filters(self, spec, rows, sub):
        filters = spec.get('filters')
        if isinstance(filters, dict):
            return {'buckets': {key: self._bucket(self.match(q, rows), sub) for key, q in filters.items()}}
        return {'buckets': [self._bucket(self.match(q, rows), sub) for q in filters]}

    def _numbers(self, field, rows):
        col = self.index.column(field)
        if col is None:
            return []
        out = []
        for r in rows:
            v = col[r]
            if v.__class__ is list:
                out.extend(x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool))
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(v)
        return out

    def _a_percentiles(self, spec, rows, _sub):
        values = sorted(self._numbers(spec['field'], rows))
        percents = spec.get('percents', [1, 5, 25, 50, 75, 95, 99])
        result = {}
        for pct in percents:
            result[str(float(pct))] = exact_percentile(values, float(pct))
        if spec.get('keyed', True):
            return {'values': result}
        return {'values': [{'key': float(p), 'value': result[str(float(p))]} for p in percents]}

    def _a_avg(self, spec, rows, _sub):
        values = self._numbers(spec['field'], rows)
        return {'value': (sum(values) / len(values)) if values else None}

    def _a_sum(self, spec, rows, _sub):
        return {'value': float(sum(self._numbers(spec['field'], rows)))}

    def _a_min(self, spec, rows, _sub):
        values = self._numbers(spec['field'], rows)
        return {'value': float(min(values)) if values else None}

    def _a_max(self, spec, rows, _sub):
        values = self._numbers(spec['field'], rows)
        return {'value': float(max(values)) if values else None}

    def _a_value_count(self, spec, rows, _sub):
        col = self.index.column(spec['field'])
        if col is None:
            return {'value': 0}
        count = 0
        for r in rows:
            v = col[r]
            if v is _MISSING or v is None:
                continue
            count += len(v) if v.__class__ is list else 1
        return {'value': count}

    def _a_date_histogram(self, spec, rows, sub):
        field = spec['field']
        step = interval_ms(spec.get('fixed_interval') or spec.get('calendar_interval') or spec.get('interval'))
        col = self.index.column(field)
        groups = {}
        if col is not None:
            for r in rows:
                v = col[r]
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    key = math.floor(v / step) * step
                    groups.setdefault(key, []).append(r)
        min_doc_count = int(spec.get('min_doc_count', 0))
        keys = sorted(groups)
        if min_doc_count == 0 and keys:
            keys = [keys[0] + i * step for i in range(int((keys[-1] - keys[0]) / step) + 1)]
        buckets = []
        for key in keys:
            members = groups.get(key, [])
            if len(members) < max(min_doc_count, 0):
                continue
            buckets.append(self._bucket(members, sub, key_as_string=iso(key), key=int(key)))
        return {'buckets': buckets}

    def _a_range(self, spec, rows, sub):
        """Buckets in the order of ``ranges``; ``from`` inclusive, ``to`` exclusive, as Elasticsearch counts them."""
        ranges = spec.get('ranges')
        if not isinstance(ranges, list) or not ranges:
            raise EsError(400, 'illegal_argument_exception', 'No [ranges] specified for the [range] aggregation')
        col = self.index.column(spec['field'])
        values = []
        if col is not None:
            for r in rows:
                v = col[r]
                for x in (v if v.__class__ is list else [v]):
                    if isinstance(x, (int, float)) and not isinstance(x, bool):
                        values.append((float(x), r))
        values.sort()
        numbers = [v for v, _r in values]
        buckets = []
        for bounds in ranges:
            low, high = bounds.get('from'), bounds.get('to')
            first = 0 if low is None else bisect.bisect_left(numbers, float(low))
            last = len(numbers) if high is None else bisect.bisect_left(numbers, float(high))
            members = sorted({r for _v, r in values[first:max(first, last)]})
            key = bounds.get('key') or '%s-%s' % ('*' if low is None else float(low), '*' if high is None else float(high))
            extra = {'key': key}
            if low is not None:
                extra['from'] = float(low)
            if high is not None:
                extra['to'] = float(high)
            buckets.append(self._bucket(members, sub, **extra))
        if spec.get('keyed'):
            return {'buckets': {b['key']: {k: v for k, v in b.items() if k != 'key'} for b in buckets}}
        return {'buckets': buckets}

    def _a_terms(self, spec, rows, sub):
        col = self.index.column(spec['field'])
        groups = {}
        if col is not None:
            for r in rows:
                v = col[r]
                for x in (v if v.__class__ is list else [v]):
                    if x is _MISSING or x is None:
                        continue
                    groups.setdefault(x, []).append(r)
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))
        size = int(spec.get('size', 10))
        buckets = [self._bucket(members, sub, key=key) for key, members in ordered[:size]]
        other = sum(len(m) for _k, m in ordered[size:])
        return {'doc_count_error_upper_bound': 0, 'sum_other_doc_count': other, 'buckets': buckets}


class EsDouble:
    """The server state plus the HTTP server. Use as a context manager."""

    def __init__(self, personality='es8', host='127.0.0.1', port=0, tls_context=None):
        if personality not in PERSONALITIES:
            raise ValueError('personality must be one of %s' % ', '.join(PERSONALITIES))
        self.personality = personality
        self.profile = PERSONALITIES[personality]
        self.indices = {}
        self.lock = threading.RLock()
        self.down = False
        self.fail_next = 0
        self.slow = 0.0
        self.require_auth = None
        self.require_sigv4 = None
        self.requests = 0
        self.response_bytes = 0
        self.paths = []
        self.last_headers = {}
        self.searches = []
        self.mutations = []
        self._host, self._port, self._tls = host, port, tls_context
        self.running = None

    # -- lifecycle -----------------------------------------------------------
    def start(self):
        double = self

        class Handler(QuietHandler):
            def _any(self):
                double.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        self.running = start(Handler, host=self._host, port=self._port, tls_context=self._tls)
        return self

    def stop(self):
        if self.running is not None:
            self.running.stop()
            self.running = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return self.running.url

    def reset_counters(self):
        with self.lock:
            self.requests = 0
            self.response_bytes = 0
            self.paths = []
            self.searches = []
            self.mutations = []

    # -- direct data access (fast seeding from tests and benches) -----------
    def index_docs(self, index, docs):
        with self.lock:
            target = self._index(index, create=True)
            for doc in docs:
                target.add(doc)

    def count(self, index):
        with self.lock:
            return sum(i.size - len(i.deleted) for i in self._resolve(index))

    def get_source(self, index, doc_id):
        """The stored document with this id, or None."""
        with self.lock:
            target = self.indices.get(index)
            if target is None or doc_id not in target.ids:
                return None
            return target.source(target.ids[doc_id])

    # -- HTTP -----------------------------------------------------------------
    def handle(self, handler):
        length = int(handler.headers.get('Content-Length') or 0)
        raw = handler.rfile.read(length) if length else b''
        with self.lock:
            self.requests += 1
            self.paths.append('%s %s' % (handler.command, handler.path))
            self.last_headers = {k.lower(): v for k, v in handler.headers.items()}
            if _mutating(handler.command, handler.path):
                self.mutations.append('%s %s' % (handler.command, handler.path))
            if self.fail_next > 0:
                self.fail_next -= 1
                fail = True
            else:
                fail = False
        if self.slow:
            time.sleep(self.slow)
        if self.down:
            handler.close_connection = True
            try:
                handler.connection.shutdown(2)
            except OSError:
                pass
            return
        if fail:
            self._send(handler, 503, EsError(503, 'unavailable_shards_exception', 'the double was told to fail').body(), 'application/json')
            return
        accept = handler.headers.get('Accept') or ''
        content_type = handler.headers.get('Content-Type') or ''
        try:
            response_type = self._check_media(accept, content_type, bool(raw))
            self._check_auth(handler)
            status, body = self._route(handler.command, handler.path, raw, content_type)
        except EsError as err:
            status, body = err.status, err.body()
            response_type = 'application/json'
        self._send(handler, status, body, response_type, head=handler.command == 'HEAD')

    def _send(self, handler, status, body, mimetype, head=False):
        data = json.dumps(body).encode('utf-8')
        handler.send_response(status)
        handler.send_header('Content-Type', mimetype if 'json' in mimetype else 'application/json')
        handler.send_header('Content-Length', str(len(data)))
        if self.profile['product']:
            handler.send_header('X-Elastic-Product', 'Elasticsearch')
        handler.end_headers()
        # Count before writing: the client may read the counters as soon as it has the answer.
        with self.lock:
            self.response_bytes += 0 if head else len(data)
        if not head:
            handler.wfile.write(data)

    def _check_media(self, accept, content_type, has_body):
        versions = set()
        for header in (accept, content_type if has_body else ''):
            for found in re.findall(r'compatible-with=(\d+)', header):
                versions.add(int(found))
        if not self.profile['compat']:
            # OpenSearch refuses Elastic vendor types on request bodies and ignores them in Accept.
            if has_body and 'vnd.elasticsearch' in content_type:
                raise EsError(406, 'media_type_header_exception', 'Content-Type header [%s] is not supported' % content_type)
            return 'application/json'
        if any(v not in self.profile['compat'] for v in versions) or len(versions) > 1:
            raise EsError(400, 'media_type_header_exception', 'Invalid media-type value on headers [Accept, Content-Type]',
                          caused_by=dict(type='status_exception', reason='A compatible version is required on both Content-Type and Accept '
                                         'headers if either one has requested a compatible version. Accept=%s, Content-Type=%s'
                                         % (accept or 'null', content_type or 'null')))
        if versions:
            version = next(iter(versions))
            return 'application/vnd.elasticsearch+json;compatible-with=%d' % version
        return 'application/json'

    def _check_auth(self, handler):
        got = handler.headers.get('Authorization')
        if self.require_auth is not None and got != self.require_auth:
            raise EsError(401, 'security_exception', 'unable to authenticate user for REST request [%s]' % urlsplit(handler.path).path)
        if self.require_sigv4 is not None:
            region, service = self.require_sigv4
            pattern = r'AWS4-HMAC-SHA256 Credential=[A-Z0-9]+/\d{8}/%s/%s/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}'
            if not got or not re.fullmatch(pattern % (re.escape(region), re.escape(service)), got) or not handler.headers.get('X-Amz-Date'):
                raise EsError(403, 'security_exception', 'The request signature we calculated does not match the signature you provided.')

    def info_body(self):
        version = {'number': self.profile['number'], 'build_flavor': 'default', 'lucene_version': '9.11.1',
                   'minimum_wire_compatibility_version': '7.17.0', 'minimum_index_compatibility_version': '7.0.0'}
        if self.profile['distribution']:
            version = {'distribution': self.profile['distribution'], 'number': self.profile['number'], 'lucene_version': '9.11.1'}
        tagline = 'The OpenSearch Project: https://opensearch.org/' if self.profile['distribution'] else 'You Know, for Search'
        return {'name': 'double', 'cluster_name': 'double', 'cluster_uuid': 'double-uuid', 'version': version, 'tagline': tagline}

    def _route(self, method, path, raw, content_type):
        parts = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segs = [unquote(s) for s in parts.path.split('/') if s]
        body = None
        if raw and 'ndjson' not in content_type and not (segs and segs[-1] == '_bulk'):
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise EsError(400, 'x_content_parse_exception', 'failed to parse request body: %s' % exc) from None
        if not segs:
            if method in ('GET', 'HEAD'):
                return 200, self.info_body()
            raise EsError(405, 'method_not_allowed', 'Incorrect HTTP method for uri [/] and method [%s]' % method)
        if segs[-1] == '_bulk':
            return self._bulk(segs[0] if len(segs) == 2 else None, raw, query)
        if segs[-1] == '_refresh':
            return 200, {'_shards': {'total': 1, 'successful': 1, 'failed': 0}}
        if segs[-1] in ('_search', '_count'):
            index = segs[0] if len(segs) == 2 else '*'
            return self._search(index, body or {}, count_only=segs[-1] == '_count')
        if len(segs) == 1 and not segs[0].startswith('_'):
            return self._index_op(method, segs[0], body)
        if len(segs) >= 2 and segs[1] in ('_doc', '_create'):
            return self._doc(method, segs[0], segs[1], segs[2] if len(segs) > 2 else None, body, query)
        raise EsError(400, 'invalid_index_name_exception' if segs[0].startswith('_') else 'illegal_argument_exception',
                      'no handler found for uri [%s] and method [%s]' % (parts.path, method))

    # -- indices ------------------------------------------------------------------
    def _index(self, name, create=False, date_fields=()):
        index = self.indices.get(name)
        if index is None:
            if not create:
                raise EsError(404, 'index_not_found_exception', 'no such index [%s]' % name, index=name)
            if name != name.lower() or any(c in name for c in '\\/*?"<>| ,#:') or name.startswith(('_', '-', '+')):
                raise EsError(400, 'invalid_index_name_exception', 'Invalid index name [%s]' % name, index=name)
            index = self.indices[name] = Index(name, date_fields)
        return index

    def _resolve(self, expression):
        found = []
        for part in expression.split(','):
            if any(c in part for c in '*?'):
                found.extend(i for n, i in sorted(self.indices.items()) if fnmatch.fnmatchcase(n, part))
            elif part in ('_all',):
                found.extend(self.indices.values())
            else:
                found.append(self._index(part))
        return found

    def _index_op(self, method, name, body):
        with self.lock:
            if method == 'PUT':
                if name in self.indices:
                    raise EsError(400, 'resource_already_exists_exception', 'index [%s/abc] already exists' % name, index=name)
                props = ((body or {}).get('mappings') or {}).get('properties') or {}
                dates = [f for f, m in flatten_mapping(props).items() if m.get('type') in ('date', 'date_nanos')]
                self._index(name, create=True, date_fields=dates)
                return 200, {'acknowledged': True, 'shards_acknowledged': True, 'index': name}
            if method == 'DELETE':
                self._index(name)
                del self.indices[name]
                return 200, {'acknowledged': True}
            if method in ('GET', 'HEAD'):
                self._index(name)
                return 200, {name: {'aliases': {}, 'mappings': {}, 'settings': {}}}
        raise EsError(405, 'method_not_allowed', 'Incorrect HTTP method for uri [/%s] and method [%s]' % (name, method))

    def _doc(self, method, name, kind, doc_id, body, query):
        with self.lock:
            if method in ('GET', 'HEAD'):
                index = self._index(name)
                if doc_id in index.ids:
                    seq_no, version = index.versions.get(doc_id, (0, 1))
                    return 200, {'_index': name, '_id': doc_id, '_version': version, '_seq_no': seq_no, '_primary_term': 1, 'found': True,
                                 '_source': index.source(index.ids[doc_id])}
                return 404, {'_index': name, '_id': doc_id, 'found': False}
            condition = _condition(query)
            if method == 'DELETE' and kind == '_doc' and doc_id is not None:
                return self._delete(name, doc_id, condition)
            if method not in ('PUT', 'POST'):
                raise EsError(405, 'method_not_allowed', 'Incorrect HTTP method [%s]' % method)
            if not isinstance(body, dict):
                raise EsError(400, 'parse_exception', 'request body is required')
            create = kind == '_create' or query.get('op_type') == 'create'
            if create and condition is not None:
                raise EsError(400, 'action_request_validation_exception',
                              'Validation Failed: 1: create operations do not support compare and set. use index instead;')
            return self._write(name, doc_id, body, create, condition)

    def _delete(self, name, doc_id, condition):
        index = self._index(name)
        if doc_id not in index.ids:
            if condition is not None:
                raise _conflict(doc_id, condition, None, name)
            return 404, {'_index': name, '_id': doc_id, 'result': 'not_found', '_shards': {'total': 1, 'successful': 1, 'failed': 0}}
        current = index.versions.get(doc_id, (0, 1))[0]
        if condition is not None and condition != (current, 1):
            raise _conflict(doc_id, condition, current, name)
        seq_no, version = index.remove(doc_id)
        return 200, {'_index': name, '_id': doc_id, '_version': version, 'result': 'deleted', '_seq_no': seq_no, '_primary_term': 1,
                     '_shards': {'total': 1, 'successful': 1, 'failed': 0}}

    def _write(self, name, doc_id, doc, create, condition=None):
        index = self._index(name, create=True)
        if doc_id is None:
            doc_id = uuid.uuid4().hex[:20]
        exists = doc_id in index.ids
        if exists and create:
            raise EsError(409, 'version_conflict_engine_exception',
                          '[%s]: version conflict, document already exists (current version [%d])' % (doc_id, index.versions[doc_id][1]),
                          index=name, shard='0', index_uuid='double')
        if condition is not None:
            current = index.versions[doc_id][0] if exists else None
            if current is None or condition != (current, 1):
                raise _conflict(doc_id, condition, current, name)
        index.add(doc, doc_id)
        seq_no, version = index.next_seq(doc_id)
        return (200 if exists else 201), {'_index': name, '_id': doc_id, '_version': version, 'result': 'updated' if exists else 'created',
                                          '_shards': {'total': 1, 'successful': 1, 'failed': 0}, '_seq_no': seq_no, '_primary_term': 1}

    def _bulk(self, default_index, raw, _query):
        lines = [line for line in raw.decode('utf-8').split('\n') if line.strip()]
        items = []
        errors = False
        i = 0
        with self.lock:
            while i < len(lines):
                action = json.loads(lines[i])
                op, meta = next(iter(action.items()))
                name = meta.get('_index', default_index)
                doc_id = meta.get('_id')
                if op == 'delete':
                    items.append({op: {'_index': name, '_id': doc_id, 'status': 404, 'result': 'not_found'}})
                    i += 1
                    continue
                doc = json.loads(lines[i + 1])
                i += 2
                try:
                    status, result = self._write(name, doc_id, doc, create=op == 'create')
                    result['status'] = status
                except EsError as err:
                    errors = True
                    result = {'_index': name, '_id': doc_id, 'status': err.status, 'error': {'type': err.kind, 'reason': err.reason}}
                items.append({op: result})
        return 200, {'took': 1, 'errors': errors, 'items': items}

    def _search(self, expression, body, count_only):
        started = time.monotonic()
        unknown = set(body) - {'query', 'aggs', 'aggregations', 'size', 'track_total_hits', 'from', 'sort', '_source', 'timeout'}
        if unknown:
            raise EsError(400, 'parsing_exception', 'Unknown key for a START_OBJECT in [%s].' % sorted(unknown)[0])
        size, offset = _count_param(body, 'size', 10), _count_param(body, 'from', 0)
        sort = _sort_spec(body.get('sort'))
        with self.lock:
            self.searches.append(body)
            parts = self._resolve(expression)
            indices = [merge_indices(expression, parts)] if len(parts) > 1 else parts
            now_ms = time.time() * 1000.0
            total = 0
            merged_aggs = None
            hits = []
            for index in indices:
                searcher = Searcher(index, now_ms)
                rows = searcher.match(body.get('query', {'match_all': {}}), range(index.size))
                gone = _deleted_rows(parts) if len(parts) > 1 else index.deleted
                if gone:
                    rows = [r for r in rows if r not in gone]
                total += len(rows)
                if not count_only and (body.get('aggs') or body.get('aggregations')):
                    merged_aggs = searcher.aggregate(body.get('aggs') or body.get('aggregations'), rows)
                if not count_only and size > 0:
                    hits = _hits(parts, index, list(rows), sort, offset, size)
        if count_only:
            return 200, {'count': total, '_shards': {'total': 1, 'successful': 1, 'skipped': 0, 'failed': 0}}
        took = int((time.monotonic() - started) * 1000)
        max_score = None if sort or not hits else 1.0
        response = {'took': took, 'timed_out': False, '_shards': {'total': 1, 'successful': 1, 'skipped': 0, 'failed': 0},
                    'hits': {'total': {'value': total, 'relation': 'eq'}, 'max_score': max_score, 'hits': hits}}
        if body.get('aggs') or body.get('aggregations'):
            response['aggregations'] = merged_aggs if merged_aggs is not None else _empty_aggs(body.get('aggs') or body.get('aggregations'))
        return 200, response


def _mutating(method, path):
    if method in ('GET', 'HEAD'):
        return False
    last = urlsplit(path).path.rstrip('/').rsplit('/', 1)[-1]
    return last not in ('_search', '_count', '_refresh')


def _condition(query):
    """(if_seq_no, if_primary_term) from the URL parameters, or None."""
    seq_no, term = query.get('if_seq_no'), query.get('if_primary_term')
    if seq_no is None and term is None:
        return None
    if seq_no is None or term is None:
        missing = 'if_primary_term' if term is None else 'if_seq_no'
        raise EsError(400, 'action_request_validation_exception', 'Validation Failed: 1: %s is required with the other;' % missing)
    try:
        return int(seq_no), int(term)
    except ValueError:
        raise EsError(400, 'illegal_argument_exception', 'if_seq_no and if_primary_term must be numbers') from None


def _conflict(doc_id, condition, current, name):
    if current is None:
        reason = '[%s]: version conflict, required seqNo [%d], primary term [%d]. but no document was found' % (doc_id, condition[0], condition[1])
    else:
        reason = ('[%s]: version conflict, required seqNo [%d], primary term [%d]. current document has seqNo [%d] and primary term [1]'
                  % (doc_id, condition[0], condition[1], current))
    return EsError(409, 'version_conflict_engine_exception', reason, index=name, shard='0', index_uuid='double')


def _deleted_rows(parts):
    out, first = set(), 0
    for part in parts:
        out.update(first + row for row in part.deleted)
        first += part.size
    return out


def _count_param(body, name, default):
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EsError(400, 'illegal_argument_exception', '[%s] parameter cannot be negative or non-integer, found [%s]' % (name, value))
    return value


def _sort_spec(sort):
    """(field, descending) from the one-field sort forms, or None."""
    if sort is None:
        return None
    items = sort if isinstance(sort, list) else [sort]
    if len(items) != 1:
        raise EsError(400, 'illegal_argument_exception', 'the double sorts on exactly one field, got %s' % json.dumps(sort))
    item = items[0]
    order = 'asc'
    if isinstance(item, str):
        field = item
    elif isinstance(item, dict) and len(item) == 1:
        field, spec = next(iter(item.items()))
        if isinstance(spec, str):
            order = spec
        elif isinstance(spec, dict) and not set(spec) - {'order', 'unmapped_type'}:
            order = spec.get('order', 'asc')
        else:
            raise EsError(400, 'parsing_exception', 'the double supports only order and unmapped_type in a sort on [%s]' % field)
    else:
        raise EsError(400, 'parsing_exception', 'malformed sort %s' % json.dumps(sort))
    if order not in ('asc', 'desc'):
        raise EsError(400, 'parsing_exception', 'Unknown sort order [%s], valid orders are [asc, desc]' % order)
    return field, order == 'desc'


def _sort_value(value, descending):
    """A comparable key, or None for a missing value (sorted last either way)."""
    if value.__class__ is list:
        present = [v for v in value if v is not None]
        if not present:
            return None
        keys = [_sort_value(v, descending) for v in present]
        return max(keys) if descending else min(keys)
    if value is _MISSING or value is None:
        return None
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, str(value))


def _hits(parts, index, rows, sort, offset, size):
    """The page of hits; ``index`` may be the merged view over ``parts``."""
    keys = {}
    if sort:
        field, descending = sort
        column = index.column(field)
        if column is not None:
            keys = {r: _sort_value(column[r], descending) for r in rows}
            present = sorted((r for r in rows if keys[r] is not None), key=keys.__getitem__, reverse=descending)
            rows = present + [r for r in rows if keys[r] is None]
    starts, first = [], 0
    for part in parts:
        starts.append(first)
        first += part.size
    hits = []
    for row in rows[offset:offset + size]:
        number = bisect.bisect_right(starts, row) - 1
        part, local = parts[number], row - starts[number]
        hit = {'_index': part.name, '_id': part.doc_id(local), '_score': None if sort else 1.0, '_source': part.source(local)}
        if sort:
            key = keys.get(row)
            hit['sort'] = [None if key is None else (int(key[1]) if isinstance(key[1], float) and key[1].is_integer() else key[1])]
        hits.append(hit)
    return hits


def flatten_mapping(props, prefix=''):
    out = {}
    for name, spec in props.items():
        if 'properties' in spec:
            out.update(flatten_mapping(spec['properties'], prefix + name + '.'))
        else:
            out[prefix + name] = spec
    return out


def merge_indices(name, indices):
    """One read-only column view over several indices (a pattern search)."""
    merged = Index(name)
    for index in indices:
        merged.date_fields |= index.date_fields
        for field in index.columns:
            merged.columns.setdefault(field, [])
    for index in indices:
        for field, column in merged.columns.items():
            column.extend(index.columns.get(field) or [_MISSING] * index.size)
        merged.size += index.size
    return merged


def _empty_aggs(aggs):
    empty = Index('empty')
    return Searcher(empty, 0).aggregate(aggs, [])


def iis_log_docs(count, host, app, start, end, error_rate=0.0, latency_ms=50.0, rnd=None, spread=0.3):
    """``count`` IIS-like log documents (as Filebeat/Logstash ship them),
    timestamps uniform in [start, end] (aware datetimes), latency log-normal
    around ``latency_ms``, a share ``error_rate`` answered with 500."""
    import random
    rnd = rnd or random.Random(0)
    t0, t1 = start.timestamp(), end.timestamp()
    for _doc in range(count):
        moment = rnd.uniform(t0, t1)
        yield {
            '@timestamp': iso(moment * 1000.0),
            'host': {'name': host},
            'application_name': app,
            'response': 500 if rnd.random() < error_rate else 200,
            'time_taken': int(round(rnd.lognormvariate(math.log(latency_ms), spread))),
            'cs_method': 'GET',
            'cs_uri_stem': '/api/items',
        }
