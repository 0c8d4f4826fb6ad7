/*
 * repository.h - the models a server serves, by name and version, and
 * their hot reload.
 *
 * A model comes from a file (`--model NAME=PATH`, one version "1") or from
 * a model repository directory laid out as Triton's: DIR/NAME/VERSION/file,
 * VERSION a positive integer; the highest version serves by default.
 *
 * A loaded version is immutable and reference counted. A reload loads the
 * new version beside the old one, then swaps the version list under a
 * short lock; requests that hold the old version finish with it, and the
 * last one to release it frees it. A failed load changes nothing.
 */
#ifndef TDM_REPOSITORY_H
#define TDM_REPOSITORY_H

#include <stdatomic.h>
#include <stddef.h>

#include "metrics.h"
#include "tandem.h"

typedef struct tdm__loaded {
  tdm_model *model;
  const char *name; /* the model's name (owned by its slot) */
  char *version;
  char sha256[65];
  double loaded_at; /* Unix time */
  tdm__stats *stats;
  atomic_long refs;
} tdm__loaded;

typedef struct tdm__repository tdm__repository;

/* The longest model name, in bytes. */
#define TDM__MODEL_NAME_MAX 128

/*
 * TDM_OK when `name` can name a model: 1 to TDM__MODEL_NAME_MAX bytes of
 * ASCII letters, digits, '_', '-' and '.', not starting with '.' (so
 * never "." or ".."). Model names are URL path segments, metric labels
 * and directory names inside a repository; this is what keeps a name from
 * reaching outside it. TDM_EINVAL with the reason otherwise.
 */
int tdm__repository_check_name(const char *name, tdm_error *err);

int tdm__repository_new(tdm__metrics *metrics, tdm__repository **out);
void tdm__repository_free(tdm__repository *repo);

/* Adds and loads a model from one file (version "1"). */
int tdm__repository_add_file(tdm__repository *repo, const char *name,
                             const char *path, tdm_error *err);

/* Adds and loads every model in a repository directory DIR/NAME/VERSION.
 * The directory is opened once and kept open; models, versions and files
 * are opened below it without following symbolic links. */
int tdm__repository_add_dir(tdm__repository *repo, const char *dir,
                            tdm_error *err);

/*
 * Loads a model again from where it came from, or, for a name not yet
 * known, from the repository directory. On failure the versions serving
 * before stay, and err says why. *changed tells whether anything changed.
 */
int tdm__repository_load(tdm__repository *repo, const char *name,
                         int *changed, tdm_error *err);

/* Loads every model again (SIGHUP), and any new model directory in the
 * repository; report(arg, name, rc, changed, err) is told each result.
 * Returns the number of failed loads. */
typedef void (*tdm__repository_report)(void *arg, const char *name, int rc,
                                       int changed, const tdm_error *err);
int tdm__repository_load_all(tdm__repository *repo,
                             tdm__repository_report report, void *arg);

/* Stops serving a model (it stays known; a load brings it back). */
int tdm__repository_unload(tdm__repository *repo, const char *name,
                           tdm_error *err);

/*
 * A model version to use; version NULL means the newest. TDM_ENOTFOUND
 * for an unknown model or version, TDM_EUNSUPPORTED for a known model with
 * nothing loaded. Release it with tdm__loaded_release.
 */
int tdm__repository_acquire(tdm__repository *repo, const char *name,
                            const char *version, tdm__loaded **out);
void tdm__loaded_release(tdm__loaded *loaded);

/* 1 when every model that ever loaded has a version loaded now (and
 * there is one); a name whose every load failed does not count. */
int tdm__repository_ready(tdm__repository *repo);
/* How many models the repository has (loaded or not). */
size_t tdm__repository_count(tdm__repository *repo);

/* A model's state for an index or metrics: called with each model's name,
 * its loaded versions (oldest first) and the reason its last load failed
 * ("" when it did not), under that model's lock. */
typedef int (*tdm__repository_visit)(void *arg, const char *name,
                                     tdm__loaded *const *versions, size_t n,
                                     const char *last_error,
                                     const unsigned long long reloads[3]);
int tdm__repository_each(tdm__repository *repo, tdm__repository_visit visit,
                         void *arg);

/* Index of a model's reload counters: reloads[RELOAD_OK] and so on. */
enum { TDM__RELOAD_OK, TDM__RELOAD_UNCHANGED, TDM__RELOAD_FAILED };

#endif /* TDM_REPOSITORY_H */
