/*
 * Unit tests of the usage extractor, driven through the SSE parser with
 * real-shaped provider responses from t/unit/fixtures.  TAP output; run
 * from the repository root.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* memmem */
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_http_conductor_json.h"
#include "ngx_http_conductor_sse.h"
#include "ngx_http_conductor_usage.h"
#include "ngx_http_conductor_usage_ref.h"


#define NGX_HTTP_CONDUCTOR_TEST_DIR  "t/unit/fixtures/"
#define NGX_HTTP_CONDUCTOR_TEST_NO   (-1)


typedef struct {
    const char  *file;
    int          api;
    int          stream;
    int64_t      prompt;
    int64_t      completion;
    int64_t      cached;
    int64_t      cache_creation;
    int64_t      reasoning;
    int64_t      total;
    int          total_sent;
    int          fallback;      /* the over-long path finds it too */
} ngx_http_conductor_test_case_t;


typedef struct {
    char    *p;
    size_t   len;
} ngx_http_conductor_test_file_t;


static int     ngx_http_conductor_test_n;
static int     ngx_http_conductor_test_failed;
static size_t  ngx_http_conductor_test_json_allocs;


static ngx_http_conductor_test_case_t  ngx_http_conductor_test_cases[] = {

    { "openai_chat.json", NGX_HTTP_CONDUCTOR_EP_CHAT, 0,
      /* prompt, completion */ 1117, 250,
      /* cached */ 1024,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ 192,
      /* total, sent, fallback */ 1367, 1, 1 },

    { "openai_chat_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, 1,
      /* prompt, completion */ 19, 10,
      /* cached */ 0,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ 0,
      /* total, sent, fallback */ 29, 1, 1 },

    { "vllm_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, 1,
      /* prompt, completion */ 12, 8,
      /* cached */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* total, sent, fallback */ 20, 1, 1 },

    { "cerebras_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, 1,
      /* prompt, completion */ 38, 12,
      /* cached */ 0,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* total, sent, fallback */ 50, 1, 1 },

    { "together_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, 1,
      /* prompt, completion */ 41, 5,
      /* cached */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* total, sent, fallback */ 46, 1, 1 },

    { "moonshot_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, 1,
      /* prompt, completion */ 19, 13,
      /* cached */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* total, sent, fallback */ 32, 1, 0 },

    { "crlf_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, 1,
      /* prompt, completion */ 31, 2,
      /* cached */ 16,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* total, sent, fallback */ 33, 1, 1 },

    { "cr_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, 1,
      /* prompt, completion */ 31, 2,
      /* cached */ 16,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* total, sent, fallback */ 33, 1, 1 },

    { "openai_completions.json", NGX_HTTP_CONDUCTOR_EP_COMPLETIONS, 0,
      /* prompt, completion */ 5, 7,
      /* cached */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* total, sent, fallback */ 12, 1, 1 },

    { "openai_completions_stream.sse", NGX_HTTP_CONDUCTOR_EP_COMPLETIONS, 1,
      /* prompt, completion */ 5, 7,
      /* cached */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* total, sent, fallback */ 12, 1, 1 },

    { "openai_embeddings.json", NGX_HTTP_CONDUCTOR_EP_EMBEDDINGS, 0,
      /* prompt, completion */ 8, NGX_HTTP_CONDUCTOR_TEST_NO,
      /* cached */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* total, sent, fallback */ 8, 1, 1 },

    { "openai_responses.json", NGX_HTTP_CONDUCTOR_EP_RESPONSES, 0,
      /* prompt, completion */ 328, 52,
      /* cached */ 128,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ 20,
      /* total, sent, fallback */ 380, 1, 1 },

    { "openai_responses_stream.sse", NGX_HTTP_CONDUCTOR_EP_RESPONSES, 1,
      /* prompt, completion */ 36, 87,
      /* cached */ 12,
      /* cache_creation */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* reasoning */ 64,
      /* total, sent, fallback */ 123, 1, 1 },

    { "anthropic.json", NGX_HTTP_CONDUCTOR_EP_MESSAGES, 0,
      /* prompt, completion */ 21 + 0 + 188086, 393,
      /* cached */ 0,
      /* cache_creation */ 188086,
      /* reasoning */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* total, sent, fallback */ 188500, 0, 1 },

    { "anthropic_stream.sse", NGX_HTTP_CONDUCTOR_EP_MESSAGES, 1,
      /* prompt, completion */ 1310 + 2048 + 512, 89,
      /* cached */ 2048,
      /* cache_creation */ 512,
      /* reasoning */ NGX_HTTP_CONDUCTOR_TEST_NO,
      /* total, sent, fallback */ 3870 + 89, 0, 1 },

    { NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
};


static void
ngx_http_conductor_test_ok(int cond, const char *desc)
{
    ngx_http_conductor_test_n++;

    if (!cond) {
        ngx_http_conductor_test_failed++;
    }

    printf("%sok %d - %s\n", cond ? "" : "not ", ngx_http_conductor_test_n,
           desc);
}


static void *
ngx_http_conductor_test_json_malloc(size_t size)
{
    ngx_http_conductor_test_json_allocs++;

    return malloc(size);
}


static void
ngx_http_conductor_test_json_free(void *p)
{
    free(p);
}


static ngx_http_conductor_test_file_t
ngx_http_conductor_test_read(const char *name)
{
    long                            n;
    FILE                           *f;
    char                            path[256];
    ngx_http_conductor_test_file_t  file;

    snprintf(path, sizeof(path), "%s%s", NGX_HTTP_CONDUCTOR_TEST_DIR, name);

    f = fopen(path, "rb");
    if (f == NULL) {
        printf("Bail out! cannot open %s (run from the repository root)\n",
               path);
        exit(1);
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);

    file.p = malloc(n + 1);
    if (file.p == NULL || fread(file.p, 1, n, f) != (size_t) n) {
        printf("Bail out! cannot read %s\n", path);
        exit(1);
    }

    file.p[n] = '\0';
    file.len = n;
    fclose(f);

    return file;
}


static int
ngx_http_conductor_test_same(const ngx_http_conductor_usage_t *a,
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


static int
ngx_http_conductor_test_field(int has, int64_t v, int64_t expect)
{
    if (expect == NGX_HTTP_CONDUCTOR_TEST_NO) {
        return !has;
    }

    return has && v == expect;
}


static int
ngx_http_conductor_test_expect(const ngx_http_conductor_usage_t *u,
    const ngx_http_conductor_test_case_t *t)
{
    int  ok;

    ok = u->found
         && ngx_http_conductor_test_field(u->has_prompt, u->prompt, t->prompt)
         && ngx_http_conductor_test_field(u->has_completion, u->completion,
                                          t->completion)
         && ngx_http_conductor_test_field(u->has_cached, u->cached, t->cached)
         && ngx_http_conductor_test_field(u->has_cache_creation,
                                          u->cache_creation,
                                          t->cache_creation)
         && ngx_http_conductor_test_field(u->has_reasoning, u->reasoning,
                                          t->reasoning)
         && u->total == t->total && u->has_total == (unsigned) t->total_sent;

    if (!ok) {
        printf("# %s: found %d prompt %d:%lld completion %d:%lld "
               "cached %d:%lld creation %d:%lld reasoning %d:%lld "
               "total %d:%lld\n", t->file, u->found,
               u->has_prompt, (long long) u->prompt,
               u->has_completion, (long long) u->completion,
               u->has_cached, (long long) u->cached,
               u->has_cache_creation, (long long) u->cache_creation,
               u->has_reasoning, (long long) u->reasoning,
               u->has_total, (long long) u->total);
    }

    return ok;
}


/* the stream cut at the given points, through the parser, into usage */

static void
ngx_http_conductor_test_stream(ngx_http_conductor_usage_t *u, int api,
    const char *p, size_t len, size_t line_max, const size_t *cuts,
    size_t ncuts, uint64_t *overlong)
{
    size_t                    i, from, to;
    ngx_http_conductor_sse_t  sse;

    ngx_http_conductor_usage_init(u, api);
    ngx_http_conductor_sse_init(&sse, line_max,
                                ngx_http_conductor_usage_sse_handler, u);
    from = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : len;
        ngx_http_conductor_sse_feed(&sse, (const unsigned char *) p + from,
                                    to - from);
        from = to;
    }

    ngx_http_conductor_sse_finish(&sse);
    ngx_http_conductor_sse_release(&sse);

    if (overlong) {
        *overlong = sse.overlong;
    }
}


/*
 * The key property: fed whole, in two pieces at every byte boundary, and
 * one byte at a time, a stream gives the same usage.
 */

static int
ngx_http_conductor_test_splits(int api, const char *p, size_t len,
    size_t line_max, size_t step, const ngx_http_conductor_usage_t *expect)
{
    size_t                      i, *cuts;
    ngx_http_conductor_usage_t  u;

    for (i = 0; i <= len; i += step) {
        ngx_http_conductor_test_stream(&u, api, p, len, line_max, &i, 1,
                                       NULL);

        if (!ngx_http_conductor_test_same(&u, expect)) {
            printf("# split at %zu differs\n", i);
            return 0;
        }
    }

    cuts = malloc((len + 1) * sizeof(size_t));
    if (cuts == NULL) {
        abort();
    }

    for (i = 0; i < len; i++) {
        cuts[i] = i + 1;
    }

    ngx_http_conductor_test_stream(&u, api, p, len, line_max, cuts,
                                   len ? len - 1 : 0, NULL);
    free(cuts);

    if (!ngx_http_conductor_test_same(&u, expect)) {
        printf("# one byte at a time differs\n");
        return 0;
    }

    return 1;
}


/* a non-stream body through the scanner, cut in two at every byte */

static int
ngx_http_conductor_test_scan_body(int api, const char *p, size_t len,
    const ngx_http_conductor_usage_t *expect)
{
    size_t                         i;
    unsigned char                  cap[NGX_HTTP_CONDUCTOR_SSE_USAGE_MAX];
    ngx_http_conductor_sse_scan_t  scan;
    ngx_http_conductor_usage_t     u;

    for (i = 0; i <= len; i++) {
        ngx_http_conductor_usage_init(&u, api);
        ngx_http_conductor_sse_scan_init(&scan, cap, sizeof(cap));
        ngx_http_conductor_sse_scan_feed(&scan, (const unsigned char *) p, i);
        ngx_http_conductor_sse_scan_feed(&scan, (const unsigned char *) p + i,
                                         len - i);
        (void) ngx_http_conductor_usage_parse_scan(&u, &scan);

        if (!ngx_http_conductor_test_same(&u, expect)) {
            printf("# scan split at %zu differs\n", i);
            return 0;
        }
    }

    return 1;
}


static void
ngx_http_conductor_test_fixtures(void)
{
    int                              ok;
    char                             desc[160];
    uint64_t                         overlong;
    ngx_http_conductor_test_file_t   f;
    ngx_http_conductor_usage_t       u, small;
    ngx_http_conductor_test_case_t  *t;

    for (t = ngx_http_conductor_test_cases; t->file; t++) {
        f = ngx_http_conductor_test_read(t->file);

        if (!t->stream) {
            ngx_http_conductor_usage_init(&u, t->api);
            ok = ngx_http_conductor_usage_parse_body(&u,
                     (const unsigned char *) f.p, f.len) == 1
                 && ngx_http_conductor_test_expect(&u, t);
            snprintf(desc, sizeof(desc), "%s: body usage", t->file);
            ngx_http_conductor_test_ok(ok, desc);

            ngx_http_conductor_usage_init(&small, t->api);
            ok = ngx_http_conductor_usage_parse_object(&small,
                     (const unsigned char *) f.p, f.len) == 1
                 && ngx_http_conductor_test_expect(&small, t);
            snprintf(desc, sizeof(desc), "%s: body read in place", t->file);
            ngx_http_conductor_test_ok(ok, desc);

            snprintf(desc, sizeof(desc), "%s: scanned body in two pieces, "
                     "every split, same usage", t->file);
            ngx_http_conductor_test_ok(ngx_http_conductor_test_scan_body(
                                           t->api, f.p, f.len, &u), desc);
            free(f.p);
            continue;
        }

        ngx_http_conductor_test_stream(&u, t->api, f.p, f.len,
                                       NGX_HTTP_CONDUCTOR_SSE_LINE_MAX, NULL,
                                       0, &overlong);
        snprintf(desc, sizeof(desc), "%s: stream usage", t->file);
        ngx_http_conductor_test_ok(ngx_http_conductor_test_expect(&u, t)
                                   && overlong == 0, desc);

        snprintf(desc, sizeof(desc), "%s: every two-piece split and one "
                 "byte at a time give the same usage", t->file);
        ngx_http_conductor_test_ok(ngx_http_conductor_test_splits(t->api,
                                       f.p, f.len,
                                       NGX_HTTP_CONDUCTOR_SSE_LINE_MAX, 1,
                                       &u), desc);

        /* line_max at its minimum: every data line takes the fallback */

        ngx_http_conductor_test_stream(&small, t->api, f.p, f.len, 32, NULL,
                                       0, &overlong);

        if (t->fallback) {
            snprintf(desc, sizeof(desc), "%s: all lines over-long, same "
                     "usage through the fallback, every split", t->file);
            ok = ngx_http_conductor_test_same(&small, &u) && overlong > 0
                 && ngx_http_conductor_test_splits(t->api, f.p, f.len, 32, 1,
                                                   &small);

        } else {
            snprintf(desc, sizeof(desc), "%s: all lines over-long: "
                     "choices[0].usage not found (documented)", t->file);
            ok = !small.found;
        }

        ngx_http_conductor_test_ok(ok, desc);

        free(f.p);
    }
}


/* the Responses stream with a 300 KB response.completed line */

static char *
ngx_http_conductor_test_big_responses(int with_event, size_t *len)
{
    char    *s, *q;
    size_t   i, pad;

    pad = 300 * 1024;

    s = malloc(pad + 4096);
    if (s == NULL) {
        abort();
    }

    q = s;
    q += sprintf(q, "event: response.created\n"
        "data: {\"type\":\"response.created\",\"sequence_number\":0,"
        "\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\","
        "\"output\":[],\"usage\":null}}\n\n");

    if (with_event) {
        q += sprintf(q, "event: response.completed\n");
    }

    q += sprintf(q, "data: {\"type\":\"response.completed\","
        "\"sequence_number\":9,\"response\":{\"id\":\"resp_1\","
        "\"object\":\"response\",\"status\":\"completed\",\"output\":["
        "{\"id\":\"rs_1\",\"type\":\"reasoning\",\"summary\":[]},"
        "{\"id\":\"ws_2\",\"type\":\"web_search_call\"},"
        "{\"id\":\"fc_3\",\"type\":\"function_call\","
        "\"arguments\":\"{\\\"usage\\\":{\\\"input_tokens\\\":1}}\"},"
        "{\"id\":\"mcp_4\",\"type\":\"mcp_call\",\"usage\":"
        "{\"input_tokens\":5000,\"output_tokens\":4000,"
        "\"total_tokens\":9000}},"
        "{\"id\":\"msg_5\",\"type\":\"message\",\"role\":\"assistant\","
        "\"content\":[{\"type\":\"output_text\",\"annotations\":[],"
        "\"text\":\"");

    /* text with escapes and braces, as generated code would have */

    for (i = 0; i < pad; i += 20) {
        memcpy(q, "a {\\\"b\\\": [1]} \\n\\\\ ", 20);
        q += 20;
    }

    q += sprintf(q, "\"}]}],\"usage\":{\"input_tokens\":36,"
        "\"input_tokens_details\":{\"cached_tokens\":12},"
        "\"output_tokens\":87,"
        "\"output_tokens_details\":{\"reasoning_tokens\":64},"
        "\"total_tokens\":123},\"user\":null,\"metadata\":{}}}\n\n");

    *len = q - s;

    return s;
}


static void
ngx_http_conductor_test_big(void)
{
    int                              ok, e;
    char                            *s;
    size_t                           len;
    uint64_t                         overlong;
    ngx_http_conductor_usage_t       u, full;
    ngx_http_conductor_test_case_t   t = {
        "response.completed 300 KB", NGX_HTTP_CONDUCTOR_EP_RESPONSES, 1,
        36, 87, 12, NGX_HTTP_CONDUCTOR_TEST_NO, 64, 123, 1, 1
    };

    for (e = 1; e >= 0; e--) {
        s = ngx_http_conductor_test_big_responses(e, &len);

        ngx_http_conductor_test_stream(&u, t.api, s, len,
                                       NGX_HTTP_CONDUCTOR_SSE_LINE_MAX, NULL,
                                       0, &overlong);
        ngx_http_conductor_test_ok(ngx_http_conductor_test_expect(&u, &t)
                                   && overlong == 1 && len > 300 * 1024,
                                   e ? "300 KB response.completed: usage "
                                       "through the fallback, tool usage "
                                       "not taken"
                                     : "300 KB line without event line: "
                                       "named by its type");

        /* a cap the line fits under: jansson on the whole line agrees */

        ngx_http_conductor_test_stream(&full, t.api, s, len, 1024 * 1024,
                                       NULL, 0, &overlong);
        ngx_http_conductor_test_ok(ngx_http_conductor_test_same(&full, &u)
                                   && overlong == 0,
                                   "300 KB line parsed whole: same usage");

        ok = ngx_http_conductor_test_splits(t.api, s, len,
                                            NGX_HTTP_CONDUCTOR_SSE_LINE_MAX,
                                            997, &u);
        ngx_http_conductor_test_ok(ok, "300 KB: split every 997th byte and "
                                   "one byte at a time, same usage");
        free(s);
    }
}


static ngx_http_conductor_usage_t
ngx_http_conductor_test_lines(int api, const char *s)
{
    ngx_http_conductor_sse_t    sse;
    ngx_http_conductor_usage_t  u;

    ngx_http_conductor_usage_init(&u, api);
    ngx_http_conductor_sse_init(&sse, 4096,
                                ngx_http_conductor_usage_sse_handler, &u);
    ngx_http_conductor_sse_feed(&sse, (const unsigned char *) s, strlen(s));
    ngx_http_conductor_sse_finish(&sse);
    ngx_http_conductor_sse_release(&sse);

    return u;
}


static void
ngx_http_conductor_test_rules(void)
{
    int                              ok;
    char                            *s, *q, *p, *nl;
    size_t                           n;
    ngx_http_conductor_test_file_t   f;
    ngx_http_conductor_usage_t       u, v;

    u = ngx_http_conductor_test_lines(NGX_HTTP_CONDUCTOR_EP_CHAT,
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,"
        "\"completion_tokens\":6,\"total_tokens\":10}}\n\n"
        "data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n"
        "data: {\"choices\":[{\"delta\":{}}],\"usage\":{}}\n\n");
    ngx_http_conductor_test_ok(u.found && u.prompt == 4 && u.total == 10,
                               "usage null and empty usage do not replace");

    u = ngx_http_conductor_test_lines(NGX_HTTP_CONDUCTOR_EP_CHAT,
        "data: {\"usage\":{\"prompt_tokens\":-5,\"completion_tokens\":2.5,"
        "\"total_tokens\":7,\"prompt_tokens_details\":"
        "{\"cached_tokens\":\"3\"}}}\n\n");
    ngx_http_conductor_test_ok(u.found && !u.has_prompt && !u.has_completion
                               && !u.has_cached && u.has_total
                               && u.total == 7,
                               "negative, fractional, string counts ignored");

    u = ngx_http_conductor_test_lines(NGX_HTTP_CONDUCTOR_EP_CHAT,
        "data: {\"usage\":{\"prompt_tokens\":2000000000000,"
        "\"completion_tokens\":3}}\n\n"
        "data: {\"usage\":{\"prompt_tokens\":99999999999999999999999,"
        "\"completion_tokens\":4}}\n\n");
    /* valid JSON either way: only the field out of range is ignored */
    ngx_http_conductor_test_ok(u.found && !u.has_prompt && u.completion == 4
                               && u.total == 4,
                               "counts over the cap or int64 ignored");

    u = ngx_http_conductor_test_lines(NGX_HTTP_CONDUCTOR_EP_CHAT,
        "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n"
        "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2\n"
        "data: [DONE]\n\n");
    ngx_http_conductor_test_ok(u.found && u.total == 3 && !u.has_total,
                               "malformed JSON skipped; total computed");

    u = ngx_http_conductor_test_lines(NGX_HTTP_CONDUCTOR_EP_RESPONSES,
        "event: response.in_progress\n"
        "data: {\"type\":\"response.in_progress\",\"response\":"
        "{\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n"
        "event: response.output_item.done\n"
        "data: {\"type\":\"response.output_item.done\",\"item\":"
        "{\"usage\":{\"input_tokens\":2}},\"usage\":{\"input_tokens\":2}}\n\n"
        "data: {\"type\":\"response.output_item.done\","
        "\"usage\":{\"input_tokens\":3}}\n\n");
    ngx_http_conductor_test_ok(!u.found, "Responses: usage of other events "
                               "never taken");

    u = ngx_http_conductor_test_lines(NGX_HTTP_CONDUCTOR_EP_RESPONSES,
        "event: response.incomplete\n"
        "data: {\"type\":\"response.incomplete\",\"response\":"
        "{\"usage\":{\"input_tokens\":5,\"output_tokens\":6,"
        "\"total_tokens\":11}}}\n\n");
    v = ngx_http_conductor_test_lines(NGX_HTTP_CONDUCTOR_EP_RESPONSES,
        "data: {\"type\":\"response.failed\",\"response\":"
        "{\"usage\":{\"input_tokens\":5,\"output_tokens\":6,"
        "\"total_tokens\":11}}}\n\n");
    ngx_http_conductor_test_ok(u.found && u.prompt == 5 && u.total == 11
                               && ngx_http_conductor_test_same(&u, &v),
                               "Responses: incomplete and failed (by type) "
                               "taken");

    u = ngx_http_conductor_test_lines(NGX_HTTP_CONDUCTOR_EP_MESSAGES,
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"usage\":"
        "{\"input_tokens\":10,\"output_tokens\":1}}}\n\n"
        "event: content_block_delta\n"
        "data: {\"type\":\"content_block_delta\",\"usage\":"
        "{\"output_tokens\":999}}\n\n"
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":null,"
        "\"output_tokens\":20}}\n\n");
    ngx_http_conductor_test_ok(u.found && u.prompt == 10
                               && u.completion == 20 && u.total == 30
                               && !u.has_cached,
                               "Anthropic: null keeps the value, other "
                               "events ignored");

    /* the Anthropic fixture without its event lines: named by type */

    f = ngx_http_conductor_test_read("anthropic_stream.sse");
    s = malloc(f.len + 1);

    if (s == NULL) {
        abort();
    }

    p = f.p;
    q = s;

    while (*p) {
        nl = strchr(p, '\n');
        n = nl ? (size_t) (nl - p + 1) : strlen(p);

        if (strncmp(p, "event:", 6) != 0) {
            memcpy(q, p, n);
            q += n;
        }

        p += n;
    }

    ngx_http_conductor_test_stream(&u, NGX_HTTP_CONDUCTOR_EP_MESSAGES,
                                   s, q - s, 4096, NULL, 0, NULL);
    ngx_http_conductor_test_stream(&v, NGX_HTTP_CONDUCTOR_EP_MESSAGES,
                                   f.p, f.len, 4096, NULL, 0, NULL);
    ok = ngx_http_conductor_test_same(&u, &v) && u.completion == 89;
    ngx_http_conductor_test_stream(&u, NGX_HTTP_CONDUCTOR_EP_MESSAGES,
                                   s, q - s, 32, NULL, 0, NULL);
    ok = ok && ngx_http_conductor_test_same(&u, &v);
    ngx_http_conductor_test_ok(ok, "Anthropic stream without event lines: "
                               "same usage, also through the fallback");
    free(s);
    free(f.p);

    /* error bodies and non-JSON */

    ngx_http_conductor_usage_init(&u, NGX_HTTP_CONDUCTOR_EP_CHAT);
    ok = ngx_http_conductor_usage_parse_body(&u, (const unsigned char *)
             "{\"error\":{\"message\":\"Rate limit\",\"type\":\"requests\"}}",
             52) == 0;
    ok = ok && ngx_http_conductor_usage_parse_body(&u,
             (const unsigned char *) "<html>502</html>", 16) == 0;
    ok = ok && ngx_http_conductor_usage_parse_body(&u,
             (const unsigned char *) "[{\"usage\":{\"prompt_tokens\":1}}]",
             31) == 0;
    ngx_http_conductor_test_ok(ok && !u.found, "error, HTML and array "
                               "bodies: no usage");

    f = ngx_http_conductor_test_read("openai_responses_nested_only.json");
    ngx_http_conductor_usage_init(&u, NGX_HTTP_CONDUCTOR_EP_RESPONSES);
    ok = ngx_http_conductor_usage_parse_body(&u, (const unsigned char *) f.p,
                                             f.len) == 0;
    ngx_http_conductor_test_ok(ok && !u.found, "Responses body with only a "
                               "tool's nested usage: no usage");
    ok = ngx_http_conductor_test_scan_body(NGX_HTTP_CONDUCTOR_EP_RESPONSES,
                                           f.p, f.len, &u);
    ngx_http_conductor_test_ok(ok, "... and the scanner agrees");
    free(f.p);
}


static void
ngx_http_conductor_test_hot_path(void)
{
    size_t                      before;
    ngx_http_conductor_usage_t  u;

    before = ngx_http_conductor_test_json_allocs;

    u = ngx_http_conductor_test_lines(NGX_HTTP_CONDUCTOR_EP_CHAT,
        "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":"
        "\"\\\"usage\\\": {\"}}],\"usage\":null}\n\n"
        "data: {\"id\":\"c\",\"choices\":[{\"delta\":{}}],"
        "\"usage\" : null}\n\n"
        "data: [DONE]\n\n");
    u = ngx_http_conductor_test_lines(NGX_HTTP_CONDUCTOR_EP_MESSAGES,
        "event: content_block_delta\n"
        "data: {\"type\":\"content_block_delta\",\"usage\":{\"x\":1}}\n\n"
        "event: ping\ndata: {\"type\": \"ping\"}\n\n");
    u = ngx_http_conductor_test_lines(NGX_HTTP_CONDUCTOR_EP_RESPONSES,
        "event: response.output_text.delta\n"
        "data: {\"type\":\"response.output_text.delta\",\"usage\":{}}\n\n");

    ngx_http_conductor_test_ok(ngx_http_conductor_test_json_allocs == before
                               && !u.found,
                               "hot path: lines without usage never reach "
                               "jansson");
}


static void
ngx_http_conductor_test_only_chunk(void)
{
    size_t        i;
    const char   *s;
    static const char  *yes[] = {
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
        "\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],"
        "\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,"
        "\"total_tokens\":29}}",
        "{ \"choices\" : [ \n ] , \"usage\" : { \"prompt_tokens\" : 1 } }",
        "{\"usage\":{\"prompt_tokens\":5},\"choices\":[],"
        "\"object\":\"text_completion\"}",
        NULL
    };
    static const char  *no[] = {
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],"
        "\"usage\":null}",
        "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":38,\"completion_tokens\":12},"
        "\"time_info\":{\"queue_time\":0.1}}",
        "{\"choices\":[{\"text\":\"!\",\"delta\":{\"content\":\"!\"},"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":41}}",
        "{\"choices\":[{\"delta\":{},\"usage\":{\"prompt_tokens\":19}}]}",
        "{\"choices\":[],\"usage\":null}",
        "{\"choices\":[],\"prompt_filter_results\":[]}",
        "{\"choices\":[],\"choices\":[{\"delta\":{\"content\":\"x\"}}],"
        "\"usage\":{\"prompt_tokens\":1}}",
        "{\"choices\":[{\"delta\":{\"content\":\"\\\"choices\\\":[]\"}}],"
        "\"usage\":{\"prompt_tokens\":1}}",
        "{\"x\":\"\\\"choices\":[],\"choices\":[{\"delta\":{}}],"
        "\"usage\":{}}",
        "{\"choices\":[],\"usage\":{\"prompt_tokens\":1}",
        "{\"choices\":{},\"usage\":{}}",
        "[DONE]",
        "",
        NULL
    };

    for (i = 0; yes[i]; i++) {
        s = yes[i];
        ngx_http_conductor_test_ok(ngx_http_conductor_usage_only_chunk(
                                       (const unsigned char *) s,
                                       strlen(s)) == 1,
                                   "usage-only chunk recognised");
    }

    for (i = 0; no[i]; i++) {
        s = no[i];
        ngx_http_conductor_test_ok(ngx_http_conductor_usage_only_chunk(
                                       (const unsigned char *) s,
                                       strlen(s)) == 0,
                                   "not a usage-only chunk");
    }
}


