/*
 * test_window.c - tests of the per-entity window state (window.c) against
 * a brute-force reference written here from docs/windows.md: the reference
 * keeps the raw list of an entity's events since its last reset and
 * computes every aggregate straight from the definitions (retention,
 * max_events, TTL, hop buckets and their grouping), and randomized streams
 * compare the two bit for bit. Also: encode/decode round trips mid-stream,
 * corrupted states, out-of-memory injection and bounded memory.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/pipeline/exact_sum.h"
#include "../../src/pipeline/window.h"
#include "test.h"

#define NUMS 3
#define STRS 2
#define FILTS 3

/* ---- a small deterministic random generator ---- */

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}
static int64_t rnd_below(int64_t n) { return (int64_t)(rnd() % (uint64_t)n); }

/* ---- exact sums for the reference ----
 * Shewchuk's non-overlapping expansions, as Python's math.fsum keeps them
 * (a different method from window.c's fixed-point limbs): the sum of the
 * terms added is exactly the sum of the partials, and the final rounding
 * is to nearest, ties to even. Terms are finite and the sums stay far
 * from overflow in these tests. */

typedef struct expansion {
  double part[64];
  int n;
} expansion;

static void expansion_add(expansion *x, double v) {
  int i = 0;
  for (int k = 0; k < x->n; k++) {
    double y = x->part[k];
    if (fabs(v) < fabs(y)) {
      double swap = v;
      v = y;
      y = swap;
    }
    double hi = v + y, lo = y - (hi - v);
    if (lo != 0.0) x->part[i++] = lo;
    v = hi;
  }
  x->part[i++] = v;
  x->n = i;
  if (x->n == 64) abort(); /* cannot happen: partials do not overlap */
}

static double expansion_round(const expansion *x) {
  int n = x->n;
  if (n == 0) return 0.0;
  double hi = x->part[--n], lo = 0.0;
  while (n > 0) {
    double v = hi, y = x->part[--n];
    hi = v + y;
    lo = y - (hi - v);
    if (lo != 0.0) break;
  }
  /* Halfway between two doubles: the partials below say which way. */
  if (n > 0 && ((lo < 0 && x->part[n - 1] < 0) ||
                (lo > 0 && x->part[n - 1] > 0))) {
    double y = lo * 2, v = hi + y;
    if (y == v - hi) hi = v;
  }
  return hi + 0.0;
}

/* Adds a * b exactly (no underflow in these tests). */
static void expansion_add_product(expansion *x, double a, double b) {
  double p = a * b;
  expansion_add(x, p);
  expansion_add(x, fma(a, b, -p));
}

/* ---- the reference ---- */

typedef struct ref_event {
  int64_t time;
  double num[NUMS];
  char *str[STRS];
  size_t len[STRS];
  unsigned char filt[FILTS];
} ref_event;

typedef struct ref_entity {
  ref_event *ev; /* since the last reset, in arrival order */
  size_t n, cap;
  int64_t max_time;
} ref_entity;

static void ref_clear(ref_entity *r) {
  for (size_t i = 0; i < r->n; i++)
    for (int c = 0; c < STRS; c++) free(r->ev[i].str[c]);
  r->n = 0;
  r->max_time = INT64_MIN;
}

static void ref_free(ref_entity *r) {
  ref_clear(r);
  free(r->ev);
}

static int64_t ref_floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if (a % b != 0 && a < 0) q--;
  return q;
}

/* A partial aggregate, folded and combined with the formulas of
 * docs/windows.md. */
typedef struct ref_partial {
  int64_t max_time, last_time;
  uint64_t count, values;
  double a, b;
} ref_partial;

static ref_partial ref_empty(void) {
  ref_partial p = {INT64_MIN, INT64_MIN, 0, 0, 0.0, 0.0};
  return p;
}

static void ref_add(tdm__agg_kind k, ref_partial *p, int64_t t, double x) {
  p->count++;
  if (t > p->max_time) p->max_time = t;
  if (isnan(x)) return;
  p->values++;
  if (k == TDM__AGG_SUM || k == TDM__AGG_MEAN) p->a += x;
  if (k == TDM__AGG_MIN && (p->values == 1 || x < p->a)) p->a = x;
  if (k == TDM__AGG_MAX && (p->values == 1 || x > p->a)) p->a = x;
  if (k == TDM__AGG_STDDEV) {
    double d = x - p->a;
    p->a += d / (double)p->values;
    p->b += d * (x - p->a);
  }
  if (k == TDM__AGG_LAST && t >= p->last_time) {
    p->last_time = t;
    p->a = x;
  }
}

static void ref_combine(tdm__agg_kind k, ref_partial *p, const ref_partial *q) {
  p->count += q->count;
  if (q->max_time > p->max_time) p->max_time = q->max_time;
  if (q->values == 0) return;
  if (p->values == 0) {
    p->values = q->values;
    p->a = q->a;
    p->b = q->b;
    p->last_time = q->last_time;
    return;
  }
  if (k == TDM__AGG_SUM || k == TDM__AGG_MEAN) p->a += q->a;
  if (k == TDM__AGG_MIN && q->a < p->a) p->a = q->a;
  if (k == TDM__AGG_MAX && q->a > p->a) p->a = q->a;
  if (k == TDM__AGG_STDDEV) {
    double n = (double)(p->values + q->values);
    double delta = q->a - p->a;
    p->a = p->a + delta * ((double)q->values / n);
    p->b = p->b + q->b +
           delta * delta * ((double)p->values * (double)q->values / n);
  }
  if (k == TDM__AGG_LAST && q->last_time >= p->last_time) {
    p->last_time = q->last_time;
    p->a = q->a;
  }
  p->values += q->values;
}

static double ref_result(tdm__agg_kind k, const ref_partial *p) {
  switch (k) {
    case TDM__AGG_COUNT: return (double)p->count;
    case TDM__AGG_SUM: return p->a;
    case TDM__AGG_MEAN: return p->values ? p->a / (double)p->values : NAN;
    case TDM__AGG_STDDEV:
      return p->values ? sqrt(p->b / (double)p->values) : NAN;
    default: return p->values ? p->a : NAN;
  }
}

