/*
 * file.c - reading whole files, and output files that appear atomically:
 * written to a temporary file in the destination's directory, flushed, and
 * renamed over the destination only when complete. A failure or a signal
 * leaves no partial output behind.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_TMPFILE */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

int tdm__read_fd(int fd, const char *path, char **data, size_t *size,
                 tdm_error *err) {
  *data = NULL;
  *size = 0;
  /* Only a regular file has an end: a FIFO, a terminal or /dev/zero could
   * be read forever (or block), so they are refused before any read. */
  struct stat st;
  if (fstat(fd, &st) != 0)
    return tdm__fail(err, TDM_EIO, "%s: cannot open: %s", path,
                     strerror(errno));
  if (S_ISDIR(st.st_mode))
    return tdm__fail(err, TDM_EIO, "%s: is a directory, not a file", path);
  if (!S_ISREG(st.st_mode))
    return tdm__fail(err, TDM_EINVAL,
                     "%s: not a regular file (a FIFO, a device or a "
                     "socket); tandem reads these files whole, so it "
                     "needs a file with an end",
                     path);
  if ((unsigned long long)st.st_size > TDM__MAX_READ_FILE)
    return tdm__fail(err, TDM_EUNSUPPORTED,
                     "%s: %lld bytes; tandem reads files of at most %llu "
                     "bytes whole",
                     path, (long long)st.st_size,
                     (unsigned long long)TDM__MAX_READ_FILE);
  tdm__buf b = {0};
  if (tdm__buf_reserve(&b, (size_t)st.st_size) != TDM_OK)
    return tdm__fail(err, TDM_ENOMEM, "%s: out of memory reading file", path);
  char chunk[65536];
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int saved = errno;
      tdm__buf_free(&b);
      return tdm__fail(err, TDM_EIO, "%s: read error: %s", path,
                       strerror(saved));
    }
    if (n == 0) break;
    /* A file that grows while it is read is still bounded. */
    if (b.len + (size_t)n > TDM__MAX_READ_FILE) {
      tdm__buf_free(&b);
      return tdm__fail(err, TDM_EUNSUPPORTED,
                       "%s: grew past %llu bytes while being read", path,
                       (unsigned long long)TDM__MAX_READ_FILE);
    }
    if (tdm__buf_append(&b, chunk, (size_t)n) != TDM_OK) {
      tdm__buf_free(&b);
      return tdm__fail(err, TDM_ENOMEM, "%s: out of memory reading file", path);
    }
  }
  b.data[b.len] = '\0';
  *data = b.data;
  *size = b.len;
  return TDM_OK;
}

int tdm__read_file(const char *path, char **data, size_t *size,
                   tdm_error *err) {
  *data = NULL;
  *size = 0;
  /* O_NONBLOCK: opening a FIFO without a writer would otherwise wait
   * forever before read_fd could refuse it. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    return tdm__fail(err, errno == ENOENT ? TDM_ENOTFOUND : TDM_EIO,
                     "%s: cannot open: %s", path, strerror(errno));
  int rc = tdm__read_fd(fd, path, data, size, err);
  close(fd);
  return rc;
}

int tdm__refuse_output_onto_input(const char *flag, const char *out_path,
                                  const char *const *inputs,
                                  const char *const *input_flags,
                                  size_t num_inputs, tdm_error *err) {
  struct stat out_st;
  /* An output that does not exist yet cannot be any input. */
  if (out_path == NULL || stat(out_path, &out_st) != 0) return TDM_OK;
  for (size_t i = 0; i < num_inputs; i++) {
    struct stat in_st;
    if (inputs[i] == NULL || stat(inputs[i], &in_st) != 0) continue;
    /* The same device and inode is the same file, whatever the names: a
     * hard link, "./a.csv" for "a.csv" or a symbolic link. */
    if (in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino)
      return tdm__fail(err, TDM_EINVAL,
                       "%s %s is the same file as %s %s: writing it would "
                       "destroy the input; choose another output path",
                       flag, out_path, input_flags[i], inputs[i]);
  }
  return TDM_OK;
}

/*
 * Temporary paths of open atomic files, so the CLI's signal handler can
 * remove them. Threads of one program (several batch runs at once through
 * the library) open and close files concurrently, and the handler may
 * read the table at any moment, so each slot is claimed and released with
 * an atomic compare-and-swap and the handler only loads (lock-free, so
 * safe in a signal handler). The table has no limit: when every slot is
 * taken, a new chunk of slots is appended (under a mutex, so two threads
 * never both append). Chunks are never freed, because the handler may be
 * walking them; their number is the most files ever open at once divided
 * by a chunk's size.
 */
