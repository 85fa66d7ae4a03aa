/*
 * Incremental SSE line parser with a bounded fallback for over-long data
 * lines; see ngx_http_conductor_sse.h.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE         /* memrchr */
#endif

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

#include "ngx_http_conductor_sse.h"


#define NGX_HTTP_CONDUCTOR_SSE_NORMAL     0   /* buffering the line */
#define NGX_HTTP_CONDUCTOR_SSE_SCAN       1   /* over-long data line */
#define NGX_HTTP_CONDUCTOR_SSE_SKIP       2   /* over-long other line */

#define NGX_HTTP_CONDUCTOR_SSE_ROLE_NONE  0
#define NGX_HTTP_CONDUCTOR_SSE_ROLE_KEY   1
#define NGX_HTTP_CONDUCTOR_SSE_ROLE_TYPE  2

/* key_len value of a key that cannot match (escaped or too long) */
#define NGX_HTTP_CONDUCTOR_SSE_KEY_BAD    0xff

/* first allocation; lines of chat chunks are a few hundred bytes */
#define NGX_HTTP_CONDUCTOR_SSE_INITIAL    1024


static void ngx_http_conductor_sse_lazy(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t len);
static const unsigned char *ngx_http_conductor_sse_last_eol(
    ngx_http_conductor_sse_t *sse, const unsigned char *p, size_t len);
static const unsigned char *ngx_http_conductor_sse_first_eol(
    ngx_http_conductor_sse_t *sse, const unsigned char *p,
    const unsigned char *end);
static void ngx_http_conductor_sse_keep(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t len);
static void ngx_http_conductor_sse_catch_up(ngx_http_conductor_sse_t *sse);
static unsigned char ngx_http_conductor_sse_tail_at(
    ngx_http_conductor_sse_t *sse, size_t i);
static void ngx_http_conductor_sse_tail_parse(ngx_http_conductor_sse_t *sse,
    size_t skip);
static size_t ngx_http_conductor_sse_parse(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t len, unsigned head);
static void *ngx_http_conductor_sse_malloc(void *data, size_t size);
static void ngx_http_conductor_sse_mfree(void *data, void *p);
static size_t ngx_http_conductor_sse_limit(ngx_http_conductor_sse_t *sse);
static int ngx_http_conductor_sse_reserve(ngx_http_conductor_sse_t *sse,
    size_t need);
static void ngx_http_conductor_sse_append(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t n);
static void ngx_http_conductor_sse_end(ngx_http_conductor_sse_t *sse);
static void ngx_http_conductor_sse_begin(ngx_http_conductor_sse_t *sse,
    const unsigned char **p, size_t *n);
static void ngx_http_conductor_sse_line(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t n);
static void ngx_http_conductor_sse_long_start(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t n);
static void ngx_http_conductor_sse_long_end(ngx_http_conductor_sse_t *sse);
static void ngx_http_conductor_sse_set_event(ngx_http_conductor_sse_t *sse,
    const unsigned char *v, size_t n);
static void ngx_http_conductor_sse_dispatch(ngx_http_conductor_sse_t *sse,
    unsigned flags, const unsigned char *data, size_t len,
    const unsigned char *event, size_t event_len);
static unsigned ngx_http_conductor_sse_scan_where(
    ngx_http_conductor_sse_scan_t *scan);
static int ngx_http_conductor_sse_key_is(ngx_http_conductor_sse_scan_t *scan,
    size_t d, const char *name, size_t len);


void
ngx_http_conductor_sse_init(ngx_http_conductor_sse_t *sse, size_t line_max,
    ngx_http_conductor_sse_handler_pt handler, void *data)
{
    memset(sse, 0, sizeof(ngx_http_conductor_sse_t));

    if (line_max < NGX_HTTP_CONDUCTOR_SSE_LINE_MIN) {
        line_max = NGX_HTTP_CONDUCTOR_SSE_LINE_MIN;
    }

    sse->line_max = line_max;
    sse->usage_max = NGX_HTTP_CONDUCTOR_SSE_USAGE_MAX;
    sse->handler = handler;
    sse->data = data;
    sse->alloc = ngx_http_conductor_sse_malloc;
    sse->free = ngx_http_conductor_sse_mfree;
}