static int reads_number(tdm__agg_kind k) {
  return k >= TDM__AGG_SUM && k <= TDM__AGG_LAST;
}

static int passes(const tdm__agg_def *d, const ref_event *e) {
  return d->filter == SIZE_MAX || e->filt[d->filter] != 0;
}

static double value_of(const tdm__agg_def *d, const ref_event *e) {
  return reads_number(d->kind) ? e->num[d->input] : NAN;
}

typedef struct bucket_member {
  int64_t bucket;
  size_t arrival;
} bucket_member;

static int member_cmp(const void *a, const void *b) {
  const bucket_member *x = a, *y = b;
  if (x->bucket != y->bucket) return x->bucket < y->bucket ? -1 : 1;
  return x->arrival < y->arrival ? -1 : x->arrival > y->arrival;
}

/* Applies ev (its strings are copied) and computes every aggregate. */
static void ref_apply(const tdm__window_config *c, ref_entity *r,
                      const ref_event *ev, double *out) {
  int64_t t = ev->time;
  if (r->n > 0 && c->ttl_ms > 0 && t - r->max_time > c->ttl_ms) ref_clear(r);
  if (r->n == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 64;
    r->ev = realloc(r->ev, r->cap * sizeof *r->ev);
  }
  ref_event *me = &r->ev[r->n++];
  *me = *ev;
  for (int s = 0; s < STRS; s++) {
    if (ev->str[s] == NULL) continue;
    me->str[s] = malloc(ev->len[s] + 1);
    memcpy(me->str[s], ev->str[s], ev->len[s]);
  }
  for (int s = 0; s < NUMS; s++)
    if (!isnan(me->num[s])) me->num[s] += 0.0; /* -0.0 is 0.0 */
  if (t > r->max_time) r->max_time = t;
  int64_t m = r->max_time;
  size_t max_events = c->max_events ? c->max_events : 100000;
  int64_t reach = 0;
  for (size_t a = 0; a < c->num_aggs; a++) {
    const tdm__agg_def *d = &c->aggs[a];
    if (d->kind == TDM__AGG_SINCE_LAST || d->window_ms == 0) continue;
    int64_t span = d->hop_ms > 0 ? d->hop_ms : d->window_ms;
    if (span > reach) reach = span;
  }
  int64_t dead = m - reach - c->lateness_ms;
  size_t self = r->n - 1;
  /* The earlier events an aggregate may see: the last max_events - 1
   * arrivals, still live. */
#define VISIBLE(j) \
  ((j) < self && (j) + max_events >= r->n && r->ev[j].time > dead)
  for (size_t a = 0; a < c->num_aggs; a++) {
    const tdm__agg_def *d = &c->aggs[a];
    tdm__agg_kind k = d->kind;
    if (k == TDM__AGG_SINCE_LAST) {
      int64_t p = INT64_MIN;
      for (size_t j = 0; j < self; j++)
        if (passes(d, &r->ev[j]) && r->ev[j].time > p) p = r->ev[j].time;
      out[a] = NAN;
      if (p != INT64_MIN && (d->window_ms == 0 || t - p < d->window_ms))
        out[a] = (double)(t - p) / 1000.0;
      continue;
    }
    if (d->window_ms == 0) {
      ref_partial acc = ref_empty();
      for (size_t j = 0; j <= self; j++)
        if (passes(d, &r->ev[j]))
          ref_add(k, &acc, r->ev[j].time, value_of(d, &r->ev[j]));
      out[a] = ref_result(k, &acc);
      continue;
    }
    if (d->hop_ms == 0) {
      /* Members: visible earlier events in (t - w, t], then the event. */
      size_t *mem = malloc(r->n * sizeof *mem), nm = 0;
      for (size_t j = 0; j < self; j++)
        if (VISIBLE(j) && r->ev[j].time > t - d->window_ms &&
            r->ev[j].time <= t && passes(d, &r->ev[j]))
          mem[nm++] = j;
      if (passes(d, me)) mem[nm++] = self;
      double v = NAN;
      if (k == TDM__AGG_COUNT) v = (double)nm;
      if (k == TDM__AGG_SUM || k == TDM__AGG_MEAN || k == TDM__AGG_STDDEV) {
        /* The correctly rounded sum; the mean is it over n; stddev the
         * square root of the correctly rounded sum of (x - mean)^2 over
         * n (docs/windows.md). */
        expansion total = {{0}, 0};
        size_t n = 0;
        for (size_t i = 0; i < nm; i++) {
          double x = r->ev[mem[i]].num[d->input];
          if (!isnan(x)) expansion_add(&total, x), n++;
        }
        double sum = expansion_round(&total);
        if (k == TDM__AGG_SUM) v = sum;
        if (n > 0 && k == TDM__AGG_MEAN) v = sum / (double)n;
        if (n > 0 && k == TDM__AGG_STDDEV) {
          double mean = sum / (double)n;
          expansion squares = {{0}, 0};
          for (size_t i = 0; i < nm; i++) {
            double x = r->ev[mem[i]].num[d->input];
            if (isnan(x)) continue;
            /* x - mean = hi + lo exactly (Knuth's two-sum); its square
             * in three exact products. */
            double hi = x - mean, bv = hi - x, av = hi - bv;
            double lo = (x - av) + (-mean - bv);
            expansion_add_product(&squares, hi, hi);
            expansion_add_product(&squares, 2 * hi, lo);
            expansion_add_product(&squares, lo, lo);
          }
          v = sqrt(expansion_round(&squares) / (double)n);
        }
      }
      if (k == TDM__AGG_MIN || k == TDM__AGG_MAX) {
        for (size_t i = 0; i < nm; i++) {
          double x = r->ev[mem[i]].num[d->input];
          if (isnan(x)) continue;
          if (isnan(v) || (k == TDM__AGG_MIN ? x < v : x > v)) v = x;
        }
      }
      if (k == TDM__AGG_LAST) {
        int64_t best = INT64_MIN;
        for (size_t i = 0; i < nm; i++) {
          double x = r->ev[mem[i]].num[d->input];
          if (!isnan(x) && r->ev[mem[i]].time >= best)
            best = r->ev[mem[i]].time, v = x;
        }
      }
      if (k == TDM__AGG_DISTINCT) {
        size_t distinct = 0;
        for (size_t i = 0; i < nm; i++) {
          const ref_event *x = &r->ev[mem[i]];
          if (x->str[d->input] == NULL) continue;
          int seen = 0;
          for (size_t q = 0; q < i && !seen; q++) {
            const ref_event *y = &r->ev[mem[q]];
            seen = y->str[d->input] != NULL &&
                   y->len[d->input] == x->len[d->input] &&
                   memcmp(y->str[d->input], x->str[d->input],
                          x->len[d->input]) == 0;
          }
          distinct += !seen;
        }
        v = (double)distinct;
      }
      out[a] = v;
      free(mem);
      continue;
    }
    /* Hopped. */
    int64_t h = d->hop_ms, kb = d->window_ms / h;
    int64_t threshold = ref_floor_div(m - c->lateness_ms, h) - kb;
    int64_t bt = ref_floor_div(t, h);
    ref_partial acc = ref_empty();
    if (bt < threshold) {
      if (passes(d, me)) ref_add(k, &acc, t, value_of(d, me));
      out[a] = ref_result(k, &acc);
      continue;
    }
    int64_t low = bt - kb > threshold ? bt - kb : threshold;
    bucket_member *bm = malloc(r->n * sizeof *bm);
    size_t nb = 0;
    for (size_t j = 0; j <= self; j++) {
      int64_t b = ref_floor_div(r->ev[j].time, h);
      if (b >= low && b <= bt && passes(d, &r->ev[j]))
        bm[nb].bucket = b, bm[nb].arrival = j, nb++;
    }
    qsort(bm, nb, sizeof *bm, member_cmp);
    for (size_t i = 0; i < nb;) {
      size_t e = i;
      ref_partial whole = ref_empty();
      while (e < nb && bm[e].bucket == bm[i].bucket) {
        const ref_event *x = &r->ev[bm[e].arrival];
        ref_add(k, &whole, x->time, value_of(d, x));
        e++;
      }
      if (bm[i].bucket == bt && whole.max_time > t) {
        int all_visible = 1;
        ref_partial cut = ref_empty();
        for (size_t q = i; q < e; q++) {
          size_t j = bm[q].arrival;
          if (j == self) continue;
          if (!VISIBLE(j)) all_visible = 0;
          if (r->ev[j].time <= t)
            ref_add(k, &cut, r->ev[j].time, value_of(d, &r->ev[j]));
        }
        if (passes(d, me)) ref_add(k, &cut, t, value_of(d, me));
        ref_combine(k, &acc, all_visible ? &cut : &whole);
      } else {
        ref_combine(k, &acc, &whole);
      }
      i = e;
    }
    free(bm);
    out[a] = ref_result(k, &acc);
  }
#undef VISIBLE
}

