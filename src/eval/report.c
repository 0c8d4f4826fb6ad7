/*
 * report.c - writes the HTML page of report.h. A page is a few sections of
 * tables and SVG charts; every chart is drawn by one function from plain
 * arrays (a frame with ticks and axis titles, then bars, lines or points
 * in data coordinates mapped to the frame), so that each plot reads the
 * same way. Colours are the Okabe-Ito pair (blue for run A, vermilion for
 * run B), distinguishable with the common colour-vision deficiencies, and
 * every line also differs by dash pattern. Output goes through a sticky
 * writer: the first failed append is remembered and the rest skipped, so
 * the code reads as the page it writes.
 */
#include "report.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json.h"

/* ---- a sticky writer ---- */

typedef struct html {
  tdm__buf *b;
  int rc;
  int next_id; /* for the SVG title ids */
} html;

static void put(html *h, const char *s) {
  if (h->rc == TDM_OK) h->rc = tdm__buf_append(h->b, s, strlen(s));
}

static void putf(html *h, const char *fmt, ...) TDM__PRINTF(2, 3);
static void putf(html *h, const char *fmt, ...) {
  if (h->rc != TDM_OK) return;
  char small[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof small) {
    h->rc = tdm__buf_append(h->b, small, (size_t)n);
    return;
  }
  char *big = tdm__malloc((size_t)n + 1);
  if (big == NULL) {
    h->rc = TDM_ENOMEM;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  h->rc = tdm__buf_append(h->b, big, (size_t)n);
  tdm__free(big);
}

/* A string from data, escaped for text and attribute values alike. NULL
 * is shown as a dash. */
static void put_text(html *h, const char *s) {
  if (s == NULL) {
    put(h, "&#8212;");
    return;
  }
  const char *run = s;
  for (const char *p = s;; p++) {
    const char *entity = NULL;
    switch (*p) {
      case '&': entity = "&amp;"; break;
      case '<': entity = "&lt;"; break;
      case '>': entity = "&gt;"; break;
      case '"': entity = "&quot;"; break;
      case '\'': entity = "&#39;"; break;
      default: break;
    }
    if (entity == NULL && *p != '\0') continue;
    if (h->rc == TDM_OK && p > run)
      h->rc = tdm__buf_append(h->b, run, (size_t)(p - run));
    if (*p == '\0') break;
    put(h, entity);
    run = p + 1;
  }
}

/* ---- numbers ---- */

/* A metric or a fraction: 4 decimals; n/a when undefined. */
static void put_metric(html *h, double v) {
  if (!isfinite(v))
    put(h, "<span class=\"na\">n/a</span>");
  else
    putf(h, "%.4f", v);
}

/* A signed difference, 4 decimals. */
static void put_delta(html *h, double v) {
  if (!isfinite(v))
    put(h, "<span class=\"na\">n/a</span>");
  else
    putf(h, "%+.4f", v == 0 ? 0.0 : v);
}

/* A score statistic: 4 significant digits are enough to read. */
static void put_stat(html *h, double v) {
  if (!isfinite(v))
    put(h, "<span class=\"na\">n/a</span>");
  else
    putf(h, "%.4g", v);
}

static void put_count(html *h, size_t n) {
  /* Thousands separated by thin spaces, for reading large counts. */
  char digits[32], grouped[64];
  int len = snprintf(digits, sizeof digits, "%zu", n);
  size_t j = 0;
  for (int i = 0; i < len; i++) {
    if (i > 0 && (len - i) % 3 == 0) {
      memcpy(grouped + j, "&#8239;", 7);
      j += 7;
    }
    grouped[j++] = digits[i];
  }
  grouped[j] = '\0';
  put(h, grouped);
}

static void put_percent(html *h, size_t part, size_t whole) {
  if (whole == 0)
    put(h, "<span class=\"na\">n/a</span>");
  else
    putf(h, "%.2f%%", 100.0 * (double)part / (double)whole);
}

/* ---- charts ---- */

static const char *const run_colors[2] = {"#0072B2", "#D55E00"};
static const char *const run_dashes[2] = {"none", "7 4"};
static const char *const run_names[2] = {"A", "B"};

#define CHART_W 560.0
#define CHART_H 360.0
#define PAD_LEFT 64.0
#define PAD_RIGHT 18.0
#define PAD_TOP 18.0
#define PAD_BOTTOM 52.0

typedef struct frame {
  double x0, x1, y0, y1; /* the data range shown */
  int y_log; /* y values are log10 of the data: ticks at powers of ten */
} frame;

static double px(const frame *f, double x) {
  return PAD_LEFT +
         (x - f->x0) / (f->x1 - f->x0) * (CHART_W - PAD_LEFT - PAD_RIGHT);
}

static double py(const frame *f, double y) {
  return CHART_H - PAD_BOTTOM -
         (y - f->y0) / (f->y1 - f->y0) * (CHART_H - PAD_TOP - PAD_BOTTOM);
}

/* A tick step of 1, 2 or 5 times a power of ten, giving about 5 ticks. */
static double tick_step(double span) {
  double raw = span / 5.0, power = pow(10.0, floor(log10(raw)));
  double m = raw / power;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * power;
}

/* Opens an <svg> with its title and description, draws the axes, grid,
 * ticks and axis titles. */
static void chart_open(html *h, const frame *f, const char *title,
                       const char *description, const char *x_title,
                       const char *y_title) {
  int id = ++h->next_id;
  putf(h,
       "<figure class=\"chart\"><svg viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
       "aria-labelledby=\"t%d d%d\">",
       CHART_W, CHART_H, id, id);
  putf(h, "<title id=\"t%d\">", id);
  put_text(h, title);
  putf(h, "</title><desc id=\"d%d\">", id);
  put_text(h, description);
  put(h, "</desc>");
  double left = PAD_LEFT, right = CHART_W - PAD_RIGHT;
  double top = PAD_TOP, bottom = CHART_H - PAD_BOTTOM;
  putf(h,
       "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
       "class=\"plot\"/>",
       left, top, right - left, bottom - top);
  double step = tick_step(f->x1 - f->x0);
  for (double t = ceil(f->x0 / step - 1e-9) * step; t <= f->x1 + step * 1e-9;
       t += step) {
    double x = px(f, t);
    putf(h,
         "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
         "class=\"grid\"/><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
         "y2=\"%.1f\" class=\"axis\"/><text x=\"%.1f\" y=\"%.1f\" "
         "class=\"tick\" text-anchor=\"middle\">%.4g</text>",
         x, top, x, bottom, x, bottom, x, bottom + 5, x, bottom + 18,
         fabs(t) < step * 1e-9 ? 0.0 : t);
  }
  step = tick_step(f->y1 - f->y0);
  /* A log axis ticks whole powers of ten, labelled with their values. */
  if (f->y_log) step = step < 1 ? 1 : round(step);
  for (double t = ceil(f->y0 / step - 1e-9) * step; t <= f->y1 + step * 1e-9;
       t += step) {
    double y = py(f, t);
    double label = f->y_log ? pow(10.0, t) : fabs(t) < step * 1e-9 ? 0.0 : t;
    putf(h,
         "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
         "class=\"grid\"/><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
         "y2=\"%.1f\" class=\"axis\"/><text x=\"%.1f\" y=\"%.1f\" "
         "class=\"tick\" text-anchor=\"end\">%.4g</text>",
         left, y, right, y, left - 5, y, left, y, left - 8, y + 4, label);
  }
  putf(h,
       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
       "class=\"axis\"/><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
       "y2=\"%.1f\" class=\"axis\"/>",
       left, bottom, right, bottom, left, top, left, bottom);
  putf(h,
       "<text x=\"%.1f\" y=\"%.1f\" class=\"label\" "
       "text-anchor=\"middle\">",
       (left + right) / 2, CHART_H - 12);
  put_text(h, x_title);
  putf(h,
       "</text><text transform=\"translate(16 %.1f) rotate(-90)\" "
       "class=\"label\" text-anchor=\"middle\">",
       (top + bottom) / 2);
  put_text(h, y_title);
  put(h, "</text>");
}

/* The legend (one entry per series) inside the plot's top-left or
 * bottom-right corner, then closes the figure with a caption. */
enum { LEGEND_TOP_LEFT, LEGEND_BOTTOM_RIGHT, LEGEND_BOTTOM_LEFT };

static void chart_close(html *h, size_t series, const char *const *labels,
                        int where, int bars, const char *caption) {
  double x =
      where == LEGEND_BOTTOM_RIGHT ? CHART_W - PAD_RIGHT - 200 : PAD_LEFT + 10;
  double y = where == LEGEND_TOP_LEFT
                 ? PAD_TOP + 10
                 : CHART_H - PAD_BOTTOM - 12 - 20.0 * (double)series;
  for (size_t i = 0; i < series; i++) {
    double ly = y + 20.0 * (double)i;
    if (bars) {
      putf(h,
           "<rect x=\"%.1f\" y=\"%.1f\" width=\"190\" height=\"20\" "
           "class=\"legend\"/><rect x=\"%.1f\" y=\"%.1f\" width=\"14\" "
           "height=\"12\" fill=\"%s\"/><text x=\"%.1f\" y=\"%.1f\" "
           "class=\"tick\">",
           x, ly, x + 8, ly + 4, run_colors[i], x + 30, ly + 14);
      put_text(h, labels[i]);
      put(h, "</text>");
      continue;
    }
    putf(h,
         "<rect x=\"%.1f\" y=\"%.1f\" width=\"190\" height=\"20\" "
         "class=\"legend\"/><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
         "y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\" "
         "stroke-dasharray=\"%s\"/><text x=\"%.1f\" y=\"%.1f\" "
         "class=\"tick\">",
         x, ly, x + 6, ly + 10, x + 30, ly + 10, run_colors[i], run_dashes[i],
         x + 36, ly + 14);
    put_text(h, labels[i]);
    put(h, "</text>");
  }
  put(h, "</svg><figcaption>");
  put_text(h, caption);
  put(h, "</figcaption></figure>\n");
}

/* A polyline through (xs[i], ys[i]) in data coordinates. */
static void polyline(html *h, const frame *f, const double *xs,
                     const double *ys, size_t n, size_t series) {
  putf(h,
       "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2.2\" "
       "stroke-dasharray=\"%s\" stroke-linejoin=\"round\" points=\"",
       run_colors[series], run_dashes[series]);
  for (size_t i = 0; i < n; i++)
    putf(h, "%s%.2f,%.2f", i ? " " : "", px(f, xs[i]), py(f, ys[i]));
  put(h, "\"/>");
}

/* The diagonal or a horizontal reference line, dotted grey. */
static void reference_line(html *h, const frame *f, double xa, double ya,
                           double xb, double yb) {
  putf(h,
       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
       "class=\"reference\"/>",
       px(f, xa), py(f, ya), px(f, xb), py(f, yb));
}

/* ---- the histogram ---- */

#define HISTOGRAM_BINS 40

static void histogram(html *h, const tdm__report_page *r) {
  double lo = INFINITY, hi = -INFINITY;
  for (size_t k = 0; k < r->num_runs; k++) {
    const tdm__score_distribution *d = r->runs[k].distribution;
    if (d->count == 0) continue;
    if (d->min < lo) lo = d->min;
    if (d->max > hi) hi = d->max;
  }
  if (!(lo <= hi)) {
    put(h, "<p class=\"note\">No scores to draw.</p>\n");
    return;
  }
  /* Probabilities get the whole [0, 1] axis, so that two reports can be
   * compared by eye; other scores their own range. */
  if (lo >= 0 && hi <= 1) {
    lo = 0;
    hi = 1;
  } else if (lo == hi) {
    lo -= 0.5;
    hi += 0.5;
  }
  double width = (hi - lo) / HISTOGRAM_BINS;
  double share[2][HISTOGRAM_BINS];
  double top = 0;
  for (size_t k = 0; k < r->num_runs; k++) {
    const tdm__score_distribution *d = r->runs[k].distribution;
    size_t counts[HISTOGRAM_BINS] = {0};
    for (size_t i = 0; i < d->count; i++) {
      double pos = (d->sorted[i] - lo) / width;
      size_t b = pos <= 0                    ? 0
                 : pos >= HISTOGRAM_BINS - 1 ? HISTOGRAM_BINS - 1
                                             : (size_t)pos;
      counts[b]++;
    }
    for (size_t b = 0; b < HISTOGRAM_BINS; b++) {
      share[k][b] = d->count ? (double)counts[b] / (double)d->count : 0;
      if (share[k][b] > top) top = share[k][b];
    }
  }
  frame f = {lo, hi, 0, top > 0 ? top * 1.1 : 1, 0};
  if (r->log_scale) {
    /* The smallest non-empty bin sets the bottom decade, so a tail of a
     * few rows shows as a bar instead of vanishing under the axis. */
    double smallest = 1;
    for (size_t k = 0; k < r->num_runs; k++)
      for (size_t b = 0; b < HISTOGRAM_BINS; b++)
        if (share[k][b] > 0 && share[k][b] < smallest) smallest = share[k][b];
    f.y0 = floor(log10(smallest)) - (smallest == 1 ? 1 : 0);
    f.y1 = top > 0 ? fmax(ceil(log10(top) * 10) / 10, f.y0 + 1) : 0;
    f.y_log = 1;
  }
  char description[256];
  snprintf(description, sizeof description,
           "Share of rows in each of %d equal-width score bins from %.4g to "
           "%.4g%s%s.",
           HISTOGRAM_BINS, lo, hi,
           r->num_runs == 2 ? ", run A and run B side by side in each bin" : "",
           r->log_scale ? ", on a log scale" : "");
  chart_open(h, &f, "Score distribution", description, "score",
             r->log_scale ? "share of rows (log scale)" : "share of rows");
  double slot = (px(&f, lo + width) - px(&f, lo)) / (double)r->num_runs;
  for (size_t k = 0; k < r->num_runs; k++)
    for (size_t b = 0; b < HISTOGRAM_BINS; b++) {
      if (share[k][b] == 0) continue;
      double x = px(&f, lo + width * (double)b) + slot * (double)k;
      double y = py(&f, f.y_log ? log10(share[k][b]) : share[k][b]);
      putf(h,
           "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
           "fill=\"%s\" fill-opacity=\"0.85\"><title>run %s, scores %.4g to "
           "%.4g: %.2f%% of rows</title></rect>",
           x + 0.3, y, slot > 1 ? slot - 0.6 : slot, py(&f, f.y0) - y,
           run_colors[k], run_names[k], lo + width * (double)b,
           lo + width * (double)(b + 1), 100 * share[k][b]);
    }
  const char *labels[2];
  char text[2][64];
  for (size_t k = 0; k < r->num_runs; k++) {
    snprintf(text[k], sizeof text[k], "run %s (%s)", run_names[k],
             r->runs[k].run->id);
    labels[k] = text[k];
  }
  chart_close(h, r->num_runs, labels, LEGEND_TOP_LEFT, 1,
              r->log_scale
                  ? "Histogram of scores: bars are the share of each run's "
                    "rows in a bin, on a log scale (each grid line ten times "
                    "the one below)."
                  : "Histogram of scores: bars are the share of each run's "
                    "rows in a bin.");
}

/* ---- curves ---- */

/* Which of n points to draw: all when few, else evenly spaced indices
 * with the first and the last exactly. */
static size_t curve_index(size_t i, size_t shown, size_t n) {
  if (shown == n) return i;
  if (i == shown - 1) return n - 1;
  return (size_t)((double)i * (double)(n - 1) / (double)(shown - 1) + 0.5);
}

static size_t curve_shown(size_t n) {
  return n < TDM__REPORT_MAX_CURVE_POINTS ? n : TDM__REPORT_MAX_CURVE_POINTS;
}

/* Two arrays of n coordinates (tdm__free both); 0 and h->rc set when
 * memory runs out. */
static int point_arrays(html *h, size_t n, double **xs, double **ys) {
  *xs = tdm__malloc(n * sizeof **xs);
  *ys = tdm__malloc(n * sizeof **ys);
  if (*xs != NULL && *ys != NULL) return 1;
  tdm__free(*xs);
  tdm__free(*ys);
  h->rc = TDM_ENOMEM;
  return 0;
}

/* kind 0: ROC (FPR, TPR); kind 1: precision-recall. */
static void curve_chart(html *h, const tdm__report_page *r, int kind) {
  frame f = {0, 1, 0, 1.02, 0};
  const char *labels[2];
  char text[2][96];
  double base_rate = NAN;
  int roc = kind == 0;
  chart_open(h, &f, roc ? "ROC curve" : "Precision-recall curve",
             roc ? "True positive rate against false positive rate at every "
                   "distinct score threshold; the diagonal is a random "
                   "ranking."
                 : "Precision against recall at every distinct score "
                   "threshold; the dotted line is the base rate.",
             roc ? "false positive rate" : "recall (true positive rate)",
             roc ? "true positive rate" : "precision");
  if (roc) reference_line(h, &f, 0, 0, 1, 1);
  size_t series = 0;
  for (size_t k = 0; k < r->num_runs; k++) {
    const tdm__report_evaluation *e = &r->runs[k].evaluation;
    if (e->curve == NULL || e->curve_count < 2) continue;
    const tdm__eval_curve_point *last = &e->curve[e->curve_count - 1];
    double positives = (double)last->tp, negatives = (double)last->fp;
    if (isnan(base_rate)) base_rate = positives / (positives + negatives);
    size_t shown = curve_shown(e->curve_count);
    double *xs, *ys;
    if (!point_arrays(h, shown, &xs, &ys)) return;
    size_t m = 0;
    for (size_t i = 0; i < shown; i++) {
      const tdm__eval_curve_point *p =
          &e->curve[curve_index(i, shown, e->curve_count)];
      double tpr = positives > 0 ? (double)p->tp / positives : NAN;
      if (roc) {
        xs[m] = negatives > 0 ? (double)p->fp / negatives : NAN;
        ys[m] = tpr;
      } else {
        /* sklearn's curve starts at recall 0, precision 1. */
        xs[m] = tpr;
        ys[m] =
            p->tp + p->fp == 0 ? 1.0 : (double)p->tp / (double)(p->tp + p->fp);
      }
      if (isfinite(xs[m]) && isfinite(ys[m])) m++;
    }
    polyline(h, &f, xs, ys, m, k);
    tdm__free(xs);
    tdm__free(ys);
    double value = roc ? e->binary->roc_auc : e->binary->average_precision;
    if (isfinite(value))
      snprintf(text[series], sizeof text[series], "run %s: %s %.4f",
               run_names[k], roc ? "AUC" : "AP", value);
    else
      snprintf(text[series], sizeof text[series], "run %s: %s n/a",
               run_names[k], roc ? "AUC" : "AP");
    labels[series] = text[series];
    series++;
  }
  if (!roc && isfinite(base_rate))
    reference_line(h, &f, 0, base_rate, 1, base_rate);
  chart_close(h, series, labels, roc ? LEGEND_BOTTOM_RIGHT : LEGEND_BOTTOM_LEFT,
              0,
              roc ? "ROC curve (drawn from at most 500 points per run)"
                  : "Precision-recall curve (drawn from at most 500 points "
                    "per run)");
}

static void calibration_chart(html *h, const tdm__report_page *r) {
  frame f = {0, 1, 0, 1.02, 0};
  chart_open(h, &f, "Calibration",
             "Fraction of positive labels against the mean predicted "
             "probability in each non-empty uniform bin; the diagonal is "
             "perfect calibration.",
             "mean predicted probability", "fraction of positives");
  reference_line(h, &f, 0, 0, 1, 1);
  const char *labels[2];
  char text[2][64];
  size_t series = 0;
  for (size_t k = 0; k < r->num_runs; k++) {
    const tdm__eval_binary_result *b = r->runs[k].evaluation.binary;
    if (b == NULL || b->num_bins == 0) continue;
    double xs[1024], ys[1024];
    size_t n = b->num_bins < 1024 ? b->num_bins : 1024;
    for (size_t i = 0; i < n; i++) {
      xs[i] = b->bins[i].mean_predicted;
      ys[i] = b->bins[i].fraction_positive;
    }
    polyline(h, &f, xs, ys, n, k);
    for (size_t i = 0; i < n; i++)
      putf(h,
           "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"%s\"><title>run "
           "%s, bin [%.4g, %.4g]: %zu rows, mean predicted %.4f, fraction "
           "positive %.4f</title></circle>",
           px(&f, xs[i]), py(&f, ys[i]), run_colors[k], run_names[k],
           b->bins[i].lower, b->bins[i].upper, b->bins[i].count, xs[i], ys[i]);
    snprintf(text[series], sizeof text[series], "run %s (%zu bins)",
             run_names[k], b->bins_requested);
    labels[series] = text[series];
    series++;
  }
  chart_close(h, series, labels, LEGEND_BOTTOM_RIGHT, 0,
              "Calibration curve (uniform bins; empty bins left out)");
}

/* ---- sections ---- */

static const char style[] =
    "<style>\n"
    ":root{color-scheme:light;--ink:#1b1f24;--muted:#57606a;--line:#d0d7de;"
    "--soft:#f6f8fa;--a:#0072B2;--b:#D55E00}\n"
    "*{box-sizing:border-box}\n"
    "body{margin:0;font:15px/1.5 system-ui,-apple-system,\"Segoe UI\","
    "Roboto,\"Helvetica Neue\",Arial,sans-serif;color:var(--ink);"
    "background:#fff}\n"
    "main{max-width:1180px;margin:0 auto;padding:24px 20px 48px}\n"
    "h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:32px 0 "
    "8px;padding-bottom:4px;border-bottom:1px solid var(--line)}"
    "h3{font-size:1.05em;margin:20px 0 6px}\n"
    "p.meta,p.note,figcaption,.na{color:var(--muted)}p.meta{margin:0}\n"
    "p.warn{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;"
    "border-radius:6px}\n"
    "table{border-collapse:collapse;margin:8px 0 16px;font-variant-numeric:"
    "tabular-nums}\n"
    "th,td{border:1px solid var(--line);padding:4px 10px;text-align:left;"
    "vertical-align:top}\n"
    "th{background:var(--soft);font-weight:600}td.num,th.num{text-align:"
    "right}\n"
    ".scroll{overflow-x:auto;max-width:100%}\n"
    "code,.hash{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"
    "monospace;font-size:.9em;word-break:break-all}\n"
    ".swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;"
    "margin-right:.35em;vertical-align:-.05em}\n"
    ".charts{display:grid;grid-template-columns:repeat(auto-fit,minmax("
    "min(100%,440px),1fr));gap:16px;align-items:start}\n"
    "figure.chart{margin:0;border:1px solid var(--line);border-radius:8px;"
    "padding:8px}\n"
    "figure.chart svg{width:100%;height:auto;display:block}\n"
    "figcaption{font-size:.9em;padding:4px 6px 0}\n"
    "svg .plot{fill:#fff}svg .grid{stroke:#eaeef2;stroke-width:1}"
    "svg .axis{stroke:#57606a;stroke-width:1}\n"
    "svg .tick{font-size:12px;fill:#3d444d}svg .label{font-size:13px;"
    "fill:#1b1f24;font-weight:600}\n"
    "svg .reference{stroke:#8c959f;stroke-width:1.2;stroke-dasharray:2 4}\n"
    "svg .legend{fill:#fff;fill-opacity:.85}\n"
    "p.verdict{font-size:1.05em;padding:8px 12px;border-radius:6px;"
    "border:1px solid var(--line);background:var(--soft)}\n"
    "p.verdict.good{border-color:#1a7f37;background:#dafbe1}"
    "p.verdict.bad{border-color:#cf222e;background:#ffebe9}\n"
    "</style>\n";

static void swatch(html *h, size_t k) {
  putf(h, "<span class=\"swatch\" style=\"background:%s\"></span>",
       run_colors[k]);
}

/* Opens a table with a column per run: FIRST heads the label column,
 * DELTA adds a B - A column for two runs. */
static void run_table_head(html *h, const tdm__report_page *r,
                           const char *table_class, const char *first,
                           int delta) {
  put(h, "<div class=\"scroll\"><table");
  if (table_class != NULL) putf(h, " class=\"%s\"", table_class);
  put(h, "><thead><tr><th scope=\"col\">");
  put(h, first);
  put(h, "</th>");
  for (size_t k = 0; k < r->num_runs; k++) {
    put(h, "<th scope=\"col\" class=\"num\">");
    swatch(h, k);
    putf(h, "run %s</th>", run_names[k]);
  }
  if (delta && r->num_runs == 2)
    put(h, "<th scope=\"col\" class=\"num\">B &#8722; A</th>");
  put(h, "</tr></thead><tbody>\n");
}

/* One row of the runs table: a label and each run's value. */
static void runs_row(html *h, const tdm__report_page *r, const char *label,
                     const char *values[2], int code) {
  if (values[0] == NULL && (r->num_runs < 2 || values[1] == NULL)) return;
  put(h, "<tr><th scope=\"row\">");
  put_text(h, label);
  put(h, "</th>");
  for (size_t k = 0; k < r->num_runs; k++) {
    put(h, code ? "<td class=\"hash\">" : "<td>");
    put_text(h, values[k]);
    put(h, "</td>");
  }
  put(h, "</tr>\n");
}

static void runs_section(html *h, const tdm__report_page *r) {
  put(h,
      "<h2>Runs</h2>\n<div class=\"scroll\"><table>"
      "<thead><tr><th scope=\"col\"></th>");
  for (size_t k = 0; k < r->num_runs; k++) {
    put(h, "<th scope=\"col\">");
    swatch(h, k);
    putf(h, "run %s</th>", run_names[k]);
  }
  put(h, "</tr></thead><tbody>\n");
  const char *v[2] = {NULL, NULL};
  char numbers[2][6][48];
#define ROW(label, field, code)                                            \
  do {                                                                     \
    for (size_t k = 0; k < r->num_runs; k++) v[k] = r->runs[k].run->field; \
    runs_row(h, r, label, v, code);                                        \
  } while (0)
  ROW("id", id, 1);
  ROW("command", command, 0);
  ROW("started", started_at, 0);
  ROW("finished", finished_at, 0);
  for (size_t k = 0; k < r->num_runs; k++) {
    const tdm__run_record *run = r->runs[k].run;
    snprintf(numbers[k][0], sizeof numbers[k][0], "%.3f s", run->seconds);
    v[k] = numbers[k][0];
  }
  runs_row(h, r, "duration", v, 0);
  ROW("tandem version", tandem_version, 0);
  ROW("model version", model_version, 1);
  ROW("model SHA-256", model_sha256, 1);
  ROW("model file", model_path, 0);
  ROW("pipeline", pipeline_name, 0);
  ROW("pipeline file", pipeline_path, 0);
  ROW("pipeline SHA-256", pipeline_sha256, 1);
  ROW("input file", input_path, 0);
  ROW("input SHA-256", input_sha256, 1);
  ROW("output file", output_path, 0);
  ROW("output SHA-256", output_sha256, 1);
#undef ROW
  const char *count_names[4] = {"rows written", "rows rejected",
                                "duplicate events", "threads"};
  for (int c = 0; c < 4; c++) {
    for (size_t k = 0; k < r->num_runs; k++) {
      const tdm__run_record *run = r->runs[k].run;
      int64_t value = c == 0   ? run->rows
                      : c == 1 ? run->rejected
                      : c == 2 ? run->duplicates
                               : run->threads;
      if (value < 0)
        v[k] = NULL;
      else {
        snprintf(numbers[k][c + 1], sizeof numbers[k][c + 1], "%lld",
                 (long long)value);
        v[k] = numbers[k][c + 1];
      }
    }
    runs_row(h, r, count_names[c], v, 0);
  }
  put(h, "</tbody></table></div>\n");
  if (r->num_runs == 2) {
    const char *a = r->runs[0].run->input_sha256,
               *b = r->runs[1].run->input_sha256;
    if (!(a && b && strcmp(a, b) == 0))
      put(h,
          "<p class=\"warn\">The runs read different inputs: the "
          "comparison pairs their rows, but they are not the same "
          "events.</p>\n");
  }
}

static void distribution_section(html *h, const tdm__report_page *r) {
  put(h, "<h2>Scores</h2>\n<div class=\"charts\">");
  histogram(h, r);
  put(h,
      "<div class=\"scroll\"><table><caption class=\"note\">Score "
      "statistics (percentiles interpolate linearly)</caption><thead><tr>"
      "<th scope=\"col\">statistic</th>");
  for (size_t k = 0; k < r->num_runs; k++) {
    put(h, "<th scope=\"col\" class=\"num\">");
    swatch(h, k);
    putf(h, "run %s</th>", run_names[k]);
  }
  if (r->num_runs == 2)
    put(h, "<th scope=\"col\" class=\"num\">B &#8722; A</th>");
  put(h, "</tr></thead><tbody>\n");
  const tdm__score_distribution *d[2] = {r->runs[0].distribution,
                                         r->runs[r->num_runs - 1].distribution};
  for (int row = 0; row < 2; row++) {
    putf(h, "<tr><th scope=\"row\">%s</th>", row == 0 ? "count" : "missing");
    for (size_t k = 0; k < r->num_runs; k++) {
      put(h, "<td class=\"num\">");
      put_count(h, row == 0 ? d[k]->count : d[k]->missing);
      put(h, "</td>");
    }
    if (r->num_runs == 2) {
      long long delta =
          row == 0 ? (long long)d[1]->count - (long long)d[0]->count
                   : (long long)d[1]->missing - (long long)d[0]->missing;
      putf(h, "<td class=\"num\">%+lld</td>", delta);
    }
    put(h, "</tr>\n");
  }
  for (int row = 0; row < 11; row++) {
    const char *name = row == 0    ? "mean"
                       : row == 1  ? "std"
                       : row == 2  ? "min"
                       : row == 10 ? "max"
                                   : tdm__score_percentile_names[row - 3];
    double values[2];
    for (size_t k = 0; k < r->num_runs; k++)
      values[k] = row == 0    ? d[k]->mean
                  : row == 1  ? d[k]->std
                  : row == 2  ? d[k]->min
                  : row == 10 ? d[k]->max
                              : d[k]->p[row - 3];
    putf(h, "<tr><th scope=\"row\">%s</th>", name);
    for (size_t k = 0; k < r->num_runs; k++) {
      put(h, "<td class=\"num\">");
      put_stat(h, values[k]);
      put(h, "</td>");
    }
    if (r->num_runs == 2) {
      put(h, "<td class=\"num\">");
      put_delta(h, values[1] - values[0]);
      put(h, "</td>");
    }
    put(h, "</tr>\n");
  }
  put(h, "</tbody></table></div></div>\n");
}

static void metric_row(html *h, const tdm__report_page *r, const char *name,
                       const char *title, size_t offset) {
  double values[2] = {NAN, NAN};
  putf(h, "<tr><th scope=\"row\" title=\"%s\">%s</th>", title, name);
  for (size_t k = 0; k < r->num_runs; k++) {
    const tdm__eval_binary_result *b = r->runs[k].evaluation.binary;
    put(h, "<td class=\"num\">");
    if (b != NULL) {
      values[k] = *(const double *)((const char *)b + offset);
      put_metric(h, values[k]);
    } else {
      put(h, "<span class=\"na\">no labels</span>");
    }
    put(h, "</td>");
  }
  if (r->num_runs == 2) {
    put(h, "<td class=\"num\">");
    put_delta(h, values[1] - values[0]);
    put(h, "</td>");
  }
  put(h, "</tr>\n");
}

static void confusion_tables(html *h, const tdm__report_page *r) {
  for (size_t k = 0; k < r->num_runs; k++) {
    const tdm__eval_binary_result *b = r->runs[k].evaluation.binary;
    if (b == NULL || b->num_thresholds == 0) continue;
    put(h, "<h3>");
    swatch(h, k);
    putf(h,
         "Run %s: confusion matrix by threshold (positive when score "
         "&#8805; threshold)</h3>\n",
         run_names[k]);
    put(h,
        "<div class=\"scroll\"><table><thead><tr><th scope=\"col\" "
        "class=\"num\">threshold</th><th scope=\"col\" class=\"num\">true "
        "negatives</th><th scope=\"col\" class=\"num\">false "
        "positives</th><th scope=\"col\" class=\"num\">false "
        "negatives</th><th scope=\"col\" class=\"num\">true "
        "positives</th><th scope=\"col\" class=\"num\">precision</th><th "
        "scope=\"col\" class=\"num\">recall</th><th scope=\"col\" "
        "class=\"num\">F1</th><th scope=\"col\" "
        "class=\"num\">accuracy</th></tr></thead><tbody>\n");
    for (size_t t = 0; t < b->num_thresholds; t++) {
      const tdm__eval_threshold *m = &b->thresholds[t];
      putf(h, "<tr><td class=\"num\">%.4g</td>", m->threshold);
      size_t counts[4] = {m->tn, m->fp, m->fn, m->tp};
      for (int c = 0; c < 4; c++) {
        put(h, "<td class=\"num\">");
        put_count(h, counts[c]);
        put(h, "</td>");
      }
      double ratios[4] = {m->precision, m->recall, m->f1, m->accuracy};
      int undefined[4] = {m->precision_undefined, m->recall_undefined,
                          m->f1_undefined, 0};
      for (int c = 0; c < 4; c++) {
        put(h, "<td class=\"num\">");
        put_metric(h, ratios[c]);
        if (undefined[c])
          put(h,
              " <span class=\"na\" title=\"an empty denominator: 0 by "
              "scikit-learn's zero_division\">*</span>");
        put(h, "</td>");
      }
      put(h, "</tr>\n");
    }
    put(h, "</tbody></table></div>\n");
  }
}

static void evaluation_section(html *h, const tdm__report_page *r) {
  put(h, "<h2>Metrics</h2>\n");
  size_t evaluated = 0, curves = 0, calibrated = 0;
  for (size_t k = 0; k < r->num_runs; k++) {
    const tdm__report_evaluation *e = &r->runs[k].evaluation;
    if (e->binary == NULL) continue;
    evaluated++;
    if (e->curve != NULL) curves++;
    if (e->binary->num_bins > 0) calibrated++;
    put(h, "<p class=\"meta\">");
    swatch(h, k);
    putf(h, "Run %s: ", run_names[k]);
    put_text(h, e->source);
    put(h, "</p>\n");
  }
  if (evaluated == 0) {
    put(h,
        "<p class=\"note\">No labels and no recorded metrics: give "
        "<code>--labels FILE</code> (or <code>--label-col NAME</code>) to "
        "draw ROC, precision-recall and calibration plots, or record "
        "metrics with <code>tandem eval --record RUN</code>.</p>\n");
    return;
  }
  run_table_head(h, r, NULL, "metric", 1);
  /* Rows, positives and base rate first: they say what the metrics are
   * over. */
  for (int row = 0; row < 2; row++) {
    putf(h, "<tr><th scope=\"row\">%s</th>",
         row == 0 ? "rows evaluated" : "positives");
    for (size_t k = 0; k < r->num_runs; k++) {
      const tdm__eval_binary_result *b = r->runs[k].evaluation.binary;
      put(h, "<td class=\"num\">");
      if (b == NULL)
        put(h, "<span class=\"na\">no labels</span>");
      else {
        put_count(h, row == 0 ? b->count : b->positives);
        if (row == 1) {
          put(h, " (");
          put_percent(h, b->positives, b->count);
          put(h, ")");
        }
      }
      put(h, "</td>");
    }
    if (r->num_runs == 2) put(h, "<td></td>");
    put(h, "</tr>\n");
  }
  metric_row(h, r, "ROC AUC", "area under the ROC curve (roc_auc_score)",
             offsetof(tdm__eval_binary_result, roc_auc));
  metric_row(h, r, "average precision",
             "average_precision_score: the step sum of (R_n - R_n-1) P_n",
             offsetof(tdm__eval_binary_result, average_precision));
  metric_row(h, r, "log loss",
             "log_loss, probabilities clipped to [eps, 1-eps]",
             offsetof(tdm__eval_binary_result, log_loss));
  metric_row(h, r, "Brier score", "brier_score_loss",
             offsetof(tdm__eval_binary_result, brier));
  metric_row(h, r, "KS", "max |TPR - FPR| over all thresholds",
             offsetof(tdm__eval_binary_result, ks));
  put(h, "</tbody></table></div>\n");
  put(h,
      "<p class=\"note\">Lower is better for log loss and Brier score; "
      "higher for the others. Definitions and edge cases are "
      "scikit-learn 1.2's (<code>tandem eval --help</code>).</p>\n");

  if (curves > 0 || calibrated > 0) {
    put(h, "<div class=\"charts\">");
    if (curves > 0) {
      curve_chart(h, r, 0);
      curve_chart(h, r, 1);
    }
    if (calibrated > 0) calibration_chart(h, r);
    put(h, "</div>\n");
  }
  if (curves == 0)
    put(h,
        "<p class=\"note\">The ROC and precision-recall curves need the "
        "labels themselves: give <code>--labels</code> to draw "
        "them.</p>\n");
  confusion_tables(h, r);
}

static void comparison_section(html *h, const tdm__report_page *r) {
  const tdm__comparison *c = r->comparison;
  put(h, "<h2>Comparison: run B against run A</h2>\n");
  put(h, "<div class=\"scroll\"><table><tbody>\n");
  put(h,
      "<tr><th scope=\"row\">population stability index (PSI)</th>"
      "<td class=\"num\">");
  put_metric(h, c->psi);
  put(h, "</td><td>");
  if (isfinite(c->psi))
    put(h, c->psi < 0.1    ? "stable (below 0.1)"
           : c->psi < 0.25 ? "a moderate shift (0.1 to 0.25)"
                           : "a major shift (0.25 or more)");
  putf(h, "; %d bins cut at run A's deciles, empty bins as %g</td></tr>\n",
       TDM__PSI_BINS, TDM__PSI_EPSILON);
  put(h,
      "<tr><th scope=\"row\">mean delta (B &#8722; A)</th><td "
      "class=\"num\">");
  put_delta(h, c->mean_delta);
  put(h,
      "</td><td></td></tr>\n<tr><th scope=\"row\">rows paired</th><td "
      "class=\"num\">");
  put_count(h, c->matched);
  put(h, "</td><td>");
  if (c->by_key) {
    put(h, "by id column <code>");
    put_text(h, c->oa->key_name);
    put(h, "</code>; ");
    put_count(h, c->oa->rows - c->matched);
    put(h, " only in A, ");
    put_count(h, c->ob->rows - c->matched);
    put(h, " only in B");
  } else {
    put(h, "by position");
  }
  put(h,
      "</td></tr>\n<tr><th scope=\"row\">scores changed</th><td "
      "class=\"num\">");
  put_count(h, c->scores_changed);
  put(h, "</td><td>");
  put_percent(h, c->scores_changed, c->matched);
  put(h, " of paired rows; mean |B &#8722; A| ");
  put_stat(h, c->mean_abs_delta);
  put(h, "</td></tr>\n");
  if (c->decisions) {
    put(h, "<tr><th scope=\"row\">decisions changed</th><td class=\"num\">");
    put_count(h, c->decisions_changed);
    put(h, "</td><td>");
    put_percent(h, c->decisions_changed, c->decisions_compared);
    put(h, " of ");
    put_count(h, c->decisions_compared);
    put(h, " rows with a decision in both</td></tr>\n");
  }
  put(h, "</tbody></table></div>\n");

  if (c->decisions && c->decisions_changed > 0 && c->examples > 0) {
    putf(h, "<h3>Changed decisions (the first %zu)</h3>\n",
         c->examples < c->decisions_changed ? c->examples
                                            : c->decisions_changed);
    put(h,
        "<div class=\"scroll\"><table><thead><tr><th scope=\"col\" "
        "class=\"num\">row in A</th><th scope=\"col\">");
    put_text(h, c->by_key ? c->oa->key_name : "id");
    put(h,
        "</th><th scope=\"col\" class=\"num\">score A</th><th "
        "scope=\"col\">decision A</th><th scope=\"col\" class=\"num\">"
        "score B</th><th scope=\"col\">decision B</th></tr></thead>"
        "<tbody>\n");
    size_t shown = 0;
    for (size_t i = 0; i < c->oa->rows && shown < c->examples; i++) {
      size_t j = c->partner[i];
      if (j == SIZE_MAX) continue;
      const char *x = tdm__run_output_text(c->oa, c->oa->decisions[i]);
      const char *y = tdm__run_output_text(c->ob, c->ob->decisions[j]);
      if (x == NULL || y == NULL || strcmp(x, y) == 0) continue;
      shown++;
      putf(h, "<tr><td class=\"num\">%zu</td><td>", i + 1);
      put_text(h,
               c->by_key ? tdm__run_output_text(c->oa, c->oa->keys[i]) : NULL);
      put(h, "</td><td class=\"num\">");
      put_metric(h, c->oa->scores[i]);
      put(h, "</td><td>");
      put_text(h, x);
      put(h, "</td><td class=\"num\">");
      put_metric(h, c->ob->scores[j]);
      put(h, "</td><td>");
      put_text(h, y);
      put(h, "</td></tr>\n");
    }
    put(h, "</tbody></table></div>\n");
  }

  /* The recorded metrics both runs have, as `tandem compare` pairs them. */
  size_t common = 0;
  for (size_t i = 0; i < c->nma; i++)
    for (size_t j = 0; j < c->nmb; j++)
      if (strcmp(c->ma[i].name, c->mb[j].name) == 0) common++;
  if (common > 0) {
    put(h,
        "<h3>Recorded metrics (run registry)</h3>\n<div "
        "class=\"scroll\"><table><thead><tr><th scope=\"col\">metric</th>"
        "<th scope=\"col\" class=\"num\">run A</th><th scope=\"col\" "
        "class=\"num\">run B</th><th scope=\"col\" class=\"num\">B "
        "&#8722; A</th></tr></thead><tbody>\n");
    for (size_t i = 0; i < c->nma; i++)
      for (size_t j = 0; j < c->nmb; j++) {
        if (strcmp(c->ma[i].name, c->mb[j].name) != 0) continue;
        put(h, "<tr><th scope=\"row\"><code>");
        put_text(h, c->ma[i].name);
        put(h, "</code></th><td class=\"num\">");
        put_stat(h, c->ma[i].value);
        put(h, "</td><td class=\"num\">");
        put_stat(h, c->mb[j].value);
        put(h, "</td><td class=\"num\">");
        put_delta(h, c->mb[j].value - c->ma[i].value);
        put(h, "</td></tr>\n");
      }
    put(h, "</tbody></table></div>\n");
  }
}

/* ---- lift and cumulative gain ---- */

/* Cumulative gain (kind 0) or lift (kind 1) against the share of rows
 * taken, highest scores first, from the curve points of metrics.c. */
static void gain_chart(html *h, const tdm__report_page *r, int kind) {
  int gain = kind == 0;
  double top = 1.02;
  for (size_t k = 0; k < r->num_runs && !gain; k++) {
    const tdm__report_evaluation *e = &r->runs[k].evaluation;
    if (e->curve == NULL || e->curve_count < 2) continue;
    const tdm__eval_curve_point *last = &e->curve[e->curve_count - 1];
    for (size_t i = 1; i < e->curve_count; i++) {
      double share = (double)(e->curve[i].tp + e->curve[i].fp) /
                     (double)(last->tp + last->fp);
      double lift =
          last->tp ? (double)e->curve[i].tp / (double)last->tp / share : NAN;
      if (isfinite(lift) && lift * 1.05 > top) top = lift * 1.05;
    }
  }
  frame f = {0, 1, 0, top, 0};
  chart_open(h, &f, gain ? "Cumulative gain" : "Lift",
             gain ? "Share of all positives found against the share of rows "
                    "taken, highest scores first; the diagonal is a random "
                    "ordering."
                  : "Positive rate of the rows taken, highest scores first, "
                    "divided by the overall positive rate; 1 is a random "
                    "ordering.",
             "share of rows taken (highest scores first)",
             gain ? "share of positives found" : "lift");
  if (gain)
    reference_line(h, &f, 0, 0, 1, 1);
  else
    reference_line(h, &f, 0, 1, 1, 1);
  const char *labels[2];
  char text[2][64];
  size_t series = 0;
  for (size_t k = 0; k < r->num_runs; k++) {
    const tdm__report_evaluation *e = &r->runs[k].evaluation;
    if (e->curve == NULL || e->curve_count < 2) continue;
    const tdm__eval_curve_point *last = &e->curve[e->curve_count - 1];
    if (last->tp == 0) continue;
    size_t shown = curve_shown(e->curve_count);
    double *xs, *ys;
    if (!point_arrays(h, shown, &xs, &ys)) return;
    size_t m = 0;
    for (size_t i = 0; i < shown; i++) {
      const tdm__eval_curve_point *p =
          &e->curve[curve_index(i, shown, e->curve_count)];
      double share = (double)(p->tp + p->fp) / (double)(last->tp + last->fp);
      double found = (double)p->tp / (double)last->tp;
      if (!gain && share == 0) continue; /* lift starts at the first row */
      xs[m] = share;
      ys[m] = gain ? found : found / share;
      m++;
    }
    polyline(h, &f, xs, ys, m, k);
    tdm__free(xs);
    tdm__free(ys);
    snprintf(text[series], sizeof text[series], "run %s", run_names[k]);
    labels[series] = text[series];
    series++;
  }
  /* Both curves leave their bottom corner empty: gain above the
   * diagonal, lift above 1. */
  chart_close(h, series, labels,
              gain ? LEGEND_BOTTOM_RIGHT : LEGEND_BOTTOM_LEFT, 0,
              gain ? "Cumulative gain (drawn from at most 500 points per run)"
                   : "Lift (drawn from at most 500 points per run)");
}

/* The gain and lift at each tenth of the rows. */
static void gain_table(html *h, const tdm__report_page *r, size_t k) {
  const tdm__report_evaluation *e = &r->runs[k].evaluation;
  const tdm__eval_curve_point *last = &e->curve[e->curve_count - 1];
  size_t rows = last->tp + last->fp;
  put(h, "<h3>");
  swatch(h, k);
  putf(h,
       "Run %s: gain and lift by tenth of the rows (highest scores "
       "first)</h3>\n",
       run_names[k]);
  put(h,
      "<div class=\"scroll\"><table class=\"gain\"><thead><tr><th "
      "scope=\"col\" class=\"num\">tenth</th><th scope=\"col\" "
      "class=\"num\">rows taken</th><th scope=\"col\" class=\"num\">"
      "share of rows</th><th scope=\"col\" class=\"num\">lowest score "
      "taken</th><th scope=\"col\" class=\"num\">positives found</th><th "
      "scope=\"col\" class=\"num\">cumulative gain</th><th scope=\"col\" "
      "class=\"num\">lift</th></tr></thead><tbody>\n");
  for (size_t part = 1; part <= 10; part++) {
    const tdm__eval_curve_point *p =
        &e->curve[tdm__eval_curve_at_share(e->curve, e->curve_count, part, 10)];
    size_t taken = p->tp + p->fp;
    double share = (double)taken / (double)rows;
    double found = last->tp ? (double)p->tp / (double)last->tp : NAN;
    putf(h, "<tr><td class=\"num\">%zu</td><td class=\"num\">", part);
    put_count(h, taken);
    put(h, "</td><td class=\"num\">");
    put_metric(h, share);
    put(h, "</td><td class=\"num\">");
    put_stat(h, p->threshold);
    put(h, "</td><td class=\"num\">");
    put_count(h, p->tp);
    put(h, "</td><td class=\"num\">");
    put_metric(h, found);
    put(h, "</td><td class=\"num\">");
    put_metric(h, share > 0 ? found / share : NAN);
    put(h, "</td></tr>\n");
  }
  put(h, "</tbody></table></div>\n");
}

static void gain_section(html *h, const tdm__report_page *r) {
  put(h, "<h2>Lift and cumulative gain</h2>\n");
  size_t with_curve = 0;
  for (size_t k = 0; k < r->num_runs; k++) {
    const tdm__report_evaluation *e = &r->runs[k].evaluation;
    if (e->curve != NULL && e->curve_count >= 2 &&
        e->curve[e->curve_count - 1].tp > 0)
      with_curve++;
  }
  if (with_curve == 0) {
    put(h,
        "<p class=\"note\">Lift and gain need the labels themselves and at "
        "least one positive: give <code>--labels</code>.</p>\n");
    return;
  }
  put(h,
      "<p class=\"note\">Rows are taken from the highest score down; rows "
      "with equal scores are taken together, so a tenth can hold a little "
      "more than a tenth of the rows.</p>\n<div class=\"charts\">");
  gain_chart(h, r, 0);
  gain_chart(h, r, 1);
  put(h, "</div>\n");
  for (size_t k = 0; k < r->num_runs; k++) {
    const tdm__report_evaluation *e = &r->runs[k].evaluation;
    if (e->curve != NULL && e->curve_count >= 2 &&
        e->curve[e->curve_count - 1].tp > 0)
      gain_table(h, r, k);
  }
}

/* ---- decisions ---- */

/* Each run's decisions, counted. */
typedef struct decision_table {
  tdm__decision_count *counts[2];
  size_t n[2];
  size_t total[2];
} decision_table;

static void decision_table_free(decision_table *t) {
  for (int k = 0; k < 2; k++) tdm__free(t->counts[k]);
}

static int decision_table_make(const tdm__report_page *r, decision_table *t) {
  memset(t, 0, sizeof *t);
  tdm_error ignored;
  for (size_t k = 0; k < r->num_runs; k++) {
    int rc = tdm__decision_counts(r->runs[k].output, &t->counts[k], &t->n[k],
                                  &ignored);
    if (rc != TDM_OK) return rc;
    for (size_t i = 0; i < t->n[k]; i++) t->total[k] += t->counts[k][i].count;
  }
  return TDM_OK;
}

/* How many rows of run k have decision d (0 when none). */
static size_t decision_count(const decision_table *t, size_t k, const char *d) {
  for (size_t i = 0; i < t->n[k]; i++)
    if (strcmp(t->counts[k][i].decision, d) == 0) return t->counts[k][i].count;
  return 0;
}

/* The decisions in table order: run A's by count, then those only B has. */
static void for_each_decision(const decision_table *t, size_t num_runs,
                              void (*visit)(void *, const char *), void *arg) {
  for (size_t k = 0; k < num_runs; k++)
    for (size_t i = 0; i < t->n[k]; i++) {
      const char *d = t->counts[k][i].decision;
      if (k == 1 && decision_count(t, 0, d) > 0) continue;
      visit(arg, d);
    }
}

typedef struct decision_row_context {
  html *h;
  const decision_table *t;
  size_t num_runs;
} decision_row_context;

static void decision_row(void *arg, const char *d) {
  decision_row_context *c = arg;
  html *h = c->h;
  put(h, "<tr><th scope=\"row\">");
  put_text(h, d);
  put(h, "</th>");
  size_t n[2] = {0, 0};
  for (size_t k = 0; k < c->num_runs; k++) {
    n[k] = decision_count(c->t, k, d);
    put(h, "<td class=\"num\">");
    put_count(h, n[k]);
    put(h, " (");
    put_percent(h, n[k], c->t->total[k]);
    put(h, ")</td>");
  }
  if (c->num_runs == 2)
    putf(h, "<td class=\"num\">%+lld</td>", (long long)n[1] - (long long)n[0]);
  put(h, "</tr>\n");
}

static void decisions_section(html *h, const tdm__report_page *r,
                              const decision_table *t) {
  put(h, "<h2>Decisions</h2>\n");
  if (t->n[0] == 0 && (r->num_runs < 2 || t->n[1] == 0)) {
    put(h,
        "<p class=\"note\">The outputs have no decision column (a model "
        "scored alone, or a pipeline without decision rules).</p>\n");
    return;
  }
  run_table_head(h, r, "decisions", "decision", 1);
  decision_row_context c = {h, t, r->num_runs};
  for_each_decision(t, r->num_runs, decision_row, &c);
  put(h, "</tbody></table></div>\n");
}

/* ---- the summary ---- */

static double number_member(const tdm__json *v, const char *key);

/* A run's recorded RMSE (`tandem eval --record` of a regression), or NaN. */
static double recorded_rmse(const tdm__run_record *run) {
  if (run->metrics == NULL) return NAN;
  tdm__json_doc doc;
  tdm_error ignored;
  if (tdm__json_parse(&doc, run->metrics, strlen(run->metrics), "metrics",
                      TDM__JSON_ALLOW_NAN, &ignored) != TDM_OK)
    return NAN;
  double v = NAN;
  if (doc.root->type == TDM__JSON_OBJECT) v = number_member(doc.root, "rmse");
  tdm__json_doc_free(&doc);
  return v;
}

static double run_metric(const tdm__report_page *r, size_t k, int which) {
  const tdm__eval_binary_result *b = r->runs[k].evaluation.binary;
  if (b == NULL) return NAN;
  return which == 0 ? b->roc_auc : b->average_precision;
}

typedef struct summary_decisions {
  html *h;
  const decision_table *t;
  size_t k;
  int first;
} summary_decisions;

static void summary_decision(void *arg, const char *d) {
  summary_decisions *c = arg;
  size_t n = decision_count(c->t, c->k, d);
  if (n == 0) return;
  if (!c->first) put(c->h, "<br>");
  c->first = 0;
  put_text(c->h, d);
  put(c->h, " ");
  put_count(c->h, n);
  put(c->h, " (");
  put_percent(c->h, n, c->t->total[c->k]);
  put(c->h, ")");
}

/* The verdict: one sentence a reviewer can act on (docs/runs.md says
 * the rules). kind: 1 good, -1 a problem, 0 neither. */
static void verdict(html *h, const tdm__report_page *r, double rmse[2]) {
  char text[600];
  int kind = 0;
  size_t used = 0;
#define SAY(...)                                                              \
  do {                                                                        \
    if (used < sizeof text)                                                   \
      used += (size_t)snprintf(text + used, sizeof text - used, __VA_ARGS__); \
  } while (0)
  if (r->num_runs == 1) {
    const tdm__eval_binary_result *b = r->runs[0].evaluation.binary;
    if (b != NULL)
      SAY("Run A ranks with ROC AUC %.4f and average precision %.4f over "
          "%zu labelled rows.",
          b->roc_auc, b->average_precision, b->count);
    else if (isfinite(rmse[0]))
      SAY("Run A has a recorded RMSE of %.4g.", rmse[0]);
    else
      SAY("Run A has no labels and no recorded metrics: its quality is "
          "unknown (give --labels, or record metrics with tandem eval "
          "--record).");
  } else {
    double psi_value = r->comparison->psi;
    double a = run_metric(r, 0, 0), b = run_metric(r, 1, 0);
    if (isfinite(a) && isfinite(b)) {
      double d = b - a;
      if (d >= 0.005) {
        SAY("Run B ranks better than run A (ROC AUC %+.4f)", d);
        kind = 1;
      } else if (d <= -0.005) {
        SAY("Run B ranks worse than run A (ROC AUC %+.4f)", d);
        kind = -1;
      } else {
        SAY("Runs A and B rank alike (ROC AUC %+.4f, within 0.005)", d);
      }
    } else if (isfinite(rmse[0]) && isfinite(rmse[1])) {
      double d = rmse[1] - rmse[0];
      if (d <= -0.01 * rmse[0]) {
        SAY("Run B predicts better than run A (RMSE %+.4g)", d);
        kind = 1;
      } else if (d >= 0.01 * rmse[0]) {
        SAY("Run B predicts worse than run A (RMSE %+.4g)", d);
        kind = -1;
      } else {
        SAY("Runs A and B predict alike (RMSE within 1%%)");
      }
    } else {
      SAY("Without labels the runs are compared by their scores only");
    }
    if (!isfinite(psi_value))
      SAY("; the score shift is unknown (a run has no scores)");
    else if (psi_value < 0.1)
      SAY("; scores are stable (PSI %.4f)", psi_value);
    else if (psi_value < 0.25)
      SAY("; scores shifted moderately (PSI %.4f)", psi_value);
    else {
      SAY("; scores shifted a lot (PSI %.4f): check the inputs before "
          "trusting run B",
          psi_value);
      kind = -1;
    }
    if (r->comparison->decisions)
      SAY("; %zu of %zu decisions changed.", r->comparison->decisions_changed,
          r->comparison->decisions_compared);
    else
      SAY(".");
  }
#undef SAY
  putf(h, "<p class=\"verdict %s\"><strong>Verdict:</strong> ",
       kind > 0   ? "good"
       : kind < 0 ? "bad"
                  : "neutral");
  put_text(h, text);
  put(h, "</p>\n");
}

static void summary_section(html *h, const tdm__report_page *r,
                            const decision_table *t) {
  double rmse[2] = {NAN, NAN};
  for (size_t k = 0; k < r->num_runs; k++)
    rmse[k] = recorded_rmse(r->runs[k].run);
  put(h, "<h2>Summary</h2>\n");
  verdict(h, r, rmse);
  run_table_head(h, r, "summary", "", 0);
  put(h, "<tr><th scope=\"row\">run</th>");
  for (size_t k = 0; k < r->num_runs; k++) {
    put(h, "<td class=\"num hash\">");
    put_text(h, r->runs[k].run->id);
    put(h, "</td>");
  }
  put(h, "</tr>\n<tr><th scope=\"row\">rows</th>");
  for (size_t k = 0; k < r->num_runs; k++) {
    put(h, "<td class=\"num\">");
    put_count(h, r->runs[k].output->rows);
    put(h, "</td>");
  }
  put(h, "</tr>\n");
  static const char *const names[2] = {"ROC AUC", "PR AUC (average precision)"};
  for (int which = 0; which < 2; which++) {
    putf(h, "<tr><th scope=\"row\">%s</th>", names[which]);
    for (size_t k = 0; k < r->num_runs; k++) {
      put(h, "<td class=\"num\">");
      if (r->runs[k].evaluation.binary == NULL)
        put(h, "<span class=\"na\">no labels</span>");
      else
        put_metric(h, run_metric(r, k, which));
      put(h, "</td>");
    }
    put(h, "</tr>\n");
  }
  if (isfinite(rmse[0]) || isfinite(rmse[1])) {
    put(h, "<tr><th scope=\"row\">RMSE (recorded)</th>");
    for (size_t k = 0; k < r->num_runs; k++) {
      put(h, "<td class=\"num\">");
      put_stat(h, rmse[k]);
      put(h, "</td>");
    }
    put(h, "</tr>\n");
  }
  if (t->n[0] > 0 || (r->num_runs == 2 && t->n[1] > 0)) {
    put(h, "<tr><th scope=\"row\">decisions</th>");
    for (size_t k = 0; k < r->num_runs; k++) {
      put(h, "<td class=\"num\">");
      summary_decisions c = {h, t, k, 1};
      for_each_decision(t, r->num_runs, summary_decision, &c);
      put(h, "</td>");
    }
    put(h, "</tr>\n");
  }
  if (r->comparison != NULL) {
    put(h,
        "<tr><th scope=\"row\">PSI of the scores</th><td class=\"num\">"
        "<span class=\"na\">reference</span></td><td class=\"num\">");
    put_metric(h, r->comparison->psi);
    put(h, "</td></tr>\n");
  }
  put(h, "</tbody></table></div>\n");
}

/* ---- features (two --explain runs) ---- */

static void features_section(html *h, const tdm__comparison *c) {
  put(h, "<h2>Feature drift: run B against run A</h2>\n");
  if (c->num_feature_psi == 0) {
    put(h,
        "<p class=\"note\">Per-feature PSI needs both runs' features: run "
        "<code>tandem batch --explain</code> with a JSON Lines "
        "output.</p>\n");
    return;
  }
  putf(h,
       "<p class=\"note\">For each feature, PSI of run B's values against "
       "run A's: %d bins at run A's deciles and one for missing values, "
       "empty bins as %g (as live drift computes it). Below 0.1 is "
       "stable, 0.1 to 0.25 a moderate shift, 0.25 or more a major "
       "one.</p>\n",
       TDM__PSI_BINS, TDM__PSI_EPSILON);
  put(h,
      "<div class=\"scroll\"><table class=\"features\"><thead><tr><th "
      "scope=\"col\">feature</th><th scope=\"col\" class=\"num\">PSI</th>"
      "<th scope=\"col\">shift</th></tr></thead><tbody>\n");
  for (size_t i = 0; i < c->num_feature_psi; i++) {
    double v = c->feature_psi[i];
    put(h, "<tr><th scope=\"row\"><code>");
    put_text(h, c->feature_psi_names[i]);
    put(h, "</code></th><td class=\"num\">");
    put_metric(h, v);
    put(h, "</td><td>");
    put(h, !isfinite(v) ? "<span class=\"na\">n/a</span>"
           : v < 0.1    ? "stable"
           : v < 0.25   ? "moderate"
                        : "<strong>major</strong>");
    put(h, "</td></tr>\n");
  }
  put(h, "</tbody></table></div>\n");
}

int tdm__report_html(const tdm__report_page *r, tdm__buf *out, tdm_error *err) {
  html h = {out, TDM_OK, 0};
  put(&h,
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta "
      "charset=\"utf-8\">\n<meta name=\"viewport\" "
      "content=\"width=device-width, initial-scale=1\">\n<title>");
  if (r->num_runs == 2) {
    put(&h, "tandem report: run ");
    put_text(&h, r->runs[0].run->id);
    put(&h, " vs run ");
    put_text(&h, r->runs[1].run->id);
  } else {
    put(&h, "tandem report: run ");
    put_text(&h, r->runs[0].run->id);
  }
  put(&h, "</title>\n");
  put(&h, style);
  put(&h, "</head>\n<body>\n<main>\n<h1>");
  if (r->num_runs == 2) {
    put(&h, "Run ");
    swatch(&h, 0);
    put_text(&h, r->runs[0].run->id);
    put(&h, " vs run ");
    swatch(&h, 1);
    put_text(&h, r->runs[1].run->id);
  } else {
    put(&h, "Run ");
    put_text(&h, r->runs[0].run->id);
  }
  put(&h, "</h1>\n<p class=\"meta\">Report by tandem " TDM_VERSION);
  if (r->generated_at) {
    put(&h, ", generated ");
    put_text(&h, r->generated_at);
  }
  put(&h,
      ". Sections: <a href=\"#summary\">summary</a>, <a "
      "href=\"#runs\">runs</a>, <a href=\"#scores\">scores</a>, <a "
      "href=\"#decisions\">decisions</a>, <a href=\"#metrics\">metrics</a>, "
      "<a href=\"#gain\">lift and gain</a>");
  if (r->comparison)
    put(&h,
        ", <a href=\"#comparison\">comparison</a>, <a "
        "href=\"#features\">feature drift</a>");
  put(&h, ".</p>\n");
  decision_table decisions;
  if (decision_table_make(r, &decisions) != TDM_OK) h.rc = TDM_ENOMEM;
  put(&h, "<section id=\"summary\">\n");
  summary_section(&h, r, &decisions);
  put(&h, "</section>\n<section id=\"runs\">\n");
  runs_section(&h, r);
  put(&h, "</section>\n<section id=\"scores\">\n");
  distribution_section(&h, r);
  put(&h, "</section>\n<section id=\"decisions\">\n");
  decisions_section(&h, r, &decisions);
  put(&h, "</section>\n<section id=\"metrics\">\n");
  evaluation_section(&h, r);
  put(&h, "</section>\n<section id=\"gain\">\n");
  gain_section(&h, r);
  put(&h, "</section>\n");
  if (r->comparison) {
    put(&h, "<section id=\"comparison\">\n");
    comparison_section(&h, r);
    put(&h, "</section>\n<section id=\"features\">\n");
    features_section(&h, r->comparison);
    put(&h, "</section>\n");
  }
  decision_table_free(&decisions);
  put(&h, "</main>\n</body>\n</html>\n");
  if (h.rc != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "out of memory writing the report");
  return TDM_OK;
}

/* ---- stored metrics ---- */

static double number_member(const tdm__json *v, const char *key) {
  const tdm__json *m = tdm__json_get(v, key);
  double x;
  if (m == NULL || m->type != TDM__JSON_NUMBER ||
      tdm__parse_double(m->text, m->text_len, &x) != 0)
    return NAN;
  return x;
}

static size_t count_member(const tdm__json *v, const char *key) {
  double x = number_member(v, key);
  return x >= 0 && x < 1e18 ? (size_t)x : 0;
}

int tdm__report_metrics_from_json(const char *json,
                                  tdm__eval_binary_result *out, int *found,
                                  tdm_error *err) {
  memset(out, 0, sizeof *out);
  *found = 0;
  if (json == NULL) return TDM_OK;
  tdm__json_doc doc;
  tdm_error ignored;
  if (tdm__json_parse(&doc, json, strlen(json), "metrics", TDM__JSON_ALLOW_NAN,
                      &ignored) != TDM_OK)
    return TDM_OK; /* not eval's form: the comparison still lists it */
  const tdm__json *root = doc.root;
  const tdm__json *task = tdm__json_get(root, "task");
  if (root->type != TDM__JSON_OBJECT || task == NULL ||
      task->type != TDM__JSON_STRING || task->count != 6 ||
      memcmp(task->text, "binary", 6) != 0) {
    tdm__json_doc_free(&doc);
    return TDM_OK;
  }
  out->count = count_member(root, "count");
  out->positives = count_member(root, "positives");
  out->negatives = count_member(root, "negatives");
  out->base_rate = number_member(root, "base_rate");
  out->roc_auc = number_member(root, "roc_auc");
  out->average_precision = number_member(root, "average_precision");
  out->log_loss = number_member(root, "log_loss");
  out->brier = number_member(root, "brier");
  out->ks = number_member(root, "ks");
  const tdm__json *thresholds = tdm__json_get(root, "thresholds");
  const tdm__json *calibration = tdm__json_get(root, "calibration");
  const tdm__json *curve = calibration && calibration->type == TDM__JSON_OBJECT
                               ? tdm__json_get(calibration, "curve")
                               : NULL;
  size_t nt =
      thresholds && thresholds->type == TDM__JSON_ARRAY ? thresholds->count : 0;
  size_t nb = curve && curve->type == TDM__JSON_ARRAY ? curve->count : 0;
  out->thresholds = tdm__calloc(nt ? nt : 1, sizeof *out->thresholds);
  out->bins = tdm__calloc(nb ? nb : 1, sizeof *out->bins);
  if (out->thresholds == NULL || out->bins == NULL) {
    tdm__eval_binary_result_free(out);
    tdm__json_doc_free(&doc);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  for (size_t i = 0; i < nt; i++) {
    const tdm__json *t = &thresholds->items[i];
    if (t->type != TDM__JSON_OBJECT) continue;
    tdm__eval_threshold *m = &out->thresholds[out->num_thresholds++];
    m->threshold = number_member(t, "threshold");
    m->tn = count_member(t, "tn");
    m->fp = count_member(t, "fp");
    m->fn = count_member(t, "fn");
    m->tp = count_member(t, "tp");
    m->precision = number_member(t, "precision");
    m->recall = number_member(t, "recall");
    m->f1 = number_member(t, "f1");
    m->accuracy = number_member(t, "accuracy");
    m->precision_undefined = m->tp + m->fp == 0;
    m->recall_undefined = m->tp + m->fn == 0;
    m->f1_undefined = m->precision + m->recall == 0.0;
  }
  for (size_t i = 0; i < nb; i++) {
    const tdm__json *b = &curve->items[i];
    if (b->type != TDM__JSON_OBJECT) continue;
    tdm__eval_bin *bin = &out->bins[out->num_bins++];
    bin->index = count_member(b, "bin");
    bin->lower = number_member(b, "lower");
    bin->upper = number_member(b, "upper");
    bin->count = count_member(b, "count");
    bin->mean_predicted = number_member(b, "mean_predicted");
    bin->fraction_positive = number_member(b, "fraction_positive");
  }
  out->probabilities = nb > 0;
  out->bins_requested = nb > 0 ? count_member(calibration, "bins") : 0;
  tdm__json_doc_free(&doc);
  *found = 1;
  return TDM_OK;
}