void
ngx_http_conductor_sse_set_allocator(ngx_http_conductor_sse_t *sse,
    ngx_http_conductor_sse_alloc_pt alloc, ngx_http_conductor_sse_free_pt free,
    void *data)
{
    sse->alloc = alloc;
    sse->free = free;
    sse->alloc_data = data;
    sse->fixed = 0;
}


void
ngx_http_conductor_sse_set_buffer(ngx_http_conductor_sse_t *sse,
    unsigned char *buf, size_t size)
{
    sse->alloc = NULL;
    sse->free = NULL;
    sse->buf = buf;
    sse->size = buf ? size : 0;
    sse->fixed = 1;

    /* the fallback needs the line prefix, so a line must fit the buffer */
    if (sse->line_max > sse->size) {
        sse->line_max = sse->size;
    }
}


void
ngx_http_conductor_sse_feed(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t len)
{
    size_t  n;

    if (sse->tail == NULL || sse->data_lines == 0) {
        /* every line is parsed; with a tail, up to the first data line */
        n = ngx_http_conductor_sse_parse(sse, p, len, sse->tail != NULL);
        sse->total += n;
        sse->open_from = sse->line_start;

        if (n == len) {
            return;
        }

        p += n;
        len -= n;
    }

    ngx_http_conductor_sse_lazy(sse, p, len);
}


void
ngx_http_conductor_sse_set_tail(ngx_http_conductor_sse_t *sse,
    unsigned char *buf, size_t size)
{
    sse->tail = size ? buf : NULL;
    sse->tail_size = size;
    sse->tail_len = 0;
    sse->tail_pos = 0;
    sse->open_from = sse->total;
}


/*
 * After the head, the bytes only go into the tail ring; the last
 * terminator of the piece says where the open line began.  A line that
 * outgrows the ring is parsed (the fallback finds its usage) from the
 * tail on, until a piece ends it.
 */

static void
ngx_http_conductor_sse_lazy(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t len)
{
    size_t                half;
    uint64_t              end, from;
    const unsigned char  *t, *lo, *b, *f, *ls;

    t = ngx_http_conductor_sse_last_eol(sse, p, len);

    if (sse->lazy_full) {
        (void) ngx_http_conductor_sse_parse(sse, p, len, 0);
        sse->total += len;

        if (t) {
            sse->lazy_full = 0;
            sse->open_from = sse->total - len + (t - p) + 1;
        }

        return;
    }

    /*
     * Every line that ends in the last half of the ring is seen.  A line
     * that ends in the last half of this piece (or in the piece, when it
     * is shorter) and is longer than half the ring is parsed now, while
     * the ring still holds its start; the first such line is the longest
     * one possible, it is enough to measure it.  Lines that end before the
     * last half of a long piece are not needed: the ring starts after them.
     */

    half = sse->tail_size / 2;
    end = sse->total + len;
    ls = NULL;

    if (t && end - sse->open_from > half) {
        b = (len > half) ? p + len - half : p;

        if (t >= b) {
            from = sse->open_from;

            if (b > p) {
                lo = (len > sse->tail_size) ? p + len - sse->tail_size : p;
                ls = ngx_http_conductor_sse_last_eol(sse, lo, b - lo);

                if (ls) {
                    from = sse->total + (ls - p) + 1;

                } else if (lo > p) {
                    goto parse;
                }
            }

            f = ngx_http_conductor_sse_first_eol(sse, b, t + 1);

            if (sse->total + (f - p) - from > half) {
                goto parse;
            }
        }
    }

    if (t) {
        sse->open_from = sse->total + (t - p) + 1;
    }

    if (end - sse->open_from > half) {
        /* the open line outgrows half the ring: parsed from here on */
        goto parse;
    }

    if (ls) {
        /* the ring starts over at the first line that may be needed */
        ls++;
        sse->tail_len = 0;
        sse->tail_pos = 0;
        sse->tail_line = sse->total + (ls - p);
        ngx_http_conductor_sse_keep(sse, ls, p + len - ls);

    } else {
        ngx_http_conductor_sse_keep(sse, p, len);
    }

    sse->total = end;

    return;

parse:

    ngx_http_conductor_sse_catch_up(sse);
    (void) ngx_http_conductor_sse_parse(sse, p, len, 0);
    sse->total = end;

    if (t) {
        sse->open_from = end - len + (t - p) + 1;

    } else {
        sse->lazy_full = 1;
    }
}


