
/*
 * The ledger: every counter of the shared zone and every rule that changes
 * one.  A request's attempt is reserved here (in flight, requests, the
 * estimated tokens), a failed attempt is settled here (released, its
 * estimate given back, its error counted, and the cooldown, backoff,
 * breaker or disable it calls for), and the answer is committed here in
 * the LOG phase (released, the estimate reconciled with the real usage,
 * the totals added).  In flight goes up in ngx_http_conductor_ledger_pick()
 * and down in ngx_http_conductor_ledger_release(), nowhere else.
 *
 * Every hold a worker takes (in flight, queue places) is also counted in
 * the worker's slot, found by its pid: a worker that dies holding some
 * (SIGKILL, OOM) has them reclaimed when a worker starts, and an old
 * worker still finishing its requests after a reload keeps its own.
 */


#include "ngx_http_conductor.h"


#define NGX_HTTP_CONDUCTOR_NEVER     ((ngx_msec_t) -1)
#define NGX_HTTP_CONDUCTOR_POLL      50     /* ms: room freed by others */


static ngx_int_t ngx_http_conductor_ledger_slot_get(
    ngx_http_conductor_shctx_t *sh);
static void ngx_http_conductor_ledger_reclaim(ngx_http_conductor_shctx_t *sh,
    ngx_uint_t slot, ngx_log_t *log);
static ngx_msec_t ngx_http_conductor_ledger_delay(
    ngx_http_conductor_main_conf_t *cmcf, ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *c, uint64_t now_ms, time_t now,
    ngx_uint_t *why);
static void ngx_http_conductor_ledger_reserve(
    ngx_http_conductor_main_conf_t *cmcf, ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *c, uint64_t now_ms, time_t now);
static ngx_msec_t ngx_http_conductor_ledger_client_delay(
    ngx_http_conductor_ctx_t *ctx, time_t now);
static ngx_msec_t ngx_http_conductor_ledger_budget(
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t *c, time_t now,
    ngx_uint_t *why);
static ngx_int_t ngx_http_conductor_ledger_budget_need(
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t *c,
    ngx_http_conductor_money_t *need);
static void ngx_http_conductor_ledger_spend_period(
    ngx_http_conductor_spend_t *sp, ngx_uint_t period, time_t now);
static void ngx_http_conductor_ledger_client_reserve(
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t *c, time_t now);
static void ngx_http_conductor_ledger_client_commit(
    ngx_http_conductor_ctx_t *ctx, uint64_t used, ngx_int_t err);
static void ngx_http_conductor_ledger_reconcile(
    ngx_http_conductor_node_t *node, ngx_uint_t *limit, uint64_t reserved,
    time_t reserved_at, uint64_t used);
static void ngx_http_conductor_ledger_release(ngx_http_conductor_ctx_t *ctx);
static void ngx_http_conductor_ledger_settle(
    ngx_http_conductor_main_conf_t *cmcf, ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *c, ngx_http_conductor_outcome_t *o,
    uint64_t now_ms);
static void ngx_http_conductor_ledger_breaker(
    ngx_http_conductor_main_conf_t *cmcf, ngx_http_conductor_node_t *node,
    uint64_t now_ms);
static void ngx_http_conductor_ledger_pass(ngx_http_conductor_node_t *key,
    ngx_http_conductor_node_t *provider);
static void ngx_http_conductor_ledger_refund(ngx_http_conductor_ctx_t *ctx,
    uint64_t used);
static void ngx_http_conductor_ledger_totals(ngx_http_conductor_node_t *node,
    ngx_http_conductor_ctx_t *ctx, ngx_int_t err);


/* this process's slot in the zone, -1: none (too many processes) */
static ngx_int_t  ngx_http_conductor_slot = -1;


/*
 * A starting worker reclaims what dead workers held, then takes a slot of
 * its own.  Slots are told apart by pid, never by the worker's number: in
 * a reload, old workers with the same numbers still hold requests.
 */

ngx_int_t
ngx_http_conductor_ledger_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                       i;
    ngx_http_conductor_shctx_t      *sh;
    ngx_http_conductor_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_conductor_module);

    if (cmcf == NULL || cmcf->sh == NULL) {
        return NGX_OK;
    }

    sh = cmcf->sh;

    ngx_http_conductor_shm_lock(cmcf);

    for (i = 0; i < NGX_HTTP_CONDUCTOR_SLOTS; i++) {

        if (sh->slots[i].pid == 0 || sh->slots[i].pid == ngx_pid) {
            continue;
        }

        if (kill(sh->slots[i].pid, 0) == -1 && ngx_errno == NGX_ESRCH) {
            ngx_http_conductor_ledger_reclaim(sh, i, cycle->log);
        }
    }

    ngx_http_conductor_slot = ngx_http_conductor_ledger_slot_get(sh);

    ngx_http_conductor_shm_unlock(cmcf);

    if (ngx_http_conductor_slot == NGX_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "conductor: more than %d processes use the zone: "
                      "what this one holds cannot be reclaimed if it dies",
                      NGX_HTTP_CONDUCTOR_SLOTS);
    }

    return NGX_OK;
}


/* a worker that exits gives back what it still holds (its slot too) */

void
ngx_http_conductor_ledger_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_conductor_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_conductor_module);

    if (cmcf == NULL || cmcf->sh == NULL || ngx_http_conductor_slot < 0) {
        return;
    }

    ngx_http_conductor_shm_lock(cmcf);
    ngx_http_conductor_ledger_reclaim(cmcf->sh, ngx_http_conductor_slot,
                                      NULL);
    ngx_http_conductor_shm_unlock(cmcf);

    ngx_http_conductor_slot = -1;
}


