/*
 * libFuzzer target: the two stream paths that do not parse every byte.
 *
 * Strip: arbitrary bytes through ngx_http_conductor_strip_feed() cut at
 * fuzzer-chosen points must give the same output, and the same number of
 * chunks taken out, as fed whole and as a reference that works on whole
 * lines; ranges it hands out without copying must lie in the piece being
 * fed, and the output is the input with whole lines removed (never longer).
 *
 * Tail: the lazy parser (ngx_http_conductor_sse_set_tail) on the same
 * pieces must find the same end of stream as parsing every byte, and the
 * same usage when the input's last usage line ends in the tail's last half.
 *
 * Input: api, tail size selector, number of cuts, two bytes per cut, body.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_conductor_sse.h"
#include "ngx_http_conductor_strip.h"
#include "ngx_http_conductor_usage.h"


#define NGX_HTTP_CONDUCTOR_FUZZ_CUTS  16


typedef struct {
    unsigned char        *out;
    size_t                len;
    const unsigned char  *piece;
    size_t                piece_len;
} ngx_http_conductor_fuzz_sink_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const size_t  ngx_http_conductor_fuzz_tails[] = {
    64, 128, 256, 1024, 4096, 1024, 1024, 16384
};


static void
ngx_http_conductor_fuzz_emit(void *data, const unsigned char *p, size_t len,
    int own)
{
    ngx_http_conductor_fuzz_sink_t  *sink = data;

    if (!own && (p < sink->piece || p + len > sink->piece + sink->piece_len))
    {
        abort();
    }

    memcpy(sink->out + sink->len, p, len);
    sink->len += len;
}


static uint64_t
ngx_http_conductor_fuzz_strip(const unsigned char *p, size_t len,
    const size_t *cuts, size_t ncuts, unsigned char *out, size_t *out_len)
{
    size_t                           i, from, to;
    unsigned char                    held[1024];
    ngx_http_conductor_strip_t       s;
    ngx_http_conductor_fuzz_sink_t   sink;

    sink.out = out;
    sink.len = 0;

    ngx_http_conductor_strip_init(&s, held, sizeof(held),
                                  ngx_http_conductor_fuzz_emit, &sink);
    from = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : len;
        sink.piece = p + from;
        sink.piece_len = to - from;
        ngx_http_conductor_strip_feed(&s, p + from, to - from);
        from = to;
    }

    sink.piece = NULL;
    sink.piece_len = 0;
    ngx_http_conductor_strip_finish(&s, 1);

    *out_len = sink.len;

    return s.removed;
}


/* whole lines at once: a usage-only line of at most 1024 bytes goes, and
 * the blank line after it (its terminator not counted) */

static uint64_t
ngx_http_conductor_fuzz_reference(const unsigned char *p, size_t len,
    unsigned char *out, size_t *out_len)
{
    int       drop_blank;
    size_t    i, start, content;
    uint64_t  removed;

    *out_len = 0;
    drop_blank = 0;
    removed = 0;

    for (i = 0; i < len; /* void */ ) {
        start = i;

        while (i < len && p[i] != '\n' && p[i] != '\r') {
            i++;
        }

        content = i - start;

        if (i < len) {
            i += (p[i] == '\r' && i + 1 < len && p[i + 1] == '\n') ? 2 : 1;
        }

        if (content == 0 && i > start && drop_blank) {
            drop_blank = 0;
            continue;
        }

        drop_blank = 0;

        if (i > start + content && content <= 1024 - 2
            && ngx_http_conductor_strip_usage_line(p + start, content))
        {
            removed++;
            drop_blank = 1;
            continue;
        }

        memcpy(out + *out_len, p + start, i - start);
        *out_len += i - start;
    }

    return removed;
}


static void
ngx_http_conductor_fuzz_usage(int api, const unsigned char *p, size_t len,
    size_t tail, const size_t *cuts, size_t ncuts,
    ngx_http_conductor_usage_t *u)
{
    size_t                     i, from, to;
    unsigned char             *ring;
    ngx_http_conductor_sse_t   sse;

    ngx_http_conductor_usage_init(u, api);
    ngx_http_conductor_sse_init(&sse, NGX_HTTP_CONDUCTOR_SSE_LINE_MAX,
                                ngx_http_conductor_usage_sse_handler, u);
    ring = NULL;

    if (tail) {
        ring = malloc(tail);
        if (ring == NULL) {
            abort();
        }

        ngx_http_conductor_sse_set_tail(&sse, ring, tail);
    }

    from = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : len;
        ngx_http_conductor_sse_feed(&sse, p + from, to - from);
        from = to;
    }

    ngx_http_conductor_sse_finish(&sse);
    ngx_http_conductor_sse_release(&sse);
    free(ring);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                          api;
    size_t                       i, ncuts, len, tail, a_len, b_len, r_len,
                                 cuts[NGX_HTTP_CONDUCTOR_FUZZ_CUTS], c;
    uint64_t                     a_rm, b_rm, r_rm;
    unsigned char               *a, *b, *r;
    const unsigned char         *p;
    ngx_http_conductor_usage_t   full, whole, lazy;

    if (size < 3) {
        return 0;
    }

    api = NGX_HTTP_CONDUCTOR_EP_CHAT + data[0] % NGX_HTTP_CONDUCTOR_NEPS;
    tail = ngx_http_conductor_fuzz_tails[data[1] % 8];
    ncuts = data[2] % (NGX_HTTP_CONDUCTOR_FUZZ_CUTS + 1);

    if (size < 3 + 2 * ncuts) {
        return 0;
    }

    p = data + 3 + 2 * ncuts;
    len = size - 3 - 2 * ncuts;

    for (i = 0; i < ncuts; i++) {
        c = (data[3 + 2 * i] << 8 | data[4 + 2 * i]);
        cuts[i] = len ? c % (len + 1) : 0;
    }

    /* cut points in order */
    for (i = 1; i < ncuts; i++) {
        size_t  j, v = cuts[i];

        for (j = i; j > 0 && cuts[j - 1] > v; j--) {
            cuts[j] = cuts[j - 1];
        }

        cuts[j] = v;
    }

    a = malloc(len + 1);
    b = malloc(len + 1);
    r = malloc(len + 1);

    if (a == NULL || b == NULL || r == NULL) {
        abort();
    }

    a_rm = ngx_http_conductor_fuzz_strip(p, len, NULL, 0, a, &a_len);
    b_rm = ngx_http_conductor_fuzz_strip(p, len, cuts, ncuts, b, &b_len);
    r_rm = ngx_http_conductor_fuzz_reference(p, len, r, &r_len);

    if (a_len > len || a_rm != b_rm || a_len != b_len
        || memcmp(a, b, a_len) != 0 || a_rm != r_rm || a_len != r_len
        || memcmp(a, r, a_len) != 0)
    {
        abort();
    }

    free(a);
    free(b);
    free(r);

    ngx_http_conductor_fuzz_usage(api, p, len, 0, NULL, 0, &full);
    ngx_http_conductor_fuzz_usage(api, p, len, tail, NULL, 0, &whole);
    ngx_http_conductor_fuzz_usage(api, p, len, tail, cuts, ncuts, &lazy);

    /* a stream no longer than half the tail is parsed exactly, cut or not */
    if (len <= tail / 2
        && (full.found != lazy.found || full.terminal != lazy.terminal
            || full.total != lazy.total || full.prompt != lazy.prompt
            || full.completion != lazy.completion
            || full.found != whole.found || full.terminal != whole.terminal
            || full.total != whole.total))
    {
        abort();
    }

    return 0;
}