/* the first CR or LF in [p, end) */

static const unsigned char *
ngx_http_conductor_sse_first_eol(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, const unsigned char *end)
{
    const unsigned char  *lf, *cr;

    lf = memchr(p, '\n', end - p);

    if (!sse->saw_cr) {
        return lf;
    }

    cr = memchr(p, '\r', (lf ? lf : end) - p);

    return cr ? cr : lf;
}


/*
 * The last CR or LF of a piece; CRs are looked for only once the stream
 * has shown one: an LF stream costs one search, and a CR missed only makes
 * a line look longer, so that it is parsed.
 */

static const unsigned char *
ngx_http_conductor_sse_last_eol(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t len)
{
    const unsigned char  *lf, *cr, *from;

    lf = memrchr(p, '\n', len);

    if (!sse->saw_cr) {
        return lf;
    }

    from = lf ? lf + 1 : p;
    cr = memrchr(from, '\r', p + len - from);

    return cr ? cr : lf;
}


/* the last tail_size bytes of the stream */

static void
ngx_http_conductor_sse_keep(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t len)
{
    size_t  first;

    if (len >= sse->tail_size) {
        memcpy(sse->tail, p + len - sse->tail_size, sse->tail_size);
        sse->tail_pos = 0;
        sse->tail_len = sse->tail_size;
        return;
    }

    first = sse->tail_size - sse->tail_pos;
    first = first < len ? first : len;

    memcpy(sse->tail + sse->tail_pos, p, first);
    memcpy(sse->tail, p + first, len - first);

    sse->tail_pos = (sse->tail_pos + len) % sse->tail_size;
    sse->tail_len += len;

    if (sse->tail_len > sse->tail_size) {
        sse->tail_len = sse->tail_size;
    }
}


/*
 * The parser is brought up to the end of what was fed: from where it
 * stopped when the tail still holds that byte (exactly as if every byte
 * had been parsed), else from the first line that begins in the tail.
 */

static void
ngx_http_conductor_sse_catch_up(ngx_http_conductor_sse_t *sse)
{
    size_t          skip, i;
    uint64_t        start;
    unsigned char   c;

    if (sse->offset < sse->total) {

        start = sse->total - sse->tail_len;

        if (sse->offset >= start) {
            skip = sse->offset - start;

        } else {
            /* lost between: the parser starts over at a line */
            sse->len = 0;
            sse->mode = NGX_HTTP_CONDUCTOR_SSE_NORMAL;
            sse->cr = 0;
            sse->in_event = 0;
            sse->event_len = 0;

            skip = 0;
            c = '\0';

            if (sse->open_from != start && sse->tail_line != start) {
                for (i = 0; i < sse->tail_len; i++) {
                    c = ngx_http_conductor_sse_tail_at(sse, i);

                    if (c == '\n' || c == '\r') {
                        break;
                    }
                }

                skip = i + (i < sse->tail_len);

                if (c == '\r' && skip < sse->tail_len
                    && ngx_http_conductor_sse_tail_at(sse, skip) == '\n')
                {
                    skip++;
                }
            }

            sse->offset = start + skip;
            sse->line_start = sse->offset;
        }

        ngx_http_conductor_sse_tail_parse(sse, skip);
    }

    sse->tail_len = 0;
    sse->tail_pos = 0;
}


/* byte i of the tail, 0 the oldest */