/*
 * Every field, the private ones too (a merge depends on them); delta only
 * when asked: it is for streams, and a body read by parse_body() sets it.
 */

static int
ngx_http_conductor_test_equal(const ngx_http_conductor_usage_t *a,
    const ngx_http_conductor_usage_t *b, int delta)
{
    return ngx_http_conductor_test_same(a, b)
           && a->has_input == b->has_input && a->input == b->input
           && a->api == b->api && a->terminal == b->terminal
           && (!delta || a->delta == b->delta);
}


/*
 * Where parse_object() must give what parse_full() gives: a valid body,
 * or one of more members than the span scan has room for (parse_body()
 * then) with one "usage" in it, so that the scanner's way with duplicates
 * does not come in.
 */

static int
ngx_http_conductor_test_comparable(const unsigned char *p, size_t len)
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


/* an Anthropic state to merge into, as after message_start */

static void
ngx_http_conductor_test_prior(ngx_http_conductor_usage_t *u, int api)
{
    ngx_http_conductor_usage_init(u, api);

    if (api == NGX_HTTP_CONDUCTOR_EP_MESSAGES) {
        u->input = 7;
        u->has_input = 1;
        u->cached = 3;
        u->has_cached = 1;
        u->completion = 1;
        u->has_completion = 1;
        u->prompt = 10;
        u->has_prompt = 1;
        u->total = 11;
        u->found = 1;
    }
}


