/*
 * Unit tests of costs (ngx_http_conductor_money.h): the 10^12-token example
 * that wrapped in uint64 pico-USD, extremes (UINT64_MAX tokens and
 * prices), saturation, carries, the cost rules, formatting and the double.
 * Every multiplication and cost is checked twice: with unsigned __int128
 * (the unit as built for the module) and with the portable 64-bit path,
 * the unit compiled again below under other names.  TAP output.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_conductor_money.h"


/* the portable path of the same source, under other names */

#define ngx_http_conductor_money_cost       ngx_http_conductor_test_p_cost
#define ngx_http_conductor_money_mul        ngx_http_conductor_test_p_mul
#define ngx_http_conductor_money_add        ngx_http_conductor_test_p_add
#define ngx_http_conductor_money_format     ngx_http_conductor_test_p_format
#define ngx_http_conductor_money_to_double  ngx_http_conductor_test_p_double
#define ngx_http_conductor_money_max        ngx_http_conductor_test_p_max
#define ngx_http_conductor_money_sub        ngx_http_conductor_test_p_sub
#define ngx_http_conductor_money_cmp        ngx_http_conductor_test_p_cmp
#define ngx_http_conductor_money_parse      ngx_http_conductor_test_p_parse
#define NGX_HTTP_CONDUCTOR_MONEY_NO_INT128  1

/* the header is in already: its prototypes under the other names */
ngx_http_conductor_money_t ngx_http_conductor_money_cost(uint64_t prompt,
    uint64_t completion, uint64_t cached, uint64_t created, uint64_t input,
    uint64_t output, uint64_t cached_input, uint64_t cache_write);
ngx_http_conductor_money_t ngx_http_conductor_money_mul(uint64_t n,
    uint64_t price);
ngx_http_conductor_money_t ngx_http_conductor_money_add(
    ngx_http_conductor_money_t a, ngx_http_conductor_money_t b);
unsigned char *ngx_http_conductor_money_format(unsigned char *buf,
    ngx_http_conductor_money_t m);
double ngx_http_conductor_money_to_double(ngx_http_conductor_money_t m);
extern const ngx_http_conductor_money_t  ngx_http_conductor_money_max;
ngx_http_conductor_money_t ngx_http_conductor_money_sub(
    ngx_http_conductor_money_t a, ngx_http_conductor_money_t b);
int ngx_http_conductor_money_cmp(ngx_http_conductor_money_t a,
    ngx_http_conductor_money_t b);
int ngx_http_conductor_money_parse(const unsigned char *p, size_t len,
    ngx_http_conductor_money_t *m);

#include "ngx_http_conductor_money.c"

#undef ngx_http_conductor_money_cost
#undef ngx_http_conductor_money_mul
#undef ngx_http_conductor_money_add
#undef ngx_http_conductor_money_format
#undef ngx_http_conductor_money_to_double
#undef ngx_http_conductor_money_max
#undef ngx_http_conductor_money_sub
#undef ngx_http_conductor_money_cmp
#undef ngx_http_conductor_money_parse
#undef NGX_HTTP_CONDUCTOR_MONEY_NO_INT128


#define PICO  NGX_HTTP_CONDUCTOR_MONEY_PICO
#define MAX   UINT64_MAX

/* USD per 1M tokens is pico-USD per token */
#define PER_M(usd)  ((uint64_t) ((usd) * 1000000))


typedef struct {
    uint64_t  n;
    uint64_t  price;
    uint64_t  usd;
    uint64_t  pico;
} ngx_http_conductor_test_mul_t;


typedef struct {
    const char  *desc;
    uint64_t     prompt;
    uint64_t     completion;
    uint64_t     cached;
    uint64_t     created;
    uint64_t     input;
    uint64_t     output;
    uint64_t     cached_input;
    uint64_t     cache_write;
    uint64_t     usd;
    uint64_t     pico;
} ngx_http_conductor_test_cost_t;


