/*
 * libFuzzer target: arbitrary bytes through the SSE parser with the usage
 * extractor as its handler, cut at fuzzer-chosen points.  Besides memory
 * safety (ASan/UBSan) it asserts split invariance: the handler calls, the
 * usage and the usage-only verdicts are the same fed whole, cut, one byte
 * at a time, and from a fixed buffer.  Also the body paths: jansson on the
 * whole input and the scanner over the input in pieces.
 *
 * Input: api, line_max selector, usage_max selector, number of cuts, then
 * two bytes per cut, then the body.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_conductor_sse.h"
#include "ngx_http_conductor_usage.h"


#define NGX_HTTP_CONDUCTOR_FUZZ_CUTS  16


typedef struct {
    ngx_http_conductor_usage_t  usage;
    uint64_t                    hash;
    uint64_t                    calls;
} ngx_http_conductor_fuzz_ctx_t;


typedef struct {
    size_t                      live;
    size_t                      limit;
} ngx_http_conductor_fuzz_mem_t;


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const size_t  ngx_http_conductor_fuzz_line_max[] = {
    32, 48, 100, 256, 1024, 4096, 65536, 256 * 1024
};

static const size_t  ngx_http_conductor_fuzz_usage_max[] = {
    0, 16, 64, 300, 1024, 16384, 16384, 16384
};


static uint64_t
ngx_http_conductor_fuzz_fnv(uint64_t h, const void *p, size_t len)
{
    size_t                i;
    const unsigned char  *s;

    s = p;

    for (i = 0; i < len; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }

    return h;
}


static void
ngx_http_conductor_fuzz_handler(void *data,
    const ngx_http_conductor_sse_line_t *line)
{
    int                             only;
    uint64_t                        n[5];
    ngx_http_conductor_fuzz_ctx_t  *ctx;

    ctx = data;
    ctx->calls++;

    ngx_http_conductor_usage_sse_handler(&ctx->usage, line);

    only = 0;

    if (line->flags & NGX_HTTP_CONDUCTOR_SSE_DATA) {
        only = ngx_http_conductor_usage_only_chunk(line->data, line->len);
    }

    n[0] = line->flags;
    n[1] = only;
    n[2] = line->event_start;
    n[3] = line->line_start;
    n[4] = line->line_end;

    if (line->line_start > line->line_end
        || line->event_start > line->line_start)
    {
        abort();
    }

    ctx->hash = ngx_http_conductor_fuzz_fnv(ctx->hash, n, sizeof(n));
    ctx->hash = ngx_http_conductor_fuzz_fnv(ctx->hash, &line->event_len,
                                            sizeof(size_t));
    ctx->hash = ngx_http_conductor_fuzz_fnv(ctx->hash, line->event,
                                            line->event_len);
    ctx->hash = ngx_http_conductor_fuzz_fnv(ctx->hash, &line->len,
                                            sizeof(size_t));
    ctx->hash = ngx_http_conductor_fuzz_fnv(ctx->hash, line->data,
                                            line->len);
}


static void *
ngx_http_conductor_fuzz_alloc(void *data, size_t size)
{
    size_t                         *p;
    ngx_http_conductor_fuzz_mem_t  *mem;

    mem = data;

    /* the buffer never grows past max(line_max, usage_max) */
    if (size > mem->limit) {
        abort();
    }

    p = malloc(size + sizeof(size_t));
    if (p == NULL) {
        return NULL;
    }

    p[0] = size;
    mem->live += size;

    return p + 1;
}


static void
ngx_http_conductor_fuzz_free(void *data, void *p)
{
    size_t                         *s;
    ngx_http_conductor_fuzz_mem_t  *mem;

    mem = data;
    s = (size_t *) p - 1;
    mem->live -= s[0];
    free(s);
}