static ngx_int_t
ngx_http_conductor_ledger_slot_get(ngx_http_conductor_shctx_t *sh)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_CONDUCTOR_SLOTS; i++) {
        if (sh->slots[i].pid == ngx_pid) {
            return i;
        }
    }

    for (i = 0; i < NGX_HTTP_CONDUCTOR_SLOTS; i++) {
        if (sh->slots[i].pid == 0) {
            sh->slots[i].pid = ngx_pid;
            return i;
        }
    }

    return NGX_ERROR;
}


static void
ngx_http_conductor_ledger_reclaim(ngx_http_conductor_shctx_t *sh,
    ngx_uint_t slot, ngx_log_t *log)
{
    ngx_uint_t                  inflight;
    ngx_rbtree_node_t          *node, *root, *sentinel;
    ngx_http_conductor_node_t  *cn;

    inflight = 0;

    root = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    if (root != sentinel) {
        for (node = ngx_rbtree_min(root, sentinel);
             node;
             node = ngx_rbtree_next(&sh->rbtree, node))
        {
            cn = (ngx_http_conductor_node_t *) node;

            if (cn->held[slot] == 0) {
                continue;
            }

            inflight += cn->held[slot];
            cn->inflight -= ngx_min(cn->inflight, cn->held[slot]);
            cn->held[slot] = 0;
        }
    }

    sh->queued -= ngx_min(sh->queued, sh->slots[slot].queued);

    if (log && (inflight || sh->slots[slot].queued)) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "conductor: worker %P is gone: %ui requests in flight "
                      "and %ui queue places it held are reclaimed",
                      sh->slots[slot].pid, inflight, sh->slots[slot].queued);
    }

    sh->slots[slot].queued = 0;
    sh->slots[slot].pid = 0;
}


/*
 * The attempt's pick: under one lock, the lowest priority tier that still
 * has a candidate with room, the strategy inside it, and the reservation,
 * so that N concurrent requests in any worker cannot all pass a limit that
 * has room for one.  Also notes whether another candidate would have room
 * (the balancer's last try) and, when none has, when and why not.
 */

ngx_http_conductor_cand_t *
ngx_http_conductor_ledger_pick(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    time_t                           now;
    uint64_t                         now_ms;
    ngx_uint_t                       i, n, tier, found, why, more;
    ngx_uint_t                       unpriced;
    ngx_msec_t                       wait, limit_wait, fail_wait, budget_wait;
    ngx_http_conductor_cand_t       *c, *pick;
    ngx_http_conductor_main_conf_t  *cmcf;
    ngx_http_conductor_cand_t       *el[NGX_HTTP_CONDUCTOR_MAX_CANDS];

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    now = ngx_time();
    now_ms = ngx_http_conductor_now_ms();

    found = 0;
    more = 0;
    tier = 0;
    n = 0;
    unpriced = 0;
    limit_wait = NGX_HTTP_CONDUCTOR_NEVER;
    fail_wait = NGX_HTTP_CONDUCTOR_NEVER;
    budget_wait = 0;

    ctx->budget_held = 0;

    ngx_http_conductor_shm_lock(cmcf);

    /* the client's own limits hold the request once, whatever serves it */
    if (ctx->client && !ctx->client_held) {
        wait = ngx_http_conductor_ledger_client_delay(ctx, now);

        if (wait) {
            ngx_http_conductor_shm_unlock(cmcf);

            ctx->refusal = NGX_HTTP_CONDUCTOR_WAIT_CLIENT;
            ctx->retry_after = wait;

            return NULL;
        }
    }

    for (i = 0; i < ctx->ncands; i++) {
        c = &ctx->cands[i];

        wait = ngx_http_conductor_ledger_delay(cmcf, ctx, c, now_ms, now,
                                              &why);

        if (wait) {
            if (why == NGX_HTTP_CONDUCTOR_WAIT_LIMIT) {
                limit_wait = ngx_min(limit_wait, wait);

            } else if (why == NGX_HTTP_CONDUCTOR_WAIT_FAILING) {
                fail_wait = ngx_min(fail_wait, wait);

            } else if (why == NGX_HTTP_CONDUCTOR_WAIT_BUDGET) {
                budget_wait = budget_wait ? ngx_min(budget_wait, wait) : wait;

            } else if (why == NGX_HTTP_CONDUCTOR_WAIT_UNPRICED) {
                unpriced = 1;
            }

            continue;
        }

        if (found && c->priority != tier) {
            /* a lower tier only tells that a retry would have room */
            more = 1;
            break;
        }

        found = 1;
        tier = c->priority;
        el[n++] = c;
    }

    if (n == 0) {
        ngx_http_conductor_shm_unlock(cmcf);

        /* a key at its limit frees up: 429; a budget spent: 429 until it
         * resets; no price for a budget: 403; only failing providers or
         * disabled keys: 503; Retry-After and the queue use the wait */
        if (limit_wait != NGX_HTTP_CONDUCTOR_NEVER) {
            ctx->refusal = NGX_HTTP_CONDUCTOR_WAIT_LIMIT;
            ctx->retry_after = limit_wait;

        } else if (budget_wait) {
            ctx->refusal = NGX_HTTP_CONDUCTOR_WAIT_BUDGET;
            ctx->retry_after = budget_wait;

        } else if (unpriced) {
            ctx->refusal = NGX_HTTP_CONDUCTOR_WAIT_UNPRICED;
            ctx->retry_after = NGX_HTTP_CONDUCTOR_NEVER;

        } else {
            ctx->refusal = NGX_HTTP_CONDUCTOR_WAIT_FAILING;
            ctx->retry_after = fail_wait;
        }

        return NULL;
    }

    pick = ngx_http_conductor_choose(ctx, el, n);

    ngx_http_conductor_ledger_reserve(cmcf, ctx, pick, now_ms, now);

    ngx_http_conductor_shm_unlock(cmcf);

    ctx->more = (more || n > 1);

    return pick;
}


