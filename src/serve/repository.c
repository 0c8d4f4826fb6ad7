/*
 * repository.c - named, versioned, reference-counted models with reloads
 * that never stop serving. See repository.h for the contract.
 *
 * The table of models only grows (an unloaded model keeps its slot), so a
 * request finds its model without a lock: slots are published with a
 * release store of the count. Each slot's version list is guarded by a
 * mutex held only to copy a pointer and take a reference.
 *
 * A repository directory is opened once; every model, version and file in
 * it is then opened relative to its parent's descriptor (openat) with
 * O_NOFOLLOW, from names checked by tdm__repository_check_name. No name
 * can climb out ("..", "/" and a leading '.' are not names) and no
 * symbolic link is followed, so nothing outside the directory is read,
 * whatever a client asks for or the directory holds.
 */
#include "repository.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/core.h"

#define MAX_MODELS 1024
#define MAX_VERSIONS 64

typedef struct slot {
  char *name;
  char *file; /* --model NAME=PATH, or NULL: DIR/NAME/VERSION */
  pthread_mutex_t lock;        /* guards versions and last_error */
  pthread_mutex_t reload_lock; /* one load of this model at a time */
  tdm__loaded *versions[MAX_VERSIONS]; /* ascending version order */
  size_t num_versions;
  /* A version loaded at some time: a name whose loads all failed (a load
   * request for a broken directory) is listed, but the server's readiness
   * does not wait for it. */
  int loaded_once;
  char last_error[sizeof(((tdm_error *)0)->message)];
  unsigned long long reloads[3];
} slot;

struct tdm__repository {
  tdm__metrics *metrics;
  char *dir;  /* --model-repo, or NULL: for messages */
  int dir_fd; /* the repository directory, open; -1 without one */
  pthread_mutex_t add_lock;
  slot *slots[MAX_MODELS];
  atomic_size_t num_slots;
};

int tdm__repository_new(tdm__metrics *metrics, tdm__repository **out) {
  tdm__repository *repo = tdm__calloc(1, sizeof *repo);
  if (repo == NULL) return TDM_ENOMEM;
  repo->metrics = metrics;
  repo->dir_fd = -1;
  pthread_mutex_init(&repo->add_lock, NULL);
  *out = repo;
  return TDM_OK;
}

void tdm__loaded_release(tdm__loaded *loaded) {
  if (loaded == NULL) return;
  if (atomic_fetch_sub_explicit(&loaded->refs, 1, memory_order_acq_rel) != 1)
    return;
  tdm_model_free(loaded->model);
  tdm__free(loaded->version);
  tdm__free(loaded);
}

void tdm__repository_free(tdm__repository *repo) {
  if (repo == NULL) return;
  size_t n = atomic_load(&repo->num_slots);
  for (size_t i = 0; i < n; i++) {
    slot *s = repo->slots[i];
    for (size_t v = 0; v < s->num_versions; v++)
      tdm__loaded_release(s->versions[v]);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->reload_lock);
    tdm__free(s->name);
    tdm__free(s->file);
    tdm__free(s);
  }
  pthread_mutex_destroy(&repo->add_lock);
  if (repo->dir_fd >= 0) close(repo->dir_fd);
  tdm__free(repo->dir);
  tdm__free(repo);
}

static slot *find_slot(tdm__repository *repo, const char *name) {
  size_t n = atomic_load_explicit(&repo->num_slots, memory_order_acquire);
  for (size_t i = 0; i < n; i++)
    if (strcmp(repo->slots[i]->name, name) == 0) return repo->slots[i];
  return NULL;
}

/* Loads one version from a file's bytes (`data`, which this frees), read
 * from `path`; reuses `current` when the file's SHA-256 is unchanged. */
static int load_version(tdm__repository *repo, slot *s, const char *version,
                        const char *path, char *data, size_t size,
                        tdm__loaded *current, tdm__loaded **out,
                        tdm_error *err) {
  int rc;
  char sha[65];
  tdm__sha256_hex(data, size, sha);
  if (current != NULL && strcmp(current->sha256, sha) == 0) {
    tdm__free(data);
    atomic_fetch_add(&current->refs, 1);
    *out = current;
    return TDM_OK;
  }
  tdm__loaded *l = tdm__calloc(1, sizeof *l);
  if (l == NULL) {
    tdm__free(data);
    return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", path);
  }
  rc = tdm_model_load_buffer(data, size, path, &l->model, err);
  tdm__free(data);
  l->version = tdm__strdup(version);
  l->stats = tdm__metrics_stats(repo->metrics, s->name, version);
  if (rc == TDM_OK && (l->version == NULL || l->stats == NULL))
    rc = tdm__fail(err, TDM_ENOMEM, "%s: out of memory", path);
  if (rc != TDM_OK) {
    tdm_model_free(l->model);
    tdm__free(l->version);
    tdm__free(l);
    return rc;
  }
  memcpy(l->sha256, sha, sizeof sha);
  l->name = s->name;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  l->loaded_at = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
  atomic_store(&l->refs, 1);
  *out = l;
  return TDM_OK;
}