/*
 * parse_full() and the reference (the reading before the fast path) agree
 * on the body, for every API, fresh and merging, and so does
 * parse_object() where it must; sets *tail to the fast path's own answer
 * for the chat API (-1: it declined).
 */

static int
ngx_http_conductor_test_agree(const char *p, size_t len, int *tail)
{
    int                         api, prior, rc_ref, rc_full, rc_obj, rc_tail,
                                cmp;
    unsigned char              *b;
    ngx_http_conductor_usage_t  ref, full, obj, fast;

    /* a copy of the exact size: ASan sees a read past the end */

    b = malloc(len ? len : 1);
    if (b == NULL) {
        abort();
    }

    memcpy(b, p, len);

    cmp = ngx_http_conductor_test_comparable(b, len);

    for (api = 0; api < NGX_HTTP_CONDUCTOR_NEPS; api++) {
        for (prior = 0; prior < 2; prior++) {
            if (prior) {
                ngx_http_conductor_test_prior(&ref, api);

            } else {
                ngx_http_conductor_usage_init(&ref, api);
            }

            full = ref;
            obj = ref;
            fast = ref;

            rc_ref = ngx_http_conductor_ref_parse_object(&ref, b, len);
            rc_full = ngx_http_conductor_usage_parse_full(&full, b, len);
            rc_obj = ngx_http_conductor_usage_parse_object(&obj, b, len);
            rc_tail = ngx_http_conductor_usage_parse_tail(&fast, b, len);

            if (rc_ref != rc_full
                || !ngx_http_conductor_test_equal(&ref, &full, 1)
                || (cmp && (rc_ref != rc_obj
                            || !ngx_http_conductor_test_equal(&ref, &obj, 0)))
                || (rc_tail >= 0 && (rc_tail != rc_obj
                    || !ngx_http_conductor_test_equal(&fast, &obj, 1))))
            {
                printf("# api %d%s: ref %d full %d object %d tail %d "
                       "(prompt %lld/%lld/%lld) in %.*s\n", api,
                       prior ? " merged" : "", rc_ref, rc_full, rc_obj,
                       rc_tail, (long long) ref.prompt,
                       (long long) full.prompt, (long long) obj.prompt,
                       (int) (len < 200 ? len : 200), p);
                free(b);
                return 0;
            }

            if (api == NGX_HTTP_CONDUCTOR_EP_CHAT && !prior && tail) {
                *tail = rc_tail;
            }
        }
    }

    free(b);

    return 1;
}