/*
 * 0 when the candidate can take the request now, else the time in ms
 * until it might (NEVER: not for this request), and why it waits.
 */

static ngx_msec_t
ngx_http_conductor_ledger_delay(ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t *c,
    uint64_t now_ms, time_t now, ngx_uint_t *why)
{
    uint64_t                    need, until, w;
    ngx_uint_t                  i;
    ngx_msec_t                  wait;
    ngx_http_conductor_key_t   *key;
    ngx_http_conductor_node_t  *kn, *pn;

    *why = NGX_HTTP_CONDUCTOR_WAIT_NEVER;

    if (ctx->tried[c->index / 64] & ((uint64_t) 1 << (c->index % 64))) {
        return NGX_HTTP_CONDUCTOR_NEVER;
    }

    if (ctx->routing_provider && c->provider != ctx->routing_provider) {
        return NGX_HTTP_CONDUCTOR_NEVER;
    }

    key = c->key;
    kn = key->node;
    pn = c->provider->node;

    if (kn->disabled && now_ms < kn->disabled + cmcf->disabled_time) {
        /* 401/403: probed again once disabled= has passed */
        return NGX_HTTP_CONDUCTOR_NEVER;
    }

    *why = NGX_HTTP_CONDUCTOR_WAIT_FAILING;

    if (pn->unhealthy) {
        return ngx_max(pn->health_next, now_ms + 1) - now_ms;
    }

    if (kn->breaker != NGX_HTTP_CONDUCTOR_CLOSED
        || pn->breaker != NGX_HTTP_CONDUCTOR_CLOSED)
    {
        until = kn->breaker ? kn->cooldown_until : 0;

        if (pn->breaker && pn->cooldown_until > until) {
            until = pn->cooldown_until;
        }

        if (until > now_ms) {
            return until - now_ms;
        }

        if (kn->breaker == NGX_HTTP_CONDUCTOR_HALF_OPEN
            || pn->breaker == NGX_HTTP_CONDUCTOR_HALF_OPEN)
        {
            /* one probe at a time */
            return NGX_HTTP_CONDUCTOR_POLL;
        }
    }

    *why = NGX_HTTP_CONDUCTOR_WAIT_LIMIT;

    wait = 0;

    until = ngx_max(kn->cooldown_until, pn->cooldown_until);

    if (until > now_ms) {
        wait = until - now_ms;
    }

    if (key->max_inflight
        && ngx_http_conductor_inflight(kn) >= key->max_inflight)
    {
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
        wait = ngx_max(wait, ngx_min(w, NGX_HTTP_CONDUCTOR_NEVER));
    }

    if (wait || ctx->client == NULL || ctx->client->budgets == 0) {
        return wait;
    }

    return ngx_http_conductor_ledger_budget(ctx, c, now, why);
}


/*
 * 0 when the client may send one more request now, else the ms until it
 * may; the limit reached is noted for the message.
 */

static ngx_msec_t
ngx_http_conductor_ledger_client_delay(ngx_http_conductor_ctx_t *ctx,
    time_t now)
{
    uint64_t                      need, w;
    ngx_uint_t                    i;
    ngx_msec_t                    wait;
    ngx_http_conductor_node_t    *node;
    ngx_http_conductor_client_t  *cl;

    cl = ctx->client;
    node = cl->node;
    wait = 0;

    if (cl->max_inflight
        && ngx_http_conductor_inflight(node) >= cl->max_inflight)
    {
        wait = NGX_HTTP_CONDUCTOR_POLL;
        ctx->client_limit = NGX_HTTP_CONDUCTOR_NLIMITS;
    }

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NLIMITS; i++) {

        if (cl->limit[i] == 0) {
            continue;
        }

        need = (i & 1) ? ngx_min(ctx->estimate, cl->limit[i]) : 1;

        w = ngx_http_conductor_window_wait(&node->win[i],
                                           ngx_http_conductor_periods[i],
                                           now, cl->limit[i], need);
        w = ngx_min(w, NGX_HTTP_CONDUCTOR_NEVER);

        if (w > wait) {
            wait = w;
            ctx->client_limit = i;
        }
    }

    return wait;
}


/*
 * Whether the candidate's estimated cost fits every budget of the client,
 * beside what the client's other requests in flight hold: 0 when it does;
 * else WAIT_LIMIT (those may give some back: a short wait), WAIT_BUDGET
 * (spent: the wait is until the period resets) or WAIT_UNPRICED (no price
 * to count it by, and the client refuses those).
 */