/* ---- helpers ---- */

static int same_value(double a, double b) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  return memcmp(&a, &b, sizeof a) == 0;
}

static const char *const kind_label[] = {"count", "sum",  "mean",
                                         "min",   "max",  "stddev",
                                         "last",  "since_last", "distinct"};

static void to_event(const ref_event *r, tdm__str *strs, tdm__window_event *e) {
  for (int s = 0; s < STRS; s++) {
    strs[s].data = r->str[s];
    strs[s].len = r->len[s];
  }
  e->time_ms = r->time;
  e->numbers = r->num;
  e->strings = strs;
  e->filters = r->filt;
}

static const char *const pool[] = {"visa", "", "amazon", "a\0b", "a", "shop-with-a-rather-long-name"};
static const size_t pool_len[] = {4, 0, 6, 3, 1, 28};

/* A random event near time t of the stream. */
static void random_event(ref_event *e, int64_t t, int regime) {
  memset(e, 0, sizeof *e);
  e->time = t;
  for (int i = 0; i < NUMS; i++) {
    uint64_t z = rnd() % 100;
    if (z < 15) {
      e->num[i] = NAN;
    } else if (z < 18) {
      e->num[i] = -0.0;
    } else if (regime == 0) {
      e->num[i] = (double)(rnd_below(81) - 40) / 4.0;
    } else {
      double mag = pow(10.0, (double)rnd_below(12) - 4);
      e->num[i] = ((double)(rnd() >> 11) / 9007199254740992.0 - 0.3) * mag;
    }
  }
  for (int i = 0; i < STRS; i++) {
    if (rnd() % 7 == 0) continue;
    size_t p = (size_t)rnd_below(6);
    e->str[i] = (char *)pool[p];
    e->len[i] = pool_len[p];
  }
  for (int i = 0; i < FILTS; i++) e->filt[i] = rnd() % 3 != 0;
}

static void random_config(tdm__window_config *c, tdm__agg_def *aggs,
                          int64_t unit) {
  memset(c, 0, sizeof *c);
  size_t n = 1 + (size_t)rnd_below(8);
  for (size_t i = 0; i < n; i++) {
    tdm__agg_def *d = &aggs[i];
    d->kind = (tdm__agg_kind)rnd_below(9);
    static const int64_t mult[] = {1, 2, 3, 5, 10, 24, 60, 100, 1440};
    d->window_ms = unit * mult[rnd_below(9)];
    if (rnd() % 50 == 0) d->window_ms = 1;
    d->hop_ms = 0;
    if (d->kind != TDM__AGG_DISTINCT && rnd() % 7 == 0) d->window_ms = 0;
    if (d->window_ms > 0 && d->kind != TDM__AGG_DISTINCT &&
        d->kind != TDM__AGG_SINCE_LAST && rnd() % 5 < 2) {
      static const int64_t div[] = {1, 2, 3, 4, 5, 10, 24};
      int64_t q = div[rnd_below(7)];
      d->hop_ms = d->window_ms % q == 0 ? d->window_ms / q : d->window_ms;
    }
    d->input = (size_t)rnd_below(d->kind == TDM__AGG_DISTINCT ? STRS : NUMS);
    d->filter = rnd() % 2 ? SIZE_MAX : (size_t)rnd_below(FILTS);
  }
  c->aggs = aggs;
  c->num_aggs = n;
  c->num_numbers = NUMS;
  c->num_strings = STRS;
  c->num_filters = FILTS;
  static const int64_t late[] = {0, 1, 10, 100};
  c->lateness_ms = unit * late[rnd_below(4)] / (rnd() % 2 ? 1 : 7);
  c->ttl_ms = rnd() % 3 == 0 ? unit * (1 + rnd_below(300)) : 0;
  static const size_t caps[] = {0, 1, 2, 3, 7, 50, 0, 0};
  c->max_events = caps[rnd_below(8)];
}