/* s with every "\n" made "\r\n" */

static char *
ngx_http_conductor_test_crlf(const char *s, size_t len, size_t *out)
{
    size_t  i, n;
    char   *d;

    d = malloc(2 * len + 1);
    if (d == NULL) {
        abort();
    }

    for (i = 0, n = 0; i < len; i++) {
        if (s[i] == '\n') {
            d[n++] = '\r';
        }

        d[n++] = s[i];
    }

    *out = n;

    return d;
}


static void
ngx_http_conductor_test_fast_fixtures(void)
{
    int                              ok, tail, all;
    char                            *s, desc[160];
    size_t                           i, n, taken;
    json_t                          *root;
    ngx_http_conductor_test_file_t   f;
    ngx_http_conductor_test_case_t  *t;

    for (t = ngx_http_conductor_test_cases; t->file; t++) {
        if (t->stream) {
            continue;
        }

        f = ngx_http_conductor_test_read(t->file);

        tail = -1;
        ok = ngx_http_conductor_test_agree(f.p, f.len, &tail);
        snprintf(desc, sizeof(desc), "%s: read from the end, same usage as "
                 "the full scan, every API", t->file);
        ngx_http_conductor_test_ok(ok && tail == 1, desc);

        s = ngx_http_conductor_test_crlf(f.p, f.len, &n);
        ok = ngx_http_conductor_test_agree(s, n, &tail) && tail == 1;
        free(s);

        root = json_loadb(f.p, f.len, 0, NULL);
        s = root ? json_dumps(root, JSON_COMPACT) : NULL;
        ok = ok && s != NULL
             && ngx_http_conductor_test_agree(s, strlen(s), &tail)
             && tail == 1;
        free(s);
        json_decref(root);

        snprintf(desc, sizeof(desc), "%s: CRLF and compact: the same, from "
                 "the end", t->file);
        ngx_http_conductor_test_ok(ok, desc);

        /*
         * Cut anywhere: not read from the end unless the cut falls after
         * a '}' (see test_fast_limits())
         */

        all = 1;
        taken = 0;

        for (i = 0; i < f.len && all; i++) {
            all = ngx_http_conductor_test_agree(f.p, i, &tail);

            for (n = i; n > 0 && strchr(" \t\r\n", f.p[n - 1]); n--) {
                /* void */
            }

            if (tail >= 0) {
                taken++;
                all = all && n > 0 && f.p[n - 1] == '}';
            }
        }

        snprintf(desc, sizeof(desc), "%s: truncations: the same as the full "
                 "scan, or cut after a '}' (%zu)", t->file, taken);
        ngx_http_conductor_test_ok(all, desc);

        free(f.p);
    }
}


