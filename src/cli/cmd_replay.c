/*
 * cmd_replay.c - `tandem replay`: the proof that batch and real time agree.
 * Sends a file's events, in file order, through a live server's events
 * endpoint (libcurl, so it also works through load balancers and TLS), and
 * compares each answer with what the batch runner computes for the same
 * event: the pipeline core run in file order over the whole file, exactly
 * as `tandem batch` does. Exit 0 only with zero differences; otherwise the
 * first differences are printed. It stays on the internal modules: its
 * batch side reads tables as of each event's time while a tdm_state
 * follows their newest version as a server does, and the public API has
 * no call that gives a batch run's answers (rejects included) one event
 * at a time (docs/embedding.md).
 */
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/arena.h"
#include "../core/core.h"
#include "../core/json.h"
#include "../io/events.h"
#include "../pipeline/pipeline.h"
#include "cli.h"

static const char replay_help[] =
    "usage: tandem replay PIPELINE --in EVENTS --url URL [options]\n"
    "\n"
    "Sends every event of EVENTS (CSV or JSON Lines), in file order, to\n"
    "URL/v1/pipelines/NAME/events of a running `tandem serve PIPELINE`, and\n"
    "compares every answer, features included, with the batch result of the\n"
    "same event. The server should start from empty state (or from the\n"
    "state `tandem batch` saved for the events before EVENTS).\n"
    "\n"
    "options:\n"
    "  --in EVENTS     the events\n"
    "  --url URL       the server, e.g. http://127.0.0.1:8080\n"
    "  --batch N       events per request (default 32); order is kept\n"
    "  --skip N        the first N events are not sent, only applied on the\n"
    "                  batch side: the server already has them (it started\n"
    "                  from `tandem batch --save-state` over those events)\n"
    "  --show N        differences to print (default 5)\n"
    "  --store DIR     the tables lookups read (default: the pipeline's\n"
    "                  store:), as of each event's time\n"
    "  --help, -h      show this help\n"
    "\n"
    "exit status: 0 no differences, 1 differences or a failure, 2 bad usage\n";

typedef struct replay {
  const tdm__pipeline *p;
  tdm__state_map *map;
  tdm__result result;
  CURL *curl;
  char *url;
  struct curl_slist *headers;
  size_t batch, show, skip;
  /* the events of the current request */
  tdm__event_record *records;
  size_t count;
  tdm__buf body, expected, actual;
  size_t *expected_ends; /* end offset of each event's expected result */
  size_t events, differences, requests, skipped;
} replay;

static size_t collect(char *data, size_t size, size_t n, void *arg) {
  tdm__buf *b = arg;
  return tdm__buf_append(b, data, size * n) == TDM_OK ? size * n : 0;
}

/* The batch side of one event: its result object, or the error object the
 * live endpoint gives for an invalid event. */
static int expect(replay *r, const tdm__event_record *rec) {
  tdm__event ev = {rec->fields};
  tdm_error err;
  /* The live side measures state.max_future from its wall clock. */
  tdm__state_map_set_clock(r->map, tdm__now_ms());
  int rc = rec->problem ? TDM_EPARSE
                        : tdm__pipeline_process(r->p, r->map, &ev, &r->result,
                                                &err);
  if (rc == TDM_OK)
    return tdm__pipeline_json(r->p, &ev, &r->result, 1, &r->expected);
  if (rc == TDM_ENOMEM) return rc;
  return tdm__pipeline_error_json(rc, rec->problem ? rec->problem : err.message,
                                  &r->expected);
}

/* Sends the pending events and compares the answer. */

/* Writes a JSON value's text for a difference line: numbers and strings
 * as they are, containers by kind (their members are compared one by
 * one). */
static void print_value(const tdm__json *v) {
  switch (v->type) {
    case TDM__JSON_NULL: fputs("null", stderr); break;
    case TDM__JSON_BOOL: fputs(v->boolean ? "true" : "false", stderr); break;
    case TDM__JSON_NUMBER:
      fprintf(stderr, "%.*s", (int)v->text_len, v->text);
      break;
    case TDM__JSON_STRING:
      fprintf(stderr, "\"%.*s\"", (int)(v->count > 120 ? 120 : v->count),
              v->text);
      break;
    case TDM__JSON_ARRAY: fprintf(stderr, "an array of %zu", v->count); break;
    default: fprintf(stderr, "an object of %zu members", v->count); break;
  }
}

/*
 * Compares a batch result with the live one member by member, printing
 * (when print) one line per differing member, named by its path
 * (`score`, `features.amount_sum_1h`, `reasons[0].value`), so that a
 * difference reads as what differs rather than two long lines. Returns
 * the number of differing members.
 */
