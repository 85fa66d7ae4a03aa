/*
 * Unit tests of the SSE line parser and its over-long line fallback.
 * TAP output; run from the repository root.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_conductor_sse.h"


typedef struct {
    char    *p;
    size_t   len;
    size_t   size;
} ngx_http_conductor_test_log_t;


typedef struct {
    size_t   live;
    size_t   peak;
    size_t   largest;
    size_t   calls;
    size_t   fail_after;      /* allocations allowed, 0: unlimited */
} ngx_http_conductor_test_mem_t;


#include "tap.h"


static void
ngx_http_conductor_test_log_add(ngx_http_conductor_test_log_t *log,
    const char *p, size_t len)
{
    if (log->len + len + 1 > log->size) {
        log->size = (log->len + len + 1) * 2;
        log->p = realloc(log->p, log->size);

        if (log->p == NULL) {
            abort();
        }
    }

    memcpy(log->p + log->len, p, len);
    log->len += len;
    log->p[log->len] = '\0';
}


/* every handler call as "flags|event|data|event_start,line_start,end\n" */

static void
ngx_http_conductor_test_handler(void *data,
    const ngx_http_conductor_sse_line_t *line)
{
    char                            num[96];
    ngx_http_conductor_test_log_t  *log;

    log = data;

    snprintf(num, sizeof(num), "%u|", line->flags);
    ngx_http_conductor_test_log_add(log, num, strlen(num));
    ngx_http_conductor_test_log_add(log, (const char *) line->event,
                                    line->event_len);
    ngx_http_conductor_test_log_add(log, "|", 1);
    ngx_http_conductor_test_log_add(log, (const char *) line->data,
                                    line->len);
    snprintf(num, sizeof(num), "|%llu,%llu,%llu\n",
             (unsigned long long) line->event_start,
             (unsigned long long) line->line_start,
             (unsigned long long) line->line_end);
    ngx_http_conductor_test_log_add(log, num, strlen(num));
}


static void *
ngx_http_conductor_test_alloc(void *data, size_t size)
{
    size_t                          *p;
    ngx_http_conductor_test_mem_t  *mem;

    mem = data;

    if (mem->fail_after && mem->calls >= mem->fail_after) {
        return NULL;
    }

    mem->calls++;

    p = malloc(size + sizeof(size_t));
    if (p == NULL) {
        abort();
    }

    p[0] = size;
    mem->live += size;

    if (mem->live > mem->peak) {
        mem->peak = mem->live;
    }

    if (size > mem->largest) {
        mem->largest = size;
    }

    return p + 1;
}


static void
ngx_http_conductor_test_free(void *data, void *p)
{
    size_t                         *s;
    ngx_http_conductor_test_mem_t  *mem;

    mem = data;
    s = (size_t *) p - 1;
    mem->live -= s[0];
    free(s);
}


/* feeds s cut at the given points (sorted, count n), returns the log */

static char *
ngx_http_conductor_test_run(const char *s, size_t len, size_t line_max,
    size_t usage_max, const size_t *cuts, size_t ncuts)
{
    size_t                          i, from, to;
    ngx_http_conductor_sse_t        sse;
    ngx_http_conductor_test_log_t   log;

    memset(&log, 0, sizeof(log));
    ngx_http_conductor_test_log_add(&log, "", 0);

    ngx_http_conductor_sse_init(&sse, line_max,
                                ngx_http_conductor_test_handler, &log);
    sse.usage_max = usage_max;

    from = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : len;
        ngx_http_conductor_sse_feed(&sse, (const unsigned char *) s + from,
                                    to - from);
        from = to;
    }

    ngx_http_conductor_sse_finish(&sse);
    ngx_http_conductor_sse_release(&sse);

    return log.p;
}


static char *
ngx_http_conductor_test_whole(const char *s, size_t line_max,
    size_t usage_max)
{
    return ngx_http_conductor_test_run(s, strlen(s), line_max, usage_max,
                                       NULL, 0);
}


/*
 * The log of s fed whole must equal the log of s fed in two pieces at
 * every byte boundary, and one byte at a time.
 */