/* a body nesting levels arrays in the usage object, or after it */

static char *
ngx_http_conductor_test_deep(unsigned levels, int in_usage)
{
    char      *s, *q;
    unsigned   i;

    s = malloc(2 * levels + 128);
    if (s == NULL) {
        abort();
    }

    q = s;
    q += sprintf(q, "{\"usage\":{\"prompt_tokens\":1%s",
                 in_usage ? ",\"x\":" : "},\"x\":");

    for (i = 0; i < levels; i++) {
        *q++ = '[';
    }

    for (i = 0; i < levels; i++) {
        *q++ = ']';
    }

    strcpy(q, in_usage ? "}}" : "}");

    return s;
}


static void
ngx_http_conductor_test_fast_bodies(void)
{
    int                          ok, tail;
    char                        *s, *q, desc[200];
    size_t                       i, n;
    unsigned                     levels;
    ngx_http_conductor_usage_t   u;

    /* body, what the fast path does (-1 declines), the usage's prompt */

    static const struct {
        const char  *body;
        int          tail;
        int64_t      prompt;
    } bodies[] = {

        /* nested usage beside the top-level one */
        { "{\"a\":{\"usage\":{\"prompt_tokens\":9}},"
          "\"usage\":{\"prompt_tokens\":1}}", 1, 1 },
        { "{\"usage\":{\"prompt_tokens\":1},"
          "\"a\":{\"usage\":{\"prompt_tokens\":9}}}", -1, 1 },
        { "{\"usage\":{\"prompt_tokens\":1},"
          "\"a\":[{\"usage\":{\"prompt_tokens\":9}}]}", -1, 1 },
        { "{\"a\":{\"b\":{\"usage\":{\"prompt_tokens\":9}}}}", -1, -1 },
        { "{\"choices\":[{\"usage\":{\"prompt_tokens\":9}}]}", -1, 9 },

        /* usage inside strings, quotes escaped */
        { "{\"usage\":{\"prompt_tokens\":1},"
          "\"a\":\"\\\"usage\\\":{\\\"prompt_tokens\\\":9}\"}", 1, 1 },
        { "{\"usage\":{\"prompt_tokens\":1},"
          "\"a\":\"\\\\\\\"usage\\\":{\\\"prompt_tokens\\\":9}}\"}", 1, 1 },
        { "{\"usage\":{\"prompt_tokens\":1,\"note\":\"}}]]\\\"usage\\\":{\"},"
          "\"z\":\"}\"}", 1, 1 },
        { "{\"a\\\"usage\":{\"prompt_tokens\":9},"
          "\"usage\":{\"prompt_tokens\":1}}", 1, 1 },
        { "{\"usage\":{\"prompt_tokens\":1},"
          "\"a\\\"usage\":{\"prompt_tokens\":9}}", 1, 1 },

        /* duplicates: the last wins, as json_find() */
        { "{\"usage\":{\"prompt_tokens\":1},"
          "\"usage\":{\"prompt_tokens\":2}}", 1, 2 },
        { "{\"usage\":{\"prompt_tokens\":1},\"usage\":{}}", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":1},\"usage\":null}", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":3,\"prompt_tokens\":4}}", 1, 4 },
        { "{\"usage\":{\"prompt_tokens\":3,\"prompt_tokens\":null,"
          "\"input_tokens\":5}}", 1, 5 },

        /* usage not last, whitespace, CRLF */
        { "{\"usage\":{\"prompt_tokens\":1},\"model\":\"x\","
          "\"n\":[1,2,{\"a\":null}],\"t\":true,\"f\":false,\"e\":-1.5e3}",
          1, 1 },
        { "\r\n {\r\n \"usage\" :\t{ \"prompt_tokens\" : 1 } ,\r\n"
          " \"x\" : [ ] \r\n}\r\n\t ", 1, 1 },
        { "{\"usage\":{\"prompt_tokens\":1}}\n\n\n", 1, 1 },

        /* truncated or not JSON */
        { "{\"usage\":{\"prompt_tokens\":1}", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":1},\"a\":1", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":1},\"a\":}", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":1},,}", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":1},}", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":1}}}", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":1]}", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":01}}", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":1,}}", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":1},\"a\":\"\x01\"}", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":1},\"a\":\"\\x\"}", -1, -1 },
        { "\"usage\":{\"prompt_tokens\":1}}", -1, -1 },
        { "{}", -1, -1 },
        { "", -1, -1 },
        { "}", -1, -1 },

        /* usage value not an object */
        { "{\"usage\":[{\"prompt_tokens\":1}]}", -1, -1 },
        { "{\"usage\":\"{\\\"prompt_tokens\\\":1}\"}", -1, -1 },
        { "{\"usage\":1}", -1, -1 },
        { "{\"usage\" \"x\":{\"prompt_tokens\":1}}", -1, -1 },

        /* keys with escapes */
        { "{\"us\\u0061ge\":{\"prompt_tokens\":1}}", -1, 1 },
        { "{\"usage\":{\"prompt_tokens\":1},"
          "\"us\\u0061ge\":{\"prompt_tokens\":2}}", -1, 2 },
        { "{\"us\\u0061ge\":{\"prompt_tokens\":2},"
          "\"usage\":{\"prompt_tokens\":1}}", 1, 1 },
        { "{\"usage\":{\"pr\\u006fmpt_tokens\":3}}", 1, 3 },
        { "{\"usage\":{\"prompt\\u005ftokens\":3,\"prompt_tokens\":4,"
          "\"pr\\u006fmpt_tokens\":5}}", 1, 5 },
        { "{\"usage\":{\"prompt_tokens\\u0000\":3,\"total_tokens\":1}}",
          1, -1 },
        { "{\"usage\":{\"\\ud800prompt_tokens\":3,\"total_tokens\":1}}",
          1, -1 },

        /* counts: not integers, out of range, details */
        { "{\"usage\":{\"prompt_tokens\":1.0,\"completion_tokens\":-1,"
          "\"total_tokens\":1e2}}", -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":\"1\",\"total_tokens\":true}}",
          -1, -1 },
        { "{\"usage\":{\"prompt_tokens\":1000000000001,"
          "\"completion_tokens\":1000000000000}}", 1, -1 },
        { "{\"usage\":{\"prompt_tokens\":99999999999999999999999,"
          "\"total_tokens\":0}}", 1, -1 },
        { "{\"usage\":{\"prompt_tokens\":1,\"prompt_tokens_details\":"
          "{\"cached_tokens\":null},\"input_tokens_details\":"
          "{\"cached_tokens\":4}}}", 1, 1 },
        { "{\"usage\":{\"prompt_tokens\":1,\"prompt_tokens_details\":"
          "{\"cached_tokens\":3},\"prompt_tokens_details\":{\"x\":1},"
          "\"completion_tokens_details\":[],\"output_tokens_details\":"
          "{\"reasoning_tokens\":2,\"reasoning_tokens\":6}}}", 1, 1 },
        { "{\"usage\":{\"input_tokens\":5,\"output_tokens\":6,"
          "\"input_tokens_details\":{\"cached_tokens\":2},"
          "\"output_tokens_details\":{\"reasoning_tokens\":3},"
          "\"cache_read_input_tokens\":7,"
          "\"cache_creation_input_tokens\":8,\"cached_tokens\":9,"
          "\"reasoning_tokens\":10}}", 1, 5 },
        { "{\"usage\":{\"output_tokens\":6,\"cache_read_input_tokens\":7}}",
          1, -1 },

        { NULL, 0, 0 }
    };

    for (i = 0; bodies[i].body; i++) {
        tail = -2;
        ok = ngx_http_conductor_test_agree(bodies[i].body,
                                           strlen(bodies[i].body), &tail);

        if (ok && tail != bodies[i].tail) {
            printf("# tail %d, not %d\n", tail, bodies[i].tail);
            ok = 0;
        }

        ngx_http_conductor_usage_init(&u, NGX_HTTP_CONDUCTOR_EP_CHAT);
        (void) ngx_http_conductor_usage_parse_object(&u,
                   (const unsigned char *) bodies[i].body,
                   strlen(bodies[i].body));

        if (ok && (u.has_prompt ? u.prompt : -1) != bodies[i].prompt) {
            printf("# prompt %lld\n", (long long) u.prompt);
            ok = 0;
        }

        snprintf(desc, sizeof(desc), "from the end %s, as the full scan: "
                 "%.120s", bodies[i].tail == 1 ? "taken" : "declined",
                 bodies[i].body);

        /* one TAP line */
        for (q = desc; *q; q++) {
            if ((unsigned char) *q < 0x20) {
                *q = ' ';
            }
        }

        ngx_http_conductor_test_ok(ok, desc);
    }

    /* more members in the usage object than the span scan has room for */

    for (n = 30; n <= 34; n++) {
        s = malloc(n * 16 + 64);
        if (s == NULL) {
            abort();
        }

        strcpy(s, "{\"usage\":{");

        for (i = 0; i < n; i++) {
            sprintf(s + strlen(s), "\"m%zu\":0,", i);
        }

        strcat(s, "\"prompt_tokens\":5}}");

        ok = ngx_http_conductor_test_agree(s, strlen(s), &tail)
             && tail == (n < NGX_HTTP_CONDUCTOR_REF_MEMBERS ? 1 : -1);
        snprintf(desc, sizeof(desc), "usage of %zu members: only the first "
                 "32 are read, as the full scan", n + 1);
        ngx_http_conductor_test_ok(ok, desc);
        free(s);
    }

    /* more top-level members than the scan has room for */

    s = malloc(40 * 16 + 128);
    if (s == NULL) {
        abort();
    }

    strcpy(s, "{");

    for (i = 0; i < 40; i++) {
        sprintf(s + strlen(s), "\"m%zu\":[%zu],", i, i);
    }

    strcat(s, "\"usage\":{\"prompt_tokens\":5},\"z\":0}");
    ok = ngx_http_conductor_test_agree(s, strlen(s), &tail) && tail == 1;
    ngx_http_conductor_test_ok(ok, "a body of 42 members: the same usage");
    free(s);

    /* nesting: 64 levels with the body, not 65 */

    for (levels = 61; levels <= 63; levels++) {
        s = ngx_http_conductor_test_deep(levels, 1);
        ok = ngx_http_conductor_test_agree(s, strlen(s), &tail)
             && tail == (levels <= 62 ? 1 : -1);
        free(s);

        s = ngx_http_conductor_test_deep(levels + 1, 0);
        ok = ok && ngx_http_conductor_test_agree(s, strlen(s), &tail)
             && tail == (levels <= 62 ? 1 : -1);
        free(s);

        snprintf(desc, sizeof(desc), "%u levels in the usage object, %u "
                 "after it: as the full scan", levels + 2, levels + 2);
        ngx_http_conductor_test_ok(ok, desc);
    }
}