static int is_version_name(const char *s) {
  if (*s < '1' || *s > '9') return 0;
  size_t n = 0;
  for (; *s; s++, n++)
    if (*s < '0' || *s > '9') return 0;
  return n <= 9;
}

static int compare_versions(const void *a, const void *b) {
  long x = atol(*(char *const *)a), y = atol(*(char *const *)b);
  return (x > y) - (x < y);
}

/* Opens a directory entry below `parent_fd` without following a symbolic
 * link; `path` names it in errors. Returns the descriptor or -1 (err set). */
static int open_beneath(int parent_fd, const char *name, int flags,
                        const char *path, tdm_error *err) {
  int fd = openat(parent_fd, name, flags | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) return fd;
  int saved = errno;
  struct stat st;
  if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISLNK(st.st_mode))
    tdm__fail(err, TDM_EINVAL,
              "%s: a symbolic link; links are not followed in a model "
              "repository (copy or hard-link the file instead)",
              path);
  else
    tdm__fail(err, saved == ENOENT ? TDM_ENOTFOUND : TDM_EIO,
              "%s: cannot open: %s", path, strerror(saved));
  return -1;
}

/* The entries of an open directory, listed without giving up `dir_fd`. */
static DIR *list_dir(int dir_fd) {
  int copy = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (copy < 0) return NULL;
  DIR *d = fdopendir(copy);
  if (d == NULL) close(copy);
  return d;
}

/* Whether `name` below `dir_fd` is a directory itself (not a link to one). */
static int is_real_dir(int dir_fd, const char *name) {
  struct stat st;
  return fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
         S_ISDIR(st.st_mode);
}

/* Reads the model file inside an open version directory `dir` (named
 * `dir_path`): its only regular file, or the one named model.* when there
 * are several. Links and other kinds of entries are not model files. */
static int read_model_file(int dir, const char *dir_path, char **path_out,
                           char **data, size_t *size, tdm_error *err) {
  DIR *d = list_dir(dir);
  if (d == NULL)
    return tdm__fail(err, TDM_EIO, "%s: cannot open: %s", dir_path,
                     strerror(errno));
  char *only = NULL, *named = NULL;
  size_t files = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    struct stat st;
    if (fstatat(dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISREG(st.st_mode))
      continue;
    files++;
    if (strncmp(e->d_name, "model.", 6) == 0 && named == NULL) {
      named = tdm__strdup(e->d_name);
      if (named == NULL) break;
    } else if (only == NULL) {
      only = tdm__strdup(e->d_name);
      if (only == NULL) break;
    }
  }
  closedir(d);
  char *name = named != NULL ? named : files == 1 ? only : NULL;
  if (name == NULL) {
    tdm__free(only);
    tdm__free(named);
    return tdm__fail(err, TDM_ENOTFOUND,
                     files == 0 ? "%s: no model file in this version directory"
                                : "%s: several files and none named model.*: "
                                  "which is the model?",
                     dir_path);
  }
  size_t len = strlen(dir_path) + strlen(name) + 2;
  char *path = tdm__malloc(len);
  int rc = TDM_OK;
  if (path == NULL) {
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  } else {
    snprintf(path, len, "%s/%s", dir_path, name);
    int fd = open_beneath(dir, name, O_RDONLY | O_NONBLOCK, path, err);
    rc = fd < 0 ? err->status : tdm__read_fd(fd, path, data, size, err);
    if (fd >= 0) close(fd);
  }
  tdm__free(only);
  tdm__free(named);
  if (rc != TDM_OK) {
    tdm__free(path);
    return rc;
  }
  *path_out = path;
  return TDM_OK;
}

