
/*
 * libFuzzer target of the non-stream usage reading.  The first byte picks
 * the API and a frame for the rest: the rest as the body, as the value of
 * a top-level "usage", before a top-level usage, or inside a member before
 * it.  Each body is read by parse_object() (from the end), parse_full()
 * and the reference (t/unit/ngx_http_conductor_usage_ref.h, the reading
 * before the fast path), fresh and merging into an Anthropic state:
 *
 *   - parse_full() always gives what the reference gives: the one-pass
 *     reader of usage objects is the look-ups it replaced, on any bytes;
 *   - parse_object() gives it too for a valid body (and for one of more
 *     members than the span scan holds, with a single "usage" in it);
 *   - parse_tail(), when it answers, gives what parse_object() gives.
 *
 * The rest alone also goes through the line handler as a captured usage
 * object, against the reference's reading of it.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* memmem */
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_conductor_json.h"
#include "ngx_http_conductor_sse.h"
#include "ngx_http_conductor_usage.h"
#include "../unit/ngx_http_conductor_usage_ref.h"


#define ngx_http_conductor_fuzz_assert(c)                                     \
    if (!(c)) {                                                               \
        fprintf(stderr, "usage_fuzz.c:%d: %s\n", __LINE__, #c);               \
        abort();                                                              \
    }


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const struct {
    const char  *head;
    const char  *tail;
} ngx_http_conductor_fuzz_frames[] = {
    { "", "" },
    { "{\"id\":\"x\",\"usage\":", "}" },
    { "{\"usage\":{\"prompt_tokens\":1,\"input_tokens\":2},", "}" },
    { "{\"a\":", ",\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}" }
};

#define NGX_HTTP_CONDUCTOR_FUZZ_FRAMES                                        \
    (sizeof(ngx_http_conductor_fuzz_frames)                                   \
     / sizeof(ngx_http_conductor_fuzz_frames[0]))


/* delta left out: a stream's, and parse_body() sets it for a body */

static int
ngx_http_conductor_fuzz_equal(const ngx_http_conductor_usage_t *a,
    const ngx_http_conductor_usage_t *b, int delta)
{
    return a->found == b->found && a->api == b->api
           && a->has_prompt == b->has_prompt && a->prompt == b->prompt
           && a->has_completion == b->has_completion
           && a->completion == b->completion
           && a->has_cached == b->has_cached && a->cached == b->cached
           && a->has_cache_creation == b->has_cache_creation
           && a->cache_creation == b->cache_creation
           && a->has_reasoning == b->has_reasoning
           && a->reasoning == b->reasoning
           && a->has_total == b->has_total && a->total == b->total
           && a->has_input == b->has_input && a->input == b->input
           && a->terminal == b->terminal
           && (!delta || a->delta == b->delta);
}


static void
ngx_http_conductor_fuzz_start(ngx_http_conductor_usage_t *u, int api,
    int prior)
{
    ngx_http_conductor_usage_init(u, api);

    if (prior) {
        u->input = 7;
        u->has_input = 1;
        u->cache_creation = 2;
        u->has_cache_creation = 1;
        u->completion = 1;
        u->has_completion = 1;
        u->prompt = 9;
        u->has_prompt = 1;
        u->total = 10;
        u->found = 1;
    }
}


/* see t/unit/usage_test.c: where parse_object() must equal parse_full() */

static int
ngx_http_conductor_fuzz_comparable(const unsigned char *p, size_t len)
{
    int                               rc;
    const unsigned char              *q;
    ngx_http_conductor_json_object_t  obj;
    ngx_http_conductor_json_member_t  m[NGX_HTTP_CONDUCTOR_REF_MEMBERS];

    rc = ngx_http_conductor_json_scan_object(p, len, &obj, m,
                                             NGX_HTTP_CONDUCTOR_REF_MEMBERS);

    if (rc == NGX_HTTP_CONDUCTOR_JSON_OK) {
        return 1;
    }

    if (rc != NGX_HTTP_CONDUCTOR_JSON_TOO_MANY) {
        return 0;
    }

    q = memmem(p, len, "usage", 5);

    return q != NULL && memmem(q + 1, len - (q + 1 - p), "usage", 5) == NULL;
}


static void
ngx_http_conductor_fuzz_body(const unsigned char *b, size_t len, int api)
{
    int                         prior, cmp, rc_ref, rc_full, rc_obj, rc_tail;
    ngx_http_conductor_usage_t  ref, full, obj, tail;

    cmp = ngx_http_conductor_fuzz_comparable(b, len);

    for (prior = 0; prior < 2; prior++) {
        ngx_http_conductor_fuzz_start(&ref, api, prior);
        full = ref;
        obj = ref;
        tail = ref;

        rc_ref = ngx_http_conductor_ref_parse_object(&ref, b, len);
        rc_full = ngx_http_conductor_usage_parse_full(&full, b, len);
        rc_obj = ngx_http_conductor_usage_parse_object(&obj, b, len);
        rc_tail = ngx_http_conductor_usage_parse_tail(&tail, b, len);

        ngx_http_conductor_fuzz_assert(rc_full == rc_ref);
        ngx_http_conductor_fuzz_assert(
            ngx_http_conductor_fuzz_equal(&full, &ref, 1));

        if (cmp) {
            ngx_http_conductor_fuzz_assert(rc_obj == rc_ref);
            ngx_http_conductor_fuzz_assert(
                ngx_http_conductor_fuzz_equal(&obj, &ref, 0));
        }

        ngx_http_conductor_fuzz_assert(rc_tail == -1 || rc_tail == 1);

        if (rc_tail == 1) {
            ngx_http_conductor_fuzz_assert(rc_obj == 1);
            ngx_http_conductor_fuzz_assert(
                ngx_http_conductor_fuzz_equal(&tail, &obj, 1));
        }
    }
}


/* the rest as a usage object the SSE parser captured */

static void
ngx_http_conductor_fuzz_object(const unsigned char *p, size_t len, int api)
{
    int                            prior, rc, rc_ref;
    ngx_http_conductor_usage_t     u, ref;
    ngx_http_conductor_sse_line_t  line;

    memset(&line, 0, sizeof(line));
    line.data = p;
    line.len = len;
    line.flags = NGX_HTTP_CONDUCTOR_SSE_USAGE_TOP;

    if (api == NGX_HTTP_CONDUCTOR_EP_MESSAGES) {
        line.event = (const unsigned char *) "message_delta";
        line.event_len = 13;

    } else if (api == NGX_HTTP_CONDUCTOR_EP_RESPONSES) {
        line.event = (const unsigned char *) "response.completed";
        line.event_len = 18;
        line.flags = NGX_HTTP_CONDUCTOR_SSE_USAGE_RESPONSE;
    }

    for (prior = 0; prior < 2; prior++) {
        ngx_http_conductor_fuzz_start(&u, api, prior);
        ref = u;

        rc = ngx_http_conductor_usage_parse_line(&u, &line);
        rc_ref = ngx_http_conductor_ref_apply_text(&ref, p, len);

        ngx_http_conductor_fuzz_assert(rc == rc_ref);
        ngx_http_conductor_fuzz_assert(
            ngx_http_conductor_fuzz_equal(&u, &ref, 0));
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int             api;
    size_t          frame, hl, tl, n;
    unsigned char  *b;

    if (size == 0) {
        return 0;
    }

    api = data[0] % NGX_HTTP_CONDUCTOR_NEPS;
    frame = (data[0] / NGX_HTTP_CONDUCTOR_NEPS)
            % NGX_HTTP_CONDUCTOR_FUZZ_FRAMES;

    data++;
    size--;

    hl = strlen(ngx_http_conductor_fuzz_frames[frame].head);
    tl = strlen(ngx_http_conductor_fuzz_frames[frame].tail);
    n = hl + size + tl;

    /* exactly the body's size: ASan sees a read past its end */

    b = malloc(n ? n : 1);
    if (b == NULL) {
        abort();
    }

    memcpy(b, ngx_http_conductor_fuzz_frames[frame].head, hl);
    memcpy(b + hl, data, size);
    memcpy(b + hl + size, ngx_http_conductor_fuzz_frames[frame].tail, tl);

    ngx_http_conductor_fuzz_body(b, n, api);

    free(b);

    ngx_http_conductor_fuzz_object(data, size, api);

    return 0;
}
