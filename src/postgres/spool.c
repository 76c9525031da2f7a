/* spool: see spool.h. Segments are "seg-<16 digits>.spool"; the position
 * file "position" holds "<segment> <offset>" of the next record to replay.
 * When replay catches up with the writer, every segment is removed. */
#include "postgres/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SEGMENT_MAX (16u * 1024 * 1024)
#define MAX_SEGMENTS 100000

struct spool {
    char *dir;
    uint64_t max_bytes;
    uint64_t *segs;          /* pending segment numbers, ascending */
    size_t nsegs, segs_cap;
    uint64_t next_seg;       /* number for the next new segment */
    int write_fd;            /* the last segment, or -1 */
    uint64_t write_size;
    int read_fd;             /* segs[0], or -1 */
    uint64_t read_off;
    /* The peeked record. */
    int peeked;
    uint64_t peek_size;
    uint32_t peek_rows;
    struct spool_stats st;
};

/* ------------------------------------------------------------ format */

static uint32_t crc_table[256];
static int crc_ready;

uint32_t spool_crc32(const void *data, size_t len)
{
    if (!crc_ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            crc_table[i] = c;
        }
        crc_ready = 1;
    }
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void spool_header_encode(unsigned char *hdr, const void *payload, uint32_t len, uint32_t rows, uint64_t time_ms)
{
    memcpy(hdr, "DZS1", 4);
    put32(hdr + 4, len);
    put32(hdr + 8, rows);
    put32(hdr + 12, spool_crc32(payload, len));
    put32(hdr + 16, (uint32_t)time_ms);
    put32(hdr + 20, (uint32_t)(time_ms >> 32));
}

int spool_header_decode(const unsigned char *hdr, uint32_t *len, uint32_t *rows, uint32_t *crc, uint64_t *time_ms)
{
    if (memcmp(hdr, "DZS1", 4) != 0)
        return -1;
    *len = get32(hdr + 4);
    *rows = get32(hdr + 8);
    *crc = get32(hdr + 12);
    *time_ms = (uint64_t)get32(hdr + 16) | (uint64_t)get32(hdr + 20) << 32;
    return *len <= SPOOL_MAX_RECORD ? 0 : -1;
}

size_t spool_scan_buffer(const unsigned char *buf, size_t size, uint64_t *count)
{
    size_t off = 0;
    *count = 0;
    while (size - off >= SPOOL_HEADER_SIZE) {
        uint32_t len, rows, crc;
        uint64_t t;
        if (spool_header_decode(buf + off, &len, &rows, &crc, &t) != 0)
            break;
        if (size - off - SPOOL_HEADER_SIZE < len)
            break;
        if (spool_crc32(buf + off + SPOOL_HEADER_SIZE, len) != crc)
            break;
        off += SPOOL_HEADER_SIZE + len;
        (*count)++;
    }
    return off;
}

