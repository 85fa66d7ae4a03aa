
/*
 * The fleet (conductor_redis): every limit and budget shared by the nginx
 * nodes of a fleet through one Redis.
 *
 * sync=T: the ledger records what it adds to or takes from a shared window
 * or budget (the deltas) beside the node's own view; every T one worker of
 * a node pushes the deltas of each key and client, with its in flight,
 * cooldown and disabled time, in one script call per key (all of a key's
 * Redis keys carry one hash tag: one Cluster slot), and gets the fleet's
 * totals back, which become the node's view.  A pick then counts the
 * fleet's totals of the last sync plus what this node did since.
 *
 * (sync=0, every reservation settled in Redis as it is made, is not built
 * yet: the configuration refuses it.)
 *
 * Redis down, slow or hung: the connection fails every command within
 * timeout=, and the ledger goes on with the node's own counts (or refuses,
 * with on_failure=refuse); deltas not pushed stay until they are.  A
 * node whose share Redis does not know (Redis restarted empty, a node
 * that was away) pushes all it counted in the live buckets, not only the
 * deltas, so sharing resumes by itself.
 *
 * Redis keys are named by the key's or client's name, never its secret,
 * and expire: windows after two periods, in flight entries of a node that
 * stopped refreshing them after a while, cooldowns when they end.
 * Money is counted in Redis in nano-USD (what Lua's numbers hold exactly
 * up to 9 million USD), rounded up.
 */


#include "ngx_http_conductor.h"

#include <ngx_sha1.h>
#include <hiredis/hiredis.h>


#define NGX_HTTP_CONDUCTOR_SYNC_ARGS   96
#define NGX_HTTP_CONDUCTOR_NANO        1000ULL   /* pico per nano-USD */


typedef struct {
    ngx_http_conductor_node_t        *node;
    ngx_uint_t                       *limit;     /* NLIMITS, of the conf */
    ngx_uint_t                        max_inflight;
    ngx_http_conductor_client_t      *client;    /* budgets, or NULL */
    ngx_str_t                         base;      /* prefix{node name} */
} ngx_http_conductor_sync_item_t;


/* one push of one item: what was taken out of the deltas, until answered */
typedef struct {
    ngx_http_conductor_sync_item_t   *item;
    ngx_uint_t                        nwin;
    ngx_uint_t                        win[NGX_HTTP_CONDUCTOR_NLIMITS];
    time_t                            start[NGX_HTTP_CONDUCTOR_NLIMITS];
    int64_t                           delta[NGX_HTTP_CONDUCTOR_NLIMITS][2];
    ngx_uint_t                        nbud;
    ngx_uint_t                        bud[NGX_HTTP_CONDUCTOR_NPERIODS];
    uint64_t                          period[NGX_HTTP_CONDUCTOR_NPERIODS];
    int64_t                           spend[NGX_HTTP_CONDUCTOR_NPERIODS];
    ngx_pool_t                       *pool;
} ngx_http_conductor_sync_push_t;


static ngx_int_t ngx_http_conductor_sync_node(
    ngx_http_conductor_main_conf_t *cmcf, ngx_http_conductor_node_t *node);
static void ngx_http_conductor_sync_tick(
    ngx_http_conductor_redis_conf_t *rcf);
static ngx_int_t ngx_http_conductor_sync_lease(
    ngx_http_conductor_main_conf_t *cmcf);
static void ngx_http_conductor_sync_push(
    ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_sync_item_t *it, time_t now, uint64_t now_ms);
static void ngx_http_conductor_sync_pushed(void *data, redisReply *reply);
static void ngx_http_conductor_sync_apply(
    ngx_http_conductor_sync_push_t *ps, redisReply *reply);
static void ngx_http_conductor_sync_restore(
    ngx_http_conductor_sync_push_t *ps);
static ngx_int_t ngx_http_conductor_sync_send(ngx_uint_t argc,
    const char **argv, size_t *argvlen, void *data);
static void ngx_http_conductor_sync_delta(ngx_http_conductor_sync_win_t *sw,
    time_t period, time_t bucket, int64_t n);