#define TMP_CHUNK_SLOTS 64
typedef struct tmp_chunk {
  _Atomic(char *) slots[TMP_CHUNK_SLOTS];
  struct tmp_chunk *_Atomic next;
} tmp_chunk;
static tmp_chunk first_tmp_chunk;
static pthread_mutex_t tmp_grow_lock = PTHREAD_MUTEX_INITIALIZER;

int tdm__tmp_track(char *path) {
  for (;;) {
    tmp_chunk *last = NULL;
    for (tmp_chunk *c = &first_tmp_chunk; c != NULL; c = atomic_load(&c->next)) {
      for (int i = 0; i < TMP_CHUNK_SLOTS; i++) {
        char *expected = NULL;
        if (atomic_compare_exchange_strong(&c->slots[i], &expected, path))
          return TDM_OK;
      }
      last = c;
    }
    pthread_mutex_lock(&tmp_grow_lock);
    int rc = TDM_OK;
    /* Another thread may have appended while this one scanned: then it
     * scans again instead of appending a second chunk. */
    if (atomic_load(&last->next) == NULL) {
      tmp_chunk *c = tdm__calloc(1, sizeof *c);
      if (c == NULL)
        rc = TDM_ENOMEM;
      else
        atomic_store(&last->next, c);
    }
    pthread_mutex_unlock(&tmp_grow_lock);
    if (rc != TDM_OK) return rc;
  }
}

void tdm__tmp_untrack(const char *path) {
  for (tmp_chunk *c = &first_tmp_chunk; c != NULL; c = atomic_load(&c->next))
    for (int i = 0; i < TMP_CHUNK_SLOTS; i++) {
      char *expected = (char *)path;
      if (atomic_compare_exchange_strong(&c->slots[i], &expected, NULL))
        return;
    }
}

void tdm__atomic_abort_all_from_signal(void) {
  for (tmp_chunk *c = &first_tmp_chunk; c != NULL; c = atomic_load(&c->next))
    for (int i = 0; i < TMP_CHUNK_SLOTS; i++) {
      char *path = atomic_load(&c->slots[i]);
      if (path != NULL) unlink(path);
    }
}

int tdm__atomic_open(tdm__atomic_file *f, const char *path, tdm_error *err) {
  memset(f, 0, sizeof *f);
  size_t n = strlen(path);
  f->path = tdm__strdup(path);
  f->tmp_path = tdm__malloc(n + 32);
  if (f->path == NULL || f->tmp_path == NULL) {
    tdm__free(f->path);
    tdm__free(f->tmp_path);
    return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", path);
  }
  /* A hidden name in the same directory, so rename() stays atomic. */
  const char *slash = strrchr(path, '/');
  size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
  /* The name is the destination's, hidden, unless that would pass the
   * usual 255-byte limit on a file name. */
  if (n - dir_len <= 200)
    snprintf(f->tmp_path, n + 32, "%.*s.%s.tmp.XXXXXX", (int)dir_len, path,
             path + dir_len);
  else
    snprintf(f->tmp_path, n + 32, "%.*s.tandem.tmp.XXXXXX", (int)dir_len, path);
  /* First choice: an unnamed file in the destination's directory, named
   * only once it is complete, so that even SIGKILL leaves nothing behind.
   * Where the file system cannot (no O_TMPFILE), a hidden named file. */
  char dir[4096];
  snprintf(dir, sizeof dir, "%.*s", dir_len ? (int)dir_len : 1,
           dir_len ? path : ".");
  int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
  if (fd >= 0) {
    f->anonymous = 1;
  } else {
    fd = mkstemp(f->tmp_path);
    if (fd >= 0) {
      /* mkstemp makes the file 0600; give it a new file's mode. */
      mode_t mask = umask(0);
      umask(mask);
      fchmod(fd, 0666 & ~mask);
    }
  }
  if (fd < 0) {
    int saved = errno;
    tdm__free(f->path);
    tdm__free(f->tmp_path);
    return tdm__fail(err, TDM_EIO, "%s: cannot create output: %s", path,
                     strerror(saved));
  }
  f->fp = fdopen(fd, "wb");
  if (f->fp == NULL) {
    close(fd);
    if (!f->anonymous) unlink(f->tmp_path);
    tdm__free(f->path);
    tdm__free(f->tmp_path);
    return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", path);
  }
  if (!f->anonymous && tdm__tmp_track(f->tmp_path) != TDM_OK) {
    fclose(f->fp);
    unlink(f->tmp_path);
    tdm__free(f->path);
    tdm__free(f->tmp_path);
    memset(f, 0, sizeof *f);
    return tdm__fail(err, TDM_ENOMEM, "%s: out of memory", path);
  }
  return TDM_OK;
}