/* ------------------------------------------------------------ files */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void seg_path(const struct spool *s, uint64_t seg, char *out, size_t n)
{
    snprintf(out, n, "%s/seg-%016llu.spool", s->dir, (unsigned long long)seg);
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static int mkdir_p(const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int segs_push(struct spool *s, uint64_t seg)
{
    if (s->nsegs == s->segs_cap) {
        size_t cap = s->segs_cap ? s->segs_cap * 2 : 16;
        uint64_t *n = realloc(s->segs, cap * sizeof *n);
        if (!n)
            return -1;
        s->segs = n;
        s->segs_cap = cap;
    }
    s->segs[s->nsegs++] = seg;
    return 0;
}

static int save_position(struct spool *s)
{
    char path[4200], tmp[4210];
    snprintf(path, sizeof path, "%s/position", s->dir);
    snprintf(tmp, sizeof tmp, "%s/position.tmp", s->dir);
    if (s->nsegs == 0) {
        unlink(path);
        return 0;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    char line[64];
    int n = snprintf(line, sizeof line, "%llu %llu\n", (unsigned long long)s->segs[0],
                     (unsigned long long)s->read_off);
    int ok = write(fd, line, (size_t)n) == n && fdatasync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0)
        return -1;
    return 0;
}

static void close_read(struct spool *s)
{
    if (s->read_fd >= 0)
        close(s->read_fd);
    s->read_fd = -1;
}

static void close_write(struct spool *s)
{
    if (s->write_fd >= 0)
        close(s->write_fd);
    s->write_fd = -1;
}

/* Drops the first segment (fully replayed). */
static void drop_first_segment(struct spool *s)
{
    char path[4200];
    close_read(s);
    if (s->nsegs == 1)
        close_write(s);
    seg_path(s, s->segs[0], path, sizeof path);
    unlink(path);
    if (s->nsegs > 1)
        memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof *s->segs);
    s->nsegs--;
    s->read_off = 0;
}

/* Validates segment `seg` from `from`: counts pending records and cuts a torn
 * or corrupt tail. Returns the valid size, or -1 when unreadable. */
static long long scan_segment(struct spool *s, uint64_t seg, uint64_t from, int first)
{
    char path[4200];
    seg_path(s, seg, path, sizeof path);
    int fd = open(path, O_RDWR);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    uint64_t size = (uint64_t)st.st_size, off = from;
    unsigned char hdr[SPOOL_HEADER_SIZE];
    char *buf = NULL;
    size_t bufcap = 0;
    while (size - off >= SPOOL_HEADER_SIZE) {
        uint32_t len, rows, crc;
        uint64_t t;
        if (pread(fd, hdr, sizeof hdr, (off_t)off) != (ssize_t)sizeof hdr ||
            spool_header_decode(hdr, &len, &rows, &crc, &t) != 0 || size - off - SPOOL_HEADER_SIZE < len)
            break;
        if (len > bufcap) {
            char *nb = realloc(buf, len);
            if (!nb)
                break;
            buf = nb;
            bufcap = len;
        }
        if (pread(fd, buf, len, (off_t)(off + SPOOL_HEADER_SIZE)) != (ssize_t)len || spool_crc32(buf, len) != crc)
            break;
        if (first && s->st.records == 0)
            s->st.oldest_ms = t;
        s->st.records++;
        s->st.rows += rows;
        s->st.bytes += SPOOL_HEADER_SIZE + len;
        off += SPOOL_HEADER_SIZE + len;
    }
    free(buf);
    if (off < size) {
        s->st.corrupt_records++;
        if (ftruncate(fd, (off_t)off) == 0)
            fdatasync(fd);
    }
    close(fd);
    return (long long)off;
}

struct spool *spool_open(const char *dir, uint64_t max_bytes, char *err, size_t errsz)
{
    struct spool *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    s->max_bytes = max_bytes;
    s->st.max_bytes = max_bytes;
    s->write_fd = s->read_fd = -1;
    if (mkdir_p(dir) != 0) {
        snprintf(err, errsz, "cannot create spool directory %s: %s", dir, strerror(errno));
        spool_close(s);
        return NULL;
    }
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errsz, "cannot open spool directory %s: %s", dir, strerror(errno));
        spool_close(s);
        return NULL;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long long n;
        char tail[16];
        if (sscanf(e->d_name, "seg-%llu.%15s", &n, tail) == 2 && strcmp(tail, "spool") == 0 &&
            s->nsegs < MAX_SEGMENTS) {
            if (segs_push(s, n) != 0)
                break;
        }
    }
    closedir(d);
    if (s->nsegs > 1)
        qsort(s->segs, s->nsegs, sizeof *s->segs, cmp_u64);
    s->next_seg = s->nsegs ? s->segs[s->nsegs - 1] + 1 : 1;

    /* Where replay stopped: segments before it are done. */
    char path[4200];
    snprintf(path, sizeof path, "%s/position", dir);
    FILE *f = fopen(path, "r");
    unsigned long long pseg = 0, poff = 0;
    if (f) {
        if (fscanf(f, "%llu %llu", &pseg, &poff) != 2)
            pseg = poff = 0;
        fclose(f);
    }
    while (s->nsegs > 0 && pseg && s->segs[0] < pseg)
        drop_first_segment(s);
    s->read_off = s->nsegs > 0 && s->segs[0] == pseg ? poff : 0;

    for (size_t i = 0; i < s->nsegs; i++) {
        long long valid = scan_segment(s, s->segs[i], i == 0 ? s->read_off : 0, 1);
        if (valid < 0) {
            snprintf(err, errsz, "cannot read spool segment %llu in %s", (unsigned long long)s->segs[i], dir);
            spool_close(s);
            return NULL;
        }
        if (i == s->nsegs - 1)
            s->write_size = (uint64_t)valid;
    }
    if (s->st.records == 0) {
        /* Nothing pending: start clean. */
        while (s->nsegs > 0)
            drop_first_segment(s);
        save_position(s);
    }
    return s;
}

void spool_close(struct spool *s)
{
    if (!s)
        return;
    close_read(s);
    close_write(s);
    free(s->segs);
    free(s->dir);
    free(s);
}

int spool_empty(const struct spool *s)
{
    return !s || s->st.records == 0;
}

void spool_get_stats(const struct spool *s, struct spool_stats *out)
{
    if (!s) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = s->st;
}