/* Loads every version of a repository model, reusing unchanged ones. */
static int load_dir_versions(tdm__repository *repo, slot *s,
                             tdm__loaded **current, size_t num_current,
                             tdm__loaded **out, size_t *num_out,
                             tdm_error *err) {
  size_t len = strlen(repo->dir) + strlen(s->name) + 2;
  char *model_dir = tdm__malloc(len);
  if (model_dir == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  snprintf(model_dir, len, "%s/%s", repo->dir, s->name);
  int model_fd = open_beneath(repo->dir_fd, s->name, O_RDONLY | O_DIRECTORY,
                              model_dir, err);
  DIR *d = model_fd >= 0 ? list_dir(model_fd) : NULL;
  if (d == NULL) {
    int rc = model_fd < 0 ? err->status
                          : tdm__fail(err, TDM_EIO, "%s: cannot open: %s",
                                      model_dir, strerror(errno));
    if (model_fd >= 0) close(model_fd);
    tdm__free(model_dir);
    return rc;
  }
  char *names[MAX_VERSIONS];
  size_t n = 0;
  struct dirent *e;
  int rc = TDM_OK;
  while ((e = readdir(d)) != NULL && rc == TDM_OK) {
    if (!is_version_name(e->d_name)) continue;
    if (n == MAX_VERSIONS) {
      rc = tdm__fail(err, TDM_EUNSUPPORTED, "%s: more than %d versions",
                     model_dir, MAX_VERSIONS);
      break;
    }
    names[n] = tdm__strdup(e->d_name);
    if (names[n] == NULL) rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
    else n++;
  }
  closedir(d);
  if (rc == TDM_OK && n == 0)
    rc = tdm__fail(err, TDM_ENOTFOUND,
                   "%s: no version directories (1, 2, ...) in it", model_dir);
  qsort(names, n, sizeof names[0], compare_versions);
  size_t loaded = 0;
  for (size_t i = 0; i < n && rc == TDM_OK; i++) {
    size_t vlen = strlen(model_dir) + strlen(names[i]) + 2;
    char *version_dir = tdm__malloc(vlen), *file = NULL, *data = NULL;
    size_t size = 0;
    if (version_dir == NULL) {
      rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
      break;
    }
    snprintf(version_dir, vlen, "%s/%s", model_dir, names[i]);
    int version_fd = open_beneath(model_fd, names[i], O_RDONLY | O_DIRECTORY,
                                  version_dir, err);
    rc = version_fd < 0 ? err->status
                        : read_model_file(version_fd, version_dir, &file,
                                          &data, &size, err);
    if (version_fd >= 0) close(version_fd);
    tdm__loaded *same = NULL;
    for (size_t c = 0; c < num_current; c++)
      if (strcmp(current[c]->version, names[i]) == 0) same = current[c];
    if (rc == TDM_OK)
      rc = load_version(repo, s, names[i], file, data, size, same,
                        &out[loaded], err);
    if (rc == TDM_OK) loaded++;
    tdm__free(file);
    tdm__free(version_dir);
  }
  close(model_fd);
  for (size_t i = 0; i < n; i++) tdm__free(names[i]);
  tdm__free(model_dir);
  if (rc != TDM_OK) {
    for (size_t i = 0; i < loaded; i++) tdm__loaded_release(out[i]);
    return rc;
  }
  *num_out = loaded;
  return TDM_OK;
}

/* Loads a model's versions and swaps them in; the old ones are released
 * after the swap, outside the lock. */
static int reload_slot(tdm__repository *repo, slot *s, int *changed,
                       tdm_error *err) {
  pthread_mutex_lock(&s->reload_lock);
  tdm__loaded *current[MAX_VERSIONS], *fresh[MAX_VERSIONS];
  size_t num_current, num_fresh = 0;
  pthread_mutex_lock(&s->lock);
  num_current = s->num_versions;
  for (size_t i = 0; i < num_current; i++) {
    current[i] = s->versions[i];
    atomic_fetch_add(&current[i]->refs, 1);
  }
  pthread_mutex_unlock(&s->lock);

  int rc;
  if (s->file != NULL) {
    char *data;
    size_t size;
    rc = tdm__read_file(s->file, &data, &size, err);
    if (rc == TDM_OK)
      rc = load_version(repo, s, "1", s->file, data, size,
                        num_current ? current[0] : NULL, &fresh[0], err);
    if (rc == TDM_OK) num_fresh = 1;
  } else {
    rc = load_dir_versions(repo, s, current, num_current, fresh, &num_fresh,
                           err);
  }
  int same = rc == TDM_OK && num_fresh == num_current;
  for (size_t i = 0; same && i < num_fresh; i++)
    same = fresh[i] == current[i];

  pthread_mutex_lock(&s->lock);
  if (rc == TDM_OK) {
    tdm__loaded *old[MAX_VERSIONS];
    size_t num_old = s->num_versions;
    memcpy(old, s->versions, num_old * sizeof old[0]);
    memcpy(s->versions, fresh, num_fresh * sizeof fresh[0]);
    s->num_versions = num_fresh;
    s->loaded_once = 1;
    s->last_error[0] = '\0';
    s->reloads[same ? TDM__RELOAD_UNCHANGED : TDM__RELOAD_OK]++;
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < num_old; i++) tdm__loaded_release(old[i]);
  } else {
    snprintf(s->last_error, sizeof s->last_error, "%s",
             err ? err->message : tdm_strerror(rc));
    s->reloads[TDM__RELOAD_FAILED]++;
    pthread_mutex_unlock(&s->lock);
  }
  for (size_t i = 0; i < num_current; i++) tdm__loaded_release(current[i]);
  pthread_mutex_unlock(&s->reload_lock);
  if (changed != NULL) *changed = rc == TDM_OK && !same;
  return rc;
}

