
/*
 * Unit tests of the JSON span scanner, TAP output.
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_conductor_json.h"


#define NGX_HTTP_CONDUCTOR_TEST_MAX  64


typedef struct {
    const char  *text;
    size_t       len;        /* 0: strlen(text) */
    int          rc;
    const char  *desc;
} ngx_http_conductor_test_case_t;


static int  ngx_http_conductor_test_n;
static int  ngx_http_conductor_test_failed;

static ngx_http_conductor_json_object_t  ngx_http_conductor_test_obj;
static ngx_http_conductor_json_member_t
    ngx_http_conductor_test_m[NGX_HTTP_CONDUCTOR_TEST_MAX];
static unsigned char  ngx_http_conductor_test_buf[64];


static int
ngx_http_conductor_test_ok(int cond, const char *fmt, ...)
{
    va_list  ap;

    ngx_http_conductor_test_n++;

    if (!cond) {
        ngx_http_conductor_test_failed++;
        printf("not ");
    }

    printf("ok %d - ", ngx_http_conductor_test_n);

    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);

    printf("\n");

    return cond;
}


static void
ngx_http_conductor_test_diag(const char *what, const unsigned char *p,
    size_t len)
{
    printf("# %s: '%.*s' (%zu bytes)\n", what, (int) len, (const char *) p,
           len);
}


/* scans s into the shared member array */

static int
ngx_http_conductor_test_scan(const char *s, size_t len)
{
    return ngx_http_conductor_json_scan_object((const unsigned char *) s, len,
               &ngx_http_conductor_test_obj, ngx_http_conductor_test_m,
               NGX_HTTP_CONDUCTOR_TEST_MAX);
}


static int
ngx_http_conductor_test_span(const unsigned char *p, size_t len,
    const char *expect)
{
    if (len == strlen(expect) && memcmp(p, expect, len) == 0) {
        return 1;
    }

    ngx_http_conductor_test_diag("got", p, len);
    printf("# expected: '%s'\n", expect);

    return 0;
}


/* string_decode of the C string s into the shared buffer, limited to size */

static long
ngx_http_conductor_test_dec(const char *s, size_t size)
{
    return ngx_http_conductor_json_string_decode((const unsigned char *) s,
                                                 strlen(s),
                                                 ngx_http_conductor_test_buf,
                                                 size);
}


/* string_decode of s gives exactly the len bytes expect */

static int
ngx_http_conductor_test_dec_is(const char *s, const char *expect, size_t len)
{
    return ngx_http_conductor_test_dec(s, 64) == (long) len
           && memcmp(ngx_http_conductor_test_buf, expect, len) == 0;
}


static int
ngx_http_conductor_test_u(const char *s, int64_t *v)
{
    return ngx_http_conductor_json_uint((const unsigned char *) s, strlen(s),
                                        v);
}


/* {"a": + depth - 1 arrays + }: depth levels of nesting */

static size_t
ngx_http_conductor_test_nest(unsigned char *buf, size_t depth)
{
    size_t  i, len;

    memcpy(buf, "{\"a\":", 5);
    len = 5;

    for (i = 1; i < depth; i++) {
        buf[len++] = '[';
    }

    for (i = 1; i < depth; i++) {
        buf[len++] = ']';
    }

    buf[len++] = '}';

    return len;
}


/* member i has this raw key, value span and type */

static int
ngx_http_conductor_test_member(size_t i, const char *key, const char *value,
    int type)
{
    ngx_http_conductor_json_member_t  *m;

    if (i >= ngx_http_conductor_test_obj.n) {
        printf("# member %zu missing (n = %zu)\n", i,
               ngx_http_conductor_test_obj.n);
        return 0;
    }

    m = &ngx_http_conductor_test_m[i];

    if (!ngx_http_conductor_test_span(m->key, m->key_len, key)
        || !ngx_http_conductor_test_span(m->value, m->value_len, value))
    {
        return 0;
    }

    if (m->start != m->key - 1 || m->start[0] != '"') {
        printf("# member %zu: start is not the key's quote\n", i);
        return 0;
    }

    if (m->type != type) {
        printf("# member %zu: type %d, expected %d\n", i, m->type, type);
        return 0;
    }

    return 1;
}


/* the string value of the last member named name decodes to expect */

static int
ngx_http_conductor_test_decoded(const char *name, const char *expect,
    size_t expect_len)
{
    long                               i, n;
    unsigned char                      buf[256];
    ngx_http_conductor_json_member_t  *m;

    i = ngx_http_conductor_json_find(ngx_http_conductor_test_m,
                                     ngx_http_conductor_test_obj.n, name);
    if (i < 0) {
        printf("# %s not found\n", name);
        return 0;
    }

    m = &ngx_http_conductor_test_m[i];

    n = ngx_http_conductor_json_string_decode(m->value, m->value_len, buf,
                                              sizeof(buf));
    if (n < 0) {
        printf("# decode of %s failed\n", name);
        return 0;
    }

    if ((size_t) n != expect_len || memcmp(buf, expect, expect_len) != 0) {
        ngx_http_conductor_test_diag("decoded", buf, (size_t) n);
        return 0;
    }

    return 1;
}


/* removes member i of s, checks the exact result and rescans it */

static int
ngx_http_conductor_test_remove(const char *s, size_t i, const char *expect)
{
    int                                 rc;
    size_t                              n, len;
    unsigned char                       out[512];
    ngx_http_conductor_json_edit_t      edit;
    ngx_http_conductor_json_object_t    obj;
    ngx_http_conductor_json_member_t    m[8];

    rc = ngx_http_conductor_json_scan_object((const unsigned char *) s,
                                             strlen(s), &obj, m, 8);
    if (rc != NGX_HTTP_CONDUCTOR_JSON_OK || i >= obj.n) {
        printf("# scan failed: %d\n", rc);
        return 0;
    }

    n = obj.n;

    ngx_http_conductor_json_member_removal(&obj, m, i, &edit.from, &edit.to);
    edit.data = NULL;
    edit.len = 0;

    len = ngx_http_conductor_json_splice((const unsigned char *) s, strlen(s),
                                         &edit, 1, out);

    if (!ngx_http_conductor_test_span(out, len, expect)) {
        return 0;
    }

    rc = ngx_http_conductor_json_scan_object(out, len, &obj, m, 8);
    if (rc != NGX_HTTP_CONDUCTOR_JSON_OK || obj.n != n - 1) {
        printf("# rescan: rc %d, n %zu\n", rc, obj.n);
        return 0;
    }

    return 1;
}


