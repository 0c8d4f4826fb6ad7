/*
 * wal.c - the segment files of wal.h. A record is
 *
 *   u32 length of the payload, u64 sequence number, u32 CRC-32C of the
 *   sequence number and payload, the payload
 *
 * (little-endian). Segments are named NAME.N.wal, N counting up; each is
 * preallocated (64 MiB, grown in steps when a group needs more) so that
 * fdatasync has no file size to write. Unwritten space reads as zeros,
 * and a zero length with a zero CRC is the end of a segment.
 *
 * Making a segment (create, preallocate, sync it and its directory) takes
 * milliseconds to tens of milliseconds, and a rotation in the appending
 * thread made every answer waiting for the next group commit wait for it
 * too. tdm__wal_prepare makes the next segment ahead, in another thread,
 * and a rotation then only switches to it. spare_lock orders the two: the
 * number of the segment being written changes only under it, and a
 * rotation that finds no spare makes its segment while holding it, so
 * the two never make the same file.
 */
#include "wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TDM__WAL_X86 1
#endif

#define SEGMENT_BYTES ((off_t)64 << 20)
#define HEADER 16
#define MAX_RECORD ((size_t)1 << 30)

struct tdm__wal {
  char *dir, *name;
  int fd;           /* the segment being written */
  uint64_t segment; /* its number */
  off_t offset;     /* where the next record goes */
  off_t allocated;  /* bytes preallocated */
  uint64_t first_new; /* the first segment made by this open */
  tdm__buf buf;
  pthread_mutex_t spare_lock; /* guards segment's changes and the spare */
  pthread_cond_t spare_made;  /* signalled when preparing ends */
  int spare_fd;               /* the next segment, made ahead; -1: none */
  int preparing;              /* tdm__wal_prepare is making it */
};

/* The CRC-32C table, built once for the process: logs opened by several
 * threads at once (two durable states in one program) must not build it
 * while another reads it, so pthread_once orders the two. The same once
 * picks the SSE 4.2 instruction when the CPU has it. */
static uint32_t crc_table[256];
static int crc_hardware;
static pthread_once_t crc_table_once = PTHREAD_ONCE_INIT;

static void build_crc_table(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
    crc_table[i] = c;
  }
#ifdef TDM__WAL_X86
  __builtin_cpu_init();
  crc_hardware = __builtin_cpu_supports("sse4.2");
#endif
}