static ngx_uint_t ngx_http_conductor_sync_nodeid(ngx_str_t *id);
static int64_t ngx_http_conductor_sync_nano(ngx_http_conductor_money_t m);
static u_char *ngx_http_conductor_sync_num(ngx_pool_t *pool, int64_t n,
    size_t *len);


/*
 * The periodic push of a key or client.  KEYS[1]: its base name.  ARGV:
 * node id, now (ms), stale (ms), mode ("set": the in flight is the node's
 * count; "touch": only refreshed, sync=0 counts it itself), in flight,
 * cooldown, disabled, disabled ttl, then the windows (n, and idx, period,
 * bucket, delta, prev delta, mine, prev mine each), then the budgets (n,
 * and idx, period id, delta, mine, ttl, reserved each).  Returns the
 * fleet's totals: per window the bucket and the one before, the others'
 * in flight, cooldown, disabled, per budget the spend and the others'
 * reservations.
 */
static const char  ngx_http_conductor_sync_script[] =
    "local b, id, now, stale = KEYS[1], ARGV[1], tonumber(ARGV[2]),"
    " tonumber(ARGV[3])\n"
    "local hk, ht = b .. ':if', b .. ':it'\n"
    "local known = redis.call('HEXISTS', ht, id) == 1\n"
    "local out = {}\n"
    "if ARGV[4] == 'set' then redis.call('HSET', hk, id, ARGV[5]) end\n"
    "redis.call('HSET', ht, id, now)\n"
    "redis.call('PEXPIRE', hk, stale * 4)\n"
    "redis.call('PEXPIRE', ht, stale * 4)\n"
    "local t = redis.call('HGETALL', ht)\n"
    "local others, live = 0, {}\n"
    "for i = 1, #t, 2 do\n"
    "  if tonumber(t[i + 1]) < now - stale then\n"
    "    redis.call('HDEL', ht, t[i]) redis.call('HDEL', hk, t[i])\n"
    "  else\n"
    "    live[#live + 1] = t[i]\n"
    "    if t[i] ~= id then\n"
    "      others = others + tonumber(redis.call('HGET', hk, t[i]) or '0')\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local function later(k, v, ttl)\n"
    "  local cur = tonumber(redis.call('GET', k) or '0')\n"
    "  if v > cur and ttl > 0 then\n"
    "    redis.call('SET', k, v, 'PX', ttl) cur = v\n"
    "  end\n"
    "  return cur\n"
    "end\n"
    "local cd = later(b .. ':cd', tonumber(ARGV[6]),"
    " tonumber(ARGV[6]) - now)\n"
    "local ds = later(b .. ':ds', tonumber(ARGV[7]), tonumber(ARGV[8]))\n"
    "local a = 10\n"
    "for w = 1, tonumber(ARGV[9]) do\n"
    "  local idx, per, st = ARGV[a], tonumber(ARGV[a + 1]),"
    " tonumber(ARGV[a + 2])\n"
    "  local d0, d1 = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])\n"
    "  if not known then d0, d1 = tonumber(ARGV[a + 5]),"
    " tonumber(ARGV[a + 6]) end\n"
    "  a = a + 7\n"
    "  local k0 = b .. ':w' .. idx .. ':' .. st\n"
    "  local k1 = b .. ':w' .. idx .. ':' .. (st - per)\n"
    "  if d0 ~= 0 then redis.call('INCRBY', k0, d0)"
    " redis.call('EXPIRE', k0, per * 2 + 60) end\n"
    "  if d1 ~= 0 then redis.call('INCRBY', k1, d1)"
    " redis.call('EXPIRE', k1, per + 60) end\n"
    "  out[#out + 1] = tonumber(redis.call('GET', k0) or '0')\n"
    "  out[#out + 1] = tonumber(redis.call('GET', k1) or '0')\n"
    "end\n"
    "out[#out + 1] = others\n"
    "out[#out + 1] = cd\n"
    "out[#out + 1] = ds\n"
    "for p = 1, tonumber(ARGV[a]) do\n"
    "  local idx, pid = ARGV[a + 1], ARGV[a + 2]\n"
    "  local d = tonumber(ARGV[a + 3])\n"
    "  if not known then d = tonumber(ARGV[a + 4]) end\n"
    "  local ttl, rk = tonumber(ARGV[a + 5]), b .. ':r' .. idx\n"
    "  redis.call('HSET', rk, id, ARGV[a + 6])\n"
    "  redis.call('PEXPIRE', rk, stale * 4)\n"
    "  a = a + 6\n"
    "  local sk = b .. ':s' .. idx .. ':' .. pid\n"
    "  if d ~= 0 then redis.call('INCRBY', sk, d) end\n"
    "  if ttl > 0 then redis.call('EXPIRE', sk, ttl) end\n"
    "  out[#out + 1] = tonumber(redis.call('GET', sk) or '0')\n"
    "  local rs = 0\n"
    "  for _, n in ipairs(live) do\n"
    "    if n ~= id then rs = rs + tonumber(redis.call('HGET', rk, n)"
    " or '0') end\n"
    "  end\n"
    "  out[#out + 1] = rs\n"
    "end\n"
    "return out\n";