static ngx_msec_t
ngx_http_conductor_ledger_budget(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *c, time_t now, ngx_uint_t *why)
{
    time_t                         ends;
    ngx_uint_t                     p;
    ngx_msec_t                     wait;
    ngx_http_conductor_money_t     need[NGX_HTTP_CONDUCTOR_NPERIODS];
    ngx_http_conductor_money_t     use;
    ngx_http_conductor_spend_t    *sp;
    ngx_http_conductor_client_t   *cl;

    cl = ctx->client;

    if (ngx_http_conductor_ledger_budget_need(ctx, c, need) != NGX_OK) {
        *why = NGX_HTTP_CONDUCTOR_WAIT_UNPRICED;
        return NGX_HTTP_CONDUCTOR_NEVER;
    }

    wait = 0;

    for (p = 0; p < NGX_HTTP_CONDUCTOR_NPERIODS; p++) {

        if (!(cl->budgets & (1 << p))) {
            continue;
        }

        sp = &cl->node->spend[p];
        ngx_http_conductor_ledger_spend_period(sp, p, now);

        use = ngx_http_conductor_money_add(sp->spent, need[p]);

        if (ngx_http_conductor_money_cmp(use, cl->budget[p]) > 0) {
            /* not even alone: the budget is spent for this period */
            (void) ngx_http_conductor_budget_period(p, now, &ends);

            *why = NGX_HTTP_CONDUCTOR_WAIT_BUDGET;
            ctx->budget_period = p;
            ctx->budget_ends = ends;

            return ends ? (ngx_msec_t) (ends - now) * 1000
                        : NGX_HTTP_CONDUCTOR_NEVER;
        }

        /* what the other requests of the client hold (the request's own
         * reservation, on a retry, is replaced) */
        use = ngx_http_conductor_money_add(use,
                  ngx_http_conductor_money_sub(sp->reserved,
                                               ctx->cost_reserved[p]));

        if (cl->node->sync) {
            /* and what the fleet's other nodes hold */
            use = ngx_http_conductor_money_add(use,
                      ngx_http_conductor_money_mul(
                          cl->node->sync->fleet_held[p], 1000));
        }

        if (ngx_http_conductor_money_cmp(use, cl->budget[p]) > 0) {
            *why = NGX_HTTP_CONDUCTOR_WAIT_LIMIT;
            wait = NGX_HTTP_CONDUCTOR_POLL;
            ctx->budget_held = 1;
            ctx->budget_period = p;
        }
    }

    return wait;
}


/*
 * What the request may cost on the candidate, by the token estimate, for
 * each budget: capped at the budget, so that a budget smaller than one
 * request still admits one.  NGX_DECLINED: the candidate has no price and
 * the client refuses unpriced models (with "unpriced tokens" it counts
 * nothing).
 */

static ngx_int_t
ngx_http_conductor_ledger_budget_need(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *c, ngx_http_conductor_money_t *need)
{
    ngx_uint_t                    p;
    ngx_http_conductor_money_t    cost;
    ngx_http_conductor_price_t   *price;
    ngx_http_conductor_client_t  *cl;

    cl = ctx->client;
    price = ngx_http_conductor_price_of(ctx, c);

    ngx_memzero(need, NGX_HTTP_CONDUCTOR_NPERIODS * sizeof(*need));

    if (price == NULL) {
        return cl->unpriced_tokens ? NGX_OK : NGX_DECLINED;
    }

    cost = ngx_http_conductor_money_cost(ctx->estimate - ctx->estimate_out,
                                         ctx->estimate_out, 0, 0,
                                         price->input, price->output,
                                         price->cached_input,
                                         price->cache_write);

    for (p = 0; p < NGX_HTTP_CONDUCTOR_NPERIODS; p++) {
        if (cl->budgets & (1 << p)) {
            need[p] = ngx_http_conductor_money_cmp(cost, cl->budget[p]) > 0
                      ? cl->budget[p] : cost;
        }
    }

    return NGX_OK;
}


/* a new day or month starts the budget's spend again (in flight stays) */

static void
ngx_http_conductor_ledger_spend_period(ngx_http_conductor_spend_t *sp,
    ngx_uint_t period, time_t now)
{
    time_t    ends;
    uint64_t  cur;

    cur = ngx_http_conductor_budget_period(period, now, &ends);

    if (sp->period != cur) {
        sp->period = cur;
        sp->spent.usd = 0;
        sp->spent.pico = 0;
    }
}


static void
ngx_http_conductor_ledger_reserve(ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t *c,
    uint64_t now_ms, time_t now)
{
    ngx_uint_t                  i;
    ngx_http_conductor_node_t  *node;

    node = c->key->node;

    if (node->breaker == NGX_HTTP_CONDUCTOR_OPEN) {
        /* its time is over: this request is the half-open probe */
        node->breaker = NGX_HTTP_CONDUCTOR_HALF_OPEN;
    }

    if (node->disabled) {
        /* disabled= has passed: this request probes the key; the next
         * probe waits as long again unless this one is answered */
        node->disabled = now_ms;
    }

    node->inflight++;
    node->requests++;

    ctx->held_slot = 0;

    if (ngx_http_conductor_slot >= 0
        && node->held[ngx_http_conductor_slot] < UINT16_MAX)
    {
        node->held[ngx_http_conductor_slot]++;
        ctx->held_slot = 1;
    }

    /* the windows of the key's limits; requests a minute always, for
     * least_used */
    for (i = 0; i < NGX_HTTP_CONDUCTOR_NLIMITS; i++) {

        if (c->key->limit[i] == 0 && i != NGX_HTTP_CONDUCTOR_RPM) {
            continue;
        }

        ngx_http_conductor_window_add(&node->win[i],
                                      ngx_http_conductor_periods[i], now,
                                      (i & 1) ? ctx->estimate : 1);
        ngx_http_conductor_sync_window(node, i, now,
                                       (i & 1) ? ctx->estimate : 1);
    }

    if (ctx->client) {
        ngx_http_conductor_ledger_client_reserve(ctx, c, now);
    }

    ctx->tried[c->index / 64] |= (uint64_t) 1 << (c->index % 64);
    ctx->held = c;
    ctx->reserved = ctx->estimate;
    ctx->reserved_at = now;
    ctx->attempts++;
}


/*
 * The request holds its client's room from its first attempt to its
 * commit: in flight, one request and the estimated tokens in the windows,
 * and on each budget the estimated cost on the candidate of the attempt
 * (a retry elsewhere swaps it).  Called with the lock.
 */