static ngx_http_conductor_test_mul_t  ngx_http_conductor_test_muls[] = {
    { 0, 0, 0, 0 },
    { 0, MAX, 0, 0 },
    { MAX, 0, 0, 0 },
    { 1, 1, 0, 1 },
    { 1, PICO - 1, 0, PICO - 1 },
    { 1, PICO, 1, 0 },
    { 123, PER_M(1), 0, 123000000 },
    { 1000000000000ULL, PER_M(75), 75000000, 0 },
    { 1000000000000ULL, PER_M(150), 150000000, 0 },
    { MAX, 1, 18446744, 73709551615ULL },
    { 1, MAX, 18446744, 73709551615ULL },
    { MAX, 2, 36893488, 147419103230ULL },
    { 1ULL << 32, 1ULL << 32, 18446744, 73709551616ULL },
    { PICO, MAX, MAX, 0 },                       /* exactly UINT64_MAX $ */
    { MAX, PICO, MAX, 0 },
    { PICO + 1, MAX, MAX, PICO - 1 },            /* past it: saturated */
    { MAX, MAX, MAX, PICO - 1 },
    { 1ULL << 63, 1ULL << 63, MAX, PICO - 1 },
    { 3000000000000ULL, 6148914691236517205ULL, MAX, 0 }   /* 3 * MAX/3 */
};