static void
ngx_http_conductor_test_openai(void)
{
    int                                rc;
    long                               i;
    int64_t                            v;
    ngx_http_conductor_json_member_t  *m;

    static const char  body[] =
        "{\n"
        "  \"model\": \"gpt-4o-mini\",\n"
        "  \"messages\": [\n"
        "    {\"role\": \"system\", \"content\": \"You are terse.\"},\n"
        "    {\"role\": \"user\", \"content\": [\n"
        "      {\"type\": \"text\", \"text\": \"Hi \\\"there\\\"\"},\n"
        "      {\"type\": \"image_url\",\n"
        "       \"image_url\": {\"url\": \"https://x.test/a.png\"}}]}\n"
        "  ],\n"
        "  \"temperature\": 0.7,\n"
        "  \"stream\": true,\n"
        "  \"stream_options\": {\"include_usage\": false},\n"
        "  \"max_tokens\": 256,\n"
        "  \"tools\": [],\n"
        "  \"user\": null,\n"
        "  \"routing\": {\"prefer\": [\"openai\", \"azure\"]}\n"
        "}\n";

    rc = ngx_http_conductor_test_scan(body, sizeof(body) - 1);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                               && ngx_http_conductor_test_obj.n == 9
                               && ngx_http_conductor_test_obj.open ==
                                  (const unsigned char *) body
                               && ngx_http_conductor_test_obj.close ==
                                  (const unsigned char *) body
                                  + sizeof(body) - 3,
                               "openai: OK, 9 members, open/close");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_member(0, "model", "\"gpt-4o-mini\"",
                                       NGX_HTTP_CONDUCTOR_JSON_STRING)
        && ngx_http_conductor_test_member(2, "temperature", "0.7",
                                          NGX_HTTP_CONDUCTOR_JSON_NUMBER)
        && ngx_http_conductor_test_member(3, "stream", "true",
                                          NGX_HTTP_CONDUCTOR_JSON_TRUE)
        && ngx_http_conductor_test_member(4, "stream_options",
                                          "{\"include_usage\": false}",
                                          NGX_HTTP_CONDUCTOR_JSON_OBJECT)
        && ngx_http_conductor_test_member(6, "tools", "[]",
                                          NGX_HTTP_CONDUCTOR_JSON_ARRAY)
        && ngx_http_conductor_test_member(7, "user", "null",
                                          NGX_HTTP_CONDUCTOR_JSON_NULL),
        "openai: member spans and types");

    m = ngx_http_conductor_test_m;

    ngx_http_conductor_test_ok(
        m[1].type == NGX_HTTP_CONDUCTOR_JSON_ARRAY
        && m[1].value[0] == '['
        && m[1].value[m[1].value_len - 1] == ']'
        && m[1].value + m[1].value_len
           == (const unsigned char *) strstr(body, "],\n  \"temp") + 1,
        "openai: messages array span ends at its ']'");

    i = ngx_http_conductor_json_find(m, 9, "max_tokens");

    ngx_http_conductor_test_ok(i == 5
                               && ngx_http_conductor_json_uint(m[i].value,
                                      m[i].value_len, &v) == 0
                               && v == 256,
                               "openai: max_tokens is 256");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_json_find(m, 9, "routing") == 8
        && ngx_http_conductor_json_find(m, 9, "role") == -1
        && ngx_http_conductor_json_find(m, 9, "url") == -1
        && ngx_http_conductor_json_find(m, 9, "include_usage") == -1,
        "openai: nested keys are not top-level members");
}


static void
ngx_http_conductor_test_anthropic(void)
{
    int                                rc;
    ngx_http_conductor_json_object_t   sub;
    ngx_http_conductor_json_member_t  *m, sm[8];

    static const char  body[] =
        "{\"model\":\"claude-sonnet-4-20250514\",\"max_tokens\":1024,"
        "\"system\":[{\"type\":\"text\",\"text\":\"Be brief.\","
        "\"cache_control\":{\"type\":\"ephemeral\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"Hello, "
        "\\u4e16\\u754c \\ud83d\\ude00\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\","
        "\"id\":\"toolu_01\",\"name\":\"get_weather\","
        "\"input\":{\"city\":\"Paris\",\"days\":3}}]}],"
        "\"tools\":[{\"name\":\"get_weather\",\"input_schema\":"
        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
        "\"string\"}},\"required\":[\"city\"]}}],"
        "\"stream\":false,\"temperature\":1,"
        "\"metadata\":{\"user_id\":\"u-42\"}}";

    rc = ngx_http_conductor_test_scan(body, sizeof(body) - 1);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                               && ngx_http_conductor_test_obj.n == 8,
                               "anthropic: OK, 8 members");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_member(0, "model",
                                       "\"claude-sonnet-4-20250514\"",
                                       NGX_HTTP_CONDUCTOR_JSON_STRING)
        && ngx_http_conductor_test_member(1, "max_tokens", "1024",
                                          NGX_HTTP_CONDUCTOR_JSON_NUMBER)
        && ngx_http_conductor_test_member(5, "stream", "false",
                                          NGX_HTTP_CONDUCTOR_JSON_FALSE)
        && ngx_http_conductor_test_member(6, "temperature", "1",
                                          NGX_HTTP_CONDUCTOR_JSON_NUMBER)
        && ngx_http_conductor_test_member(7, "metadata",
                                          "{\"user_id\":\"u-42\"}",
                                          NGX_HTTP_CONDUCTOR_JSON_OBJECT),
        "anthropic: member spans and types");

    m = ngx_http_conductor_test_m;

    ngx_http_conductor_test_ok(
        ngx_http_conductor_json_find(m, 8, "messages") == 3
        && ngx_http_conductor_json_find(m, 8, "system") == 2
        && ngx_http_conductor_json_find(m, 8, "tools") == 4
        && ngx_http_conductor_json_find(m, 8, "input") == -1
        && ngx_http_conductor_json_find(m, 8, "name") == -1,
        "anthropic: find top-level only");

    rc = ngx_http_conductor_json_scan_object(m[7].value, m[7].value_len,
                                             &sub, sm, 8);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                               && sub.n == 1
                               && sub.open == m[7].value
                               && sub.close
                                  == m[7].value + m[7].value_len - 1
                               && ngx_http_conductor_json_key_is(&sm[0],
                                                                 "user_id")
                               && ngx_http_conductor_test_span(sm[0].value,
                                      sm[0].value_len, "\"u-42\""),
                               "anthropic: metadata rescanned");
}


static void
ngx_http_conductor_test_escapes(void)
{
    int                                rc;
    unsigned char                      buf[8];
    ngx_http_conductor_json_member_t  *m;

    static const char  body[] =
        "{\"mod\\u0065l\":\"gpt\\u002d4o\",\"\\\"q\\\"\":1,"
        "\"a\\/b\":\"x\\\"y\\\\z\\/\\b\\f\\n\\r\\t\","
        "\"\\u00e9t\\u00C9\":\"caf\\u00e9 \\u20ac \\ud83d\\ude00 "
        "\\uD834\\uDD1E\","
        "\"raw\":\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\","
        "\"nul\\u0000\":\"a\\u0000b\"}";

    m = ngx_http_conductor_test_m;

    rc = ngx_http_conductor_test_scan(body, sizeof(body) - 1);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                               && ngx_http_conductor_test_obj.n == 6,
                               "escapes: OK, 6 members");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_member(0, "mod\\u0065l", "\"gpt\\u002d4o\"",
                                       NGX_HTTP_CONDUCTOR_JSON_STRING)
        && m[0].key_len == 10
        && ngx_http_conductor_json_find(m, 6, "model") == 0,
        "escapes: \"mod\\u0065l\" is found by find(\"model\")");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_json_key_is(&m[0], "model")
        && !ngx_http_conductor_json_key_is(&m[0], "mode")
        && !ngx_http_conductor_json_key_is(&m[0], "models")
        && !ngx_http_conductor_json_key_is(&m[0], "mod\\u0065l")
        && !ngx_http_conductor_json_key_is(&m[0], "")
        && ngx_http_conductor_json_key_is(&m[1], "\"q\"")
        && ngx_http_conductor_json_key_is(&m[2], "a/b")
        && ngx_http_conductor_json_key_is(&m[3], "\xc3\xa9t\xc3\x89")
        && ngx_http_conductor_json_key_is(&m[4], "raw"),
        "escapes: key_is decodes escapes in keys");

    ngx_http_conductor_test_ok(
        !ngx_http_conductor_json_key_is(&m[5], "nul")
        && ngx_http_conductor_json_find(m, 6, "nul") == -1,
        "escapes: key with \\u0000 never matches a C string prefix");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_decoded("model", "gpt-4o", 6),
        "escapes: value \"gpt\\u002d4o\" decodes to gpt-4o");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_decoded("a/b", "x\"y\\z/\b\f\n\r\t", 11),
        "escapes: all short escapes decode");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_decoded("\xc3\xa9t\xc3\x89",
            "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf0\x9d\x84\x9e",
            19),
        "escapes: \\u to 2, 3 and 4 byte UTF-8, surrogate pairs");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_decoded("raw",
            "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80", 15),
        "escapes: raw UTF-8 passes through");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_json_string_decode(m[5].value, m[5].value_len,
                                              buf, sizeof(buf)) == 3
        && memcmp(buf, "a\0b", 3) == 0,
        "escapes: \\u0000 decodes to a NUL byte");
}


