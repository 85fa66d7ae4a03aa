/*
 * Costs that cannot overflow.  No nginx include: unit tested on its own.
 *
 * Prices are pico-USD per token (USD per million tokens, six decimals, is
 * exactly that: $75 / 1M tokens = 75,000,000 pico-USD per token).  A sum
 * of money is whole USD plus pico-USD below one dollar; tokens * price is
 * computed in 128 bits, so every product of two uint64 is exact, and a sum
 * beyond UINT64_MAX USD saturates at NGX_HTTP_CONDUCTOR_MONEY_MAX (which
 * then stays there).
 */

#ifndef _NGX_HTTP_CONDUCTOR_MONEY_H_INCLUDED_
#define _NGX_HTTP_CONDUCTOR_MONEY_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_HTTP_CONDUCTOR_MONEY_PICO  1000000000000ULL    /* per USD */

/* "18446744073709551615.999999" */
#define NGX_HTTP_CONDUCTOR_MONEY_LEN   (20 + 1 + 6)


typedef struct {
    uint64_t  usd;
    uint64_t  pico;             /* < NGX_HTTP_CONDUCTOR_MONEY_PICO */
} ngx_http_conductor_money_t;


/* the largest sum, where saturation stops */
extern const ngx_http_conductor_money_t  ngx_http_conductor_money_max;


/*
 * The cost of an answer.  prompt counts every input token, cached and
 * cache-written ones included: plain input is prompt - cached - created
 * (0 when they exceed it).  Cached tokens cost cached_input, created ones
 * cache_write, each the input price when 0.
 */
ngx_http_conductor_money_t ngx_http_conductor_money_cost(uint64_t prompt,
    uint64_t completion, uint64_t cached, uint64_t created, uint64_t input,
    uint64_t output, uint64_t cached_input, uint64_t cache_write);

/* n tokens at price pico-USD each */
ngx_http_conductor_money_t ngx_http_conductor_money_mul(uint64_t n,
    uint64_t price);

/* a + b, the pico carried into USD, saturating */
ngx_http_conductor_money_t ngx_http_conductor_money_add(
    ngx_http_conductor_money_t a, ngx_http_conductor_money_t b);

/* a - b, 0 when b is more */
ngx_http_conductor_money_t ngx_http_conductor_money_sub(
    ngx_http_conductor_money_t a, ngx_http_conductor_money_t b);

/* -1, 0, 1 as a is below, equal to or above b */
int ngx_http_conductor_money_cmp(ngx_http_conductor_money_t a,
    ngx_http_conductor_money_t b);

/*
 * "10", "10.5", "0.000001": USD with at most 12 decimals, up to
 * 10^15 USD; 0 on success, -1 when it is not such a number.
 */
int ngx_http_conductor_money_parse(const unsigned char *p, size_t len,
    ngx_http_conductor_money_t *m);

/*
 * "USD.uuuuuu": six decimals, the rest truncated ("0.000123",
 * "225000000.000000"); at most NGX_HTTP_CONDUCTOR_MONEY_LEN bytes, no
 * terminating NUL.  Returns the end.
 */
unsigned char *ngx_http_conductor_money_format(unsigned char *buf,
    ngx_http_conductor_money_t m);

/* USD as a double, for Prometheus: rounded to about 16 digits */
double ngx_http_conductor_money_to_double(ngx_http_conductor_money_t m);


#endif /* _NGX_HTTP_CONDUCTOR_MONEY_H_INCLUDED_ */