static ngx_http_conductor_test_cost_t  ngx_http_conductor_test_costs[] = {

    { "10^12 prompt + 10^12 completion at $75/$150: exactly $225M",
      1000000000000ULL, 1000000000000ULL, 0, 0,
      PER_M(75), PER_M(150), 0, 0, 225000000, 0 },

    { "OpenAI with cached: 93 plain, 1024 cached, 250 out",
      1117, 250, 1024, 0, 2500000, 10000000, 1250000, 0,
      0, 93 * 2500000ULL + 1024 * 1250000ULL + 250 * 10000000ULL },

    { "cached price 0: cached at the input price",
      1117, 250, 1024, 0, 2500000, 10000000, 0, 0,
      0, 1117 * 2500000ULL + 250 * 10000000ULL },

    { "Anthropic: 500 plain, 1000 read, 1500 written",
      3000, 100, 1000, 1500, 3000000, 15000000, 300000, 3750000,
      0, 500 * 3000000ULL + 1000 * 300000ULL + 1500 * 3750000ULL
         + 100 * 15000000ULL },

    { "cache_write price 0: written at the input price",
      3000, 0, 0, 1500, 3000000, 15000000, 300000, 0,
      0, 3000 * 3000000ULL },

    { "cached + created > prompt: no plain input, no wrap",
      10, 0, 8, 8, 1000, 0, 1, 1, 0, 16 },

    { "cached > prompt: no plain input",
      10, 0, 20, 0, 1000, 0, 1, 1, 0, 20 },

    { "cached and created UINT64_MAX: their sum does not wrap",
      5, 0, MAX, MAX, 1000, 0, 0, 0, 36893488147ULL, 419103230000ULL },

    { "cached and created UINT64_MAX at 1 pico",
      5, 0, MAX, MAX, 1000, 0, 1, 1, 36893488, 147419103230ULL },

    { "a single token at a tenth of a micro-dollar",
      1, 0, 0, 0, 100000, 0, 0, 0, 0, 100000 },

    { "nothing used", 0, 0, 0, 0, MAX, MAX, MAX, MAX, 0, 0 },

    { "free model", MAX, MAX, 0, 0, 0, 0, 0, 0, 0, 0 },

    { "UINT64_MAX tokens at UINT64_MAX: saturated",
      MAX, MAX, 0, 0, MAX, MAX, 0, 0, MAX, PICO - 1 },

    { "terms that fit, a sum that does not: saturated",
      PICO, PICO, 0, 0, MAX, MAX, 0, 0, MAX, PICO - 1 },

    { "terms of half of UINT64_MAX $: the sum fits",
      PICO, PICO, 0, 0, MAX / 2, MAX / 2, 0, 0, MAX - 1, 0 },

    { "pico carried across terms",
      1, 1, 0, 0, PICO - 1, 1, 0, 0, 1, 0 },

    { NULL, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
};


#include "tap.h"


static int
ngx_http_conductor_test_is(ngx_http_conductor_money_t m, uint64_t usd,
    uint64_t pico)
{
    if (m.usd == usd && m.pico == pico) {
        return 1;
    }

    printf("# got %llu + %llu pico, expected %llu + %llu pico\n",
           (unsigned long long) m.usd, (unsigned long long) m.pico,
           (unsigned long long) usd, (unsigned long long) pico);

    return 0;
}


static ngx_http_conductor_money_t
ngx_http_conductor_test_money(uint64_t usd, uint64_t pico)
{
    ngx_http_conductor_money_t  m;

    m.usd = usd;
    m.pico = pico;

    return m;
}


static void
ngx_http_conductor_test_mul(void)
{
    char                            desc[120];
    size_t                          i;
    ngx_http_conductor_test_mul_t  *t;

    for (i = 0;
         i < sizeof(ngx_http_conductor_test_muls)
             / sizeof(ngx_http_conductor_test_muls[0]);
         i++)
    {
        t = &ngx_http_conductor_test_muls[i];

        snprintf(desc, sizeof(desc), "%llu tokens at %llu pico (int128)",
                 (unsigned long long) t->n, (unsigned long long) t->price);
        ngx_http_conductor_test_ok(ngx_http_conductor_test_is(
                              ngx_http_conductor_money_mul(t->n, t->price),
                              t->usd, t->pico), desc);

        snprintf(desc, sizeof(desc), "%llu tokens at %llu pico (portable)",
                 (unsigned long long) t->n, (unsigned long long) t->price);
        ngx_http_conductor_test_ok(ngx_http_conductor_test_is(
                              ngx_http_conductor_test_p_mul(t->n, t->price),
                              t->usd, t->pico), desc);
    }
}


/* both paths against a plain 128-bit reference on random operands */

static void
ngx_http_conductor_test_mul_random(void)
{
    int                         i, bad, sat;
    uint64_t                    a, b, usd, pico;
    ngx_http_conductor_money_t  x, y;

    bad = 0;
    sat = 0;
    srand(7);

    for (i = 0; i < 200000 && !bad; i++) {
        a = (uint64_t) rand() << 42 ^ (uint64_t) rand() << 21
            ^ (uint64_t) rand();
        b = (uint64_t) rand() << 42 ^ (uint64_t) rand() << 21
            ^ (uint64_t) rand();

        /* all sizes: shift some operands down */
        a >>= rand() % 64;
        b >>= rand() % 64;

#if (defined __SIZEOF_INT128__)
        {
            unsigned __int128  p, q;

            p = (unsigned __int128) a * b;
            q = p / PICO;

            if (q > MAX) {
                usd = MAX;
                pico = PICO - 1;
                sat++;

            } else {
                usd = (uint64_t) q;
                pico = (uint64_t) (p % PICO);
            }
        }
#else
        usd = ngx_http_conductor_money_mul(a, b).usd;
        pico = ngx_http_conductor_money_mul(a, b).pico;
#endif

        x = ngx_http_conductor_money_mul(a, b);
        y = ngx_http_conductor_test_p_mul(a, b);

        if (x.usd != usd || x.pico != pico || y.usd != usd
            || y.pico != pico)
        {
            printf("# %llu * %llu\n", (unsigned long long) a,
                   (unsigned long long) b);
            ngx_http_conductor_test_is(x, usd, pico);
            ngx_http_conductor_test_is(y, usd, pico);
            bad = 1;
        }
    }

    ngx_http_conductor_test_ok(!bad && sat > 0 && sat < 200000,
                               "200k random products, both paths, as a "
                               "128-bit reference");
}


static void
ngx_http_conductor_test_cost(void)
{
    char                             desc[160];
    ngx_http_conductor_money_t       m;
    ngx_http_conductor_test_cost_t  *t;

    for (t = ngx_http_conductor_test_costs; t->desc; t++) {
        m = ngx_http_conductor_money_cost(t->prompt, t->completion,
                                          t->cached, t->created, t->input,
                                          t->output, t->cached_input,
                                          t->cache_write);
        snprintf(desc, sizeof(desc), "%s (int128)", t->desc);
        ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, t->usd,
                                                              t->pico),
                                   desc);

        m = ngx_http_conductor_test_p_cost(t->prompt, t->completion,
                                           t->cached, t->created, t->input,
                                           t->output, t->cached_input,
                                           t->cache_write);
        snprintf(desc, sizeof(desc), "%s (portable)", t->desc);
        ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, t->usd,
                                                              t->pico),
                                   desc);
    }
}


