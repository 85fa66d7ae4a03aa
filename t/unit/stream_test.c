/*
 * Unit tests of the two stream paths that do not parse every byte: the
 * usage-only chunk taken out by structure (ngx_http_conductor_strip.h),
 * and the lazy parser that keeps only the tail of a stream
 * (ngx_http_conductor_sse_set_tail).  Every stream fixture is tried in
 * several spellings (as recorded, JSON with spaces, CRLF, CR, "data:"
 * without a space), fed whole, in two pieces at every byte boundary and
 * one byte at a time.  TAP output; run from the repository root.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_conductor_sse.h"
#include "ngx_http_conductor_strip.h"
#include "ngx_http_conductor_usage.h"


#define NGX_HTTP_CONDUCTOR_TEST_DIR  "t/unit/fixtures/"


typedef struct {
    char    *p;
    size_t   len;
    size_t   size;
} ngx_http_conductor_test_buf_t;


typedef struct {
    ngx_http_conductor_test_buf_t   out;
    const unsigned char            *piece;      /* being fed */
    size_t                          piece_len;
    int                             ranges;     /* of this piece */
    int                             bad;        /* a rule was broken */
} ngx_http_conductor_test_sink_t;


typedef struct {
    const char  *file;
    int          api;
    int          usage_only;    /* has a usage-only chunk */
} ngx_http_conductor_test_fixture_t;


