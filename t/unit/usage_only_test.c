
/*
 * Unit tests of the usage-only test (ngx_http_conductor_usage_only_chunk)
 * on chunks where bytes and structure disagree: a "choices":[] nested in
 * another member (an object, an array, a choice) beside a top-level usage,
 * a top-level usage that is only nested, a whole usage-only chunk nested in
 * an ordinary one.  Only a top-level "choices" that is an empty array with
 * a top-level "usage" object makes the chunk; the nested ones must never
 * get a chunk with choices taken out of a stream.
 *
 * Every fixture is tried as the payload, as a "data: " and a "data:" line,
 * with JSON spaced as Python writes it, and inside a stream fed to the
 * strip scanner whole and one byte at a time (LF and CRLF): what the client
 * gets is the stream unchanged, or without just that line and its blank
 * line.  TAP output.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_conductor_strip.h"
#include "ngx_http_conductor_usage.h"


typedef struct {
    char    *p;
    size_t   len;
    size_t   size;
} ngx_http_conductor_test_buf_t;


typedef struct {
    const char  *json;
    const char  *what;
} ngx_http_conductor_test_case_t;


/* not usage-only: a chunk with choices, or no top-level usage */

static const ngx_http_conductor_test_case_t  ngx_http_conductor_test_no[] =
{
    { "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}],"
      "\"x\":{\"choices\":[]},\"usage\":{\"prompt_tokens\":1}}",
      "nested \"choices\":[] after top-level choices, top-level usage" },
    { "{\"meta\":{\"choices\":[]},\"choices\":[{\"index\":0,\"delta\":{}}],"
      "\"usage\":{\"prompt_tokens\":1}}",
      "nested \"choices\":[] before top-level choices" },
    { "{\"choices\":[{\"delta\":{}}],\"extra\":[{\"choices\":[]}],"
      "\"usage\":{\"total_tokens\":2}}",
      "\"choices\":[] in an object inside an array member" },
    { "{\"choices\":[{\"index\":0,\"choices\":[]}],"
      "\"usage\":{\"prompt_tokens\":1}}",
      "\"choices\":[] inside the top-level choice" },
    { "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":"
      "{\"choices\":[ ]}}]}}],\"usage\":{\"prompt_tokens\":1}}",
      "\"choices\":[ ] deep in a tool call" },
    { "{\"a\":{\"b\":{\"c\":{\"choices\":[]}}},"
      "\"usage\":{\"prompt_tokens\":1},\"choices\":[{\"index\":0}]}",
      "three levels down, usage before the top-level choices" },
    { "{\"choices\":[[]],\"x\":{\"choices\":[]},\"usage\":{}}",
      "top-level choices holds an empty array" },
    { "{\"choices\":[0],\"x\":{\"choices\":[]},\"usage\":{}}",
      "top-level choices holds a number" },
    { "{\"choices\":[null],\"y\":[{\"choices\":[]}],"
      "\"usage\":{\"prompt_tokens\":1}}",
      "top-level choices holds null" },
    { "{\"choices\":[\"\"],\"x\":{\"choices\":[]},\"usage\":{}}",
      "top-level choices holds an empty string" },
    { "{\"x\":{\"choices\":[]},\"usage\":{\"prompt_tokens\":1}}",
      "only a nested \"choices\":[], no top-level choices" },
    { "{\"usage\":{\"prompt_tokens\":1,\"choices\":[]}}",
      "\"choices\":[] inside the usage, no top-level choices" },
    { "{\"choices\":[],\"x\":{\"usage\":{\"prompt_tokens\":1}}}",
      "top-level choices [], the usage only nested" },
    { "{\"choices\":[],\"x\":[{\"usage\":{}}]}",
      "top-level choices [], the usage only in an array" },
    { "{\"x\":{\"choices\":[]},\"x2\":{\"usage\":{}}}",
      "both only nested" },
    { "{\"x\":{\"choices\":[],\"usage\":{\"prompt_tokens\":1}},"
      "\"choices\":[{\"index\":0}]}",
      "a whole usage-only chunk nested in an ordinary one" },
    { "{\"choices\":[{\"index\":0}],\"usage\":{\"prompt_tokens\":1},"
      "\"x\":{\"choices\":[],\"usage\":{}}}",
      "the same, nested after the top-level usage" },
    { "{\"note\":\"\\\"choices\\\":[]\",\"choices\":[{\"index\":0}],"
      "\"usage\":{}}",
      "\"choices\":[] in a string" },
    { "{\"choices\":\"[]\",\"usage\":{\"prompt_tokens\":1}}",
      "choices is the string \"[]\"" },
    { "{\"choices\":{},\"x\":{\"choices\":[]},\"usage\":{}}",
      "top-level choices an object" },
    { "{\"choices\":[],\"usage\":\"{}\"}",
      "top-level usage a string" },
    { "{\"choices\":[],\"usage\":[{}]}",
      "top-level usage an array" },
    { "{\"choices\":[{\"index\":0}],\"choices\":[],\"usage\":{}}",
      "duplicate top-level choices, non-empty first" },
    { "{\"choices\":[],\"usage\":{},\"usage\":{}}",
      "duplicate top-level usage" },
    { "{\"x\":{\"choices\":[]},\"choices\":[{\"index\":0}],\"usage\":{}",
      "unterminated" },
    { NULL, NULL }
};