static void
ngx_http_conductor_test_add(void)
{
    ngx_http_conductor_money_t  m, max;

    max = ngx_http_conductor_money_max;

    ngx_http_conductor_test_ok(max.usd == MAX && max.pico == PICO - 1,
                               "max: UINT64_MAX and 10^12 - 1 pico");

    m = ngx_http_conductor_money_add(ngx_http_conductor_test_money(1,
                                                                  PICO - 1),
                                     ngx_http_conductor_test_money(0, 1));
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, 2, 0),
                               "1.999999999999 + 1 pico: carried, 2");

    m = ngx_http_conductor_money_add(ngx_http_conductor_test_money(3,
                                                                  PICO - 1),
                                     ngx_http_conductor_test_money(4,
                                                                  PICO - 1));
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, 8, PICO - 2),
                               "both pico near a dollar: carried once");

    m = ngx_http_conductor_money_add(ngx_http_conductor_test_money(MAX, 0),
                                     ngx_http_conductor_test_money(0,
                                                                  PICO - 1));
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, MAX, PICO - 1),
                               "UINT64_MAX + 0.999999999999: fits");

    m = ngx_http_conductor_money_add(ngx_http_conductor_test_money(MAX, 1),
                                     ngx_http_conductor_test_money(0,
                                                                  PICO - 1));
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, MAX, PICO - 1),
                               "a carry past UINT64_MAX: saturated");

    m = ngx_http_conductor_money_add(ngx_http_conductor_test_money(MAX, 0),
                                     ngx_http_conductor_test_money(1, 0));
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, MAX, PICO - 1),
                               "UINT64_MAX + 1: saturated");

    m = ngx_http_conductor_money_add(ngx_http_conductor_test_money(MAX - 1,
                                                                  PICO - 1),
                                     ngx_http_conductor_test_money(0, 1));
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, MAX, 0),
                               "a carry up to UINT64_MAX: fits");

    m = ngx_http_conductor_money_add(max, max);
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, MAX, PICO - 1),
                               "max + max: max");

    m = ngx_http_conductor_money_add(max, ngx_http_conductor_test_money(0, 0));
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, MAX, PICO - 1),
                               "max + 0: max");

    m = ngx_http_conductor_money_add(ngx_http_conductor_test_money(0,
                                                             2 * PICO + 5),
                                     ngx_http_conductor_test_money(1,
                                                                  MAX));
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m,
                                   3 + MAX / PICO + (5 + MAX % PICO) / PICO,
                                   (5 + MAX % PICO) % PICO),
                               "pico over a dollar (not normalised): "
                               "carried, no wrap");

    m = ngx_http_conductor_test_p_add(ngx_http_conductor_test_money(1,
                                                                  PICO - 1),
                                      ngx_http_conductor_test_money(0, 1));
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, 2, 0),
                               "portable build: the same add");
}


/* an answer's cost added a million times: the total is exact */

static void
ngx_http_conductor_test_totals(void)
{
    int                         i;
    ngx_http_conductor_money_t  total, one;

    total = ngx_http_conductor_test_money(0, 0);
    one = ngx_http_conductor_money_cost(1117, 250, 1024, 0, 2500000,
                                        10000000, 1250000, 0);

    for (i = 0; i < 1000000; i++) {
        total = ngx_http_conductor_money_add(total, one);
    }

    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(total, 4012,
                                                          500000000000ULL),
                               "10^6 answers of $0.0040125: $4012.5");
}