static unsigned char
ngx_http_conductor_sse_tail_at(ngx_http_conductor_sse_t *sse, size_t i)
{
    return sse->tail[(sse->tail_pos + sse->tail_size - sse->tail_len + i)
                     % sse->tail_size];
}


/* the tail from its byte skip on, in the one or two pieces of the ring */

static void
ngx_http_conductor_sse_tail_parse(ngx_http_conductor_sse_t *sse, size_t skip)
{
    size_t  oldest, first;

    if (skip >= sse->tail_len) {
        return;
    }

    oldest = (sse->tail_pos + sse->tail_size - sse->tail_len + skip)
             % sse->tail_size;

    first = sse->tail_size - oldest;
    first = first < sse->tail_len - skip ? first : sse->tail_len - skip;

    (void) ngx_http_conductor_sse_parse(sse, sse->tail + oldest, first, 0);
    (void) ngx_http_conductor_sse_parse(sse, sse->tail,
                                        sse->tail_len - skip - first, 0);
}


/* head: stop after the line that made the first handler call */

static size_t
ngx_http_conductor_sse_parse(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t len, unsigned head)
{
    size_t                n;
    const unsigned char  *start, *end, *lf, *cr, *t;

    if (len == 0) {
        return 0;
    }

    start = p;
    end = p + len;

    /* a CR ended the previous piece: its LF belongs to that terminator */
    if (sse->cr) {
        sse->cr = 0;

        if (*p == '\n') {
            p++;
            sse->offset++;
            sse->line_start = sse->offset;
        }
    }

    lf = memchr(p, '\n', end - p);

    while (p < end) {

        /* kept across lines: a CR-only stream must not rescan the piece */
        if (lf && lf < p) {
            lf = memchr(p, '\n', end - p);
        }

        cr = memchr(p, '\r', (lf ? lf : end) - p);
        t = cr ? cr : lf;

        if (t == NULL) {
            ngx_http_conductor_sse_append(sse, p, end - p);
            sse->offset += end - p;
            return len;
        }

        n = t - p;

        if (sse->len == 0 && sse->mode == NGX_HTTP_CONDUCTOR_SSE_NORMAL) {

            /* the whole line is in this piece: parsed there, not copied */

            sse->offset += n;

            if (n > sse->line_max) {
                ngx_http_conductor_sse_long_start(sse, p, n);
                ngx_http_conductor_sse_long_end(sse);

            } else {
                ngx_http_conductor_sse_line(sse, p, n);
            }

        } else {
            ngx_http_conductor_sse_append(sse, p, n);
            sse->offset += n;
            ngx_http_conductor_sse_end(sse);
        }

        p = t + 1;
        sse->offset++;

        if (*t == '\r') {
            sse->saw_cr = 1;

            if (p == end) {
                sse->cr = 1;

            } else if (*p == '\n') {
                p++;
                sse->offset++;
            }
        }

        sse->line_start = sse->offset;

        if (head && sse->data_lines) {
            return p - start;
        }
    }

    return len;
}


void
ngx_http_conductor_sse_finish(ngx_http_conductor_sse_t *sse)
{
    if (sse->tail && !sse->lazy_full) {
        ngx_http_conductor_sse_catch_up(sse);
    }

    sse->cr = 0;

    if (sse->len || sse->mode != NGX_HTTP_CONDUCTOR_SSE_NORMAL) {
        ngx_http_conductor_sse_end(sse);
    }

    sse->line_start = sse->offset;
}


void
ngx_http_conductor_sse_release(ngx_http_conductor_sse_t *sse)
{
    if (sse->buf && !sse->fixed && sse->free) {
        sse->free(sse->alloc_data, sse->buf);
    }

    sse->buf = NULL;
    sse->size = 0;
    sse->len = 0;
    sse->mode = NGX_HTTP_CONDUCTOR_SSE_NORMAL;
}


static void *
ngx_http_conductor_sse_malloc(void *data, size_t size)
{
    (void) data;

    return malloc(size);
}


static void
ngx_http_conductor_sse_mfree(void *data, void *p)
{
    (void) data;

    free(p);
}