static size_t diff_value(const tdm__json *batch, const tdm__json *live,
                         char *path, size_t path_len, int print) {
  int same_kind = batch->type == live->type;
  if (same_kind && batch->type == TDM__JSON_OBJECT) {
    size_t count = 0;
    for (size_t i = 0; i < batch->count; i++) {
      const tdm__json *other = tdm__json_get(live, batch->keys[i]);
      int n = snprintf(path + path_len, 256 - path_len, "%s%s",
                       path_len ? "." : "", batch->keys[i]);
      size_t len = n < 0 ? path_len : path_len + (size_t)n;
      if (len > 255) len = 255;
      if (other == NULL) {
        if (print) fprintf(stderr, "  %s: batch ", path);
        if (print) print_value(&batch->items[i]);
        if (print) fputs(", live: absent\n", stderr);
        count++;
      } else {
        count += diff_value(&batch->items[i], other, path, len, print);
      }
      path[path_len] = '\0';
    }
    for (size_t i = 0; i < live->count; i++)
      if (tdm__json_get(batch, live->keys[i]) == NULL) {
        if (print)
          fprintf(stderr, "  %s%s%s: batch: absent, live ", path,
                  path_len ? "." : "", live->keys[i]);
        if (print) print_value(&live->items[i]);
        if (print) fputc('\n', stderr);
        count++;
      }
    return count;
  }
  if (same_kind && batch->type == TDM__JSON_ARRAY &&
      batch->count == live->count) {
    size_t count = 0;
    for (size_t i = 0; i < batch->count; i++) {
      int n = snprintf(path + path_len, 256 - path_len, "[%zu]", i);
      size_t len = n < 0 ? path_len : path_len + (size_t)n;
      if (len > 255) len = 255;
      count += diff_value(&batch->items[i], &live->items[i], path, len, print);
      path[path_len] = '\0';
    }
    return count;
  }
  int same = same_kind;
  if (same && batch->type == TDM__JSON_NUMBER)
    same = batch->text_len == live->text_len &&
           memcmp(batch->text, live->text, batch->text_len) == 0;
  else if (same && batch->type == TDM__JSON_STRING)
    same = batch->count == live->count &&
           memcmp(batch->text, live->text, batch->count) == 0;
  else if (same && batch->type == TDM__JSON_BOOL)
    same = batch->boolean == live->boolean;
  else if (same && batch->type == TDM__JSON_ARRAY)
    same = 0; /* arrays of different lengths */
  if (same) return 0;
  if (print) {
    fprintf(stderr, "  %s: batch ", path_len ? path : "(the result)");
    print_value(batch);
    fputs(", live ", stderr);
    print_value(live);
    fputc('\n', stderr);
  }
  return 1;
}

/* Counts and prints the differing events of one request, member by
 * member; TDM_EPARSE when either side is not an array of one result per
 * event (the caller then compares texts). */
static int field_differences(replay *r) {
  tdm__json_doc batch, live;
  tdm_error ignored;
  if (tdm__json_parse(&batch, r->expected.data, r->expected.len, "batch", 0,
                      &ignored) != TDM_OK)
    return TDM_EPARSE;
  if (tdm__json_parse(&live, r->actual.data, r->actual.len, "live", 0,
                      &ignored) != TDM_OK) {
    tdm__json_doc_free(&batch);
    return TDM_EPARSE;
  }
  int rc = TDM_EPARSE;
  if (batch.root->type == TDM__JSON_ARRAY &&
      live.root->type == TDM__JSON_ARRAY && batch.root->count == r->count &&
      live.root->count == r->count) {
    rc = TDM_OK;
    for (size_t i = 0; i < r->count; i++) {
      char path[256] = "";
      if (diff_value(&batch.root->items[i], &live.root->items[i], path, 0, 0) ==
          0)
        continue;
      r->differences++;
      if (r->differences > r->show) continue;
      fprintf(stderr, "difference at line %zu:\n", r->records[i].line);
      diff_value(&batch.root->items[i], &live.root->items[i], path, 0, 1);
    }
  }
  tdm__json_doc_free(&batch);
  tdm__json_doc_free(&live);
  return rc;
}