/* usage-only: the top-level members decide, whatever is nested */

static const ngx_http_conductor_test_case_t  ngx_http_conductor_test_yes[] =
{
    { "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
      "\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,"
      "\"completion_tokens\":10,\"total_tokens\":29}}",
      "the OpenAI usage-only chunk" },
    { "{\"x\":{\"choices\":[{\"index\":0}]},\"choices\":[],"
      "\"usage\":{\"prompt_tokens\":1}}",
      "a nested non-empty choices before the top-level []" },
    { "{\"x\":{\"choices\":[]},\"choices\":[],"
      "\"usage\":{\"prompt_tokens\":1}}",
      "a nested [] too" },
    { "{\"usage\":{\"prompt_tokens\":1,\"choices\":[{\"a\":1}]},"
      "\"choices\":[ ]}",
      "usage first, holding a choices of its own" },
    { "{\"choices\":[],\"usage\":{\"prompt_tokens\":1},"
      "\"obfuscation\":\"choices\"}",
      "a member after usage" },
    { NULL, NULL }
};


static int  ngx_http_conductor_test_n;
static int  ngx_http_conductor_test_failed;


static void
ngx_http_conductor_test_ok(int cond, const char *what, const char *how)
{
    ngx_http_conductor_test_n++;

    if (!cond) {
        ngx_http_conductor_test_failed++;
    }

    printf("%sok %d - %s: %s\n", cond ? "" : "not ", ngx_http_conductor_test_n,
           what, how);
}


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


/* JSON as Python writes it: ", " and ": " outside strings */

static ngx_http_conductor_test_buf_t
ngx_http_conductor_test_spaced(const char *json)
{
    int                            in_string, escape;
    const char                    *c;
    ngx_http_conductor_test_buf_t  b;

    memset(&b, 0, sizeof(b));
    ngx_http_conductor_test_add(&b, "", 0);
    in_string = 0;
    escape = 0;

    for (c = json; *c; c++) {
        ngx_http_conductor_test_add(&b, c, 1);

        if (in_string) {
            if (escape) {
                escape = 0;

            } else if (*c == '\\') {
                escape = 1;

            } else if (*c == '"') {
                in_string = 0;
            }

            continue;
        }

        if (*c == '"') {
            in_string = 1;

        } else if (*c == ',' || *c == ':') {
            ngx_http_conductor_test_add(&b, " ", 1);
        }
    }

    return b;
}


/* ---------------------------------------------------------------- strip */


static void
ngx_http_conductor_test_emit(void *data, const unsigned char *p, size_t len,
    int own)
{
    (void) own;

    ngx_http_conductor_test_add(data, p, len);
}


/*
 * A chat stream around the line: a chunk with a choice before it, [DONE]
 * after it.  With with_line 0: the same stream without the line and the
 * blank line that ends its event.
 */

static ngx_http_conductor_test_buf_t
ngx_http_conductor_test_stream(const char *json, const char *eol,
    int with_line)
{
    ngx_http_conductor_test_buf_t  b;

    memset(&b, 0, sizeof(b));
    ngx_http_conductor_test_adds(&b, "data: {\"id\":\"c1\",\"choices\":"
                                 "[{\"index\":0,\"delta\":{\"content\":"
                                 "\"hi\"}}]}");
    ngx_http_conductor_test_adds(&b, eol);
    ngx_http_conductor_test_adds(&b, eol);

    if (with_line) {
        ngx_http_conductor_test_adds(&b, "data: ");
        ngx_http_conductor_test_adds(&b, json);
        ngx_http_conductor_test_adds(&b, eol);
        ngx_http_conductor_test_adds(&b, eol);
    }

    ngx_http_conductor_test_adds(&b, "data: [DONE]");
    ngx_http_conductor_test_adds(&b, eol);
    ngx_http_conductor_test_adds(&b, eol);

    return b;
}