static int add_slot(tdm__repository *repo, const char *name, const char *file,
                    slot **out, tdm_error *err) {
  pthread_mutex_lock(&repo->add_lock);
  int rc = TDM_OK;
  slot *s = find_slot(repo, name);
  if (s != NULL) {
    rc = tdm__fail(err, TDM_EINVAL, "model \"%s\" is given twice", name);
  } else if (atomic_load(&repo->num_slots) == MAX_MODELS) {
    rc = tdm__fail(err, TDM_EUNSUPPORTED, "more than %d models", MAX_MODELS);
  } else if ((s = tdm__calloc(1, sizeof *s)) == NULL ||
             (s->name = tdm__strdup(name)) == NULL ||
             (file != NULL && (s->file = tdm__strdup(file)) == NULL)) {
    if (s != NULL) tdm__free(s->name);
    tdm__free(s);
    s = NULL;
    rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
  } else {
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->reload_lock, NULL);
    size_t n = atomic_load(&repo->num_slots);
    repo->slots[n] = s;
    atomic_store_explicit(&repo->num_slots, n + 1, memory_order_release);
  }
  pthread_mutex_unlock(&repo->add_lock);
  *out = s;
  return rc;
}

int tdm__repository_check_name(const char *name, tdm_error *err) {
  size_t len = strlen(name);
  if (len == 0) return tdm__fail(err, TDM_EINVAL, "a model needs a name");
  if (len > TDM__MODEL_NAME_MAX)
    return tdm__fail(err, TDM_EINVAL,
                     "a model name of %zu bytes: at most %d", len,
                     TDM__MODEL_NAME_MAX);
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.'))
      return tdm__fail(err, TDM_EINVAL,
                       "model name \"%.*s\": use letters, digits, '_', '-' "
                       "and '.' only",
                       TDM__MODEL_NAME_MAX, name);
  /* ".", ".." and hidden names: a name is one directory below the
   * repository, never the repository itself, its parent or a hidden entry. */
  if (name[0] == '.')
    return tdm__fail(err, TDM_EINVAL,
                     "model name \"%s\": a name cannot start with '.'", name);
  return TDM_OK;
}

int tdm__repository_add_file(tdm__repository *repo, const char *name,
                             const char *path, tdm_error *err) {
  slot *s;
  int rc = tdm__repository_check_name(name, err);
  if (rc == TDM_OK) rc = add_slot(repo, name, path, &s, err);
  if (rc == TDM_OK) rc = reload_slot(repo, s, NULL, err);
  return rc;
}

int tdm__repository_add_dir(tdm__repository *repo, const char *dir,
                            tdm_error *err) {
  if (repo->dir != NULL)
    return tdm__fail(err, TDM_EINVAL, "only one model repository");
  repo->dir = tdm__strdup(dir);
  if (repo->dir == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  repo->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = repo->dir_fd >= 0 ? list_dir(repo->dir_fd) : NULL;
  if (d == NULL)
    return tdm__fail(err, TDM_EIO, "%s: cannot open model repository: %s",
                     dir, strerror(errno));
  int rc = TDM_OK;
  struct dirent *e;
  while (rc == TDM_OK && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || !is_real_dir(repo->dir_fd, e->d_name)) continue;
    slot *s;
    rc = tdm__repository_check_name(e->d_name, err);
    if (rc == TDM_OK) rc = add_slot(repo, e->d_name, NULL, &s, err);
    if (rc == TDM_OK) rc = reload_slot(repo, s, NULL, err);
  }
  closedir(d);
  return rc;
}

