
/*
 * The usage-only chunk taken out of a stream, by structure; see the header.
 */


#ifndef _GNU_SOURCE
#define _GNU_SOURCE         /* memrchr */
#endif

#include <string.h>

#include "ngx_http_conductor_strip.h"
#include "ngx_http_conductor_usage.h"


static const unsigned char *ngx_http_conductor_strip_eol(
    const unsigned char *p, const unsigned char *end);
static const unsigned char *ngx_http_conductor_strip_skip_eol(
    ngx_http_conductor_strip_t *s, const unsigned char *t,
    const unsigned char *end, int dropped);
static int ngx_http_conductor_strip_keep(ngx_http_conductor_strip_t *s,
    const unsigned char *line, size_t len);
static int ngx_http_conductor_strip_candidate(const unsigned char *p,
    size_t len);
static void ngx_http_conductor_strip_send(ngx_http_conductor_strip_t *s,
    const unsigned char *from, const unsigned char *to);


void
ngx_http_conductor_strip_init(ngx_http_conductor_strip_t *s,
    unsigned char *buf, size_t size, ngx_http_conductor_strip_emit_pt emit,
    void *data)
{
    memset(s, 0, sizeof(ngx_http_conductor_strip_t));

    s->held = buf;
    s->held_max = size;
    s->emit = emit;
    s->data = data;
}


void
ngx_http_conductor_strip_feed(ngx_http_conductor_strip_t *s,
    const unsigned char *p, size_t len)
{
    size_t                n;
    const unsigned char  *end, *send, *t, *next, *complete, *floor, *h, *b,
                         *ls, *lf;

    if (len == 0) {
        return;
    }

    end = p + len;
    send = p;       /* the first byte not sent or dropped yet */

    /* a CR ended the last piece: an LF here belongs to that terminator */
    if (s->cr) {
        s->cr = 0;

        if (*p == '\n') {
            p++;

            if (s->cr_dropped) {
                send = p;
            }
        }

        s->cr_dropped = 0;
    }

    if (p < end && s->long_line) {

        /* the rest of a line too long to be the chunk goes as it comes */
        t = ngx_http_conductor_strip_eol(p, end);
        if (t == NULL) {
            ngx_http_conductor_strip_send(s, send, end);
            return;
        }

        s->long_line = 0;
        p = ngx_http_conductor_strip_skip_eol(s, t, end, 0);

    } else if (p < end && s->held_len) {

        /* the line begun in an earlier piece */
        t = ngx_http_conductor_strip_eol(p, end);
        next = t ? t + 1 : end;

        if (t && *t == '\r' && next < end && *next == '\n') {
            next++;
        }

        n = next - p;

        if (s->held_len + n > s->held_max) {
            s->emit(s->data, s->held, s->held_len, 1);
            s->held_len = 0;
            s->drop_blank = 0;

            if (t == NULL) {
                s->long_line = 1;
                ngx_http_conductor_strip_send(s, send, end);
                return;
            }

            p = ngx_http_conductor_strip_skip_eol(s, t, end, 0);

        } else {
            memcpy(s->held + s->held_len, p, n);
            s->held_len += n;

            if (t == NULL) {
                return;
            }

            if (ngx_http_conductor_strip_keep(s, s->held, s->held_len)) {
                s->emit(s->data, s->held, s->held_len, 1);
                p = ngx_http_conductor_strip_skip_eol(s, t, end, 0);

            } else {
                p = ngx_http_conductor_strip_skip_eol(s, t, end, 1);
            }

            s->held_len = 0;
            send = p;
        }
    }

    /* complete lines: [p, complete); an open line after them */

    complete = p;

    if (p < end) {
        lf = memrchr(p, '\n', end - p);
        t = memrchr(lf ? lf + 1 : p, '\r', end - (lf ? lf + 1 : p));
        t = t ? t : lf;

        if (t) {
            complete = t + 1;
        }
    }

    floor = p;

    while (p < complete) {

        if (s->drop_blank) {
            s->drop_blank = 0;

            if (*p == '\r' || *p == '\n') {
                /* the blank line that ended the removed event */
                ngx_http_conductor_strip_send(s, send, p);
                next = ngx_http_conductor_strip_skip_eol(s, p, end, 1);
                p = floor = send = next;
                continue;
            }
        }

        /* the common case, a "]" after anything but "[" or a blank, stays
         * in this loop */
        for ( ;; ) {
            h = memchr(p, ']', complete - p);

            if (h == NULL || (h > floor && h[-1] != '[' && h[-1] != ' '
                              && h[-1] != '\t'))
            {
                if (h == NULL) {
                    break;
                }

                p = h + 1;
                continue;
            }

            break;
        }

        if (h == NULL) {
            break;
        }

        for (b = h; b > floor && (b[-1] == ' ' || b[-1] == '\t'); b--) {
            /* void */
        }

        if (b == floor || b[-1] != '[') {
            p = h + 1;
            continue;
        }

        /* an empty array: is its line the usage-only chunk? */

        for (ls = b; ls > floor && ls[-1] != '\n' && ls[-1] != '\r'; ls--) {
            /* void */
        }

        t = ngx_http_conductor_strip_eol(h, complete);

        if ((size_t) (t - ls) <= s->held_max - 2
            && ngx_http_conductor_strip_usage_line(ls, t - ls))
        {
            ngx_http_conductor_strip_send(s, send, ls);
            next = ngx_http_conductor_strip_skip_eol(s, t, end, 1);
            s->removed++;
            s->drop_blank = 1;
            send = next;

        } else {
            next = ngx_http_conductor_strip_skip_eol(s, t, end, 0);
        }

        p = floor = next;
    }

    if (complete == end && end[-1] == '\r' && !s->cr) {
        s->cr = 1;
        s->cr_dropped = 0;
    }

    n = end - complete;

    if (n > s->held_max) {
        s->long_line = 1;
        s->drop_blank = 0;
        ngx_http_conductor_strip_send(s, send, end);
        return;
    }

    ngx_http_conductor_strip_send(s, send, complete);

    if (n) {
        memcpy(s->held, complete, n);
        s->held_len = n;
    }
}