static void
ngx_http_conductor_test_decode_errors(void)
{
    int  rc;

    static const char  lone[] =
        "{\"a\":\"\\ud800\",\"b\":\"\\udc00\",\"c\":\"\\ud800\\u0041\","
        "\"d\":\"\\ud800\\ud800\",\"e\":\"x\\ud83d\"}";

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_dec("\"abcd\"", 4) == 4
        && memcmp(ngx_http_conductor_test_buf, "abcd", 4) == 0
        && ngx_http_conductor_test_dec("\"abcd\"", 3) == -1
        && ngx_http_conductor_test_dec("\"\\u20ac\"", 2) == -1
        && ngx_http_conductor_test_dec("\"\\u20ac\"", 3) == 3
        && ngx_http_conductor_json_string_decode(
               (const unsigned char *) "\"\"", 2, NULL, 0) == 0,
        "decode: output size is respected");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_dec("abc", 64) == -1
        && ngx_http_conductor_test_dec("\"", 64) == -1
        && ngx_http_conductor_test_dec("", 64) == -1
        && ngx_http_conductor_test_dec("\"a\\\"", 64) == -1
        && ngx_http_conductor_test_dec("\"a\"b\"", 64) == -1
        && ngx_http_conductor_test_dec("\"a\nb\"", 64) == -1
        && ngx_http_conductor_test_dec("\"\\x\"", 64) == -1
        && ngx_http_conductor_test_dec("\"\\u12\"", 64) == -1
        && ngx_http_conductor_test_dec("\"\\u12g4\"", 64) == -1
        && ngx_http_conductor_test_dec("123", 64) == -1,
        "decode: invalid spans give -1");

    rc = ngx_http_conductor_test_scan(lone, sizeof(lone) - 1);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                               && ngx_http_conductor_test_obj.n == 5,
                               "surrogates: lone surrogates scan as valid");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_dec("\"\\ud800\"", 64) == -1
        && ngx_http_conductor_test_dec("\"\\udc00\"", 64) == -1
        && ngx_http_conductor_test_dec("\"\\ud800\\u0041\"", 64) == -1
        && ngx_http_conductor_test_dec("\"\\ud800\\ud800\"", 64) == -1
        && ngx_http_conductor_test_dec("\"\\ud800\\ue000\"", 64) == -1
        && ngx_http_conductor_test_dec("\"x\\ud83d\"", 64) == -1
        && ngx_http_conductor_test_dec("\"\\ud83dx\"", 64) == -1
        && ngx_http_conductor_test_dec("\"\\udfff\\ud800\"", 64) == -1,
        "surrogates: string_decode rejects lone surrogates with -1");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_dec_is("\"\\ud800\\udc00\"",
                                       "\xf0\x90\x80\x80", 4)
        && ngx_http_conductor_test_dec_is("\"\\uDBFF\\uDFFF\"",
                                          "\xf4\x8f\xbf\xbf", 4)
        && ngx_http_conductor_test_dec_is("\"\\u007f\\u0080\"",
                                          "\x7f\xc2\x80", 3)
        && ngx_http_conductor_test_dec_is("\"\\u07FF\\u0800\"",
                                          "\xdf\xbf\xe0\xa0\x80", 5)
        && ngx_http_conductor_test_dec_is("\"\\uffff\"", "\xef\xbf\xbf", 3),
        "surrogates: boundary code points U+10000, U+10FFFF, U+7F..U+FFFF");

    rc = ngx_http_conductor_test_scan(
        "{\"bad\":\"\xff\xfe\xc0\xaf\xed\xa0\x80\"}", 17);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                               && ngx_http_conductor_test_decoded("bad",
                                      "\xff\xfe\xc0\xaf\xed\xa0\x80", 7),
                               "utf-8: invalid bytes accepted, passed as is");
}


static void
ngx_http_conductor_test_nested(void)
{
    int                                rc;
    ngx_http_conductor_json_object_t   sub;
    ngx_http_conductor_json_member_t   sm[8];

    static const char  body[] =
        "{\"a\":{\"model\":\"x\",\"b\":[{\"model\":1},[[\"model\"]]]},"
        "\"c\":[1,{\"d\":{\"e\":{}}},[]],\"f\":{}}";

    rc = ngx_http_conductor_test_scan(body, sizeof(body) - 1);

    ngx_http_conductor_test_ok(
        rc == NGX_HTTP_CONDUCTOR_JSON_OK
        && ngx_http_conductor_test_obj.n == 3
        && ngx_http_conductor_test_member(0, "a",
               "{\"model\":\"x\",\"b\":[{\"model\":1},[[\"model\"]]]}",
               NGX_HTTP_CONDUCTOR_JSON_OBJECT)
        && ngx_http_conductor_test_member(1, "c", "[1,{\"d\":{\"e\":{}}},[]]",
                                          NGX_HTTP_CONDUCTOR_JSON_ARRAY)
        && ngx_http_conductor_test_member(2, "f", "{}",
                                          NGX_HTTP_CONDUCTOR_JSON_OBJECT),
        "nested: only top-level members, exact value spans");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_json_find(ngx_http_conductor_test_m, 3, "model")
        == -1
        && ngx_http_conductor_json_find(ngx_http_conductor_test_m, 3, "d")
           == -1,
        "nested: find(\"model\") does not see nested members");

    rc = ngx_http_conductor_json_scan_object(ngx_http_conductor_test_m[0].value,
             ngx_http_conductor_test_m[0].value_len, &sub, sm, 8);

    ngx_http_conductor_test_ok(
        rc == NGX_HTTP_CONDUCTOR_JSON_OK
        && sub.n == 2
        && sub.open == ngx_http_conductor_test_m[0].value
        && ngx_http_conductor_json_find(sm, 2, "model") == 0
        && ngx_http_conductor_test_span(sm[0].value, sm[0].value_len,
                                        "\"x\"")
        && ngx_http_conductor_test_span(sm[1].value, sm[1].value_len,
                                        "[{\"model\":1},[[\"model\"]]]"),
        "nested: member's object value span scanned again");

    rc = ngx_http_conductor_json_scan_object(ngx_http_conductor_test_m[2].value,
             ngx_http_conductor_test_m[2].value_len, &sub, sm, 8);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK && sub.n == 0
                               && sub.close == sub.open + 1,
                               "nested: empty object value scanned again");

    rc = ngx_http_conductor_json_scan_object(ngx_http_conductor_test_m[1].value,
             ngx_http_conductor_test_m[1].value_len, &sub, sm, 8);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT,
                               "nested: array value span is NOT_OBJECT");
}


static void
ngx_http_conductor_test_whitespace(void)
{
    int  rc;

    static const char  body[] =
        " \t\r\n{ \n\"a\" \t: \r 1 , \"b\" :[ 1 ,\t2 ,{ \"x\" : [ ] } ]"
        "\r\n,\"c\":{ } ,\"d\"\n:\n\"s p\"\n}\n\t ";

    rc = ngx_http_conductor_test_scan(body, sizeof(body) - 1);

    ngx_http_conductor_test_ok(
        rc == NGX_HTTP_CONDUCTOR_JSON_OK
        && ngx_http_conductor_test_obj.n == 4
        && ngx_http_conductor_test_obj.open == (const unsigned char *) body + 4
        && *ngx_http_conductor_test_obj.close == '}'
        && ngx_http_conductor_test_obj.close
           == (const unsigned char *) body + sizeof(body) - 5
        && ngx_http_conductor_test_member(0, "a", "1",
                                          NGX_HTTP_CONDUCTOR_JSON_NUMBER)
        && ngx_http_conductor_test_member(1, "b",
                                          "[ 1 ,\t2 ,{ \"x\" : [ ] } ]",
                                          NGX_HTTP_CONDUCTOR_JSON_ARRAY)
        && ngx_http_conductor_test_member(2, "c", "{ }",
                                          NGX_HTTP_CONDUCTOR_JSON_OBJECT)
        && ngx_http_conductor_test_member(3, "d", "\"s p\"",
                                          NGX_HTTP_CONDUCTOR_JSON_STRING),
        "whitespace: allowed everywhere, not part of spans");

    rc = ngx_http_conductor_test_scan(" { } ", 5);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                               && ngx_http_conductor_test_obj.n == 0,
                               "whitespace: { } has no member");
}