static size_t
ngx_http_conductor_sse_limit(ngx_http_conductor_sse_t *sse)
{
    return sse->line_max > sse->usage_max ? sse->line_max : sse->usage_max;
}


static int
ngx_http_conductor_sse_reserve(ngx_http_conductor_sse_t *sse, size_t need)
{
    size_t          size, limit;
    unsigned char  *buf;

    if (need <= sse->size) {
        return 0;
    }

    /* the buffer holds a line prefix, or the captures of a long line */
    limit = ngx_http_conductor_sse_limit(sse);

    if (sse->fixed || sse->alloc == NULL || need > limit) {
        return -1;
    }

    size = sse->size ? sse->size : NGX_HTTP_CONDUCTOR_SSE_INITIAL;

    while (size < need && size <= limit / 2) {
        size *= 2;
    }

    if (size < need || size > limit) {
        size = limit;
    }

    buf = sse->alloc(sse->alloc_data, size);
    if (buf == NULL) {
        return -1;
    }

    if (sse->len) {
        memcpy(buf, sse->buf, sse->len);
    }

    if (sse->buf && sse->free) {
        sse->free(sse->alloc_data, sse->buf);
    }

    sse->buf = buf;
    sse->size = size;

    return 0;
}


/* bytes of the current line, before its terminator is seen */

static void
ngx_http_conductor_sse_append(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t n)
{
    size_t  room;

    if (n == 0) {
        return;
    }

    switch (sse->mode) {

    case NGX_HTTP_CONDUCTOR_SSE_SCAN:
        ngx_http_conductor_sse_scan_feed(&sse->scan, p, n);
        return;

    case NGX_HTTP_CONDUCTOR_SSE_SKIP:
        return;

    default:
        break;
    }

    if (n <= sse->line_max - sse->len) {
        if (ngx_http_conductor_sse_reserve(sse, sse->len + n) == 0) {
            memcpy(sse->buf + sse->len, p, n);
            sse->len += n;
            return;
        }

        /* out of memory: handled as an over-long line from here */
        room = sse->size - sse->len;

    } else {
        /* room for the captures too: the prefix must not move later */
        (void) ngx_http_conductor_sse_reserve(sse,
                                         ngx_http_conductor_sse_limit(sse));

        room = sse->line_max - sse->len;

        if (room > sse->size - sse->len) {
            room = sse->size - sse->len;
        }
    }

    if (room) {
        memcpy(sse->buf + sse->len, p, room);
        sse->len += room;
    }

    /* the prefix is scanned in place, then the buffer holds captures */
    ngx_http_conductor_sse_long_start(sse, sse->buf, sse->len);
    sse->len = 0;

    if (sse->mode == NGX_HTTP_CONDUCTOR_SSE_SCAN) {
        ngx_http_conductor_sse_scan_feed(&sse->scan, p + room, n - room);
    }
}


/* the terminator of a line begun in an earlier piece (or the body end) */

static void
ngx_http_conductor_sse_end(ngx_http_conductor_sse_t *sse)
{
    if (sse->mode == NGX_HTTP_CONDUCTOR_SSE_NORMAL) {
        ngx_http_conductor_sse_line(sse, sse->buf, sse->len);
        sse->len = 0;
        return;
    }

    ngx_http_conductor_sse_long_end(sse);
}


static void
ngx_http_conductor_sse_begin(ngx_http_conductor_sse_t *sse,
    const unsigned char **p, size_t *n)
{
    /* a UTF-8 byte order mark may open the stream (SSE spec) */
    if (sse->line_start == 0 && *n >= 3
        && (*p)[0] == 0xef && (*p)[1] == 0xbb && (*p)[2] == 0xbf)
    {
        *p += 3;
        *n -= 3;
    }

    if (*n && !sse->in_event) {
        sse->in_event = 1;
        sse->event_start = sse->line_start;
    }
}