static int
ngx_http_conductor_fuzz_same(const ngx_http_conductor_usage_t *a,
    const ngx_http_conductor_usage_t *b)
{
    return a->found == b->found
           && a->has_prompt == b->has_prompt && a->prompt == b->prompt
           && a->has_completion == b->has_completion
           && a->completion == b->completion
           && a->has_cached == b->has_cached && a->cached == b->cached
           && a->has_cache_creation == b->has_cache_creation
           && a->cache_creation == b->cache_creation
           && a->has_reasoning == b->has_reasoning
           && a->reasoning == b->reasoning
           && a->has_total == b->has_total && a->total == b->total;
}


static void
ngx_http_conductor_fuzz_check(const ngx_http_conductor_usage_t *u)
{
    /* counters stay in range whatever the input */
    if (u->prompt < 0 || u->completion < 0 || u->cached < 0
        || u->cache_creation < 0 || u->reasoning < 0 || u->total < 0
        || u->prompt > 4 * NGX_HTTP_CONDUCTOR_USAGE_MAX
        || u->total > 4 * NGX_HTTP_CONDUCTOR_USAGE_MAX
        || (u->found && !u->has_total && u->total
            != (u->has_prompt ? u->prompt : 0)
               + (u->has_completion ? u->completion : 0)))
    {
        abort();
    }
}


/* one run; fixed: feed from a caller buffer of exactly the limit's size */

static void
ngx_http_conductor_fuzz_run(ngx_http_conductor_fuzz_ctx_t *ctx, int api,
    const unsigned char *p, size_t len, size_t line_max, size_t usage_max,
    const size_t *cuts, size_t ncuts, int fixed)
{
    size_t                          i, from, to;
    unsigned char                  *buf;
    ngx_http_conductor_sse_t        sse;
    ngx_http_conductor_fuzz_mem_t   mem;

    memset(ctx, 0, sizeof(ngx_http_conductor_fuzz_ctx_t));
    ctx->hash = 0xcbf29ce484222325ULL;
    ngx_http_conductor_usage_init(&ctx->usage, api);

    ngx_http_conductor_sse_init(&sse, line_max,
                                ngx_http_conductor_fuzz_handler, ctx);
    sse.usage_max = usage_max;

    mem.live = 0;
    mem.limit = sse.line_max > usage_max ? sse.line_max : usage_max;
    buf = NULL;

    if (fixed) {
        buf = malloc(mem.limit);
        if (buf == NULL) {
            return;
        }

        ngx_http_conductor_sse_set_buffer(&sse, buf, mem.limit);

    } else {
        ngx_http_conductor_sse_set_allocator(&sse,
                                             ngx_http_conductor_fuzz_alloc,
                                             ngx_http_conductor_fuzz_free,
                                             &mem);
    }

    from = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : len;
        ngx_http_conductor_sse_feed(&sse, p + from, to - from);
        from = to;
    }

    ngx_http_conductor_sse_finish(&sse);

    if (sse.offset != len) {
        abort();
    }

    ngx_http_conductor_sse_release(&sse);

    if (mem.live != 0) {
        abort();
    }

    free(buf);

    ngx_http_conductor_fuzz_check(&ctx->usage);
}