uint32_t tdm__crc32c_reference(uint32_t crc, const void *data, size_t len) {
  pthread_once(&crc_table_once, build_crc_table);
  const uint32_t *table = crc_table;
  const unsigned char *p = data;
  crc = ~crc;
  for (size_t i = 0; i < len; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

#ifdef TDM__WAL_X86
/* The same CRC with the crc32 instruction, 8 bytes a step: the table
 * walk costs a dependent load per byte, which made the committer's CRC
 * of a group commit (decision records included) a measurable part of
 * every answer's wait (bench/README.md, issue 25). */
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(
    uint32_t crc, const unsigned char *p, size_t len) {
  uint64_t c = ~crc;
  for (; len >= 8; p += 8, len -= 8) {
    uint64_t word;
    memcpy(&word, p, 8);
    c = __builtin_ia32_crc32di(c, word);
  }
  uint32_t c32 = (uint32_t)c;
  for (; len > 0; p++, len--) c32 = __builtin_ia32_crc32qi(c32, *p);
  return ~c32;
}
#endif

uint32_t tdm__crc32c(uint32_t crc, const void *data, size_t len) {
#ifdef TDM__WAL_X86
  pthread_once(&crc_table_once, build_crc_table);
  if (crc_hardware) return crc32c_sse42(crc, data, len);
#endif
  return tdm__crc32c_reference(crc, data, len);
}

static void segment_path(const tdm__wal *wal, uint64_t segment, char *buf,
                         size_t size) {
  snprintf(buf, size, "%s/%s.%llu.wal", wal->dir, wal->name,
           (unsigned long long)segment);
}

/* The segment numbers present, ascending. */
static int list_segments(const tdm__wal *wal, uint64_t **out, size_t *count,
                         tdm_error *err) {
  *out = NULL;
  *count = 0;
  DIR *d = opendir(wal->dir);
  if (d == NULL)
    return tdm__fail(err, TDM_EIO, "%s: %s", wal->dir, strerror(errno));
  size_t cap = 0, name_len = strlen(wal->name);
  struct dirent *entry;
  int rc = TDM_OK;
  while ((entry = readdir(d)) != NULL) {
    const char *n = entry->d_name;
    if (strncmp(n, wal->name, name_len) != 0 || n[name_len] != '.') continue;
    char *end;
    unsigned long long number = strtoull(n + name_len + 1, &end, 10);
    if (end == n + name_len + 1 || strcmp(end, ".wal") != 0) continue;
    if (*count == cap) {
      cap = cap ? cap * 2 : 16;
      uint64_t *grown = tdm__realloc(*out, cap * sizeof **out);
      if (grown == NULL) {
        rc = tdm__fail(err, TDM_ENOMEM, "out of memory");
        break;
      }
      *out = grown;
    }
    (*out)[(*count)++] = number;
  }
  closedir(d);
  for (size_t i = 1; i < *count; i++) /* insertion sort: few segments */
    for (size_t j = i; j > 0 && (*out)[j - 1] > (*out)[j]; j--) {
      uint64_t t = (*out)[j];
      (*out)[j] = (*out)[j - 1];
      (*out)[j - 1] = t;
    }
  return rc;
}

/* Makes the directory entry of a new or deleted file durable. */
static void sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
}

/* Creates segment file `segment`, preallocated and durable, in *fd. */
static int make_segment(const tdm__wal *wal, uint64_t segment, int *fd,
                        tdm_error *err) {
  char path[4096];
  segment_path(wal, segment, path, sizeof path);
  *fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0664);
  if (*fd < 0)
    return tdm__fail(err, TDM_EIO, "%s: cannot create: %s", path,
                     strerror(errno));
  int rc = posix_fallocate(*fd, 0, SEGMENT_BYTES);
  if (rc != 0 || fsync(*fd) != 0) {
    close(*fd);
    *fd = -1;
    unlink(path);
    return tdm__fail(err, TDM_EIO, "%s: cannot allocate: %s", path,
                     strerror(rc ? rc : errno));
  }
  sync_dir(wal->dir);
  return TDM_OK;
}

/* Makes fd (segment file `segment`) the one written; under spare_lock
 * once the log is open. */
static void switch_to(tdm__wal *wal, int fd, uint64_t segment) {
  if (wal->fd >= 0) close(wal->fd);
  wal->fd = fd;
  wal->segment = segment;
  wal->offset = 0;
  wal->allocated = SEGMENT_BYTES;
}

static int new_segment(tdm__wal *wal, uint64_t segment, tdm_error *err) {
  int fd;
  int rc = make_segment(wal, segment, &fd, err);
  if (rc == TDM_OK) switch_to(wal, fd, segment);
  return rc;
}