static void
ngx_http_conductor_sse_line(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t n)
{
    size_t                name, vn;
    const unsigned char  *colon, *v;

    ngx_http_conductor_sse_begin(sse, &p, &n);

    if (n == 0) {
        /* blank line: the event is over */
        sse->event_len = 0;
        sse->in_event = 0;
        return;
    }

    if (p[0] == ':') {
        return;
    }

    colon = memchr(p, ':', n);

    if (colon) {
        name = colon - p;
        v = colon + 1;
        vn = n - name - 1;

        if (vn && *v == ' ') {
            v++;
            vn--;
        }

    } else {
        name = n;
        v = p + n;
        vn = 0;
    }

    if (name == 4 && memcmp(p, "data", 4) == 0) {
        ngx_http_conductor_sse_dispatch(sse, NGX_HTTP_CONDUCTOR_SSE_DATA,
                                        v, vn, sse->event, sse->event_len);

    } else if (name == 5 && memcmp(p, "event", 5) == 0) {
        ngx_http_conductor_sse_set_event(sse, v, vn);
    }
}


/*
 * The first bytes of a line over line_max: the whole line when it came in
 * one piece, else the line_max bytes buffered so far.  Only the field name
 * and the value are looked at, both within the first bytes, so either way
 * gives the same result.
 */

static void
ngx_http_conductor_sse_long_start(ngx_http_conductor_sse_t *sse,
    const unsigned char *p, size_t n)
{
    size_t                name, cap;
    const unsigned char  *colon, *v, *line;

    sse->overlong++;
    sse->mode = NGX_HTTP_CONDUCTOR_SSE_SKIP;

    line = p;

    ngx_http_conductor_sse_begin(sse, &p, &n);

    if (n == 0 || p[0] == ':') {
        return;
    }

    colon = memchr(p, ':', n < 6 ? n : 6);
    if (colon == NULL) {
        return;
    }

    name = colon - p;
    v = colon + 1;
    n -= name + 1;

    if (n && *v == ' ') {
        v++;
        n--;
    }

    if (name == 5 && memcmp(p, "event", 5) == 0) {
        /* as much of the name as a buffered prefix would hold */
        if ((size_t) (v - line) + n > sse->line_max) {
            n = sse->line_max - (v - line);
        }

        ngx_http_conductor_sse_set_event(sse, v, n);
        return;
    }

    if (name != 4 || memcmp(p, "data", 4) != 0) {
        return;
    }

    cap = sse->usage_max;

    /*
     * A line that came in one piece (nothing buffered) may find no buffer
     * yet; a buffered prefix was given room for this before it was copied.
     */
    if (sse->len == 0) {
        (void) ngx_http_conductor_sse_reserve(sse, cap);
    }

    if (cap > sse->size) {
        cap = sse->size;
    }

    sse->mode = NGX_HTTP_CONDUCTOR_SSE_SCAN;

    ngx_http_conductor_sse_scan_init(&sse->scan, sse->buf, cap);
    ngx_http_conductor_sse_scan_feed(&sse->scan, v, n);
}


static void
ngx_http_conductor_sse_long_end(ngx_http_conductor_sse_t *sse)
{
    size_t                             i, event_len;
    const unsigned char               *event;
    ngx_http_conductor_sse_scan_t     *scan;
    ngx_http_conductor_sse_capture_t  *c;

    scan = &sse->scan;

    if (sse->mode == NGX_HTTP_CONDUCTOR_SSE_SCAN) {

        /* without an "event:" line the data's own "type" names it */

        event = sse->event;
        event_len = sse->event_len;

        if (event_len == 0) {
            event = ngx_http_conductor_sse_scan_type(scan, &event_len);

            if (event == NULL) {
                event = sse->event;
            }
        }

        for (i = 0; i < scan->ncaptures; i++) {
            c = &scan->capture[i];
            ngx_http_conductor_sse_dispatch(sse, c->flags, scan->cap + c->off,
                                            c->len, event, event_len);
        }
    }

    sse->mode = NGX_HTTP_CONDUCTOR_SSE_NORMAL;
    sse->len = 0;
}


