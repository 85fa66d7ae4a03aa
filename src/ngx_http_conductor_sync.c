
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
 * sync=0 (exact): a request's first attempt waits (asynchronously: the
 * worker goes on) for Redis to check and reserve every window, in flight
 * and budget of its key and of its client, each in one script call that
 * checks all and reserves all or nothing; both calls go out in one write.
 * A refusal gives back what the other call reserved and tries another key
 * (or answers 429).  A retry (the balancer cannot wait) is counted in
 * Redis unchecked.  Every reservation has an id: its give-back (a failed
 * attempt, the LOG phase) undoes exactly what it reserved, once, whatever
 * order Redis sees them in; one that cannot be sent is sent again later.
 * The periodic push then only refreshes the node ("touch") and pulls the
 * fleet's totals for the view.
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

#include "ngx_http_conductor_resp.h"


#define NGX_HTTP_CONDUCTOR_SYNC_ARGS   96

/*
 * A number argument of a command being built: written into the slot of
 * the caller's num[] that matches its place (the command is copied into
 * the connection's buffer before the caller returns).
 */
#define ngx_http_conductor_sync_arg(v)                                        \
    argv[n] = (char *) num[n];                                                \
    argvlen[n] = ngx_http_conductor_resp_int(num[n], (int64_t) (v))           \
                 - num[n];                                                    \
    n++
#define NGX_HTTP_CONDUCTOR_NANO        1000ULL   /* pico per nano-USD */


typedef struct {
    ngx_http_conductor_node_t        *node;
    ngx_uint_t                       *limit;     /* NLIMITS, of the conf */
    ngx_uint_t                        max_inflight;
    ngx_http_conductor_client_t      *client;    /* budgets, or NULL */
    ngx_str_t                         base;      /* prefix{node name} */
    ngx_str_t                        *fleet;     /* the key's, client's */
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


/* sync=0: the answers a request waits for, its key's and its client's */
#define NGX_HTTP_CONDUCTOR_EXACT_KEY     0
#define NGX_HTTP_CONDUCTOR_EXACT_CLIENT  1

#define NGX_HTTP_CONDUCTOR_EXACT_NONE    0   /* not asked */
#define NGX_HTTP_CONDUCTOR_EXACT_WAIT    1
#define NGX_HTTP_CONDUCTOR_EXACT_YES     2   /* reserved */
#define NGX_HTTP_CONDUCTOR_EXACT_NO      3   /* refused: why, idx */
#define NGX_HTTP_CONDUCTOR_EXACT_FAIL    4   /* no answer */

typedef struct ngx_http_conductor_exact_s  ngx_http_conductor_exact_t;

typedef struct {
    ngx_http_conductor_exact_t       *exact;
    ngx_http_conductor_redis_cmd_t   *cmd;       /* NULL: not pending */
    ngx_uint_t                        answer;
    ngx_uint_t                        idx;       /* of the window, budget */
    u_char                            why;       /* w i s h g */
} ngx_http_conductor_exact_call_t;

struct ngx_http_conductor_exact_s {
    ngx_http_request_t               *request;
    ngx_http_conductor_exact_call_t   call[2];
    ngx_uint_t                        waiting;
};


/* a give-back, kept (worker memory) until Redis has answered it */
typedef struct {
    ngx_queue_t                       queue;
    ngx_str_t                         base;
    uint64_t                          rid;
    time_t                            now;
    uint64_t                          used;
    ngx_uint_t                        nbud;
    ngx_uint_t                        bud[NGX_HTTP_CONDUCTOR_NPERIODS];
    uint64_t                          period[NGX_HTTP_CONDUCTOR_NPERIODS];
    int64_t                           cost[NGX_HTTP_CONDUCTOR_NPERIODS];
    time_t                            ttl[NGX_HTTP_CONDUCTOR_NPERIODS];
} ngx_http_conductor_exact_back_t;


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
    const char **argv, size_t *argvlen,
    ngx_http_conductor_redis_handler_pt handler, void *data,
    ngx_http_conductor_redis_cmd_t **cmd);
static ngx_msec_t ngx_http_conductor_sync_stale(
    ngx_http_conductor_main_conf_t *cmcf);
static ngx_uint_t ngx_http_conductor_exact_on(ngx_http_conductor_ctx_t *ctx);
static void ngx_http_conductor_exact_send(ngx_http_conductor_ctx_t *ctx,
    ngx_uint_t which, ngx_uint_t force,
    ngx_http_conductor_exact_call_t *call);