int tdm__wal_open(const char *dir, const char *name, tdm__wal **out,
                  tdm_error *err) {
  *out = NULL;
  if (mkdir(dir, 0777) != 0 && errno != EEXIST)
    return tdm__fail(err, TDM_EIO, "%s: cannot create: %s", dir,
                     strerror(errno));
  tdm__wal *wal = tdm__calloc(1, sizeof *wal);
  if (wal == NULL) return tdm__fail(err, TDM_ENOMEM, "out of memory");
  wal->fd = -1;
  wal->spare_fd = -1;
  pthread_mutex_init(&wal->spare_lock, NULL);
  pthread_cond_init(&wal->spare_made, NULL);
  wal->dir = tdm__strdup(dir);
  wal->name = tdm__strdup(name);
  if (wal->dir == NULL || wal->name == NULL) {
    tdm__wal_close(wal);
    return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  uint64_t *segments;
  size_t count;
  int rc = list_segments(wal, &segments, &count, err);
  uint64_t next = count ? segments[count - 1] + 1 : 1;
  tdm__free(segments);
  if (rc == TDM_OK) rc = new_segment(wal, next, err);
  wal->first_new = next;
  if (rc != TDM_OK) {
    tdm__wal_close(wal);
    return rc;
  }
  *out = wal;
  return TDM_OK;
}

void tdm__wal_close(tdm__wal *wal) {
  if (wal == NULL) return;
  if (wal->fd >= 0) close(wal->fd);
  /* A spare left unused holds no record: it goes, so a stopped log keeps
   * no preallocated space but its last segment's. (After a crash the next
   * open's replay removes it, as any segment with no record.) */
  if (wal->spare_fd >= 0) {
    close(wal->spare_fd);
    char path[4096];
    segment_path(wal, wal->segment + 1, path, sizeof path);
    unlink(path);
  }
  pthread_mutex_destroy(&wal->spare_lock);
  pthread_cond_destroy(&wal->spare_made);
  tdm__buf_free(&wal->buf);
  tdm__free(wal->dir);
  tdm__free(wal->name);
  tdm__free(wal);
}

/*
 * Reads one segment's records. A record that is not whole ends the
 * segment. It is a torn write (a crash in the middle of the last write
 * to this segment) when nothing but zeros follows it, since the segment
 * was preallocated with zeros and a write fills it in order; then the
 * records before it are the segment's. Anything else after it means
 * damage in the middle: *damaged is set. *end is where the whole records
 * end.
 */
static int replay_segment(tdm__wal *wal, uint64_t segment,
                          int (*fn)(void *, uint64_t, const void *, size_t),
                          void *ctx, int *damaged, size_t *end,
                          tdm_error *err) {
  char path[4096];
  segment_path(wal, segment, path, sizeof path);
  char *data;
  size_t size;
  int rc = tdm__read_file(path, &data, &size, err);
  if (rc != TDM_OK) return rc;
  size_t at = 0;
  *damaged = 0;
  while (rc == TDM_OK && at < size) {
    uint32_t len = 0, crc = 0;
    uint64_t seq = 0;
    if (at + HEADER <= size) {
      memcpy(&len, data + at, 4);
      memcpy(&seq, data + at + 4, 8);
      memcpy(&crc, data + at + 12, 4);
      if (len == 0 && seq == 0 && crc == 0) break; /* the zeros: the end */
      if (len <= MAX_RECORD && at + HEADER + len <= size &&
          tdm__crc32c(tdm__crc32c(0, &seq, 8), data + at + HEADER, len) ==
              crc) {
        rc = fn(ctx, seq, data + at + HEADER, len);
        at += HEADER + len;
        continue;
      }
    }
    /* Not whole: torn if only zeros follow its own bytes. */
    size_t from = at + HEADER;
    if (len <= MAX_RECORD && from + len <= size) from += len;
    for (size_t i = from; i < size; i++)
      if (data[i] != 0) {
        *damaged = 1;
        break;
      }
    break;
  }
  *end = at;
  tdm__free(data);
  return rc;
}

int tdm__wal_replay(tdm__wal *wal,
                    int (*fn)(void *ctx, uint64_t seq, const void *data,
                              size_t len),
                    void *ctx, tdm_error *err) {
  uint64_t *segments;
  size_t count;
  int rc = list_segments(wal, &segments, &count, err);
  for (size_t i = 0; i < count && rc == TDM_OK; i++) {
    if (segments[i] >= wal->first_new) break; /* this open's own */
    int damaged;
    size_t end;
    rc = replay_segment(wal, segments[i], fn, ctx, &damaged, &end, err);
    char path[4096];
    segment_path(wal, segments[i], path, sizeof path);
    if (rc == TDM_OK && damaged)
      rc = tdm__fail(err, TDM_EPARSE,
                     "%s: a damaged record with records after it", path);
    /* An earlier open's segment is never written again: its preallocated
     * space past the last whole record (and a torn record there, which no
     * client was told is saved) is given back, and a segment with no
     * record goes. Otherwise every start would leave another 64 MiB until
     * a snapshot round, which only traffic starts, removed them. */
    if (rc == TDM_OK && end == 0 && unlink(path) != 0 && errno != ENOENT)
      rc = tdm__fail(err, TDM_EIO, "%s: cannot delete: %s", path,
                     strerror(errno));
    else if (rc == TDM_OK && end > 0 && truncate(path, (off_t)end) != 0)
      rc = tdm__fail(err, TDM_EIO, "%s: cannot truncate: %s", path,
                     strerror(errno));
  }
  tdm__free(segments);
  return rc;
}

int tdm__wal_append(tdm__wal *wal, const tdm__wal_record *records, size_t n,
                    tdm_error *err) {
  wal->buf.len = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t len = (uint32_t)records[i].len;
    uint32_t crc = tdm__crc32c(tdm__crc32c(0, &records[i].seq, 8),
                               records[i].data, records[i].len);
    if (tdm__buf_append(&wal->buf, &len, 4) != TDM_OK ||
        tdm__buf_append(&wal->buf, &records[i].seq, 8) != TDM_OK ||
        tdm__buf_append(&wal->buf, &crc, 4) != TDM_OK ||
        tdm__buf_append(&wal->buf, records[i].data, records[i].len) != TDM_OK)
      return tdm__fail(err, TDM_ENOMEM, "out of memory");
  }
  if (wal->offset + (off_t)wal->buf.len > wal->allocated) {
    /* Past the preallocated space: a new segment, or more space for a
     * group larger than a whole segment. */
    if (wal->offset > 0) {
      uint64_t segment;
      int rc = tdm__wal_rotate(wal, &segment, err);
      if (rc != TDM_OK) return rc;
    }
    if ((off_t)wal->buf.len > wal->allocated) {
      int rc = posix_fallocate(wal->fd, 0, (off_t)wal->buf.len);
      if (rc != 0)
        return tdm__fail(err, TDM_EIO, "log: cannot allocate: %s",
                         strerror(rc));
      wal->allocated = (off_t)wal->buf.len;
    }
  }
  size_t done = 0;
  while (done < wal->buf.len) {
    ssize_t w = pwrite(wal->fd, wal->buf.data + done, wal->buf.len - done,
                       wal->offset + (off_t)done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0)
      return tdm__fail(err, TDM_EIO, "log: write failed: %s", strerror(errno));
    done += (size_t)w;
  }
  if (fdatasync(wal->fd) != 0)
    return tdm__fail(err, TDM_EIO, "log: sync failed: %s", strerror(errno));
  wal->offset += (off_t)wal->buf.len;
  return TDM_OK;
}