/*
 * What the fast path cannot see: what comes before the usage key.  Not
 * JSON there, it takes the usage the full scan rejects with the body.
 */

static void
ngx_http_conductor_test_fast_limits(void)
{
    int                              ok;
    char                            *p;
    size_t                           i;
    ngx_http_conductor_usage_t       u, v;
    ngx_http_conductor_test_file_t   f;

    static const char  *bodies[] = {
        "{\"a\":{\"usage\":{\"prompt_tokens\":1}}",
        "{\"a\":1}{\"usage\":{\"prompt_tokens\":1}}",
        "{\"a\" 1,\"usage\":{\"prompt_tokens\":1}}",
        NULL
    };

    ok = 1;

    for (i = 0; bodies[i]; i++) {
        ngx_http_conductor_usage_init(&u, NGX_HTTP_CONDUCTOR_EP_CHAT);
        ngx_http_conductor_usage_init(&v, NGX_HTTP_CONDUCTOR_EP_CHAT);

        ok = ok && ngx_http_conductor_usage_parse_object(&u,
                       (const unsigned char *) bodies[i], strlen(bodies[i]))
                   == 1
             && u.prompt == 1
             && ngx_http_conductor_usage_parse_full(&v,
                       (const unsigned char *) bodies[i], strlen(bodies[i]))
                   == 0;
    }

    ngx_http_conductor_test_ok(ok, "not JSON before the usage key: taken "
                               "from the end, not by the full scan "
                               "(documented)");

    /* a Responses body cut after a tool call's usage: the tool's taken */

    f = ngx_http_conductor_test_read("openai_responses.json");
    p = strstr(f.p, "\"reasoning_tokens\": 2000");
    p = p ? strchr(p, '}') : NULL;
    p = p ? strchr(p + 1, '}') : NULL;
    p = p ? strchr(p + 1, '}') : NULL;

    ngx_http_conductor_usage_init(&u, NGX_HTTP_CONDUCTOR_EP_RESPONSES);
    ngx_http_conductor_usage_init(&v, NGX_HTTP_CONDUCTOR_EP_RESPONSES);

    ok = p != NULL
         && ngx_http_conductor_usage_parse_object(&u,
                (const unsigned char *) f.p, p + 1 - f.p) == 1
         && u.prompt == 5000
         && ngx_http_conductor_usage_parse_full(&v,
                (const unsigned char *) f.p, p + 1 - f.p) == 0;
    ngx_http_conductor_test_ok(ok, "a body cut after a nested object: its "
                               "usage taken from the end (documented)");
    free(f.p);
}