static ngx_http_conductor_test_fixture_t  ngx_http_conductor_test_fixtures[] =
{
    { "openai_chat_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, 1 },
    { "openai_completions_stream.sse", NGX_HTTP_CONDUCTOR_EP_COMPLETIONS,
      1 },
    { "vllm_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, -1 },
    { "cerebras_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, -1 },
    { "together_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, -1 },
    { "moonshot_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, -1 },
    { "crlf_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, -1 },
    { "cr_stream.sse", NGX_HTTP_CONDUCTOR_EP_CHAT, -1 },
    { "anthropic_stream.sse", NGX_HTTP_CONDUCTOR_EP_MESSAGES, 0 },
    { "openai_responses_stream.sse", NGX_HTTP_CONDUCTOR_EP_RESPONSES, 0 },
    { NULL, 0, 0 }
};


#include "tap.h"


static void
ngx_http_conductor_test_add(ngx_http_conductor_test_buf_t *b, const void *p,
    size_t len)
{
    if (b->len + len + 1 > b->size) {
        b->size = (b->len + len + 1) * 2;
        b->p = realloc(b->p, b->size);

        if (b->p == NULL) {
            abort();
        }
    }

    memcpy(b->p + b->len, p, len);
    b->len += len;
    b->p[b->len] = '\0';
}


static void
ngx_http_conductor_test_adds(ngx_http_conductor_test_buf_t *b, const char *s)
{
    ngx_http_conductor_test_add(b, s, strlen(s));
}


static ngx_http_conductor_test_buf_t
ngx_http_conductor_test_read(const char *name)
{
    char                           path[256], chunk[4096];
    size_t                         n;
    FILE                          *f;
    ngx_http_conductor_test_buf_t  b;

    memset(&b, 0, sizeof(b));
    snprintf(path, sizeof(path), NGX_HTTP_CONDUCTOR_TEST_DIR "%s", name);

    f = fopen(path, "rb");
    if (f == NULL) {
        printf("Bail out! cannot open %s\n", path);
        exit(1);
    }

    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        ngx_http_conductor_test_add(&b, chunk, n);
    }

    fclose(f);

    return b;
}


/* ---------------------------------------------------------------- spellings */


/* every line end (LF, CRLF or CR) written as eol */

static ngx_http_conductor_test_buf_t
ngx_http_conductor_test_eol(const ngx_http_conductor_test_buf_t *in,
    const char *eol)
{
    size_t                         i;
    ngx_http_conductor_test_buf_t  b;

    memset(&b, 0, sizeof(b));

    for (i = 0; i < in->len; i++) {
        if (in->p[i] == '\r' || in->p[i] == '\n') {
            if (in->p[i] == '\r' && i + 1 < in->len && in->p[i + 1] == '\n') {
                i++;
            }

            ngx_http_conductor_test_add(&b, eol, strlen(eol));
            continue;
        }

        ngx_http_conductor_test_add(&b, &in->p[i], 1);
    }

    return b;
}


/* JSON as Python writes it: ", " and ": " outside strings; "data:" kept */

static ngx_http_conductor_test_buf_t
ngx_http_conductor_test_spaced(const ngx_http_conductor_test_buf_t *in)
{
    int                            in_string, escape, in_json;
    size_t                         i;
    ngx_http_conductor_test_buf_t  b;

    memset(&b, 0, sizeof(b));
    in_string = 0;
    escape = 0;
    in_json = 0;

    for (i = 0; i < in->len; i++) {
        char  c = in->p[i];

        ngx_http_conductor_test_add(&b, &c, 1);

        if (c == '\n' || c == '\r') {
            in_json = 0;
            in_string = 0;
            continue;
        }

        if (!in_json) {
            in_json = (c == '{');
            continue;
        }

        if (in_string) {
            if (escape) {
                escape = 0;

            } else if (c == '\\') {
                escape = 1;

            } else if (c == '"') {
                in_string = 0;
            }

            continue;
        }

        if (c == '"') {
            in_string = 1;

        } else if (c == ',' || c == ':') {
            ngx_http_conductor_test_add(&b, " ", 1);
        }
    }

    return b;
}


/* "data: " written "data:" */

static ngx_http_conductor_test_buf_t
ngx_http_conductor_test_nospace(const ngx_http_conductor_test_buf_t *in)
{
    size_t                         i;
    ngx_http_conductor_test_buf_t  b;

    memset(&b, 0, sizeof(b));

    for (i = 0; i < in->len; i++) {
        if (in->len - i >= 6 && memcmp(in->p + i, "data: ", 6) == 0
            && (i == 0 || in->p[i - 1] == '\n' || in->p[i - 1] == '\r'))
        {
            ngx_http_conductor_test_add(&b, "data:", 5);
            i += 5;
            continue;
        }

        ngx_http_conductor_test_add(&b, &in->p[i], 1);
    }

    return b;
}


/* ---------------------------------------------------------------- strip */


/*
 * What the client must get, computed on the whole stream at once: every
 * line, but a usage-only data line and the blank line right after it.
 */

static ngx_http_conductor_test_buf_t
ngx_http_conductor_test_expected(const ngx_http_conductor_test_buf_t *in,
    int *removed)
{
    int                            drop_blank;
    size_t                         i, start, end, content;
    ngx_http_conductor_test_buf_t  b;

    memset(&b, 0, sizeof(b));
    ngx_http_conductor_test_add(&b, "", 0);
    drop_blank = 0;
    *removed = 0;

    for (i = 0; i < in->len; /* void */ ) {
        start = i;

        while (i < in->len && in->p[i] != '\n' && in->p[i] != '\r') {
            i++;
        }

        content = i - start;

        if (i < in->len) {
            i += (in->p[i] == '\r' && i + 1 < in->len && in->p[i + 1] == '\n')
                 ? 2 : 1;
        }

        end = i;

        if (content == 0 && end > start && drop_blank) {
            drop_blank = 0;
            continue;
        }

        drop_blank = 0;

        if (end > start + content
            && ngx_http_conductor_strip_usage_line(
                   (const unsigned char *) in->p + start, content))
        {
            (*removed)++;
            drop_blank = 1;
            continue;
        }

        ngx_http_conductor_test_add(&b, in->p + start, end - start);
    }

    return b;
}


static void
ngx_http_conductor_test_emit(void *data, const unsigned char *p, size_t len,
    int own)
{
    ngx_http_conductor_test_sink_t  *sink = data;

    if (own) {
        /* a held line comes first, once per piece */
        if (sink->ranges != 0) {
            sink->bad = 1;
        }

    } else if (sink->piece == NULL || p < sink->piece
               || p + len > sink->piece + sink->piece_len)
    {
        /* a range must be of the piece being fed */
        sink->bad = 1;
    }

    sink->ranges++;
    ngx_http_conductor_test_add(&sink->out, p, len);
}


static int
ngx_http_conductor_test_strip_run(const ngx_http_conductor_test_buf_t *in,
    const size_t *cuts, size_t ncuts, ngx_http_conductor_test_buf_t *out,
    uint64_t *removed)
{
    int                              bad;
    size_t                           i, from, to;
    unsigned char                    held[NGX_HTTP_CONDUCTOR_SSE_USAGE_MAX];
    ngx_http_conductor_strip_t       s;
    ngx_http_conductor_test_sink_t   sink;

    memset(&sink, 0, sizeof(sink));
    ngx_http_conductor_test_add(&sink.out, "", 0);
    ngx_http_conductor_strip_init(&s, held, sizeof(held),
                                  ngx_http_conductor_test_emit, &sink);
    from = 0;
    bad = 0;

    for (i = 0; i <= ncuts; i++) {
        to = (i < ncuts) ? cuts[i] : in->len;
        sink.piece = (const unsigned char *) in->p + from;
        sink.piece_len = to - from;
        sink.ranges = 0;
        ngx_http_conductor_strip_feed(&s, sink.piece, to - from);
        bad |= sink.bad;
        from = to;
    }

    sink.piece = NULL;
    sink.ranges = 0;
    ngx_http_conductor_strip_finish(&s, 1);
    bad |= sink.bad;

    *out = sink.out;
    *removed = s.removed;

    return !bad;
}


/* whole, two pieces at every boundary, one byte at a time, pieces of 7 */

static int
ngx_http_conductor_test_strip_splits(const ngx_http_conductor_test_buf_t *in,
    const ngx_http_conductor_test_buf_t *expect, int removed)
{
    int                             ok;
    size_t                          i, n, *cuts;
    uint64_t                        got;
    ngx_http_conductor_test_buf_t   out;

    for (i = 0; i <= in->len; i++) {
        ok = ngx_http_conductor_test_strip_run(in, &i, 1, &out, &got);

        if (!ok || out.len != expect->len
            || memcmp(out.p, expect->p, out.len) != 0
            || (int) got != removed)
        {
            printf("# split at %zu: %s, %zu bytes for %zu, %d removed\n", i,
                   ok ? "ranges ok" : "a range broke the rules", out.len,
                   expect->len, (int) got);
            free(out.p);
            return 0;
        }

        free(out.p);
    }

    cuts = malloc((in->len + 1) * sizeof(size_t));
    if (cuts == NULL) {
        abort();
    }

    for (n = 1; n <= 7; n += 6) {
        size_t  k = 0;

        for (i = n; i < in->len; i += n) {
            cuts[k++] = i;
        }

        ok = ngx_http_conductor_test_strip_run(in, cuts, k, &out, &got);

        if (!ok || out.len != expect->len
            || memcmp(out.p, expect->p, out.len) != 0
            || (int) got != removed)
        {
            printf("# pieces of %zu differ\n", n);
            free(out.p);
            free(cuts);
            return 0;
        }

        free(out.p);
    }

    free(cuts);

    return 1;
}


static void
ngx_http_conductor_test_strip_stream(const char *name,
    const ngx_http_conductor_test_buf_t *in, int usage_only)
{
    int                             removed, ok;
    char                            desc[200];
    ngx_http_conductor_test_buf_t   expect;

    expect = ngx_http_conductor_test_expected(in, &removed);

    /* the reference itself: the chunk is found where there is one */
    ok = usage_only < 0 || removed == usage_only;
    ok = ok && (removed == 0 || strstr(expect.p, "\"choices\":[]") == NULL);
    ok = ok && (removed == 0 || expect.len < in->len);

    snprintf(desc, sizeof(desc), "%s: %d usage-only chunk(s) in the "
             "stream", name, removed);
    ngx_http_conductor_test_ok(ok, desc);

    snprintf(desc, sizeof(desc), "%s: stripped the same at every split, "
             "one byte at a time and in pieces of 7", name);
    ngx_http_conductor_test_ok(ngx_http_conductor_test_strip_splits(in,
                                   &expect, removed), desc);

    free(expect.p);
}


/* hand-made chunks: the structure decides, not the bytes */

static void
ngx_http_conductor_test_strip_lines(void)
{
    size_t  i;

    static const struct {
        const char  *line;
        int          usage_only;
        const char  *what;
    } cases[] = {
        { "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}", 1,
          "compact" },
        { "data:{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}", 1,
          "data: without a space" },
        { "data: {\"id\": \"x\", \"choices\": [ ], \"usage\": "
          "{\"prompt_tokens\": 1}}", 1, "spaced, [ ]" },
        { "data: {\"usage\":{\"total_tokens\":3},\"choices\":[]}", 1,
          "usage first" },
        { "data: {\"choices\":[],\"usage\":{\"total_tokens\":3},"
          "\"obfuscation\":\"a1b2\"}", 1, "a member after usage" },
        { "data: {\"choices\":[\t],\"usage\":{},\"stop_reason\":null}", 1,
          "a tab, an empty usage" },
        { "data: {\"choices\":[],\"usage\":null}", 0, "usage null" },
        { "data: {\"choices\":[]}", 0, "no usage" },
        { "data: {\"choices\":[{\"index\":0,\"delta\":{}}],"
          "\"usage\":{\"total_tokens\":3}}", 0, "usage on a chunk with a "
          "choice (vLLM, Cerebras)" },
        { "data: {\"choices\":[{\"delta\":{\"tool_calls\":[]}}],"
          "\"usage\":{\"total_tokens\":3}}", 0, "an empty array nested in "
          "a choice" },
        { "data: {\"x\":{\"choices\":[]},\"choices\":[{}],"
          "\"usage\":{\"total_tokens\":3}}", 0, "a nested \"choices\":[] "
          "beside a top-level usage" },
        { "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"choices\\\":"
          "[]\"}}],\"usage\":{}}", 0, "\"choices\":[] inside a string" },
        { "data: {\"choices\":[],\"choices\":[],\"usage\":{}}", 0,
          "duplicate keys: not taken out" },
        { "data: {\"choices\":[],\"usage\":{}", 0, "broken JSON" },
        { "event: x {\"choices\":[],\"usage\":{}}", 0, "not a data line" },
        { "data: [DONE]", 0, "[DONE]" },
        { NULL, 0, NULL }
    };

    for (i = 0; cases[i].line; i++) {
        ngx_http_conductor_test_ok(
            ngx_http_conductor_strip_usage_line(
                (const unsigned char *) cases[i].line,
                strlen(cases[i].line)) == cases[i].usage_only,
            cases[i].what);
    }
}


/* streams made for the rules around the chunk: its event, line ends */

static void
ngx_http_conductor_test_strip_shapes(void)
{
    size_t                         i;
    ngx_http_conductor_test_buf_t  in;

    static const struct {
        const char  *stream;
        int          removed;
        const char  *what;
    } cases[] = {
        { "data: {\"choices\":[{}]}\n\ndata: {\"choices\":[],"
          "\"usage\":{\"total_tokens\":3}}\n\ndata: [DONE]\n\n", 1,
          "LF" },
        { "data: {\"choices\":[{}]}\r\rdata: {\"choices\":[],"
          "\"usage\":{\"total_tokens\":3}}\r\rdata: [DONE]\r\r", 1, "CR" },
        { "data: {\"choices\":[],\"usage\":{}}\r\n\r\ndata: [DONE]\r\n\r\n",
          1, "CRLF, first" },
        { "id: 7\ndata: {\"choices\":[],\"usage\":{}}\n\n", 1,
          "an id line stays" },
        { "data: {\"choices\":[],\"usage\":{}}\n: ping\n\ndata: [DONE]\n\n",
          1, "a comment after it stays" },
        { "data: {\"choices\":[],\"usage\":{}}", 0,
          "no terminator: an open line is never taken out" },
        { "data: {\"choices\":[],\"usage\":{}}\ndata: {\"choices\":[],"
          "\"usage\":{}}\n\n\n", 2, "two, then two blank lines" },
        { NULL, 0, NULL }
    };

    for (i = 0; cases[i].stream; i++) {
        memset(&in, 0, sizeof(in));
        ngx_http_conductor_test_add(&in, cases[i].stream,
                                    strlen(cases[i].stream));
        ngx_http_conductor_test_strip_stream(cases[i].what, &in,
                                             cases[i].removed);
        free(in.p);
    }
}


/* a line over the held size goes on as it is, split anywhere */

static void
ngx_http_conductor_test_strip_long(void)
{
    size_t                         i;
    ngx_http_conductor_test_buf_t  in;

    memset(&in, 0, sizeof(in));
    ngx_http_conductor_test_adds(&in, "data: {\"choices\":[{\"delta\":"
                                "{\"content\":\"");

    for (i = 0; i < 40000; i++) {
        ngx_http_conductor_test_add(&in, i % 97 ? "x" : "[]", i % 97 ? 1 : 2);
    }

    ngx_http_conductor_test_adds(&in, "\"}}]}\n\ndata: {\"choices\":[],"
                                "\"usage\":{}}\n\ndata: [DONE]\n\n");

    ngx_http_conductor_test_strip_stream("a 40 KB line, then the chunk", &in,
                                         1);
    free(in.p);
}


/* ---------------------------------------------------------------- tail */


static void
ngx_http_conductor_test_usage_run(int api, const ngx_http_conductor_test_buf_t
    *in, size_t tail, const size_t *cuts, size_t ncuts,
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
        to = (i < ncuts) ? cuts[i] : in->len;
        ngx_http_conductor_sse_feed(&sse, (const unsigned char *) in->p + from,
                                    to - from);
        from = to;
    }

    ngx_http_conductor_sse_finish(&sse);
    ngx_http_conductor_sse_release(&sse);
    free(ring);
}


static int
ngx_http_conductor_test_usage_same(const ngx_http_conductor_usage_t *a,
    const ngx_http_conductor_usage_t *b)
{
    return a->found == b->found && a->terminal == b->terminal
           && a->prompt == b->prompt && a->completion == b->completion
           && a->cached == b->cached && a->cache_creation == b->cache_creation
           && a->reasoning == b->reasoning && a->total == b->total
           && a->has_prompt == b->has_prompt
           && a->has_completion == b->has_completion
           && a->has_total == b->has_total;
}


/* the lazy parser gives what parsing every byte gives, at every split */

static void
ngx_http_conductor_test_tail_stream(const char *name, int api,
    const ngx_http_conductor_test_buf_t *in)
{
    int                          ok;
    char                         desc[400];
    size_t                       i, t, k, *cuts;
    ngx_http_conductor_usage_t   full, lazy;

    static const size_t  tails[] = { 16384, 1024, 256, 128 };

    ngx_http_conductor_test_usage_run(api, in, 0, NULL, 0, &full);

    cuts = malloc((in->len + 1) * sizeof(size_t));
    if (cuts == NULL) {
        abort();
    }

    for (t = 0; t < sizeof(tails) / sizeof(tails[0]); t++) {
        ok = 1;

        for (i = 0; ok && i <= in->len; i++) {
            ngx_http_conductor_test_usage_run(api, in, tails[t], &i, 1,
                                              &lazy);
            if (!ngx_http_conductor_test_usage_same(&lazy, &full)) {
                printf("# tail %zu, split at %zu differs\n", tails[t], i);
                ok = 0;
            }
        }

        for (k = 0, i = 1; i < in->len; i++) {
            cuts[k++] = i;
        }

        ngx_http_conductor_test_usage_run(api, in, tails[t], cuts, k, &lazy);

        if (ok && !ngx_http_conductor_test_usage_same(&lazy, &full)) {
            printf("# tail %zu, one byte at a time differs\n", tails[t]);
            ok = 0;
        }

        snprintf(desc, sizeof(desc), "%s: tail of %zu bytes, usage and "
                 "end as parsing every byte (found %d, terminal %d)",
                 name, tails[t], full.found, full.terminal);
        ngx_http_conductor_test_ok(ok && full.found && full.terminal, desc);
    }

    free(cuts);
}


/* the end of a stream: its last event, and its absence */

static void
ngx_http_conductor_test_terminal(void)
{
    size_t                         i;
    ngx_http_conductor_usage_t     u;
    ngx_http_conductor_test_buf_t  in;

    static const struct {
        const char  *stream;
        int          api;
        int          terminal;
        const char  *what;
    } cases[] = {
        { "data: {\"choices\":[{}]}\n\ndata: [DONE]\n\n",
          NGX_HTTP_CONDUCTOR_EP_CHAT, 1, "[DONE]" },
        { "data: {\"choices\":[{}]}\n\n", NGX_HTTP_CONDUCTOR_EP_CHAT, 0,
          "no [DONE]" },
        { "data: {\"choices\":[{}]}\n\ndata: {\"choices\":[{}]}\n\ndata: [DO",
          NGX_HTTP_CONDUCTOR_EP_CHAT, 0, "cut inside [DONE]" },
        { "data: {\"choices\":[{}]}\n\ndata: {\"error\": {\"message\":\"x\"}}"
          "\n\n", NGX_HTTP_CONDUCTOR_EP_CHAT, 1, "the provider's error "
          "chunk" },
        { "event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
          "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
          NGX_HTTP_CONDUCTOR_EP_MESSAGES, 1, "message_stop" },
        { "data: {\"type\":\"message_start\"}\n\n"
          "data: { \"type\" : \"message_stop\"}\n\n",
          NGX_HTTP_CONDUCTOR_EP_MESSAGES, 1, "message_stop by type" },
        { "event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
          "event: content_block_delta\ndata: {}\n\n",
          NGX_HTTP_CONDUCTOR_EP_MESSAGES, 0, "no message_stop" },
        { "event: message_start\ndata: {}\n\nevent: error\ndata: {}\n\n",
          NGX_HTTP_CONDUCTOR_EP_MESSAGES, 1, "Anthropic's error event" },
        { "event: response.created\ndata: {}\n\nevent: response.failed\n"
          "data: {}\n\n", NGX_HTTP_CONDUCTOR_EP_RESPONSES, 1,
          "response.failed" },
        { "event: response.created\ndata: {}\n\nevent: response.output_text"
          ".delta\ndata: {}\n\n", NGX_HTTP_CONDUCTOR_EP_RESPONSES, 0,
          "no response.completed" },
        { NULL, 0, 0, NULL }
    };

    for (i = 0; cases[i].stream; i++) {
        memset(&in, 0, sizeof(in));
        ngx_http_conductor_test_add(&in, cases[i].stream,
                                    strlen(cases[i].stream));
        ngx_http_conductor_test_usage_run(cases[i].api, &in, 64, NULL, 0, &u);
        ngx_http_conductor_test_ok(u.terminal == cases[i].terminal,
                                   cases[i].what);
        free(in.p);
    }
}


/* a long stream: the usage at its end is found through a small ring */

static void
ngx_http_conductor_test_tail_long(void)
{
    size_t                         i;
    ngx_http_conductor_test_buf_t  in;
    ngx_http_conductor_usage_t     full, lazy;

    memset(&in, 0, sizeof(in));

    for (i = 0; i < 3000; i++) {
        ngx_http_conductor_test_adds(&in, "data: {\"choices\":[{\"delta\":"
                                    "{\"content\":\"token \"}}]}\n\n");
    }

    ngx_http_conductor_test_adds(&in, "data: {\"choices\":[],\"usage\":"
                                "{\"prompt_tokens\":7,\"completion_tokens\":"
                                "3000,\"total_tokens\":3007}}\n\n"
                                "data: [DONE]\n\n");

    ngx_http_conductor_test_usage_run(NGX_HTTP_CONDUCTOR_EP_CHAT, &in,
                                      0, NULL, 0, &full);
    ngx_http_conductor_test_usage_run(NGX_HTTP_CONDUCTOR_EP_CHAT, &in,
                                      1024, NULL, 0, &lazy);

    ngx_http_conductor_test_ok(full.found && full.completion == 3000
                               && ngx_http_conductor_test_usage_same(&lazy,
                                                                     &full),
                               "144 KB stream, 1 KB tail: the usage at its "
                               "end");
    free(in.p);
}


int
main(void)
{
    char                                desc[200];
    ngx_http_conductor_test_buf_t       f, spelled[5];
    ngx_http_conductor_test_fixture_t  *t;
    size_t                              k;

    static const char  *names[] = {
        "as recorded", "spaced", "CRLF", "CR", "data: without a space"
    };

    ngx_http_conductor_test_strip_lines();
    ngx_http_conductor_test_strip_shapes();
    ngx_http_conductor_test_strip_long();
    ngx_http_conductor_test_terminal();
    ngx_http_conductor_test_tail_long();

    for (t = ngx_http_conductor_test_fixtures; t->file; t++) {
        f = ngx_http_conductor_test_read(t->file);

        spelled[0] = ngx_http_conductor_test_eol(&f, "\n");
        spelled[1] = ngx_http_conductor_test_spaced(&f);
        spelled[2] = ngx_http_conductor_test_eol(&f, "\r\n");
        spelled[3] = ngx_http_conductor_test_eol(&f, "\r");
        spelled[4] = ngx_http_conductor_test_nospace(&f);

        /* as recorded means the file's own bytes */
        free(spelled[0].p);
        spelled[0] = f;

        for (k = 0; k < 5; k++) {
            snprintf(desc, sizeof(desc), "%s, %s", t->file, names[k]);

            if (t->api == NGX_HTTP_CONDUCTOR_EP_CHAT
                || t->api == NGX_HTTP_CONDUCTOR_EP_COMPLETIONS)
            {
                ngx_http_conductor_test_strip_stream(desc, &spelled[k],
                                                     t->usage_only);
            }

            ngx_http_conductor_test_tail_stream(desc, t->api, &spelled[k]);
            free(spelled[k].p);
        }
    }

    printf("1..%d\n", ngx_http_conductor_test_n);

    return ngx_http_conductor_test_failed ? 1 : 0;
}