/* Runs one random stream through the entity and the reference. */
static int run_stream(uint64_t seed, int events) {
  rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
  static const int64_t units[] = {1, 10, 1000, 60000, 3600000};
  int64_t unit = units[rnd_below(5)];
  tdm__agg_def aggs[8];
  tdm__window_config c;
  random_config(&c, aggs, unit);
  tdm__window_spec *spec;
  tdm_error err;
  if (tdm__window_spec_new(&c, &spec, &err) != TDM_OK) {
    fprintf(stderr, "seed %llu: %s\n", (unsigned long long)seed, err.message);
    return 1;
  }
  tdm__entity *ent;
  CHECK_INT(tdm__entity_new(spec, &ent), TDM_OK);
  ref_entity ref = {NULL, 0, 0, INT64_MIN};
  int regime = (int)(rnd() % 2);
  int64_t t = -rnd_below(unit * 50) + (rnd() % 2 ? rnd_below(unit * 10) : 0);
  int failed = 0;
  for (int i = 0; i < events && !failed; i++) {
    uint64_t z = rnd() % 100;
    int64_t time = t;
    if (z < 15) {
      /* a duplicate time */
    } else if (z < 25) {
      time = t - rnd_below(unit * 30 + 1); /* late */
    } else if (z < 27) {
      t += unit * (100 + rnd_below(1000)); /* a long gap */
      time = t;
    } else if (z < 60) {
      t += rnd_below(unit / 10 + 2); /* a burst */
      time = t;
    } else {
      t += rnd_below(unit * 3 + 1);
      time = t;
    }
    ref_event ev;
    random_event(&ev, time, regime);
    tdm__str strs[STRS];
    tdm__window_event we;
    to_event(&ev, strs, &we);
    double got[8], want[8];
    CHECK_INT(tdm__entity_apply(spec, ent, &we, got), TDM_OK);
    ref_apply(&c, &ref, &ev, want);
    CHECK_INT(tdm__entity_max_time(ent), ref.max_time);
    for (size_t a = 0; a < c.num_aggs; a++) {
      if (same_value(got[a], want[a]) && !(got[a] == 0 && signbit(got[a])))
        continue;
      fprintf(stderr,
              "seed %llu event %d (t=%lld): agg %zu %s window %lld hop %lld "
              "filter %zu lateness %lld ttl %lld max_events %zu: got %.17g "
              "want %.17g\n",
              (unsigned long long)seed, i, (long long)time, a,
              kind_label[aggs[a].kind], (long long)aggs[a].window_ms,
              (long long)aggs[a].hop_ms, aggs[a].filter,
              (long long)c.lateness_ms, (long long)c.ttl_ms, c.max_events,
              got[a], want[a]);
      failed = 1;
    }
    if (i % 97 == 50) {
      /* Persist and restore mid-stream; the copy must encode the same. */
      tdm__buf a = {0}, b = {0};
      CHECK_INT(tdm__entity_encode(spec, ent, &a), TDM_OK);
      tdm__entity *copy;
      if (tdm__entity_decode(spec, a.data, a.len, &copy, &err) != TDM_OK) {
        fprintf(stderr, "seed %llu: decode: %s\n", (unsigned long long)seed,
                err.message);
        return 1;
      }
      CHECK_INT(tdm__entity_encode(spec, copy, &b), TDM_OK);
      CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
      tdm__buf_free(&a);
      tdm__buf_free(&b);
      tdm__entity_free(ent);
      ent = copy;
    }
  }
  tdm__entity_free(ent);
  tdm__window_spec_free(spec);
  ref_free(&ref);
  return failed;
}

TEST(window_matches_reference) {
  for (uint64_t seed = 1; seed <= 400; seed++)
    if (run_stream(seed, 600) != 0) return 1;
  return 0;
}

/* exact_sum against the expansions: sums of random doubles of every
 * magnitude (subnormals, cancellation, ties), added, partly subtracted
 * again, rounded; and the sum of squared deviations stddev uses. */
TEST(exact_sum_matches_expansions) {
  rng_state = 2022;
  for (int round = 0; round < 3000; round++) {
    int n = 1 + (int)rnd_below(40), shape = (int)rnd_below(4);
    double x[40];
    for (int i = 0; i < n; i++) {
      double u = (double)(rnd() >> 11) / 9007199254740992.0 - 0.5;
      if (shape == 0) x[i] = ldexp(u, (int)rnd_below(200) - 100);
      if (shape == 1) x[i] = ldexp(u, (int)rnd_below(1100) - 1074);
      if (shape == 2) x[i] = (double)(rnd_below(2001) - 1000) / 8.0;
      if (shape == 3) x[i] = i % 2 ? 1e16 : (i % 3 ? -1e16 : u);
    }
    tdm__exact_sum sum, squares;
    tdm__exact_init(&sum);
    tdm__exact_init(&squares);
    expansion want = {{0}, 0};
    for (int i = 0; i < n; i++) {
      CHECK_INT(tdm__exact_reserve(&sum, x[i], 0), TDM_OK);
      CHECK_INT(tdm__exact_reserve(&squares, x[i], 1), TDM_OK);
      tdm__exact_add(&sum, x[i], 0, 1);
      tdm__exact_add(&squares, x[i], 1, 1);
      expansion_add(&want, x[i]);
      /* Values that come and go leave nothing behind. */
      double y = x[i] * 3.0 + 1.0;
      CHECK_INT(tdm__exact_reserve(&sum, y, 0), TDM_OK);
      tdm__exact_add(&sum, y, 0, 1);
      tdm__exact_add(&sum, y, 0, -1);
    }
    double got = tdm__exact_round(&sum), expected = expansion_round(&want);
    if (!same_value(got, expected) || (got == 0 && signbit(got))) {
      fprintf(stderr, "round %d: sum %a, expansion %a\n", round, got,
              expected);
      return 1;
    }
    if (shape != 1) { /* squares of subnormals are below every double */
      double mean = got / n;
      int64_t limbs[TDM__EXACT_LIMBS];
      tdm__exact_sum d;
      tdm__exact_copy_full(&d, limbs, &squares);
      tdm__exact_add_scaled(&d, &sum, mean, -1, 1);
      tdm__exact_add_count_square(&d, mean, (uint64_t)n);
      expansion dev = {{0}, 0};
      for (int i = 0; i < n; i++) {
        double hi = x[i] - mean, bv = hi - x[i], av = hi - bv;
        double lo = (x[i] - av) + (-mean - bv);
        expansion_add_product(&dev, hi, hi);
        expansion_add_product(&dev, 2 * hi, lo);
        expansion_add_product(&dev, lo, lo);
      }
      double d_got = tdm__exact_round(&d), d_want = expansion_round(&dev);
      if (!same_value(d_got, d_want)) {
        fprintf(stderr, "round %d: deviations %a, expansion %a\n", round,
                d_got, d_want);
        return 1;
      }
    }
    tdm__exact_free(&sum);
    tdm__exact_free(&squares);
  }
  return 0;
}

