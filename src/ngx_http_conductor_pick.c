
/*
 * Picking a candidate: the lowest priority tier that still has an eligible
 * candidate, then the strategy inside that tier.  Runs under the zone lock
 * and counts the pick in the same critical section, so concurrent requests
 * in every worker see each other's reservations.
 */


#include "ngx_http_conductor.h"


static ngx_uint_t ngx_http_conductor_eligible(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *c);
static ngx_http_conductor_cand_t *ngx_http_conductor_round_robin(
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t **el,
    ngx_uint_t n);
static ngx_http_conductor_cand_t *ngx_http_conductor_weighted(
    ngx_http_conductor_cand_t **el, ngx_uint_t n, ngx_uint_t r);
static uint64_t ngx_http_conductor_cost_of(ngx_http_conductor_cand_t *c);


ngx_http_conductor_cand_t *
ngx_http_conductor_pick(ngx_http_request_t *r, ngx_http_conductor_ctx_t *ctx)
{
    uint64_t                         best, v;
    ngx_uint_t                       i, n, tier, found;
    ngx_http_conductor_cand_t       *c, *pick;
    ngx_http_conductor_main_conf_t  *cmcf;
    ngx_http_conductor_cand_t       *el[NGX_HTTP_CONDUCTOR_MAX_CANDS];

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    ngx_http_conductor_shm_lock(cmcf);

    found = 0;
    tier = 0;
    n = 0;

    for (i = 0; i < ctx->ncands; i++) {
        c = &ctx->cands[i];

        if (found && c->priority != tier) {
            break;
        }

        if (!ngx_http_conductor_eligible(ctx, c)) {
            continue;
        }

        found = 1;
        tier = c->priority;
        el[n++] = c;
    }

    if (n == 0) {
        ngx_http_conductor_shm_unlock(cmcf);
        return NULL;
    }

    pick = el[0];

    switch (ctx->strategy) {

    case NGX_HTTP_CONDUCTOR_ROUND_ROBIN:
        pick = ngx_http_conductor_round_robin(ctx, el, n);
        break;

    case NGX_HTTP_CONDUCTOR_WEIGHTED:
        pick = ngx_http_conductor_weighted(el, n, ctx->model->node->rr++);
        break;

    case NGX_HTTP_CONDUCTOR_RANDOM:
        pick = ngx_http_conductor_weighted(el, n, (ngx_uint_t) ngx_random());
        break;

    case NGX_HTTP_CONDUCTOR_LEAST_LOADED:
        best = (uint64_t) -1;

        for (i = 0; i < n; i++) {
            v = el[i]->key->node->inflight;

            if (el[i]->key->max_inflight) {
                /* share of the key's own concurrency that is in use */
                v = v * 1000 / el[i]->key->max_inflight;

            } else {
                v *= 1000;
            }

            if (v < best) {
                best = v;
                pick = el[i];
            }
        }

        break;

    case NGX_HTTP_CONDUCTOR_LEAST_USED:
        best = (uint64_t) -1;

        for (i = 0; i < n; i++) {
            if (el[i]->key->node->requests < best) {
                best = el[i]->key->node->requests;
                pick = el[i];
            }
        }

        break;

    case NGX_HTTP_CONDUCTOR_LEAST_LATENCY:
        best = (uint64_t) -1;

        /* an unmeasured key (0) is tried first, so every key gets measured */
        for (i = 0; i < n; i++) {
            if (el[i]->key->node->ttfb_ewma < best) {
                best = el[i]->key->node->ttfb_ewma;
                pick = el[i];
            }
        }

        break;

    case NGX_HTTP_CONDUCTOR_LEAST_COST:
        best = (uint64_t) -1;

        for (i = 0; i < n; i++) {
            v = ngx_http_conductor_cost_of(el[i]);

            if (v < best) {
                best = v;
                pick = el[i];
            }
        }

        break;

    default: /* sequential, simple, priority: the first with room */
        break;
    }

    ctx->tried |= (uint64_t) 1 << pick->index;

    pick->key->node->inflight++;
    pick->key->node->requests++;

    ngx_http_conductor_shm_unlock(cmcf);

    ctx->inflight = 1;
    ctx->attempts++;

    return pick;
}


static ngx_uint_t
ngx_http_conductor_eligible(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *c)
{
    ngx_http_conductor_node_t  *node;

    if (ctx->tried & ((uint64_t) 1 << c->index)) {
        return 0;
    }

    node = c->key->node;

    if (c->key->max_inflight && node->inflight >= c->key->max_inflight) {
        return 0;
    }

    return 1;
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


/* an unpriced model sorts after every priced one */

static uint64_t
ngx_http_conductor_cost_of(ngx_http_conductor_cand_t *c)
{
    if (c->price == NULL) {
        return (uint64_t) -1;
    }

    return c->price->input + c->price->output;
}
