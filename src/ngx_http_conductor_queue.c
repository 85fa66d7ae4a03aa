
/*
 * The queue (conductor_queue timeout= max=): a request no key has room for
 * waits and looks again when the earliest one frees up, at most until its
 * timeout; the places are bounded across all workers and counted by the
 * ledger.  A client that goes away leaves the queue.
 */


#include "ngx_http_conductor.h"


static void ngx_http_conductor_queue_handler(ngx_event_t *ev);
static void ngx_http_conductor_queue_cleanup(void *data);
static ngx_int_t ngx_http_conductor_refuse_client(
    ngx_http_conductor_ctx_t *ctx);
static ngx_int_t ngx_http_conductor_refuse_budget(
    ngx_http_conductor_ctx_t *ctx);
static void ngx_http_conductor_dequeue(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);


ngx_int_t
ngx_http_conductor_enqueue(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_loc_conf_t *lcf)
{
    ngx_msec_t           wait, left;
    ngx_pool_cleanup_t  *cln;

    /* back in the queue (sync=0: the fleet said no): the first deadline */
    left = lcf->queue_timeout;

    if (ctx->queue_once) {
        left = (ngx_msec_int_t) (ctx->queue_deadline - ngx_current_msec) > 0
               ? ctx->queue_deadline - ngx_current_msec : 0;
    }

    if (ctx->retry_after == (ngx_msec_t) -1 || ctx->retry_after > left) {
        /* no key can take it in time: no point in waiting */
        return NGX_DECLINED;
    }

    if (!ctx->queue_once) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        cln->handler = ngx_http_conductor_queue_cleanup;
        cln->data = ctx;
    }

    if (ngx_http_conductor_ledger_enqueue(r, lcf->queue_max) != NGX_OK) {
        return NGX_DECLINED;
    }

    ctx->queued = 1;

    if (!ctx->queue_once) {
        ctx->queue_once = 1;
        ctx->queue_deadline = ngx_current_msec + lcf->queue_timeout;
    }

    ctx->queue_ev.handler = ngx_http_conductor_queue_handler;
    ctx->queue_ev.data = r;
    ctx->queue_ev.log = r->connection->log;

    wait = ngx_max(ngx_min(ctx->retry_after, 500), 10);
    ngx_add_timer(&ctx->queue_ev, wait);

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "conductor: queued, next look in %M ms", wait);

    return NGX_OK;
}