/* ---- hand-written cases ---- */

static int spec_fails(tdm__agg_def d, const char *part) {
  tdm__window_config c = {&d, 1, NUMS, STRS, FILTS, 0, 0, 0};
  tdm__window_spec *s = (tdm__window_spec *)1;
  tdm_error err;
  CHECK_INT(tdm__window_spec_new(&c, &s, &err), TDM_EINVAL);
  CHECK(s == NULL);
  CHECK_CONTAINS(err.message, part);
  return 0;
}

TEST(window_spec_validation) {
  tdm__agg_def d = {TDM__AGG_DISTINCT, 3600000, 60000, 0, SIZE_MAX};
  CHECK(spec_fails(d, "hop is not supported") == 0);
  d.hop_ms = 0;
  d.window_ms = 0;
  CHECK(spec_fails(d, "window all is unbounded") == 0);
  tdm__agg_def e = {TDM__AGG_SUM, 0, 1000, 0, SIZE_MAX};
  CHECK(spec_fails(e, "needs a finite window") == 0);
  e.window_ms = 2500;
  CHECK(spec_fails(e, "not a multiple of hop") == 0);
  e.hop_ms = 0;
  e.input = NUMS;
  CHECK(spec_fails(e, "number input 3 of 3") == 0);
  e.input = 0;
  e.filter = FILTS;
  CHECK(spec_fails(e, "filter 3 of 3") == 0);
  e.filter = SIZE_MAX;
  e.window_ms = -1;
  CHECK(spec_fails(e, "window -1 ms") == 0);
  tdm__agg_def f = {TDM__AGG_SINCE_LAST, 10, 5, 0, SIZE_MAX};
  CHECK(spec_fails(f, "hop is not supported") == 0);
  tdm__window_config c = {&e, 1, NUMS, STRS, FILTS, -1, 0, 0};
  tdm__window_spec *s;
  tdm_error err;
  e.window_ms = 10;
  CHECK_INT(tdm__window_spec_new(&c, &s, &err), TDM_EINVAL);
  CHECK_CONTAINS(err.message, "lateness");
  c.lateness_ms = 0;
  CHECK_INT(tdm__window_spec_new(&c, &s, &err), TDM_OK);
  tdm__entity *ent;
  CHECK_INT(tdm__entity_new(s, &ent), TDM_OK);
  CHECK(tdm__entity_max_time(ent) == INT64_MIN);
  double num[NUMS] = {1, 2, 3}, out[1];
  tdm__str strs[STRS] = {{NULL, 0}, {NULL, 0}};
  unsigned char fl[FILTS] = {1, 1, 1};
  tdm__window_event ev = {TDM__WINDOW_TIME_LIMIT + 1, num, strs, fl};
  CHECK_INT(tdm__entity_apply(s, ent, &ev, out), TDM_EINVAL);
  CHECK(tdm__entity_max_time(ent) == INT64_MIN);
  tdm__entity_free(ent);
  tdm__window_spec_free(s);
  tdm__window_spec_free(NULL);
  tdm__entity_free(NULL);
  return 0;
}

/* Applies (time, amount, merchant, filter) and returns the outputs. */
typedef struct simple {
  tdm__window_spec *spec;
  tdm__entity *ent;
  double out[8];
} simple;

static int simple_apply(simple *s, int64_t t, double amount,
                        const char *merchant, int pass) {
  double num[NUMS] = {amount, 0, 0};
  tdm__str strs[STRS] = {{merchant, merchant ? strlen(merchant) : 0},
                         {NULL, 0}};
  unsigned char fl[FILTS] = {(unsigned char)pass, 1, 1};
  tdm__window_event ev = {t, num, strs, fl};
  return tdm__entity_apply(s->spec, s->ent, &ev, s->out);
}