int tdm__repository_load(tdm__repository *repo, const char *name,
                         int *changed, tdm_error *err) {
  slot *s = find_slot(repo, name);
  if (s == NULL) {
    if (repo->dir == NULL)
      return tdm__fail(err, TDM_ENOTFOUND, "unknown model \"%s\"", name);
    int rc = tdm__repository_check_name(name, err);
    if (rc == TDM_OK) {
      /* A new model directory: look before adding a slot for it, so that
       * a name without a directory leaves no model behind. */
      if (!is_real_dir(repo->dir_fd, name))
        return tdm__fail(err, TDM_ENOTFOUND,
                         "no model \"%s\" in the model repository (%s): no "
                         "directory of that name (links are not followed)",
                         name, repo->dir);
      rc = add_slot(repo, name, NULL, &s, err);
    }
    if (rc != TDM_OK) return rc;
  }
  return reload_slot(repo, s, changed, err);
}

int tdm__repository_load_all(tdm__repository *repo,
                             tdm__repository_report report, void *arg) {
  int failed = 0;
  tdm_error err;
  /* New directories in the repository first become known models. */
  DIR *d = repo->dir_fd >= 0 ? list_dir(repo->dir_fd) : NULL;
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || find_slot(repo, e->d_name) != NULL) continue;
    if (!is_real_dir(repo->dir_fd, e->d_name)) continue;
    slot *s;
    tdm__error_clear(&err);
    if (tdm__repository_check_name(e->d_name, &err) != TDM_OK ||
        add_slot(repo, e->d_name, NULL, &s, &err) != TDM_OK) {
      failed++;
      report(arg, e->d_name, err.status, 0, &err);
    }
  }
  if (d != NULL) closedir(d);
  size_t n = atomic_load_explicit(&repo->num_slots, memory_order_acquire);
  for (size_t i = 0; i < n; i++) {
    int changed = 0;
    tdm__error_clear(&err);
    int rc = reload_slot(repo, repo->slots[i], &changed, &err);
    if (rc != TDM_OK) failed++;
    report(arg, repo->slots[i]->name, rc, changed, &err);
  }
  return failed;
}

int tdm__repository_unload(tdm__repository *repo, const char *name,
                           tdm_error *err) {
  slot *s = find_slot(repo, name);
  if (s == NULL)
    return tdm__fail(err, TDM_ENOTFOUND, "unknown model \"%s\"", name);
  pthread_mutex_lock(&s->reload_lock);
  pthread_mutex_lock(&s->lock);
  tdm__loaded *old[MAX_VERSIONS];
  size_t num_old = s->num_versions;
  memcpy(old, s->versions, num_old * sizeof old[0]);
  s->num_versions = 0;
  pthread_mutex_unlock(&s->lock);
  for (size_t i = 0; i < num_old; i++) tdm__loaded_release(old[i]);
  pthread_mutex_unlock(&s->reload_lock);
  return TDM_OK;
}

int tdm__repository_acquire(tdm__repository *repo, const char *name,
                            const char *version, tdm__loaded **out) {
  *out = NULL;
  slot *s = find_slot(repo, name);
  if (s == NULL) return TDM_ENOTFOUND;
  int rc = TDM_ENOTFOUND;
  pthread_mutex_lock(&s->lock);
  if (s->num_versions == 0) {
    rc = TDM_EUNSUPPORTED;
  } else if (version == NULL) {
    *out = s->versions[s->num_versions - 1];
  } else {
    for (size_t i = 0; i < s->num_versions; i++)
      if (strcmp(s->versions[i]->version, version) == 0) *out = s->versions[i];
  }
  if (*out != NULL) {
    atomic_fetch_add_explicit(&(*out)->refs, 1, memory_order_relaxed);
    rc = TDM_OK;
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int tdm__repository_ready(tdm__repository *repo) {
  size_t n = atomic_load_explicit(&repo->num_slots, memory_order_acquire);
  size_t counted = 0;
  int ready = 1;
  for (size_t i = 0; i < n && ready; i++) {
    pthread_mutex_lock(&repo->slots[i]->lock);
    if (repo->slots[i]->loaded_once) {
      counted++;
      ready = repo->slots[i]->num_versions > 0;
    }
    pthread_mutex_unlock(&repo->slots[i]->lock);
  }
  return ready && counted > 0;
}

size_t tdm__repository_count(tdm__repository *repo) {
  return atomic_load_explicit(&repo->num_slots, memory_order_acquire);
}

int tdm__repository_each(tdm__repository *repo, tdm__repository_visit visit,
                         void *arg) {
  size_t n = atomic_load_explicit(&repo->num_slots, memory_order_acquire);
  int rc = TDM_OK;
  for (size_t i = 0; i < n && rc == TDM_OK; i++) {
    slot *s = repo->slots[i];
    pthread_mutex_lock(&s->lock);
    rc = visit(arg, s->name, s->versions, s->num_versions, s->last_error,
               s->reloads);
    pthread_mutex_unlock(&s->lock);
  }
  return rc;
}