int tdm__wal_rotate(tdm__wal *wal, uint64_t *segment, tdm_error *err) {
  pthread_mutex_lock(&wal->spare_lock);
  while (wal->preparing)
    pthread_cond_wait(&wal->spare_made, &wal->spare_lock);
  int rc = TDM_OK;
  if (wal->spare_fd >= 0) {
    switch_to(wal, wal->spare_fd, wal->segment + 1);
    wal->spare_fd = -1;
  } else {
    rc = new_segment(wal, wal->segment + 1, err);
  }
  if (rc == TDM_OK) *segment = wal->segment;
  pthread_mutex_unlock(&wal->spare_lock);
  return rc;
}

int tdm__wal_prepare(tdm__wal *wal, tdm_error *err) {
  pthread_mutex_lock(&wal->spare_lock);
  if (wal->spare_fd >= 0 || wal->preparing) {
    pthread_mutex_unlock(&wal->spare_lock);
    return TDM_OK;
  }
  uint64_t next = wal->segment + 1;
  wal->preparing = 1;
  pthread_mutex_unlock(&wal->spare_lock);
  /* Made without the lock: a rotation meanwhile waits for it (it can only
   * be the number the rotation would make) instead of making it too. */
  int fd;
  int rc = make_segment(wal, next, &fd, err);
  pthread_mutex_lock(&wal->spare_lock);
  wal->preparing = 0;
  if (rc == TDM_OK) wal->spare_fd = fd;
  pthread_cond_broadcast(&wal->spare_made);
  pthread_mutex_unlock(&wal->spare_lock);
  return rc;
}

int tdm__wal_has_spare(tdm__wal *wal) {
  pthread_mutex_lock(&wal->spare_lock);
  int has = wal->spare_fd >= 0 || wal->preparing;
  pthread_mutex_unlock(&wal->spare_lock);
  return has;
}

int tdm__wal_drop_before(tdm__wal *wal, uint64_t segment, tdm_error *err) {
  uint64_t *segments;
  size_t count;
  int rc = list_segments(wal, &segments, &count, err);
  int removed = 0;
  for (size_t i = 0; i < count && rc == TDM_OK; i++) {
    if (segments[i] >= segment) break;
    char path[4096];
    segment_path(wal, segments[i], path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT)
      rc = tdm__fail(err, TDM_EIO, "%s: cannot delete: %s", path,
                     strerror(errno));
    removed = 1;
  }
  if (removed) sync_dir(wal->dir);
  tdm__free(segments);
  return rc;
}