static int
ngx_http_conductor_test_splits(const char *s, size_t len, size_t line_max,
    size_t usage_max, const char *expect)
{
    int      ok;
    char    *whole, *got;
    size_t   i, *cuts;

    whole = ngx_http_conductor_test_run(s, len, line_max, usage_max, NULL, 0);
    ok = (expect == NULL || strcmp(whole, expect) == 0);

    if (!ok) {
        printf("# expected:\n# %s\n# got:\n# %s\n", expect, whole);
    }

    for (i = 0; ok && i <= len; i++) {
        got = ngx_http_conductor_test_run(s, len, line_max, usage_max, &i, 1);

        if (strcmp(got, whole) != 0) {
            printf("# split at %zu differs:\n# %s\n", i, got);
            ok = 0;
        }

        free(got);
    }

    cuts = malloc((len + 1) * sizeof(size_t));
    if (cuts == NULL) {
        abort();
    }

    for (i = 0; i < len; i++) {
        cuts[i] = i + 1;
    }

    got = ngx_http_conductor_test_run(s, len, line_max, usage_max, cuts,
                                      len ? len - 1 : 0);

    if (ok && strcmp(got, whole) != 0) {
        printf("# one byte at a time differs:\n# %s\n", got);
        ok = 0;
    }

    free(got);
    free(cuts);
    free(whole);

    return ok;
}


static void
ngx_http_conductor_test_basic(void)
{
    const char  *s;

    s = "data: {\"a\":1}\n\n";
    ngx_http_conductor_test_ok(ngx_http_conductor_test_splits(s, strlen(s),
        1024, 1024, "1||{\"a\":1}|0,0,13\n"), "one data line, LF");

    s = "data:x\n\ndata:  y\n\ndata\n\n";
    ngx_http_conductor_test_ok(ngx_http_conductor_test_splits(s, strlen(s),
        1024, 1024, "1||x|0,0,6\n1|| y|8,8,16\n1|||18,18,22\n"),
        "data: without space, only one space removed, bare data field");

    s = "event: message_start\ndata: 1\ndata: 2\n\ndata: 3\n\n";
    ngx_http_conductor_test_ok(ngx_http_conductor_test_splits(s, strlen(s),
        1024, 1024,
        "1|message_start|1|0,21,28\n1|message_start|2|0,29,36\n"
        "1||3|38,38,45\n"),
        "event name kept until the blank line");

    s = ": keep-alive\n\n:ping\nid: 7\nretry: 100\nfoo: bar\ndata: z\n\n";
    ngx_http_conductor_test_ok(ngx_http_conductor_test_splits(s, strlen(s),
        1024, 1024, "1||z|14,46,53\n"),
        "comments, id, retry and unknown fields skipped");

    s = "event: e\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n";
    ngx_http_conductor_test_ok(ngx_http_conductor_test_splits(s, strlen(s),
        1024, 1024, "1|e|1|0,10,17\n1||2|21,21,28\n"),
        "CRLF, CR split from LF is not a blank line");

    s = "event: e\rdata: 1\r\rdata: 2\r\r";
    ngx_http_conductor_test_ok(ngx_http_conductor_test_splits(s, strlen(s),
        1024, 1024, "1|e|1|0,9,16\n1||2|18,18,25\n"),
        "lone CR line ends");

    s = "\xef\xbb\xbf" "data: b\n\n";
    ngx_http_conductor_test_ok(ngx_http_conductor_test_splits(s, strlen(s),
        1024, 1024, "1||b|0,0,10\n"), "leading BOM ignored");

    s = "data: {\"usage\":{}}";
    ngx_http_conductor_test_ok(ngx_http_conductor_test_splits(s, strlen(s),
        1024, 1024, "1||{\"usage\":{}}|0,0,18\n"),
        "finish hands over a last line without terminator");

    s = "data: a\n\n\n\n:x\n\nevent: q\n\n\ndata: b\n";
    ngx_http_conductor_test_ok(ngx_http_conductor_test_splits(s, strlen(s),
        1024, 1024, "1||a|0,0,7\n1||b|26,26,33\n"),
        "blank lines, event without data, event reset");
}


static char *
ngx_http_conductor_test_long(const char *head, size_t pad, const char *tail)
{
    char    *s;
    size_t   hl, tl;

    hl = strlen(head);
    tl = strlen(tail);

    s = malloc(hl + pad + tl + 1);
    if (s == NULL) {
        abort();
    }

    memcpy(s, head, hl);
    memset(s + hl, 'x', pad);
    memcpy(s + hl + pad, tail, tl + 1);

    return s;
}