static void
ngx_http_conductor_sse_set_event(ngx_http_conductor_sse_t *sse,
    const unsigned char *v, size_t n)
{
    if (n > NGX_HTTP_CONDUCTOR_SSE_EVENT_MAX) {
        n = NGX_HTTP_CONDUCTOR_SSE_EVENT_MAX;
    }

    memcpy(sse->event, v, n);
    sse->event_len = n;
}


static void
ngx_http_conductor_sse_dispatch(ngx_http_conductor_sse_t *sse,
    unsigned flags, const unsigned char *data, size_t len,
    const unsigned char *event, size_t event_len)
{
    ngx_http_conductor_sse_line_t  line;

    sse->data_lines++;

    if (sse->handler == NULL) {
        return;
    }

    line.event = event;
    line.event_len = event_len;
    line.data = data;
    line.len = len;
    line.flags = flags;
    line.event_start = sse->event_start;
    line.line_start = sse->line_start;
    line.line_end = sse->offset;

    sse->handler(sse->data, &line);
}


void
ngx_http_conductor_sse_scan_init(ngx_http_conductor_sse_scan_t *scan,
    unsigned char *cap, size_t size)
{
    memset(scan, 0, sizeof(ngx_http_conductor_sse_scan_t));

    scan->cap = cap;
    scan->cap_size = cap ? size : 0;
}


void
ngx_http_conductor_sse_scan_feed(ngx_http_conductor_sse_scan_t *scan,
    const unsigned char *p, size_t len)
{
    size_t                             d;
    unsigned                           flags;
    unsigned char                      c;
    const unsigned char               *end;
    ngx_http_conductor_sse_capture_t  *rec;

    end = p + len;

    while (p < end) {

        if (scan->in_string && !scan->escape && !scan->capturing
            && scan->role == NGX_HTTP_CONDUCTOR_SSE_ROLE_NONE)
        {
            /* string contents nobody wants: skip to what may end them */
            while (p < end && *p != '"' && *p != '\\') {
                p++;
            }

            if (p == end) {
                break;
            }
        }

        c = *p++;

        if (scan->capturing && !scan->cap_full) {
            if (scan->cap_used < scan->cap_size) {
                scan->cap[scan->cap_used++] = c;

            } else {
                scan->cap_full = 1;
            }
        }

        if (scan->in_string) {

            if (scan->escape) {
                scan->escape = 0;
                continue;
            }

            d = scan->role_depth;

            if (c == '\\') {
                scan->escape = 1;

                /* escaped keys and types are not worth decoding here */

                if (scan->role == NGX_HTTP_CONDUCTOR_SSE_ROLE_KEY) {
                    scan->key_len[d] = NGX_HTTP_CONDUCTOR_SSE_KEY_BAD;

                } else if (scan->role == NGX_HTTP_CONDUCTOR_SSE_ROLE_TYPE) {
                    scan->type_ok = 0;
                }

                continue;
            }

            if (c == '"') {
                scan->in_string = 0;
                scan->role = NGX_HTTP_CONDUCTOR_SSE_ROLE_NONE;
                continue;
            }

            if (scan->role == NGX_HTTP_CONDUCTOR_SSE_ROLE_KEY) {
                if (scan->key_len[d] < NGX_HTTP_CONDUCTOR_SSE_KEY_MAX) {
                    scan->key[d][scan->key_len[d]++] = c;

                } else {
                    scan->key_len[d] = NGX_HTTP_CONDUCTOR_SSE_KEY_BAD;
                }

            } else if (scan->role == NGX_HTTP_CONDUCTOR_SSE_ROLE_TYPE
                       && scan->type_ok)
            {
                if (scan->type_len < NGX_HTTP_CONDUCTOR_SSE_TYPE_MAX) {
                    scan->type[scan->type_len++] = c;

                } else {
                    scan->type_ok = 0;
                }
            }

            continue;
        }

        d = scan->depth;

        switch (c) {

        case '"':
            scan->in_string = 1;
            scan->role = NGX_HTTP_CONDUCTOR_SSE_ROLE_NONE;

            if (d < 1 || d > 2 || scan->kind[d] != '{') {
                break;
            }

            if (scan->expect_key[d]) {
                scan->role = NGX_HTTP_CONDUCTOR_SSE_ROLE_KEY;
                scan->role_depth = d;
                scan->key_len[d] = 0;

            } else if (d == 1
                       && ngx_http_conductor_sse_key_is(scan, 1, "type", 4))
            {
                scan->role = NGX_HTTP_CONDUCTOR_SSE_ROLE_TYPE;
                scan->role_depth = 1;
                scan->type_len = 0;
                scan->type_ok = 1;
            }

            break;

        case '{':
        case '[':
            if (c == '{' && !scan->capturing
                && scan->ncaptures < NGX_HTTP_CONDUCTOR_SSE_CAPTURES)
            {
                flags = ngx_http_conductor_sse_scan_where(scan);

                if (flags) {
                    scan->capturing = 1;
                    scan->cap_flags = flags;
                    scan->cap_depth = d;
                    scan->cap_begin = scan->cap_used;

                    if (scan->cap_used < scan->cap_size) {
                        scan->cap[scan->cap_used++] = c;
                        scan->cap_full = 0;

                    } else {
                        scan->cap_full = 1;
                    }
                }
            }

            if (d == SIZE_MAX) {
                break;
            }

            d = ++scan->depth;

            if (d <= 2) {
                scan->kind[d] = c;
                scan->expect_key[d] = (c == '{');
                scan->key_len[d] = 0;
            }

            break;

        case '}':
        case ']':
            if (d) {
                d = --scan->depth;
            }

            if (scan->capturing && d == scan->cap_depth) {
                scan->capturing = 0;

                if (scan->cap_full) {
                    /* over usage_max: dropped, room for a later one */
                    scan->cap_used = scan->cap_begin;
                    break;
                }

                rec = &scan->capture[scan->ncaptures++];
                rec->flags = scan->cap_flags;
                rec->off = scan->cap_begin;
                rec->len = scan->cap_used - scan->cap_begin;
            }

            break;

        case ':':
            if (d >= 1 && d <= 2 && scan->kind[d] == '{') {
                scan->expect_key[d] = 0;
            }

            break;

        case ',':
            if (d >= 1 && d <= 2 && scan->kind[d] == '{') {
                scan->expect_key[d] = 1;
                scan->key_len[d] = 0;
            }

            break;

        default:
            break;
        }
    }
}