static void
ngx_http_conductor_ledger_client_reserve(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *c, time_t now)
{
    ngx_uint_t                     i;
    ngx_http_conductor_money_t     need[NGX_HTTP_CONDUCTOR_NPERIODS];
    ngx_http_conductor_spend_t    *sp;
    ngx_http_conductor_node_t     *node;
    ngx_http_conductor_client_t   *cl;

    cl = ctx->client;
    node = cl->node;

    if (!ctx->client_held) {
        ctx->client_held = 1;
        ctx->client_reserved_at = now;

        node->inflight++;

        if (ngx_http_conductor_slot >= 0
            && node->held[ngx_http_conductor_slot] < UINT16_MAX)
        {
            node->held[ngx_http_conductor_slot]++;
            ctx->client_slot = 1;
        }

        for (i = 0; i < NGX_HTTP_CONDUCTOR_NLIMITS; i++) {

            if (cl->limit[i] == 0 && i != NGX_HTTP_CONDUCTOR_RPM) {
                continue;
            }

            ngx_http_conductor_window_add(&node->win[i],
                                          ngx_http_conductor_periods[i], now,
                                          (i & 1) ? ctx->estimate : 1);
            ngx_http_conductor_sync_window(node, i, now,
                                           (i & 1) ? ctx->estimate : 1);
        }
    }

    if (cl->budgets == 0
        || ngx_http_conductor_ledger_budget_need(ctx, c, need) != NGX_OK)
    {
        return;
    }

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NPERIODS; i++) {

        if (!(cl->budgets & (1 << i))) {
            continue;
        }

        sp = &node->spend[i];
        sp->reserved = ngx_http_conductor_money_add(
                           ngx_http_conductor_money_sub(sp->reserved,
                                                        ctx->cost_reserved[i]),
                           need[i]);
        ctx->cost_reserved[i] = need[i];
    }
}


/* the attempt's request leaves the key's in flight; called with the lock */

static void
ngx_http_conductor_ledger_release(ngx_http_conductor_ctx_t *ctx)
{
    ngx_http_conductor_node_t  *node;

    if (ctx->held == NULL) {
        return;
    }

    node = ctx->held->key->node;

    node->inflight -= ngx_min(node->inflight, 1);

    if (ctx->held_slot && node->held[ngx_http_conductor_slot]) {
        node->held[ngx_http_conductor_slot]--;
        ctx->held_slot = 0;
    }

    ctx->held = NULL;
}


/*
 * What the provider's headers say of the key (the nginx-free ratelimit
 * parser reads them): remaining requests and tokens, and how long it is
 * spent, every hint clamped to conductor_cooldown max=.
 */

void
ngx_http_conductor_ledger_hints(ngx_http_request_t *r,
    ngx_http_conductor_outcome_t *o)
{
    uint64_t                         now_ms;
    ngx_uint_t                       i;
    ngx_list_part_t                 *part;
    ngx_table_elt_t                 *h;
    ngx_http_conductor_ratelimit_t   rl;
    ngx_http_conductor_main_conf_t  *cmcf;

    ngx_http_conductor_ratelimit_init(&rl);

    o->cooldown = 0;
    o->exhausted_until = 0;
    o->remaining_requests = -1;
    o->remaining_tokens = -1;

    if (r->upstream == NULL) {
        return;
    }

    now_ms = ngx_http_conductor_now_ms();

    part = &r->upstream->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        ngx_http_conductor_ratelimit_header(&rl, h[i].key.data, h[i].key.len,
                                            h[i].value.data, h[i].value.len,
                                            now_ms);
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    ngx_http_conductor_ratelimit_decide(&rl, o->status, now_ms,
                                        cmcf->cooldown_max, &o->cooldown,
                                        &o->exhausted_until);

    o->remaining_requests = rl.remaining_requests;
    o->remaining_tokens = rl.remaining_tokens;
}


/* an attempt that failed and is not the client's answer (peer.free) */

void
ngx_http_conductor_ledger_fail(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_outcome_t *o)
{
    uint64_t                         now_ms;
    ngx_http_conductor_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);
    now_ms = ngx_http_conductor_now_ms();

    ngx_http_conductor_shm_lock(cmcf);

    ngx_http_conductor_ledger_release(ctx);

    /* no tokens were used: the attempt's estimate is given back */
    ngx_http_conductor_ledger_refund(ctx, 0);

    ngx_http_conductor_ledger_settle(cmcf, ctx, ctx->cand, o, now_ms);

    ngx_http_conductor_shm_unlock(cmcf);

    /* sync=0: what the attempt holds in Redis goes back too */
    ngx_http_conductor_exact_give_back(ctx, 0, 0);
}


/*
 * sync=0: the fleet refused what the node's own counts let through.  The
 * attempt's hold on its key is undone as if it had never been taken (its
 * request and tokens out of the windows, not counted as an error: the
 * candidate stays tried), and with client, the client's hold as well.
 */