/* the SHA1 the script is called by, in hex */
static u_char  ngx_http_conductor_sync_sha[41];
static ngx_uint_t  ngx_http_conductor_sync_loaded;   /* SCRIPT LOAD sent */

static ngx_array_t  ngx_http_conductor_sync_items;   /* sync_item_t */
static ngx_str_t    ngx_http_conductor_sync_id;      /* this node's */
static ngx_uint_t   ngx_http_conductor_sync_pending; /* pushes in flight */


/*
 * Every key and client node gets its record of what it shares, allocated
 * in the zone once (a reload keeps it): the nodes of a configuration
 * without conductor_redis carry none.
 */

ngx_int_t
ngx_http_conductor_sync_init_zone(ngx_http_conductor_main_conf_t *cmcf)
{
    ngx_uint_t                       i, j;
    ngx_http_conductor_key_t        *key;
    ngx_http_conductor_client_t    **cl;
    ngx_http_conductor_provider_t  **p;

    if (cmcf->redis == NULL) {
        return NGX_OK;
    }

    p = cmcf->providers.elts;

    for (i = 0; i < cmcf->providers.nelts; i++) {
        key = p[i]->keys.elts;

        for (j = 0; j < p[i]->keys.nelts; j++) {
            if (ngx_http_conductor_sync_node(cmcf, key[j].node) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    cl = cmcf->clients.elts;

    for (i = 0; i < cmcf->clients.nelts; i++) {
        if (ngx_http_conductor_sync_node(cmcf, cl[i]->node) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_conductor_sync_node(ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_node_t *node)
{
    if (node->sync == NULL) {
        node->sync = ngx_slab_calloc(cmcf->shpool,
                                     sizeof(ngx_http_conductor_sync_t));
        if (node->sync == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the worker's list of what it pushes, the scripts' names, its hook */

ngx_int_t
ngx_http_conductor_sync_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                       i, j;
    ngx_sha1_t                       sha1;
    ngx_http_conductor_key_t        *key;
    ngx_http_conductor_client_t    **cl;
    ngx_http_conductor_provider_t  **p;
    ngx_http_conductor_sync_item_t  *it;
    ngx_http_conductor_main_conf_t  *cmcf;
    u_char                           digest[20];

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_conductor_module);

    if (cmcf == NULL || cmcf->redis == NULL || cmcf->sh == NULL) {
        return NGX_OK;
    }

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, ngx_http_conductor_sync_script,
                    sizeof(ngx_http_conductor_sync_script) - 1);
    ngx_sha1_final(digest, &sha1);
    ngx_hex_dump(ngx_http_conductor_sync_sha, digest, 20);


    if (ngx_http_conductor_sync_nodeid(&ngx_http_conductor_sync_id)
        != NGX_OK
        || ngx_array_init(&ngx_http_conductor_sync_items, cycle->pool, 8,
                          sizeof(ngx_http_conductor_sync_item_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = cmcf->providers.elts;

    for (i = 0; i < cmcf->providers.nelts; i++) {
        key = p[i]->keys.elts;

        for (j = 0; j < p[i]->keys.nelts; j++) {
            it = ngx_array_push(&ngx_http_conductor_sync_items);
            if (it == NULL) {
                return NGX_ERROR;
            }

            it->node = key[j].node;
            it->limit = key[j].limit;
            it->max_inflight = key[j].max_inflight;
            it->client = NULL;
        }
    }

    cl = cmcf->clients.elts;

    for (i = 0; i < cmcf->clients.nelts; i++) {
        it = ngx_array_push(&ngx_http_conductor_sync_items);
        if (it == NULL) {
            return NGX_ERROR;
        }

        it->node = cl[i]->node;
        it->limit = cl[i]->limit;
        it->max_inflight = cl[i]->max_inflight;
        it->client = cl[i];
    }

    it = ngx_http_conductor_sync_items.elts;

    for (i = 0; i < ngx_http_conductor_sync_items.nelts; i++) {
        it[i].base.len = cmcf->redis->prefix.len + it[i].node->len + 2;
        it[i].base.data = ngx_pnalloc(cycle->pool, it[i].base.len);
        if (it[i].base.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(it[i].base.data, "%V{%*s}", &cmcf->redis->prefix,
                    it[i].node->len, it[i].node->name);
    }

    ngx_http_conductor_redis_tick = ngx_http_conductor_sync_tick;

    return NGX_OK;
}


/* hostname:master pid: one node of the fleet, the same through reloads */

static ngx_uint_t
ngx_http_conductor_sync_nodeid(ngx_str_t *id)
{
    id->data = ngx_pnalloc(ngx_cycle->pool,
                           ngx_cycle->hostname.len + 1 + NGX_INT64_LEN);
    if (id->data == NULL) {
        return NGX_ERROR;
    }

    id->len = ngx_sprintf(id->data, "%V:%P", &ngx_cycle->hostname,
                          ngx_process == NGX_PROCESS_WORKER ? ngx_parent
                                                            : ngx_pid)
              - id->data;

    return NGX_OK;
}


/*
 * What the ledger adds to or takes from a window of a shared node (called
 * with the lock): kept as a delta to push and as the node's own share.
 * when: the bucket's time (the reservation's, for a give-back).
 */

void
ngx_http_conductor_sync_window(ngx_http_conductor_node_t *node, ngx_uint_t i,
    time_t when, int64_t n)
{
    time_t                          period, bucket;
    ngx_http_conductor_sync_win_t  *sw;

    if (node->sync == NULL || n == 0) {
        return;
    }

    period = ngx_http_conductor_periods[i];
    bucket = when - when % period;
    sw = &node->sync->win[i];

    ngx_http_conductor_sync_delta(sw, period, bucket, n);
}


/* a budget's spend (pico-USD), for the push */

void
ngx_http_conductor_sync_spend(ngx_http_conductor_node_t *node, ngx_uint_t p,
    uint64_t period, ngx_http_conductor_money_t cost)
{
    int64_t                   nano;
    ngx_http_conductor_sync_t  *s;

    s = node->sync;

    if (s == NULL) {
        return;
    }

    nano = ngx_http_conductor_sync_nano(cost);

    if (s->spend_period[p] != period) {
        s->spend_period[p] = period;
        s->spend_delta[p] = 0;
        s->spend_mine[p] = 0;
    }

    s->spend_delta[p] += nano;
    s->spend_mine[p] += nano;
}


/*
 * Both the delta (to push) and the node's own share of the two live
 * buckets; a bucket older than those is gone from every window.
 */

static void
ngx_http_conductor_sync_delta(ngx_http_conductor_sync_win_t *sw,
    time_t period, time_t bucket, int64_t n)
{
    if (bucket > sw->start) {
        if (bucket == sw->start + period) {
            sw->delta[1] = sw->delta[0];
            sw->mine[1] = sw->mine[0];

        } else {
            sw->delta[1] = 0;
            sw->mine[1] = 0;
        }

        sw->delta[0] = 0;
        sw->mine[0] = 0;
        sw->start = bucket;
    }

    if (bucket == sw->start) {
        sw->delta[0] += n;
        sw->mine[0] += n;

    } else if (bucket == sw->start - period) {
        sw->delta[1] += n;
        sw->mine[1] += n;
    }
}


/*
 * Every sync= interval, in each worker while Redis is ready: the worker
 * that takes the node's lease pushes every key and client (the previous
 * round must be over).
 */

static void
ngx_http_conductor_sync_tick(ngx_http_conductor_redis_conf_t *rcf)
{
    time_t                           now;
    uint64_t                         now_ms;
    ngx_uint_t                       i;
    ngx_http_conductor_sync_item_t  *it;
    ngx_http_conductor_main_conf_t  *cmcf;

    if (ngx_http_conductor_sync_pending) {
        return;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_conductor_module);

    if (ngx_http_conductor_sync_lease(cmcf) != NGX_OK) {
        return;
    }

    now = ngx_time();
    now_ms = ngx_http_conductor_now_ms();
    it = ngx_http_conductor_sync_items.elts;

    for (i = 0; i < ngx_http_conductor_sync_items.nelts; i++) {
        ngx_http_conductor_sync_push(cmcf, &it[i], now, now_ms);
    }
}


/* the first worker past the node's next sync time pushes this round */

static ngx_int_t
ngx_http_conductor_sync_lease(ngx_http_conductor_main_conf_t *cmcf)
{
    uint64_t    now_ms;
    ngx_msec_t  every;
    ngx_int_t   rc;

    now_ms = ngx_http_conductor_now_ms();
    every = cmcf->redis->sync ? cmcf->redis->sync : 1000;

    ngx_http_conductor_shm_lock(cmcf);

    rc = NGX_DECLINED;

    /* a little early is fine: the ticks of the workers drift */
    if (now_ms + every / 4 >= cmcf->sh->sync_next) {
        cmcf->sh->sync_next = now_ms + every;
        rc = NGX_OK;
    }

    ngx_http_conductor_shm_unlock(cmcf);

    return rc;
}


/*
 * One item's push: its deltas taken out under the lock (given back if the
 * push fails), its in flight, cooldown, disabled time and budgets.
 */

static void
ngx_http_conductor_sync_push(ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_sync_item_t *it, time_t now, uint64_t now_ms)
{
    time_t                           period, bucket, ends;
    int64_t                          mine[NGX_HTTP_CONDUCTOR_NLIMITS][2];
    int64_t                          smine[NGX_HTTP_CONDUCTOR_NPERIODS];
    int64_t                          reserved[NGX_HTTP_CONDUCTOR_NPERIODS];
    uint64_t                         cooldown, disabled;
    ngx_uint_t                       i, p, n, inflight, zero;
    ngx_pool_t                      *pool;
    ngx_http_conductor_sync_t       *s;
    ngx_http_conductor_sync_win_t   *sw;
    ngx_http_conductor_node_t       *node;
    ngx_http_conductor_sync_push_t  *ps;
    const char                      *argv[NGX_HTTP_CONDUCTOR_SYNC_ARGS];
    size_t                           argvlen[NGX_HTTP_CONDUCTOR_SYNC_ARGS];

    node = it->node;
    s = node->sync;

    if (s == NULL) {
        return;
    }

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    ps = ngx_pcalloc(pool, sizeof(ngx_http_conductor_sync_push_t));
    if (ps == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    ps->item = it;
    ps->pool = pool;

    ngx_http_conductor_shm_lock(cmcf);

    inflight = node->inflight;
    cooldown = node->cooldown_until;
    disabled = node->disabled;

    for (i = 0; i < NGX_HTTP_CONDUCTOR_NLIMITS; i++) {

        /* the windows the ledger keeps: those of the limits, and rpm */
        if (it->limit[i] == 0 && i != NGX_HTTP_CONDUCTOR_RPM) {
            continue;
        }

        period = ngx_http_conductor_periods[i];
        bucket = now - now % period;
        sw = &s->win[i];

        /* roll the record to the bucket of now */
        ngx_http_conductor_sync_delta(sw, period, bucket, 0);

        n = ps->nwin++;
        ps->win[n] = i;
        ps->start[n] = bucket;
        ps->delta[n][0] = sw->delta[0];
        ps->delta[n][1] = sw->delta[1];
        mine[n][0] = sw->mine[0];
        mine[n][1] = sw->mine[1];

        sw->delta[0] = 0;
        sw->delta[1] = 0;
    }

    if (it->client) {
        for (p = 0; p < NGX_HTTP_CONDUCTOR_NPERIODS; p++) {

            if (!(it->client->budgets & (1 << p))) {
                continue;
            }

            n = ps->nbud++;
            ps->bud[n] = p;
            ps->period[n] = ngx_http_conductor_budget_period(p, now, &ends);

            if (s->spend_period[p] != ps->period[n]) {
                s->spend_period[p] = ps->period[n];
                s->spend_delta[p] = 0;
                s->spend_mine[p] = 0;
            }

            ps->spend[n] = s->spend_delta[p];
            smine[n] = s->spend_mine[p];
            s->spend_delta[p] = 0;

            reserved[n] = ngx_http_conductor_sync_nano(
                              node->spend[p].reserved);
        }
    }

    ngx_http_conductor_shm_unlock(cmcf);

    /* KEYS[1], node id, now, stale, mode, in flight, cooldown, disabled,
     * its ttl, then the windows and the budgets */
    n = 0;
    zero = 0;

    argv[n] = "EVALSHA"; argvlen[n++] = 7;
    argv[n] = (char *) ngx_http_conductor_sync_sha; argvlen[n++] = 40;
    argv[n] = "1"; argvlen[n++] = 1;
    argv[n] = (char *) it->base.data; argvlen[n++] = it->base.len;
    argv[n] = (char *) ngx_http_conductor_sync_id.data;
    argvlen[n++] = ngx_http_conductor_sync_id.len;

#define ngx_http_conductor_sync_arg(v)                                        \
    argv[n] = (char *) ngx_http_conductor_sync_num(pool, (int64_t) (v),       \
                                                   &argvlen[n]);              \
    if (argv[n] == NULL) { zero = 1; }                                        \
    n++

    ngx_http_conductor_sync_arg(now_ms);
    ngx_http_conductor_sync_arg(ngx_max(10 * (cmcf->redis->sync
                                              ? cmcf->redis->sync : 1000),
                                        5000));

    argv[n] = "set"; argvlen[n++] = 3;

    ngx_http_conductor_sync_arg(inflight);
    ngx_http_conductor_sync_arg(cooldown);
    ngx_http_conductor_sync_arg(disabled);
    ngx_http_conductor_sync_arg(cmcf->disabled_time);
    ngx_http_conductor_sync_arg(ps->nwin);

    for (i = 0; i < ps->nwin; i++) {
        ngx_http_conductor_sync_arg(ps->win[i]);
        ngx_http_conductor_sync_arg(ngx_http_conductor_periods[ps->win[i]]);
        ngx_http_conductor_sync_arg(ps->start[i]);
        ngx_http_conductor_sync_arg(ps->delta[i][0]);
        ngx_http_conductor_sync_arg(ps->delta[i][1]);
        ngx_http_conductor_sync_arg(mine[i][0]);
        ngx_http_conductor_sync_arg(mine[i][1]);
    }

    ngx_http_conductor_sync_arg(ps->nbud);

    for (i = 0; i < ps->nbud; i++) {
        ngx_http_conductor_sync_arg(ps->bud[i]);
        ngx_http_conductor_sync_arg(ps->period[i]);
        ngx_http_conductor_sync_arg(ps->spend[i]);
        ngx_http_conductor_sync_arg(smine[i]);
        ngx_http_conductor_sync_arg(ps->bud[i] == NGX_HTTP_CONDUCTOR_DAY
                                    ? 2 * 86400
                                    : ps->bud[i] == NGX_HTTP_CONDUCTOR_MONTH
                                      ? 62 * 86400 : 0);
        ngx_http_conductor_sync_arg(reserved[i]);
    }

#undef ngx_http_conductor_sync_arg

    if (zero
        || ngx_http_conductor_sync_send(n, argv, argvlen, ps) != NGX_OK)
    {
        ngx_http_conductor_sync_restore(ps);
        ngx_destroy_pool(pool);
        return;
    }

    ngx_http_conductor_sync_pending++;
}


/*
 * EVALSHA; the first time, and after Redis answered NOSCRIPT (a new or a
 * restarted Redis), SCRIPT LOAD first: pipelined, so the EVALSHA right
 * after it finds it.
 */

static ngx_int_t
ngx_http_conductor_sync_send(ngx_uint_t argc, const char **argv,
    size_t *argvlen, void *data)
{
    const char  *load[3];
    size_t       loadlen[3];

    if (!ngx_http_conductor_sync_loaded) {
        load[0] = "SCRIPT";
        loadlen[0] = 6;
        load[1] = "LOAD";
        loadlen[1] = 4;
        load[2] = ngx_http_conductor_sync_script;
        loadlen[2] = sizeof(ngx_http_conductor_sync_script) - 1;

        if (ngx_http_conductor_redis_command(3, load, loadlen, NULL, NULL,
                                             NULL)
            != NGX_OK)
        {
            return NGX_DECLINED;
        }

        ngx_http_conductor_sync_loaded = 1;
    }

    return ngx_http_conductor_redis_command(argc, argv, argvlen,
                                            ngx_http_conductor_sync_pushed,
                                            data, NULL);
}


static void
ngx_http_conductor_sync_pushed(void *data, redisReply *reply)
{
    ngx_http_conductor_sync_push_t  *ps = data;

    ngx_http_conductor_sync_pending--;

    if (reply && reply->type == REDIS_REPLY_ERROR
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        ngx_http_conductor_sync_loaded = 0;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        /* the connection is new after a failure: load again */
        if (reply == NULL) {
            ngx_http_conductor_sync_loaded = 0;
        }

        ngx_http_conductor_sync_restore(ps);

    } else {
        ngx_http_conductor_sync_apply(ps, reply);
    }

    ngx_destroy_pool(ps->pool);
}


/*
 * The fleet's totals become the node's view: each window's buckets, plus
 * what the node added since the push went out; the others' in flight and
 * reservations; the later cooldown and disabled time; each budget's spend.
 */

static void
ngx_http_conductor_sync_apply(ngx_http_conductor_sync_push_t *ps,
    redisReply *reply)
{
    time_t                           now, bucket, period;
    size_t                           need;
    uint64_t                         v;
    ngx_uint_t                       i, p, k;
    ngx_http_conductor_sync_t       *s;
    ngx_http_conductor_node_t       *node;
    ngx_http_conductor_window_t     *w;
    ngx_http_conductor_sync_win_t   *sw;
    ngx_http_conductor_main_conf_t  *cmcf;

    need = 2 * ps->nwin + 3 + 2 * ps->nbud;

    if (reply->elements != need) {
        ngx_http_conductor_sync_restore(ps);
        return;
    }

    for (i = 0; i < need; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER
            || reply->element[i]->integer < 0)
        {
            ngx_http_conductor_sync_restore(ps);
            return;
        }
    }

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_conductor_module);
    node = ps->item->node;
    s = node->sync;
    now = ngx_time();
    k = 0;

    ngx_http_conductor_shm_lock(cmcf);

    for (i = 0; i < ps->nwin; i++, k += 2) {
        period = ngx_http_conductor_periods[ps->win[i]];
        bucket = now - now % period;

        if (bucket != ps->start[i]) {
            /* the minute turned meanwhile: the next round sets it */
            continue;
        }

        w = &node->win[ps->win[i]];
        sw = &s->win[ps->win[i]];

        w->start = bucket;
        w->cur = (uint64_t) reply->element[k]->integer
                 + (sw->start == bucket ? (uint64_t) ngx_max(sw->delta[0], 0)
                                        : 0);
        w->prev = (uint64_t) reply->element[k + 1]->integer
                  + (sw->start == bucket ? (uint64_t) ngx_max(sw->delta[1], 0)
                                         : 0);
    }

    s->fleet_inflight = reply->element[k++]->integer;

    v = reply->element[k++]->integer;
    node->cooldown_until = ngx_max(node->cooldown_until,
                                   ngx_min(v, ngx_http_conductor_now_ms()
                                              + cmcf->cooldown_max));

    v = reply->element[k++]->integer;

    if (v > node->disabled && node->disabled == 0) {
        node->disabled = v;
    }

    for (i = 0; i < ps->nbud; i++, k += 2) {
        p = ps->bud[i];

        /* a node that has not served the client this period yet takes
         * the fleet's spend as it is: its own would read as none */
        if (node->spend[p].period != ps->period[i]) {
            node->spend[p].period = ps->period[i];
            ngx_memzero(&node->spend[p].spent,
                        sizeof(ngx_http_conductor_money_t));
        }

        v = (uint64_t) reply->element[k]->integer
            + (uint64_t) ngx_max(s->spend_delta[p], 0);

        node->spend[p].spent.usd = v / (NGX_HTTP_CONDUCTOR_MONEY_PICO
                                        / NGX_HTTP_CONDUCTOR_NANO);
        node->spend[p].spent.pico = v % (NGX_HTTP_CONDUCTOR_MONEY_PICO
                                         / NGX_HTTP_CONDUCTOR_NANO)
                                    * NGX_HTTP_CONDUCTOR_NANO;

        s->fleet_held[p] = reply->element[k + 1]->integer;
    }

    s->synced = ngx_http_conductor_now_ms();
    cmcf->sh->sync_last = s->synced;

    ngx_http_conductor_shm_unlock(cmcf);
}


/* a push that failed: its deltas go back, for the next round */

static void
ngx_http_conductor_sync_restore(ngx_http_conductor_sync_push_t *ps)
{
    ngx_uint_t                       i;
    ngx_http_conductor_sync_t       *s;
    ngx_http_conductor_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_conductor_module);
    s = ps->item->node->sync;

    ngx_http_conductor_shm_lock(cmcf);

    cmcf->sh->sync_errors++;

    for (i = 0; i < ps->nwin; i++) {
        /* as deltas only: the node's own share never left */
        ngx_http_conductor_sync_delta(&s->win[ps->win[i]],
                                      ngx_http_conductor_periods[ps->win[i]],
                                      ps->start[i], 0);

        if (s->win[ps->win[i]].start == ps->start[i]) {
            s->win[ps->win[i]].delta[0] += ps->delta[i][0];
            s->win[ps->win[i]].delta[1] += ps->delta[i][1];

        } else if (s->win[ps->win[i]].start
                   == ps->start[i] + ngx_http_conductor_periods[ps->win[i]])
        {
            s->win[ps->win[i]].delta[1] += ps->delta[i][0];
        }
    }

    for (i = 0; i < ps->nbud; i++) {
        if (s->spend_period[ps->bud[i]] == ps->period[i]) {
            s->spend_delta[ps->bud[i]] += ps->spend[i];
        }
    }

    ngx_http_conductor_shm_unlock(cmcf);
}


static int64_t
ngx_http_conductor_sync_nano(ngx_http_conductor_money_t m)
{
    uint64_t  nano;

    /* rounded up: a budget errs on the safe side */
    nano = m.usd * (NGX_HTTP_CONDUCTOR_MONEY_PICO / NGX_HTTP_CONDUCTOR_NANO)
           + (m.pico + NGX_HTTP_CONDUCTOR_NANO - 1) / NGX_HTTP_CONDUCTOR_NANO;

    return (int64_t) ngx_min(nano, (uint64_t) 1 << 53);
}


static u_char *
ngx_http_conductor_sync_num(ngx_pool_t *pool, int64_t n, size_t *len)
{
    u_char  *p;

    p = ngx_pnalloc(pool, NGX_INT64_LEN + 1);
    if (p == NULL) {
        return NULL;
    }

    *len = ngx_sprintf(p, "%L", n) - p;

    return p;
}