static int flush(replay *r, tdm_error *err) {
  if (r->count == 0) return TDM_OK;
  const tdm__spec *spec = tdm__pipeline_spec(r->p);
  r->body.len = 0;
  r->expected.len = 0;
  r->actual.len = 0;
  int rc = tdm__buf_append(&r->body, "[", 1);
  if (rc == TDM_OK) rc = tdm__buf_append(&r->expected, "[", 1);
  for (size_t i = 0; i < r->count && rc == TDM_OK; i++) {
    if (i > 0) rc = tdm__buf_append(&r->body, ",", 1);
    if (rc == TDM_OK && i > 0) rc = tdm__buf_append(&r->expected, ",", 1);
    if (rc == TDM_OK) rc = tdm__event_to_json(spec, r->records[i].fields, &r->body);
    if (rc == TDM_OK) rc = expect(r, &r->records[i]);
    r->expected_ends[i] = r->expected.len;
  }
  if (rc == TDM_OK) rc = tdm__buf_append(&r->body, "]", 1);
  if (rc == TDM_OK) rc = tdm__buf_append(&r->expected, "]", 1);
  if (rc != TDM_OK) return tdm__fail(err, rc, "out of memory");
  curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, r->body.data);
  curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
  CURLcode cc = curl_easy_perform(r->curl);
  if (cc != CURLE_OK)
    return tdm__fail(err, TDM_EIO, "%s: %s", r->url, curl_easy_strerror(cc));
  long status = 0;
  curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
  r->requests++;
  if (status != 200)
    return tdm__fail(err, TDM_EIO, "%s: HTTP %ld: %.*s", r->url, status,
                     (int)(r->actual.len > 500 ? 500 : r->actual.len),
                     r->actual.data ? r->actual.data : "");
  r->events += r->count;
  if (r->actual.len == r->expected.len &&
      memcmp(r->actual.data, r->expected.data, r->actual.len) == 0) {
    r->count = 0;
    return TDM_OK;
  }
  if (field_differences(r) == TDM_OK) {
    r->count = 0;
    return TDM_OK;
  }
  /* The answer is not an array of one result per event: find the events
   * whose text differs where the expected items fall, as long as the
   * texts agree up to there. */
  size_t start = 1;
  for (size_t i = 0; i < r->count; i++) {
    size_t end = r->expected_ends[i];
    size_t len = end - start;
    int same = r->actual.len >= end &&
               memcmp(r->actual.data + start, r->expected.data + start, len) == 0 &&
               (r->actual.data[end] == ',' || r->actual.data[end] == ']');
    if (!same) {
      r->differences++;
      if (r->differences <= r->show)
        fprintf(
            stderr, "difference at line %zu:\n  batch: %.*s\n  live:  %.*s\n",
            r->records[i].line, (int)len, r->expected.data + start,
            (int)(r->actual.len > start
                      ? (r->actual.len - start > 300 ? 300
                                                     : r->actual.len - start)
                      : 0),
            r->actual.len > start ? r->actual.data + start : "");
      /* After one difference the offsets no longer line up: count the
       * rest of this request as differing too if the lengths differ. */
      if (r->actual.len != r->expected.len) {
        r->differences += r->count - i - 1;
        break;
      }
    }
    start = end + 1;
  }
  r->count = 0;
  return TDM_OK;
}

static int run(replay *r, const char *in_path, tdm_error *err) {
  tdm__event_reader *reader;
  int rc = tdm__event_reader_open(in_path, tdm__pipeline_spec(r->p), &reader,
                                  err);
  if (rc != TDM_OK) return rc;
  tdm__arena arena;
  tdm__arena_init(&arena, 1 << 16);
  for (;;) {
    int more = tdm__event_reader_next(reader, &arena, &r->records[r->count], err);
    if (more < 0) {
      rc = more;
      break;
    }
    if (more > 0 && r->skipped < r->skip) {
      /* Applied on the batch side only. */
      tdm__event ev = {r->records[r->count].fields};
      tdm_error ignored;
      tdm__state_map_set_clock(r->map, tdm__now_ms());
      if (r->records[r->count].problem == NULL)
        tdm__pipeline_process(r->p, r->map, &ev, &r->result, &ignored);
      r->skipped++;
      if (r->skipped % 4096 == 0) {
        tdm__arena_free(&arena);
        tdm__arena_init(&arena, 1 << 16);
      }
      continue;
    }
    if (more > 0) r->count++;
    if (r->count == r->batch || (more == 0 && r->count > 0)) {
      rc = flush(r, err);
      tdm__arena_free(&arena);
      tdm__arena_init(&arena, 1 << 16);
      if (rc != TDM_OK) break;
    }
    if (more == 0) break;
  }
  tdm__arena_free(&arena);
  tdm__event_reader_close(reader);
  return rc;
}

