/*
 * Costs in whole USD and pico-USD; see the header.  A compiler without
 * unsigned __int128 (or a build with NGX_HTTP_CONDUCTOR_MONEY_NO_INT128,
 * which the unit test uses to check it) multiplies in 32-bit halves and
 * divides in 16-bit digits instead.
 */


#include <stddef.h>
#include <stdint.h>

#include "ngx_http_conductor_money.h"


#if (defined __SIZEOF_INT128__ && !defined NGX_HTTP_CONDUCTOR_MONEY_NO_INT128)
#define NGX_HTTP_CONDUCTOR_MONEY_INT128  1
#endif


#define NGX_HTTP_CONDUCTOR_MONEY_MICRO  1000000ULL      /* pico per micro */


const ngx_http_conductor_money_t  ngx_http_conductor_money_max = {
    UINT64_MAX, NGX_HTTP_CONDUCTOR_MONEY_PICO - 1
};


ngx_http_conductor_money_t
ngx_http_conductor_money_cost(uint64_t prompt, uint64_t completion,
    uint64_t cached, uint64_t created, uint64_t input, uint64_t output,
    uint64_t cached_input, uint64_t cache_write)
{
    uint64_t                    plain;
    ngx_http_conductor_money_t  m;

    /* cached and created are parts of prompt; more than all of it is
     * a provider's mistake, not a negative count */
    plain = (cached < prompt) ? prompt - cached : 0;
    plain = (created < plain) ? plain - created : 0;

    m = ngx_http_conductor_money_mul(plain, input);

    m = ngx_http_conductor_money_add(m,
            ngx_http_conductor_money_mul(cached,
                                         cached_input ? cached_input : input));

    m = ngx_http_conductor_money_add(m,
            ngx_http_conductor_money_mul(created,
                                         cache_write ? cache_write : input));

    return ngx_http_conductor_money_add(m,
               ngx_http_conductor_money_mul(completion, output));
}


ngx_http_conductor_money_t
ngx_http_conductor_money_mul(uint64_t n, uint64_t price)
{
    ngx_http_conductor_money_t  m;

#if (NGX_HTTP_CONDUCTOR_MONEY_INT128)

    unsigned __int128  p, usd;

    p = (unsigned __int128) n * price;
    usd = p / NGX_HTTP_CONDUCTOR_MONEY_PICO;

    if (usd > UINT64_MAX) {
        return ngx_http_conductor_money_max;
    }

    m.usd = (uint64_t) usd;
    m.pico = (uint64_t) (p % NGX_HTTP_CONDUCTOR_MONEY_PICO);

#else

    int       i;
    uint64_t  a0, a1, b0, b1, p00, p01, p10, p11, mid, hi, lo, qhi, qlo, rem,
              digit;

    /* the 128-bit product hi:lo, from four 32 x 32 products */

    a0 = n & 0xffffffff;
    a1 = n >> 32;
    b0 = price & 0xffffffff;
    b1 = price >> 32;

    p00 = a0 * b0;
    p01 = a0 * b1;
    p10 = a1 * b0;
    p11 = a1 * b1;

    mid = (p00 >> 32) + (p01 & 0xffffffff) + (p10 & 0xffffffff);
    lo = (mid << 32) | (p00 & 0xffffffff);
    hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);

    /*
     * Long division by 10^12, 16 bits at a time: the remainder is below
     * 2^40, so remainder:digit stays below 2^56.
     */

    qhi = 0;
    qlo = 0;
    rem = 0;

    for (i = 7; i >= 0; i--) {
        digit = (i >= 4 ? hi >> ((i - 4) * 16) : lo >> (i * 16)) & 0xffff;
        digit |= rem << 16;
        rem = digit % NGX_HTTP_CONDUCTOR_MONEY_PICO;

        qhi = (qhi << 16) | (qlo >> 48);
        qlo = (qlo << 16) | (digit / NGX_HTTP_CONDUCTOR_MONEY_PICO);
    }

    if (qhi) {
        return ngx_http_conductor_money_max;
    }

    m.usd = qlo;
    m.pico = rem;

#endif

    return m;
}


