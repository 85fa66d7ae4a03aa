
/*
 * The strategies: which of the candidates that have room (all of one
 * priority tier) takes the request.  Called by the ledger's pick, under
 * the zone lock.
 */


#include "ngx_http_conductor.h"


static ngx_http_conductor_cand_t *ngx_http_conductor_round_robin(
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t **el,
    ngx_uint_t n);
static ngx_http_conductor_cand_t *ngx_http_conductor_weighted(
    ngx_http_conductor_cand_t **el, ngx_uint_t n, ngx_uint_t r);
static ngx_http_conductor_cand_t *ngx_http_conductor_least_loaded(
    ngx_http_conductor_cand_t **el, ngx_uint_t n);
static void ngx_http_conductor_remaining(ngx_http_conductor_cand_t *c,
    time_t now, uint64_t *requests, uint64_t *tokens);
static uint64_t ngx_http_conductor_score(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *c, time_t now);


ngx_http_conductor_cand_t *
ngx_http_conductor_choose(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t **el, ngx_uint_t n)
{
    time_t                      now;
    uint64_t                    best, v;
    ngx_uint_t                  i;
    ngx_http_conductor_cand_t  *pick;

    switch (ctx->strategy) {

    case NGX_HTTP_CONDUCTOR_ROUND_ROBIN:
        return ngx_http_conductor_round_robin(ctx, el, n);

    case NGX_HTTP_CONDUCTOR_WEIGHTED:
        return ngx_http_conductor_weighted(el, n, ctx->model->node->rr++);

    case NGX_HTTP_CONDUCTOR_RANDOM:
        return ngx_http_conductor_weighted(el, n, (ngx_uint_t) ngx_random());

    case NGX_HTTP_CONDUCTOR_LEAST_LOADED:
        return ngx_http_conductor_least_loaded(el, n);

    case NGX_HTTP_CONDUCTOR_LEAST_USED:
    case NGX_HTTP_CONDUCTOR_LEAST_LATENCY:
    case NGX_HTTP_CONDUCTOR_LEAST_COST:
        now = ngx_time();
        best = (uint64_t) -1;
        pick = el[0];

        for (i = 0; i < n; i++) {
            v = ngx_http_conductor_score(ctx, el[i], now);

            if (v < best) {
                best = v;
                pick = el[i];
            }
        }

        return pick;

    default: /* sequential, simple, priority: the first with room */
        return el[0];
    }
}


/*
 * Lower is better.  least_used: requests in the last minute;
 * least_latency: the time-to-first-byte average, an unmeasured key first
 * so that every key gets measured; least_cost: the model's list price, an
 * unpriced one last.
 */

static uint64_t
ngx_http_conductor_score(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *c, time_t now)
{
    ngx_http_conductor_node_t  *node;

    node = c->key->node;

    switch (ctx->strategy) {

    case NGX_HTTP_CONDUCTOR_LEAST_USED:
        return ngx_http_conductor_window_value(
                   &node->win[NGX_HTTP_CONDUCTOR_RPM],
                   ngx_http_conductor_periods[NGX_HTTP_CONDUCTOR_RPM], now);

    case NGX_HTTP_CONDUCTOR_LEAST_LATENCY:
        return node->ttfb_ewma;

    default: /* NGX_HTTP_CONDUCTOR_LEAST_COST */
        if (c->price == NULL) {
            return (uint64_t) -1;
        }

        return c->price->input + c->price->output;
    }
}


/*
 * The most remaining requests, then tokens (the seed's least_loaded); a
 * key without limits has room without end, and then the fewest in flight
 * decides.
 */

static ngx_http_conductor_cand_t *
ngx_http_conductor_least_loaded(ngx_http_conductor_cand_t **el, ngx_uint_t n)
{
    time_t                      now;
    uint64_t                    req, tok, best_req, best_tok;
    ngx_uint_t                  i;
    ngx_http_conductor_cand_t  *pick;

    now = ngx_time();
    pick = el[0];
    ngx_http_conductor_remaining(pick, now, &best_req, &best_tok);

    for (i = 1; i < n; i++) {
        ngx_http_conductor_remaining(el[i], now, &req, &tok);

        if (req > best_req
            || (req == best_req
                && (tok > best_tok
                    || (tok == best_tok
                        && el[i]->key->node->inflight
                           < pick->key->node->inflight))))
        {
            pick = el[i];
            best_req = req;
            best_tok = tok;
        }
    }

    return pick;
}


static void
ngx_http_conductor_remaining(ngx_http_conductor_cand_t *c, time_t now,
    uint64_t *requests, uint64_t *tokens)
{
    uint64_t                    used, left, *to;
    ngx_uint_t                  i;
    ngx_http_conductor_key_t   *key;
    ngx_http_conductor_node_t  *node;

    key = c->key;
    node = key->node;

    *requests = (uint64_t) -1;
    *tokens = (uint64_t) -1;

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NLIMITS; i++) {

        if (key->limit[i] == 0) {
            continue;
        }

        used = ngx_http_conductor_window_value(&node->win[i],
                                               ngx_http_conductor_periods[i],
                                               now);
        left = used < key->limit[i] ? key->limit[i] - used : 0;
        to = (i & 1) ? tokens : requests;
        *to = ngx_min(*to, left);
    }

    if (key->max_inflight) {
        left = node->inflight < key->max_inflight
               ? key->max_inflight - node->inflight : 0;
        *requests = ngx_min(*requests, left);
    }
}


/*
 * Alternates between providers (request 1 to the first, 2 to the next...),
 * then between the keys of the chosen provider: the seed's behaviour, and
 * keys of one provider share its load evenly.
 */

static ngx_http_conductor_cand_t *
ngx_http_conductor_round_robin(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t **el, ngx_uint_t n)
{
    ngx_uint_t                      i, j, np, nk, want;
    ngx_http_conductor_provider_t  *chosen;
    ngx_http_conductor_provider_t  *prov[NGX_HTTP_CONDUCTOR_MAX_CANDS];

    np = 0;

    for (i = 0; i < n; i++) {
        for (j = 0; j < np; j++) {
            if (prov[j] == el[i]->provider) {
                break;
            }
        }

        if (j == np) {
            prov[np++] = el[i]->provider;
        }
    }

    chosen = prov[ctx->model->node->rr++ % np];

    nk = 0;

    for (i = 0; i < n; i++) {
        if (el[i]->provider == chosen) {
            nk++;
        }
    }

    want = chosen->node->rr++ % nk;

    for (i = 0; i < n; i++) {
        if (el[i]->provider == chosen && want-- == 0) {
            return el[i];
        }
    }

    return el[0];
}


static ngx_http_conductor_cand_t *
ngx_http_conductor_weighted(ngx_http_conductor_cand_t **el, ngx_uint_t n,
    ngx_uint_t r)
{
    ngx_uint_t  i, total;

    total = 0;

    for (i = 0; i < n; i++) {
        total += el[i]->weight;
    }

    r %= total;

    for (i = 0; i < n; i++) {
        if (r < el[i]->weight) {
            return el[i];
        }

        r -= el[i]->weight;
    }

    return el[n - 1];
}


uint64_t
ngx_http_conductor_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}
