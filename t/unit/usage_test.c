/*
 * Unit tests of the usage extractor, driven through the SSE parser with
 * real-shaped provider responses from t/unit/fixtures.  TAP output; run
 * from the repository root.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ngx_http_conductor_sse.h"
#include "ngx_http_conductor_usage.h"


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

    printf("1..%d\n", ngx_http_conductor_test_n);

    return ngx_http_conductor_test_failed ? 1 : 0;
}