void
ngx_http_conductor_ledger_unpick(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_uint_t client)
{
    ngx_uint_t                       i, p;
    ngx_http_conductor_node_t       *node;
    ngx_http_conductor_client_t     *cl;
    ngx_http_conductor_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    ngx_http_conductor_shm_lock(cmcf);

    if (ctx->held) {
        node = ctx->held->key->node;

        for (i = 0; i < NGX_HTTP_CONDUCTOR_NLIMITS; i += 2) {

            if (ctx->held->key->limit[i] == 0
                && i != NGX_HTTP_CONDUCTOR_RPM)
            {
                continue;
            }

            ngx_http_conductor_window_sub(&node->win[i],
                                          ngx_http_conductor_periods[i],
                                          ngx_time(), ctx->reserved_at, 1);
            ngx_http_conductor_sync_window(node, i, ctx->reserved_at, -1);
        }

        node->requests -= ngx_min(node->requests, 1);
        ctx->attempts -= ngx_min(ctx->attempts, 1);

        ngx_http_conductor_ledger_release(ctx);
        ngx_http_conductor_ledger_refund(ctx, 0);
    }

    if (client && ctx->client && ctx->client_held) {
        cl = ctx->client;
        node = cl->node;

        ctx->client_held = 0;
        node->inflight -= ngx_min(node->inflight, 1);

        if (ctx->client_slot && node->held[ngx_http_conductor_slot]) {
            node->held[ngx_http_conductor_slot]--;
            ctx->client_slot = 0;
        }

        for (i = 0; i < NGX_HTTP_CONDUCTOR_NLIMITS; i += 2) {

            if (cl->limit[i] == 0 && i != NGX_HTTP_CONDUCTOR_RPM) {
                continue;
            }

            ngx_http_conductor_window_sub(&node->win[i],
                                          ngx_http_conductor_periods[i],
                                          ngx_time(),
                                          ctx->client_reserved_at, 1);
            ngx_http_conductor_sync_window(node, i, ctx->client_reserved_at,
                                           -1);
        }

        ngx_http_conductor_ledger_reconcile(node, cl->limit, ctx->estimate,
                                            ctx->client_reserved_at, 0);

        for (p = 0; p < NGX_HTTP_CONDUCTOR_NPERIODS; p++) {
            node->spend[p].reserved = ngx_http_conductor_money_sub(
                                          node->spend[p].reserved,
                                          ctx->cost_reserved[p]);
            ngx_memzero(&ctx->cost_reserved[p],
                        sizeof(ngx_http_conductor_money_t));
        }
    }

    ngx_http_conductor_shm_unlock(cmcf);
}


/*
 * What an attempt's outcome does to its key and provider: the provider's
 * own view of the key (remaining, resets), and for an error its count and
 * the rule it calls for: a 429 cools the key down (as long as the provider
 * says, else a doubling backoff, never beyond conductor_cooldown max=), a
 * 401/403 disables it until disabled= has passed, a 5xx or a fault counts
 * towards the breaker.  Called with the lock.
 */

static void
ngx_http_conductor_ledger_settle(ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_cand_t *c,
    ngx_http_conductor_outcome_t *o, uint64_t now_ms)
{
    ngx_msec_t                  ttfb;
    uint64_t                    cooldown;
    ngx_http_conductor_node_t  *kn, *pn;

    kn = c->key->node;
    pn = c->provider->node;

    if (o->remaining_requests >= 0) {
        kn->remaining_requests = o->remaining_requests;
    }

    if (o->remaining_tokens >= 0) {
        kn->remaining_tokens = o->remaining_tokens;
    }

    /* the provider says the key is spent until its reset */
    if (o->exhausted_until > kn->cooldown_until) {
        kn->cooldown_until = o->exhausted_until;
    }

    if (o->err == NGX_DECLINED) {
        ngx_http_conductor_ledger_pass(kn, pn);

        if (kn->disabled) {
            kn->disabled = 0;
            ngx_log_error(NGX_LOG_NOTICE, ctx->request->connection->log, 0,
                          "conductor: key \"%V\" of provider \"%V\" answered "
                          "again: enabled", &c->key->name, &c->provider->name);
        }

        kn->responses++;
        kn->ttfb_sum += o->ttfb;

        /* an EWMA of 1/5: recent answers count, one slow answer does not
         * decide alone; 0 stays "never measured" */
        ttfb = o->ttfb ? o->ttfb : 1;
        kn->ttfb_ewma = kn->ttfb_ewma ? (kn->ttfb_ewma * 4 + ttfb) / 5 : ttfb;

        return;
    }

    kn->errors[o->err]++;

    if (o->status == NGX_HTTP_TOO_MANY_REQUESTS
        || (o->status == NGX_HTTP_SERVICE_UNAVAILABLE && o->cooldown))
    {
        /* told when: Retry-After and its kin; else backing off */
        cooldown = o->cooldown;

        if (cooldown == 0) {
            cooldown = (uint64_t) 1000 << ngx_min(kn->backoff, 10);
            kn->backoff++;
        }

        cooldown = ngx_min(cooldown, cmcf->cooldown_max);

        kn->cooldown_until = ngx_max(kn->cooldown_until, now_ms + cooldown);

    } else if (o->status == NGX_HTTP_UNAUTHORIZED
               || o->status == NGX_HTTP_FORBIDDEN)
    {
        kn->disabled = now_ms;

        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "conductor: key \"%V\" of provider \"%V\" answered "
                      "%ui: disabled for %M ms, then probed again",
                      &c->key->name, &c->provider->name, o->status,
                      cmcf->disabled_time);

    } else if (o->err != NGX_HTTP_CONDUCTOR_ERR_4XX) {
        ngx_http_conductor_ledger_breaker(cmcf, kn, now_ms);

        if (o->err != NGX_HTTP_CONDUCTOR_ERR_5XX
            && o->err != NGX_HTTP_CONDUCTOR_ERR_STREAM_CUT
            && o->err != NGX_HTTP_CONDUCTOR_ERR_STREAM_TIMEOUT)
        {
            /* an unreachable provider fails every one of its keys */
            ngx_http_conductor_ledger_breaker(cmcf, pn, now_ms);
        }
    }
}


/* consecutive failures open the breaker; a failed probe opens it again */

static void
ngx_http_conductor_ledger_breaker(ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_node_t *node, uint64_t now_ms)
{
    node->failures++;

    if (node->breaker == NGX_HTTP_CONDUCTOR_HALF_OPEN
        || node->failures >= cmcf->breaker_failures)
    {
        node->breaker = NGX_HTTP_CONDUCTOR_OPEN;
        node->cooldown_until = ngx_max(node->cooldown_until,
                                       now_ms + cmcf->breaker_timeout);
    }
}