static void ngx_http_conductor_exact_reply(void *data, redisReply *reply);
static void ngx_http_conductor_exact_resume(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
static ngx_int_t ngx_http_conductor_exact_decide(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
static void ngx_http_conductor_exact_refused(ngx_http_conductor_ctx_t *ctx);
static ngx_int_t ngx_http_conductor_exact_requeue(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
static void ngx_http_conductor_exact_cleanup(void *data);
static ngx_http_conductor_exact_back_t *ngx_http_conductor_exact_back_new(
    ngx_str_t *base, uint64_t rid, uint64_t used);
static void ngx_http_conductor_exact_back_send(
    ngx_http_conductor_exact_back_t *bk);
static void ngx_http_conductor_exact_backed(void *data, redisReply *reply);
static void ngx_http_conductor_exact_later(
    ngx_http_conductor_exact_back_t *bk);
static void ngx_http_conductor_exact_flush(void);
static void ngx_http_conductor_sync_delta(ngx_http_conductor_sync_win_t *sw,
    time_t period, time_t bucket, int64_t n);
static ngx_uint_t ngx_http_conductor_sync_nodeid(ngx_str_t *id);
static int64_t ngx_http_conductor_sync_nano(ngx_http_conductor_money_t m);


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
    "  if ARGV[4] == 'set' then redis.call('HSET', rk, id, ARGV[a + 6]) end\n"
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


/*
 * sync=0's reservation of a key or client.  KEYS[1]: its base name.
 * ARGV: node id, reservation id, now (ms), stale (ms), now (s), force
 * ("1": count, do not check), max_inflight (0: none), then the windows (n,
 * and idx, period, limit, amount each: the estimate is the ledger's,
 * prev * (period - elapsed) / period + cur, rounded down, and an amount is
 * checked capped at the limit), then the budgets (n, and idx, period id,
 * budget, need each, nano-USD).  All or nothing: {1}, or {0, why, idx}
 * (w: a window, i: in flight, s: spent, h: held by requests in flight,
 * gone: given back already).  What it reserved is kept under the id for
 * the give-back.  As few calls as it can (each costs Redis a microsecond
 * or so, on the request's path): the windows read in one MGET, the nodes'
 * in flight in one HMGET, an expiry set only on a window it creates; the
 * node's hashes keep the expiry its push (every second) gives them.
 */
static const char  ngx_http_conductor_exact_script[] =
    "local b, id, rid = KEYS[1], ARGV[1], ARGV[2]\n"
    "local now, stale, t = tonumber(ARGV[3]), tonumber(ARGV[4]),"
    " tonumber(ARGV[5])\n"
    "local force, maxi = ARGV[6] == '1', tonumber(ARGV[7])\n"
    "local hk, ht = b .. ':if', b .. ':it'\n"
    "local q = b .. ':q:' .. id .. ':' .. rid\n"
    "if redis.call('EXISTS', q) == 1 then return {0, 'gone', 0} end\n"
    "local w, bud, live, ks, a = {}, {}, {}, {}, 9\n"
    "for i = 1, tonumber(ARGV[8]) do\n"
    "  local idx, per = ARGV[a], tonumber(ARGV[a + 1])\n"
    "  local lim, n = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])\n"
    "  a = a + 4\n"
    "  local st = t - t % per\n"
    "  local k0 = b .. ':w' .. idx .. ':' .. st\n"
    "  w[i] = {k0, n, st, per, idx, lim}\n"
    "  if not force and lim > 0 then\n"
    "    ks[#ks + 1] = k0\n"
    "    ks[#ks + 1] = b .. ':w' .. idx .. ':' .. (st - per)\n"
    "  end\n"
    "end\n"
    "if #ks > 0 then\n"
    "  local v, j = redis.call('MGET', unpack(ks)), 1\n"
    "  for _, x in ipairs(w) do\n"
    "    if not force and x[6] > 0 then\n"
    "      local cur, prev = tonumber(v[j] or '0'), tonumber(v[j + 1] or '0')\n"
    "      local per, lim = x[4], x[6]\n"
    "      local k = per - (t - x[3])\n"
    "      j = j + 2\n"
    "      local est = math.floor(prev / per) * k"
    " + math.floor((prev % per) * k / per) + cur\n"
    "      if est + math.min(x[2], lim) > lim then"
    " return {0, 'w', tonumber(x[5])} end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local tt = redis.call('HGETALL', ht)\n"
    "for i = 1, #tt, 2 do\n"
    "  if tt[i] ~= id and tonumber(tt[i + 1]) >= now - stale then"
    " live[#live + 1] = tt[i] end\n"
    "end\n"
    "live[#live + 1] = id\n"
    "local function sum(k)\n"
    "  local s = 0\n"
    "  for _, v in ipairs(redis.call('HMGET', k, unpack(live))) do"
    " s = s + tonumber(v or '0') end\n"
    "  return s\n"
    "end\n"
    "if not force and maxi > 0 and sum(hk) + 1 > maxi then"
    " return {0, 'i', 0} end\n"
    "for i = 1, tonumber(ARGV[a]) do\n"
    "  local idx, pid = ARGV[a + 1], ARGV[a + 2]\n"
    "  local lim, need = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])\n"
    "  a = a + 4\n"
    "  local rk = b .. ':r' .. idx\n"
    "  bud[i] = {rk, need, idx}\n"
    "  if not force then\n"
    "    local sp = tonumber(redis.call('GET', b .. ':s' .. idx .. ':' .. pid)"
    " or '0')\n"
    "    if sp + need > lim then return {0, 's', tonumber(idx)} end\n"
    "    if sp + sum(rk) + need > lim then return {0, 'h', tonumber(idx)}"
    " end\n"
    "  end\n"
    "end\n"
    "local rec = {'i', 1}\n"
    "for _, x in ipairs(w) do\n"
    "  if redis.call('INCRBY', x[1], x[2]) == x[2] then"
    " redis.call('EXPIRE', x[1], x[4] * 2 + 60) end\n"
    "  if tonumber(x[5]) % 2 == 1 then\n"
    "    rec[#rec + 1] = 'w' .. x[5]"
    " rec[#rec + 1] = x[3] .. ' ' .. x[4] .. ' ' .. x[2]\n"
    "  end\n"
    "end\n"
    "redis.call('HINCRBY', hk, id, 1)\n"
    "redis.call('HSET', ht, id, now)\n"
    "for _, x in ipairs(bud) do\n"
    "  redis.call('HINCRBY', x[1], id, x[2])\n"
    "  rec[#rec + 1] = 'r' .. x[3] rec[#rec + 1] = x[2]\n"
    "end\n"
    "redis.call('HSET', q, unpack(rec))\n"
    "redis.call('PEXPIRE', q, 86400000)\n"
    "return {1}\n";


/*
 * The give-back of a reservation.  KEYS[1]: the base name.  ARGV: node id,
 * reservation id, now (s), tokens used, then the spend (n, and idx, period
 * id, cost in nano-USD, ttl each).  Undoes what the id reserved (in
 * flight, budget holds; token windows get what was used in place of the
 * estimate), never below 0, and adds the cost to the spend; then leaves a
 * mark, so that a reservation that comes later (another connection) or a
 * give-back sent again does nothing.
 */
static const char  ngx_http_conductor_back_script[] =
    "local b, id = KEYS[1], ARGV[1]\n"
    "local q = b .. ':q:' .. id .. ':' .. ARGV[2]\n"
    "local t, used = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local ty = redis.call('TYPE', q).ok\n"
    "if ty == 'string' then return 0 end\n"
    "local function dec(k, f, n)\n"
    "  local v = tonumber(redis.call('HGET', k, f) or '0')\n"
    "  n = math.min(n, v)\n"
    "  if n > 0 then redis.call('HINCRBY', k, f, -n) end\n"
    "end\n"
    "if ty == 'hash' then\n"
    "  local rec = redis.call('HGETALL', q)\n"
    "  for i = 1, #rec, 2 do\n"
    "    local f, v = rec[i], rec[i + 1]\n"
    "    local c = f:sub(1, 1)\n"
    "    if f == 'i' then dec(b .. ':if', id, 1)\n"
    "    elseif c == 'r' then dec(b .. ':' .. f, id, tonumber(v))\n"
    "    elseif c == 'w' then\n"
    "      local st, per, n = v:match('(%d+) (%d+) (%d+)')\n"
    "      st, per, n = tonumber(st), tonumber(per), tonumber(n)\n"
    "      if used < n then\n"
    "        local k = b .. ':' .. f .. ':' .. st\n"
    "        local d = math.min(n - used,"
    " tonumber(redis.call('GET', k) or '0'))\n"
    "        if d > 0 then redis.call('DECRBY', k, d) end\n"
    "      elseif used > n then\n"
    "        local k = b .. ':' .. f .. ':' .. (t - t % per)\n"
    "        redis.call('INCRBY', k, used - n)"
    " redis.call('EXPIRE', k, per * 2 + 60)\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "redis.call('SET', q, 'x', 'PX', 600000)\n"
    "local a = 6\n"
    "for p = 1, tonumber(ARGV[5]) do\n"
    "  local sk = b .. ':s' .. ARGV[a] .. ':' .. ARGV[a + 1]\n"
    "  local c, ttl = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])\n"
    "  a = a + 4\n"
    "  if c > 0 then redis.call('INCRBY', sk, c) end\n"
    "  if ttl > 0 then redis.call('EXPIRE', sk, ttl) end\n"
    "end\n"
    "return 1\n";


/* the SHA1s the scripts are called by, in hex */
static u_char  ngx_http_conductor_sync_sha[41];
static u_char  ngx_http_conductor_exact_sha[41];
static u_char  ngx_http_conductor_back_sha[41];
static ngx_uint_t  ngx_http_conductor_sync_loaded;   /* SCRIPT LOAD sent */
static ngx_uint_t  ngx_http_conductor_sync_gen;      /* on that connection */

static const char  *ngx_http_conductor_sync_scripts[] = {
    ngx_http_conductor_sync_script,
    ngx_http_conductor_exact_script,
    ngx_http_conductor_back_script
};

static u_char  *ngx_http_conductor_sync_shas[] = {
    ngx_http_conductor_sync_sha,
    ngx_http_conductor_exact_sha,
    ngx_http_conductor_back_sha
};

static uint64_t     ngx_http_conductor_exact_seq;    /* reservation ids */
static ngx_queue_t  ngx_http_conductor_exact_later_q;  /* give-backs */
static ngx_uint_t   ngx_http_conductor_exact_nlater;

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

    for (i = 0; i < 3; i++) {
        ngx_sha1_init(&sha1);
        ngx_sha1_update(&sha1, ngx_http_conductor_sync_scripts[i],
                        ngx_strlen(ngx_http_conductor_sync_scripts[i]));
        ngx_sha1_final(digest, &sha1);
        ngx_hex_dump(ngx_http_conductor_sync_shas[i], digest, 20);
    }

    ngx_queue_init(&ngx_http_conductor_exact_later_q);


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
            it->fleet = &key[j].fleet;
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
        it->fleet = &cl[i]->fleet;
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

        /* sync=0 finds it from the key or client */
        *it[i].fleet = it[i].base;
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

    ngx_http_conductor_exact_flush();

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
    ngx_uint_t                       i, p, n, inflight, exact;
    ngx_pool_t                      *pool;
    ngx_http_conductor_sync_t       *s;
    ngx_http_conductor_sync_win_t   *sw;
    ngx_http_conductor_node_t       *node;
    ngx_http_conductor_sync_push_t  *ps;
    u_char                           num[NGX_HTTP_CONDUCTOR_SYNC_ARGS]
                                        [NGX_HTTP_CONDUCTOR_RESP_INT_LEN];
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

    /* sync=0: the reservations' scripts count windows, in flight, holds
     * and spend; this only refreshes the node and reads the totals */
    exact = (cmcf->redis->sync == 0);

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

        if (exact) {
            ngx_memzero(ps->delta[n], sizeof(ps->delta[n]));
            ngx_memzero(mine[n], sizeof(mine[n]));
        }
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

            if (exact) {
                ps->spend[n] = 0;
                smine[n] = 0;
            }
        }
    }

    ngx_http_conductor_shm_unlock(cmcf);

    /* KEYS[1], node id, now, stale, mode, in flight, cooldown, disabled,
     * its ttl, then the windows and the budgets */
    n = 0;

    argv[n] = "EVALSHA"; argvlen[n++] = 7;
    argv[n] = (char *) ngx_http_conductor_sync_sha; argvlen[n++] = 40;
    argv[n] = "1"; argvlen[n++] = 1;
    argv[n] = (char *) it->base.data; argvlen[n++] = it->base.len;
    argv[n] = (char *) ngx_http_conductor_sync_id.data;
    argvlen[n++] = ngx_http_conductor_sync_id.len;


    ngx_http_conductor_sync_arg(now_ms);
    ngx_http_conductor_sync_arg(ngx_http_conductor_sync_stale(cmcf));

    if (exact) {
        argv[n] = "touch"; argvlen[n++] = 5;

    } else {
        argv[n] = "set"; argvlen[n++] = 3;
    }

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

    if (ngx_http_conductor_sync_send(n, argv, argvlen,
                                        ngx_http_conductor_sync_pushed, ps,
                                        NULL)
           != NGX_OK)
    {
        ngx_http_conductor_sync_restore(ps);
        ngx_destroy_pool(pool);
        return;
    }

    ngx_http_conductor_sync_pending++;
}


