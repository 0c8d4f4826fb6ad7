/*
 * lookup.c - lookup features (lookup.h). Lookups are grouped by table, so
 * an event reads each table's row once however many of its columns it
 * uses. A reader keeps, per table, the versions it knows (listed once in
 * batch, so every event of a run chooses among the same versions; every
 * second live) and the column indexes of the version last used.
 */
#include "lookup.h"

#include <math.h>
#include <string.h>
#include <time.h>

typedef struct table_use {
  char *table;
  size_t num_columns;
  char **columns;  /* the columns read */
  size_t *slots;   /* where each goes */
  double *defaults;
} table_use;

struct tdm__lookups {
  table_use *tables;
  size_t num_tables;
};

static void use_free(table_use *u) {
  for (size_t i = 0; i < u->num_columns; i++) tdm__free(u->columns[i]);
  tdm__free(u->columns);
  tdm__free(u->slots);
  tdm__free(u->defaults);
  tdm__free(u->table);
}

void tdm__lookups_free(tdm__lookups *l) {
  if (l == NULL) return;
  for (size_t i = 0; i < l->num_tables; i++) use_free(&l->tables[i]);
  tdm__free(l->tables);
  tdm__free(l);
}

int tdm__lookups_compile(const tdm__spec *spec, const size_t *feature_slot,
                         tdm__lookups **out, tdm_error *err) {
  *out = NULL;
  size_t n = 0;
  for (size_t i = 0; i < spec->num_features; i++)
    n += spec->features[i].kind == TDM__FEATURE_LOOKUP;
  if (n == 0) return TDM_OK;
  tdm__lookups *l = tdm__calloc(1, sizeof *l);
  if (l == NULL || (l->tables = tdm__calloc(n, sizeof *l->tables)) == NULL) {
    tdm__free(l);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  int rc = TDM_OK;
  for (size_t i = 0; i < spec->num_features && rc == TDM_OK; i++) {
    const tdm__feature_spec *f = &spec->features[i];
    if (f->kind != TDM__FEATURE_LOOKUP) continue;
    size_t t = 0;
    while (t < l->num_tables && strcmp(l->tables[t].table, f->table) != 0) t++;
    table_use *u = &l->tables[t];
    if (t == l->num_tables) {
      l->num_tables++;
      u->table = tdm__strdup(f->table);
      u->columns = tdm__calloc(n, sizeof *u->columns);
      u->slots = tdm__calloc(n, sizeof *u->slots);
      u->defaults = tdm__calloc(n, sizeof *u->defaults);
      if (!u->table || !u->columns || !u->slots || !u->defaults) {
        rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
        break;
      }
    }
    u->columns[u->num_columns] = tdm__strdup(f->column);
    if (u->columns[u->num_columns] == NULL) {
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
      break;
    }
    u->slots[u->num_columns] = feature_slot[i];
    u->defaults[u->num_columns] = f->default_value;
    u->num_columns++;
  }
  if (rc != TDM_OK) {
    tdm__lookups_free(l);
    return rc;
  }
  *out = l;
  return TDM_OK;
}

size_t tdm__lookups_tables(const tdm__lookups *l) {
  return l ? l->num_tables : 0;
}

const char *tdm__lookups_table(const tdm__lookups *l, size_t i) {
  return l->tables[i].table;
}

/* ---- reading ---- */

typedef struct table_state {
  tdm__table_version *versions; /* newest first */
  size_t num_versions;
  uint64_t indexed_version;     /* the version `index` was made for */
  size_t *index;                /* column index in that version */
  double *values;
} table_state;

struct tdm__lookup_reader {
  const tdm__lookups *l;
  tdm__tables *tables;
  tdm__table_reader *reader;
  tdm__lookup_mode mode;
  table_state *state;
  tdm__lookup_used *used;
  int64_t refreshed_ns;
  uint64_t generation; /* the store's, at the last refresh */
};

static int64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Lists every table's versions again and moves the reader's snapshot. */
static int refresh(tdm__lookup_reader *r, tdm_error *err) {
  r->generation = tdm__tables_generation(r->tables);
  int rc = tdm__table_reader_refresh(r->reader, err);
  for (size_t t = 0; t < r->l->num_tables && rc == TDM_OK; t++) {
    table_state *s = &r->state[t];
    tdm__table_versions_free(s->versions, s->num_versions);
    s->versions = NULL;
    s->num_versions = 0;
    s->indexed_version = 0;
    rc = tdm__tables_versions(r->tables, r->l->tables[t].table, &s->versions,
                              &s->num_versions, err);
  }
  r->refreshed_ns = monotonic_ns();
  return rc;
}

int tdm__lookup_reader_new(const tdm__lookups *l, tdm__tables *tables,
                           tdm__lookup_mode mode, tdm__lookup_reader **out,
                           tdm_error *err) {
  *out = NULL;
  tdm__lookup_reader *r = tdm__calloc(1, sizeof *r);
  if (r == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  r->l = l;
  r->tables = tables;
  r->mode = mode;
  r->state = tdm__calloc(l->num_tables, sizeof *r->state);
  r->used = tdm__calloc(l->num_tables, sizeof *r->used);
  int rc = r->state && r->used ? TDM_OK
                               : tdm__fail(err, TDM_ENOMEM, "out of memory");
  for (size_t t = 0; t < l->num_tables && rc == TDM_OK; t++) {
    size_t n = l->tables[t].num_columns;
    r->state[t].index = tdm__calloc(n, sizeof(size_t));
    r->state[t].values = tdm__calloc(n, sizeof(double));
    if (!r->state[t].index || !r->state[t].values)
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  if (rc == TDM_OK) rc = tdm__table_reader_new(tables, &r->reader, err);
  if (rc == TDM_OK) rc = refresh(r, err);
  if (rc != TDM_OK) {
    tdm__lookup_reader_free(r);
    return rc;
  }
  *out = r;
  return TDM_OK;
}

void tdm__lookup_reader_free(tdm__lookup_reader *r) {
  if (r == NULL) return;
  for (size_t t = 0; r->state && t < r->l->num_tables; t++) {
    tdm__table_versions_free(r->state[t].versions, r->state[t].num_versions);
    tdm__free(r->state[t].index);
    tdm__free(r->state[t].values);
  }
  tdm__free(r->state);
  tdm__free(r->used);
  tdm__table_reader_free(r->reader);
  tdm__free(r);
}

const tdm__lookup_used *tdm__lookup_reader_used(const tdm__lookup_reader *r) {
  return r->used;
}

int tdm__lookup_fill(tdm__lookup_reader *r, tdm__str entity, int64_t time_ms,
                     double *numbers, tdm_error *err) {
  /* Live readers follow new versions; batch ones keep the run's list. A
   * Redis store says when its in-memory versions changed (one atomic
   * read), so those readers follow at once instead of within a second. */
  if (r->mode == TDM__LOOKUP_FOLLOW &&
      (monotonic_ns() - r->refreshed_ns > 1000000000 ||
       tdm__tables_generation(r->tables) != r->generation)) {
    int rc = refresh(r, err);
    if (rc != TDM_OK) return rc;
  }
  for (size_t t = 0; t < r->l->num_tables; t++) {
    const table_use *u = &r->l->tables[t];
    table_state *s = &r->state[t];
    /* Point in time in every runner: the version as of the event's time,
     * never one stamped after it (a late event live reads what batch
     * reads; an event older than every version reads the default). */
    size_t v = tdm__table_version_at(s->versions, s->num_versions, time_ms);
    int found = 0;
    r->used[t] = (tdm__lookup_used){0, 0};
    if (v < s->num_versions) {
      const tdm__table_version *version = &s->versions[v];
      if (s->indexed_version != version->version) {
        for (size_t c = 0; c < u->num_columns; c++)
          s->index[c] = tdm__table_version_column(version, u->columns[c]);
        s->indexed_version = version->version;
      }
      int rc = tdm__table_get(r->reader, u->table, version->version,
                              entity.data, entity.len, s->index,
                              u->num_columns, s->values, &found, err);
      if (rc == TDM_ENOTFOUND) {
        /* Deleted since it was listed (a newer run kept fewer versions):
         * the entity reads as absent until the next listing. */
        found = 0;
      } else if (rc != TDM_OK) {
        return rc;
      }
      r->used[t] = (tdm__lookup_used){version->version, version->as_of_ms};
    }
    for (size_t c = 0; c < u->num_columns; c++) {
      double value = found ? s->values[c] : NAN;
      numbers[u->slots[c]] = isnan(value) ? u->defaults[c] : value;
    }
  }
  return TDM_OK;
}