static void
ngx_http_conductor_test_format_one(ngx_http_conductor_money_t m,
    const char *expect)
{
    char            desc[120];
    size_t          len;
    unsigned char   buf[NGX_HTTP_CONDUCTOR_MONEY_LEN + 8], *end;

    memset(buf, 'X', sizeof(buf));
    end = ngx_http_conductor_money_format(buf, m);
    len = end - buf;

    snprintf(desc, sizeof(desc), "format %llu + %llu pico: \"%s\"",
             (unsigned long long) m.usd, (unsigned long long) m.pico, expect);

    ngx_http_conductor_test_ok(len == strlen(expect)
                               && memcmp(buf, expect, len) == 0
                               && buf[len] == 'X'
                               && len <= NGX_HTTP_CONDUCTOR_MONEY_LEN,
                               desc);

    if (len != strlen(expect) || memcmp(buf, expect, len) != 0) {
        printf("# got \"%.*s\"\n", (int) len, (char *) buf);
    }
}


static void
ngx_http_conductor_test_format(void)
{
    unsigned char  buf[NGX_HTTP_CONDUCTOR_MONEY_LEN], *end;

    ngx_http_conductor_test_format_one(ngx_http_conductor_test_money(0, 0),
                                       "0.000000");
    ngx_http_conductor_test_format_one(ngx_http_conductor_test_money(0,
                                                                123000000),
                                       "0.000123");
    ngx_http_conductor_test_format_one(ngx_http_conductor_test_money(0,
                                                                   999999),
                                       "0.000000");
    ngx_http_conductor_test_format_one(ngx_http_conductor_test_money(0,
                                                                  1000000),
                                       "0.000001");
    ngx_http_conductor_test_format_one(ngx_http_conductor_test_money(0,
                                                                PICO - 1),
                                       "0.999999");
    ngx_http_conductor_test_format_one(ngx_http_conductor_test_money(1234,
                                                                PICO / 2),
                                       "1234.500000");
    ngx_http_conductor_test_format_one(ngx_http_conductor_test_money(
                                           225000000, 0),
                                       "225000000.000000");
    ngx_http_conductor_test_format_one(ngx_http_conductor_test_money(10, 0),
                                       "10.000000");
    ngx_http_conductor_test_format_one(ngx_http_conductor_money_max,
                                       "18446744073709551615.999999");
    ngx_http_conductor_test_format_one(
        ngx_http_conductor_money_cost(1117, 250, 1024, 0, 2500000, 10000000,
                                      1250000, 0),
        "0.004012");

    /* the example that logged 3639071.115485 when uint64 pico wrapped */
    ngx_http_conductor_test_format_one(
        ngx_http_conductor_money_cost(1000000000000ULL, 1000000000000ULL, 0,
                                      0, PER_M(75), PER_M(150), 0, 0),
        "225000000.000000");

    /* the longest fits the advertised length exactly */
    end = ngx_http_conductor_money_format(buf, ngx_http_conductor_money_max);
    ngx_http_conductor_test_ok(end - buf == NGX_HTTP_CONDUCTOR_MONEY_LEN,
                               "max is NGX_HTTP_CONDUCTOR_MONEY_LEN bytes");

    end = ngx_http_conductor_test_p_format(buf,
                                          ngx_http_conductor_test_money(0,
                                                                123000000));
    ngx_http_conductor_test_ok(end - buf == 8 && memcmp(buf, "0.000123", 8)
                                                 == 0,
                               "portable build: the same format");
}