/* an answer: the key's and its provider's failures are over */

static void
ngx_http_conductor_ledger_pass(ngx_http_conductor_node_t *key,
    ngx_http_conductor_node_t *provider)
{
    key->failures = 0;
    key->backoff = 0;
    key->breaker = NGX_HTTP_CONDUCTOR_CLOSED;
    provider->failures = 0;
    provider->breaker = NGX_HTTP_CONDUCTOR_CLOSED;
}


/*
 * The LOG phase: the answer the client got is settled on the key that gave
 * it (a stream's end decides whether it was one), the reservation is
 * reconciled with the real usage, and the totals of key, provider and
 * model alias grow, all under one lock.  A request the gateway answered
 * itself counts for its alias and the gateway's own node.  Its history
 * record (NULL: none), made before, is a few stores more in the same hold.
 */

void
ngx_http_conductor_ledger_commit(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_outcome_t *o,
    ngx_int_t err, ngx_http_conductor_history_rec_t *rec)
{
    uint64_t                         used;
    ngx_http_conductor_node_t       *provider, *model;
    ngx_http_conductor_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    if (cmcf->sh == NULL) {
        return;
    }

    model = ctx->model ? ctx->model->node : NULL;

    if (ctx->winner) {
        provider = ctx->winner->provider->node;

    } else if (ctx->cand) {
        provider = ctx->cand->provider->node;

    } else if (ctx->account.usage_provider) {
        provider = ctx->account.usage_provider->node;

    } else {
        provider = &cmcf->sh->gateway;
    }

    used = ctx->account.final.found ? (uint64_t) ctx->account.final.total : 0;

    ngx_http_conductor_shm_lock(cmcf);

    ngx_http_conductor_ledger_release(ctx);

    if (ctx->winner) {
        ngx_http_conductor_ledger_settle(cmcf, ctx, ctx->winner, o,
                                         ngx_http_conductor_now_ms());

        /* the key's requests and errors were counted per attempt */
        ngx_http_conductor_ledger_totals(ctx->winner->key->node, ctx,
                                         NGX_ERROR);
    }

    ngx_http_conductor_ledger_refund(ctx, used);

    if (ctx->client) {
        ngx_http_conductor_ledger_client_commit(ctx, used, err);
    }

    ngx_http_conductor_ledger_totals(provider, ctx, err);

    if (model) {
        ngx_http_conductor_ledger_totals(model, ctx, err);
    }

    if (rec) {
        ngx_http_conductor_history_add(cmcf->sh, rec, ngx_time());
    }

    ngx_http_conductor_shm_unlock(cmcf);

    /* sync=0: the request's holds in Redis, reconciled there */
    ngx_http_conductor_exact_give_back(ctx, used, 1);
}


/*
 * The tokens windows of the attempt's key get what it really used in place
 * of its estimate (0: an error, nothing used).  Called with the lock.
 */

static void
ngx_http_conductor_ledger_refund(ngx_http_conductor_ctx_t *ctx, uint64_t used)
{
    if (ctx->cand == NULL || (ctx->reserved == 0 && used == 0)) {
        return;
    }

    ngx_http_conductor_ledger_reconcile(ctx->cand->key->node,
                                        ctx->cand->key->limit, ctx->reserved,
                                        ctx->reserved_at, used);

    ctx->reserved = 0;
}


/*
 * The request leaves its client: in flight down, its token estimate
 * replaced by what it used, each budget's reservation by the real cost
 * (nothing for an unpriced answer, which counts tokens only), and the
 * client's totals.  Called with the lock.
 */

static void
ngx_http_conductor_ledger_client_commit(ngx_http_conductor_ctx_t *ctx,
    uint64_t used, ngx_int_t err)
{
    time_t                        now;
    ngx_uint_t                    p;
    ngx_http_conductor_spend_t   *sp;
    ngx_http_conductor_node_t    *node;
    ngx_http_conductor_client_t  *cl;

    cl = ctx->client;
    node = cl->node;

    if (ctx->client_held) {
        ctx->client_held = 0;

        node->inflight -= ngx_min(node->inflight, 1);

        if (ctx->client_slot && node->held[ngx_http_conductor_slot]) {
            node->held[ngx_http_conductor_slot]--;
            ctx->client_slot = 0;
        }

        ngx_http_conductor_ledger_reconcile(node, cl->limit, ctx->estimate,
                                            ctx->client_reserved_at, used);
    }

    now = ngx_time();

    for (p = 0; p < NGX_HTTP_CONDUCTOR_NPERIODS; p++) {

        if (!(cl->budgets & (1 << p))) {
            continue;
        }

        sp = &node->spend[p];

        sp->reserved = ngx_http_conductor_money_sub(sp->reserved,
                                                    ctx->cost_reserved[p]);
        ngx_memzero(&ctx->cost_reserved[p], sizeof(ngx_http_conductor_money_t));

        ngx_http_conductor_ledger_spend_period(sp, p, now);

        if (ctx->account.final.found && ctx->account.priced) {
            sp->spent = ngx_http_conductor_money_add(sp->spent,
                                                     ctx->account.cost);
            ngx_http_conductor_sync_spend(node, p, sp->period,
                                          ctx->account.cost);
        }
    }

    ngx_http_conductor_ledger_totals(node, ctx, err);
}


/*
 * The token windows of a node's limits get what a request really used in
 * place of its estimate (0: an error, nothing used), in the buckets the
 * estimate went to.  Called with the lock.
 */