static void
ngx_http_conductor_test_duplicates(void)
{
    int  rc;

    static const char  body[] =
        "{\"model\":\"a\",\"x\":0,\"model\":\"b\",\"m\\u006fdel\":\"c\"}";

    rc = ngx_http_conductor_test_scan(body, sizeof(body) - 1);

    ngx_http_conductor_test_ok(
        rc == NGX_HTTP_CONDUCTOR_JSON_OK
        && ngx_http_conductor_test_obj.n == 4
        && ngx_http_conductor_test_member(0, "model", "\"a\"",
                                          NGX_HTTP_CONDUCTOR_JSON_STRING)
        && ngx_http_conductor_test_member(2, "model", "\"b\"",
                                          NGX_HTTP_CONDUCTOR_JSON_STRING)
        && ngx_http_conductor_json_find(ngx_http_conductor_test_m, 4, "model")
           == 3
        && ngx_http_conductor_json_find(ngx_http_conductor_test_m, 3, "model")
           == 2,
        "duplicates: all reported, find returns the last");
}


static void
ngx_http_conductor_test_numbers(void)
{
    size_t       i;
    const char  *s;
    char         body[128];
    int          rc;

    static const char  *good[] = {
        "1e400", "123456789012345678901234567890", "-0.0", "-0", "0",
        "1E+2", "1.5e-10", "-12.25E007", "0e0", "9223372036854775808",
        "-123456789012345678901234567890.5e-400"
    };

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        s = good[i];
        snprintf(body, sizeof(body), "{\"n\":%s}", s);

        rc = ngx_http_conductor_test_scan(body, strlen(body));

        ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                                   && ngx_http_conductor_test_member(0, "n",
                                          s, NGX_HTTP_CONDUCTOR_JSON_NUMBER),
                                   "number %s accepted as NUMBER", s);
    }
}