/*
 * EVALSHA; the first time on a connection, and after Redis answered
 * NOSCRIPT (a restarted Redis), SCRIPT LOAD of every script first:
 * pipelined, so the EVALSHA right after it finds it.
 */

static ngx_int_t
ngx_http_conductor_sync_send(ngx_uint_t argc, const char **argv,
    size_t *argvlen, ngx_http_conductor_redis_handler_pt handler, void *data,
    ngx_http_conductor_redis_cmd_t **cmd)
{
    ngx_uint_t   i, gen;
    const char  *load[3];
    size_t       loadlen[3];

    gen = ngx_http_conductor_redis_generation();

    if (!ngx_http_conductor_sync_loaded || gen != ngx_http_conductor_sync_gen)
    {
        load[0] = "SCRIPT";
        loadlen[0] = 6;
        load[1] = "LOAD";
        loadlen[1] = 4;

        for (i = 0; i < 3; i++) {
            load[2] = ngx_http_conductor_sync_scripts[i];
            loadlen[2] = ngx_strlen(load[2]);

            if (ngx_http_conductor_redis_command(3, load, loadlen, NULL, NULL,
                                                 NULL)
                != NGX_OK)
            {
                return NGX_DECLINED;
            }
        }

        ngx_http_conductor_sync_loaded = 1;
        ngx_http_conductor_sync_gen = gen;
    }

    return ngx_http_conductor_redis_command(argc, argv, argvlen, handler,
                                            data, cmd);
}