const unsigned char *
ngx_http_conductor_sse_scan_type(const ngx_http_conductor_sse_scan_t *scan,
    size_t *len)
{
    if (!scan->type_ok || scan->role == NGX_HTTP_CONDUCTOR_SSE_ROLE_TYPE) {
        *len = 0;
        return NULL;
    }

    *len = scan->type_len;

    return scan->type;
}


/* which usage a '{' at the current position would open, 0 if none */

static unsigned
ngx_http_conductor_sse_scan_where(ngx_http_conductor_sse_scan_t *scan)
{
    size_t  d;

    d = scan->depth;

    if (d < 1 || d > 2) {
        return 0;
    }

    if (scan->kind[d] != '{' || scan->expect_key[d]
        || !ngx_http_conductor_sse_key_is(scan, d, "usage", 5))
    {
        return 0;
    }

    if (d == 1) {
        return NGX_HTTP_CONDUCTOR_SSE_USAGE_TOP;
    }

    if (scan->kind[1] != '{' || scan->expect_key[1]) {
        return 0;
    }

    if (ngx_http_conductor_sse_key_is(scan, 1, "response", 8)) {
        return NGX_HTTP_CONDUCTOR_SSE_USAGE_RESPONSE;
    }

    if (ngx_http_conductor_sse_key_is(scan, 1, "message", 7)) {
        return NGX_HTTP_CONDUCTOR_SSE_USAGE_MESSAGE;
    }

    return 0;
}


static int
ngx_http_conductor_sse_key_is(ngx_http_conductor_sse_scan_t *scan, size_t d,
    const char *name, size_t len)
{
    return scan->key_len[d] == len && memcmp(scan->key[d], name, len) == 0;
}