ngx_http_conductor_money_t
ngx_http_conductor_money_add(ngx_http_conductor_money_t a,
    ngx_http_conductor_money_t b)
{
    uint64_t                    carry, pico;
    ngx_http_conductor_money_t  m;

    /* pico at or above a dollar (never from this unit) is carried too */
    carry = a.pico / NGX_HTTP_CONDUCTOR_MONEY_PICO
            + b.pico / NGX_HTTP_CONDUCTOR_MONEY_PICO;
    pico = a.pico % NGX_HTTP_CONDUCTOR_MONEY_PICO
           + b.pico % NGX_HTTP_CONDUCTOR_MONEY_PICO;

    if (pico >= NGX_HTTP_CONDUCTOR_MONEY_PICO) {
        pico -= NGX_HTTP_CONDUCTOR_MONEY_PICO;
        carry++;
    }

    if (a.usd > UINT64_MAX - b.usd || a.usd + b.usd > UINT64_MAX - carry) {
        return ngx_http_conductor_money_max;
    }

    m.usd = a.usd + b.usd + carry;
    m.pico = pico;

    return m;
}


ngx_http_conductor_money_t
ngx_http_conductor_money_sub(ngx_http_conductor_money_t a,
    ngx_http_conductor_money_t b)
{
    ngx_http_conductor_money_t  m;

    if (ngx_http_conductor_money_cmp(a, b) <= 0) {
        m.usd = 0;
        m.pico = 0;
        return m;
    }

    m.usd = a.usd - b.usd;

    if (a.pico >= b.pico) {
        m.pico = a.pico - b.pico;

    } else {
        m.usd--;
        m.pico = a.pico + NGX_HTTP_CONDUCTOR_MONEY_PICO - b.pico;
    }

    return m;
}


int
ngx_http_conductor_money_cmp(ngx_http_conductor_money_t a,
    ngx_http_conductor_money_t b)
{
    if (a.usd != b.usd) {
        return (a.usd < b.usd) ? -1 : 1;
    }

    if (a.pico != b.pico) {
        return (a.pico < b.pico) ? -1 : 1;
    }

    return 0;
}


int
ngx_http_conductor_money_parse(const unsigned char *p, size_t len,
    ngx_http_conductor_money_t *m)
{
    size_t    i;
    uint64_t  usd, pico, scale;
    int       fraction, digits;

    usd = 0;
    pico = 0;
    scale = NGX_HTTP_CONDUCTOR_MONEY_PICO;
    fraction = 0;
    digits = 0;

    for (i = 0; i < len; i++) {

        if (p[i] == '.' && !fraction && digits) {
            fraction = 1;
            digits = 0;
            continue;
        }

        if (p[i] < '0' || p[i] > '9') {
            return -1;
        }

        digits++;

        if (fraction) {
            if (digits > 12) {
                return -1;
            }

            scale /= 10;
            pico += (uint64_t) (p[i] - '0') * scale;
            continue;
        }

        if (digits > 15) {
            return -1;
        }

        usd = usd * 10 + (p[i] - '0');
    }

    if (digits == 0) {
        return -1;
    }

    m->usd = usd;
    m->pico = pico;

    return 0;
}


unsigned char *
ngx_http_conductor_money_format(unsigned char *buf,
    ngx_http_conductor_money_t m)
{
    int             i;
    uint64_t        v;
    unsigned char  *p, digits[20];

    p = buf;
    v = m.usd;
    i = 0;

    do {
        digits[i++] = (unsigned char) ('0' + v % 10);
        v /= 10;
    } while (v);

    while (i) {
        *p++ = digits[--i];
    }

    *p++ = '.';

    /* micro-USD, truncated */
    v = m.pico % NGX_HTTP_CONDUCTOR_MONEY_PICO
        / NGX_HTTP_CONDUCTOR_MONEY_MICRO;

    for (i = 5; i >= 0; i--) {
        p[i] = (unsigned char) ('0' + v % 10);
        v /= 10;
    }

    return p + 6;
}


double
ngx_http_conductor_money_to_double(ngx_http_conductor_money_t m)
{
    return (double) m.usd + (double) m.pico / NGX_HTTP_CONDUCTOR_MONEY_PICO;
}