int tdm__cmd_replay(int argc, char **argv) {
  static const struct option long_options[] = {
      {"in", required_argument, NULL, 'i'},
      {"url", required_argument, NULL, 'u'},
      {"batch", required_argument, NULL, 'b'},
      {"show", required_argument, NULL, 's'},
      {"skip", required_argument, NULL, 'k'},
      {"store", required_argument, NULL, 'D'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  const char *in_path = NULL, *url = NULL, *store = NULL;
  size_t batch = 32, show = 5, skip = 0;
  opterr = 0;
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
    switch (c) {
      case 'i': in_path = optarg; break;
      case 'u': url = optarg; break;
      case 'D': store = optarg; break;
      case 'b':
      case 's':
        if (!tdm__parse_count(optarg, 100000, c == 'b' ? &batch : &show))
          return tdm__usage_error("replay", "--%s wants a number, not '%s'",
                                  c == 'b' ? "batch" : "show", optarg);
        break;
      case 'k': {
        char *end;
        unsigned long long n = strtoull(optarg, &end, 10);
        if (*optarg == '\0' || *end != '\0' || optarg[0] == '-')
          return tdm__usage_error("replay", "--skip wants a number, not '%s'",
                                  optarg);
        skip = (size_t)n;
        break;
      }
      case 'h': fputs(replay_help, stdout); return TDM_EXIT_OK;
      case ':':
        return tdm__usage_error("replay", "%s needs a value", argv[optind - 1]);
      default:
        return tdm__usage_error("replay", "unknown option '%s'",
                                argv[optind - 1]);
    }
  }
  if (optind + 1 != argc)
    return tdm__usage_error("replay", "give one pipeline file");
  if (in_path == NULL || url == NULL)
    return tdm__usage_error("replay", "--in and --url are required");
  tdm__pipeline *p;
  tdm_error err;
  int rc = tdm__pipeline_load(argv[optind], 0, &p, &err);
  if (rc != TDM_OK) return tdm__report(rc, &err);
  /* The batch side reads tables as batch does: point in time. */
  tdm__store_settings settings;
  rc = tdm__cli_store_settings(&settings, &err);
  if (rc == TDM_OK)
    rc = tdm__pipeline_open_tables(p, store, &settings,
                                   TDM__LOOKUP_AT_EVENT_TIME, &err);
  if (rc != TDM_OK) {
    tdm__pipeline_free(p);
    return tdm__report(rc, &err);
  }
  replay r;
  memset(&r, 0, sizeof r);
  r.p = p;
  r.batch = batch;
  r.show = show;
  r.skip = skip;
  r.records = tdm__calloc(batch, sizeof *r.records);
  r.expected_ends = tdm__calloc(batch, sizeof *r.expected_ends);
  tdm__buf u = {0};
  size_t url_len = strlen(url);
  while (url_len > 0 && url[url_len - 1] == '/') url_len--;
  rc = tdm__buf_printf(&u, "%.*s/v1/pipelines/%s/events?explain=features",
                       (int)url_len, url, tdm__pipeline_spec(p)->name);
  r.url = u.data;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  r.curl = curl_easy_init();
  if (rc != TDM_OK || r.records == NULL || r.expected_ends == NULL ||
      r.curl == NULL || tdm__state_map_new(p, &r.map) != TDM_OK) {
    rc = tdm__fail(&err, TDM_ENOMEM, "out of memory");
  } else if ((rc = tdm__result_init(p, &r.result, &err)) != TDM_OK) {
    /* err says which store or table could not be read. */
  } else {
    r.headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(r.curl, CURLOPT_URL, r.url);
    curl_easy_setopt(r.curl, CURLOPT_HTTPHEADER, r.headers);
    curl_easy_setopt(r.curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(r.curl, CURLOPT_WRITEDATA, &r.actual);
    curl_easy_setopt(r.curl, CURLOPT_NOSIGNAL, 1L);
    rc = run(&r, in_path, &err);
  }
  int exit_code;
  if (rc != TDM_OK) {
    exit_code = tdm__report(rc, &err);
    if (exit_code == TDM_EXIT_OK) exit_code = TDM_EXIT_FAILURE;
  } else {
    fprintf(stderr, "tandem replay: %zu events in %zu requests: %zu %s\n",
            r.events, r.requests, r.differences,
            r.differences == 1 ? "difference" : "differences");
    exit_code = r.differences == 0 ? TDM_EXIT_OK : TDM_EXIT_FAILURE;
  }
  curl_slist_free_all(r.headers);
  if (r.curl) curl_easy_cleanup(r.curl);
  curl_global_cleanup();
  tdm__state_map_free(r.map);
  tdm__result_free(&r.result);
  tdm__buf_free(&r.body);
  tdm__buf_free(&r.expected);
  tdm__buf_free(&r.actual);
  tdm__buf_free(&u);
  tdm__free(r.records);
  tdm__free(r.expected_ends);
  tdm__pipeline_free(p);
  return exit_code;
}