/* Gives an unnamed file its temporary name (the template's XXXXXX made
 * unique), so that commit can rename it into place. */
static int name_anonymous(tdm__atomic_file *f) {
  static const char letters[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fileno(f->fp));
  size_t n = strlen(f->tmp_path);
  unsigned long long seed =
      (unsigned long long)getpid() * 2654435761ull ^ (unsigned long long)(size_t)f;
  for (int attempt = 0; attempt < 100; attempt++) {
    for (size_t i = n - 6; i < n; i++) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      f->tmp_path[i] = letters[(seed >> 33) % (sizeof letters - 1)];
    }
    if (linkat(AT_FDCWD, proc, AT_FDCWD, f->tmp_path, AT_SYMLINK_FOLLOW) == 0) {
      f->anonymous = 0;
      if (tdm__tmp_track(f->tmp_path) != TDM_OK) {
        unlink(f->tmp_path);
        errno = ENOMEM;
        return -1;
      }
      return 0;
    }
    if (errno != EEXIST) return -1;
  }
  return -1;
}

static void atomic_release(tdm__atomic_file *f) {
  tdm__tmp_untrack(f->tmp_path);
  tdm__free(f->path);
  tdm__free(f->tmp_path);
  memset(f, 0, sizeof *f);
}

int tdm__atomic_finish(tdm__atomic_file *f, tdm_error *err) {
  if (f->fp == NULL || f->synced) return TDM_OK;
  int failed = fflush(f->fp) != 0 || ferror(f->fp);
  if (!failed) failed = fsync(fileno(f->fp)) != 0 && errno != EINVAL;
  int saved = errno;
  /* An unnamed file stays open (unnamed) until commit names it: a kill
   * before then leaves nothing. */
  if (!failed && f->anonymous) {
    f->synced = 1;
    return TDM_OK;
  }
  if (fclose(f->fp) != 0) failed = 1;
  f->fp = NULL;
  if (failed) {
    if (!f->anonymous) unlink(f->tmp_path);
    int status = tdm__fail(err, TDM_EIO, "%s: write failed: %s", f->path,
                           strerror(saved));
    atomic_release(f);
    return status;
  }
  return TDM_OK;
}

int tdm__atomic_commit(tdm__atomic_file *f, tdm_error *err) {
  int rc = tdm__atomic_finish(f, err);
  if (rc != TDM_OK) return rc;
  if (f->anonymous) {
    /* Named only now, just before the rename: the window in which a kill
     * could leave the temporary name behind is these two calls. */
    int failed = name_anonymous(f) != 0;
    int saved = errno;
    fclose(f->fp);
    f->fp = NULL;
    if (failed) {
      int status = tdm__fail(err, TDM_EIO, "%s: cannot create output: %s",
                             f->path, strerror(saved));
      atomic_release(f);
      return status;
    }
  }
  if (rename(f->tmp_path, f->path) != 0) {
    int saved = errno;
    saved = errno;
    unlink(f->tmp_path);
    int status = tdm__fail(err, TDM_EIO, "%s: cannot rename into place: %s",
                           f->path, strerror(saved));
    atomic_release(f);
    return status;
  }
  atomic_release(f);
  return TDM_OK;
}

void tdm__atomic_abort(tdm__atomic_file *f) {
  if (f->tmp_path == NULL) return;
  if (f->fp != NULL) fclose(f->fp);
  if (!f->anonymous) unlink(f->tmp_path); /* an unnamed one just goes */
  atomic_release(f);
}

int tdm__write_file_atomic(const char *path, const void *data, size_t len,
                           tdm_error *err) {
  tdm__atomic_file f;
  int rc = tdm__atomic_open(&f, path, err);
  if (rc != TDM_OK) return rc;
  if (len > 0 && fwrite(data, 1, len, f.fp) != len) {
    tdm__atomic_abort(&f);
    return tdm__fail(err, TDM_EIO, "%s: write failed", path);
  }
  return tdm__atomic_commit(&f, err);
}