/* how long a node's in flight counts without a refresh */

static ngx_msec_t
ngx_http_conductor_sync_stale(ngx_http_conductor_main_conf_t *cmcf)
{
    return ngx_max(10 * (cmcf->redis->sync ? cmcf->redis->sync : 1000),
                   5000);
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
    ngx_uint_t                       i, p, k, exact;
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

    /* sync=0: Redis checks the fleet's in flight and holds itself, and a
     * second-old view of them, which shrink, would refuse needlessly */
    exact = (cmcf->redis->sync == 0);

    s->fleet_inflight = exact ? 0 : reply->element[k++]->integer;

    if (exact) {
        k++;
    }

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

        s->fleet_held[p] = exact ? 0 : reply->element[k + 1]->integer;
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


/*
 * sync=0 (exact).  A request's first attempt: the key's and the client's
 * reservation go to Redis (one write), and the request waits for both
 * answers as a queued one waits for its timer; a client that goes away
 * meanwhile cancels the handlers (its LOG phase gives back whatever was
 * reserved, by id).  NGX_OK: go on now; NGX_DONE: it waits; else the
 * status to answer.
 */

ngx_int_t
ngx_http_conductor_exact_reserve(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    ngx_uint_t                    i;
    ngx_pool_cleanup_t           *cln;
    ngx_http_conductor_exact_t   *ex;

    if (!ngx_http_conductor_exact_on(ctx)) {
        return NGX_OK;
    }

    ex = ctx->exact;

    if (ex == NULL) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        ex = ngx_pcalloc(r->pool, sizeof(ngx_http_conductor_exact_t));
        if (ex == NULL) {
            return NGX_ERROR;
        }

        ex->request = r;

        for (i = 0; i < 2; i++) {
            ex->call[i].exact = ex;
        }

        cln->handler = ngx_http_conductor_exact_cleanup;
        cln->data = ex;
        ctx->exact = ex;
    }

    ngx_http_conductor_exact_send(ctx, NGX_HTTP_CONDUCTOR_EXACT_KEY, 0,
                                  &ex->call[NGX_HTTP_CONDUCTOR_EXACT_KEY]);

    if (ctx->client && ctx->client->fleet.len && !ctx->exact_client) {
        ctx->exact_client = 1;
        ngx_http_conductor_exact_send(ctx, NGX_HTTP_CONDUCTOR_EXACT_CLIENT, 0,
                                   &ex->call[NGX_HTTP_CONDUCTOR_EXACT_CLIENT]);
    }

    if (ex->waiting == 0) {
        /* Redis is down: no wait at all */
        return ngx_http_conductor_exact_decide(r, ctx);
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_DONE;
}


static ngx_uint_t
ngx_http_conductor_exact_on(ngx_http_conductor_ctx_t *ctx)
{
    ngx_http_conductor_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(ctx->request,
                                         ngx_http_conductor_module);

    return cmcf->redis && cmcf->redis->sync == 0 && ctx->cand
           && ctx->cand->key->fleet.len;
}


/*
 * A retry (the balancer cannot wait): counted in Redis, unchecked; the
 * node's own view checked it.
 */

void
ngx_http_conductor_exact_force(ngx_http_conductor_ctx_t *ctx)
{
    if (ctx->exact_done && ngx_http_conductor_exact_on(ctx)) {
        ngx_http_conductor_exact_send(ctx, NGX_HTTP_CONDUCTOR_EXACT_KEY, 1,
                                      NULL);
    }
}


/*
 * One reservation's script call; with call, its answer is awaited (WAIT,
 * or FAIL when it cannot go out).
 */

static void
ngx_http_conductor_exact_send(ngx_http_conductor_ctx_t *ctx,
    ngx_uint_t which, ngx_uint_t force, ngx_http_conductor_exact_call_t *call)
{
    time_t                           at, ends;
    uint64_t                         rid, *prid;
    ngx_uint_t                       n, nw, nwat, nb, nbat, *limit, max;
    ngx_uint_t                       budgets;
    ngx_str_t                       *base;
    ngx_http_conductor_client_t     *cl;
    ngx_http_conductor_main_conf_t  *cmcf;
    u_char                           num[NGX_HTTP_CONDUCTOR_SYNC_ARGS]
                                        [NGX_HTTP_CONDUCTOR_RESP_INT_LEN];
    const char                      *argv[NGX_HTTP_CONDUCTOR_SYNC_ARGS];
    size_t                           argvlen[NGX_HTTP_CONDUCTOR_SYNC_ARGS];

    cmcf = ngx_http_get_module_main_conf(ctx->request,
                                         ngx_http_conductor_module);
    cl = ctx->client;

    if (which == NGX_HTTP_CONDUCTOR_EXACT_KEY) {
        base = &ctx->cand->key->fleet;
        limit = ctx->cand->key->limit;
        max = ctx->cand->key->max_inflight;
        at = ctx->reserved_at;
        prid = &ctx->key_rid;
        budgets = 0;

    } else {
        base = &cl->fleet;
        limit = cl->limit;
        max = cl->max_inflight;
        at = ctx->client_reserved_at;
        prid = &ctx->client_rid;
        budgets = cl->budgets;
    }

    rid = ((uint64_t) ngx_pid << 32) | (++ngx_http_conductor_exact_seq
                                        & 0xffffffff);
    n = 0;

    argv[n] = "EVALSHA"; argvlen[n++] = 7;
    argv[n] = (char *) ngx_http_conductor_exact_sha; argvlen[n++] = 40;
    argv[n] = "1"; argvlen[n++] = 1;
    argv[n] = (char *) base->data; argvlen[n++] = base->len;
    argv[n] = (char *) ngx_http_conductor_sync_id.data;
    argvlen[n++] = ngx_http_conductor_sync_id.len;

    ngx_http_conductor_sync_arg(rid);
    ngx_http_conductor_sync_arg(ngx_http_conductor_now_ms());
    ngx_http_conductor_sync_arg(ngx_http_conductor_sync_stale(cmcf));
    ngx_http_conductor_sync_arg(at);
    argv[n] = force ? "1" : "0"; argvlen[n++] = 1;
    ngx_http_conductor_sync_arg(max);

    /* the windows the ledger keeps: those of the limits, and rpm */
    nwat = n;
    argv[n] = "0"; argvlen[n++] = 1;

    for (nw = 0; nw < NGX_HTTP_CONDUCTOR_NLIMITS; nw++) {
        if (limit[nw] == 0 && nw != NGX_HTTP_CONDUCTOR_RPM) {
            continue;
        }

        ngx_http_conductor_sync_arg(nw);
        ngx_http_conductor_sync_arg(ngx_http_conductor_periods[nw]);
        ngx_http_conductor_sync_arg(limit[nw]);
        ngx_http_conductor_sync_arg((nw & 1) ? ctx->estimate : 1);
    }

    argv[nwat] = (char *) num[nwat];
    argvlen[nwat] = ngx_http_conductor_resp_int(num[nwat],
                                                (n - nwat - 1) / 4)
                    - num[nwat];

    nbat = n;
    argv[n] = "0"; argvlen[n++] = 1;

    for (nb = 0; nb < NGX_HTTP_CONDUCTOR_NPERIODS; nb++) {
        if (!(budgets & (1 << nb))) {
            continue;
        }

        ngx_http_conductor_sync_arg(nb);
        ngx_http_conductor_sync_arg(ngx_http_conductor_budget_period(nb, at,
                                                                     &ends));
        ngx_http_conductor_sync_arg(ngx_http_conductor_sync_nano(
                                         cl->budget[nb]));
        ngx_http_conductor_sync_arg(ngx_http_conductor_sync_nano(
                                         ctx->cost_reserved[nb]));
    }

    argv[nbat] = (char *) num[nbat];
    argvlen[nbat] = ngx_http_conductor_resp_int(num[nbat],
                                                (n - nbat - 1) / 4)
                    - num[nbat];

    if (call) {
        call->answer = NGX_HTTP_CONDUCTOR_EXACT_FAIL;
    }

    if (ngx_http_conductor_sync_send(n, argv, argvlen,
                                     call ? ngx_http_conductor_exact_reply
                                          : NULL,
                                     call, call ? &call->cmd : NULL)
        != NGX_OK)
    {
        /* not sent: nothing is held in Redis */
        *prid = 0;
        return;
    }

    *prid = rid;

    if (call) {
        call->answer = NGX_HTTP_CONDUCTOR_EXACT_WAIT;
        call->exact->waiting++;
    }
}


static void
ngx_http_conductor_exact_reply(void *data, redisReply *reply)
{
    ngx_http_conductor_exact_call_t *call = data;

    ngx_http_conductor_exact_t  *ex;
    ngx_http_conductor_ctx_t    *ctx;

    ex = call->exact;
    call->cmd = NULL;
    call->answer = NGX_HTTP_CONDUCTOR_EXACT_FAIL;

    if (reply == NULL) {
        ngx_http_conductor_sync_loaded = 0;

    } else if (reply->type == REDIS_REPLY_ERROR) {
        if (ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0) {
            ngx_http_conductor_sync_loaded = 0;
        }

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "redis: a reservation failed: %*s",
                      (size_t) ngx_min(reply->len, 160), reply->str);

    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1
               && reply->element[0]->type == REDIS_REPLY_INTEGER)
    {
        if (reply->element[0]->integer == 1) {
            call->answer = NGX_HTTP_CONDUCTOR_EXACT_YES;

        } else if (reply->elements == 3
                   && reply->element[1]->type == REDIS_REPLY_STRING
                   && reply->element[1]->len > 0
                   && reply->element[2]->type == REDIS_REPLY_INTEGER)
        {
            call->answer = NGX_HTTP_CONDUCTOR_EXACT_NO;
            call->why = reply->element[1]->str[0];
            call->idx = (ngx_uint_t) reply->element[2]->integer;
        }
    }

    ctx = ngx_http_get_module_ctx(ex->request, ngx_http_conductor_module);

    if (call->answer == NGX_HTTP_CONDUCTOR_EXACT_NO) {
        /* refused: nothing is held */
        if (call == &ex->call[NGX_HTTP_CONDUCTOR_EXACT_KEY]) {
            ctx->key_rid = 0;

        } else {
            ctx->client_rid = 0;
        }
    }

    if (--ex->waiting) {
        return;
    }

    ngx_http_conductor_exact_resume(ex->request, ctx);
}