void
ngx_http_conductor_strip_finish(ngx_http_conductor_strip_t *s, int keep)
{
    if (s->held_len && keep) {
        s->emit(s->data, s->held, s->held_len, 1);
    }

    s->held_len = 0;
    s->long_line = 0;
    s->cr = 0;
}


int
ngx_http_conductor_strip_usage_line(const unsigned char *p, size_t len)
{
    if (len < 5 || memcmp(p, "data:", 5) != 0) {
        return 0;
    }

    p += 5;
    len -= 5;

    if (len && *p == ' ') {
        p++;
        len--;
    }

    return ngx_http_conductor_usage_only_chunk(p, len);
}


/* the first CR or LF in [p, end) */

static const unsigned char *
ngx_http_conductor_strip_eol(const unsigned char *p, const unsigned char *end)
{
    const unsigned char  *lf, *cr;

    lf = memchr(p, '\n', end - p);
    cr = memchr(p, '\r', (lf ? lf : end) - p);

    return cr ? cr : lf;
}


/*
 * Past the terminator at t (CR, LF or CR LF); a CR that ends the piece may
 * have its LF in the next one.
 */

static const unsigned char *
ngx_http_conductor_strip_skip_eol(ngx_http_conductor_strip_t *s,
    const unsigned char *t, const unsigned char *end, int dropped)
{
    if (*t == '\n') {
        return t + 1;
    }

    if (t + 1 == end) {
        s->cr = 1;
        s->cr_dropped = dropped;
        return end;
    }

    return t[1] == '\n' ? t + 2 : t + 1;
}


/* a whole line (with its terminator): 1 when it goes on */

static int
ngx_http_conductor_strip_keep(ngx_http_conductor_strip_t *s,
    const unsigned char *line, size_t len)
{
    size_t  n;

    n = len;

    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        n--;
    }

    if (n == 0) {
        if (s->drop_blank) {
            s->drop_blank = 0;
            return 0;
        }

        return 1;
    }

    s->drop_blank = 0;

    if (n > s->held_max - 2
        || !ngx_http_conductor_strip_candidate(line, n)
        || !ngx_http_conductor_strip_usage_line(line, n))
    {
        return 1;
    }

    s->removed++;
    s->drop_blank = 1;

    return 0;
}


/* "[" and "]" with only blanks between them */

static int
ngx_http_conductor_strip_candidate(const unsigned char *p, size_t len)
{
    const unsigned char  *end, *h, *b;

    end = p + len;

    for (h = p; (h = memchr(h, ']', end - h)) != NULL; h++) {

        for (b = h; b > p && (b[-1] == ' ' || b[-1] == '\t'); b--) {
            /* void */
        }

        if (b > p && b[-1] == '[') {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_conductor_strip_send(ngx_http_conductor_strip_t *s,
    const unsigned char *from, const unsigned char *to)
{
    if (to > from) {
        s->emit(s->data, from, to - from, 0);
    }
}