/*
 * The one-pass reader of a usage object against the look-ups it replaced,
 * through the line handler's captured-object entry, valid JSON or not.
 */

static void
ngx_http_conductor_test_reader(void)
{
    int                            api, prior, ok, rc, rc_ref;
    size_t                         i, len;
    unsigned char                 *b;
    ngx_http_conductor_usage_t     u, ref;
    ngx_http_conductor_sse_line_t  line;

    static const char  *objects[] = {
        "{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}",
        " \r\n{\"input_tokens\":1,\"output_tokens\":2}\t\n",
        "{\"prompt_tokens\":1,\"prompt_tokens_details\":{\"cached_tokens\":1,"
        "\"cached_tokens\":\"x\"},\"completion_tokens_details\":"
        "{\"reasoning_tokens\":4}}",
        "{\"input_tokens\":10,\"cache_read_input_tokens\":20,"
        "\"cache_creation_input_tokens\":30,\"output_tokens\":null}",
        "{\"total_tokens\":0}",
        "{\"prompt_tokens\":1",
        "{\"prompt_tokens\":1}}",
        "{\"prompt_tokens\":1} x",
        "{\"prompt_tokens\":1,}",
        "{\"prompt_tokens\":1,\"a\":[1,]}",
        "{\"prompt_tokens\":1,\"a\":[01]}",
        "{\"prompt_tokens\":1,\"a\":\"\\u12\"}",
        "{\"prompt_tokens\":1,\"a\":tru}",
        "{\"prompt_tokens\":-0,\"total_tokens\":-0.0}",
        "{'prompt_tokens':1}",
        "[{\"prompt_tokens\":1}]",
        "{\"prompt_tokens\":1,\"prompt_tokens_details\":{\"cached_tokens\":2}"
        ",\"prompt_tokens_details\":{\"cached_tokens\":3,}}",
        "",
        "{",
        "{}",
        NULL
    };

    ok = 1;

    for (i = 0; objects[i] && ok; i++) {
        len = strlen(objects[i]);
        b = malloc(len ? len : 1);
        if (b == NULL) {
            abort();
        }

        memcpy(b, objects[i], len);

        for (api = 0; api < NGX_HTTP_CONDUCTOR_NEPS; api++) {
            for (prior = 0; prior < 2; prior++) {
                memset(&line, 0, sizeof(line));
                line.data = b;
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

                ngx_http_conductor_test_prior(&u, prior ? api : -1);
                u.api = api;
                ref = u;

                rc = ngx_http_conductor_usage_parse_line(&u, &line);
                rc_ref = ngx_http_conductor_ref_apply_text(&ref, b, len);

                /* the line handler marks a top-level capture */
                ref.delta = (rc_ref && line.flags
                             == NGX_HTTP_CONDUCTOR_SSE_USAGE_TOP)
                            ? 1 : ref.delta;

                if (rc != rc_ref
                    || !ngx_http_conductor_test_equal(&u, &ref, 1))
                {
                    printf("# api %d: %d, reference %d: %s\n", api, rc,
                           rc_ref, objects[i]);
                    ok = 0;
                }
            }
        }

        free(b);
    }

    ngx_http_conductor_test_ok(ok, "usage objects read in one pass as by "
                               "the look-ups, valid or not, every API");
}


int
main(void)
{
    json_set_alloc_funcs(ngx_http_conductor_test_json_malloc,
                         ngx_http_conductor_test_json_free);

    ngx_http_conductor_test_fixtures();
    ngx_http_conductor_test_big();
    ngx_http_conductor_test_rules();
    ngx_http_conductor_test_hot_path();
    ngx_http_conductor_test_only_chunk();
    ngx_http_conductor_test_fast_fixtures();
    ngx_http_conductor_test_fast_bodies();
    ngx_http_conductor_test_fast_limits();
    ngx_http_conductor_test_reader();

    printf("1..%d\n", ngx_http_conductor_test_n);

    return ngx_http_conductor_test_failed ? 1 : 0;
}