static void
ngx_http_conductor_queue_handler(ngx_event_t *ev)
{
    ngx_msec_t                 wait, left;
    ngx_connection_t          *c;
    ngx_http_request_t        *r;
    ngx_int_t                  rc;
    ngx_http_conductor_ctx_t  *ctx;

    r = ev->data;
    c = r->connection;
    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    rc = ngx_http_conductor_attempt(r, ctx);

    if (rc == NGX_DECLINED && (ngx_msec_int_t) (ctx->queue_deadline
                                                - ngx_current_msec) > 0)
    {
        left = ctx->queue_deadline - ngx_current_msec;

        if (ctx->retry_after == (ngx_msec_t) -1 || ctx->retry_after > left) {
            /* nothing frees up before the deadline: answer now */
            goto done;
        }

        wait = ngx_max(ngx_min(ngx_min(ctx->retry_after, 500), left), 10);
        ngx_add_timer(ev, wait);
        return;
    }

done:

    ngx_http_conductor_dequeue(r, ctx);

    if (rc == NGX_OK) {
        /* sync=0: the fleet settles it; its answer runs the phases on */
        rc = ngx_http_conductor_exact_reserve(r, ctx);

        if (rc == NGX_DONE) {
            return;
        }

        if (rc != NGX_OK && rc != NGX_ERROR) {
            ctx->status = rc;
            goto run;
        }
    }

    if (rc == NGX_DECLINED) {
        ctx->status = ngx_http_conductor_refuse(ctx);

    } else if (rc != NGX_OK) {
        ctx->status = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else {
        ctx->status = NGX_DECLINED;
    }

run:

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/*
 * No candidate has room, and no queue place or time to wait: 429 when a
 * key at its limit frees up (Retry-After says when); 503 when the
 * providers are failing (breaker open, health check: Retry-After says
 * when one may be tried again) or no key ever will serve the request
 * (every one disabled).
 */

ngx_int_t
ngx_http_conductor_refuse(ngx_http_conductor_ctx_t *ctx)
{
    switch (ctx->refusal) {

    case NGX_HTTP_CONDUCTOR_WAIT_CLIENT:
        return ngx_http_conductor_refuse_client(ctx);

    case NGX_HTTP_CONDUCTOR_WAIT_BUDGET:
        return ngx_http_conductor_refuse_budget(ctx);

    case NGX_HTTP_CONDUCTOR_WAIT_UNPRICED:
        ctx->retry_after = 0;
        ctx->error = ngx_http_conductor_error_message(ctx->request,
                         "the model \"%V\" has no price, and client "
                         "\"%V\" has a budget: it is refused (\"unpriced "
                         "tokens\" would count its tokens only)",
                         &ctx->alias, &ctx->client->name);
        return NGX_HTTP_FORBIDDEN;
    }

    if (ctx->refusal == NGX_HTTP_CONDUCTOR_WAIT_LIMIT && ctx->budget_held) {
        ctx->error = ngx_http_conductor_error_message(ctx->request,
                         "client \"%V\": what is left of its budget per=%V "
                         "is held by its requests in flight",
                         &ctx->client->name,
                         ngx_http_conductor_budget_period_name(
                             ctx->budget_period));
        return NGX_HTTP_TOO_MANY_REQUESTS;
    }

    if (ctx->refusal == NGX_HTTP_CONDUCTOR_WAIT_LIMIT) {
        ctx->error = "every key that serves this model is at its limit";
        return NGX_HTTP_TOO_MANY_REQUESTS;
    }

    if (ctx->retry_after == (ngx_msec_t) -1) {
        ctx->retry_after = 0;
        ctx->error = "no key can serve this model now: every key is "
                     "disabled";
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ctx->error = "the providers that serve this model are failing: none "
                 "is tried again before Retry-After";
    return NGX_HTTP_SERVICE_UNAVAILABLE;
}


/* the client's own limit: 429 as for a key, the limit named */

static ngx_int_t
ngx_http_conductor_refuse_client(ngx_http_conductor_ctx_t *ctx)
{
    ngx_str_t                     name;
    ngx_uint_t                    value;
    ngx_http_conductor_client_t  *cl;

    cl = ctx->client;

    if (ctx->client_limit == NGX_HTTP_CONDUCTOR_NLIMITS) {
        ngx_str_set(&name, "max_inflight");
        value = cl->max_inflight;

    } else {
        name = ngx_http_conductor_limit_names[ctx->client_limit];
        name.len--;
        value = cl->limit[ctx->client_limit];
    }

    ctx->error = ngx_http_conductor_error_message(ctx->request,
                     "client \"%V\" is at its limit %V=%ui",
                     &cl->name, &name, value);

    return NGX_HTTP_TOO_MANY_REQUESTS;
}


/*
 * A budget spent: 429, OpenAI's "insufficient_quota", with the budget and
 * when it resets (Retry-After says it too).
 */

static ngx_int_t
ngx_http_conductor_refuse_budget(ngx_http_conductor_ctx_t *ctx)
{
    u_char                        amount[NGX_HTTP_CONDUCTOR_MONEY_LEN];
    u_char                        resets[64], *last;
    ngx_tm_t                      tm;
    ngx_str_t                    *period;
    ngx_http_conductor_client_t  *cl;

    cl = ctx->client;
    period = ngx_http_conductor_budget_period_name(ctx->budget_period);

    last = ngx_http_conductor_money_format(amount,
                                           cl->budget[ctx->budget_period]);

    if (ctx->budget_ends) {
        ngx_gmtime(ctx->budget_ends, &tm);
        *ngx_sprintf(resets, "it resets at %4d-%02d-%02dT%02d:%02d:%02dZ",
                     tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                     tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec) = '\0';

    } else {
        ctx->retry_after = 0;
        ngx_cpystrn(resets, (u_char *) "it does not reset", sizeof(resets));
    }

    ctx->error = ngx_http_conductor_error_message(ctx->request,
                     "client \"%V\" has spent its budget per=%V of %*s USD: "
                     "%s", &cl->name, period, (size_t) (last - amount), amount,
                     resets);
    ctx->error_code = "insufficient_quota";
    ctx->error_type = "insufficient_quota";

    return NGX_HTTP_TOO_MANY_REQUESTS;
}


static void
ngx_http_conductor_queue_cleanup(void *data)
{
    ngx_http_conductor_ctx_t *ctx = data;

    if (ctx->queue_ev.timer_set) {
        ngx_del_timer(&ctx->queue_ev);
    }

    ngx_http_conductor_dequeue(ctx->request, ctx);
}


static void
ngx_http_conductor_dequeue(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    if (!ctx->queued) {
        return;
    }

    ctx->queued = 0;

    ngx_http_conductor_ledger_dequeue(r);
}
