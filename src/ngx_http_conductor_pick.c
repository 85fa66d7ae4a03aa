
/*
 * Picking a candidate: the lowest priority tier that still has a candidate
 * with room, then the strategy inside that tier.  Runs under the zone lock
 * and reserves the request and its estimated tokens in the same critical
 * section, so N concurrent requests in any worker cannot all pass a limit
 * that has room for one.
 */


#include "ngx_http_conductor.h"


#define NGX_HTTP_CONDUCTOR_NEVER     ((ngx_msec_t) -1)
#define NGX_HTTP_CONDUCTOR_POLL      50     /* ms: room freed by others */


static ngx_msec_t ngx_http_conductor_wait(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *c, uint64_t now_ms, time_t now);
static ngx_msec_t ngx_http_conductor_window_wait(
    ngx_http_conductor_window_t *w, time_t period, time_t now,
    uint64_t limit, uint64_t need);
static ngx_http_conductor_cand_t *ngx_http_conductor_choose(
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t **el,
    ngx_uint_t n);
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
ngx_http_conductor_pick(ngx_http_request_t *r, ngx_http_conductor_ctx_t *ctx)
{
    time_t                           now;
    uint64_t                         now_ms;
    ngx_uint_t                       i, n, tier, found;
    ngx_msec_t                       wait, min_wait;
    ngx_http_conductor_cand_t       *c, *pick;
    ngx_http_conductor_node_t       *node;
    ngx_http_conductor_main_conf_t  *cmcf;
    ngx_http_conductor_cand_t       *el[NGX_HTTP_CONDUCTOR_MAX_CANDS];

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    now = ngx_time();
    now_ms = ngx_http_conductor_now_ms();

    found = 0;
    tier = 0;
    n = 0;
    min_wait = NGX_HTTP_CONDUCTOR_NEVER;

    ngx_http_conductor_shm_lock(cmcf);

    for (i = 0; i < ctx->ncands; i++) {
        c = &ctx->cands[i];

        if (found && c->priority != tier) {
            break;
        }

        wait = ngx_http_conductor_wait(ctx, c, now_ms, now);

        if (wait) {
            min_wait = ngx_min(min_wait, wait);
            continue;
        }

        found = 1;
        tier = c->priority;
        el[n++] = c;
    }

    if (n == 0) {
        ngx_http_conductor_shm_unlock(cmcf);

        /* when the earliest candidate frees up: Retry-After, queue wait */
        ctx->retry_after = min_wait;
        return NULL;
    }

    pick = ngx_http_conductor_choose(ctx, el, n);

    node = pick->key->node;

    if (node->breaker == NGX_HTTP_CONDUCTOR_OPEN) {
        /* its cooldown is over: this request is the half-open probe */
        node->breaker = NGX_HTTP_CONDUCTOR_HALF_OPEN;
    }

    node->inflight++;
    node->requests++;

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NLIMITS; i += 2) {
        ngx_http_conductor_window_add(&node->win[i],
                                      ngx_http_conductor_periods[i], now, 1);
        ngx_http_conductor_window_add(&node->win[i + 1],
                                      ngx_http_conductor_periods[i + 1], now,
                                      ctx->estimate);
    }

    ngx_http_conductor_shm_unlock(cmcf);

    ctx->tried[pick->index / 64] |= (uint64_t) 1 << (pick->index % 64);
    ctx->inflight = 1;
    ctx->reserved = ctx->estimate;
    ctx->reserved_at = now;
    ctx->attempts++;

    return pick;
}


/* whether another attempt could be made now: nothing is reserved */

ngx_uint_t
ngx_http_conductor_has_room(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    time_t                           now;
    uint64_t                         now_ms;
    ngx_uint_t                       i, room;
    ngx_http_conductor_main_conf_t  *cmcf;

    if (ctx->attempts >= ctx->max_attempts) {
        return 0;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    now = ngx_time();
    now_ms = ngx_http_conductor_now_ms();
    room = 0;

    ngx_http_conductor_shm_lock(cmcf);

    for (i = 0; i < ctx->ncands && !room; i++) {
        room = (ngx_http_conductor_wait(ctx, &ctx->cands[i], now_ms, now)
                == 0);
    }

    ngx_http_conductor_shm_unlock(cmcf);

    return room;
}


/*
 * 0 when the candidate can take the request now, else the time in ms
 * until it might (NEVER: not for this request).
 */

static ngx_msec_t
ngx_http_conductor_wait(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *c, uint64_t now_ms, time_t now)
{
    uint64_t                    need, until;
    ngx_uint_t                  i;
    ngx_msec_t                  wait, w;
    ngx_http_conductor_key_t   *key;
    ngx_http_conductor_node_t  *kn, *pn;

    if (ctx->tried[c->index / 64] & ((uint64_t) 1 << (c->index % 64))) {
        return NGX_HTTP_CONDUCTOR_NEVER;
    }

    if (ctx->only && c->provider != ctx->only) {
        return NGX_HTTP_CONDUCTOR_NEVER;
    }

    key = c->key;
    kn = key->node;
    pn = c->provider->node;

    if (kn->disabled) {
        return NGX_HTTP_CONDUCTOR_NEVER;
    }

    if (pn->unhealthy) {
        return ngx_max(pn->health_next, now_ms + 1) - now_ms;
    }

    wait = 0;

    until = ngx_max(kn->cooldown_until, pn->cooldown_until);

    if (until > now_ms) {
        wait = until - now_ms;
    }

    if (kn->breaker == NGX_HTTP_CONDUCTOR_HALF_OPEN
        || pn->breaker == NGX_HTTP_CONDUCTOR_HALF_OPEN)
    {
        /* one probe at a time */
        wait = ngx_max(wait, NGX_HTTP_CONDUCTOR_POLL);
    }

    if (key->max_inflight && kn->inflight >= key->max_inflight) {
        wait = ngx_max(wait, NGX_HTTP_CONDUCTOR_POLL);
    }

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NLIMITS; i++) {

        if (key->limit[i] == 0) {
            continue;
        }

        /* a token estimate is capped at the limit: a request that fits
         * an empty key is never refused by its own estimate */
        need = (i & 1) ? ngx_min(ctx->estimate, key->limit[i]) : 1;

        w = ngx_http_conductor_window_wait(&kn->win[i],
                                           ngx_http_conductor_periods[i],
                                           now, key->limit[i], need);
        wait = ngx_max(wait, w);
    }

    return wait;
}


/*
 * How long until prev * (W - elapsed) / W + cur + need <= limit, with the
 * buckets of a sliding window; 0 when it already holds.
 */

static ngx_msec_t
ngx_http_conductor_window_wait(ngx_http_conductor_window_t *w, time_t period,
    time_t now, uint64_t limit, uint64_t need)
{
    time_t    elapsed, at;
    uint64_t  prev, cur;

    elapsed = ngx_http_conductor_window_view(w, period, now, &prev, &cur);

    if (prev * (period - elapsed) / period + cur + need <= limit) {
        return 0;
    }

    if (cur + need > limit) {
        /* not before the next bucket, where cur becomes prev */
        if (need > limit || cur == 0) {
            return (period - elapsed) * 1000;
        }

        at = period + (time_t) (period * (cur + need - limit) / cur);

    } else {
        at = (time_t) (period * (prev + cur + need - limit) / prev);
    }

    return (ngx_max(at, elapsed + 1) - elapsed) * 1000;
}


static ngx_http_conductor_cand_t *
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