static void
ngx_http_conductor_test_double(void)
{
    double  d;

    d = ngx_http_conductor_money_to_double(
            ngx_http_conductor_test_money(225000000, 0));
    ngx_http_conductor_test_ok(d == 225000000.0, "double: 225000000");

    d = ngx_http_conductor_money_to_double(
            ngx_http_conductor_test_money(0, 123000000));
    ngx_http_conductor_test_ok(d > 0.000122999999 && d < 0.000123000001,
                               "double: 0.000123");

    d = ngx_http_conductor_money_to_double(
            ngx_http_conductor_test_money(4012, PICO / 2));
    ngx_http_conductor_test_ok(d == 4012.5, "double: 4012.5");

    d = ngx_http_conductor_money_to_double(ngx_http_conductor_money_max);
    ngx_http_conductor_test_ok(d > 1.8446744073709e19
                               && d < 1.8446744073710e19,
                               "double: max is about 1.8446744e19");

    d = ngx_http_conductor_test_p_double(
            ngx_http_conductor_test_money(4012, PICO / 2));
    ngx_http_conductor_test_ok(d == 4012.5, "portable build: the same "
                               "double");
}


/* sub saturates at 0 and borrows; cmp orders; parse takes what a budget
 * line writes and nothing else */

static void
ngx_http_conductor_test_sub_cmp_parse(void)
{
    size_t                      i;
    ngx_http_conductor_money_t  a, b, m;

    static const struct {
        const char  *text;
        int          rc;
        uint64_t     usd, pico;
    } parses[] = {
        { "10", 0, 10, 0 },
        { "10.00", 0, 10, 0 },
        { "0.5", 0, 0, PICO / 2 },
        { "0.000000000001", 0, 0, 1 },
        { "123.4567890123456", -1, 0, 0 },
        { "123.456789012345", 0, 123, 456789012345ULL },
        { "999999999999999", 0, 999999999999999ULL, 0 },
        { "1000000000000000", -1, 0, 0 },
        { "", -1, 0, 0 },
        { ".5", -1, 0, 0 },
        { "5.", -1, 0, 0 },
        { "1.2.3", -1, 0, 0 },
        { "-1", -1, 0, 0 },
        { "1e3", -1, 0, 0 },
        { "12.75", 0, 12, PICO / 4 * 3 },
    };

    a = ngx_http_conductor_test_money(5, 100);
    b = ngx_http_conductor_test_money(2, 200);
    m = ngx_http_conductor_money_sub(a, b);
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, 2,
                                                          PICO - 100),
                               "sub borrows a dollar");

    m = ngx_http_conductor_money_sub(b, a);
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, 0, 0),
                               "sub of more is 0");

    m = ngx_http_conductor_money_sub(a, a);
    ngx_http_conductor_test_ok(ngx_http_conductor_test_is(m, 0, 0),
                               "sub of itself is 0");

    ngx_http_conductor_test_ok(ngx_http_conductor_money_cmp(a, b) == 1
                               && ngx_http_conductor_money_cmp(b, a) == -1
                               && ngx_http_conductor_money_cmp(a, a) == 0,
                               "cmp by usd");

    b = ngx_http_conductor_test_money(5, 99);
    ngx_http_conductor_test_ok(ngx_http_conductor_money_cmp(a, b) == 1
                               && ngx_http_conductor_money_cmp(b, a) == -1,
                               "cmp by pico");

    for (i = 0; i < sizeof(parses) / sizeof(parses[0]); i++) {
        m = ngx_http_conductor_test_money(77, 77);

        if (ngx_http_conductor_money_parse(
                (const unsigned char *) parses[i].text,
                strlen(parses[i].text), &m)
            != parses[i].rc)
        {
            ngx_http_conductor_test_ok(0, parses[i].text);
            continue;
        }

        ngx_http_conductor_test_ok(parses[i].rc != 0
                                   || ngx_http_conductor_test_is(m,
                                          parses[i].usd, parses[i].pico),
                                   parses[i].text);
    }
}


int
main(void)
{
    ngx_http_conductor_test_sub_cmp_parse();
    ngx_http_conductor_test_mul();
    ngx_http_conductor_test_mul_random();
    ngx_http_conductor_test_cost();
    ngx_http_conductor_test_add();
    ngx_http_conductor_test_totals();
    ngx_http_conductor_test_format();
    ngx_http_conductor_test_double();

    printf("1..%d\n", ngx_http_conductor_test_n);

    return ngx_http_conductor_test_failed ? 1 : 0;
}