static void
ngx_http_conductor_test_overlong(void)
{
    int    ok;
    char  *s, *got;

    /* Responses completed: a tool's usage in output, the real one after */

    s = ngx_http_conductor_test_long(
        "event: response.completed\n"
        "data: {\"type\":\"response.completed\",\"item\":{\"usage\":{}},"
        "\"response\":{\"id\":\"r\","
        "\"output\":[{\"type\":\"mcp_call\",\"usage\":{\"input_tokens\":9}},"
        "{\"type\":\"message\",\"content\":[{\"text\":\"",
        600,
        "\\\"usage\\\":{\\\"x\\\":1} \"}]}],"
        "\"usage\":{\"input_tokens\":36,\"output_tokens\":87,"
        "\"s\":\"}{\\\"\"}},\"usage\":{\"total_tokens\":5}}\n"
        "\n"
        "data: {\"usage\":{\"n\":1}}\n\n");

    ok = ngx_http_conductor_test_splits(s, strlen(s), 64, 1024,
        "4|response.completed|{\"input_tokens\":36,\"output_tokens\":87,"
        "\"s\":\"}{\\\"\"}|0,26,909\n"
        "2|response.completed|{\"total_tokens\":5}|0,26,909\n"
        "1||{\"usage\":{\"n\":1}}|911,911,934\n");
    ngx_http_conductor_test_ok(ok, "over-long line: response.usage and top "
                               "usage captured, nested and quoted not");
    free(s);

    /* no event line: the data's type names the captures */

    s = ngx_http_conductor_test_long(
        "data:{\"type\":\"message_start\",\"message\":{\"content\":\"",
        300,
        "\",\"usage\":{\"input_tokens\":4,\"output_tokens\":3}}}\n\n");

    ok = ngx_http_conductor_test_splits(s, strlen(s), 64, 1024,
        "8|message_start|{\"input_tokens\":4,\"output_tokens\":3}"
        "|0,0,399\n");
    ngx_http_conductor_test_ok(ok, "over-long line without event: line "
                               "named by its type, message.usage taken");
    free(s);

    /* usage bigger than usage_max is dropped; escaped key not matched */

    s = ngx_http_conductor_test_long(
        "data: {\"u\\u0073age\":{\"a\":1},\"usage\":{\"pad\":\"",
        200,
        "\"},\"usage\":{\"b\":2}}\n");

    ok = ngx_http_conductor_test_splits(s, strlen(s), 48, 64,
        "2||{\"b\":2}|0,0,263\n");
    ngx_http_conductor_test_ok(ok, "capture over usage_max dropped, escaped "
                               "key ignored, later usage kept");
    free(s);

    /* over-long comment, event and unknown lines; parsing goes on */

    s = ngx_http_conductor_test_long(": ", 500, "\n");
    got = ngx_http_conductor_test_long(s, 0, "");
    free(s);
    s = ngx_http_conductor_test_long("event: ", 200, "\nid: ");
    got = realloc(got, strlen(got) + strlen(s) + 400);
    strcat(got, s);
    free(s);
    s = ngx_http_conductor_test_long(got, 100,
                                     "\ndata: {\"usage\":{\"c\":3}}\n\n");
    free(got);

    ok = ngx_http_conductor_test_splits(s, strlen(s), 128, 1024,
        "1|xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "|{\"usage\":{\"c\":3}}|0,816,839\n");
    ngx_http_conductor_test_ok(ok, "over-long comment and id skipped, "
                               "over-long event name cut at 64");
    free(s);

    /* a top-level array or garbage gives nothing and does not crash */

    s = ngx_http_conductor_test_long("data: [{\"usage\":{\"a\":1}},\"",
                                     100, "}}}]]]\"usage\":{\n\n");
    ok = ngx_http_conductor_test_splits(s, strlen(s), 32, 1024, "");
    ngx_http_conductor_test_ok(ok, "over-long garbage: no capture");
    free(s);
}


static void
ngx_http_conductor_test_memory(void)
{
    int                             ok;
    char                           *s, *ref;
    size_t                          i, len;
    unsigned char                   fixed[4096];
    ngx_http_conductor_sse_t        sse;
    ngx_http_conductor_test_log_t   log;
    ngx_http_conductor_test_mem_t   mem;

    s = ngx_http_conductor_test_long("data: {\"a\":\"", 300000,
                                     "\",\"usage\":{\"k\":1}}\n\n"
                                     "data: {\"b\":2}\n\n");
    len = strlen(s);
    ref = ngx_http_conductor_test_whole(s, 8192, 512);

    /* a pool-like allocator: counted, all given back on release */

    memset(&mem, 0, sizeof(mem));
    memset(&log, 0, sizeof(log));
    ngx_http_conductor_test_log_add(&log, "", 0);

    ngx_http_conductor_sse_init(&sse, 8192, ngx_http_conductor_test_handler,
                                &log);
    sse.usage_max = 512;
    ngx_http_conductor_sse_set_allocator(&sse, ngx_http_conductor_test_alloc,
                                         ngx_http_conductor_test_free, &mem);

    for (i = 0; i < len; i += 1000) {
        ngx_http_conductor_sse_feed(&sse, (const unsigned char *) s + i,
                                    len - i < 1000 ? len - i : 1000);
    }

    ngx_http_conductor_sse_finish(&sse);
    ngx_http_conductor_sse_release(&sse);

    ok = strcmp(log.p, ref) == 0 && mem.live == 0 && mem.largest <= 8192
         && mem.peak <= 8192 + 4096 && sse.overlong == 1;
    ngx_http_conductor_test_ok(ok, "allocator: 300 KB line within 8 KiB, "
                               "all freed, same result");

    if (!ok) {
        printf("# live %zu peak %zu largest %zu\n# %s\n", mem.live, mem.peak,
               mem.largest, log.p);
    }

    free(log.p);

    /* a fixed caller buffer */

    memset(&log, 0, sizeof(log));
    ngx_http_conductor_test_log_add(&log, "", 0);

    ngx_http_conductor_sse_init(&sse, 8192, ngx_http_conductor_test_handler,
                                &log);
    sse.usage_max = 512;
    ngx_http_conductor_sse_set_buffer(&sse, fixed, sizeof(fixed));

    for (i = 0; i < len; i += 777) {
        ngx_http_conductor_sse_feed(&sse, (const unsigned char *) s + i,
                                    len - i < 777 ? len - i : 777);
    }

    ngx_http_conductor_sse_finish(&sse);
    ngx_http_conductor_sse_release(&sse);

    ngx_http_conductor_test_ok(strcmp(log.p, ref) == 0
                               && strstr(log.p, "2||{\"k\":1}") != NULL,
                               "fixed buffer: same result");
    free(log.p);

    /* allocation failure degrades, never crashes, later lines still work */

    memset(&mem, 0, sizeof(mem));
    mem.fail_after = 1;
    memset(&log, 0, sizeof(log));
    ngx_http_conductor_test_log_add(&log, "", 0);

    ngx_http_conductor_sse_init(&sse, 8192, ngx_http_conductor_test_handler,
                                &log);
    ngx_http_conductor_sse_set_allocator(&sse, ngx_http_conductor_test_alloc,
                                         ngx_http_conductor_test_free, &mem);

    for (i = 0; i < len; i += 100) {
        ngx_http_conductor_sse_feed(&sse, (const unsigned char *) s + i,
                                    len - i < 100 ? len - i : 100);
    }

    ngx_http_conductor_sse_finish(&sse);
    ngx_http_conductor_sse_release(&sse);

    ngx_http_conductor_test_ok(mem.live == 0
                               && strstr(log.p, "1||{\"b\":2}") != NULL,
                               "allocation failure: degraded, next line kept");
    free(log.p);

    free(ref);
    free(s);
}


static void
ngx_http_conductor_test_scan(void)
{
    int                            ok;
    size_t                         i, len;
    const char                    *s;
    unsigned char                  cap[256];
    ngx_http_conductor_sse_scan_t  scan;

    s = "{\"id\":\"r\",\"output\":[{\"usage\":{\"input_tokens\":1}}],\n"
        "  \"usage\" : {\"input_tokens\": 3, \"x\": [1, {\"y\": \"}\"}]},\n"
        "  \"response\": {\"usage\": {\"z\": 1}}}";
    len = strlen(s);
    ok = 1;

    for (i = 1; i <= len; i++) {
        ngx_http_conductor_sse_scan_init(&scan, cap, sizeof(cap));
        ngx_http_conductor_sse_scan_feed(&scan, (const unsigned char *) s,
                                         len - i);
        ngx_http_conductor_sse_scan_feed(&scan,
                                         (const unsigned char *) s + len - i,
                                         i);

        if (scan.ncaptures != 2
            || scan.capture[0].flags != NGX_HTTP_CONDUCTOR_SSE_USAGE_TOP
            || scan.capture[0].len != 41
            || memcmp(scan.cap + scan.capture[0].off,
                      "{\"input_tokens\": 3, \"x\": [1, {\"y\": \"}\"}]}", 41)
            || scan.capture[1].flags != NGX_HTTP_CONDUCTOR_SSE_USAGE_RESPONSE)
        {
            ok = 0;
        }
    }

    ngx_http_conductor_test_ok(ok, "scanner over a body in two pieces");

    ngx_http_conductor_sse_scan_init(&scan, NULL, 0);
    ngx_http_conductor_sse_scan_feed(&scan, (const unsigned char *) s, len);
    ngx_http_conductor_test_ok(scan.ncaptures == 0 && scan.depth == 0,
                               "scanner without capture area");
}


int
main(void)
{
    ngx_http_conductor_test_basic();
    ngx_http_conductor_test_overlong();
    ngx_http_conductor_test_memory();
    ngx_http_conductor_test_scan();

    printf("1..%d\n", ngx_http_conductor_test_n);

    return ngx_http_conductor_test_failed ? 1 : 0;
}