TEST(window_examples) {
  /* 10 s count, 10 s sum filtered, 10 s distinct, since_last, 20 s mean
   * with a 5 s hop, all-time max. Lateness 2 s. */
  tdm__agg_def aggs[] = {
      {TDM__AGG_COUNT, 10000, 0, 0, SIZE_MAX},
      {TDM__AGG_SUM, 10000, 0, 0, 0},
      {TDM__AGG_DISTINCT, 10000, 0, 0, SIZE_MAX},
      {TDM__AGG_SINCE_LAST, 0, 0, 0, SIZE_MAX},
      {TDM__AGG_SUM, 20000, 5000, 0, SIZE_MAX},
      {TDM__AGG_MAX, 0, 0, 0, SIZE_MAX},
  };
  tdm__window_config c = {aggs, 6, NUMS, STRS, FILTS, 2000, 60000, 0};
  simple s;
  tdm_error err;
  CHECK_INT(tdm__window_spec_new(&c, &s.spec, &err), TDM_OK);
  CHECK_INT(tdm__entity_new(s.spec, &s.ent), TDM_OK);
  CHECK_INT(simple_apply(&s, 1000, 5, "a", 1), TDM_OK);
  CHECK(s.out[0] == 1 && s.out[1] == 5 && s.out[2] == 1 && isnan(s.out[3]));
  CHECK(s.out[4] == 5 && s.out[5] == 5);
  CHECK_INT(simple_apply(&s, 4000, 7, "b", 0), TDM_OK);
  CHECK(s.out[0] == 2 && s.out[1] == 5 && s.out[2] == 2 && s.out[3] == 3.0);
  CHECK(s.out[4] == 12);
  /* 11 s: the event at 1 s is out of the 10 s window (11 - 10 < t). */
  CHECK_INT(simple_apply(&s, 11000, NAN, "a", 1), TDM_OK);
  CHECK(s.out[0] == 2 && s.out[1] == 0 && s.out[2] == 2 && s.out[3] == 7.0);
  /* The hop window at 11 s: buckets [-10 s, 15 s) cut at 11 s: 12. */
  CHECK(s.out[4] == 12 && s.out[5] == 7);
  /* Exactly 10 s after the event at 1 s... the window is (1 s, 11 s]. */
  CHECK_INT(simple_apply(&s, 11000, 1, NULL, 1), TDM_OK);
  CHECK(s.out[0] == 3 && s.out[1] == 1 && s.out[2] == 2 && s.out[3] == 0.0);
  CHECK(!signbit(s.out[3]));
  /* A late event at 3.5 s sees 1 s (3.5 - 10 < 1) and itself, not later. */
  CHECK_INT(simple_apply(&s, 3500, 2, "c", 1), TDM_OK);
  CHECK(s.out[0] == 2 && s.out[1] == 7 && s.out[2] == 2 && s.out[3] == -7.5);
  /* Hop at 3.5 s: buckets -20..5 s, the current one cut at 3.5 s. */
  CHECK(s.out[4] == 7);
  /* At 25 s the hop window covers buckets [5 s, 30 s): 11 s twice. */
  CHECK_INT(simple_apply(&s, 25000, 0, "a", 1), TDM_OK);
  CHECK(s.out[0] == 1 && s.out[4] == 1 && s.out[5] == 7);
  /* TTL: 60 s of silence resets everything. */
  CHECK_INT(simple_apply(&s, 85001, 3, "z", 1), TDM_OK);
  CHECK(s.out[0] == 1 && s.out[1] == 3 && isnan(s.out[3]) && s.out[5] == 3);
  CHECK(tdm__entity_max_time(s.ent) == 85001);
  tdm__entity_free(s.ent);
  tdm__window_spec_free(s.spec);
  return 0;
}

/* A spec with every role and kind, and an entity fed a random stream. */
static const tdm__agg_def every_kind[] = {
    {TDM__AGG_COUNT, 3600000, 0, 0, SIZE_MAX},
    {TDM__AGG_SUM, 86400000, 0, 0, 0},
    {TDM__AGG_MEAN, 2592000000, 3600000, 1, SIZE_MAX},
    {TDM__AGG_DISTINCT, 86400000, 0, 0, 1},
    {TDM__AGG_SINCE_LAST, 0, 0, 0, SIZE_MAX},
    {TDM__AGG_MAX, 600000, 0, 2, SIZE_MAX},
    {TDM__AGG_STDDEV, 0, 0, 0, SIZE_MAX},
    {TDM__AGG_LAST, 7200000, 600000, 1, 2},
};

static int make_every_kind(tdm__window_spec **spec, size_t max_events) {
  tdm__window_config c = {every_kind, 8, NUMS, STRS, FILTS, 60000, 0,
                          max_events};
  tdm_error err;
  return tdm__window_spec_new(&c, spec, &err);
}

static int feed(const tdm__window_spec *spec, tdm__entity *ent, int events,
                int64_t *t) {
  for (int i = 0; i < events; i++) {
    ref_event ev;
    *t += rnd_below(120000);
    random_event(&ev, rnd() % 10 == 0 ? *t - rnd_below(3600000) : *t, 1);
    tdm__str strs[STRS];
    tdm__window_event we;
    to_event(&ev, strs, &we);
    double out[8];
    int rc = tdm__entity_apply(spec, ent, &we, out);
    if (rc != TDM_OK) return rc;
  }
  return TDM_OK;
}