static void
ngx_http_conductor_test_errors(void)
{
    int       rc;
    size_t    i, len;
    ngx_http_conductor_test_case_t  *c;

    static const char  *names[] = {
        "OK", "SYNTAX", "NOT_OBJECT", "TOO_DEEP", "TOO_MANY"
    };

    static ngx_http_conductor_test_case_t  cases[] = {
        { "", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "empty input" },
        { " \n\t ", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "whitespace only" },
        { "{", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "unclosed object" },
        { "}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "lone close" },
        { "{\"a\"}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "key without value" },
        { "{\"a\":}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "missing value" },
        { "{\"a\" 1}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "missing colon" },
        { "{\"a\":1,}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "trailing comma" },
        { "{,}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "lone comma" },
        { "{\"a\":1 \"b\":2}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "missing comma" },
        { "{1:2}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "number key" },
        { "{'a':1}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "single quotes" },
        { "{a:1}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "bare key" },
        { "{\"a\":1}x", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "trailing garbage" },
        { "{\"a\":1}{}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "two objects" },
        { "{\"a\":1}}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "extra close" },
        { "{\"a\":1]", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "mismatched close" },
        { "{\"a\":[1}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "mismatched array close" },
        { "{\"a\":[1 2]}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "array missing comma" },
        { "{\"a\":[1,]}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "array trailing comma" },
        { "{\"a\":[,1]}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "array leading comma" },
        { "{\"a\":01}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "leading zero" },
        { "{\"a\":-01}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "negative leading zero" },
        { "{\"a\":+1}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "plus sign" },
        { "{\"a\":.5}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "no integer part" },
        { "{\"a\":1.}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "no fraction" },
        { "{\"a\":1e}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "no exponent" },
        { "{\"a\":1e+}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "exponent sign only" },
        { "{\"a\":-}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "minus only" },
        { "{\"a\":- 1}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "minus space" },
        { "{\"a\":0x10}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "hex number" },
        { "{\"a\":NaN}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "NaN" },
        { "{\"a\":Infinity}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "Infinity" },
        { "{\"a\":-Infinity}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "-Infinity" },
        { "{\"a\":tru}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "truncated true" },
        { "{\"a\":True}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "True" },
        { "{\"a\":nul}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "truncated null" },
        { "{\"a\":falsey}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "literal followed by letters" },
        { "{\"a\":\"b}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "unterminated string" },
        { "{\"a\":\"b\\\"}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "string ending in an escaped quote" },
        { "{\"a\":\"\x01\"}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "raw control character in a value" },
        { "{\"a\nb\":1}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "raw newline in a key" },
        { "{\"a\":\"\x1f\"}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "raw 0x1f in a string" },
        { "{\"a\":\"\\q\"}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "unknown escape" },
        { "{\"a\":\"\\'\"}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "escaped single quote" },
        { "{\"a\":\"\\u12\"}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "short \\u escape" },
        { "{\"a\":\"\\u12G4\"}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "non-hex \\u escape" },
        { "{\"a\":\"\\U0041\"}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "upper-case \\U" },
        { "{\"a\":\"x\\", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "backslash at the end of input" },
        { "{\"a\":1,\"b\":\0}", 13, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "NUL byte as a value" },
        { "{\"a\":\"\0\"}", 9, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "raw NUL in a string" },
        { "\f{}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "form feed whitespace" },
        { "{\v}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "vertical tab" },
        { "{\"a\":\xc2\xa0" "1}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "no-break space" },
        { "\xef\xbb\xbf{}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "UTF-8 BOM" },
        { "{\"a\":1} /* c */", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "comment" },
        { "[", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "unclosed array" },
        { "[1,2", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX, "truncated array" },
        { "\"abc", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "unterminated top-level string" },
        { "[1] x", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "invalid non-object is SYNTAX, not NOT_OBJECT" },
        { "[1,2]", 0, NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT, "array" },
        { " [] ", 0, NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT, "empty array" },
        { "\"str\"", 0, NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT, "string" },
        { "42", 0, NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT, "number" },
        { "-0.5e3", 0, NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT, "real number" },
        { "true", 0, NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT, "true" },
        { "null", 0, NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT, "null" },
        { "[{\"a\":1}]", 0, NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT,
          "array of objects" },
        { "{\"a\":1,\"b\":2,\"c\":3}", 0, NGX_HTTP_CONDUCTOR_JSON_TOO_MANY,
          "more members than max" },
        { "{\"a\":1,\"b\":2,\"c\":}", 0, NGX_HTTP_CONDUCTOR_JSON_SYNTAX,
          "invalid with more members than max is SYNTAX" },
        { "{\"a\":1,\"b\":{\"x\":1,\"y\":2,\"z\":3}}", 0,
          NGX_HTTP_CONDUCTOR_JSON_OK,
          "nested members do not count towards max" },
        { "{\"a\":{\"x\":[1]}} \r\n", 0, NGX_HTTP_CONDUCTOR_JSON_OK,
          "trailing whitespace" },
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        c = &cases[i];
        len = c->len ? c->len : strlen(c->text);

        rc = ngx_http_conductor_json_scan_object(
                 (const unsigned char *) c->text, len,
                 &ngx_http_conductor_test_obj, ngx_http_conductor_test_m, 2);

        if (!ngx_http_conductor_test_ok(rc == c->rc, "%s: %s",
                                        names[c->rc], c->desc))
        {
            printf("# got %d\n", rc);
        }
    }

    rc = ngx_http_conductor_json_scan_object(
             (const unsigned char *) "{\"a\":1,\"b\":2,\"c\":3}", 19,
             &ngx_http_conductor_test_obj, ngx_http_conductor_test_m, 2);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_TOO_MANY
                               && ngx_http_conductor_test_obj.n == 2
                               && *ngx_http_conductor_test_obj.open == '{'
                               && ngx_http_conductor_test_obj.close
                                  == ngx_http_conductor_test_obj.open + 18
                               && ngx_http_conductor_test_member(1, "b", "2",
                                      NGX_HTTP_CONDUCTOR_JSON_NUMBER),
                               "TOO_MANY: n is max, the first max are filled");

    rc = ngx_http_conductor_json_scan_object(
             (const unsigned char *) "{}", 2, &ngx_http_conductor_test_obj,
             NULL, 0);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                               && ngx_http_conductor_test_obj.n == 0,
                               "max 0 with an empty object");

    rc = ngx_http_conductor_json_scan_object(NULL, 0,
             &ngx_http_conductor_test_obj, ngx_http_conductor_test_m, 2);

    ngx_http_conductor_test_ok(
        rc == NGX_HTTP_CONDUCTOR_JSON_SYNTAX
        && ngx_http_conductor_test_obj.open == NULL
        && ngx_http_conductor_test_obj.n == 0
        && ngx_http_conductor_json_splice(NULL, 0, NULL, 0, NULL) == 0
        && ngx_http_conductor_json_escape_len(NULL, 0) == 2,
        "(NULL, 0) is empty input, no pointer arithmetic on NULL");
}


static void
ngx_http_conductor_test_depth(void)
{
    int             rc;
    size_t          i, len, big;
    unsigned char  *buf;

    big = 10 * 1024 * 1024;

    buf = malloc(big);
    if (buf == NULL) {
        ngx_http_conductor_test_ok(0, "depth: malloc");
        return;
    }

    memset(buf, '[', big);

    rc = ngx_http_conductor_test_scan((const char *) buf, big);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_TOO_DEEP,
                               "depth: 10 MB of '[' is TOO_DEEP");

    for (i = 0; i + 5 <= big; i += 5) {
        memcpy(buf + i, "{\"a\":", 5);
    }

    rc = ngx_http_conductor_test_scan((const char *) buf, i);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_TOO_DEEP,
                               "depth: 10 MB of '{\"a\":' is TOO_DEEP");

    /* exactly MAX_DEPTH levels: the object and 63 arrays */

    len = ngx_http_conductor_test_nest(buf, NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH);

    rc = ngx_http_conductor_test_scan((const char *) buf, len);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                               && ngx_http_conductor_test_obj.n == 1
                               && ngx_http_conductor_test_m[0].value_len
                                  == 2 * (NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH
                                          - 1),
                               "depth: %d levels accepted",
                               NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH);

    len = ngx_http_conductor_test_nest(buf,
                                       NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH + 1);

    rc = ngx_http_conductor_test_scan((const char *) buf, len);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_TOO_DEEP,
                               "depth: %d levels is TOO_DEEP",
                               NGX_HTTP_CONDUCTOR_JSON_MAX_DEPTH + 1);

    free(buf);
}


static void
ngx_http_conductor_test_big(void)
{
    int             rc, bad;
    size_t          i, k, len, big;
    unsigned char  *buf;

    static const unsigned char  stop[] = "\x01\t\n\x1f\"\\";
    static const unsigned char  plain[] = " !#[]\x7f\x80\xa2\xdc\xff";

    /* a long prompt: the word-at-a-time path, with escapes now and then */

    big = 4 * 1024 * 1024;

    buf = malloc(2 * big);
    if (buf == NULL) {
        ngx_http_conductor_test_ok(0, "big: malloc");
        return;
    }

    len = 0;
    memcpy(buf, "{\"messages\":[\"", 14);
    len = 14;

    for (i = 0; i < big; i++) {
        buf[len++] = (i % 997 == 0) ? '\\' : (unsigned char) ('a' + i % 26);

        if (buf[len - 1] == '\\') {
            buf[len++] = 'n';
        }
    }

    memcpy(buf + len, "\"],\"model\":\"m\"}", 15);
    len += 15;

    rc = ngx_http_conductor_test_scan((const char *) buf, len);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                               && ngx_http_conductor_test_obj.n == 2
                               && ngx_http_conductor_test_m[0].value_len
                                  == len - 25
                               && ngx_http_conductor_test_member(1, "model",
                                      "\"m\"",
                                      NGX_HTTP_CONDUCTOR_JSON_STRING),
                               "big: 4 MB string value scanned");

    /*
     * every byte that ends a plain run, at every offset of the 8-byte
     * words, is seen (a quote or a backslash there makes the body invalid),
     * and the bytes around them are not taken for one
     */

    bad = 0;

    for (i = 0; i < 24; i++) {
        for (k = 0; k < sizeof(stop) - 1; k++) {
            memcpy(buf, "{\"a\":\"0123456789ACDEGHIJKLMOPQ\"}", 32);
            buf[6 + i] = (unsigned char) stop[k];

            rc = ngx_http_conductor_test_scan((const char *) buf, 32);
            if (rc != NGX_HTTP_CONDUCTOR_JSON_SYNTAX) {
                printf("# 0x%02x at %zu: %d\n", stop[k], i, rc);
                bad++;
            }
        }

        for (k = 0; k < sizeof(plain) - 1; k++) {
            memcpy(buf, "{\"a\":\"0123456789ACDEGHIJKLMOPQ\"}", 32);
            buf[6 + i] = (unsigned char) plain[k];

            rc = ngx_http_conductor_test_scan((const char *) buf, 32);
            if (rc != NGX_HTTP_CONDUCTOR_JSON_OK) {
                printf("# 0x%02x at %zu: %d\n", plain[k], i, rc);
                bad++;
            }
        }
    }

    ngx_http_conductor_test_ok(bad == 0,
                               "big: string end bytes found at any offset");

    free(buf);
}


/*
 * Every byte value at every offset of strings of 0 to 140 bytes, as a
 * value, as a key and as the top-level value, in documents of up to 150
 * bytes: the 16-byte first look, the 64- and 32-byte blocks, the window
 * on the last 32 bytes of the document and the path of documents under 32
 * bytes all end a string at the same bytes.
 */

static void
ngx_http_conductor_test_string_bytes(void)
{
    int                                rc, expect, bad;
    size_t                             len, i, b, nb;
    unsigned char                      doc[160];
    ngx_http_conductor_json_member_t  *m;

    static const unsigned char  some[] = {
        0x00, 0x01, 0x09, 0x0a, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x2f, 0x5b,
        0x5c, 0x5d, 0x7f, 0x80, 0x9f, 0xa2, 0xc0, 0xdc, 0xfe, 0xff
    };

    m = ngx_http_conductor_test_m;
    bad = 0;

    for (len = 0; len <= 140; len++) {
        for (i = 0; i <= len; i++) {

            /* all 256 bytes up to 70, then the ones near a boundary */

            nb = (i == len) ? 1 : (len <= 70) ? 256 : sizeof(some);

            for (b = 0; b < nb; b++) {

                /* i == len: no byte changed, the plain string */

                memset(doc, 'x', sizeof(doc));

                if (i < len) {
                    doc[6 + i] = (len <= 70) ? (unsigned char) b : some[b];
                }

                expect = NGX_HTTP_CONDUCTOR_JSON_OK;

                if (i < len && (doc[6 + i] < 0x20 || doc[6 + i] == '"'
                                || doc[6 + i] == '\\'))
                {
                    expect = NGX_HTTP_CONDUCTOR_JSON_SYNTAX;
                }

                /* {"a":"...."} */

                memcpy(doc, "{\"a\":\"", 6);
                memcpy(doc + 6 + len, "\"}", 2);

                rc = ngx_http_conductor_test_scan((const char *) doc,
                                                  len + 8);

                if (rc != expect
                    || (rc == NGX_HTTP_CONDUCTOR_JSON_OK
                        && (m[0].value_len != len + 2
                            || m[0].type != NGX_HTTP_CONDUCTOR_JSON_STRING)))
                {
                    if (bad++ < 5) {
                        printf("# value: 0x%02x at %zu of %zu: %d\n",
                               doc[6 + i], i, len, rc);
                    }
                }

                /* {"....":1}, the same bytes as a key */

                memmove(doc + 2, doc + 6, len);
                memcpy(doc, "{\"", 2);
                memcpy(doc + 2 + len, "\":1}", 4);

                rc = ngx_http_conductor_test_scan((const char *) doc,
                                                  len + 6);

                if (rc != expect
                    || (rc == NGX_HTTP_CONDUCTOR_JSON_OK
                        && (m[0].key_len != len || m[0].key_escaped
                            || m[0].value_len != 1)))
                {
                    if (bad++ < 5) {
                        printf("# key: 0x%02x at %zu of %zu: %d\n",
                               doc[2 + i], i, len, rc);
                    }
                }

                /* "....", the string is the whole document */

                doc[1] = '"';
                doc[2 + len] = '"';

                rc = ngx_http_conductor_test_scan((const char *) doc + 1,
                                                  len + 2);

                if (rc != (expect == NGX_HTTP_CONDUCTOR_JSON_OK
                           ? NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT : expect))
                {
                    if (bad++ < 5) {
                        printf("# top: 0x%02x at %zu of %zu: %d\n",
                               doc[2 + i], i, len, rc);
                    }
                }
            }
        }
    }

    ngx_http_conductor_test_ok(bad == 0,
                               "strings: end bytes found at any offset, in "
                               "documents of any length");
}


/*
 * Each escape, valid or not, at every offset of strings of 0 to 140
 * bytes, as a value and as a key, around and across the 16, 32 and 64
 * byte blocks.
 */

static void
ngx_http_conductor_test_string_escapes(void)
{
    int                                rc, bad;
    long                               n;
    size_t                             len, i, k, el, dl;
    unsigned char                      doc[200], dec[200], name[200];
    ngx_http_conductor_json_member_t  *m;

    static const struct {
        const char  *esc;
        const char  *dec;            /* NULL: invalid */
        size_t       dec_len;
    } escs[] = {
        { "\\n", "\n", 1 },
        { "\\\"", "\"", 1 },
        { "\\\\", "\\", 1 },
        { "\\/", "/", 1 },
        { "\\b", "\b", 1 },
        { "\\f", "\f", 1 },
        { "\\r", "\r", 1 },
        { "\\t", "\t", 1 },
        { "\\u00e9", "\xc3\xa9", 2 },
        { "\\uD83D\\uDE00", "\xf0\x9f\x98\x80", 4 },
        { "\\\\\\\"", "\\\"", 2 },
        { "\\\\\\\\", "\\\\", 2 },
        { "\\\"\\\"\\\"", "\"\"\"", 3 },
        { "\\", NULL, 0 },
        { "\\x", NULL, 0 },
        { "\\'", NULL, 0 },
        { "\\u12", NULL, 0 },
        { "\\u12G4", NULL, 0 },
        { "\\U0041", NULL, 0 },
        { "\\\x01", NULL, 0 },
        { "\\\"\x1f", NULL, 0 }
    };

    m = ngx_http_conductor_test_m;
    bad = 0;

    for (k = 0; k < sizeof(escs) / sizeof(escs[0]); k++) {
        el = strlen(escs[k].esc);

        for (len = 0; len <= 140; len++) {
            for (i = 0; i <= len; i++) {

                /* {"a":"xx<esc>xxx"} */

                memcpy(doc, "{\"a\":\"", 6);
                memset(doc + 6, 'x', i);
                memcpy(doc + 6 + i, escs[k].esc, el);
                memset(doc + 6 + i + el, 'x', len - i);
                memcpy(doc + 6 + len + el, "\"}", 2);
                dl = len + el + 8;

                rc = ngx_http_conductor_test_scan((const char *) doc, dl);

                if (escs[k].dec == NULL) {
                    if (rc != NGX_HTTP_CONDUCTOR_JSON_SYNTAX && bad++ < 5) {
                        printf("# %s at %zu of %zu: %d\n", escs[k].esc, i,
                               len, rc);
                    }

                    continue;
                }

                n = -1;

                if (rc == NGX_HTTP_CONDUCTOR_JSON_OK
                    && m[0].value_len == len + el + 2)
                {
                    n = ngx_http_conductor_json_string_decode(m[0].value,
                            m[0].value_len, dec, sizeof(dec));
                }

                memset(name, 'x', i);
                memcpy(name + i, escs[k].dec, escs[k].dec_len);
                memset(name + i + escs[k].dec_len, 'x', len - i);
                name[len + escs[k].dec_len] = '\0';

                if (n != (long) (len + escs[k].dec_len)
                    || memcmp(dec, name, n) != 0)
                {
                    if (bad++ < 5) {
                        printf("# %s at %zu of %zu: %d, decoded %ld\n",
                               escs[k].esc, i, len, rc, n);
                    }

                    continue;
                }

                /* {"xx<esc>xxx":1}: flagged, and key_is() decodes it */

                memmove(doc + 2, doc + 6, len + el);
                memcpy(doc, "{\"", 2);
                memcpy(doc + 2 + len + el, "\":1}", 4);

                rc = ngx_http_conductor_test_scan((const char *) doc,
                                                  len + el + 6);

                if (rc != NGX_HTTP_CONDUCTOR_JSON_OK
                    || m[0].key_len != len + el || !m[0].key_escaped
                    || !ngx_http_conductor_json_key_is(&m[0], (char *) name))
                {
                    if (bad++ < 5) {
                        printf("# key %s at %zu of %zu: %d\n", escs[k].esc,
                               i, len, rc);
                    }

                    continue;
                }

                name[len + escs[k].dec_len - 1] = '\0';

                if (ngx_http_conductor_json_key_is(&m[0], (char *) name)
                    && bad++ < 5)
                {
                    printf("# key %s at %zu of %zu: matches a shorter name\n",
                           escs[k].esc, i, len);
                }
            }
        }
    }

    ngx_http_conductor_test_ok(bad == 0,
                               "strings: escapes at any offset, valid and "
                               "not, in values and keys");
}


/* only space, tab, LF and CR are whitespace, wherever whitespace may be */

static void
ngx_http_conductor_test_ws_bytes(void)
{
    int            rc, ws, bad;
    size_t         g, b, i, k, len, gaps;
    unsigned char  doc[64];

    static const char  t[] = "@{@\"a\"@:@[@true@,@\"s\"@]@,@\"b\"@:@{@}@}@";

    bad = 0;
    gaps = 0;

    for (i = 0; t[i]; i++) {
        gaps += (t[i] == '@');
    }

    for (g = 0; g < gaps; g++) {
        for (b = 0; b < 256; b++) {
            len = 0;
            k = 0;

            for (i = 0; t[i]; i++) {
                if (t[i] != '@') {
                    doc[len++] = (unsigned char) t[i];

                } else if (k++ == g) {
                    doc[len++] = (unsigned char) b;
                }
            }

            rc = ngx_http_conductor_json_scan_object(doc, len,
                     &ngx_http_conductor_test_obj, ngx_http_conductor_test_m,
                     NGX_HTTP_CONDUCTOR_TEST_MAX);

            ws = (b == ' ' || b == '\t' || b == '\n' || b == '\r');

            if (rc != (ws ? NGX_HTTP_CONDUCTOR_JSON_OK
                          : NGX_HTTP_CONDUCTOR_JSON_SYNTAX)
                || (ws && ngx_http_conductor_test_obj.n != 2))
            {
                if (bad++ < 5) {
                    printf("# 0x%02zx in gap %zu: %d\n", b, g, rc);
                }
            }
        }
    }

    ngx_http_conductor_test_ok(bad == 0,
                               "whitespace: only the four JSON bytes, in "
                               "every gap");
}


/*
 * Bytes >= 0x80 are not checked for UTF-8 in strings, as before the SSE2
 * scan: invalid sequences pass in keys and values, near any block
 * boundary, and string_decode() copies them; outside strings they are
 * not JSON.
 */

static void
ngx_http_conductor_test_utf8(void)
{
    int                                rc, bad;
    long                               n;
    size_t                             i, k, l, len;
    unsigned char                      doc[128], dec[128];
    ngx_http_conductor_json_member_t  *m;

    static const char  *seqs[] = {
        "\xff", "\xfe\xff", "\x80", "\xbf\xbf", "\xc3", "\xc0\x80",
        "\xc1\xbf", "\xe2\x82", "\xed\xa0\x80", "\xed\xbf\xbf",
        "\xef\xbf\xbe", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
        "\xc3\xa9", "\xf0\x9f\x98\x80"
    };

    m = ngx_http_conductor_test_m;
    bad = 0;

    for (k = 0; k < sizeof(seqs) / sizeof(seqs[0]); k++) {
        l = strlen(seqs[k]);

        for (i = 0; i <= 70; i++) {

            /* {"<seq>":"xx<seq>"} */

            memcpy(doc, "{\"", 2);
            memcpy(doc + 2, seqs[k], l);
            memcpy(doc + 2 + l, "\":\"", 3);
            memset(doc + 5 + l, 'x', i);
            memcpy(doc + 5 + l + i, seqs[k], l);
            memcpy(doc + 5 + 2 * l + i, "\"}", 2);
            len = 7 + 2 * l + i;

            rc = ngx_http_conductor_test_scan((const char *) doc, len);

            n = -1;

            if (rc == NGX_HTTP_CONDUCTOR_JSON_OK && m[0].key_len == l
                && !m[0].key_escaped
                && ngx_http_conductor_json_key_is(&m[0], seqs[k]))
            {
                n = ngx_http_conductor_json_string_decode(m[0].value,
                        m[0].value_len, dec, sizeof(dec));
            }

            if (n != (long) (i + l) || memcmp(dec + i, seqs[k], l) != 0) {
                if (bad++ < 5) {
                    printf("# seq %zu after %zu bytes: %d, %ld\n", k, i, rc,
                           n);
                }
            }

            /* {"a":1<seq>} */

            memcpy(doc, "{\"a\":1", 6);
            memcpy(doc + 6, seqs[k], l);
            doc[6 + l] = '}';

            rc = ngx_http_conductor_test_scan((const char *) doc, l + 7);

            if (rc != NGX_HTTP_CONDUCTOR_JSON_SYNTAX && bad++ < 5) {
                printf("# seq %zu outside a string: %d\n", k, rc);
            }
        }
    }

    ngx_http_conductor_test_ok(bad == 0,
                               "utf8: not checked in strings (keys and "
                               "values), not JSON outside");
}


/* keys longer than the first look, with and without escapes */

static void
ngx_http_conductor_test_keys(void)
{
    int            rc;
    size_t         len;
    unsigned char  doc[512], name[128];

    static const char  keys[] =
        "{\"max_completion_tokens\":1,\"max_output_tokens\":2,"
        "\"abcdefghijklmnopqrs\\u0074\":3,\"mod\\u0065l\":\"m\","
        "\"stream\":true}";

    rc = ngx_http_conductor_test_scan(keys, sizeof(keys) - 1);

    ngx_http_conductor_test_ok(
        rc == NGX_HTTP_CONDUCTOR_JSON_OK
        && ngx_http_conductor_test_obj.n == 5
        && !ngx_http_conductor_test_m[0].key_escaped
        && !ngx_http_conductor_test_m[1].key_escaped
        && ngx_http_conductor_test_m[2].key_escaped
        && ngx_http_conductor_test_m[3].key_escaped
        && !ngx_http_conductor_test_m[4].key_escaped,
        "keys: key_escaped is set on the keys with a backslash only");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_json_key_is(&ngx_http_conductor_test_m[0],
                                       "max_completion_tokens")
        && !ngx_http_conductor_json_key_is(&ngx_http_conductor_test_m[0],
                                           "max_completion_token")
        && !ngx_http_conductor_json_key_is(&ngx_http_conductor_test_m[0],
                                           "max_completion_tokensx")
        && !ngx_http_conductor_json_key_is(&ngx_http_conductor_test_m[0], "")
        && !ngx_http_conductor_json_key_is(&ngx_http_conductor_test_m[1],
                                           "max_completion_tokens")
        && ngx_http_conductor_json_key_is(&ngx_http_conductor_test_m[2],
                                          "abcdefghijklmnopqrst")
        && !ngx_http_conductor_json_key_is(&ngx_http_conductor_test_m[2],
                                           "abcdefghijklmnopqrs")
        && ngx_http_conductor_json_find(ngx_http_conductor_test_m,
                                        ngx_http_conductor_test_obj.n,
                                        "model") == 3
        && ngx_http_conductor_json_find(ngx_http_conductor_test_m,
                                        ngx_http_conductor_test_obj.n,
                                        "stream") == 4
        && ngx_http_conductor_json_find(ngx_http_conductor_test_m,
                                        ngx_http_conductor_test_obj.n,
                                        "strea") == -1,
        "keys: key_is() on long keys, escaped or not, and on prefixes");

    /* a 100-byte key */

    memcpy(doc, "{\"", 2);
    memset(doc + 2, 'k', 100);
    memcpy(doc + 102, "\":1}", 4);
    len = 106;

    memset(name, 'k', 101);
    name[101] = '\0';

    rc = ngx_http_conductor_test_scan((const char *) doc, len);

    ngx_http_conductor_test_ok(
        rc == NGX_HTTP_CONDUCTOR_JSON_OK
        && ngx_http_conductor_test_m[0].key_len == 100
        && !ngx_http_conductor_test_m[0].key_escaped
        && !ngx_http_conductor_json_key_is(&ngx_http_conductor_test_m[0],
                                           (char *) name)
        && (name[100] = '\0', 1)
        && ngx_http_conductor_json_key_is(&ngx_http_conductor_test_m[0],
                                          (char *) name)
        && (name[99] = '\0', 1)
        && !ngx_http_conductor_json_key_is(&ngx_http_conductor_test_m[0],
                                           (char *) name),
        "keys: a 100-byte key matches its name only");
}


static void
ngx_http_conductor_test_removal(void)
{
    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_remove("{\"a\":1, \"b\":2 ,\"c\":3}", 1,
                                       "{\"a\":1, \"c\":3}"),
        "removal: middle member");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_remove("{\"a\":1, \"b\":2 ,\"c\":3}", 0,
                                       "{\"b\":2 ,\"c\":3}"),
        "removal: first member");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_remove("{\"a\":1, \"b\":2 ,\"c\":3}", 2,
                                       "{\"a\":1, \"b\":2}"),
        "removal: last member");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_remove(" { \"only\" : [1, {}] } ", 0,
                                       " {} "),
        "removal: only member");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_remove(
            "{\n  \"model\": \"x\",\n  \"routing\": {\"a\": [1]}\n}", 1,
            "{\n  \"model\": \"x\"\n}"),
        "removal: last member of a pretty-printed body");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_remove("{\"a\":{\"b\":1},\"c\":[2]}", 0,
                                       "{\"c\":[2]}"),
        "removal: first member with an object value");
}


static void
ngx_http_conductor_test_splice(void)
{
    int                                rc;
    long                               i, r;
    size_t                             n, len;
    unsigned char                      out[256], model[64];
    ngx_http_conductor_json_edit_t     e[3];
    ngx_http_conductor_json_member_t  *m;

    static const char  body[] =
        "{\"model\":\"a\",\"routing\":{\"x\":1},\"stream\":true}";
    static const char  expect[] =
        "{\"model\":\"gpt-4o\",\"stream\":true,"
        "\"stream_options\":{\"include_usage\":true}}";
    static const char  ins[] = ",\"stream_options\":{\"include_usage\":true}";

    m = ngx_http_conductor_test_m;

    rc = ngx_http_conductor_test_scan(body, sizeof(body) - 1);

    i = ngx_http_conductor_json_find(m, ngx_http_conductor_test_obj.n,
                                     "model");
    r = ngx_http_conductor_json_find(m, ngx_http_conductor_test_obj.n,
                                     "routing");

    if (rc != NGX_HTTP_CONDUCTOR_JSON_OK || i != 0 || r != 1) {
        ngx_http_conductor_test_ok(0, "splice: scan");
        return;
    }

    n = ngx_http_conductor_json_escape(model, (const unsigned char *) "gpt-4o",
                                       6) - model;

    e[0].from = m[i].value;
    e[0].to = m[i].value + m[i].value_len;
    e[0].data = model;
    e[0].len = n;

    ngx_http_conductor_json_member_removal(&ngx_http_conductor_test_obj, m,
                                           r, &e[1].from, &e[1].to);
    e[1].data = NULL;
    e[1].len = 0;

    e[2].from = ngx_http_conductor_test_obj.close;
    e[2].to = ngx_http_conductor_test_obj.close;
    e[2].data = (const unsigned char *) ins;
    e[2].len = sizeof(ins) - 1;

    len = ngx_http_conductor_json_splice((const unsigned char *) body,
                                         sizeof(body) - 1, e, 3, NULL);

    ngx_http_conductor_test_ok(len == sizeof(expect) - 1,
                               "splice: length without output is %zu", len);

    memset(out, 'X', sizeof(out));

    len = ngx_http_conductor_json_splice((const unsigned char *) body,
                                         sizeof(body) - 1, e, 3, out);

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_span(out, len, expect) && out[len] == 'X',
        "splice: replacement + deletion + insertion, exact bytes");

    rc = ngx_http_conductor_test_scan((const char *) out, len);

    ngx_http_conductor_test_ok(rc == NGX_HTTP_CONDUCTOR_JSON_OK
                               && ngx_http_conductor_test_obj.n == 3,
                               "splice: result is valid JSON, 3 members");

    len = ngx_http_conductor_json_splice((const unsigned char *) body,
                                         sizeof(body) - 1, NULL, 0, out);

    ngx_http_conductor_test_ok(ngx_http_conductor_test_span(out, len, body),
                               "splice: no edit copies the input");

    e[0].from = (const unsigned char *) body;
    e[0].to = e[0].from;
    e[0].data = (const unsigned char *) "[";
    e[0].len = 1;
    e[1].from = (const unsigned char *) body + 1;
    e[1].to = e[1].from;
    e[1].data = (const unsigned char *) "A";
    e[1].len = 1;
    e[2].from = (const unsigned char *) body + 1;
    e[2].to = (const unsigned char *) body + sizeof(body) - 1;
    e[2].data = (const unsigned char *) "B]";
    e[2].len = 2;

    len = ngx_http_conductor_json_splice((const unsigned char *) body,
                                         sizeof(body) - 1, e, 3, out);

    ngx_http_conductor_test_ok(ngx_http_conductor_test_span(out, len,
                                                            "[{AB]"),
                               "splice: edits at both ends, adjacent edits");
}


static void
ngx_http_conductor_test_escape(void)
{
    int                                rc;
    long                               n;
    size_t                             i, len;
    unsigned char                      in[256], out[2048], dec[256], *end;

    static const char  s[] = "a\"b\\c/\n\r\t\b\f\x01\x1f\x7f \xc3\xa9\xff";
    static const char  expect[] =
        "\"a\\\"b\\\\c/\\n\\r\\t\\b\\f\\u0001\\u001f\x7f \xc3\xa9\xff\"";

    end = ngx_http_conductor_json_escape(out, (const unsigned char *) s,
                                         sizeof(s) - 1);

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_span(out, end - out, expect)
        && ngx_http_conductor_json_escape_len((const unsigned char *) s,
                                              sizeof(s) - 1)
           == sizeof(expect) - 1,
        "escape: exact bytes and escape_len");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_json_escape_len((const unsigned char *) "", 0)
           == 2
        && ngx_http_conductor_json_escape(out, (const unsigned char *) "", 0)
           == out + 2
        && memcmp(out, "\"\"", 2) == 0,
        "escape: empty string");

    /* every byte value: escape, scan as a member, decode */

    for (i = 0; i < 256; i++) {
        in[i] = (unsigned char) i;
    }

    memcpy(out, "{\"k\":", 5);
    end = ngx_http_conductor_json_escape(out + 5, in, 256);
    *end++ = '}';
    len = end - out;

    rc = ngx_http_conductor_test_scan((const char *) out, len);

    n = -1;

    if (rc == NGX_HTTP_CONDUCTOR_JSON_OK) {
        n = ngx_http_conductor_json_string_decode(
                ngx_http_conductor_test_m[0].value,
                ngx_http_conductor_test_m[0].value_len, dec, sizeof(dec));
    }

    ngx_http_conductor_test_ok(
        rc == NGX_HTTP_CONDUCTOR_JSON_OK
        && ngx_http_conductor_test_m[0].value_len
           == ngx_http_conductor_json_escape_len(in, 256)
        && n == 256 && memcmp(dec, in, 256) == 0,
        "escape: all 256 bytes round trip through scan and decode");
}


static void
ngx_http_conductor_test_uints(void)
{
    int64_t  v;

    v = -1;
    ngx_http_conductor_test_ok(ngx_http_conductor_test_u("0", &v) == 0
                               && v == 0, "uint: 0");

    v = -1;
    ngx_http_conductor_test_ok(ngx_http_conductor_test_u("123", &v) == 0
                               && v == 123, "uint: 123");

    v = -1;
    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_u("9223372036854775807", &v) == 0
        && v == INT64_MAX, "uint: INT64_MAX");

    v = -1;
    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_u("9223372036854775806", &v) == 0
        && v == INT64_MAX - 1, "uint: INT64_MAX - 1");

    v = -1;
    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_u("9223372036854775808", &v) == 0
        && v == INT64_MAX, "uint: INT64_MAX + 1 saturates");

    v = -1;
    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_u("99999999999999999999999", &v) == 0
        && v == INT64_MAX, "uint: 99999999999999999999999 saturates");

    ngx_http_conductor_test_ok(
        ngx_http_conductor_test_u("-1", &v) == -1
        && ngx_http_conductor_test_u("1.5", &v) == -1
        && ngx_http_conductor_test_u("1e3", &v) == -1
        && ngx_http_conductor_test_u("01", &v) == -1
        && ngx_http_conductor_test_u("00", &v) == -1
        && ngx_http_conductor_test_u("-0", &v) == -1
        && ngx_http_conductor_test_u("", &v) == -1
        && ngx_http_conductor_test_u("\"1\"", &v) == -1
        && ngx_http_conductor_test_u("1 ", &v) == -1
        && ngx_http_conductor_test_u("true", &v) == -1
        && ngx_http_conductor_test_u("99999999999999999999999x", &v) == -1,
        "uint: rejects -1, 1.5, 1e3, 01, 00, -0, empty, string, junk");
}


int
main(void)
{
    ngx_http_conductor_test_openai();
    ngx_http_conductor_test_anthropic();
    ngx_http_conductor_test_escapes();
    ngx_http_conductor_test_decode_errors();
    ngx_http_conductor_test_nested();
    ngx_http_conductor_test_whitespace();
    ngx_http_conductor_test_duplicates();
    ngx_http_conductor_test_numbers();
    ngx_http_conductor_test_errors();
    ngx_http_conductor_test_depth();
    ngx_http_conductor_test_big();
    ngx_http_conductor_test_string_bytes();
    ngx_http_conductor_test_string_escapes();
    ngx_http_conductor_test_ws_bytes();
    ngx_http_conductor_test_utf8();
    ngx_http_conductor_test_keys();
    ngx_http_conductor_test_removal();
    ngx_http_conductor_test_splice();
    ngx_http_conductor_test_escape();
    ngx_http_conductor_test_uints();

    printf("1..%d\n", ngx_http_conductor_test_n);

    return ngx_http_conductor_test_failed ? 1 : 0;
}