static void
ngx_http_conductor_ledger_reconcile(ngx_http_conductor_node_t *node,
    ngx_uint_t *limit, uint64_t reserved, time_t reserved_at, uint64_t used)
{
    time_t      now;
    ngx_uint_t  i;

    now = ngx_time();

    for (i = 1; i < NGX_HTTP_CONDUCTOR_NLIMITS; i += 2) {

        if (limit[i] == 0) {
            continue;
        }

        if (used > reserved) {
            ngx_http_conductor_window_add(&node->win[i],
                                          ngx_http_conductor_periods[i], now,
                                          used - reserved);
            ngx_http_conductor_sync_window(node, i, now,
                                           (int64_t) (used - reserved));

        } else {
            ngx_http_conductor_window_sub(&node->win[i],
                                          ngx_http_conductor_periods[i], now,
                                          reserved_at, reserved - used);
            ngx_http_conductor_sync_window(node, i, reserved_at,
                                           - (int64_t) (reserved - used));
        }
    }
}


/* err: an error class, NGX_DECLINED for an answer, NGX_ERROR: tokens only */

static void
ngx_http_conductor_ledger_totals(ngx_http_conductor_node_t *node,
    ngx_http_conductor_ctx_t *ctx, ngx_int_t err)
{
    ngx_http_conductor_usage_t  *u;

    u = &ctx->account.final;

    if (err != NGX_ERROR) {
        node->requests++;

        if (err == NGX_DECLINED) {
            node->responses++;
            node->ttfb_sum += ctx->ttfb;

        } else {
            node->errors[err]++;
        }
    }

    if (!u->found) {
        return;
    }

    node->prompt_tokens += u->prompt;
    node->completion_tokens += u->completion;
    node->cached_tokens += u->cached;
    node->cache_creation_tokens += u->cache_creation;
    node->reasoning_tokens += u->reasoning;
    node->cost = ngx_http_conductor_money_add(node->cost, ctx->account.cost);

    if (ctx->account.estimated) {
        node->estimated++;
    }

    if (!ctx->account.priced) {
        node->unpriced++;
    }
}


/*
 * The error class of a status and a transport fault (NGX_DECLINED: none):
 * one table for the attempts the balancer sees and the answers the log
 * phase counts.
 */

ngx_int_t
ngx_http_conductor_ledger_class(ngx_uint_t status, ngx_int_t fault)
{
    if (status == NGX_HTTP_TOO_MANY_REQUESTS) {
        return NGX_HTTP_CONDUCTOR_ERR_429;
    }

    if (fault != NGX_DECLINED) {
        return fault;
    }

    if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        return NGX_HTTP_CONDUCTOR_ERR_5XX;
    }

    if (status >= NGX_HTTP_BAD_REQUEST) {
        return NGX_HTTP_CONDUCTOR_ERR_4XX;
    }

    return NGX_DECLINED;
}


/* a queue place, bounded across all workers; NGX_DECLINED: it is full */

ngx_int_t
ngx_http_conductor_ledger_enqueue(ngx_http_request_t *r, ngx_uint_t max)
{
    ngx_int_t                        rc;
    ngx_http_conductor_shctx_t      *sh;
    ngx_http_conductor_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);
    sh = cmcf->sh;

    ngx_http_conductor_shm_lock(cmcf);

    rc = NGX_DECLINED;

    if (sh->queued < max) {
        sh->queued++;

        if (ngx_http_conductor_slot >= 0) {
            sh->slots[ngx_http_conductor_slot].queued++;
        }

        rc = NGX_OK;
    }

    ngx_http_conductor_shm_unlock(cmcf);

    return rc;
}


void
ngx_http_conductor_ledger_dequeue(ngx_http_request_t *r)
{
    ngx_http_conductor_shctx_t      *sh;
    ngx_http_conductor_slot_t       *slot;
    ngx_http_conductor_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);
    sh = cmcf->sh;

    ngx_http_conductor_shm_lock(cmcf);

    sh->queued -= ngx_min(sh->queued, 1);

    if (ngx_http_conductor_slot >= 0) {
        slot = &sh->slots[ngx_http_conductor_slot];
        slot->queued -= ngx_min(slot->queued, 1);
    }

    ngx_http_conductor_shm_unlock(cmcf);
}


/*
 * Health checks: the lease (the first worker past health_next checks this
 * round) and the result, which marks the provider unhealthy after fails=
 * failures in a row and healthy again after passes= passes in a row.
 */

ngx_uint_t
ngx_http_conductor_ledger_health_lease(ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_provider_t *p, uint64_t now_ms)
{
    ngx_uint_t                  mine;
    ngx_http_conductor_node_t  *node;

    node = p->node;

    ngx_http_conductor_shm_lock(cmcf);

    mine = (now_ms >= node->health_next);

    if (mine) {
        node->health_next = now_ms + p->hc_interval;
    }

    ngx_http_conductor_shm_unlock(cmcf);

    return mine;
}


void
ngx_http_conductor_ledger_health(ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_provider_t *p, ngx_uint_t ok)
{
    ngx_http_conductor_node_t  *node;

    node = p->node;

    ngx_http_conductor_shm_lock(cmcf);

    if (ok) {
        node->health_fails = 0;
        node->health_passes++;

        if (node->unhealthy && node->health_passes >= p->hc_passes) {
            node->unhealthy = 0;
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "conductor: provider \"%V\" is healthy again",
                          &p->name);
        }

    } else {
        node->health_passes = 0;
        node->health_fails++;

        if (!node->unhealthy && node->health_fails >= p->hc_fails) {
            node->unhealthy = 1;
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "conductor: provider \"%V\" is unhealthy",
                          &p->name);
        }
    }

    ngx_http_conductor_shm_unlock(cmcf);
}