TEST(window_decode_rejects_corruption) {
  rng_state = 42;
  tdm__window_spec *spec;
  CHECK_INT(make_every_kind(&spec, 0), TDM_OK);
  tdm__entity *ent, *copy;
  CHECK_INT(tdm__entity_new(spec, &ent), TDM_OK);
  tdm__buf good = {0};
  tdm_error err;
  /* The empty state round-trips too. */
  CHECK_INT(tdm__entity_encode(spec, ent, &good), TDM_OK);
  CHECK_INT(tdm__entity_decode(spec, good.data, good.len, &copy, &err), TDM_OK);
  CHECK(tdm__entity_max_time(copy) == INT64_MIN);
  tdm__entity_free(copy);
  good.len = 0;
  int64_t t = 1700000000000;
  CHECK_INT(feed(spec, ent, 300, &t), TDM_OK);
  CHECK_INT(tdm__entity_encode(spec, ent, &good), TDM_OK);
  /* Every truncation fails cleanly. */
  for (size_t n = 0; n < good.len; n++) {
    int rc = tdm__entity_decode(spec, good.data, n, &copy, &err);
    CHECK_INT(rc, TDM_EPARSE);
    CHECK(copy == NULL);
  }
  /* Trailing bytes, another version, another spec. */
  tdm__buf longer = {0};
  CHECK_INT(tdm__buf_append(&longer, good.data, good.len), TDM_OK);
  CHECK_INT(tdm__buf_append(&longer, "x", 1), TDM_OK);
  CHECK_INT(tdm__entity_decode(spec, longer.data, longer.len, &copy, &err),
            TDM_EPARSE);
  CHECK_CONTAINS(err.message, "after the end");
  longer.data[0] = 9;
  CHECK_INT(tdm__entity_decode(spec, longer.data, good.len, &copy, &err),
            TDM_EPARSE);
  CHECK_CONTAINS(err.message, "version");
  tdm__window_spec *other;
  CHECK_INT(make_every_kind(&other, 5000), TDM_OK);
  CHECK_INT(tdm__entity_decode(other, good.data, good.len, &copy, &err),
            TDM_EPARSE);
  CHECK_CONTAINS(err.message, "another window spec");
  tdm__window_spec_free(other);
  /* A hopped aggregate (the mean, the first with encoded state: its bucket
   * count is the varint at byte 17) claiming more buckets than its window
   * holds, with bytes enough behind it: refused before any allocation. */
  CHECK((unsigned char)good.data[17] < 0x80);
  tdm__buf inflated = {0};
  CHECK_INT(tdm__buf_append(&inflated, good.data, 17), TDM_OK);
  CHECK_INT(tdm__buf_append(&inflated, "\x88\x27", 2), TDM_OK); /* 5000 */
  CHECK_INT(tdm__buf_append(&inflated, good.data + 18, good.len - 18), TDM_OK);
  for (int i = 0; i < 15000; i++)
    CHECK_INT(tdm__buf_append(&inflated, "", 1), TDM_OK);
  CHECK_INT(tdm__entity_decode(spec, inflated.data, inflated.len, &copy, &err),
            TDM_EPARSE);
  CHECK_CONTAINS(err.message, "more than the window holds");
  tdm__buf_free(&inflated);
  /* Random corruption: either rejected or a state that works. */
  int accepted = 0;
  for (int trial = 0; trial < 3000; trial++) {
    memcpy(longer.data, good.data, good.len);
    int flips = 1 + (int)rnd_below(4);
    for (int f = 0; f < flips; f++) {
      size_t at = 9 + (size_t)rnd_below((int64_t)good.len - 9);
      longer.data[at] ^= (char)(1u << rnd_below(8));
      if (rnd() % 4 == 0) longer.data[at] = (char)rnd();
    }
    int rc = tdm__entity_decode(spec, longer.data, good.len, &copy, &err);
    if (rc == TDM_OK) {
      accepted++;
      int64_t t2 = t;
      CHECK_INT(feed(spec, copy, 20, &t2), TDM_OK);
      tdm__entity_free(copy);
    } else {
      CHECK_INT(rc, TDM_EPARSE);
      CHECK(err.message[0] != '\0');
    }
  }
  CHECK(accepted > 0); /* flipped value bits are still a valid state */
  tdm__buf_free(&good);
  tdm__buf_free(&longer);
  tdm__entity_free(ent);
  tdm__window_spec_free(spec);
  return 0;
}

/* tests/fixtures/state/window_v1.bin: the every-kind entity after
 * feed(300) from rng 7 and t = 1700000000000, encoded by the version 1
 * code (commit 8d13eab). It still decodes, to the same state: the same
 * entity built again encodes (in version 2) to the same bytes, and both
 * answer the next events alike. Version 2 is smaller (this entity's log
 * of numbers dominates; hopped buckets shrink about 4 times). */
TEST(window_decodes_version_1) {
  rng_state = 7;
  tdm__window_spec *spec;
  CHECK_INT(make_every_kind(&spec, 0), TDM_OK);
  tdm__entity *built, *old;
  CHECK_INT(tdm__entity_new(spec, &built), TDM_OK);
  int64_t t = 1700000000000;
  CHECK_INT(feed(spec, built, 300, &t), TDM_OK);
  char *v1;
  size_t v1_len;
  tdm_error err;
  CHECK_INT(tdm__read_file("tests/fixtures/state/window_v1.bin", &v1, &v1_len,
                           &err),
            TDM_OK);
  CHECK(v1_len > 0 && v1[0] == 1);
  CHECK_INT(tdm__entity_decode(spec, v1, v1_len, &old, &err), TDM_OK);
  tdm__buf a = {0}, b = {0};
  CHECK_INT(tdm__entity_encode(spec, built, &a), TDM_OK);
  CHECK_INT(tdm__entity_encode(spec, old, &b), TDM_OK);
  CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
  CHECK(a.data[0] == 2 && a.len < v1_len * 3 / 4); /* 10,799 of 16,092 */
  for (int i = 0; i < 50; i++) {
    ref_event ev;
    t += rnd_below(120000);
    random_event(&ev, t, 1);
    tdm__str strs[STRS];
    tdm__window_event we;
    to_event(&ev, strs, &we);
    double x[8], y[8];
    CHECK_INT(tdm__entity_apply(spec, built, &we, x), TDM_OK);
    CHECK_INT(tdm__entity_apply(spec, old, &we, y), TDM_OK);
    CHECK(memcmp(x, y, sizeof x) == 0);
  }
  /* A truncated version 1 state is still refused. */
  tdm__entity *copy;
  CHECK_INT(tdm__entity_decode(spec, v1, v1_len - 1, &copy, &err), TDM_EPARSE);
  free(v1);
  tdm__buf_free(&a);
  tdm__buf_free(&b);
  tdm__entity_free(built);
  tdm__entity_free(old);
  tdm__window_spec_free(spec);
  return 0;
}

/* A distinct whose map went stale (its key member left by max_events
 * while others with the value stayed) and then saw late events bring new
 * values it did not count yet: rebuilding it needs room for every
 * member's value, not for the values it had counted. */