/* both answers are in: the phases run on, as after the queue */

static void
ngx_http_conductor_exact_resume(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = r->connection;

    rc = ngx_http_conductor_exact_decide(r, ctx);

    if (rc == NGX_DONE) {
        /* another key asked */
        return;
    }

    ctx->status = (rc == NGX_OK) ? NGX_DECLINED
                  : (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/*
 * What the answers mean: both reserved (or no answer, with on_failure=
 * local): go on; the client refused: 429 for the client, what the key got
 * given back; the key refused: another key, or 429 when none is left; no
 * answer with on_failure=refuse: 503.
 */

static ngx_int_t
ngx_http_conductor_exact_decide(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    time_t                           ends;
    ngx_int_t                        rc;
    ngx_http_conductor_exact_t      *ex;
    ngx_http_conductor_exact_call_t *k, *cl;
    ngx_http_conductor_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);
    ex = ctx->exact;
    k = &ex->call[NGX_HTTP_CONDUCTOR_EXACT_KEY];
    cl = &ex->call[NGX_HTTP_CONDUCTOR_EXACT_CLIENT];

    if (cl->answer == NGX_HTTP_CONDUCTOR_EXACT_NO) {
        ngx_http_conductor_exact_refused(ctx);
        ngx_http_conductor_exact_give_back(ctx, 0, 0);
        ngx_http_conductor_ledger_unpick(r, ctx, 1);

        ctx->retry_after = 1000;

        switch (cl->why) {

        case 'w':
            ctx->refusal = NGX_HTTP_CONDUCTOR_WAIT_CLIENT;
            ctx->client_limit = ngx_min(cl->idx, NGX_HTTP_CONDUCTOR_NLIMITS);
            break;

        case 'i':
            ctx->refusal = NGX_HTTP_CONDUCTOR_WAIT_CLIENT;
            ctx->client_limit = NGX_HTTP_CONDUCTOR_NLIMITS;
            break;

        case 's':
            ctx->refusal = NGX_HTTP_CONDUCTOR_WAIT_BUDGET;
            ctx->budget_period = ngx_min(cl->idx, NGX_HTTP_CONDUCTOR_TOTAL);
            (void) ngx_http_conductor_budget_period(ctx->budget_period,
                                                    ngx_time(), &ends);
            ctx->budget_ends = ends;
            ctx->retry_after = ends ? (ngx_msec_t) (ends - ngx_time()) * 1000
                                    : (ngx_msec_t) -1;
            break;

        default:
            ctx->refusal = NGX_HTTP_CONDUCTOR_WAIT_LIMIT;
            ctx->budget_held = 1;
            ctx->budget_period = ngx_min(cl->idx, NGX_HTTP_CONDUCTOR_TOTAL);
            break;
        }

        if ((cl->why == 'w' || cl->why == 'i')
            && ngx_http_conductor_exact_requeue(r, ctx) == NGX_OK)
        {
            return NGX_DONE;
        }

        return ngx_http_conductor_refuse(ctx);
    }

    if ((k->answer == NGX_HTTP_CONDUCTOR_EXACT_FAIL
         || cl->answer == NGX_HTTP_CONDUCTOR_EXACT_FAIL)
        && k->answer != NGX_HTTP_CONDUCTOR_EXACT_NO
        && cmcf->redis->on_failure == NGX_HTTP_CONDUCTOR_REDIS_REFUSE)
    {
        ngx_http_conductor_exact_give_back(ctx, 0, 1);
        ngx_http_conductor_ledger_unpick(r, ctx, 1);

        ctx->retry_after = 0;
        ctx->error = "the fleet's store (Redis) does not answer, and "
                     "on_failure=refuse";

        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (k->answer == NGX_HTTP_CONDUCTOR_EXACT_NO) {
        ctx->exact_refused = 1;
        ngx_http_conductor_exact_refused(ctx);
        ngx_http_conductor_ledger_unpick(r, ctx, 0);

        rc = ngx_http_conductor_attempt(r, ctx);

        if (rc == NGX_DECLINED) {
            if (ctx->refusal != NGX_HTTP_CONDUCTOR_WAIT_LIMIT
                && ctx->refusal != NGX_HTTP_CONDUCTOR_WAIT_BUDGET)
            {
                /* the fleet's limit: tried, so the pick says "never" */
                ctx->refusal = NGX_HTTP_CONDUCTOR_WAIT_LIMIT;
                ctx->retry_after = 1000;
                ctx->budget_held = 0;
            }

            ngx_http_conductor_exact_give_back(ctx, 0, 1);
            ngx_http_conductor_ledger_unpick(r, ctx, 1);

            if (ngx_http_conductor_exact_requeue(r, ctx) == NGX_OK) {
                return NGX_DONE;
            }

            return ngx_http_conductor_refuse(ctx);
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_conductor_exact_reserve(r, ctx);
    }

    ctx->exact_done = 1;

    return NGX_OK;
}


/* the key of the attempt was picked, never sent: it may be picked again */

static void
ngx_http_conductor_exact_refused(ngx_http_conductor_ctx_t *ctx)
{
    ngx_uint_t  i;

    if (ctx->cand) {
        i = ctx->cand->index;
        ctx->fleet_refused[i / 64] |= (uint64_t) 1 << (i % 64);
    }
}


/*
 * The fleet said no and no other key takes the request now: it goes back
 * to the location's queue, as a refusal by the node's own counts would
 * (until the queue's first deadline), with every key Redis refused free to
 * be picked again and the client to be asked again.  The node's view
 * learns the fleet's totals at its next push: until then the queue asks
 * Redis again every quarter second.
 */

static ngx_int_t
ngx_http_conductor_exact_requeue(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    ngx_uint_t                      i;
    ngx_http_conductor_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_conductor_module);

    if (lcf->queue_timeout == 0) {
        return NGX_DECLINED;
    }

    if (ctx->refusal != NGX_HTTP_CONDUCTOR_WAIT_LIMIT
        && ctx->refusal != NGX_HTTP_CONDUCTOR_WAIT_CLIENT)
    {
        return NGX_DECLINED;
    }

    for (i = 0; i < NGX_HTTP_CONDUCTOR_MAX_CANDS / 64; i++) {
        ctx->tried[i] &= ~ctx->fleet_refused[i];
        ctx->fleet_refused[i] = 0;
    }

    ctx->exact_client = 0;
    ctx->exact_refused = 0;
    ctx->budget_held = 0;
    ctx->retry_after = 250;

    return ngx_http_conductor_enqueue(r, ctx, lcf);
}


/* the client went away while it waited: no handler may run for it */

static void
ngx_http_conductor_exact_cleanup(void *data)
{
    ngx_http_conductor_exact_t *ex = data;

    ngx_uint_t  i;

    for (i = 0; i < 2; i++) {
        if (ex->call[i].cmd) {
            ngx_http_conductor_redis_cancel(ex->call[i].cmd);
            ex->call[i].cmd = NULL;
        }
    }
}


/*
 * What the request holds in Redis goes back, by reservation id: the key's
 * (all: the client's too, with the answer's cost added to the spend).
 * used: the tokens the answer used, in place of the estimate.
 */

void
ngx_http_conductor_exact_give_back(ngx_http_conductor_ctx_t *ctx,
    uint64_t used, ngx_uint_t all)
{
    time_t                           now, ends;
    ngx_uint_t                       p;
    ngx_http_conductor_client_t     *cl;
    ngx_http_conductor_exact_back_t *bk;

    if (ctx->key_rid && ctx->cand && ctx->cand->key->fleet.len) {
        bk = ngx_http_conductor_exact_back_new(&ctx->cand->key->fleet,
                                               ctx->key_rid, used);
        if (bk) {
            ngx_http_conductor_exact_back_send(bk);
        }
    }

    ctx->key_rid = 0;

    if (!all || ctx->client_rid == 0) {
        return;
    }

    cl = ctx->client;

    bk = ngx_http_conductor_exact_back_new(&cl->fleet, ctx->client_rid, used);
    ctx->client_rid = 0;

    if (bk == NULL) {
        return;
    }

    now = bk->now;

    for (p = 0; p < NGX_HTTP_CONDUCTOR_NPERIODS; p++) {
        if (!(cl->budgets & (1 << p))) {
            continue;
        }

        bk->bud[bk->nbud] = p;
        bk->period[bk->nbud] = ngx_http_conductor_budget_period(p, now, &ends);
        bk->cost[bk->nbud] = (ctx->account.final.found && ctx->account.priced)
                             ? ngx_http_conductor_sync_nano(ctx->account.cost)
                             : 0;
        bk->ttl[bk->nbud] = (p == NGX_HTTP_CONDUCTOR_DAY) ? 2 * 86400
                            : (p == NGX_HTTP_CONDUCTOR_MONTH) ? 62 * 86400 : 0;
        bk->nbud++;
    }

    ngx_http_conductor_exact_back_send(bk);
}


static ngx_http_conductor_exact_back_t *
ngx_http_conductor_exact_back_new(ngx_str_t *base, uint64_t rid,
    uint64_t used)
{
    ngx_http_conductor_exact_back_t  *bk;

    bk = ngx_calloc(sizeof(ngx_http_conductor_exact_back_t), ngx_cycle->log);
    if (bk == NULL) {
        return NULL;
    }

    bk->base = *base;
    bk->rid = rid;
    bk->now = ngx_time();
    bk->used = used;

    return bk;
}


/* sent, or kept to be sent again when Redis is ready (the tick) */

static void
ngx_http_conductor_exact_back_send(ngx_http_conductor_exact_back_t *bk)
{
    ngx_uint_t   i, n;
    u_char       num[NGX_HTTP_CONDUCTOR_SYNC_ARGS]
                    [NGX_HTTP_CONDUCTOR_RESP_INT_LEN];
    const char  *argv[NGX_HTTP_CONDUCTOR_SYNC_ARGS];
    size_t       argvlen[NGX_HTTP_CONDUCTOR_SYNC_ARGS];

    n = 0;

    argv[n] = "EVALSHA"; argvlen[n++] = 7;
    argv[n] = (char *) ngx_http_conductor_back_sha; argvlen[n++] = 40;
    argv[n] = "1"; argvlen[n++] = 1;
    argv[n] = (char *) bk->base.data; argvlen[n++] = bk->base.len;
    argv[n] = (char *) ngx_http_conductor_sync_id.data;
    argvlen[n++] = ngx_http_conductor_sync_id.len;

    ngx_http_conductor_sync_arg(bk->rid);
    ngx_http_conductor_sync_arg(bk->now);
    ngx_http_conductor_sync_arg(bk->used);
    ngx_http_conductor_sync_arg(bk->nbud);

    for (i = 0; i < bk->nbud; i++) {
        ngx_http_conductor_sync_arg(bk->bud[i]);
        ngx_http_conductor_sync_arg(bk->period[i]);
        ngx_http_conductor_sync_arg(bk->cost[i]);
        ngx_http_conductor_sync_arg(bk->ttl[i]);
    }

    if (ngx_http_conductor_sync_send(n, argv, argvlen,
                                     ngx_http_conductor_exact_backed, bk,
                                     NULL)
        != NGX_OK)
    {
        ngx_http_conductor_exact_later(bk);
    }
}


static void
ngx_http_conductor_exact_backed(void *data, redisReply *reply)
{
    ngx_http_conductor_exact_back_t *bk = data;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        if (reply == NULL
            || (reply->type == REDIS_REPLY_ERROR
                && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0))
        {
            ngx_http_conductor_sync_loaded = 0;
        }

        ngx_http_conductor_exact_later(bk);
        return;
    }

    ngx_free(bk);
}


static void
ngx_http_conductor_exact_later(ngx_http_conductor_exact_back_t *bk)
{
    if (ngx_exiting || ngx_terminate || ngx_quit
        || ngx_http_conductor_exact_nlater
           >= NGX_HTTP_CONDUCTOR_REDIS_MAX_PENDING)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "redis: a reservation of \"%V\" could not be given "
                      "back: the fleet counts it until it expires",
                      &bk->base);
        ngx_free(bk);
        return;
    }

    if (ngx_http_conductor_exact_later_q.next == NULL) {
        ngx_queue_init(&ngx_http_conductor_exact_later_q);
    }

    ngx_queue_insert_tail(&ngx_http_conductor_exact_later_q, &bk->queue);
    ngx_http_conductor_exact_nlater++;
}


/* the tick, Redis ready: the give-backs that could not go out, again */

static void
ngx_http_conductor_exact_flush(void)
{
    ngx_uint_t                        n;
    ngx_queue_t                      *q;
    ngx_http_conductor_exact_back_t  *bk;

    if (ngx_http_conductor_exact_later_q.next == NULL) {
        return;
    }

    /* those that fail again go to the tail: one round at most */
    for (n = ngx_http_conductor_exact_nlater; n; n--) {

        if (ngx_queue_empty(&ngx_http_conductor_exact_later_q)) {
            break;
        }

        q = ngx_queue_head(&ngx_http_conductor_exact_later_q);
        ngx_queue_remove(q);
        ngx_http_conductor_exact_nlater--;

        bk = ngx_queue_data(q, ngx_http_conductor_exact_back_t, queue);
        ngx_http_conductor_exact_back_send(bk);
    }
}