int spool_append(struct spool *s, const void *payload, size_t len, uint32_t rows, char *err, size_t errsz)
{
    uint64_t need = SPOOL_HEADER_SIZE + (uint64_t)len;
    if (len > SPOOL_MAX_RECORD || s->st.bytes + need > s->max_bytes) {
        s->st.refused_records++;
        s->st.refused_rows += rows;
        return -2;
    }
    char path[4200];
    if (s->write_fd < 0 || s->write_size >= SEGMENT_MAX) {
        close_write(s);
        uint64_t seg = s->next_seg++;
        seg_path(s, seg, path, sizeof path);
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd < 0) {
            snprintf(err, errsz, "cannot create %s: %s", path, strerror(errno));
            return -1;
        }
        fsync_dir(s->dir);
        if (segs_push(s, seg) != 0) {
            close(fd);
            unlink(path);
            snprintf(err, errsz, "out of memory");
            return -1;
        }
        if (s->nsegs == 1)
            s->read_off = 0;
        s->write_fd = fd;
        s->write_size = 0;
    }
    unsigned char hdr[SPOOL_HEADER_SIZE];
    uint64_t now = wall_ms();
    spool_header_encode(hdr, payload, (uint32_t)len, rows, now);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)payload, len}};
    ssize_t w = writev(s->write_fd, iov, 2);
    if (w != (ssize_t)need || fdatasync(s->write_fd) != 0) {
        snprintf(err, errsz, "cannot write the spool: %s", w < 0 ? strerror(errno) : "short write or fsync failed");
        if (ftruncate(s->write_fd, (off_t)s->write_size) != 0)
            close_write(s); /* start a new segment next time */
        return -1;
    }
    s->write_size += need;
    if (s->st.records == 0)
        s->st.oldest_ms = now;
    s->st.records++;
    s->st.rows += rows;
    s->st.bytes += need;
    s->st.appended_records++;
    s->st.appended_rows += rows;
    if (s->nsegs == 1 && s->st.records == 1)
        save_position(s);
    return 0;
}

int spool_peek(struct spool *s, char **payload, size_t *plen, uint32_t *prows)
{
    *payload = NULL;
    while (s->nsegs > 0 && s->st.records > 0) {
        char path[4200];
        if (s->read_fd < 0) {
            seg_path(s, s->segs[0], path, sizeof path);
            s->read_fd = open(path, O_RDONLY);
            if (s->read_fd < 0)
                return -1;
        }
        unsigned char hdr[SPOOL_HEADER_SIZE];
        ssize_t r = pread(s->read_fd, hdr, sizeof hdr, (off_t)s->read_off);
        uint32_t len, rows, crc;
        uint64_t t;
        if (r == 0 || (r > 0 && r < (ssize_t)sizeof hdr)) {
            if (s->nsegs == 1)
                return 0; /* caught up with the writer */
            drop_first_segment(s);
            save_position(s);
            continue;
        }
        if (r < 0)
            return -1;
        if (spool_header_decode(hdr, &len, &rows, &crc, &t) != 0)
            goto corrupt;
        char *buf = malloc(len ? len : 1);
        if (!buf)
            return -1;
        if (pread(s->read_fd, buf, len, (off_t)(s->read_off + SPOOL_HEADER_SIZE)) != (ssize_t)len ||
            spool_crc32(buf, len) != crc) {
            free(buf);
            goto corrupt;
        }
        s->peeked = 1;
        s->peek_size = SPOOL_HEADER_SIZE + (uint64_t)len;
        s->peek_rows = rows;
        s->st.oldest_ms = t;
        *payload = buf;
        *plen = len;
        *prows = rows;
        return 1;
    corrupt:
        /* Cannot happen after spool_open's validation unless the file changed
         * under us: skip the rest of this segment. */
        s->st.corrupt_records++;
        if (s->nsegs == 1) {
            s->st.records = s->st.rows = s->st.bytes = 0;
            drop_first_segment(s);
            save_position(s);
            return 0;
        }
        drop_first_segment(s);
        save_position(s);
    }
    return 0;
}

int spool_consume(struct spool *s)
{
    if (!s->peeked)
        return -1;
    s->peeked = 0;
    s->read_off += s->peek_size;
    s->st.records--;
    s->st.rows -= s->peek_rows;
    s->st.bytes -= s->peek_size;
    s->st.replayed_records++;
    s->st.replayed_rows += s->peek_rows;
    if (s->st.records == 0) {
        /* Caught up: remove every segment and start clean. */
        while (s->nsegs > 0)
            drop_first_segment(s);
        s->st.oldest_ms = 0;
        s->st.rows = s->st.bytes = 0;
        return save_position(s);
    }
    return save_position(s);
}