TEST(window_distinct_rebuilt_after_late_values) {
  tdm__agg_def agg = {TDM__AGG_DISTINCT, 1000000, 0, 0, SIZE_MAX};
  tdm__window_config c = {&agg, 1, NUMS, STRS, FILTS, 1000000, 0, 20};
  tdm__window_spec *spec;
  tdm_error err;
  CHECK_INT(tdm__window_spec_new(&c, &spec, &err), TDM_OK);
  tdm__entity *ent;
  CHECK_INT(tdm__entity_new(spec, &ent), TDM_OK);
  double num[NUMS] = {0, 0, 0}, out = 0;
  unsigned char fl[FILTS] = {1, 1, 1};
  char name[16];
  /* "a" at 100, then 19 more "a" earlier: the first stays its key. */
  for (int i = 0; i < 40; i++) {
    int64_t t = i == 0 ? 100 : i < 20 ? i : 50;
    if (i < 20)
      snprintf(name, sizeof name, "a");
    else
      snprintf(name, sizeof name, "b%d", i);
    tdm__str strs[STRS] = {{name, strlen(name)}, {NULL, 0}};
    tdm__window_event ev = {t, num, strs, fl};
    CHECK_INT(tdm__entity_apply(spec, ent, &ev, &out), TDM_OK);
  }
  /* The 20 members are b20..b39; an in-order event replaces b20. */
  tdm__str strs[STRS] = {{"c", 1}, {NULL, 0}};
  tdm__window_event ev = {101, num, strs, fl};
  CHECK_INT(tdm__entity_apply(spec, ent, &ev, &out), TDM_OK);
  CHECK(out == 20.0);
  tdm__entity_free(ent);
  tdm__window_spec_free(spec);
  return 0;
}

TEST(window_out_of_memory) {
  tdm__window_spec *spec = NULL;
  for (long countdown = 0;; countdown++) {
    tdm__alloc_fail_after(countdown);
    int rc = make_every_kind(&spec, 0);
    tdm__alloc_fail_after(-1);
    if (rc == TDM_OK) break;
    CHECK_INT(rc, TDM_ENOMEM);
  }
  rng_state = 7;
  tdm__entity *ent = NULL, *twin;
  for (long countdown = 0;; countdown++) {
    tdm__alloc_fail_after(countdown);
    int rc = tdm__entity_new(spec, &ent);
    tdm__alloc_fail_after(-1);
    if (rc == TDM_OK) break;
    CHECK_INT(rc, TDM_ENOMEM);
  }
  CHECK_INT(tdm__entity_new(spec, &twin), TDM_OK);
  int64_t t = 0;
  int failures = 0;
  for (int i = 0; i < 400; i++) {
    ref_event ev;
    t += rnd_below(300000);
    random_event(&ev, rnd() % 10 == 0 ? t - rnd_below(3600000) : t, 1);
    tdm__str strs[STRS];
    tdm__window_event we;
    to_event(&ev, strs, &we);
    double out[8], want[8];
    CHECK_INT(tdm__entity_apply(spec, twin, &we, want), TDM_OK);
    tdm__buf before = {0};
    CHECK_INT(tdm__entity_encode(spec, ent, &before), TDM_OK);
    for (long countdown = 0;; countdown++) {
      tdm__alloc_fail_after(countdown);
      int rc = tdm__entity_apply(spec, ent, &we, out);
      tdm__alloc_fail_after(-1);
      if (rc == TDM_OK) break;
      CHECK_INT(rc, TDM_ENOMEM);
      failures++;
      tdm__buf after = {0};
      CHECK_INT(tdm__entity_encode(spec, ent, &after), TDM_OK);
      CHECK(after.len == before.len &&
            memcmp(after.data, before.data, before.len) == 0);
      tdm__buf_free(&after);
    }
    for (int a = 0; a < 8; a++) CHECK(same_value(out[a], want[a]));
    /* Encoding and decoding fail cleanly too. */
    if (i % 50 == 49) {
      tdm__buf enc = {0};
      tdm__alloc_fail_after(0);
      CHECK_INT(tdm__entity_encode(spec, ent, &enc), TDM_ENOMEM);
      tdm__alloc_fail_after(-1);
      CHECK(enc.len == 0);
      for (long countdown = 0;; countdown++) {
        tdm__entity *copy;
        tdm_error err;
        tdm__alloc_fail_after(countdown);
        int rc = tdm__entity_decode(spec, before.data, before.len, &copy, &err);
        tdm__alloc_fail_after(-1);
        if (rc == TDM_OK) {
          tdm__entity_free(copy);
          break;
        }
        CHECK_INT(rc, TDM_ENOMEM);
      }
      tdm__buf_free(&enc);
    }
    tdm__buf_free(&before);
  }
  CHECK(failures > 10);
  tdm__entity_free(ent);
  tdm__entity_free(twin);
  tdm__window_spec_free(spec);
  return 0;
}

TEST(window_memory_bounded) {
  /* One event a minute on average for 60 days: the log holds about a
   * day (the longest exact window plus lateness), the 30-day mean with a
   * 1 h hop at most 30 * 24 + 2 buckets. */
  rng_state = 99;
  tdm__window_spec *spec;
  CHECK_INT(make_every_kind(&spec, 0), TDM_OK);
  tdm__entity *ent;
  CHECK_INT(tdm__entity_new(spec, &ent), TDM_OK);
  int64_t t = 0;
  size_t at_ten_days = 0, most = 0;
  for (int day = 0; day < 60; day++) {
    for (int i = 0; i < 1440; i++) {
      ref_event ev;
      t += rnd_below(120000);
      random_event(&ev, rnd() % 20 == 0 ? t - rnd_below(100000) : t, 1);
      tdm__str strs[STRS];
      tdm__window_event we;
      to_event(&ev, strs, &we);
      double out[8];
      CHECK_INT(tdm__entity_apply(spec, ent, &we, out), TDM_OK);
    }
    size_t m = tdm__entity_memory(ent);
    if (day == 10) at_ten_days = m;
    if (m > most) most = m;
  }
  /* Memory stops growing after the longest window is full... */
  CHECK(most <= at_ten_days * 3 / 2);
  /* ...and is what a day of events and 722 buckets need. */
  CHECK(most < 1024 * 1024);
  /* With max_events, the log is capped whatever the windows. */
  tdm__window_spec *capped;
  CHECK_INT(make_every_kind(&capped, 100), TDM_OK);
  tdm__entity *small;
  CHECK_INT(tdm__entity_new(capped, &small), TDM_OK);
  t = 0;
  CHECK_INT(feed(capped, small, 20000, &t), TDM_OK);
  CHECK(tdm__entity_memory(small) < 128 * 1024);
  tdm__entity_free(small);
  tdm__window_spec_free(capped);
  tdm__entity_free(ent);
  tdm__window_spec_free(spec);
  return 0;
}