static void
ngx_http_conductor_fuzz_body(int api, const unsigned char *p, size_t len,
    const size_t *cuts, size_t ncuts)
{
    size_t                         i, from, to;
    unsigned char                  cap1[512], cap2[512];
    ngx_http_conductor_usage_t     u, v;
    ngx_http_conductor_sse_scan_t  whole, split;

    ngx_http_conductor_usage_init(&u, api);
    (void) ngx_http_conductor_usage_parse_body(&u, p, len);
    ngx_http_conductor_fuzz_check(&u);

    ngx_http_conductor_sse_scan_init(&whole, cap1, sizeof(cap1));
    ngx_http_conductor_sse_scan_feed(&whole, p, len);

    ngx_http_conductor_sse_scan_init(&split, cap2, sizeof(cap2));
    from = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : len;
        ngx_http_conductor_sse_scan_feed(&split, p + from, to - from);
        from = to;
    }

    if (whole.ncaptures != split.ncaptures || whole.depth != split.depth
        || whole.cap_used != split.cap_used
        || memcmp(cap1, cap2, whole.cap_used) != 0)
    {
        abort();
    }

    for (i = 0; i < whole.ncaptures; i++) {
        if (whole.capture[i].flags != split.capture[i].flags
            || whole.capture[i].off != split.capture[i].off
            || whole.capture[i].len != split.capture[i].len)
        {
            abort();
        }
    }

    ngx_http_conductor_usage_init(&u, api);
    ngx_http_conductor_usage_init(&v, api);
    (void) ngx_http_conductor_usage_parse_scan(&u, &whole);
    (void) ngx_http_conductor_usage_parse_scan(&v, &split);

    if (!ngx_http_conductor_fuzz_same(&u, &v)) {
        abort();
    }

    ngx_http_conductor_fuzz_check(&u);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                            api;
    size_t                         i, k, t, len, ncuts, line_max, usage_max;
    size_t                         cuts[NGX_HTTP_CONDUCTOR_FUZZ_CUTS], *ones;
    const unsigned char           *p;
    ngx_http_conductor_fuzz_ctx_t  whole, cut;

    if (size < 4) {
        return 0;
    }

    api = NGX_HTTP_CONDUCTOR_EP_CHAT + data[0] % NGX_HTTP_CONDUCTOR_NEPS;
    line_max = ngx_http_conductor_fuzz_line_max[data[1] % 8];
    usage_max = ngx_http_conductor_fuzz_usage_max[data[2] % 8];
    ncuts = data[3] % (NGX_HTTP_CONDUCTOR_FUZZ_CUTS + 1);

    data += 4;
    size -= 4;

    if (size < 2 * ncuts) {
        ncuts = size / 2;
    }

    p = data + 2 * ncuts;
    len = size - 2 * ncuts;

    for (i = 0; i < ncuts; i++) {
        cuts[i] = len ? ((size_t) data[2 * i] << 8 | data[2 * i + 1])
                        % (len + 1)
                      : 0;
    }

    /* feed() wants pieces in order: sort the few cuts */

    for (i = 1; i < ncuts; i++) {
        for (k = i; k > 0 && cuts[k - 1] > cuts[k]; k--) {
            t = cuts[k];
            cuts[k] = cuts[k - 1];
            cuts[k - 1] = t;
        }
    }

    ngx_http_conductor_fuzz_run(&whole, api, p, len, line_max, usage_max,
                                NULL, 0, 0);

    ngx_http_conductor_fuzz_run(&cut, api, p, len, line_max, usage_max,
                                cuts, ncuts, 0);

    if (cut.hash != whole.hash || cut.calls != whole.calls
        || !ngx_http_conductor_fuzz_same(&cut.usage, &whole.usage))
    {
        abort();
    }

    ngx_http_conductor_fuzz_run(&cut, api, p, len, line_max, usage_max,
                                cuts, ncuts, 1);

    if (cut.hash != whole.hash
        || !ngx_http_conductor_fuzz_same(&cut.usage, &whole.usage))
    {
        abort();
    }

    if (len <= 4096) {
        ones = malloc((len + 1) * sizeof(size_t));

        if (ones) {
            for (i = 0; i < len; i++) {
                ones[i] = i + 1;
            }

            ngx_http_conductor_fuzz_run(&cut, api, p, len, line_max,
                                        usage_max, ones, len ? len - 1 : 0,
                                        0);
            free(ones);

            if (cut.hash != whole.hash
                || !ngx_http_conductor_fuzz_same(&cut.usage, &whole.usage))
            {
                abort();
            }
        }
    }

    ngx_http_conductor_fuzz_body(api, p, len, cuts, ncuts);

    return 0;
}