/* what the strip scanner lets through, fed in pieces of step bytes */

static ngx_http_conductor_test_buf_t
ngx_http_conductor_test_strip(const ngx_http_conductor_test_buf_t *in,
    size_t step, uint64_t *removed)
{
    size_t                          off, n;
    unsigned char                   held[4096];
    ngx_http_conductor_strip_t      s;
    ngx_http_conductor_test_buf_t   out;

    memset(&out, 0, sizeof(out));
    ngx_http_conductor_test_add(&out, "", 0);

    ngx_http_conductor_strip_init(&s, held, sizeof(held),
                                  ngx_http_conductor_test_emit, &out);

    for (off = 0; off < in->len; off += n) {
        n = in->len - off < step ? in->len - off : step;
        ngx_http_conductor_strip_feed(&s, (const unsigned char *) in->p + off,
                                      n);
    }

    ngx_http_conductor_strip_finish(&s, 1);

    *removed = s.removed;

    return out;
}


static void
ngx_http_conductor_test_one(const char *json, const char *what, int want,
    const char *spelling)
{
    int                             ok;
    char                            how[160];
    size_t                          i, steps[] = { (size_t) -1, 1 };
    uint64_t                        removed;
    const char                     *eols[] = { "\n", "\r\n" };
    ngx_http_conductor_test_buf_t   line, in, expect, out;

    snprintf(how, sizeof(how), "%s, the payload is %susage-only", spelling,
             want ? "" : "not ");
    ngx_http_conductor_test_ok(ngx_http_conductor_usage_only_chunk(
                                   (const unsigned char *) json,
                                   strlen(json)) == want,
                               what, how);

    for (i = 0; i < 2; i++) {
        memset(&line, 0, sizeof(line));
        ngx_http_conductor_test_adds(&line, i ? "data:" : "data: ");
        ngx_http_conductor_test_adds(&line, json);

        snprintf(how, sizeof(how), "%s, as a \"%s\" line", spelling,
                 i ? "data:" : "data: ");
        ngx_http_conductor_test_ok(ngx_http_conductor_strip_usage_line(
                                       (const unsigned char *) line.p,
                                       line.len)
                                   == want,
                                   what, how);
        free(line.p);
    }

    ok = 1;

    for (i = 0; i < 2 * sizeof(steps) / sizeof(steps[0]); i++) {
        in = ngx_http_conductor_test_stream(json, eols[i / 2], 1);
        expect = ngx_http_conductor_test_stream(json, eols[i / 2], !want);
        out = ngx_http_conductor_test_strip(&in, steps[i % 2], &removed);

        if (out.len != expect.len || memcmp(out.p, expect.p, out.len) != 0
            || removed != (uint64_t) want)
        {
            ok = 0;
            printf("# %s (%s, %s, %s): got %zu bytes, %llu removed:\n# %s\n",
                   what, spelling, i / 2 ? "CRLF" : "LF",
                   i % 2 ? "byte by byte" : "whole", out.len,
                   (unsigned long long) removed, out.p);
        }

        free(in.p);
        free(expect.p);
        free(out.p);
    }

    snprintf(how, sizeof(how), "%s, in a stream through the strip scanner "
             "(LF, CRLF; whole, byte by byte): %s", spelling,
             want ? "that line and its blank line taken out"
                  : "every byte goes on");
    ngx_http_conductor_test_ok(ok, what, how);
}


static void
ngx_http_conductor_test_cases(const ngx_http_conductor_test_case_t *cases,
    int want)
{
    size_t                          i;
    ngx_http_conductor_test_buf_t   spaced;

    for (i = 0; cases[i].json; i++) {
        ngx_http_conductor_test_one(cases[i].json, cases[i].what, want,
                                    "compact");

        spaced = ngx_http_conductor_test_spaced(cases[i].json);
        ngx_http_conductor_test_one(spaced.p, cases[i].what, want, "spaced");
        free(spaced.p);
    }
}


int
main(void)
{
    ngx_http_conductor_test_cases(ngx_http_conductor_test_no, 0);
    ngx_http_conductor_test_cases(ngx_http_conductor_test_yes, 1);

    printf("1..%d\n", ngx_http_conductor_test_n);

    return ngx_http_conductor_test_failed ? 1 : 0;
}
